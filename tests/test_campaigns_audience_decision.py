"""The audience decision in SQL (``decide_audience``) decides exactly as the per-HCP one (``evaluate``).

A randomized population (hypothesis): HCPs active, erased or merged, with or without an address, bounced
or not, with ledgers of grants (some lapsed), double opt-in requests and confirmations, withdrawals of
one purpose or of all, events copied from a merged duplicate (another record), events a moment after
the decision instant (the state table cannot answer for it), some already sent, some ids unknown.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from crm.campaigns import services
from crm.campaigns.models import Audience
from crm.consent import services as consent
from crm.consent.models import ConsentEvent
from crm.db import utcnow

EVENT = st.tuples(
    st.sampled_from(["granted", "requested", "confirmed", "withdrawn"]),
    st.sampled_from(["promotional", "events", "all"]),  # the pair's purpose, another one, or every purpose
    st.sampled_from(["email", "email", "all", "phone"]),
    st.sampled_from([-1, 0, 10, 400, 750, 900]),  # days ago; -1: a moment after the decision instant
    st.integers(min_value=1, max_value=800),  # validity of a grant, days
    st.booleans(),  # captured on another record (a merged duplicate)
)
PERSON = st.fixed_dictionaries({
    "status": st.sampled_from(["active", "active", "active", "erased", "merged"]),
    "email": st.booleans(),
    "bounced": st.booleans(),
    "sent": st.booleans(),
    "events": st.lists(EVENT, max_size=4),
})


def _populate(db: Any, factory: Any, people: list[dict[str, Any]]) -> tuple[list[int], frozenset[int]]:
    now = utcnow()
    ids: list[int] = []
    sent: set[int] = set()
    for person in people:
        values: dict[str, Any] = {"email_status": "invalid" if person["bounced"] else "valid"}
        if not person["email"]:
            values["email"] = None
        if person["status"] == "merged" and ids:
            values.update(status="merged", merged_into_id=ids[0])
        elif person["status"] == "erased":
            values["status"] = "erased"
        hcp = factory.hcp(**values)
        ids.append(hcp.id)
        if person["sent"]:
            sent.add(hcp.id)
        request_id = None
        for kind, purpose, channel, days, validity, other_record in person["events"]:
            at = now + timedelta(seconds=1) if days < 0 else now - timedelta(days=days, seconds=7)
            event = ConsentEvent(
                hcp_id=hcp.id, origin_hcp_id=hcp.id + 1_000_000 if other_record else hcp.id, channel=channel,
                purpose=purpose, event_type=kind, occurred_at=at, recorded_at=min(at, now), source="import",
                captured_by_role="system",
                valid_until=at + timedelta(days=validity) if kind in ("granted", "confirmed") else None,
                refers_to_event_id=request_id if kind == "confirmed" else None)
            db.add(event)
            db.flush()
            if kind == "requested":
                request_id = event.id
        consent.rebuild_states(db, hcp.id)
    return ids, frozenset(sent)


def _old(db: Any, ids: list[int], purpose: str, at: Any, sent: frozenset[int]) -> tuple[set[int], dict[int, str]]:
    result = services.evaluate(db, ids, purpose, at, sent)
    return set(result.send), dict(result.skipped)


def _new(db: Any, decision: services.AudienceDecision) -> tuple[set[int], dict[int, str]]:
    allowed = set(db.scalars(decision.allowed_select))
    assert decision.allowed_count == len(allowed)
    assert not allowed & {i for i, _ in decision.skipped}
    return allowed, dict(decision.skipped)


def _person(status: str = "active", email: bool = True, bounced: bool = False, sent: bool = False,
            events: tuple[Any, ...] = ()) -> dict[str, Any]:
    return {"status": status, "email": email, "bounced": bounced, "sent": sent, "events": list(events)}


GRANT = ("granted", "events", "email", 10, 400, False)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(people=st.lists(PERSON, min_size=1, max_size=8), unknown=st.integers(min_value=0, max_value=2),
       purpose=st.sampled_from(["promotional", "events"]), lag=st.booleans())
# Every rule at least once, whatever hypothesis draws: allowed, bounced, no address, already sent, erased,
# merged, lapsed, withdrawn for all purposes, pending, a duplicate's withdrawal, a change after the instant.
@example(people=[_person(events=(GRANT,)), _person(bounced=True, events=(GRANT,)),
                 _person(email=False, events=(GRANT,)), _person(sent=True, events=(GRANT,)),
                 _person(status="erased", events=(GRANT,)), _person(status="merged", events=(GRANT,)),
                 _person(events=(("granted", "events", "email", 400, 10, False),)),
                 _person(events=(GRANT, ("withdrawn", "all", "all", 0, 1, False))),
                 _person(events=(("requested", "events", "email", 0, 1, False),)),
                 _person(events=(GRANT, ("withdrawn", "events", "email", 10, 1, True))),
                 _person(events=(GRANT, ("withdrawn", "events", "email", -1, 1, False)))],
         unknown=1, purpose="events", lag=True)
@example(people=[_person(events=(GRANT,)), _person(bounced=True, events=(GRANT,))], unknown=0, purpose="events",
         lag=False)
def test_decide_audience_decides_as_evaluate_on_a_random_population(db, factory, people, unknown, purpose, lag):
    savepoint = db.begin_nested()
    try:
        ids, sent = _populate(db, factory, people)
        ids += [max(ids) + 10_000 + n for n in range(unknown)]
        # lag: the instant is a moment ago, so HCPs whose state changed since are folded from the ledger
        at = utcnow() - timedelta(milliseconds=300) if lag else utcnow()
        old = _old(db, ids, purpose, at, sent)
        assert _new(db, services.decide_audience(db, ids, "email", purpose, at, already_sent=sent)) == old
        # the same population as a saved audience (criteria plus explicit ids), already-sent as a SELECT
        audience = Audience(name="random", professions=["gp"], specialties=[], territory_codes=[], tags=[],
                            hcp_ids=ids[::2])
        db.add(audience)
        db.flush()
        members = services.audience_hcp_ids(db, audience)
        already = select(ConsentEvent.hcp_id).where(ConsentEvent.hcp_id.in_(sorted(sent)))  # any id SELECT
        sent_now = frozenset(db.scalars(already))
        assert _new(db, services.decide_audience(db, audience, "email", purpose, at, already_sent=already)) == _old(
            db, members, purpose, at, sent_now)
    finally:
        savepoint.rollback()


def test_a_past_instant_is_decided_from_the_ledger(db, factory):
    """A grant given now did not hold a day ago: the past is folded from the ledger, not read from the state."""
    from tests.campaigns_support import email_consent

    hcp = factory.hcp()
    email_consent(db, hcp, "events")
    now = services.decide_audience(db, [hcp.id], "email", "events")
    yesterday = services.decide_audience(db, [hcp.id], "email", "events", utcnow() - timedelta(days=1))
    assert (now.allowed_count, now.skipped) == (1, [])
    assert (yesterday.allowed_count, yesterday.skipped) == (0, [(hcp.id, "no-consent")])
    assert list(db.scalars(now.allowed_select)) == [hcp.id]
    assert list(db.scalars(yesterday.allowed_select)) == []


def test_the_allowed_set_feeds_an_insert_select_and_only_skipped_come_back(db, factory):
    """The interface a send job uses: INSERT ... SELECT from ``allowed_select`` in the same transaction."""
    from sqlalchemy import insert, literal

    from crm.timeline.models import Interaction, InteractionParticipant
    from tests.campaigns_support import email_consent

    allowed = [factory.hcp() for _ in range(3)]
    for hcp in allowed:
        email_consent(db, hcp, "events")
    no_address = factory.hcp(email=None)
    email_consent(db, no_address, "events")
    nothing = factory.hcp()
    decision = services.decide_audience(db, [h.id for h in [*allowed, no_address, nothing]], "email", "events")
    assert decision.skipped == sorted([(no_address.id, "no-email-address"), (nothing.id, "no-consent")])
    item = Interaction(occurred_at=utcnow(), channel="email", kind="email.sent", source="crm", summary="s",
                       safe_summary="s", details={}, owner_role="system")
    db.add(item)
    db.flush()
    db.execute(insert(InteractionParticipant).from_select(
        ["interaction_id", "hcp_id", "occurred_at", "channel", "kind"],
        select(literal(item.id), decision.allowed_select.subquery().c.hcp_id,
               literal(item.occurred_at, InteractionParticipant.occurred_at.type), literal(item.channel),
               literal(item.kind))))
    assert sorted(db.scalars(select(InteractionParticipant.hcp_id).where(
        InteractionParticipant.interaction_id == item.id))) == sorted(h.id for h in allowed)


def test_an_unknown_channel_or_purpose_is_refused(db):
    import pytest

    from crm.errors import Invalid

    with pytest.raises(Invalid):
        services.decide_audience(db, [1], "email", "gossip")
    with pytest.raises(Invalid):
        services.decide_audience(db, [1], "pigeon", "events")


def test_an_empty_audience_allows_nobody(db):
    decision = services.decide_audience(db, [], "email", "events")
    assert (decision.allowed_count, decision.skipped, list(db.scalars(decision.allowed_select))) == (0, [], [])
