"""Email campaigns: templates (draft -> approved, versioned), audiences, and the consent-checked send.

Rules (SPEC section 6, issue 4):
- A marketer writes templates, audiences and campaigns and sends; compliance approves a template
  version (who, when, which version). An approved version is frozen: an edit makes a new draft version.
- Only a campaign whose template version is approved can be sent (422 otherwise).
- At the send instant consent (email, the template's purpose) is evaluated for the whole audience at
  once (``can_contact_many``); each recipient gets one ``CampaignMessage``: sent, or skipped with the
  rule. A recipient already sent to is never mailed again, however often the campaign is sent.
- Each mail is an ``email.sent`` timeline item (external id ``campaign:<id>:<hcp>``) and a row in the mail
  outbox (``crm.mail``), written in the send's transaction; it is handed over after the commit, each with
  RFC 8058 one-click unsubscribe headers and the platform's custom arguments (``hcp_id``,
  ``campaign_id``) so that its events come back tied to them. The recipient's status follows the
  outbox: ``queued`` until the email adapter took the mail, then ``sent``, or ``failed`` after the retries.
"""

from __future__ import annotations

import email.utils
import json
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app
from sqlalchemy import Integer, and_, case, cast, column, false, func, null, or_, select, update

from crm.access.policy import Viewer, require_write
from crm.audit import services as audit
from crm.campaigns.models import Audience, Campaign, CampaignMessage, EmailEvent, EmailTemplate
from crm.campaigns.rendering import CompiledTemplate, hcp_context, template_errors
from crm.consent.models import PURPOSES
from crm.db import DbSession, among, utcnow
from crm.errors import Conflict, Invalid, NotFound
from crm.hcps.models import HCP
from crm.products.models import Product
from crm.segments.filters import (
    HcpFilter,
    clean_criteria,
    count_matching,
    criteria_errors,
    filter_where,
    matching_ids,
)
from crm.segments.models import Segment

SKIP_TEXT = {
    "already-sent": "Already sent this campaign",
    "no-email-address": "No email address on record",
    "email-invalid": "The email address bounced",
    "no-consent": "No consent for this purpose by email",
    "double-opt-in-pending": "Consent not yet confirmed (double opt-in)",
    "consent-withdrawn": "Consent withdrawn",
    "consent-expired": "Consent expired",
    "hcp-unknown": "No such HCP",
    "hcp-erased": "The HCP's data was erased",
    "hcp-merged": "Merged into another HCP record",
}
TEMPLATE_FIELDS = ("subject", "html_body", "text_body", "purpose", "products", "language")


# -- templates ---------------------------------------------------------------------------------------

def get_template(session: DbSession, template_id: int) -> EmailTemplate:
    template = session.get(EmailTemplate, template_id)
    if template is None:
        raise NotFound(f"Template {template_id} does not exist.")
    return template


def _check_template(session: DbSession, values: dict[str, Any]) -> None:
    errors = template_errors(values["subject"], values["html_body"], values["text_body"])
    for name in ("subject", "html_body", "text_body"):
        if not values[name].strip():
            errors[name] = ["must not be empty"]
    if values["purpose"] not in PURPOSES:
        errors["purpose"] = [f"must be one of {', '.join(PURPOSES)}"]
    language = values["language"]
    if not (2 <= len(language) <= 8) or not language.replace("-", "").isalpha():
        errors["language"] = ["must be a language code such as en or de"]
    skus = list(dict.fromkeys(values["products"]))
    if skus:
        known = set(session.scalars(select(Product.sku).where(Product.sku.in_(skus))))
        unknown = [s for s in skus if s not in known]
        if unknown:
            errors["products"] = [f"unknown product(s): {', '.join(unknown)}"]
    if errors:
        raise Invalid("The template cannot be saved.", errors=errors)


def create_template(session: DbSession, actor: Any, viewer: Viewer, data: dict[str, Any]) -> EmailTemplate:
    """A new template, version 1, as a draft. A name already in use is a conflict (edit that one)."""
    require_write(viewer, "template.write")
    name = data["name"].strip()
    if not name:
        raise Invalid(errors={"name": ["must not be empty"]})
    if session.scalar(select(EmailTemplate.id).where(EmailTemplate.name == name).limit(1)) is not None:
        raise Conflict(f"A template named {name!r} exists; edit it to make a new version.")
    values = {"subject": data["subject"], "html_body": data["html_body"], "text_body": data["text_body"],
              "purpose": data["purpose"], "products": list(dict.fromkeys(data.get("products") or [])),
              "language": data.get("language") or "en"}
    _check_template(session, values)
    template = EmailTemplate(name=name, version=1, status="draft", created_by_id=actor.id, **values)
    session.add(template)
    session.flush()
    audit.record(session, actor, "template.create", "email_template", template.id,
                 audit.created({"name": name, "version": 1, **values}))
    return template


def update_template(session: DbSession, actor: Any, viewer: Viewer, template: EmailTemplate,
                    data: dict[str, Any]) -> tuple[EmailTemplate, bool]:
    """Edit a template. A draft changes in place; an approved version is frozen, so the edit becomes a new
    draft version (``(new, True)``). Editing an approved version while a newer draft exists is a
    conflict: edit that draft instead."""
    require_write(viewer, "template.write")
    values = {k: getattr(template, k) for k in TEMPLATE_FIELDS}
    values.update({k: data[k] for k in TEMPLATE_FIELDS if k in data})
    values["products"] = list(dict.fromkeys(values["products"] or []))
    _check_template(session, values)
    if template.status == "draft":
        before = {k: getattr(template, k) for k in TEMPLATE_FIELDS}
        for key, value in values.items():
            setattr(template, key, value)
        session.flush()
        audit.record(session, actor, "template.update", "email_template", template.id, audit.diff(before, values))
        return template, False
    latest = session.scalar(select(EmailTemplate).where(EmailTemplate.name == template.name)
                            .order_by(EmailTemplate.version.desc()).limit(1))
    assert latest is not None  # noqa: S101  (the template itself is one)
    if latest.status == "draft":
        raise Conflict(f"Version {latest.version} of {template.name!r} is a draft already; edit that one "
                       f"(template {latest.id}).", draft_id=latest.id)
    new = EmailTemplate(name=template.name, version=latest.version + 1, status="draft", created_by_id=actor.id,
                        previous_id=template.id, **values)
    session.add(new)
    session.flush()
    audit.record(session, actor, "template.new_version", "email_template", new.id,
                 audit.created({"name": new.name, "version": new.version, "previous_id": template.id, **values}))
    return new, True


def approve_template(session: DbSession, actor: Any, viewer: Viewer, template: EmailTemplate) -> EmailTemplate:
    """Compliance approves this version (who and when are recorded); from now on it is frozen."""
    require_write(viewer, "template.approve")
    if template.status == "approved":
        raise Conflict(f"Version {template.version} of {template.name!r} is already approved.")
    template.status, template.approved_by, template.approved_at = "approved", actor, utcnow()
    session.flush()
    audit.record(session, actor, "template.approve", "email_template", template.id,
                 audit.diff({"status": "draft"}, {"status": "approved", "name": template.name,
                                                  "version": template.version}))
    return template


def template_versions(session: DbSession, name: str) -> list[EmailTemplate]:
    return list(session.scalars(select(EmailTemplate).where(EmailTemplate.name == name)
                                .order_by(EmailTemplate.version.desc())))


# -- audiences ---------------------------------------------------------------------------------------



def get_audience(session: DbSession, audience_id: int) -> Audience:
    audience = session.get(Audience, audience_id)
    if audience is None:
        raise NotFound(f"Audience {audience_id} does not exist.")
    return audience


def create_audience(session: DbSession, actor: Any, viewer: Viewer, data: dict[str, Any]) -> Audience:
    """Save a filter: a segment (``segment_id``) or criteria of its own, plus explicit HCP ids. At least
    one of them; the segment, professions, territory codes and HCP ids must exist."""
    require_write(viewer, "campaign.write")
    criteria = clean_criteria(data)
    criteria.pop("tiers")  # tiers are a segment's criterion: an audience takes them through its segment
    hcp_ids = list(dict.fromkeys(i for i in (data.get("hcp_ids") or []) if i is not None))
    segment_id = data.get("segment_id")
    errors = criteria_errors(session, criteria)
    if not any(criteria.values()) and not hcp_ids and segment_id is None:
        errors["audience"] = ["choose a segment or at least one criterion (profession, specialty, territory, "
                              "tag or HCP ids)"]
    if segment_id is not None:
        if any(criteria.values()):
            errors["segment_id"] = ["give either a segment or criteria of the audience's own, not both"]
        elif session.get(Segment, segment_id) is None:
            errors["segment_id"] = [f"no segment with id {segment_id}"]
    if hcp_ids:
        known_ids = set(session.scalars(select(HCP.id).where(HCP.id.in_(hcp_ids))))
        missing = [str(i) for i in hcp_ids if i not in known_ids]
        if missing:
            errors["hcp_ids"] = [f"no HCP with id {', '.join(missing[:20])}"]
    name = (data.get("name") or "").strip()
    if not name:
        errors["name"] = ["must not be empty"]
    if errors:
        raise Invalid("The audience cannot be saved.", errors=errors)
    audience = Audience(name=name[:200], created_by_id=actor.id, hcp_ids=hcp_ids, segment_id=segment_id,
                        **criteria)
    session.add(audience)
    session.flush()
    audit.record(session, actor, "audience.create", "audience", audience.id,
                 audit.created({"name": audience.name, **criteria, "segment_id": segment_id,
                                "hcp_count": len(hcp_ids)}))
    return audience


def _audience_where(audience: Audience) -> Any:
    """Who the audience means now: the HCPs its segment or its criteria match (``crm.segments.filters``),
    plus the explicit ids (whatever their state: a merged or erased one is then reported, not silently
    lost). None: nobody."""
    source = audience.segment if audience.segment_id is not None else audience
    where = filter_where(HcpFilter.of(source))
    if audience.hcp_ids:
        explicit = HCP.id.in_(audience.hcp_ids)
        where = explicit if where is None else or_(where, explicit)
    return where


def audience_hcp_ids(session: DbSession, audience: Audience) -> list[int]:
    """The HCPs the audience means now (``_audience_where``), in one query."""
    return matching_ids(session, _audience_where(audience))


def audience_size(session: DbSession, audience: Audience) -> int:
    """How many HCPs the audience means now, counted by the database."""
    return count_matching(session, _audience_where(audience))


@dataclass
class Evaluation:
    """Who of an audience would be mailed now, and who not, with the rule."""

    send: list[int] = field(default_factory=list)
    skipped: list[tuple[int, str]] = field(default_factory=list)  # (hcp_id, rule)
    decisions: dict[int, Any] = field(default_factory=dict)


def evaluate(session: DbSession, hcp_ids: list[int], purpose: str, at: datetime,
             already_sent: frozenset[int] = frozenset()) -> Evaluation:
    """Consent and contact-point checks for a whole audience in a constant number of queries."""
    from crm.consent.services import can_contact_many_with

    out = Evaluation()
    # The contact point is read with the consent state, in the same query. Whether an address is on
    # record is told by its blind index, without decrypting the address.
    out.decisions, contact = can_contact_many_with(session, hcp_ids, "email", purpose, at,
                                                   (HCP.email_bidx.is_not(None), HCP.email_status))
    for hcp_id in hcp_ids:
        decision = out.decisions[hcp_id]
        if hcp_id in already_sent:
            out.skipped.append((hcp_id, "already-sent"))
        elif not decision.allowed:
            out.skipped.append((hcp_id, decision.rule))
        else:
            has_email, status = contact.get(hcp_id, (False, "valid"))
            if not has_email:
                out.skipped.append((hcp_id, "no-email-address"))
            elif status == "invalid":
                out.skipped.append((hcp_id, "email-invalid"))
            else:
                out.send.append(hcp_id)
    return out


@dataclass
class AudienceDecision:
    """Who of an audience may be contacted now, decided by the database (``decide_audience``).

    ``allowed_select``: a ``SELECT`` of one column, the allowed HCP ids (unordered), to be used inside
    the caller's own statements (``INSERT ... SELECT``, ``WHERE id IN (...)``) in the same transaction:
    the allowed set never travels to Python. ``skipped``: ``(hcp_id, rule)`` of everyone else, by id;
    the rules are those of ``SKIP_TEXT``. ``allowed_count``: how many the select yields.
    """

    allowed_select: Any
    skipped: list[tuple[int, str]]
    allowed_count: int


_FOLD = "?fold"  # the state table cannot answer for ``at`` (changed since): decided from the ledger


def decide_audience(session: DbSession, audience_or_ids: Audience | Sequence[int], channel: str, purpose: str,
                    at: datetime | None = None, *, already_sent: Any = None) -> AudienceDecision:
    """The consent (and, for email, contact-point) decision for a whole audience in one SQL statement;
    only the skipped ids and their rules come back. The interface for sends and previews (a background
    send job calls it with ``at`` = its send instant and inserts its recipients from ``allowed_select``).

    ``audience_or_ids``: a saved ``Audience`` (who it means now, ``audience_hcp_ids``) or HCP ids (ids
    that do not exist are skipped as ``hcp-unknown``). ``already_sent``: HCPs never to be contacted
    again: a one-column ``SELECT`` of HCP ids (e.g. the campaign's queued or sent messages) or a
    collection of ids; they are skipped as ``already-sent`` before any other rule.

    The rules are ``evaluate``'s (and ``can_contact_many``'s), in the same order: already sent; unknown,
    erased, merged HCP; the pair's state read from ``consent_states`` (kept in step with the ledger in
    every append's transaction): none, double opt-in pending, withdrawn, expired, and granted past its
    ``valid_until`` at ``at`` is expired; then for email an address on record (its blind index) that has
    not bounced. ``at`` is now by default; an HCP whose state changed after ``at`` is decided from the
    ledger, and an ``at`` more than a second in the past is decided wholly from the ledger (``evaluate``;
    the allowed set then travels as a bound list), as ``can_contact_many`` does.
    """
    from crm.consent.models import ConsentState
    from crm.consent.services import _NOW_SLACK, _check_pair, can_contact_many, can_contact_many_with

    _check_pair(channel, purpose, allow_all=False)
    now = utcnow()
    at = at or now
    explicit = not isinstance(audience_or_ids, Audience)
    if not explicit:
        where = _audience_where(audience_or_ids)  # type: ignore[arg-type]
        if where is None:
            return AudienceDecision(select(HCP.id).where(false()), [], 0)
    ids_list = list(dict.fromkeys(audience_or_ids)) if explicit else []  # type: ignore[arg-type]
    if at < now - _NOW_SLACK:
        ids = ids_list if explicit else audience_hcp_ids(session, audience_or_ids)  # type: ignore[arg-type]
        sent = _already_ids(session, already_sent)
        if channel == "email":
            old = evaluate(session, ids, purpose, at, sent)
            allowed, past = old.send, sorted(old.skipped)
        else:
            decisions = can_contact_many(session, ids, channel, purpose, at)
            allowed = [i for i in ids if i not in sent and decisions[i].allowed]
            past = sorted((i, "already-sent" if i in sent else decisions[i].rule) for i in ids
                             if i in sent or not decisions[i].allowed)
        return AudienceDecision(select(HCP.id).where(among(session, HCP.id, allowed)), past, len(allowed))

    if explicit:
        source = _id_table(session, ids_list)
        hcp_id = source.c.hcp_id
        base: Any = source.outerjoin(HCP, HCP.id == hcp_id)
    else:
        hcp_id = HCP.id
        base = HCP.__table__
    base = base.outerjoin(ConsentState, and_(ConsentState.hcp_id == hcp_id, ConsentState.channel == channel,
                                             ConsentState.purpose == purpose))
    whens: list[Any] = []
    if already_sent is not None:
        sent_condition = (hcp_id.in_(already_sent) if hasattr(already_sent, "subquery")
                          else among(session, hcp_id, sorted(already_sent)))
        whens.append((sent_condition, "already-sent"))
    whens += [
        (HCP.id.is_(None), "hcp-unknown"),
        (HCP.status == "erased", "hcp-erased"),
        (or_(HCP.status == "merged", HCP.merged_into_id.is_not(None)), "hcp-merged"),
        (ConsentState.state.is_(None), "no-consent"),
        (ConsentState.since > at, _FOLD),
        (and_(ConsentState.state == "granted", ConsentState.valid_until.is_not(None),
              ConsentState.valid_until <= at), "consent-expired"),
        (ConsentState.state == "pending", "double-opt-in-pending"),
        (ConsentState.state == "withdrawn", "consent-withdrawn"),
        (ConsentState.state == "expired", "consent-expired"),
        (ConsentState.state != "granted", "no-consent"),
    ]
    if channel == "email":
        whens += [(HCP.email_bidx.is_(None), "no-email-address"), (HCP.email_status == "invalid", "email-invalid")]
    reason = case(*whens, else_=None)
    decided = select(hcp_id.label("hcp_id"), reason.label("reason")).select_from(base)
    if not explicit:
        decided = decided.where(where)
    cte = decided.cte("audience_decision")
    rows = session.execute(
        select(cte.c.hcp_id, cte.c.reason).where(cte.c.reason.is_not(None))
        .union_all(select(func.count(), null()).select_from(cte).where(cte.c.reason.is_(None)))).all()
    allowed_count = 0
    skipped: list[tuple[int, str]] = []
    folded: list[int] = []
    for first, rule in rows:
        if rule is None:
            allowed_count = int(first)
        elif rule == _FOLD:
            folded.append(int(first))
        else:
            skipped.append((int(first), rule))
    allowed_select: Any = select(cte.c.hcp_id).where(cte.c.reason.is_(None))
    if folded:  # rare: a state reached after ``at`` (a moment ago): the ledger answers for ``at``
        columns = (HCP.email_bidx.is_not(None), HCP.email_status)
        decisions, contact = can_contact_many_with(session, folded, channel, purpose, at, columns)
        late: list[int] = []
        for i in folded:
            if not decisions[i].allowed:
                skipped.append((i, decisions[i].rule))
            elif channel == "email" and not contact[i][0]:
                skipped.append((i, "no-email-address"))
            elif channel == "email" and contact[i][1] == "invalid":
                skipped.append((i, "email-invalid"))
            else:
                late.append(i)
        if late:
            allowed_select = select(cte.c.hcp_id).where(or_(
                cte.c.reason.is_(None), and_(cte.c.reason == _FOLD, among(session, cte.c.hcp_id, late))))
            allowed_count += len(late)
        skipped.sort()
    skipped.sort()
    return AudienceDecision(allowed_select, skipped, allowed_count)


def _id_table(session: DbSession, ids: list[int]) -> Any:
    """The ids as a one-column table (``hcp_id``), bound as one parameter (see ``crm.db.among``)."""
    import json as _json

    from sqlalchemy import String, bindparam
    from sqlalchemy.dialects.postgresql import ARRAY

    if session.get_bind().dialect.name == "postgresql":
        values = (func.unnest(bindparam(None, ids, type_=ARRAY(Integer())))
                  .table_valued(column("value", Integer)).render_derived())
        return select(values.c.value.label("hcp_id")).subquery("audience_ids")
    values = func.json_each(bindparam(None, _json.dumps(ids), type_=String())).table_valued("value")
    return select(cast(values.c.value, Integer).label("hcp_id")).subquery("audience_ids")


def _already_ids(session: DbSession, already_sent: Any) -> frozenset[int]:
    if already_sent is None:
        return frozenset()
    if hasattr(already_sent, "subquery"):
        return frozenset(session.scalars(already_sent))
    return frozenset(already_sent)


def preview_audience(session: DbSession, audience: Audience, purpose: str, at: datetime | None = None
                     ) -> dict[str, Any]:
    """How many HCPs the audience holds now and how many a send for ``purpose`` would skip, per rule."""
    if purpose not in PURPOSES:
        raise Invalid(errors={"purpose": [f"must be one of {', '.join(PURPOSES)}"]})
    decision = decide_audience(session, audience, "email", purpose, at or utcnow())
    skipped = Counter(rule for _, rule in decision.skipped)
    return {"audience_id": audience.id, "purpose": purpose, "count": decision.allowed_count + len(decision.skipped),
            "would_send": decision.allowed_count, "skipped": dict(sorted(skipped.items()))}


def _already_sent(campaign_id: int) -> Any:
    """The campaign's recipients pending (accepted, waiting for the send job), queued or handed over: never
    mailed again. A failed mail (it never left) is evaluated again."""
    return select(CampaignMessage.hcp_id).where(CampaignMessage.campaign_id == campaign_id,
                                                CampaignMessage.status.in_(("pending", "queued", "sent")))


def preview_send(session: DbSession, campaign: Campaign, at: datetime | None = None) -> dict[str, Any]:
    """What ``send_campaign`` would do now, without doing it: the audience size, how many would be mailed
    and how many skipped per rule (consent, and those this campaign already mailed), for the confirmation."""
    decision = decide_audience(session, campaign.audience, "email", campaign.template.purpose, at or utcnow(),
                               already_sent=_already_sent(campaign.id))
    skipped = Counter(rule for _, rule in decision.skipped)
    return {"count": decision.allowed_count + len(decision.skipped), "would_send": decision.allowed_count,
            "skipped": dict(sorted(skipped.items()))}


# -- campaigns ---------------------------------------------------------------------------------------

def get_campaign(session: DbSession, campaign_id: int) -> Campaign:
    campaign = session.get(Campaign, campaign_id)
    if campaign is None:
        raise NotFound(f"Campaign {campaign_id} does not exist.")
    return campaign


def create_campaign(session: DbSession, actor: Any, viewer: Viewer, data: dict[str, Any]) -> Campaign:
    """A campaign names one template version and an audience: a saved one (``audience_id``), a filter
    given inline (``audience``) or a segment (``segment_id``); the last two are saved as an audience with
    the campaign's name."""
    require_write(viewer, "campaign.write")
    name = data["name"].strip()
    if not name:
        raise Invalid(errors={"name": ["must not be empty"]})
    template = session.get(EmailTemplate, data["template_id"])
    if template is None:
        raise Invalid(errors={"template_id": [f"no template with id {data['template_id']}"]})
    given = [k for k in ("audience", "audience_id", "segment_id") if data.get(k) is not None]
    if len(given) != 1:
        raise Invalid(errors={"audience": ["give one of audience (a filter), audience_id (a saved one) or "
                                           "segment_id (a segment)"]})
    if data.get("audience_id") is not None:
        audience = session.get(Audience, data["audience_id"])
        if audience is None:
            raise Invalid(errors={"audience_id": [f"no audience with id {data['audience_id']}"]})
    elif data.get("segment_id") is not None:
        audience = create_audience(session, actor, viewer, {"segment_id": data["segment_id"],
                                                            "name": f"{name} audience"})
    else:
        audience = create_audience(session, actor, viewer, {**data["audience"], "name": f"{name} audience"})
    campaign = Campaign(name=name[:200], template_id=template.id, audience_id=audience.id, status="draft",
                        created_by_id=actor.id)
    session.add(campaign)
    session.flush()
    audit.record(session, actor, "campaign.create", "campaign", campaign.id,
                 audit.created({"name": campaign.name, "template_id": template.id, "template_version": template.version,
                                "audience_id": audience.id}))
    return campaign


@dataclass
class SendResult:
    sent: list[int] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    job: Any = None  # the campaign.send job handing the accepted recipients over (None: nobody to mail)


def store_decisions(session: DbSession, model: Any, owner: Any, owner_id: int,
                    outcome: Sequence[tuple[int, str, str | None]], *,
                    columns: Callable[[str | None], dict[str, Any]] | None = None) -> None:
    """Each recipient's decided ``(hcp_id, status, reason)`` of a bulk send (a campaign's, a survey's) as its
    row of ``model`` (``owner`` the column naming the campaign or survey), set-based: the new rows in one
    insert that skips those already there, and the rows already there updated once per (status, reason),
    only while they are ``skipped`` or ``failed`` (a pending, queued or sent one is never decided again).
    ``columns(reason)``: more columns written with each row (e.g. the skip's text)."""
    from crm.db import insert_ignoring_conflicts

    def extra(reason: str | None) -> dict[str, Any]:
        return columns(reason) if columns is not None else {}

    inserted = {row[0] for row in insert_ignoring_conflicts(
        session, model.__table__,
        [{owner.key: owner_id, "hcp_id": h, "status": status, "reason": reason, **extra(reason)}
         for h, status, reason in outcome], [owner.key, "hcp_id"], ["hcp_id"])}
    again: dict[tuple[str, str | None], list[int]] = defaultdict(list)
    for h, status, reason in outcome:
        if h not in inserted:
            again[(status, reason)].append(h)
    for (status, reason), hcp_ids in again.items():
        session.execute(update(model).where(owner == owner_id, among(session, model.hcp_id, hcp_ids),
                                            model.status.in_(("skipped", "failed")))
                        .values(status=status, reason=reason, updated_at=utcnow(), **extra(reason))
                        .execution_options(synchronize_session=False))


def _skip_detail(reason: str | None) -> dict[str, Any]:
    """The ``detail`` column of a campaign recipient: the skip rule's text (none when accepted)."""
    return {"detail": None if reason is None else SKIP_TEXT.get(reason, reason)[:300]}


def queue_send_job(session: DbSession, actor: Any, kind: str, model: Any, owner: Any, owner_id: int,
                   at: datetime | None) -> Any:
    """The ``kind`` job (``campaign.send``, ``survey.send``) that hands the pending recipients of a bulk send
    to the mail outbox after the commit, or None when nobody is pending."""
    from crm.jobs import services as jobs

    pending = session.scalar(select(func.count()).select_from(model).where(
        owner == owner_id, model.status == "pending")) or 0
    if not pending:
        return None
    name = kind.partition(".")[0]
    return jobs.create(session, actor, kind, {f"{name}_id": owner_id, "at": at.isoformat() if at else None},
                       subject=f"{name}:{owner_id}", total=pending)


def _mail_domain() -> str:
    from_addr = current_app.config["CRM_MAIL_FROM"]
    return email.utils.parseaddr(from_addr)[1].rpartition("@")[2] or "localhost"


def send_campaign(session: DbSession, actor: Any, viewer: Viewer, campaign: Campaign, *,
                  at: datetime | None = None) -> SendResult:
    """Accept a send of the campaign: decide now who may be mailed (see the module's rules) and leave the
    mailing to a job (crm/campaigns/sending.py), which answers at once however large the audience.

    The consent decision for the whole audience is made here, set-based (``evaluate``). The recipients to
    mail are stored as ``pending`` rows in a few set-based statements, those skipped with their rule, and
    a ``campaign.send`` job is created; it hands the pending rows to the mail outbox in batches after the
    commit. ``result.sent`` are the recipients accepted for sending.

    Two sends of one campaign at once are serialised on the campaign row, and ``campaign_messages`` is
    unique per recipient: a recipient pending, queued or sent is never accepted again; one skipped before
    (no consent then) or whose mail failed is evaluated again and may be accepted this time.
    ``at`` is the send instant: now, except for the demo loader, which replays sends of the past.
    """
    require_write(viewer, "campaign.write")
    session.execute(select(Campaign.id).where(Campaign.id == campaign.id).with_for_update())
    template = campaign.template
    if template.status != "approved":
        raise Invalid(f"Version {template.version} of template {template.name!r} is not approved; compliance "
                      "must approve it before the campaign can be sent.",
                      errors={"template_id": ["the template version is not approved"]})
    now = at or utcnow()
    # The consent decision is the database's (decide_audience): only the skipped come back with their rule;
    # the recipients are stored as pending rows and handed to the outbox by the send job, in batches.
    decision = decide_audience(session, campaign.audience, "email", template.purpose, now,
                               already_sent=_already_sent(campaign.id))
    send = list(session.scalars(decision.allowed_select))
    result = SendResult(sent=send)
    result.skipped = [{"hcp_id": h, "reason": rule, "detail": SKIP_TEXT.get(rule, rule)}
                      for h, rule in decision.skipped]
    store_decisions(session, CampaignMessage, CampaignMessage.campaign_id, campaign.id,
                    [(h, "skipped", rule) for h, rule in decision.skipped if rule != "already-sent"]
                    + [(h, "pending", None) for h in send],
                    columns=_skip_detail)
    campaign.status, campaign.last_sent_at = "sent", now
    session.flush()
    skipped_by_rule = Counter(s["reason"] for s in result.skipped)
    audit.record(session, actor, "campaign.send", "campaign", campaign.id, audit.created({
        "template_id": template.id, "template_version": template.version, "purpose": template.purpose,
        "audience": len(send) + len(decision.skipped), "sent": len(result.sent),
        "skipped": dict(sorted(skipped_by_rule.items())),
    }))
    result.job = queue_send_job(session, actor, "campaign.send", CampaignMessage, CampaignMessage.campaign_id,
                                campaign.id, at)
    return result


def _build_mails(session: DbSession, campaign: Campaign, template: EmailTemplate, hcps: list[HCP]) -> list[Any]:
    """Each recipient's mail, rendered now (inside the transaction, with its own unsubscribe link)."""
    from crm.consent.services import unsubscribe_link
    from crm.integrations.email import EmailMessage

    if not hcps:
        return []
    compiled = CompiledTemplate(template.subject, template.html_body, template.text_body)
    domain = _mail_domain()
    out = []
    for hcp in hcps:
        url, headers = unsubscribe_link(session, hcp.id, template.purpose, f"campaign:{campaign.id}")
        rendered = compiled.render(hcp_context(hcp), url)
        headers["X-SMTPAPI"] = json.dumps(
            {"unique_args": {"hcp_id": str(hcp.id), "campaign_id": str(campaign.id)}}, separators=(",", ":"))
        out.append(EmailMessage(to=hcp.email or "", subject=rendered.subject, text=rendered.text,
                                html=rendered.html, headers=headers,
                                message_id=email.utils.make_msgid(idstring=f"c{campaign.id}h{hcp.id}",
                                                                  domain=domain)))
    return out


def _enqueue(session: DbSession, campaign_id: int, mails: list[tuple[CampaignMessage, Any]]) -> None:
    """Each mail into the outbox, tied to its recipient row; handed over after the commit."""
    from crm.mail.services import OutgoingMail, enqueue_many

    rows = enqueue_many(session, [OutgoingMail(mail, f"campaign:{campaign_id}:{message.hcp_id}",
                                               hcp_id=message.hcp_id, campaign_message_id=message.id)
                                  for message, mail in mails], kind="campaign")
    for (message, _mail), row in zip(mails, rows, strict=True):
        message.message_id = row.message_id  # a mail tried before keeps its Message-ID
    session.flush()


# -- the funnel --------------------------------------------------------------------------------------

FUNNEL_EVENTS = {"delivered": ("delivered",), "opened": ("open",), "clicked": ("click",),
                 "bounced": ("bounce", "dropped"), "unsubscribed": ("unsubscribe", "group_unsubscribe"),
                 "spam_reports": ("spamreport",)}


def funnel(session: DbSession, campaign: Campaign) -> dict[str, Any]:
    """Audience, skipped per rule, sent, and the distinct HCPs per engagement step."""
    return funnels(session, [campaign.id])[campaign.id]


def funnels(session: DbSession, campaign_ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """``funnel`` for a page of campaigns in a fixed number of grouped queries (not a few per campaign)."""
    ids = list(dict.fromkeys(campaign_ids))
    if not ids:
        return {}
    statuses: dict[int, dict[str, int]] = defaultdict(dict)
    for cid, status, n in session.execute(
            select(CampaignMessage.campaign_id, CampaignMessage.status, func.count())
            .where(among(session, CampaignMessage.campaign_id, ids))
            .group_by(CampaignMessage.campaign_id, CampaignMessage.status)):
        statuses[cid][status] = n
    skipped: dict[int, dict[str, int]] = defaultdict(dict)
    for cid, reason, n in session.execute(
            select(CampaignMessage.campaign_id, CampaignMessage.reason, func.count())
            .where(among(session, CampaignMessage.campaign_id, ids), CampaignMessage.status == "skipped")
            .group_by(CampaignMessage.campaign_id, CampaignMessage.reason)):
        skipped[cid][str(reason)] = n
    steps: dict[int, dict[str, int]] = defaultdict(dict)
    for step, types in FUNNEL_EVENTS.items():  # distinct HCPs per step: one grouped query each
        for event_cid, n in session.execute(
                select(EmailEvent.campaign_id, func.count(func.distinct(EmailEvent.hcp_id)))
                .where(among(session, EmailEvent.campaign_id, ids), EmailEvent.hcp_id.is_not(None),
                       EmailEvent.event_type.in_(types))
                .group_by(EmailEvent.campaign_id)):
            if event_cid is not None:
                steps[event_cid][step] = n
    out: dict[int, dict[str, Any]] = {}
    for cid in ids:
        sent, skips = statuses[cid].get("sent", 0), statuses[cid].get("skipped", 0)
        # pending (the send job has not reached it yet) and queued (in the mail outbox): both wait
        queued = statuses[cid].get("queued", 0) + statuses[cid].get("pending", 0)
        failed = statuses[cid].get("failed", 0)
        out[cid] = {"audience": sent + skips + queued + failed, "skipped": dict(sorted(skipped[cid].items())),
                    "queued": queued, "sent": sent, "failed": failed,
                    **{step: steps[cid].get(step, 0) for step in FUNNEL_EVENTS}}
    return out


def recipients(session: DbSession, campaign: Campaign, limit: int, after_hcp_id: int | None
               ) -> tuple[list[dict[str, Any]], int | None]:
    """The per-HCP list: outcome of the send and what the platform reported since, keyset by HCP id."""
    query = (select(CampaignMessage, HCP.first_name, HCP.last_name)
             .join(HCP, HCP.id == CampaignMessage.hcp_id)
             .where(CampaignMessage.campaign_id == campaign.id).order_by(CampaignMessage.hcp_id).limit(limit + 1))
    if after_hcp_id is not None:
        query = query.where(CampaignMessage.hcp_id > after_hcp_id)
    rows = session.execute(query).all()
    more = len(rows) > limit
    rows = rows[:limit]
    ids = [m.hcp_id for m, _f, _l in rows]
    engagement: dict[int, list[str]] = {}
    if ids:
        for hcp_id, event_type in session.execute(
                select(EmailEvent.hcp_id, EmailEvent.event_type).distinct()
                .where(EmailEvent.campaign_id == campaign.id, EmailEvent.hcp_id.in_(ids))
                .order_by(EmailEvent.hcp_id, EmailEvent.event_type)):
            if hcp_id is not None:
                engagement.setdefault(hcp_id, []).append(event_type)
    items = [{"hcp_id": m.hcp_id, "name": f"{first} {last}", "status": m.status, "reason": m.reason,
              "detail": m.detail, "message_id": m.message_id, "sent_at": m.sent_at,
              "events": engagement.get(m.hcp_id, [])} for m, first, last in rows]
    return items, (ids[-1] if more and ids else None)
