"""The visit form pages: render, save a draft, submit with a signature, errors that keep what was typed."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from crm.timeline.models import Interaction
from crm.visits.models import Visit
from tests.visits_support import SIGNATURE, make_world


@pytest.fixture
def w(db, factory):
    return make_world(db, factory)


def form(token, hcp_id=None, action="save", **kw):
    data = MultiDict({
        "csrf_token": token, "occurred_at": "2026-01-12T10:30", "tz_choice": "", "tz_offset": "60",
        "duration_minutes": "25", "mode": "in_person", "key_messages": "Once daily\n\nFewer side effects\n",
        "notes": "Good talk", "follow_up_date": "2026-02-01", "follow_up_text": "Send the study",
        "attendee_hcp_ids": "", "signature": "", "action": action,
    })
    data.setlist("products", ["CARDIO-10"])
    data.setlist("sample_sku", [""])
    data.setlist("sample_quantity", [""])
    data.setlist("sample_lot", [""])
    if hcp_id is not None:
        data["hcp_id"] = str(hcp_id)
    for key, value in kw.items():
        if isinstance(value, list):
            data.setlist(key, value)
        else:
            data[key] = value
    return data


def test_the_form_renders_for_a_rep(client, auth, w):
    auth.login(w.rep)
    resp = client.get(f"/visits/new?hcp_id={w.hcp.id}")
    page = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert w.hcp.full_name in page and 'name="csrf_token"' in page
    assert 'class="sigpad" data-signature-input="signature"' in page and 'data-signature-clear="signature"' in page
    assert 'name="tz_offset"' in page and 'name="sample_sku"' in page and "Cardiozen 10 mg" in page
    assert "Retired product" not in page
    assert "signature-pad.js" in page and "visit.js" in page
    assert "<script>" not in page and "style=" not in page  # CSP: no inline script or style
    for script in ("signature-pad.js", "visit.js"):
        served = client.get(f"/static/{script}")
        assert served.status_code == 200 and b"addEventListener" in served.data
        served.close()


def test_the_form_refuses_roles_and_territories_up_front(client, auth, w):
    auth.login(w.rep)
    assert client.get(f"/visits/new?hcp_id={w.hcp_south.id}").status_code == 403
    auth.logout()
    auth.login(w.marketer)
    resp = client.get(f"/visits/new?hcp_id={w.hcp.id}")
    assert resp.status_code == 403 and "visit.create" in resp.get_data(as_text=True)


def test_post_with_csrf_creates_a_draft(client, auth, w, db):
    auth.login(w.rep)
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    resp = client.post("/visits/new", data=form(token, w.hcp.id))
    assert resp.status_code == 302, resp.get_data(as_text=True)
    visit = db.query(Visit).filter_by(owner_id=w.rep.id).one()
    assert resp.headers["Location"].endswith(f"/visits/{visit.id}")
    assert visit.status == "draft" and visit.occurred_at.isoformat() == "2026-01-12T09:30:00+00:00"
    assert visit.key_messages == ["Once daily", "Fewer side effects"] and visit.products == ["CARDIO-10"]
    assert visit.samples == [] and visit.follow_up_text == "Send the study" and visit.duration_minutes == 25
    page = client.get(f"/visits/{visit.id}").get_data(as_text=True)
    assert 'data-utc="2026-01-12T09:30:00Z"' in page and "Good talk" in page
    assert "Draft saved." in page


def test_post_without_csrf_is_400(client, auth, w, db):
    auth.login(w.rep)
    data = form("", w.hcp.id)
    del data["csrf_token"]
    assert client.post("/visits/new", data=data).status_code == 400
    assert db.query(Visit).count() == 0


def test_missing_time_zone_is_an_error_not_a_guess(client, auth, w, db):
    auth.login(w.rep)
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    resp = client.post("/visits/new", data=form(token, w.hcp.id, tz_offset=""))
    assert resp.status_code == 422
    assert "choose your UTC offset" in resp.get_data(as_text=True)
    assert db.query(Visit).count() == 0
    chosen = client.post("/visits/new", data=form(token, w.hcp.id, tz_offset="", tz_choice="-300"))
    assert chosen.status_code == 302
    assert db.query(Visit).one().occurred_at.isoformat() == "2026-01-12T15:30:00+00:00"


def test_samples_without_signature_show_the_message_and_keep_the_input(client, auth, w, db):
    auth.login(w.rep)
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    data = form(token, w.hcp.id, action="submit", sample_sku=["CARDIO-20", ""], sample_quantity=["3", ""],
                sample_lot=["LOT-42", ""], notes="Typed with care")
    resp = client.post("/visits/new", data=data)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 422
    assert "the HCP&#39;s signature is required to submit" in page
    assert "Typed with care" in page and 'value="LOT-42"' in page and 'value="3"' in page
    assert db.query(Visit).count() == 0  # nothing half-saved


def test_submit_with_signature_redirects_to_the_hcp_page(client, auth, w, db):
    auth.login(w.rep)
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    data = form(token, w.hcp.id, action="submit", sample_sku=["CARDIO-20"], sample_quantity=["3"],
                sample_lot=["LOT-42"], signature=SIGNATURE, attendee_hcp_ids=f"{w.hcp2.id}")
    resp = client.post("/visits/new", data=data)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    assert resp.headers["Location"].endswith(f"/hcps/{w.hcp.id}")
    visit = db.query(Visit).one()
    assert visit.status == "submitted" and visit.signature == SIGNATURE
    assert [a.hcp_id for a in visit.attendees] == [w.hcp2.id]
    assert db.get(Interaction, visit.interaction_id).kind == "visit.submitted"
    page = client.get(f"/visits/{visit.id}").get_data(as_text=True)
    assert SIGNATURE[30:90] not in page and "Signed by the HCP." in page


def test_edit_a_draft_then_submit_it(client, auth, w, db):
    auth.login(w.rep)
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    client.post("/visits/new", data=form(token, w.hcp.id))
    visit = db.query(Visit).one()
    edit = form(token, notes="Edited", version=str(visit.version), tz_choice="0", tz_offset="",
                occurred_at="2026-01-12T09:30", action="submit")
    resp = client.post(f"/visits/{visit.id}", data=edit)
    assert resp.status_code == 302, resp.get_data(as_text=True)
    db.refresh(visit)
    assert visit.status == "submitted" and visit.notes == "Edited"
    locked = client.post(f"/visits/{visit.id}", data=edit)
    assert locked.status_code == 409 and "amend instead" in locked.get_data(as_text=True)


def test_another_rep_sees_the_draft_read_only_and_cannot_post(client, auth, w, db):
    auth.login(w.rep)
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    client.post("/visits/new", data=form(token, w.hcp.id))
    visit = db.query(Visit).one()
    auth.logout()
    auth.login(w.rep2)
    page = client.get(f"/visits/{visit.id}").get_data(as_text=True)
    assert 'id="visit-form"' not in page and "Good talk" in page
    token = auth.csrf_token("/visits")
    resp = client.post(f"/visits/{visit.id}", data=form(token, notes="Hijacked", version=str(visit.version)))
    assert resp.status_code == 403
    db.refresh(visit)
    assert visit.notes == "Good talk"


def test_medical_visit_page_is_redacted_for_a_rep(client, auth, w, db):
    auth.login(w.medical)
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    client.post("/visits/new", data=form(token, w.hcp.id, notes="Medical detail", action="submit"))
    visit = db.query(Visit).one()
    auth.logout()
    auth.login(w.rep)
    page = client.get(f"/visits/{visit.id}").get_data(as_text=True)
    assert "Medical detail" not in page and "Details restricted to Medical Affairs" in page


def test_my_visits_lists_drafts(client, auth, w, db):
    auth.login(w.rep)
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    client.post("/visits/new", data=form(token, w.hcp.id))
    visit = db.query(Visit).one()
    page = client.get("/visits").get_data(as_text=True)
    assert f"/visits/{visit.id}" in page and w.hcp.full_name in page
    assert 'href="/visits"' in client.get("/").get_data(as_text=True)  # in the rep's navigation


def test_from_a_submitted_visit_the_rep_takes_an_order_or_captures_consent(client, auth, w, db):
    auth.login(w.rep)
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    assert client.post("/visits/new", data=form(token, w.hcp.id, action="submit")).status_code == 302
    visit = db.query(Visit).one()
    page = client.get(f"/visits/{visit.id}").get_data(as_text=True)
    assert f"/hcps/{w.hcp.id}/orders/new?visit_id={visit.id}" in page
    assert f"/hcps/{w.hcp.id}/consents/capture" in page
    assert client.get(f"/hcps/{w.hcp.id}/orders/new?visit_id={visit.id}").status_code == 200
    # another rep reading the visit is not offered the owner's actions
    auth.logout()
    auth.login(w.rep2)
    assert "Take an order in this visit" not in client.get(f"/visits/{visit.id}").get_data(as_text=True)


def _notice(db):
    from crm.consent.services import activate_notice, create_notice

    return activate_notice(db, None, create_notice(db, None, language="en", title="How we contact you",
                                                   text="We would like to contact you."))


def test_consent_given_in_the_visit_is_on_the_ledger_with_the_signature(client, auth, w, db):
    from crm.consent.models import ConsentEvent
    from crm.consent.services import can_contact, read_evidence

    notice = _notice(db)
    auth.login(w.rep)
    page = client.get(f"/visits/new?hcp_id={w.hcp.id}").get_data(as_text=True)
    assert "Consent in this visit" in page and notice.version in page
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    data = form(token, w.hcp.id, action="submit", consent_grant=["visit:promotional"], consent_signature=SIGNATURE)
    assert client.post("/visits/new", data=data).status_code == 302
    visit = db.query(Visit).one()
    event = db.query(ConsentEvent).filter_by(hcp_id=w.hcp.id, channel="visit").one()
    assert (event.event_type, event.source, event.notice_version) == ("granted", "visit", notice.version)
    assert event.occurred_at == visit.occurred_at and read_evidence(event)["signature"] == SIGNATURE
    assert can_contact(db, w.hcp.id, "visit", "promotional", at=visit.occurred_at).allowed
    # the visit was allowed: the consent given in it counts
    assert db.get(Interaction, visit.interaction_id).consent_gap is False


def test_consent_without_the_signature_is_refused_and_nothing_is_saved(client, auth, w, db):
    from crm.consent.models import ConsentEvent

    _notice(db)
    auth.login(w.rep)
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    resp = client.post("/visits/new", data=form(token, w.hcp.id, action="submit", consent_grant=["visit:promotional"]))
    assert resp.status_code == 422
    assert "must sign the notice" in resp.get_data(as_text=True)
    assert db.query(Visit).count() == 0 and db.query(ConsentEvent).count() == 0


def test_withdrawal_in_a_visit_needs_no_evidence_and_follows_the_visit(client, auth, w, db):
    from crm.consent.models import ConsentEvent

    _notice(db)
    auth.login(w.rep)
    token = auth.csrf_token(f"/visits/new?hcp_id={w.hcp.id}")
    resp = client.post("/visits/new", data=form(token, w.hcp.id, action="submit",
                                                consent_withdraw=["email:promotional"]))
    assert resp.status_code == 302
    visit = db.query(Visit).one()
    event = db.query(ConsentEvent).filter_by(hcp_id=w.hcp.id).one()
    assert (event.event_type, event.channel, event.purpose, event.source) == (
        "withdrawn", "email", "promotional", "visit")
    assert event.occurred_at > visit.occurred_at


def test_the_consent_section_is_for_reps_with_an_active_notice(client, auth, w, db):
    auth.login(w.rep)
    assert "Consent in this visit" not in client.get(f"/visits/new?hcp_id={w.hcp.id}").get_data(as_text=True)
    _notice(db)
    auth.logout()
    auth.login(w.medical)
    assert "Consent in this visit" not in client.get(f"/visits/new?hcp_id={w.hcp.id}").get_data(as_text=True)
