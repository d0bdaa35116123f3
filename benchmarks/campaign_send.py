"""Campaign send through the queue (issue 13): how long the send request takes, and how long the background
job and the mail hand-over take to finish, with a real consumer process.

Builds a fresh data set (``--hcps`` HCPs, about 60 % of them with a granted email consent: the same data set
as benchmarks/email_events.py), then:

1. ``POST /api/v1/campaigns/{id}/send`` as a marketer, through the app's real request path: consent evaluated
   for the whole audience, the recipients stored as pending rows, the job created. Timed.
2. unless ``--request-only``: one consumer process (``crm queue consume``, ``--workers``) runs the send job and
   the mail hand-overs (file backend); the job's progress is sampled until it is done and every recipient is
   ``sent``. Timed.

    python -m benchmarks.campaign_send                        # 84,000 HCPs: about 50,000 recipients
    python -m benchmarks.campaign_send --hcps 8000            # a quicker run of the background part
    python -m benchmarks.campaign_send --request-only         # the request alone

SQLite database and SQLite queue under benchmarks/.data/ (``--database-url`` / ``--queue-url`` for others).
Prints a Markdown table to paste into docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from benchmarks.email_events import DATA_DIR, build, prepare_database

PROJECT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", default=f"sqlite:///{DATA_DIR / 'send.sqlite3'}")
    parser.add_argument("--queue-url", default=f"sqlite:///{DATA_DIR / 'send-queue.db'}")
    parser.add_argument("--hcps", type=int, default=84_000, help="HCPs in the audience (default 84,000)")
    parser.add_argument("--workers", type=int, default=2, help="consumer worker threads (default 2)")
    parser.add_argument("--batch-size", type=int, default=500, help="CRM_SEND_BATCH_SIZE (default 500)")
    parser.add_argument("--request-only", action="store_true", help="time the request, not the background")
    return parser.parse_args(argv)


def _environment(args: argparse.Namespace) -> dict[str, str]:
    instance = DATA_DIR / "instance"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_")}
    env.update({"CRM_INSTANCE_PATH": str(instance), "CRM_DATABASE_URL": args.database_url,
                "CRM_QUEUE_URL": args.queue_url, "CRM_OUTBOX_DIR": str(DATA_DIR / "send-outbox"),
                "CRM_SEND_BATCH_SIZE": str(args.batch_size), "CRM_QUEUE_PERIODIC": "false",
                "CRM_LOG_LEVEL": "WARNING", "FLASK_APP": "wsgi"})
    return env


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    prepare_database(args.database_url)
    if args.queue_url.startswith("sqlite:///"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{args.queue_url[len('sqlite:///'):]}{suffix}").unlink(missing_ok=True)
    env = _environment(args)
    os.environ.update({k: v for k, v in env.items() if k.startswith("CRM_")})
    from crm import create_app
    from crm.auth.services import create_user, issue_token
    from crm.config import engine_options
    from crm.extensions import db

    app = create_app({"SQLALCHEMY_DATABASE_URI": args.database_url,
                      "SQLALCHEMY_ENGINE_OPTIONS": engine_options(args.database_url)})
    campaign_id, _emails = build(app, args.hcps)
    password = "benchmark-marketer-2026"
    with app.app_context():
        create_user(db.session, None, email="bench.marketer@pharma.example", name="Bench", role="marketer",
                    password=password)
        db.session.commit()
        token, _t, _u = issue_token(db.session, "bench.marketer@pharma.example", password, "127.0.0.1")
        db.session.commit()
    client = app.test_client()
    started = time.perf_counter()
    resp = client.post(f"/api/v1/campaigns/{campaign_id}/send", headers={"Authorization": f"Bearer {token}"})
    request_s = time.perf_counter() - started
    body: dict[str, Any] = resp.get_json()
    assert resp.status_code == 202, body
    accepted, job_id = body["sent"], body["job_id"]
    print(f"request: {request_s:.2f} s, {accepted:,} accepted, {len(body['skipped']):,} skipped, job {job_id}",
          file=sys.stderr)
    rows = [f"| send request (`POST /campaigns/{{id}}/send`), audience {args.hcps:,} HCPs, {accepted:,} accepted "
            f"| **{request_s:.2f} s** | answers 202 at once |"]
    if not args.request_only:
        rows += _background(args, env, job_id, accepted)
    print("\n".join(["| what | time | note |", "|---|---|---|", *rows]))


def _background(args: argparse.Namespace, env: dict[str, str], job_id: int, accepted: int) -> list[str]:
    engine = create_engine(args.database_url)

    def one(sql: str) -> Any:
        with engine.connect() as conn:
            return conn.execute(text(sql), {"id": job_id}).one()

    started = time.perf_counter()
    consumer = subprocess.Popen([sys.executable, "-m", "crm", "crm", "queue", "consume", "-w", str(args.workers)],
                                cwd=PROJECT, env=env)
    try:
        job_done = None
        last = 0.0
        while True:
            state, done = one("SELECT state, progress_done FROM jobs WHERE id = :id")
            now = time.perf_counter() - started
            if job_done is None and state in ("done", "failed"):
                job_done = now
            if now - last >= 30:
                print(f"{now:6.0f} s: job {state}, {done:,} of {accepted:,} handed over", file=sys.stderr)
                last = now
            if job_done is not None:
                sent = one("SELECT count(*) FROM campaign_messages WHERE status = 'sent' AND campaign_id = "
                           "(SELECT CAST(json_extract(params, '$.campaign_id') AS INTEGER) FROM jobs WHERE id = :id)"
                           if engine.dialect.name == "sqlite" else
                           "SELECT count(*) FROM campaign_messages WHERE status = 'sent' AND campaign_id = "
                           "(SELECT (params->>'campaign_id')::int FROM jobs WHERE id = :id)")[0]
                if sent >= accepted or state == "failed":
                    all_sent = time.perf_counter() - started
                    break
            time.sleep(1)
    finally:
        consumer.send_signal(signal.SIGINT)
        consumer.wait(timeout=60)
    engine.dispose()
    return [f"| send job: {accepted:,} recipients handed to the mail outbox (batches of {args.batch_size}, one "
            f"consumer, {args.workers} workers) | **{job_done:.0f} s** ({accepted / job_done:.0f}/s) | job {state} |",
            f"| every recipient `sent` (mail handed to the file adapter) | **{all_sent:.0f} s** | |"]


if __name__ == "__main__":
    main(sys.argv[1:])
