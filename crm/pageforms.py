"""Small helpers for HTML forms and links: ids read from a page's query or form, and local times with an offset.

A ``datetime-local`` input has no offset and the server never guesses one. The page sends the browser's
UTC offset for the time entered (``crm/static/events.js``) or the user ticks "times are in UTC".
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from flask import request

from crm.errors import Invalid
from crm.schemas import DB_INT_MAX


def page_id(raw: str | None) -> int | None:
    """An id typed into a form or a (hand-edited) link: a whole number within the database's id range,
    else None (the page then treats it as absent). The API's schemas bound ids the same way (422); a page
    must not turn ``?before=99999999999999999999`` into a database overflow (a 500 on PostgreSQL)."""
    value = (raw or "").strip()
    if not value.isascii() or not value.isdigit() or len(value) > 10:
        return None
    number = int(value)
    return number if 0 < number <= DB_INT_MAX else None


def form_time(name: str, label: str, *, required: bool = True) -> datetime | None:
    """The aware UTC time of form field ``name`` (with ``<name>_offset`` minutes east of UTC)."""
    raw = request.form.get(name, "").strip()
    if not raw:
        if required:
            raise Invalid(errors={name: [f"{label}: enter a date and time."]})
        return None
    try:
        local = datetime.fromisoformat(raw)
    except ValueError:
        raise Invalid(errors={name: [f"{label}: not a valid date and time."]}) from None
    if local.tzinfo is not None:
        return local.astimezone(UTC)
    if request.form.get("times_utc"):
        return local.replace(tzinfo=UTC)
    offset = request.form.get(f"{name}_offset", "").strip()
    try:
        minutes = int(offset)
    except ValueError:
        raise Invalid(errors={name: [f"{label}: your time zone could not be detected; tick \"times are in UTC\" "
                                     "and enter the time in UTC."]}) from None
    if not -16 * 60 <= minutes <= 16 * 60:
        raise Invalid(errors={name: [f"{label}: not a valid UTC offset."]})
    return local.replace(tzinfo=timezone(timedelta(minutes=minutes))).astimezone(UTC)


def form_int_list(name: str) -> list[int]:
    out = []
    for raw in request.form.getlist(name):
        if raw.strip().isdigit():
            out.append(int(raw.strip()))
    return out
