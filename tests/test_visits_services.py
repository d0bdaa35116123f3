"""Visit rules through the services: who may create, edit, submit and amend; what lands on the timeline."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from crm import signals
from crm.access.policy import Viewer, owner_decision
from crm.audit.models import AuditRecord
from crm.db import utcnow
from crm.errors import Conflict, Forbidden, Invalid, NotFound
from crm.timeline.models import Interaction, InteractionParticipant
from crm.visits import services
from crm.visits.models import Visit
from tests.visits_support import SIGNATURE, SIGNATURE_2, WHEN, make_world, visit_data


@pytest.fixture
def w(db, factory):
    return make_world(db, factory)


def create(db, w, user, **kw):
    return services.create_visit(db, user, w.viewer(user), visit_data(kw.pop("hcp_id", w.hcp.id), **kw))


def submit(db, w, user, visit, signature=None):
    return services.submit_visit(db, user, w.viewer(user), visit, signature=signature)


# -- the owner rule (policy, no database) -----------------------------------------------------------

def test_owner_decision_rows():
    owner = Viewer(1, "field_rep")
    other = Viewer(2, "field_rep")
    medic = Viewer(3, "medical")
    assert owner_decision(owner, 1, "visit.edit").allowed
    refused = owner_decision(other, 1, "visit.edit")
    assert not refused.allowed and refused.rule == "visit.edit:owner"
    assert not owner_decision(medic, 1, "visit.amend").allowed
    delegated = owner_decision(medic, 1, "visit.amend", frozenset({"medical"}))
    assert delegated.allowed and delegated.rule == "visit.amend:medical"
    assert not owner_decision(other, None, "visit.edit").allowed


# -- create -----------------------------------------------------------------------------------------

def test_rep_creates_a_draft_in_own_territory(db, w):
    visit = create(db, w, w.rep, samples=[{"sku": "CARDIO-20", "quantity": 2, "lot": "L1"}],
                   follow_up={"date": date(2026, 2, 1), "text": "call back"})
    assert visit.status == "draft" and visit.owner_id == w.rep.id and visit.sensitivity == "standard"
    assert [(s.sku, s.quantity, s.lot) for s in visit.samples] == [("CARDIO-20", 2, "L1")]
    assert visit.follow_up_date == date(2026, 2, 1) and visit.interaction_id is None
    rec = db.scalar(select(AuditRecord).where(AuditRecord.action == "visit.create",
                                              AuditRecord.entity_id == str(visit.id)))
    assert rec is not None and rec.actor_id == w.rep.id


def test_rep_outside_territory_is_refused_with_the_rule(db, w):
    with pytest.raises(Forbidden) as exc:
        create(db, w, w.rep, hcp_id=w.hcp_south.id)
    assert exc.value.rule == "visit.create:territory"


def test_attendee_outside_territory_is_refused(db, w):
    with pytest.raises(Forbidden) as exc:
        create(db, w, w.rep, attendee_hcp_ids=[w.hcp_south.id])
    assert exc.value.rule == "visit.create:territory"


@pytest.mark.parametrize("role", ["marketer", "call_centre", "compliance", "admin"])
def test_other_roles_cannot_log_visits(db, w, role):
    with pytest.raises(Forbidden) as exc:
        create(db, w, getattr(w, role))
    assert exc.value.rule == "visit.create:role"


def test_medical_logs_a_medical_visit_anywhere(db, w):
    visit = create(db, w, w.medical, hcp_id=w.hcp_south.id, attendee_hcp_ids=[w.hcp.id])
    assert visit.sensitivity == "medical"
    submit(db, w, w.medical, visit)
    assert db.get(Interaction, visit.interaction_id).sensitivity == "medical"


def test_unknown_hcp_is_404_and_unknown_attendee_422(db, w):
    with pytest.raises(NotFound):
        create(db, w, w.rep, hcp_id=987654)
    with pytest.raises(Invalid) as exc:
        create(db, w, w.rep, attendee_hcp_ids=[987654])
    assert "attendee_hcp_ids" in exc.value.errors
    with pytest.raises(Invalid) as exc:
        create(db, w, w.rep, attendee_hcp_ids=[w.hcp.id])
    assert "attendee_hcp_ids" in exc.value.errors


def test_merged_hcp_cannot_be_visited(db, w):
    w.hcp2.status, w.hcp2.merged_into_id = "merged", w.hcp.id
    db.flush()
    with pytest.raises(Invalid) as exc:
        create(db, w, w.rep, hcp_id=w.hcp2.id)
    assert f"merged into HCP {w.hcp.id}" in exc.value.errors["hcp_id"][0]


def test_unknown_and_inactive_skus_are_422(db, w):
    with pytest.raises(Invalid) as exc:
        create(db, w, w.rep, products=["NOPE-1", "OLD-1"], samples=[{"sku": "NOPE-2", "quantity": 1, "lot": "x"}])
    assert exc.value.errors["products"] == ["NOPE-1: unknown sku", "OLD-1: product is no longer active"]
    assert exc.value.errors["samples.0.sku"] == ["NOPE-2: unknown sku"]


def test_naive_occurred_at_is_refused(db, w):
    with pytest.raises(Invalid) as exc:
        create(db, w, w.rep, occurred_at=WHEN.replace(tzinfo=None))
    assert "occurred_at" in exc.value.errors


@pytest.mark.parametrize("bad", [
    "data:image/jpeg;base64,AAAA", "data:image/png;base64,not base64!!", "data:image/png;base64,QUJDRA==",
    "data:image/png;base64," + "A" * 300_000,
])
def test_signature_must_be_a_bounded_png_data_url(db, w, bad):
    with pytest.raises(Invalid) as exc:
        create(db, w, w.rep, signature=bad)
    assert "signature" in exc.value.errors


# -- update -----------------------------------------------------------------------------------------

def test_owner_edits_a_draft_and_the_version_moves(db, w):
    visit = create(db, w, w.rep)
    v1 = visit.version
    services.update_visit(db, w.rep, w.viewer(w.rep), visit, {"samples": [{"sku": "CARDIO-10", "quantity": 1,
                                                                             "lot": "A"}]}, expected_version=v1)
    assert visit.version == v1 + 1
    rec = db.scalar(select(AuditRecord).where(AuditRecord.action == "visit.update"))
    assert rec.changes["samples"]["after"] == [{"sku": "CARDIO-10", "quantity": 1, "lot": "A"}]
    with pytest.raises(Conflict):
        services.update_visit(db, w.rep, w.viewer(w.rep), visit, {"notes": "x"}, expected_version=v1)


def test_another_rep_cannot_edit_the_draft(db, w):
    visit = create(db, w, w.rep)
    with pytest.raises(Forbidden) as exc:
        services.update_visit(db, w.rep2, w.viewer(w.rep2), visit, {"notes": "mine now"})
    assert exc.value.rule == "visit.edit:owner"


def test_moving_the_draft_outside_the_territory_is_refused(db, w):
    visit = create(db, w, w.rep)
    with pytest.raises(Forbidden):
        services.update_visit(db, w.rep, w.viewer(w.rep), visit, {"hcp_id": w.hcp_south.id})
    services.update_visit(db, w.rep, w.viewer(w.rep), visit, {"attendee_hcp_ids": [w.hcp2.id]})
    assert [a.hcp_id for a in visit.attendees] == [w.hcp2.id]


def test_changing_samples_drops_the_signature_they_attested(db, w):
    visit = create(db, w, w.rep, samples=[{"sku": "CARDIO-10", "quantity": 1, "lot": "A"}], signature=SIGNATURE)
    assert visit.signature == SIGNATURE
    services.update_visit(db, w.rep, w.viewer(w.rep), visit, {"notes": "unchanged samples",
                                                              "samples": [{"sku": "CARDIO-10", "quantity": 1,
                                                                           "lot": "A"}]})
    assert visit.signature == SIGNATURE
    services.update_visit(db, w.rep, w.viewer(w.rep), visit, {"samples": [{"sku": "CARDIO-10", "quantity": 5,
                                                                           "lot": "A"}]})
    assert visit.signature is None and visit.signed_at is None


def test_a_submitted_visit_is_locked(db, w):
    visit = create(db, w, w.rep)
    submit(db, w, w.rep, visit)
    with pytest.raises(Conflict) as exc:
        services.update_visit(db, w.rep, w.viewer(w.rep), visit, {"notes": "later"})
    assert exc.value.detail == services.LOCKED


# -- submit -----------------------------------------------------------------------------------------

def test_samples_need_a_signature(db, w):
    visit = create(db, w, w.rep, samples=[{"sku": "CARDIO-10", "quantity": 2, "lot": "L9"}])
    with pytest.raises(Invalid) as exc:
        submit(db, w, w.rep, visit)
    assert "signature" in exc.value.errors
    assert visit.status == "draft"
    submit(db, w, w.rep, visit, signature=SIGNATURE)
    assert visit.status == "submitted" and visit.signed_at is not None


def test_submit_records_one_interaction_and_a_second_submit_is_409(db, w):
    received = []

    def listener(sender, **kw):
        received.append((sender, kw["actor"]))

    visit = create(db, w, w.rep, attendee_hcp_ids=[w.hcp2.id], notes="Private remark about the practice")
    with signals.visit_submitted.connected_to(listener):
        submit(db, w, w.rep, visit)
    assert received == [(visit, w.rep)]
    item = db.get(Interaction, visit.interaction_id)
    assert (item.channel, item.kind, item.source, item.external_id) == ("visit", "visit.submitted", "crm",
                                                                        f"visit:{visit.id}")
    assert item.details == visit.as_details() and item.details["notes"] == "Private remark about the practice"
    assert "Private remark" not in item.summary and "Private remark" not in item.safe_summary
    assert "Once daily dosing" in item.summary and "Once daily dosing" not in item.safe_summary
    assert [p.sku for p in item.products] == ["CARDIO-10"]
    assert visit.submitted_at is not None
    with pytest.raises(Conflict):
        submit(db, w, w.rep, visit)
    assert db.query(Interaction).filter_by(external_id=f"visit:{visit.id}").count() == 1


def test_group_visit_is_on_every_participants_timeline(db, w):
    visit = create(db, w, w.rep, attendee_hcp_ids=[w.hcp2.id])
    submit(db, w, w.rep, visit)
    rows = db.scalars(select(InteractionParticipant.hcp_id).where(
        InteractionParticipant.interaction_id == visit.interaction_id)).all()
    assert sorted(rows) == sorted([w.hcp.id, w.hcp2.id])


def test_only_the_owner_submits(db, w):
    visit = create(db, w, w.rep)
    with pytest.raises(Forbidden) as exc:
        submit(db, w, w.rep2, visit)
    assert exc.value.rule == "visit.submit:owner"


def test_a_visit_in_the_future_cannot_be_submitted(db, w):
    visit = create(db, w, w.rep, occurred_at=utcnow() + timedelta(days=1))
    with pytest.raises(Invalid) as exc:
        submit(db, w, w.rep, visit)
    assert "occurred_at" in exc.value.errors


def test_signature_never_in_audit_in_clear(db, w):
    visit = create(db, w, w.rep, samples=[{"sku": "CARDIO-10", "quantity": 2, "lot": "L9"}], signature=SIGNATURE)
    services.update_visit(db, w.rep, w.viewer(w.rep), visit, {"signature": SIGNATURE_2})
    submit(db, w, w.rep, visit)
    payload = SIGNATURE[len("data:image/png;base64,"):]
    for rec in db.scalars(select(AuditRecord)):
        assert payload[:40] not in str(rec.changes)
    created = db.scalar(select(AuditRecord).where(AuditRecord.action == "visit.create"))
    assert created.changes["signature"] == {"before": None, "after": "[personal data withheld]"}


# -- amend ------------------------------------------------------------------------------------------

def test_amendment_needs_a_reason(db, w):
    visit = create(db, w, w.rep)
    submit(db, w, w.rep, visit)
    with pytest.raises(Invalid) as exc:
        services.amend_visit(db, w.rep, w.viewer(w.rep), visit, {"notes": "fixed"}, "   ")
    assert "reason" in exc.value.errors


def test_amendment_supersedes_and_both_are_kept(db, w):
    visit = create(db, w, w.rep)
    submit(db, w, w.rep, visit)
    old_item = db.get(Interaction, visit.interaction_id)
    new = services.amend_visit(db, w.rep, w.viewer(w.rep), visit, {"duration_minutes": 45, "notes": "fixed"},
                               "Wrong duration")
    assert new.id != visit.id and new.amends_id == visit.id and new.status == "submitted"
    assert new.amendment_reason == "Wrong duration" and new.duration_minutes == 45 and visit.duration_minutes == 20
    new_item = db.get(Interaction, new.interaction_id)
    assert old_item.superseded_by_id == new_item.id and new_item.supersedes_id == old_item.id
    assert db.get(Interaction, old_item.id) is not None
    rec = db.scalar(select(AuditRecord).where(AuditRecord.action == "visit.amend"))
    assert rec.reason == "Wrong duration" and rec.entity_id == str(visit.id)
    assert rec.changes["duration_minutes"] == {"before": 20, "after": 45}
    assert rec.changes["amended_by_id"]["after"] == new.id
    with pytest.raises(Conflict):  # amend the latest version, not the old one
        services.amend_visit(db, w.rep, w.viewer(w.rep), visit, {"notes": "again"}, "again")
    newer = services.amend_visit(db, w.rep, w.viewer(w.rep), new, {"notes": "again"}, "Typo")
    assert db.get(Interaction, new.interaction_id).superseded_by_id == newer.interaction_id


def test_amendment_rules(db, w):
    draft = create(db, w, w.rep)
    with pytest.raises(Conflict):
        services.amend_visit(db, w.rep, w.viewer(w.rep), draft, {"notes": "x"}, "why")
    submit(db, w, w.rep, draft)
    with pytest.raises(Forbidden) as exc:
        services.amend_visit(db, w.rep2, w.viewer(w.rep2), draft, {"notes": "x"}, "why")
    assert exc.value.rule == "visit.amend:owner"
    with pytest.raises(Forbidden):  # medical may amend medical visits only
        services.amend_visit(db, w.medical, w.viewer(w.medical), draft, {"notes": "x"}, "why")
    with pytest.raises(Invalid) as exc:
        services.amend_visit(db, w.rep, w.viewer(w.rep), draft, {"notes": draft.notes}, "no change")
    assert "changes" in exc.value.errors
    with pytest.raises(Invalid) as exc:  # new samples need a new signature
        services.amend_visit(db, w.rep, w.viewer(w.rep), draft,
                             {"samples": [{"sku": "CARDIO-10", "quantity": 1, "lot": "Z"}]}, "forgot samples")
    assert "signature" in exc.value.errors
    new = services.amend_visit(db, w.rep, w.viewer(w.rep), draft,
                               {"samples": [{"sku": "CARDIO-10", "quantity": 1, "lot": "Z"}],
                                "signature": SIGNATURE}, "forgot samples")
    assert new.signature == SIGNATURE


def test_medical_amends_a_colleagues_medical_visit(db, w):
    visit = create(db, w, w.medical)
    submit(db, w, w.medical, visit)
    new = services.amend_visit(db, w.medical2, w.viewer(w.medical2), visit, {"notes": "clarified"}, "Clarify")
    assert new.sensitivity == "medical" and new.owner_id == w.medical.id


# -- follow-ups -------------------------------------------------------------------------------------

def test_follow_ups_due(db, w):
    due = create(db, w, w.rep, follow_up={"date": date(2026, 2, 1), "text": "send the study"})
    later = create(db, w, w.rep, hcp_id=w.hcp2.id, follow_up={"date": date(2026, 3, 1), "text": "x"})
    draft = create(db, w, w.rep, follow_up={"date": date(2026, 1, 20), "text": "draft"})
    for v in (due, later):
        submit(db, w, w.rep, v)
    assert services.follow_ups_due(db, w.rep, date(2026, 2, 15)) == [due]
    assert services.follow_ups_due(db, w.rep2, date(2026, 2, 15)) == []
    assert draft.status == "draft"
    # an amendment carries the follow-up forward
    amended = services.amend_visit(db, w.rep, w.viewer(w.rep), due,
                                   {"follow_up": {"date": date(2026, 2, 2), "text": "send it"}}, "date")
    assert services.follow_ups_due(db, w.rep, date(2026, 2, 15)) == [amended]
    # going back to the HCP closes it
    back = create(db, w, w.rep, occurred_at=WHEN + timedelta(days=10))
    submit(db, w, w.rep, back)
    assert services.follow_ups_due(db, w.rep, date(2026, 2, 15)) == []


# -- reading ----------------------------------------------------------------------------------------

def test_medical_visit_content_is_withheld_from_field_force(db, w):
    from crm.timeline.models import SensitiveRead

    visit = create(db, w, w.medical, key_messages=["Off-label question answered"], notes="Detailed answer")
    submit(db, w, w.medical, visit)
    seen = services.visible_visit(db, w.viewer(w.rep), visit)
    assert seen["redacted"] and seen["notes"] is None and seen["key_messages"] == []
    assert seen["redaction_reason"] == "Details restricted to Medical Affairs"
    assert seen["rule"] == "medical-firewall"
    assert db.query(SensitiveRead).count() == 0
    full = services.visible_visit(db, w.viewer(w.compliance), visit)
    assert not full["redacted"] and full["notes"] == "Detailed answer"
    assert db.query(SensitiveRead).filter_by(viewer_id=w.compliance.id, what="visit").count() == 1


def test_list_visits_keyset(db, w):
    made = [create(db, w, w.rep, occurred_at=WHEN + timedelta(hours=i)) for i in range(5)]
    page1, cursor = services.list_visits(db, owner_id=w.rep.id, limit=3)
    page2, end = services.list_visits(db, owner_id=w.rep.id, limit=3, cursor=cursor)
    assert [v.id for v in page1 + page2] == [v.id for v in reversed(made)] and end is None
    assert services.list_visits(db, owner_id=w.rep2.id)[0] == []
    assert {v.id for v in services.list_visits(db, status="submitted")[0]} == set()
    assert isinstance(db.get(Visit, made[0].id), Visit)
