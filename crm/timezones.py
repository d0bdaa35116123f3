"""Times on pages in the reader's time zone, with the zone shown; stored and sent by the API in UTC.

Each user may set an IANA zone (``Europe/Berlin``) on the settings page; until they do, the page's
script (crm/static/timezone.js) proposes the browser's zone once, and until then pages show UTC.
Zones come from the standard library's ``zoneinfo`` (the system's zone files, else the ``tzdata``
package pinned in requirements.txt). The ``localtime`` Jinja filter renders a UTC datetime, or an ISO
8601 string as the API and the timeline serialise them, as ``2026-03-29 03:00 CEST``.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, tzinfo
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flask import g, has_request_context
from flask_login import current_user

MAX_ZONE_LENGTH = 64
FORMATS = {
    "minutes": "%Y-%m-%d %H:%M",
    "seconds": "%Y-%m-%d %H:%M:%S",
    "short": "%m-%d %H:%M",
    "date": "%Y-%m-%d",
}


@lru_cache(maxsize=1)
def zone_names() -> tuple[str, ...]:
    """Every IANA zone name this machine knows, sorted; ``UTC`` first."""
    names = sorted(n for n in available_timezones() if "/" in n and not n.startswith(("Etc/", "SystemV/")))
    return ("UTC", *names)


def parse_zone(name: str | None) -> ZoneInfo | None:
    """The zone named ``name`` (an IANA name such as ``Europe/Berlin``), or None when there is no such zone."""
    text = (name or "").strip()
    if not text or len(text) > MAX_ZONE_LENGTH or not text.isascii() or not text.isprintable():
        return None
    if ".." in text or text.startswith("/") or "\\" in text:
        return None  # zoneinfo would refuse these too; say "unknown", not raise
    try:
        return ZoneInfo(text)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


def user_zone() -> tzinfo:
    """The signed-in user's zone, else UTC (also outside a request, e.g. in mails and the CLI)."""
    if not has_request_context():
        return UTC
    cached = g.get("_user_zone")
    if cached is not None:
        return cached
    zone: tzinfo = UTC
    if current_user and current_user.is_authenticated:
        zone = parse_zone(getattr(current_user, "time_zone", None)) or UTC
    g._user_zone = zone
    return zone


def user_zone_name() -> str | None:
    """The zone the user chose, or None while unset (the page then offers the browser's)."""
    if not has_request_context() or not current_user or not current_user.is_authenticated:
        return None
    return getattr(current_user, "time_zone", None) or None


def as_utc(value: Any) -> datetime | None:
    """An aware UTC datetime from a datetime (naive is taken as UTC, as stored) or an ISO 8601 string."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    if isinstance(value, date) and not isinstance(value, datetime):
        return None
    if not isinstance(value, datetime):
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def local_time(value: Any, style: str = "minutes", zone: tzinfo | None = None) -> str:
    """``value`` in ``zone`` (default: the user's) as ``2026-03-29 03:00 CEST``; ``style`` is one of
    ``minutes``, ``seconds``, ``short`` or ``date`` (the date alone, in that zone). Empty for no value;
    a string that is not a time comes back as it is."""
    moment = as_utc(value)
    if moment is None:
        return "" if value in (None, "") else str(value)
    here = moment.astimezone(zone or user_zone())
    text = here.strftime(FORMATS.get(style, FORMATS["minutes"]))
    if style == "date":
        return text
    return f"{text} {here.tzname() or 'UTC'}"


def register_timezones(app: Any) -> None:
    """The ``localtime`` filter and the ``user_zone_name`` global for the templates."""
    app.jinja_env.filters["localtime"] = local_time
    app.jinja_env.globals["user_zone_name"] = user_zone_name
