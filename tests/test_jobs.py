"""Jobs as users and admins see them: state, progress, result or error; retries with backoff then failed;
who may read a job; the admins' jobs page with Retry; the campaign send as a job with progress; the nightly
consent expiry and audit verification as jobs. Jobs here run at once after the commit (huey's immediate
mode); tests/test_queue.py runs them through real SQLite and Redis queues and a killed consumer."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, text, update

from crm.audit.models import AuditRecord
from crm.campaigns.models import CampaignMessage
from crm.db import utcnow
from crm.jobs import services as jobs
from crm.jobs.models import Job
from tests import jobs_support
from tests.campaigns_support import email_consent, make_campaign, make_template, viewer_of


@pytest.fixture
def people(factory):
    return {role: factory.user(role) for role in ("marketer", "compliance", "admin", "field_rep", "call_centre",
                                                  "medical")}


@pytest.fixture(autouse=True)
def test_kinds(monkeypatch):
    jobs_support.register(monkeypatch)


def _job(db, job_id: int) -> Job:
    db.expire_all()
    return db.get(Job, job_id)


def _commit_job(app, db, actor, kind="test.flaky"):
    with app.test_request_context():
        job = jobs.create(db, actor, kind, {"n": 1})
        db.commit()  # the job runs after the commit (immediate mode)
    return job.id


def test_a_job_runs_after_the_commit_and_reports_progress_and_result(app, db, people):
    jobs_support.FAILURES["left"] = 0
    job_id = _commit_job(app, db, people["marketer"])
    job = _job(db, job_id)
    assert (job.state, job.attempts, job.progress_done, job.progress_total) == ("done", 1, 2, 2)
    assert job.result == {"attempt": 1} and job.error is None and job.finished_at is not None


def test_a_job_rolled_back_never_runs(app, db, people):
    with app.test_request_context():
        job = jobs.create(db, people["marketer"], "test.flaky")
        job_id = job.id
        db.rollback()
    assert jobs_support.SEEN == [] and db.get(Job, job_id) is None


def test_a_failed_attempt_is_queued_again_with_its_error_and_a_growing_backoff(app, db, people, monkeypatch):
    monkeypatch.setitem(app.config, "CRM_JOB_RETRY_BASE_SECONDS", 30)
    jobs_support.FAILURES["left"] = 5
    job_id = _commit_job(app, db, people["marketer"])
    job = _job(db, job_id)
    assert (job.state, job.attempts) == ("queued", 1)
    assert job.error == "ConnectionError: the relay did not answer"
    first_wait = job.next_attempt_at - job.updated_at
    assert timedelta(seconds=29) < first_wait <= timedelta(seconds=31)
    # huey would run the next attempt after the backoff; run it here
    with pytest.raises(jobs.RetryLater):
        jobs.run_job(app, job_id)
    job = _job(db, job_id)
    assert job.attempts == 2 and timedelta(seconds=59) < job.next_attempt_at - job.updated_at <= timedelta(seconds=61)


def test_after_the_last_attempt_the_job_is_failed_with_the_error(app, db, people, monkeypatch):
    monkeypatch.setitem(app.config, "CRM_JOB_MAX_ATTEMPTS", 2)
    jobs_support.FAILURES["left"] = 5
    job_id = _commit_job(app, db, people["marketer"])
    assert (_job(db, job_id).state, _job(db, job_id).attempts) == ("queued", 1)  # attempt 1 ran after the commit
    assert jobs.run_job(app, job_id) == "failed"
    job = _job(db, job_id)
    assert (job.state, job.attempts, job.error) == ("failed", 2, "ConnectionError: the relay did not answer")
    assert jobs.run_job(app, job_id) == "skipped"  # a failed job runs again only when someone retries it
    assert jobs_support.SEEN == [1, 2]


def test_a_refusal_fails_the_job_at_once(app, db, people):
    job_id = _commit_job(app, db, people["marketer"], "test.refused")
    job = _job(db, job_id)
    assert (job.state, job.attempts, job.error) == ("failed", 1, "Nothing to do: the source file was deleted.")


def test_a_job_held_by_a_live_consumer_is_not_run_twice_but_one_whose_lease_ran_out_is_taken_over(app, db, people):
    jobs_support.FAILURES["left"] = 0
    with app.test_request_context():
        job = jobs.create(db, people["marketer"], "test.flaky")
        job_id = job.id
    db.execute(update(Job).where(Job.id == job_id).values(state="running", attempts=1,
                                                          locked_until=utcnow() + timedelta(minutes=5)))
    db.commit()
    assert jobs.run_job(app, job_id) == "skipped"
    assert jobs.recover(app) == []  # its consumer is alive: nothing to recover
    db.execute(update(Job).where(Job.id == job_id).values(locked_until=utcnow() - timedelta(seconds=1)))
    db.commit()
    assert jobs.recover(app) == [job_id]  # the consumer died: put back on the queue (and run, immediate mode)
    job = _job(db, job_id)
    assert (job.state, job.attempts) == ("done", 2)


def test_the_creator_and_admins_read_a_job_others_are_told_it_does_not_exist(app, db, people, factory, api):
    jobs_support.FAILURES["left"] = 0
    job_id = _commit_job(app, db, people["marketer"])
    mine = api(people["marketer"]).get(f"/api/v1/jobs/{job_id}")
    assert mine.status_code == 200
    body = mine.get_json()
    assert (body["kind"], body["label"], body["state"], body["progress"], body["result"]) == (
        "test.flaky", "Test job", "done", {"done": 2, "total": 2}, {"attempt": 1})
    assert api(people["admin"]).get(f"/api/v1/jobs/{job_id}").status_code == 200
    for other in (factory.user("marketer"), people["field_rep"], people["compliance"], people["medical"],
                  people["call_centre"]):
        resp = api(other).get(f"/api/v1/jobs/{job_id}")
        assert resp.status_code == 404 and "test.flaky" not in resp.get_data(as_text=True)
    assert api(people["admin"]).get("/api/v1/jobs/2147483647").status_code == 404
    assert api(people["admin"]).get("/api/v1/jobs/99999999999999999999").status_code == 404
    assert app.test_client().get(f"/api/v1/jobs/{job_id}").status_code == 401


@pytest.mark.parametrize("role", ["marketer", "compliance", "field_rep", "call_centre", "medical"])
def test_only_admins_open_the_jobs_page_or_retry(app, db, people, client, auth, role):
    job_id = _commit_job(app, db, people["admin"], "test.refused")
    auth.login(people[role])
    assert client.get("/admin/jobs").status_code == 403
    token = auth.csrf_token("/")
    assert client.post(f"/admin/jobs/{job_id}/retry", data={"csrf_token": token}).status_code == 403
    assert _job(db, job_id).state == "failed"
    assert client.get(f"/jobs/{job_id}").status_code == 404  # not theirs


def test_the_admins_jobs_page_shows_failed_jobs_with_the_error_and_retry_runs_them_again(app, db, people, client,
                                                                                      auth):
    jobs_support.FAILURES["left"] = 1
    with app.test_request_context():
        job = jobs.create(db, people["marketer"], "test.flaky")
        job_id = job.id
    db.execute(update(Job).where(Job.id == job_id).values(state="failed", attempts=5,
                                                          error="ConnectionError: the relay did not answer"))
    db.commit()
    auth.login(people["admin"])
    page = client.get("/admin/jobs?state=failed").get_data(as_text=True)
    assert f"#{job_id}" in page and "Test job" in page and "the relay did not answer" in page
    assert f'action="/admin/jobs/{job_id}/retry"' in page
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    resp = client.post(f"/admin/jobs/{job_id}/retry", data={"csrf_token": token})
    assert resp.status_code == 303
    job = _job(db, job_id)  # attempts from zero: the first run fails once more (queued), then it succeeds
    assert (job.state, job.attempts) == ("queued", 1)
    assert jobs.run_job(app, job_id) == "done"
    assert db.scalar(select(AuditRecord.action).where(AuditRecord.entity == "job",
                                                      AuditRecord.entity_id == str(job_id))) == "job.retry"
    again = client.post(f"/admin/jobs/{job_id}/retry", data={"csrf_token": token})
    assert again.status_code == 409  # only a failed job can be retried
    assert client.get("/admin/jobs?state=nonsense\x00").status_code == 200
    assert client.get("/admin/jobs?before=99999999999999999999").status_code == 200


def test_a_campaign_send_is_a_job_with_progress_on_the_campaign_and_job_pages(app, db, factory, people, client,
                                                                            auth, monkeypatch):
    monkeypatch.setitem(app.config, "CRM_SEND_BATCH_SIZE", 2)
    hcps = [factory.hcp() for _ in range(5)]
    for hcp in hcps[:4]:
        email_consent(db, hcp)
    campaign = make_campaign(db, people["marketer"], make_template(db, people["marketer"], people["compliance"]),
                             [h.id for h in hcps])
    db.commit()
    from crm.campaigns import services

    with app.test_request_context():
        result = services.send_campaign(db, people["marketer"], viewer_of(people["marketer"]), campaign)
        job_id = result.job.id
        # Before the commit: accepted, not yet handed over.
        pending = db.scalars(select(CampaignMessage.status).where(CampaignMessage.campaign_id == campaign.id)).all()
        assert sorted(pending) == ["pending"] * 4 + ["skipped"]
        db.commit()
    job = _job(db, job_id)
    assert (job.kind, job.state, job.progress_done, job.progress_total) == ("campaign.send", "done", 4, 4)
    assert job.result["sent"] == 4 and job.result["skipped"] == 1 and job.subject == f"campaign:{campaign.id}"
    statuses = db.scalars(select(CampaignMessage.status).where(CampaignMessage.campaign_id == campaign.id)).all()
    assert sorted(statuses) == ["sent"] * 4 + ["skipped"]
    auth.login(people["marketer"])
    page = client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Finished: 4 of 4 done" in page and f'href="/jobs/{job_id}"' in page
    assert "4 of 4 done" in client.get(f"/jobs/{job_id}").get_data(as_text=True)


def test_a_send_in_progress_shows_how_far_it_got(app, db, factory, people, client, auth):
    campaign = make_campaign(db, people["marketer"], make_template(db, people["marketer"], people["compliance"]),
                             [factory.hcp().id])
    job = Job(kind="campaign.send", subject=f"campaign:{campaign.id}", state="running", params={},
              progress_done=1500, progress_total=50000, attempts=1, created_by_id=people["marketer"].id)
    db.add(job)
    db.commit()
    auth.login(people["marketer"])
    page = client.get(f"/campaigns/{campaign.id}").get_data(as_text=True)
    assert "Running: 1500 of 50000 done" in page and '<progress max="50000" value="1500">' in page


def test_a_recipient_who_withdrew_before_the_hand_over_is_skipped_by_the_job(app, db, factory, people):
    from crm.campaigns import services
    from tests.consent_support import withdraw

    keep, leave = factory.hcp(), factory.hcp()
    for hcp in (keep, leave):
        email_consent(db, hcp)
    campaign = make_campaign(db, people["marketer"], make_template(db, people["marketer"], people["compliance"]),
                             [keep.id, leave.id])
    with app.test_request_context():
        result = services.send_campaign(db, people["marketer"], viewer_of(people["marketer"]), campaign)
        assert sorted(result.sent) == sorted([keep.id, leave.id])
        withdraw(db, leave, channel="email")  # after the request's decision, before the job's hand-over
        db.commit()
    rows = dict(db.execute(select(CampaignMessage.hcp_id, CampaignMessage.status)
                           .where(CampaignMessage.campaign_id == campaign.id)).all())
    assert rows == {keep.id: "sent", leave.id: "skipped"}


def test_nightly_consent_expiry_and_audit_verification_are_jobs_and_a_broken_chain_is_a_failed_job(app, db,
                                                                                                  people):
    jobs.nightly(app)
    db.expire_all()
    expire, verify = db.scalars(select(Job).where(Job.kind.in_(("consent.expire", "audit.verify")))
                                .order_by(Job.id)).all()
    assert (expire.state, verify.state) == ("done", "done") and "expired" in expire.result
    assert verify.result["checked"] >= 1 and expire.created_by_id is None
    db.execute(text("UPDATE audit_records SET reason = 'edited' WHERE id = (SELECT min(id) FROM audit_records)"))
    db.commit()
    jobs.nightly(app)
    db.expire_all()
    broken = db.scalars(select(Job).where(Job.kind == "audit.verify").order_by(Job.id.desc())).first()
    assert broken.state == "failed" and "The audit chain is broken at record" in broken.error
