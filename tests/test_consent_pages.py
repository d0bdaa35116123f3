"""Consent pages: the public token pages (no login) and the staff pages."""

from __future__ import annotations

import csv
import io
import json
import secrets
from datetime import timedelta

import pytest

from crm.consent import services, tokens
from crm.consent.models import ConsentEvent, ConsentToken
from crm.db import utcnow
from crm.timeline.models import SensitiveRead
from tests.conftest import utc
from tests.consent_support import EVIDENCE, PNG, active_notice, grant, link_token, mails_to, withdraw


@pytest.fixture
def requested(db, factory):
    """An HCP with a double opt-in request and its clear confirmation token."""
    hcp = factory.hcp()
    grant(db, hcp, "email", "promotional", "paper_form")
    raw = tokens.issue(db, "confirm", hcp.id, channel="email", consent_purpose="promotional",
                       event_id=db.query(ConsentEvent).filter_by(hcp_id=hcp.id).one().id)
    return hcp, raw


def _events(db, hcp):
    return [e.event_type for e in db.query(ConsentEvent).filter_by(hcp_id=hcp.id).order_by(ConsentEvent.id)]


def test_confirmation_mail_link_get_changes_nothing_post_confirms(client, db, factory, app):
    hcp = factory.hcp()
    notice = active_notice(db)
    admin = factory.user("admin")
    from tests.conftest import PASSWORD, ApiClient

    token = client.post("/api/v1/auth/token", json={"email": admin.email, "password": PASSWORD}).get_json()["token"]
    ApiClient(client, token).post(f"/api/v1/hcps/{hcp.id}/consents", json={
        "channel": "email", "purpose": "promotional", "action": "grant", "source": "paper_form",
        "notice_version": notice.version, "evidence": EVIDENCE["paper_form"]})
    [mail] = mails_to(app.config["CRM_OUTBOX_DIR"], hcp.email)
    raw = link_token(mail, "confirm")
    # a mail scanner follows the link: a page, and nothing changes
    for _ in range(3):
        page = client.get(f"/consent/confirm/{raw}", headers={"User-Agent": "SafeLinks scanner"})
        assert page.status_code == 200 and "Yes, I confirm" in page.get_data(as_text=True)
    assert _events(db, hcp) == ["requested"]
    assert not services.can_contact(db, hcp.id, "email", "promotional").allowed
    # the HCP presses the button (no CSRF token: the token in the URL is the proof)
    done = client.post(f"/consent/confirm/{raw}", headers={"User-Agent": "Firefox/140"})
    assert done.status_code == 200 and "confirmed" in done.get_data(as_text=True)
    assert _events(db, hcp) == ["requested", "confirmed"]
    confirmed = db.query(ConsentEvent).filter_by(hcp_id=hcp.id, event_type="confirmed").one()
    assert confirmed.source == "email_link"
    assert services.read_evidence(confirmed) == {"ip_address": "127.0.0.1", "user_agent": "Firefox/140"}
    assert services.can_contact(db, hcp.id, "email", "promotional").allowed
    # reused
    again = client.post(f"/consent/confirm/{raw}")
    assert again.status_code == 410 and "already been used" in again.get_data(as_text=True)
    assert client.get(f"/consent/confirm/{raw}").status_code == 410
    assert _events(db, hcp) == ["requested", "confirmed"]


def test_forged_and_guessed_tokens_are_404(client, db, requested):
    hcp, raw = requested
    random_part, _, sig = raw.partition(".")
    forged = [f"{random_part}.{sig[:-1]}{'A' if sig[-1] != 'A' else 'B'}", f"{secrets.token_urlsafe(32)}.{sig}",
              random_part, "", "x" * 300, f"{random_part}.{sig}.extra"]
    for bad in forged:
        resp = client.post(f"/consent/confirm/{bad}") if bad else client.post("/consent/confirm/")
        assert resp.status_code == 404
    for _ in range(1000):
        guess = f"{secrets.token_urlsafe(32)}.{secrets.token_urlsafe(18)}"
        assert client.post(f"/consent/confirm/{guess}").status_code == 404
    assert _events(db, hcp) == ["requested"]


def test_wrong_purpose_token_is_404(client, db, requested):
    hcp, raw = requested
    assert client.post(f"/consent/unsubscribe/{raw}", data={"List-Unsubscribe": "One-Click"}).status_code == 404
    assert client.get(f"/consent/preferences/{raw}").status_code == 404
    unsub = tokens.issue(db, "unsubscribe", hcp.id, channel="email", consent_purpose="promotional", reference="t")
    assert client.post(f"/consent/confirm/{unsub}").status_code == 404
    assert _events(db, hcp) == ["requested"]


def test_expired_token_says_expired(client, db, requested):
    hcp, raw = requested
    tok = db.query(ConsentToken).filter_by(token_hash=tokens.token_hash(raw)).one()
    tok.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    for resp in (client.get(f"/consent/confirm/{raw}"), client.post(f"/consent/confirm/{raw}")):
        assert resp.status_code == 410 and "expired" in resp.get_data(as_text=True)
    assert _events(db, hcp) == ["requested"]


def test_unsubscribe_rfc8058_one_click(client, db, factory):
    hcp = factory.hcp()
    grant(db, hcp, "email", "events", "web_form")
    headers = services.unsubscribe_headers(db, hcp.id, "events", "campaign:7")
    assert headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url, mailto = (u.strip().strip("<>") for u in headers["List-Unsubscribe"].split(","))
    assert mailto == "mailto:unsubscribe@pharma.example?subject=unsubscribe"
    path = url[url.index("/consent/"):]
    assert client.get(path).status_code == 200
    assert services.can_contact(db, hcp.id, "email", "events").allowed
    resp = client.post(path, data="List-Unsubscribe=One-Click", content_type="application/x-www-form-urlencoded")
    assert resp.status_code == 200
    d = services.can_contact(db, hcp.id, "email", "events")
    assert not d.allowed and d.rule == "consent-withdrawn"
    w = db.get(ConsentEvent, d.evidence_event_ids[0])
    assert (w.source, w.channel, w.purpose) == ("email_link", "email", "events")
    assert services.read_evidence(w)["reference"] == "campaign:7"
    assert client.post(path, data="List-Unsubscribe=One-Click",
                       content_type="application/x-www-form-urlencoded").status_code == 410


def test_unsubscribe_from_everything(client, db, factory):
    hcp = factory.hcp()
    grant(db, hcp, "email", "events", "web_form")
    grant(db, hcp, "email", "market_research", "web_form")
    raw = tokens.issue(db, "unsubscribe", hcp.id, channel="email", consent_purpose="events", reference="c:1")
    assert client.post(f"/consent/unsubscribe/{raw}", data={"scope": "all"}).status_code == 200
    assert not services.can_contact(db, hcp.id, "email", "market_research").allowed
    assert services.can_contact(db, hcp.id, "email", "market_research").rule == "consent-withdrawn"


def test_preference_centre_shows_changes_and_downloads(client, db, factory, app):
    hcp = factory.hcp()
    active_notice(db)
    grant(db, hcp, "post", "events", "paper_form")
    raw = tokens.issue(db, "preferences", hcp.id, reference="test")
    page = client.get(f"/consent/preferences/{raw}")
    assert page.status_code == 200 and 'name="c:post:events" checked' in page.get_data(as_text=True)
    resp = client.post(f"/consent/preferences/{raw}", data={"c:sms:market_research": "on",
                                                            "c:email:promotional": "on"},
                       headers={"User-Agent": "Phone/1"})
    assert resp.status_code == 303
    fresh = resp.headers["Location"].split("/consent/preferences/")[1].split("?")[0]
    assert fresh != raw
    states = {(s.channel, s.purpose): s.state for s in services.current_states(db, hcp.id)}
    assert states[("post", "events")] == "withdrawn" and states[("sms", "market_research")] == "granted"
    assert states[("email", "promotional")] == "pending"  # double opt-in even from the preference centre
    new_events = db.query(ConsentEvent).filter(ConsentEvent.hcp_id == hcp.id, ConsentEvent.source == "web_form").all()
    assert len(new_events) == 3
    assert all(services.read_evidence(e)["user_agent"] == "Phone/1" for e in new_events)
    assert len(mails_to(app.config["CRM_OUTBOX_DIR"], hcp.email)) == 1
    # the old link is spent; the fresh one works
    assert client.post(f"/consent/preferences/{raw}", data={}).status_code == 410
    assert client.get(f"/consent/preferences/{fresh}").status_code == 200
    # the preference link downloads nothing itself (it may have been forwarded): no direct download route
    for method in (client.post, client.get):
        resp = method(f"/consent/preferences/{fresh}/download")
        assert resp.status_code in (404, 405) and hcp.email not in resp.get_data(as_text=True)


def test_erased_hcp_links_stop_working(client, db, requested):
    from crm.hcps.erasure import erase_hcp

    hcp, raw = requested
    erase_hcp(db, None, hcp, "GDPR request")
    assert client.post(f"/consent/confirm/{raw}").status_code == 410
    assert _events(db, hcp) == ["requested"]


# -- staff pages -------------------------------------------------------------------------------------

def test_ledger_page_answers_was_it_allowed(client, auth, db, factory):
    hcp = factory.hcp()
    g = grant(db, hcp, "email", "events", "web_form", occurred_at=utc(2026, 1, 1, 8))
    withdraw(db, hcp, "email", "events", "email_link", occurred_at=utc(2026, 2, 1, 8))
    auth.login(factory.user("compliance"))
    html = client.get(f"/hcps/{hcp.id}/consents?at=2026-01-15T10:00:00&channel=email&purpose=events").get_data(
        as_text=True)
    assert "<strong>Allowed</strong>" in html and f"#event-{g.id}" in html and "consent-granted" in html
    html = client.get(f"/hcps/{hcp.id}/consents?at=2026-02-01T08:00:01&channel=email&purpose=events").get_data(
        as_text=True)
    assert "Not allowed" in html and "consent-withdrawn" in html
    assert "203.0.113.9" in html  # compliance sees evidence
    assert client.get(f"/hcps/{hcp.id}/consents?at=yesterday&channel=email&purpose=events").status_code == 422


def test_ledger_page_hides_evidence_from_other_roles(client, auth, db, factory):
    hcp = factory.hcp()
    grant(db, hcp, "visit", "events", "visit", evidence={"signature": PNG})
    rep = factory.user("field_rep")
    auth.login(rep)
    html = client.get(f"/hcps/{hcp.id}/consents").get_data(as_text=True)
    assert "data:image/png" not in html and "signature (restricted)" in html
    assert db.query(SensitiveRead).filter_by(viewer_id=rep.id).count() == 0
    assert client.get(f"/hcps/{hcp.id}/consents.csv").status_code == 403


def test_ledger_csv_neutralises_formulas(client, auth, db, factory):
    hcp = factory.hcp()
    notice = services.create_notice(db, None, language="en", title="T", text="x")
    services.activate_notice(db, None, notice)
    services.grant_consent(db, None, hcp, "post", "events", "import", notice_version=notice.version,
                           evidence={"reference": "r"}, external_id="=HYPERLINK(\"http://evil\")")
    auth.login(factory.user("compliance"))
    resp = client.get(f"/hcps/{hcp.id}/consents.csv")
    assert resp.status_code == 200 and resp.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(resp.get_data(as_text=True))))
    assert rows[0][0] == "event_id" and rows[1][5] == "post"
    from crm.consent.queries import csv_safe

    for danger in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx", "\rx"):
        assert csv_safe(danger).startswith("'")
    assert csv_safe("plain") == "plain" and csv_safe(None) == ""


def test_capture_page_for_a_rep_with_signature(client, auth, db, factory):
    t = factory.territory()
    hcp = factory.hcp(t)
    notice = active_notice(db, text="Our notice text, to be signed.")
    auth.login(factory.user("field_rep", [t]))
    page = client.get(f"/hcps/{hcp.id}/consents/capture")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Our notice text, to be signed." in html
    assert 'class="sigpad" data-signature-input="signature"' in html and "signature-pad.js" in html
    token = auth.csrf_token(f"/hcps/{hcp.id}/consents/capture")
    form = {"csrf_token": token, "action": "grant", "channel": "visit", "purpose": "promotional", "source": "visit",
            "notice_version": notice.version}
    missing = client.post(f"/hcps/{hcp.id}/consents/capture", data=form)
    assert missing.status_code == 422 and "evidence.signature" in missing.get_data(as_text=True)
    ok = client.post(f"/hcps/{hcp.id}/consents/capture", data={**form, "signature": PNG})
    assert ok.status_code == 302
    e = db.query(ConsentEvent).filter_by(hcp_id=hcp.id).one()
    assert (e.source, e.event_type, e.captured_by_role) == ("visit", "granted", "field_rep")


def test_capture_page_roles(client, auth, db, factory):
    t = factory.territory()
    hcp = factory.hcp(t)
    for role in ("compliance", "marketer", "medical"):
        auth.login(factory.user(role))
        assert client.get(f"/hcps/{hcp.id}/consents/capture").status_code == 403
        auth.logout()
    auth.login(factory.user("field_rep", [factory.territory()]))
    assert client.get(f"/hcps/{hcp.id}/consents/capture").status_code == 403
    auth.logout()
    auth.login(factory.user("call_centre"))
    assert "Call recording id" in client.get(f"/hcps/{hcp.id}/consents/capture").get_data(as_text=True)


def test_capture_page_requires_csrf(client, auth, db, factory):
    hcp = factory.hcp()
    auth.login(factory.user("call_centre"))
    resp = client.post(f"/hcps/{hcp.id}/consents/capture", data={"action": "withdraw", "channel": "phone",
                                                                  "purpose": "all", "source": "call_centre"})
    assert resp.status_code == 400
    assert db.query(ConsentEvent).filter_by(hcp_id=hcp.id).count() == 0


def test_compliance_pages(client, auth, db, factory):
    from crm.timeline.services import record_interaction

    hcp = factory.hcp()
    grant(db, hcp, "phone", "events", occurred_at=utcnow() - timedelta(days=900))
    record_interaction(db, None, hcp_ids=[hcp.id], occurred_at=utcnow(), channel="email", kind="email.sent",
                       source="esp", details={"purpose": "promotional"})
    auth.login(factory.user("compliance"))
    assert "Email sent" in client.get("/consent/gaps").get_data(as_text=True)  # the code stays in the CSV
    gaps_csv = client.get("/consent/gaps.csv").get_data(as_text=True)
    assert "email.sent" in gaps_csv and "promotional" in gaps_csv
    assert hcp.full_name in client.get("/consent/expiring").get_data(as_text=True)
    assert "needs re-consent" in client.get("/consent/expiring").get_data(as_text=True)
    assert hcp.full_name in client.get("/consent/expiring.csv").get_data(as_text=True)
    assert "Consent coverage" in client.get("/consent/coverage").get_data(as_text=True)
    auth.logout()
    auth.login(factory.user("marketer"))
    assert client.get("/consent/gaps").status_code == 403
    assert client.get("/consent/coverage").status_code == 200


def test_reps_re_consent_list_is_their_territories(client, auth, db, factory):
    mine, other = factory.territory(), factory.territory()
    a, b = factory.hcp(mine), factory.hcp(other)
    for h in (a, b):
        grant(db, h, "visit", "promotional", occurred_at=utcnow() - timedelta(days=740))
    auth.login(factory.user("field_rep", [mine]))
    html = client.get("/consent/expiring").get_data(as_text=True)
    assert a.full_name in html and b.full_name not in html
    assert b.full_name in client.get(f"/consent/expiring?territory={other.code}").get_data(as_text=True)


def test_compliance_review_form(client, auth, db, factory):
    hcp = factory.hcp()
    auth.login(factory.user("compliance"))
    token = auth.csrf_token(f"/hcps/{hcp.id}/consents")
    resp = client.post(f"/hcps/{hcp.id}/consents/reviews", data={"csrf_token": token, "outcome": "issue",
                                                                 "note": "Form unsigned"})
    assert resp.status_code == 302
    assert "Form unsigned" in client.get(f"/hcps/{hcp.id}/consents").get_data(as_text=True)


def test_public_pages_need_no_login_but_staff_pages_do(client, db, factory):
    hcp = factory.hcp()
    assert client.get(f"/hcps/{hcp.id}/consents").status_code == 302
    raw = tokens.issue(db, "preferences", hcp.id, reference="x")
    assert client.get(f"/consent/preferences/{raw}").status_code == 200


def test_head_requests_change_nothing(client, db, factory, requested):
    """Only POST changes consent: a HEAD (a link checker, a mail scanner) is answered like GET."""
    hcp, raw = requested
    resp = client.head(f"/consent/confirm/{raw}")
    assert resp.status_code == 200
    assert _events(db, hcp) == ["requested"]
    assert services.can_contact(db, hcp.id, "email", "promotional").rule == "double-opt-in-pending"
    other = factory.hcp()
    grant(db, other, "email", "events", "web_form")
    unsub = tokens.issue(db, "unsubscribe", other.id, channel="email", consent_purpose="events", reference="c:1")
    assert client.head(f"/consent/unsubscribe/{unsub}").status_code == 200
    assert services.can_contact(db, other.id, "email", "events").allowed
    prefs = tokens.issue(db, "preferences", other.id, reference="x")
    assert client.head(f"/consent/preferences/{prefs}").status_code == 200
    assert _events(db, other) == ["granted"]
    # the links stay usable: nothing was consumed
    for raw_token in (raw, unsub, prefs):
        assert db.query(ConsentToken).filter_by(token_hash=tokens.token_hash(raw_token)).one().used_at is None
    # and an unknown method is refused rather than taken for a POST
    assert client.put(f"/consent/unsubscribe/{unsub}").status_code == 405
    assert services.can_contact(db, other.id, "email", "events").allowed


# -- the data-subject download: a fresh, short-lived link mailed to the address on file -------------------

def _download_links(app, hcp):
    return [link_token(m, "my-data") for m in mails_to(app.config["CRM_OUTBOX_DIR"], hcp.email)
            if "copy of the data" in m["Subject"]]


def test_a_forwarded_preference_link_gets_no_data_only_a_mail_to_the_address_on_file(client, db, factory, app):
    hcp = factory.hcp()
    grant(db, hcp, "post", "events", "paper_form")
    prefs = tokens.issue(db, "preferences", hcp.id, reference="campaign:1")
    asked = client.post(f"/consent/preferences/{prefs}/my-data", headers={"User-Agent": "Forwardee/1"})
    body = asked.get_data(as_text=True)
    assert asked.status_code == 200 and asked.mimetype == "text/html"
    assert hcp.email not in body and hcp.last_name not in body  # the page names the address masked only
    from crm.access.policy import mask_email

    assert mask_email(hcp.email) in body
    [raw] = _download_links(app, hcp)
    assert db.query(ConsentToken).filter_by(token_hash=tokens.token_hash(raw)).one().purpose == "data_export"
    # asking again while the link is open mails nothing more
    assert client.post(f"/consent/preferences/{prefs}/my-data").status_code == 200
    assert len(_download_links(app, hcp)) == 1
    # the mailed link: GET and HEAD show a page and use nothing up; the POST downloads, once
    for method in (client.get, client.head):
        page = method(f"/consent/my-data/{raw}")
        assert page.status_code == 200 and page.mimetype == "text/html"
    assert "Download my data" in client.get(f"/consent/my-data/{raw}").get_data(as_text=True)
    download = client.post(f"/consent/my-data/{raw}")
    assert download.status_code == 200 and download.mimetype == "application/json"
    assert "attachment" in download.headers["Content-Disposition"]
    assert download.headers["Cache-Control"] == "no-store"
    data = json.loads(download.get_data(as_text=True))
    assert data["format"] == "pharma-crm/data-subject-access/1" and data["you"]["email"] == hcp.email
    again = client.post(f"/consent/my-data/{raw}")
    assert again.status_code == 410 and hcp.email not in again.get_data(as_text=True)
    # once used, a new request sends a new link
    client.post(f"/consent/preferences/{prefs}/my-data")
    assert len(_download_links(app, hcp)) == 2
    # a preference token is not a download token, and the reverse
    assert client.post(f"/consent/my-data/{prefs}").status_code == 404
    assert client.get(f"/consent/preferences/{_download_links(app, hcp)[1]}").status_code == 404


def test_the_download_link_is_short_lived(client, db, factory, app):
    hcp = factory.hcp()
    prefs = tokens.issue(db, "preferences", hcp.id, reference="x")
    app.config["CRM_DATA_EXPORT_LINK_MINUTES"] = 30
    client.post(f"/consent/preferences/{prefs}/my-data")
    [raw] = _download_links(app, hcp)
    tok = db.query(ConsentToken).filter_by(token_hash=tokens.token_hash(raw)).one()
    assert timedelta(minutes=29) < tok.expires_at - tok.created_at <= timedelta(minutes=30)
    tok.expires_at = utcnow() - timedelta(seconds=1)
    db.flush()
    resp = client.post(f"/consent/my-data/{raw}")
    assert resp.status_code == 410 and "expired" in resp.get_data(as_text=True)
    # an expired link no longer blocks a new request
    client.post(f"/consent/preferences/{prefs}/my-data")
    assert len(_download_links(app, hcp)) == 2


def test_no_address_on_file_no_mail(client, db, factory, app):
    hcp = factory.hcp(email=None)
    prefs = tokens.issue(db, "preferences", hcp.id, reference="x")
    resp = client.post(f"/consent/preferences/{prefs}/my-data")
    assert resp.status_code == 200 and "no email address" in resp.get_data(as_text=True)
    assert db.query(ConsentToken).filter_by(hcp_id=hcp.id, purpose="data_export").count() == 0


def test_the_download_holds_what_an_art_15_answer_holds(client, db, factory, app):
    """Own data, consents and ledger, own timeline; no staff ids or names, no other HCP, no internal note,
    and no medical or pharmacovigilance narrative, only that such a record exists and how to ask for it."""
    from crm.timeline.services import record_interaction

    t = factory.territory()
    hcp, colleague = factory.hcp(t), factory.hcp(t)
    rep = factory.user("field_rep", [t])
    agent = factory.user("call_centre")
    grant(db, hcp, "visit", "events", "visit", actor=rep, evidence={"signature": PNG, "note": "Rep-only remark"})
    grant(db, hcp, "post", "events", "paper_form")
    record_interaction(db, rep, hcp_ids=[hcp.id, colleague.id], occurred_at=utc(2026, 3, 2, 9), channel="visit",
                       kind="visit.submitted", summary=f"Round table with {colleague.full_name}: notes",
                       safe_summary="Visit (in person)", products=["CARDIOZOL-10"])
    record_interaction(db, agent, hcp_ids=[hcp.id], occurred_at=utc(2026, 3, 3, 9), channel="call_centre",
                       kind="call_centre.adverse_event", sensitivity="pv",
                       summary="Patient reported severe rash after Cardiozol", safe_summary="Adverse event report")
    record_interaction(db, agent, hcp_ids=[hcp.id], occurred_at=utc(2026, 3, 4, 9), channel="call_centre",
                       kind="call_centre.medical_inquiry", sensitivity="medical",
                       summary="Asks about off-label dosing in renal failure", safe_summary="Medical inquiry")
    prefs = tokens.issue(db, "preferences", hcp.id, reference="x")
    client.post(f"/consent/preferences/{prefs}/my-data")
    [raw] = _download_links(app, hcp)
    text = client.post(f"/consent/my-data/{raw}").get_data(as_text=True)
    data = json.loads(text)
    # the HCP's own data, consent and ledger (with the evidence captured from them)
    assert data["you"]["first_name"] == hcp.first_name and data["you"]["email"] == hcp.email
    assert data["you"]["territory"] == t.name
    assert {(c["channel"], c["purpose"], c["state"]) for c in data["consents"]["current"]} >= \
        {("visit", "events", "granted"), ("post", "events", "granted")}
    visit_grant = next(e for e in data["consents"]["history"] if e["source"] == "visit")
    assert visit_grant["captured_by_role"] == "field_rep" and visit_grant["evidence"] == {"signature": PNG}
    assert "Rep-only remark" not in text
    # the timeline: standard items with their shareable summary; restricted ones by date and category only
    by_kind = {i["kind"]: i for i in data["interactions"]}
    assert by_kind["visit.submitted"]["summary"] == "Visit (in person)"
    assert by_kind["visit.submitted"]["products"] == ["CARDIOZOL-10"]
    assert by_kind["visit.submitted"]["department"] == "field_rep"
    pv = by_kind["call_centre.adverse_event"]
    assert pv["restricted"].startswith("pharmacovigilance") and "summary" not in pv and "data protection" in \
        pv["statement"]
    assert by_kind["call_centre.medical_inquiry"]["restricted"] == "medical information"
    assert data["restricted_records"] == 2
    for secret in ("severe rash", "off-label", "Adverse event report", "Medical inquiry", colleague.first_name,
                   colleague.last_name, colleague.email, rep.name, rep.email, agent.name, agent.email, "notes"):
        assert secret not in text, secret
    for key in ("owner_id", "captured_by_id", "viewer_id", "created_by_id", "evidence_hash", "token_hash",
                "email_bidx", "hcp_id"):
        assert f'"{key}"' not in text, key
