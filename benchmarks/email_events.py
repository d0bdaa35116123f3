"""Email benchmark: webhook ingest throughput, replays, and consent evaluation of a large audience.

Builds a fresh data set (``--hcps`` HCPs with encrypted addresses and blind indexes, an email consent
ledger for most of them, one sent campaign) with Core ``executemany`` inserts, then measures, in process
and through the whole HTTP stack (signature check, JSON parsing, ingest, commit):

* webhook ingest of ``--batches`` batches of ``--batch-size`` new events (a realistic mix: processed,
  delivered, opens, clicks, deferrals, a few bounces and unsubscribes; 80 % tied by the ``hcp_id``
  custom argument, 20 % by address), in events per second;
* the same batches posted again (replays: nothing is added), in events per second;
* consent evaluation of the whole audience for a send (``crm.campaigns.services.evaluate``: the consent
  decision and the contact-point check for every HCP), in seconds;

and writes the figures to the "Email events and campaign sends" section of docs/performance.md.

    python -m benchmarks.email_events [--database-url URL] [--hcps N] [--batches N] [--batch-size N]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

from benchmarks.report import machine, write_subsection

DATA_DIR = Path(__file__).resolve().parent / ".data"
SECTION = "Email events and campaign sends"
INTRO = """Measured by `make bench-email` (`python -m benchmarks.email_events`), in process through the whole
HTTP stack of `POST /api/v1/integrations/email/events` (ECDSA signature check, JSON parsing, ingest, commit).
Targets (issue 4): ingest of 1,000-event batches at least 10,000 events/s on SQLite, replays of the same
batches at least 30,000 events/s, consent evaluation of a 100,000-HCP audience under 2 s. A batch takes a
constant number of queries (bulk lookups of known `sg_event_id`s, of HCPs by id and by blind index, one
multi-row insert each for events, timeline items and participants); unsubscribes (a ledger withdrawal each)
and hard bounces (a contact-point update each) cost a few queries per event, so the mix below holds them at
realistic rates (0.3 % and 1 %). The data set's derived consent states are folded from its ledger by the
product's own rules, as every ledger append keeps them; on PostgreSQL it is analysed after loading, as
autovacuum keeps a database in service."""
MIX = [("processed", 15), ("delivered", 38), ("open", 28), ("click", 12), ("deferred", 5.7), ("bounce", 1),
       ("unsubscribe", 0.3)]
# The same without the events that write elsewhere (consent ledger, contact points): the timeline path alone.
ENGAGEMENT_ONLY = [("processed", 15), ("delivered", 40), ("open", 30), ("click", 15)]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.email_events", description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=f"sqlite:///{DATA_DIR / 'email_events.sqlite3'}",
                        help="default: a SQLite file under benchmarks/.data/ (rebuilt on every run)")
    parser.add_argument("--hcps", type=int, default=100_000, help="HCPs in the audience (default 100,000)")
    parser.add_argument("--batches", type=int, default=30, help="webhook batches to post (default 30)")
    parser.add_argument("--batch-size", type=int, default=1000, help="events per batch (default 1,000)")
    parser.add_argument("--repeat", type=int, default=5, help="timed consent evaluations (default 5)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    return parser.parse_args(argv)


def prepare_database(url: str) -> None:
    """A fresh, empty database: the SQLite file is removed; a PostgreSQL database is created if missing."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        DATA_DIR.mkdir(parents=True, exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{parsed.database}{suffix}").unlink(missing_ok=True)
        return
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": parsed.database}).scalar():
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    admin.dispose()


def make_app(url: str, public_key: str) -> Any:
    os.environ.setdefault("CRM_INSTANCE_PATH", str(DATA_DIR / "instance"))
    from crm import create_app
    from crm.config import engine_options

    return create_app({"SQLALCHEMY_DATABASE_URI": url, "SQLALCHEMY_ENGINE_OPTIONS": engine_options(url),
                       "CRM_ESP_WEBHOOK_PUBLIC_KEY": public_key,
                       "CRM_OUTBOX_DIR": str(DATA_DIR / "outbox")})


def build(app: Any, hcps: int) -> tuple[int, list[str]]:
    """Schema, HCPs, a consent ledger and one campaign. Returns (campaign id, the HCPs' addresses)."""
    from crm.campaigns.models import Audience, Campaign, EmailTemplate
    from crm.consent.models import ConsentEvent, ConsentState
    from crm.extensions import db
    from crm.hcps.models import HCP
    from crm.security.crypto import blind_index, keyring

    rnd = random.Random(7)  # noqa: S311
    with app.app_context():
        with db.engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("DROP SCHEMA public CASCADE"))
                conn.execute(text("CREATE SCHEMA public"))
        db.metadata.create_all(db.engine)
        ring = keyring()
        now = datetime.now(UTC)
        emails = [f"hcp{i}@clinic{i % 97}.example" for i in range(1, hcps + 1)]
        started = time.perf_counter()
        with db.engine.begin() as conn:
            for start in range(0, hcps, 10_000):
                conn.execute(insert(HCP.__table__), [
                    {"id": i + 1, "first_name": f"Ada{i}", "last_name": f"Lovelace{i}",
                     "profession": "gp" if i % 3 else "specialist", "specialty": "Cardiology", "country": "US",
                     "status": "active", "version": 1, "email_status": "valid", "created_at": now,
                     "updated_at": now, "email": ring.encrypt("hcps.email", emails[i]),
                     "email_bidx": blind_index(emails[i])}
                    for i in range(start, min(start + 10_000, hcps))])
            ledger = []
            for i in range(1, hcps + 1):
                roll = rnd.random()
                if roll < 0.7:
                    granted = now - timedelta(days=rnd.randint(30, 600))
                    ledger.append(_consent(i, "granted", granted, granted + timedelta(days=730)))
                    if roll < 0.1:
                        ledger.append(_consent(i, "withdrawn", granted + timedelta(days=10), None))
            for start in range(0, len(ledger), 20_000):
                conn.execute(insert(ConsentEvent.__table__), ledger[start:start + 20_000])
            # The derived state table, as the ledger's appends keep it: folded by the product's own rules.
            conn.execute(insert(ConsentState.__table__), derived_states(conn, now))
            template_id = conn.execute(insert(EmailTemplate.__table__).returning(EmailTemplate.id), {
                "name": "Bench", "version": 1, "subject": "s", "html_body": "h", "text_body": "t", "purpose": "events",
                "products": [], "language": "en", "status": "approved", "created_at": now, "updated_at": now}).scalar()
            audience_id = conn.execute(insert(Audience.__table__).returning(Audience.id), {
                "name": "Everyone", "professions": ["gp", "specialist"], "specialties": [], "territory_codes": [],
                "tags": [], "hcp_ids": [], "created_at": now}).scalar()
            campaign_id = conn.execute(insert(Campaign.__table__).returning(Campaign.id), {
                "name": "Bench", "template_id": template_id, "audience_id": audience_id, "status": "sent",
                "created_at": now}).scalar()
        if db.engine.dialect.name == "postgresql":
            # Planner statistics, as autovacuum keeps them for a database in service: without them the
            # freshly loaded tables look empty and PostgreSQL picks scans no live system would.
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(text("ANALYZE"))
        print(f"built {hcps:,} HCPs and {len(ledger):,} ledger events in {time.perf_counter() - started:.1f} s",
              file=sys.stderr)
    return campaign_id, emails


def derived_states(conn: Any, now: datetime) -> list[dict[str, Any]]:
    """``consent_states`` rows for the ledger just written, folded with ``crm.consent.services.fold``
    (what ``rebuild_states`` does per HCP after every append), for the one pair the ledger holds."""
    from collections import defaultdict

    from crm.consent.services import _EVENT_COLUMNS, fold

    events: dict[int, list[Any]] = defaultdict(list)
    for row in conn.execute(select(*_EVENT_COLUMNS).order_by(_EVENT_COLUMNS[0])):
        events[row.hcp_id].append(row)
    rows = []
    for hcp_id, evs in events.items():
        ps = fold(evs, "email", "events", None)
        if ps.state != "none":
            rows.append({"hcp_id": hcp_id, "channel": "email", "purpose": "events", "state": ps.state,
                         "since": ps.since, "valid_until": ps.valid_until, "source": ps.source,
                         "last_event_id": ps.event_ids[-1] if ps.event_ids else None, "updated_at": now})
    return rows


def _consent(hcp_id: int, kind: str, at: datetime, valid_until: datetime | None) -> dict[str, Any]:
    return {"hcp_id": hcp_id, "origin_hcp_id": hcp_id, "channel": "email", "purpose": "events", "event_type": kind,
            "occurred_at": at, "recorded_at": at, "source": "import", "captured_by_role": "system",
            "valid_until": valid_until, "external_id": None, "evidence": None}


def batches(campaign_id: int, emails: list[str], count: int, size: int, mix: list[tuple[str, float]],
            tag: str) -> list[bytes]:
    rnd = random.Random(11)  # noqa: S311
    kinds = [k for k, _ in mix]
    weights = [w for _, w in mix]
    start = int(time.time()) - 3600
    out = []
    for b in range(count):
        events = []
        for n in range(size):
            hcp = rnd.randrange(len(emails))
            kind = rnd.choices(kinds, weights)[0]
            event: dict[str, Any] = {"sg_event_id": f"{tag}-{b}-{n}-{rnd.getrandbits(40):x}", "event": kind,
                                     "timestamp": start + rnd.randint(0, 3000), "email": emails[hcp],
                                     "sg_message_id": f"m{hcp}.{campaign_id}", "campaign_id": str(campaign_id)}
            if rnd.random() < 0.8:
                event["hcp_id"] = str(hcp + 1)
            if kind == "bounce":
                event.update(type="bounce", reason="550 5.1.1 user unknown")
            elif kind == "click":
                event["url"] = "https://pharma.example/more"
            elif kind == "deferred":
                event["response"] = "421 try again later"
            events.append(event)
        out.append(json.dumps(events).encode())
    return out


def post_all(app: Any, key: ec.EllipticCurvePrivateKey, bodies: list[bytes]) -> list[float]:
    from crm.integrations.sendgrid.signature import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

    client = app.test_client()
    times = []
    for raw in bodies:
        ts = str(int(time.time()))
        headers = {SIGNATURE_HEADER: sign(key, ts, raw), TIMESTAMP_HEADER: ts, "Content-Type": "application/json"}
        started = time.perf_counter()
        resp = client.post("/api/v1/integrations/email/events", data=raw, headers=headers)
        times.append(time.perf_counter() - started)
        if resp.status_code != 200:
            raise SystemExit(f"webhook answered {resp.status_code}: {resp.get_data(as_text=True)[:500]}")
    return times


def evaluate_audience(app: Any, repeat: int) -> tuple[list[float], dict[str, int]]:
    from crm.campaigns import services
    from crm.campaigns.models import Audience
    from crm.db import utcnow
    from crm.extensions import db

    times = []
    outcome: dict[str, int] = {}
    with app.app_context():
        audience = db.session.get(Audience, 1)
        assert audience is not None  # noqa: S101
        for _ in range(repeat):
            started = time.perf_counter()
            ids = services.audience_hcp_ids(db.session, audience)
            result = services.evaluate(db.session, ids, "events", utcnow())
            times.append(time.perf_counter() - started)
            outcome = {"audience": len(ids), "send": len(result.send), "skipped": len(result.skipped)}
            db.session.rollback()
    return times, outcome


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    key = ec.generate_private_key(ec.SECP256R1())
    from crm.integrations.sendgrid.signature import public_key_b64

    prepare_database(args.database_url)
    app = make_app(args.database_url, public_key_b64(key))
    campaign_id, emails = build(app, args.hcps)
    bodies = batches(campaign_id, emails, args.batches, args.batch_size, MIX, "mix")
    engagement = batches(campaign_id, emails, args.batches, args.batch_size, ENGAGEMENT_ONLY, "eng")
    # The harness's own data (100,000 addresses, the request bodies) is not the server's heap: keep it out
    # of the garbage collector's way, as a preloaded server process would.
    gc.collect()
    gc.freeze()
    post_all(app, key, bodies[:1])  # warm-up batch (caches, prepared statements); not counted
    fresh = post_all(app, key, bodies[1:])
    replay = post_all(app, key, bodies[1:])
    engaged = post_all(app, key, engagement[1:])
    eval_times, outcome = evaluate_audience(app, args.repeat)
    n = args.batch_size
    ingest_rate = n * len(fresh) / sum(fresh)
    replay_rate = n * len(replay) / sum(replay)
    engaged_rate = n * len(engaged) / sum(engaged)
    dialect = make_url(args.database_url).get_backend_name()
    name = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}.get(dialect, dialect)
    verdict = {True: "met", False: "NOT met"}
    body = f"""Machine: {machine()}. Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC.

| measurement | result | target |
|---|---|---|
| ingest, {len(fresh)} batches of {n:,} new events (realistic mix) | **{ingest_rate:,.0f} events/s** (median batch {statistics.median(fresh) * 1000:.0f} ms) | >= 10,000 events/s: {verdict[ingest_rate >= 10_000]} |
| ingest, the same without bounces and unsubscribes (processed, delivered, open, click only) | **{engaged_rate:,.0f} events/s** (median batch {statistics.median(engaged) * 1000:.0f} ms) | (for comparison) |
| replay of the realistic batches (nothing added) | **{replay_rate:,.0f} events/s** (median batch {statistics.median(replay) * 1000:.0f} ms) | >= 30,000 events/s: {verdict[replay_rate >= 30_000]} |
| consent evaluation, audience of {outcome['audience']:,} HCPs ({outcome['send']:,} would be mailed, {outcome['skipped']:,} skipped) | **{statistics.median(eval_times):.2f} s** median of {len(eval_times)} (best {min(eval_times):.2f} s) | < 2 s: {verdict[statistics.median(eval_times) < 2]} |
"""  # noqa: E501
    print(body)
    if not args.no_write:
        write_subsection(SECTION, INTRO, name, body)


if __name__ == "__main__":
    main(sys.argv[1:])
