"""The queue itself, on real storage: SQLite (the embedded default) and Redis (CI fails when it cannot be
reached; ``CRM_TEST_REDIS_URL``, default redis://127.0.0.1:6379/5). A campaign send requested in a web
transaction is run by a consumer; a failing job is retried by huey with backoff, then failed; a consumer
SIGKILLed in the middle of a campaign leaves a job that the next consumer finishes, every recipient mailed
exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import create_engine, func, select, text

from crm.auth.services import create_user
from crm.campaigns import services as campaigns
from crm.campaigns.models import Campaign, CampaignMessage
from crm.extensions import db as _db
from crm.jobs import services as jobs
from crm.jobs.models import Job
from crm.jobs.queue import get_huey
from tests import jobs_support
from tests.campaigns_support import viewer_of
from tests.conftest import PASSWORD, TEST_KEYS, database_url, make_app, reset_schema

REDIS_URL = os.environ.get("CRM_TEST_REDIS_URL", "redis://127.0.0.1:6379/5")
PROJECT = Path(__file__).resolve().parent.parent


def _redis_or_fail(url: str) -> None:
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=2)
        client.ping()
        client.flushdb()
    except redis.RedisError as exc:
        # Never skipped: a queue test that silently does not run is a hidden failure (CI starts Redis).
        pytest.fail(f"Redis at {url} cannot be reached ({exc}); start it, or point CRM_TEST_REDIS_URL at one")


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "redis":
        _redis_or_fail(REDIS_URL)
        return REDIS_URL
    return f"sqlite:///{tmp_path / 'queue.db'}"


@pytest.fixture
def queue_app(queue_url: str, tmp_path: Path) -> Iterator[Flask]:
    app = make_app(database_url("_queue"), CRM_QUEUE_URL=queue_url, CRM_QUEUE_IMMEDIATE=False,
                   CRM_QUEUE_PERIODIC=False, CRM_JOB_RETRY_BASE_SECONDS=0.2, CRM_JOB_LEASE_SECONDS=30,
                   CRM_OUTBOX_DIR=str(tmp_path / "outbox"))
    reset_schema(app)
    yield app
    with app.app_context():
        _db.session.remove()
        _db.engine.dispose()


class Consumer:
    """A huey consumer of ``app``'s queue in this process (threads), as `crm queue consume` runs one."""

    def __init__(self, app: Flask) -> None:
        self.saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
        self.consumer = get_huey(app).create_consumer(workers=2, worker_type="thread", periodic=False,
                                                      max_delay=0.05, initial_delay=0.01, scheduler_interval=0.1)

    def __enter__(self) -> Consumer:
        self.consumer.start()
        return self

    def __exit__(self, *_exc: Any) -> None:
        self.consumer.stop(graceful=True)
        for sig, handler in self.saved.items():
            signal.signal(sig, handler)


def wait_for(check: Callable[[], Any], seconds: float = 8.0) -> Any:
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds} s")
        time.sleep(0.02)


def _job(app: Flask, job_id: int) -> Job:
    with app.app_context():
        job = _db.session.get_one(Job, job_id)
        _db.session.expunge(job)
        _db.session.remove()
        return job


def _campaign(app: Flask, hcps: int) -> tuple[int, Any]:
    """A committed audience of ``hcps`` HCPs (about 60 % with email consent) and a campaign; the marketer."""
    from benchmarks.email_events import build

    campaign_id, _emails = build(app, hcps)
    with app.app_context():
        marketer = create_user(_db.session, None, email="m@pharma.example", name="M", role="marketer",
                               password=PASSWORD)
        _db.session.commit()
        marketer_id = marketer.id
        _db.session.remove()
    return campaign_id, marketer_id


def _send(app: Flask, campaign_id: int, marketer_id: int) -> tuple[int, int]:
    """The request's part of a send, committed: returns (job id, recipients accepted)."""
    from crm.auth.models import User

    with app.test_request_context():
        session = _db.session
        marketer = session.get_one(User, marketer_id)
        result = campaigns.send_campaign(session, marketer, viewer_of(marketer), session.get_one(Campaign, campaign_id))
        job_id = result.job.id
        session.commit()  # the job goes on the queue now
        session.remove()
    return job_id, len(result.sent)


def _statuses(app: Flask, campaign_id: int) -> Counter[str]:
    with app.app_context():
        out = Counter(dict(_db.session.execute(  # type: ignore[arg-type]
            select(CampaignMessage.status, func.count()).where(CampaignMessage.campaign_id == campaign_id)
            .group_by(CampaignMessage.status)).all()))
        _db.session.remove()
        return out


def test_a_campaign_send_runs_in_a_consumer_in_batches_with_progress(queue_app, monkeypatch):
    from tests.test_mail_outbox import FakeSender

    app = queue_app
    sender = FakeSender()
    monkeypatch.setitem(app.extensions, "crm_email_sender", sender)
    monkeypatch.setitem(app.config, "CRM_SEND_BATCH_SIZE", 7)
    campaign_id, marketer_id = _campaign(app, 60)
    job_id, accepted = _send(app, campaign_id, marketer_id)
    queued = _job(app, job_id)
    assert (queued.state, queued.progress_done, queued.progress_total) == ("queued", 0, accepted)
    assert _statuses(app, campaign_id)["pending"] == accepted  # nothing handed over before a consumer runs
    with Consumer(app):
        wait_for(lambda: _job(app, job_id).state == "done")
        wait_for(lambda: _statuses(app, campaign_id)["sent"] == accepted)
    job = _job(app, job_id)
    assert (job.attempts, job.progress_done, job.progress_total) == (1, accepted, accepted)
    assert job.result["handed_over_by_this_run"] == accepted
    campaign_mails = [m for m in sender.taken if "c" + str(campaign_id) + "h" in (m.message_id or "")]
    assert len(campaign_mails) == accepted == len({m.to for m in campaign_mails})


def _survey(app: Flask, hcps: int) -> tuple[int, int, set[str]]:
    """A committed NPS survey to ``hcps`` HCPs, two in three with market-research consent by email; returns
    (survey id, marketer id, the consenting HCPs' addresses)."""
    from crm.surveys import services as surveys
    from tests.campaigns_support import email_consent
    from tests.conftest import Factory

    with app.test_request_context():
        session = _db.session
        factory = Factory(session)
        marketer = factory.user("marketer")
        people = [factory.hcp() for _ in range(hcps)]
        consenting = {h.email for i, h in enumerate(people) if i % 3 != 2}
        for h in people:
            if h.email in consenting:
                email_consent(session, h, "market_research")
        survey = surveys.create_survey(session, marketer, viewer_of(marketer), {
            "name": "After the round table", "kind": "nps", "questions": [], "context": None,
            "audience": {"hcp_ids": [h.id for h in people]}})
        session.commit()
        out = (survey.id, marketer.id, consenting)
        session.remove()
    return out


def test_a_survey_send_runs_in_a_consumer_in_batches_with_progress(queue_app, monkeypatch):
    from crm.auth.models import User
    from crm.surveys import services as surveys
    from crm.surveys.models import Survey, SurveyRecipient
    from tests.test_mail_outbox import FakeSender

    app = queue_app
    sender = FakeSender()
    monkeypatch.setitem(app.extensions, "crm_email_sender", sender)
    monkeypatch.setitem(app.config, "CRM_SEND_BATCH_SIZE", 4)
    survey_id, marketer_id, consenting = _survey(app, 18)
    with app.test_request_context():  # the request's part of the send, committed
        session = _db.session
        marketer = session.get_one(User, marketer_id)
        result = surveys.send_survey(session, marketer, viewer_of(marketer), session.get_one(Survey, survey_id))
        job_id, accepted = result.job.id, len(result.sent)
        session.commit()
        session.remove()

    def statuses() -> Counter[str]:
        with app.app_context():
            out = Counter(dict(_db.session.execute(  # type: ignore[arg-type]
                select(SurveyRecipient.status, func.count()).where(SurveyRecipient.survey_id == survey_id)
                .group_by(SurveyRecipient.status)).all()))
            _db.session.remove()
            return out

    assert accepted == len(consenting) == 12
    queued = _job(app, job_id)
    assert (queued.kind, queued.state, queued.progress_done, queued.progress_total) == ("survey.send", "queued", 0,
                                                                                        accepted)
    assert statuses() == Counter(pending=accepted, skipped=18 - accepted)  # nothing handed over yet
    with Consumer(app):
        wait_for(lambda: _job(app, job_id).state == "done")
        wait_for(lambda: len([m for m in sender.taken if f"s{survey_id}h" in (m.message_id or "")]) == accepted)
    job = _job(app, job_id)
    assert (job.attempts, job.progress_done, job.progress_total) == (1, accepted, accepted)
    assert job.result["handed_over_by_this_run"] == accepted and job.result["pending"] == 0
    assert statuses() == Counter(queued=accepted, skipped=18 - accepted)
    survey_mails = [m for m in sender.taken if f"s{survey_id}h" in (m.message_id or "")]
    assert sorted(m.to for m in survey_mails) == sorted(consenting)  # each consenting HCP exactly once


def test_a_failing_job_is_retried_with_backoff_by_huey_then_succeeds_or_fails(queue_app, monkeypatch):
    app = queue_app
    jobs_support.register(monkeypatch)
    monkeypatch.setitem(app.config, "CRM_JOB_MAX_ATTEMPTS", 3)
    jobs_support.FAILURES["left"] = 1
    with app.test_request_context():
        recovering = jobs.create(_db.session, None, "test.flaky").id
        _db.session.commit()
    with Consumer(app):
        wait_for(lambda: _job(app, recovering).state == "done")
        jobs_support.FAILURES["left"] = 10
        with app.test_request_context():
            hopeless = jobs.create(_db.session, None, "test.flaky").id
            _db.session.commit()
        wait_for(lambda: _job(app, hopeless).state == "failed")
    done, failed = _job(app, recovering), _job(app, hopeless)
    assert (done.attempts, done.result, done.error) == (2, {"attempt": 2}, None)
    assert (failed.attempts, failed.error) == (3, "ConnectionError: the relay did not answer")
    # the waits grew: 0.2 s before the 2nd attempt, 0.4 s before the 3rd (huey's retry_backoff)
    assert failed.finished_at - failed.started_at >= __import__("datetime").timedelta(seconds=0.6)


def test_a_job_whose_message_was_lost_is_recovered_by_the_sweep(queue_app, monkeypatch):
    app = queue_app
    jobs_support.register(monkeypatch)
    jobs_support.FAILURES["left"] = 0
    with app.app_context():
        job = Job(kind="test.flaky", state="running", params={}, attempts=1,
                  locked_until=__import__("crm.db", fromlist=["utcnow"]).utcnow())
        _db.session.add(job)
        _db.session.commit()  # no message on the queue: its consumer died holding it
        job_id = job.id
        _db.session.remove()
    with Consumer(app):
        from crm.jobs.queue import enqueue_sweep

        enqueue_sweep(app)
        wait_for(lambda: _job(app, job_id).state == "done")
    assert _job(app, job_id).attempts == 2


def _consumer_env(app: Flask, tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update({
        "FLASK_APP": "wsgi", "CRM_DATABASE_URL": app.config["SQLALCHEMY_DATABASE_URI"],
        "CRM_QUEUE_URL": app.config["CRM_QUEUE_URL"], "CRM_INSTANCE_PATH": str(tmp_path / "instance"),
        "CRM_ENCRYPTION_KEYS": TEST_KEYS[0], "CRM_BLIND_INDEX_KEY": "test-blind-index-key",
        "CRM_AUDIT_KEY": "test-audit-key", "CRM_AUDIT_ANCHOR_FILE": "", "CRM_SECRET_KEY": "test-secret",
        "CRM_EMAIL_BACKEND": "file", "CRM_OUTBOX_DIR": app.config["CRM_OUTBOX_DIR"],
        "CRM_SEND_BATCH_SIZE": "3", "CRM_JOB_LEASE_SECONDS": "1", "CRM_QUEUE_PERIODIC": "false",
        "CRM_LOG_LEVEL": "WARNING",
    })
    return env


def _start_consumer(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "-m", "crm", "crm", "queue", "consume", "-w", "1",
                                 "--max-delay", "0.05"], cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT)


def test_a_consumer_killed_mid_campaign_is_replaced_and_every_recipient_is_mailed_exactly_once(tmp_path):
    """SQLite storage (the default), a real consumer process, SIGKILL while the send job is between batches."""
    app = make_app(database_url("_kill"), CRM_QUEUE_URL=f"sqlite:///{tmp_path / 'queue.db'}",
                   CRM_QUEUE_IMMEDIATE=False, CRM_QUEUE_PERIODIC=False, CRM_OUTBOX_DIR=str(tmp_path / "outbox"))
    reset_schema(app)
    try:
        campaign_id, marketer_id = _campaign(app, 60)
        job_id, accepted = _send(app, campaign_id, marketer_id)
        env, log = _consumer_env(app, tmp_path), tmp_path / "consumer.log"
        engine = create_engine(app.config["SQLALCHEMY_DATABASE_URI"])

        def progress() -> int:
            with engine.connect() as conn:
                return conn.execute(text("SELECT progress_done FROM jobs WHERE id = :id"), {"id": job_id}).scalar()

        first = _start_consumer(env, log)
        try:
            wait_for(lambda: progress() >= 6, seconds=20)
        finally:
            first.send_signal(signal.SIGKILL)
            first.wait()
        at_kill = progress()
        assert 6 <= at_kill < accepted, f"killed at {at_kill} of {accepted}: not mid-campaign"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT state FROM jobs WHERE id = :id"), {"id": job_id}).scalar() == "running"
        time.sleep(1.1)  # the dead consumer's lease (1 s) runs out
        second = _start_consumer(env, log)
        try:
            wait_for(lambda: _statuses(app, campaign_id)["sent"] == accepted, seconds=30)
        finally:
            second.send_signal(signal.SIGINT)
            second.wait(timeout=20)
        job = _job(app, job_id)
        assert (job.state, job.attempts, job.progress_done) == ("done", 2, accepted), log.read_text()[-2000:]
        mails = [BytesParser(policy=policy.default).parsebytes(p.read_bytes())
                 for p in Path(app.config["CRM_OUTBOX_DIR"]).glob("*.eml")]
        campaign_mails = [m for m in mails if f"c{campaign_id}h" in m["Message-ID"]]
        per_recipient = Counter(m["To"] for m in campaign_mails)
        assert len(per_recipient) == accepted and set(per_recipient.values()) == {1}
        assert len({m["Message-ID"] for m in campaign_mails}) == accepted
        engine.dispose()
    finally:
        with app.app_context():
            _db.session.remove()
            _db.engine.dispose()
