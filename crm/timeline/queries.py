"""Reading the timeline: one HCP's items, the feed across HCPs, one item, the contact-fatigue strip.

Every read is a keyset scan over an index that matches its order, so the page at item 9,950 costs
the same as the first: the per-HCP timeline walks ``interaction_participants (hcp_id, occurred_at,
interaction_id)``, the feed walks ``interactions (occurred_at, id)``. The same query brings the page's
interactions, owner names, participants and skus (one query per page, whatever its size: no N+1), as
plain rows rather than ORM objects, which keeps a page close to the cost of its SQL. Items are redacted
on the way out by ``crm.access.policy``; nothing about visibility is stored on the rows. Reads of
``medical``/``pv`` items at full level are logged as ``SensitiveRead`` rows (one bulk insert per page);
the request boundary commits them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cache
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Integer,
    Select,
    String,
    Text,
    and_,
    bindparam,
    case,
    cast,
    exists,
    func,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.orm import aliased

from crm.access.policy import ROLE_LABELS, SEES_SUPERSEDED, Viewer
from crm.access.reads import SENSITIVITIES, Redaction, Shape, Sight, read_record, read_records, visible_content
from crm.auth.models import User
from crm.db import DbSession, StoredJSON, driver_rows, iso_z, utcnow
from crm.errors import NotFound
from crm.hcps.models import HCP, Territory
from crm.schemas import decode_cursor, encode_cursor
from crm.timeline.models import CHANNELS, Interaction, InteractionParticipant, InteractionProduct

FATIGUE_WINDOWS = (30, 90)
# A touch is a contact the company made with the HCP: a mail sent (campaign mail, event invitation,
# survey), a visit, a call-centre contact (every kind: calls and answers), an event attended. What the
# HCP did with a mail (delivered, opened, clicked, bounced...), registrations, no-shows, order status
# changes and consent changes are timeline facts but not touches.
TOUCH_KINDS: dict[str, tuple[str, ...]] = {
    "visit": ("visit.submitted",),
    "email": ("email.sent",),
    "event": ("event.invited", "event.attended"),
    "survey": ("survey.sent",),
}
EVERY_KIND_TOUCHES = ("call_centre",)
TOUCH_CHANNELS = tuple(c for c in CHANNELS if c in TOUCH_KINDS or c in EVERY_KIND_TOUCHES)


@dataclass
class TimelineFilters:
    """What to show. ``since`` is inclusive, ``until`` exclusive; empty lists mean "any".

    ``territory`` (code), ``profession`` and ``specialty`` apply to the feed only: an item matches when
    one of its participants matches.
    """

    channels: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)
    products: list[str] = field(default_factory=list)
    owner_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    territory: str | None = None
    profession: str | None = None
    specialty: str | None = None


# -- the shape of one item, redacted for the viewer ------------------------------------------------

# A record of ``ITEM_SHAPE`` is one row of the page query (``_item_columns``) as the driver returns it,
# read by position in one pass: 0 id, 1 occurred_at as stored (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC),
# 2 channel, 3 kind, 4 source, 5 summary, 6 safe_summary, 7 details (the stored JSON text; a dict from
# ``_row_of``), 8 sensitivity, 9 owner id, 10 owner name, 11 owner role, 12 supersedes id,
# 13 superseded-by id, 14 consent gap (0/1 or bool), 15 participant ids and 16 skus, each joined by
# ``_SEP``. A loaded Interaction is put in the same form (``_row_of``).
ItemRow = tuple[Any, ...]


def _row_of(interaction: Interaction) -> ItemRow:
    i = interaction
    owner = i.owner
    stored_at = i.occurred_at.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")
    return (
        i.id, stored_at, i.channel, i.kind, i.source, i.summary, i.safe_summary, i.details or {}, i.sensitivity,
        i.owner_id, owner.name if owner is not None else None, i.owner_role, i.supersedes_id, i.superseded_by_id,
        i.consent_gap, _SEP.join(str(p.hcp_id) for p in i.participants), _SEP.join(p.sku for p in i.products),
    )


def _dump_item(r: ItemRow, seen: Sight) -> dict[str, Any]:
    """One item in full, straight from its row; ``ITEM_SHAPE``'s redaction withholds what the viewer may
    not see. The stored JSON of ``details`` is passed through (``StoredJSON``), not parsed."""
    details = r[7]
    return {
        "id": r[0],
        "hcp_ids": _ids(r[15]),
        "occurred_at": _iso_text(r[1]),
        "channel": r[2],
        "kind": r[3],
        "source": r[4],
        "summary": r[5],
        # Who made the contact is shared with everyone, whatever its content.
        "owner": {"id": r[9], "name": r[10], "role": r[11]},
        "products": _skus(r[16]),
        "details": (({} if details in _EMPTY_JSON else StoredJSON(details)) if details.__class__ is str
                    else dict(details or {})),
        "sensitivity": r[8],
        "consent_gap": bool(r[14]),
        "supersedes": r[12],
        "superseded_by": r[13],
    }


# ``existence`` keeps the facts every internal user shares (when, which channel and kind, which
# department) and says why the rest is withheld; ``summary`` shows the safe summary and the products;
# ``full`` shows everything. ``visibility`` answers "why can I see this?".
ITEM_SHAPE: Shape[ItemRow] = Shape(
    what="interaction",
    sensitivity=itemgetter(8),
    dump=_dump_item,
    redaction=Redaction(below_full={"summary": itemgetter(6), "details": lambda r: {}},
                        below_summary={"summary": "", "products": lambda r: []}),
    logged=lambda r: ((r[0], hcp_id) for hcp_id in _ids(r[15])),
)


def _for_hcp(hcp_id: int) -> Shape[ItemRow]:
    """Items read on one HCP's timeline are logged against that HCP only."""
    return Shape(ITEM_SHAPE.what, ITEM_SHAPE.sensitivity, ITEM_SHAPE.dump, ITEM_SHAPE.redaction,
                 logged=lambda r: ((r[0], hcp_id),))


def serialize_item(viewer: Viewer, interaction: Interaction) -> dict[str, Any]:
    """One timeline item as SPEC section 5 describes it, redacted for ``viewer``, without logging the read
    (reads that show items go through ``read_interactions``, which logs them)."""
    return read_record(None, viewer, _row_of(interaction), ITEM_SHAPE, log=False)


def read_interactions(session: DbSession, viewer: Viewer, interactions: Sequence[Interaction]) -> list[dict[str, Any]]:
    """Loaded interactions as timeline items, redacted for ``viewer``, full reads of medical/pv logged."""
    return read_records(session, viewer, [_row_of(i) for i in interactions], ITEM_SHAPE)


# A separator no sku or id contains, for the participants and skus aggregated into one column each.
_SEP = "\x1f"


@dataclass(frozen=True)
class _Shape:
    """Which filters a page query uses. Each shape's statement is built once and then only re-run with
    new parameter values: building and fingerprinting a statement costs more than running a page."""

    dialect: str
    hide_superseded: bool
    channels: bool = False
    kinds: bool = False
    owner: bool = False
    products: bool = False
    # The viewer does not see the products of every sensitivity: ``products`` matches only where it does.
    products_seen: bool = False
    since: bool = False
    until: bool = False
    after: bool = False
    territory: bool = False
    profession: bool = False
    specialty: bool = False


def _shape(session: DbSession, viewer: Viewer, filters: TimelineFilters, cursor: str | None,
           limit: int) -> tuple[_Shape, dict[str, Any]]:
    """The query shape and its parameters; a tampered cursor raises here (422 on ``cursor``)."""
    params: dict[str, Any] = {"limit": limit + 1}
    after = None
    if cursor:
        params["after_at"], params["after_id"] = after = decode_cursor(cursor, (datetime, int))
    values = {
        "channels": list(filters.channels), "kinds": list(filters.kinds), "owner_id": filters.owner_id,
        "products": list(filters.products), "since": filters.since, "until": filters.until,
        "territory": filters.territory,
        "profession": filters.profession,
        "specialty": filters.specialty.strip().lower() if filters.specialty else None,
    }
    params.update({k: v for k, v in values.items() if v not in (None, [])})
    if "products" in params and len(seen := visible_content(viewer)) < len(SENSITIVITIES):
        # A filter on withheld content must not confirm it: an item whose products the viewer may not
        # see is not matched through them (it stays on the unfiltered timeline, redacted).
        params["products_seen"] = seen
    shape = _Shape(
        dialect=session.get_bind().dialect.name,
        hide_superseded=viewer.role not in SEES_SUPERSEDED,
        channels="channels" in params, kinds="kinds" in params, owner="owner_id" in params,
        products="products" in params, products_seen="products_seen" in params,
        since="since" in params, until="until" in params,
        after=after is not None, territory="territory" in params, profession="profession" in params,
        specialty="specialty" in params,
    )
    return shape, params


@cache
def _item_columns(dialect: str) -> tuple[Any, ...]:
    """The columns of ``ItemRow``, in order: the page's rows, owners, participants and skus come back
    in the same query as the keyset scan (participants and skus aggregated per row).

    No column has a result type processor: the time comes back as the text SQLite stores
    (``YYYY-MM-DD HH:MM:SS.ffffff``, UTC), formatted the same way by PostgreSQL, the details as their
    stored JSON text, the flag as the driver's 0/1 or bool; ``_fetch_items`` turns each into the API's
    form with a few string operations (``_iso_text``) or passes it through (``StoredJSON``)."""
    postgresql = dialect == "postgresql"
    agg = func.string_agg if postgresql else func.group_concat
    p, prod = aliased(InteractionParticipant), aliased(InteractionProduct)
    hcp_ids = (select(agg(cast(p.hcp_id, String), _SEP))
               .where(p.interaction_id == Interaction.id).correlate(Interaction).scalar_subquery())
    skus = (select(agg(prod.sku, _SEP))
            .where(prod.interaction_id == Interaction.id).correlate(Interaction).scalar_subquery())
    i = Interaction
    if postgresql:
        occurred: Any = func.to_char(func.timezone("UTC", i.occurred_at), "YYYY-MM-DD HH24:MI:SS.US")
        details: Any = cast(i.details, Text)
    else:
        occurred, details = type_coerce(i.occurred_at, Text), type_coerce(i.details, Text)
    return (i.id, occurred, i.channel, i.kind, i.source, i.summary, i.safe_summary, details,
            i.sensitivity, i.owner_id, User.name, i.owner_role, i.supersedes_id, i.superseded_by_id,
            type_coerce(i.consent_gap, Integer) if not postgresql else i.consent_gap, hcp_ids, skus)


def _fetch_items(session: DbSession, key: Any, stmt: Select[Any], params: dict[str, Any]) -> list[ItemRow]:
    """Run a page query in the session's transaction: rows as the driver returns them, straight from its
    cursor (``crm.db.driver_rows``, the statement compiled once per ``key``), without the ORM's result
    machinery or per-row type processors (``_item_columns``); ``_dump_item`` reads them as they are."""
    session.flush()  # what autoflush would do: the page must include this transaction's own writes
    return driver_rows(session, key, lambda _dialect: stmt, params)


_EMPTY_JSON = frozenset({None, "{}", "null"})


def _iso_text(stored: str) -> str:
    """``YYYY-MM-DD HH:MM:SS[.ffffff]`` (UTC) as ``iso_z`` writes it: ``T``, no zero fraction, ``Z``."""
    if stored[10:11] == " " and len(stored) in (19, 26):
        if len(stored) == 19 or stored.endswith(".000000"):
            return f"{stored[:10]}T{stored[11:19]}Z"
        return f"{stored[:10]}T{stored[11:]}Z"
    parsed = datetime.fromisoformat(stored)  # another spelling (written outside the app): the slow way
    return iso_z(parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)) or ""


def _ids(joined: str | None) -> list[int]:
    if not joined:
        return []
    if _SEP not in joined:  # most items have one participant
        return [int(joined)]
    return sorted(int(h) for h in joined.split(_SEP))


def _skus(joined: str | None) -> list[str]:
    if not joined:
        return []
    return sorted(joined.split(_SEP)) if _SEP in joined else [joined]


# -- filters and keyset -------------------------------------------------------------------------

def _before(occurred: Any, ident: Any) -> ColumnElement[bool]:
    """Rows strictly after the cursor's (``after_at``, ``after_id``) in DESC order.

    Written as ``occurred <= at AND (occurred < at OR id < last_id)`` rather than a bare OR so both
    SQLite and PostgreSQL turn the first term into an index range bound.
    """
    at: Any = bindparam("after_at")
    return and_(occurred <= at, or_(occurred < at, ident < bindparam("after_id")))


def _conditions(shape: _Shape, occurred: Any, interaction_id: Any) -> list[ColumnElement[bool]]:
    """The filters every page query shares; ``occurred``/``interaction_id`` are the keyset columns."""
    conds: list[ColumnElement[bool]] = []
    if shape.hide_superseded:
        conds.append(Interaction.superseded_by_id.is_(None))
    if shape.channels:
        conds.append(Interaction.channel.in_(bindparam("channels", expanding=True)))
    if shape.kinds:
        conds.append(Interaction.kind.in_(bindparam("kinds", expanding=True)))
    if shape.owner:
        conds.append(Interaction.owner_id == bindparam("owner_id"))
    if shape.products:
        conds.append(exists().where(InteractionProduct.interaction_id == interaction_id,
                                    InteractionProduct.sku.in_(bindparam("products", expanding=True))))
    if shape.products_seen:
        conds.append(Interaction.sensitivity.in_(bindparam("products_seen", expanding=True)))
    if shape.since:
        conds.append(occurred >= bindparam("since"))
    if shape.until:
        conds.append(occurred < bindparam("until"))
    if shape.territory or shape.profession or shape.specialty:
        # An item matches when one of its participants does.
        p = aliased(InteractionParticipant)
        sub = exists().where(p.interaction_id == Interaction.id, HCP.id == p.hcp_id)
        if shape.territory:
            sub = sub.where(HCP.territory_id == Territory.id, Territory.code == bindparam("territory"))
        if shape.profession:
            sub = sub.where(HCP.profession == bindparam("profession"))
        if shape.specialty:
            sub = sub.where(func.lower(HCP.specialty) == bindparam("specialty"))
        conds.append(sub)
    if shape.after:
        conds.append(_before(occurred, interaction_id))
    return conds


def _page(rows: list[ItemRow], limit: int) -> tuple[list[ItemRow], str | None]:
    """Fetched ``limit + 1`` rows: the page and the cursor to the next one."""
    if len(rows) > limit:
        page = rows[:limit]
        return page, encode_cursor(_iso_text(page[-1][1]), page[-1][0])
    return rows, None


# -- the per-HCP timeline -----------------------------------------------------------------------

def require_hcp(session: DbSession, hcp_id: int) -> None:
    if session.scalar(select(HCP.id).where(HCP.id == hcp_id)) is None:
        raise NotFound(f"There is no HCP with id {hcp_id}.")


@cache
def _timeline_statement(shape: _Shape) -> Select[Any]:
    p = InteractionParticipant
    return (
        select(*_item_columns(shape.dialect))
        .select_from(p)
        .join(Interaction, Interaction.id == p.interaction_id)
        .outerjoin(User, User.id == Interaction.owner_id)
        .where(p.hcp_id == bindparam("hcp_id"), *_conditions(shape, p.occurred_at, p.interaction_id))
        .order_by(p.occurred_at.desc(), p.interaction_id.desc())
        .limit(bindparam("limit"))
    )


def for_pages(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items for an HTML page: the stored JSON passed through for the API (``StoredJSON``) parsed into
    the dict a template looks inside (``item.details.meeting_url``). The API never calls this."""
    for item in items:
        if isinstance(item.get("details"), StoredJSON):
            item["details"] = item["details"].value()
    return items


def timeline_page(
    session: DbSession, viewer: Viewer, hcp_id: int, filters: TimelineFilters, limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of one HCP's timeline, redacted for ``viewer``: ``(items, next_cursor)``.

    One query: the keyset range scan of the HCP's participations joined to the page's interactions.
    Superseded items are left out except for roles that review corrections (compliance, admin).
    Full-level reads of medical/pv items are logged against this HCP. The territory, profession and
    specialty filters are the feed's and do not apply here.
    """
    if filters.territory or filters.profession or filters.specialty:
        filters = replace(filters, territory=None, profession=None, specialty=None)
    shape, params = _shape(session, viewer, filters, cursor, limit)
    params["hcp_id"] = hcp_id
    rows, next_cursor = _page(_fetch_items(session, ("timeline", shape), _timeline_statement(shape), params), limit)
    return read_records(session, viewer, rows, _for_hcp(hcp_id)), next_cursor


# -- the feed across HCPs -----------------------------------------------------------------------

@cache
def _feed_statement(shape: _Shape) -> Select[Any]:
    return (
        select(*_item_columns(shape.dialect))
        .outerjoin(User, User.id == Interaction.owner_id)
        .where(*_conditions(shape, Interaction.occurred_at, Interaction.id))
        .order_by(Interaction.occurred_at.desc(), Interaction.id.desc())
        .limit(bindparam("limit"))
    )


def feed_page(
    session: DbSession, viewer: Viewer, filters: TimelineFilters, limit: int = 50, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the interaction feed across all HCPs, newest first, redacted like the timeline."""
    shape, params = _shape(session, viewer, filters, cursor, limit)
    rows, next_cursor = _page(_fetch_items(session, ("feed", shape), _feed_statement(shape), params), limit)
    return read_records(session, viewer, rows, ITEM_SHAPE), next_cursor


def feed_channel_counts(session: DbSession, viewer: Viewer, filters: TimelineFilters) -> dict[str, int]:
    """Items per channel in the feed's filtered window (one aggregate query), in channel order."""
    shape, params = _shape(session, viewer, filters, None, 0)
    del params["limit"]
    stmt = (
        select(Interaction.channel, func.count())
        .where(*_conditions(shape, Interaction.occurred_at, Interaction.id))
        .group_by(Interaction.channel)
    )
    session.flush()
    found = dict(session.connection().execute(stmt, params).all())
    return {c: found[c] for c in CHANNELS if c in found}


@cache
def _item_statement(dialect: str) -> Select[Any]:
    return (
        select(*_item_columns(dialect))
        .outerjoin(User, User.id == Interaction.owner_id)
        .where(Interaction.id == bindparam("interaction_id"))
    )


def get_item(session: DbSession, viewer: Viewer, interaction_id: int) -> dict[str, Any]:
    """One item by id, redacted, with its visibility explanation; 404 when it does not exist.

    A superseded item is returned to everyone who asks for it by id (``superseded_by`` points to the
    correction): it exists, and existing objects are not hidden behind a 404.
    """
    stmt = _item_statement(session.get_bind().dialect.name)
    rows = _fetch_items(session, "item", stmt, {"interaction_id": interaction_id})
    if not rows:
        raise NotFound(f"There is no interaction with id {interaction_id}.")
    return read_record(session, viewer, rows[0], ITEM_SHAPE)


# -- the contact-fatigue strip ------------------------------------------------------------------

def fatigue_strip(session: DbSession, hcp_id: int, now: datetime | None = None) -> dict[str, Any]:
    """Touches in the last 30 and 90 days per channel and per department, and the last item per channel.

    Two aggregate queries. Only contacts the company made are touches (``TOUCH_KINDS``); a superseded
    item is counted once, through its correction. Items dated after ``now`` are not counted.
    """
    now = now or utcnow()
    short, long_ = (now - timedelta(days=d) for d in FATIGUE_WINDOWS)
    p, i = InteractionParticipant, Interaction
    in_short = func.sum(case((p.occurred_at >= short, 1), else_=0))
    counted = (
        select(i.channel, i.owner_role, in_short, func.count())
        .select_from(p).join(i, i.id == p.interaction_id)
        .where(p.hcp_id == hcp_id, p.occurred_at >= long_, p.occurred_at <= now,
               or_(i.channel.in_(EVERY_KIND_TOUCHES),
                   i.kind.in_([k for kinds in TOUCH_KINDS.values() for k in kinds])),
               i.superseded_by_id.is_(None))
        .group_by(i.channel, i.owner_role)
    )
    by_channel = {c: [0, 0] for c in TOUCH_CHANNELS}
    by_department: dict[str, list[int]] = {}
    for channel, department, n_short, n_long in session.execute(counted):
        for bucket in (by_channel.setdefault(channel, [0, 0]), by_department.setdefault(department, [0, 0])):
            bucket[0] += int(n_short or 0)
            bucket[1] += int(n_long)
    latest = (
        select(i.channel, func.max(p.occurred_at))
        .select_from(p).join(i, i.id == p.interaction_id)
        .where(p.hcp_id == hcp_id, p.occurred_at <= now, i.superseded_by_id.is_(None))
        .group_by(i.channel)
    )
    last = sorted(session.execute(latest).all(), key=lambda row: row[1], reverse=True)
    return {
        "hcp_id": hcp_id,
        "as_of": iso_z(now),
        "touches": {"last_30_days": sum(v[0] for v in by_channel.values()),
                    "last_90_days": sum(v[1] for v in by_channel.values())},
        "by_channel": [{"channel": c, "last_30_days": v[0], "last_90_days": v[1]} for c, v in by_channel.items()],
        "by_department": [
            {"department": d, "label": ROLE_LABELS.get(d, d), "last_30_days": v[0], "last_90_days": v[1]}
            for d, v in sorted(by_department.items(), key=lambda kv: (-kv[1][1], kv[0]))
        ],
        "last_by_channel": [{"channel": c, "occurred_at": iso_z(at)} for c, at in last],
    }
