"""The one read path for sensitive records: decide, redact, log.

Every API, page, list and export that shows a timeline item, a visit, a call-centre contact, a medical
inquiry, an adverse-event case or an event goes through ``read_records``: it asks ``crm.access.policy``
how much the viewer may see of each record (``sight``), withholds what the level does not allow
(``Redaction``), marks the record with the rule and the reason ("why can I see this?"), and logs the
full-level reads of `medical`/`pv` records for compliance (``sensitive_reads``, one insert per call).

Unlike ``crm.access.policy`` this module touches the database (the read log), which is why it is a
module of its own: the policy stays pure, and nothing else decides, redacts or logs.

Filters follow the same rule: a filter on content the viewer may not see (``visible_content``) must
not match records through that content, or the list would confirm what the redaction withholds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import select

from crm.access.policy import LOGGED_SENSITIVITIES, SENSITIVITIES, Level, Viewer, item_decision
from crm.db import DbSession, insert_after_reads, utcnow

R = TypeVar("R")

# Least to most restricted: a record whose correction is stricter takes the correction's sensitivity.
_ORDER = {s: n for n, s in enumerate(SENSITIVITIES)}


def strictest(*sensitivities: str | None) -> str:
    """The most restricted of ``sensitivities`` (``standard`` < ``medical`` < ``pv``); unknown counts as pv."""
    known = [s for s in sensitivities if s is not None]
    if not known:
        return "standard"
    return max(known, key=lambda s: _ORDER.get(s, len(_ORDER)))


@dataclass(frozen=True)
class Sight:
    """How much of one record a viewer sees: the level shown, and the rule and reason behind it."""

    level: Level
    rule: str
    reason: str

    @property
    def full(self) -> bool:
        return self.level == Level.FULL

    @property
    def summary(self) -> bool:
        """The safe, structured facts (no free text) are shown: full or summary level."""
        return self.level in (Level.FULL, Level.SUMMARY)

    def marks(self) -> dict[str, Any]:
        """What every redacted record carries: whether it is redacted, why, and the rule that applied."""
        return {
            "redacted": not self.full,
            "redaction_reason": None if self.full else self.reason,
            "visibility": {"level": str(self.level), "rule": self.rule, "reason": self.reason},
        }


def sight(viewer: Viewer, sensitivity: str) -> Sight:
    """``crm.access.policy.item_decision`` for ``viewer`` and ``sensitivity``, as a ``Sight``."""
    decision = item_decision(viewer, sensitivity)
    # Anything stricter than summary is shown as existence: a contact that happened stays visible.
    level = decision.level if decision.level in (Level.FULL, Level.SUMMARY) else Level.EXISTENCE
    return Sight(level, decision.rule, decision.reason)


def visible_content(viewer: Viewer, at_least: Level = Level.SUMMARY) -> list[str]:
    """The sensitivities whose records ``viewer`` sees at ``at_least`` (products, kind details...).

    Filters on such content (``?product=``) match only records of these sensitivities: a record whose
    only link to the filter value is withheld must not be returned by it.
    """
    wanted = {Level.FULL} if at_least == Level.FULL else {Level.FULL, Level.SUMMARY}
    return [s for s in SENSITIVITIES if sight(viewer, s).level in wanted]


Withheld = Mapping[str, Any]


@dataclass(frozen=True)
class Redaction:
    """What a record shows below full level (``below_full``: free text) and below summary level
    (``below_summary``: structured facts). Each maps a field to what is shown instead: a value, or a
    callable of the record (e.g. the safe summary). A dotted name (``follow_up.text``) reaches into a
    nested dict when there is one."""

    below_full: Withheld = field(default_factory=dict)
    below_summary: Withheld = field(default_factory=dict)

    def apply(self, out: dict[str, Any], record: Any, seen: Sight) -> dict[str, Any]:
        if seen.full:
            return out
        _withhold(out, record, self.below_full)
        if not seen.summary:
            _withhold(out, record, self.below_summary)
        return out


def _withhold(out: dict[str, Any], record: Any, withheld: Withheld) -> None:
    for name, instead in withheld.items():
        value = instead(record) if callable(instead) else instead
        head, dot, tail = name.partition(".")
        if not dot:
            out[head] = value
        elif isinstance(out.get(head), dict):
            out[head] = {**out[head], tail: value}


# (interaction id, HCP id): what one log row names. Either may be None (an event has no single HCP).
LogKey = tuple[int | None, int | None]


def log_reads(session: DbSession, viewer: Any, reads: Iterable[tuple[int | None, int | None, str]],
              what: str = "interaction") -> int:
    """Log, for compliance, every read of a `medical`/`pv` record the viewer saw at full level.

    ``reads`` are ``(interaction_id, hcp_id, sensitivity)``; standard records and records seen below full
    level are not logged. One bulk insert, whatever the number. Returns how many rows were written.
    In a read-only request on SQLite the insert is written at the end of the request, in a short write
    transaction of its own, before the response leaves (``crm.db.insert_after_reads``).
    """
    from crm.timeline.models import SensitiveRead

    now = utcnow()
    rows = [
        {"viewer_id": viewer.user_id, "what": what, "interaction_id": interaction_id, "hcp_id": hcp_id,
         "sensitivity": sensitivity, "occurred_at": now}
        for interaction_id, hcp_id, sensitivity in reads
        if sensitivity in LOGGED_SENSITIVITIES and sight(viewer, sensitivity).full
    ]
    insert_after_reads(session, SensitiveRead.__table__, rows)
    return len(rows)


@dataclass(frozen=True)
class Shape(Generic[R]):
    """How one kind of record is read: its sensitivity, its full form, what is withheld below full and
    summary level, and what a read of it logs (``logged``: ``(interaction id, HCP id)`` pairs)."""

    what: str
    sensitivity: Callable[[R], str]
    dump: Callable[[R, Sight], dict[str, Any]]
    redaction: Redaction
    logged: Callable[[R], Iterable[LogKey]]


def read_records(session: DbSession | None, viewer: Viewer, records: Sequence[R], shape: Shape[R], *,
                 log: bool = True) -> list[dict[str, Any]]:
    """Each record as ``viewer`` may see it, marked with the rule and reason; full reads of medical/pv
    records logged in one insert. ``log=False`` for the echo of a write (the audit trail holds it); only
    then may ``session`` be None."""
    if log and session is None:
        raise ValueError("a logged read needs the session to log it in")
    out: list[dict[str, Any]] = []
    reads: list[tuple[int | None, int | None, str]] = []
    # A page asks the same few questions fifty times: each sensitivity's sight and marks once per call
    # (the items of one sensitivity share the marks' ``visibility`` dict; nothing changes it).
    sights: dict[str, tuple[Sight, dict[str, Any], bool, bool]] = {}
    redaction, dump, sensitivity_of = shape.redaction, shape.dump, shape.sensitivity
    for record in records:
        sensitivity = sensitivity_of(record)
        known = sights.get(sensitivity)
        if known is None:
            seen = sight(viewer, sensitivity)
            known = sights[sensitivity] = (seen, seen.marks(), seen.full,
                                           log and seen.full and sensitivity in LOGGED_SENSITIVITIES)
        seen, marks, full, logged = known
        item = dump(record, seen)
        if not full:
            redaction.apply(item, record, seen)
        item.update(marks)
        out.append(item)
        if logged:
            reads.extend((interaction_id, hcp_id, sensitivity) for interaction_id, hcp_id in shape.logged(record))
    if reads and session is not None:
        log_reads(session, viewer, reads, what=shape.what)
    return out


def read_record(session: DbSession | None, viewer: Viewer, record: R, shape: Shape[R], *,
                log: bool = True) -> dict[str, Any]:
    """``read_records`` for one record."""
    return read_records(session, viewer, [record], shape, log=log)[0]


def interaction_sensitivities(session: DbSession, interaction_ids: Iterable[int | None]) -> dict[int, str]:
    """The stored sensitivity of each interaction (raised to the strictest of its corrections when they
    were written), so a channel record (visit, contact, inquiry) reads at least as strictly as its item."""
    from crm.timeline.models import Interaction

    ids = sorted({i for i in interaction_ids if i is not None})
    if not ids:
        return {}
    return dict(session.execute(select(Interaction.id, Interaction.sensitivity).where(Interaction.id.in_(ids))).all())
