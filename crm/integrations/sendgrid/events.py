"""Reading a SendGrid Event Webhook body: a JSON array of event objects.

Batch semantics: each event on its own. Every event is checked; the usable ones are returned to be
recorded (idempotently, by ``sg_event_id``) and the unusable ones (no ``sg_event_id``, no ``event``, a
``timestamp`` that is not a number...) are reported back with their index and reason. Refusing the whole
batch would not help: the platform re-sends the same bytes, which fail the same way, and the good events
in it (unsubscribes among them) would never be recorded. A body that is not JSON (400) or not an array
(422) is still refused whole.

Custom arguments (``hcp_id``, ``campaign_id``) come back as top-level fields of each event. They are
hints, not requirements: one that is not a number is ignored (the event is then tied by its address).
The address, IP and user agent are personal data: they are taken out of the stored raw event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from crm.campaigns.engagement import IncomingEmailEvent
from crm.errors import Invalid
from crm.schemas import has_nul
from crm.web import ID_MAX, parse_json_body

PERSONAL_FIELDS = frozenset({"email", "ip", "useragent"})
MAX_ID_LENGTH = 100
# A timestamp this far ahead of our clock is not a clock skew but a wrong value.
MAX_FUTURE = timedelta(hours=1)


def _int_or_none(value: Any) -> int | None:
    if type(value) is str:  # the custom arguments come back as strings
        value = value.strip()
        if value.isdecimal() and len(value) <= 12:
            number = int(value)
            return number if 0 < number <= ID_MAX else None
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value if 0 < value <= ID_MAX else None
    if isinstance(value, str) and value.strip().isdecimal() and len(value.strip()) <= 12:  # a str subclass
        number = int(value.strip())
        return number if 0 < number <= ID_MAX else None
    return None


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) and value.strip() else None


def parse_event(item: Any, now: datetime, nul_possible: bool = True
                ) -> tuple[IncomingEmailEvent | None, dict[str, list[str]]]:
    """One event, or the reasons it cannot be used (field -> messages). ``nul_possible=False``: the body
    holds no ``\\u0000`` escape, so no string of it holds a NUL (JSON text cannot carry a raw one)."""
    return _parse(item, now, (now + MAX_FUTURE).timestamp(), nul_possible, {})


def _parse(item: Any, now: datetime, limit: float, nul_possible: bool, times: dict[Any, datetime]
           ) -> tuple[IncomingEmailEvent | None, dict[str, list[str]]]:
    """``parse_event`` with what a batch shares: ``limit``, the latest plausible Unix time (``now`` plus
    ``MAX_FUTURE``), and ``times``, the instants of the timestamps read so far (filled as it goes)."""
    if type(item) is not dict and not isinstance(item, dict):
        return None, {"_schema": ["Expected a JSON object."]}
    get = item.get
    sg_event_id = get("sg_event_id")
    event_type = get("event")
    timestamp = get("timestamp")
    occurred_at = None
    if (not nul_possible and type(sg_event_id) is str and type(event_type) is str and _usable_id(sg_event_id)
            and _usable_type(event_type) and (type(timestamp) is int or type(timestamp) is float)):
        # The common case, checked in a few steps: a plain positive timestamp clearly before the limit.
        occurred_at = times.get(timestamp)
        if occurred_at is None and 0 < timestamp < limit - 1:
            occurred_at = times[timestamp] = datetime.fromtimestamp(timestamp, UTC)
    if occurred_at is None:
        errors = _problems(item, now, nul_possible, sg_event_id, event_type, timestamp)
        if errors:
            return None, errors
        occurred_at = datetime.fromtimestamp(timestamp, UTC)  # type: ignore[arg-type]
    email = get("email")
    raw = item.copy()
    for name in PERSONAL_FIELDS:
        raw.pop(name, None)
    reason = get("reason")
    bounce_type = get("type")
    url = get("url")
    return IncomingEmailEvent(
        sg_event_id.strip(),  # type: ignore[union-attr]
        event_type.strip(),  # type: ignore[union-attr]
        occurred_at,
        email.strip() or None if isinstance(email, str) else None,
        _int_or_none(get("hcp_id")),
        _int_or_none(get("campaign_id")),
        (None if reason is None else _text(reason, 500)) or _text(get("response"), 500),
        None if bounce_type is None else _text(bounce_type, 40),
        None if url is None else _text(url, 2000),
        raw,
    ), {}


def _usable_id(value: str) -> bool:
    return len(value) <= MAX_ID_LENGTH and bool(value.strip()) and value.isprintable()


def _usable_type(value: str) -> bool:
    return bool(value.strip()) and value.isprintable()


def _problems(item: dict[str, Any], now: datetime, nul_possible: bool, sg_event_id: Any, event_type: Any,
              timestamp: Any) -> dict[str, list[str]]:
    """Why an event cannot be used (field -> messages); empty when it can."""
    errors: dict[str, list[str]] = {}
    if nul_possible and has_nul(item):  # PostgreSQL stores no NUL in text
        errors["_schema"] = ["Must not contain a NUL character."]
    if not isinstance(sg_event_id, str) or not sg_event_id.strip():
        errors["sg_event_id"] = ["Missing: every event needs its sg_event_id (the external id)."]
    elif len(sg_event_id) > MAX_ID_LENGTH or not sg_event_id.isprintable():
        errors["sg_event_id"] = [f"Must be printable text of at most {MAX_ID_LENGTH} characters."]
    if not isinstance(event_type, str) or not event_type.strip() or not event_type.isprintable():
        errors["event"] = ["Missing: every event needs its type."]
    if isinstance(timestamp, bool) or not isinstance(timestamp, int | float) or not math.isfinite(timestamp):
        errors["timestamp"] = ["Must be a number (Unix time in seconds)."]
    else:
        try:
            occurred_at = datetime.fromtimestamp(timestamp, UTC)
        except (OverflowError, OSError, ValueError):
            errors["timestamp"] = ["Not a usable Unix time."]
        else:
            if timestamp <= 0 or occurred_at > now + MAX_FUTURE:
                errors["timestamp"] = ["Not a plausible Unix time (before 1970 or in the future)."]
    return errors


@dataclass(frozen=True)
class RejectedEvent:
    """An event of the array that cannot be used: where it was, its id when it had a usable one, why."""

    index: int
    sg_event_id: str | None
    reason: str


@dataclass
class ParsedBatch:
    events: list[IncomingEmailEvent] = field(default_factory=list)
    rejected: list[RejectedEvent] = field(default_factory=list)
    received: int = 0


def _id_of(item: Any) -> str | None:
    value = item.get("sg_event_id") if isinstance(item, dict) else None
    if isinstance(value, str) and value.strip() and value.isprintable():
        return value.strip()[:MAX_ID_LENGTH]
    return None


def parse_batch(body: bytes, now: datetime) -> ParsedBatch:
    """The usable events of a webhook body and the rejected ones; 400 when it is not JSON, 422 when it is
    not an array (nothing of such a body can be used)."""
    data = parse_json_body(body)  # 400 when malformed, too deep or holding a lone surrogate
    if not isinstance(data, list):
        raise Invalid("The body must be a JSON array of events; nothing was stored.",
                      errors={"_schema": ["Expected a JSON array."]})
    batch = ParsedBatch(received=len(data))
    nul_possible = b"\\u0000" in body
    times: dict[Any, datetime] = {}
    limit = (now + MAX_FUTURE).timestamp()
    for index, item in enumerate(data):
        event, problems = _parse(item, now, limit, nul_possible, times)
        if event is not None:
            batch.events.append(event)
            continue
        reason = "; ".join(f"{name}: {' '.join(messages)}" if name != "_schema" else " ".join(messages)
                           for name, messages in problems.items())
        batch.rejected.append(RejectedEvent(index=index, sg_event_id=_id_of(item), reason=reason))
    return batch
