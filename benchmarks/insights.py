"""Insights benchmark: does every aggregation of the insights page stay under 1 s at 1M interactions and 50k HCPs?

Builds (or reuses) a data set with set-based inserts only (``INSERT ... SELECT`` over ``generate_series`` on
PostgreSQL, a recursive CTE on SQLite): ``--hcps`` HCPs, ``--rows`` interactions over two years up to now
(one participant each), consent states, 20 campaigns with 2,500 recipients each and their email events,
two NPS surveys with about 6,000 answers, ten saved segments and three engagement plans of this quarter.
Then times each aggregation of ``crm.insights.services`` in ``--rounds`` interleaved rounds (each round
runs every measurement once, in a shuffled order, so load on the machine falls on all of them alike),
for the default period (13 weeks) and for the longest (two years), and prints min / median / max.

    python -m benchmarks.insights [--database-url URL] [--rows N] [--hcps N] [--rounds N] [--rebuild] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError

from benchmarks.report import machine, write_subsection

DATA_DIR = Path(__file__).resolve().parent / ".data"
SPAN_DAYS = 730
TARGET_S = 1.0
SEGMENTS = [
    ("Tier A", {"tiers": ["A"]}), ("Tier B", {"tiers": ["B"]}), ("Tier C", {"tiers": ["C"]}),
    ("GPs", {"professions": ["gp"]}), ("Specialists", {"professions": ["specialist"]}),
    ("Pharmacists", {"professions": ["pharmacist"]}), ("Nurses", {"professions": ["nurse"]}),
    ("KOLs", {"tags": ["kol"]}), ("North (T01-T03)", {"territory_codes": ["T01", "T02", "T03"]}),
    ("Tier A specialists", {"tiers": ["A"], "professions": ["specialist"]}),
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.insights", description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="interactions (default 1,000,000)")
    parser.add_argument("--hcps", type=int, default=50_000, help="HCPs (default 50,000)")
    parser.add_argument("--database-url", default=f"sqlite:///{DATA_DIR / 'insights.sqlite3'}",
                        help="default: a SQLite file under benchmarks/.data/")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (default 5)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the data set even if it matches")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    args = parser.parse_args(argv)
    if args.rows < 1000 or args.hcps < 100:
        parser.error("need --rows >= 1000 and --hcps >= 100")
    return args


def make_app(url: str) -> Any:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CRM_INSTANCE_PATH", str(DATA_DIR / "instance"))
    from crm import create_app
    from crm.config import engine_options

    return create_app({"SQLALCHEMY_DATABASE_URI": url, "SQLALCHEMY_ENGINE_OPTIONS": engine_options(url)})


# -- the data set, set-based ------------------------------------------------------------------------

class Sql:
    """The few spellings that differ between the two engines."""

    def __init__(self, conn: Connection) -> None:
        self.pg = conn.dialect.name == "postgresql"
        self.json = "'{}'::json" if self.pg else "'{}'"
        self.json_list = "'[]'::json" if self.pg else "'[]'"
        self.false = "false" if self.pg else "0"

    def series(self, n: int) -> tuple[str, str]:
        """(prefix, FROM clause) of the numbers 1..n as column ``n``."""
        if self.pg:
            return "", f"generate_series(1, {int(n)}) AS s(n)"
        return f"WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < {int(n)}) ", "s"

    def at(self, start: datetime, seconds: str) -> str:
        """``start`` plus ``seconds`` (an SQL integer expression) as the engine stores UTC times."""
        if self.pg:
            return f"(timestamptz '{start.isoformat()}' + ({seconds}) * interval '1 second')"
        return f"datetime('{start:%Y-%m-%d %H:%M:%S}', '+' || ({seconds}) || ' seconds')"

    def now(self, now: datetime) -> str:
        return f"timestamptz '{now.isoformat()}'" if self.pg else f"'{now:%Y-%m-%d %H:%M:%S}'"


def _dataset_matches(engine: Engine, args: argparse.Namespace) -> bool:
    try:
        with engine.connect() as conn:
            rows = conn.scalar(text("SELECT count(*) FROM interactions"))
            hcps = conn.scalar(text("SELECT count(*) FROM hcps"))
            newest = conn.scalar(text("SELECT max(occurred_at) FROM interactions"))
    except DBAPIError:
        return False
    if newest is None or (rows, hcps) != (args.rows, args.hcps):
        return False
    newest_dt = newest if isinstance(newest, datetime) else datetime.fromisoformat(str(newest))
    # The default period is the last 13 weeks: a data set older than a day measures the wrong thing.
    return datetime.now(UTC) - newest_dt.replace(tzinfo=UTC) < timedelta(days=1)


def build(engine: Engine, args: argparse.Namespace) -> float:
    """Drop and create the schema, then fill it; returns seconds."""
    from crm.auth.models import User
    from crm.campaigns.models import Audience, Campaign, EmailTemplate
    from crm.db import Base
    from crm.hcps.models import Territory
    from crm.plans.models import EngagementPlan
    from crm.plans.services import current_quarter
    from crm.security.crypto import blind_index
    from crm.segments.models import Segment
    from crm.surveys.models import Survey

    started = time.perf_counter()
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    else:
        # Without the foreign-key checks: with them SQLite checks every deleted row against the columns that
        # refer to it, some unindexed (interactions.superseded_by_id), and a rebuild takes many minutes.
        raw = engine.raw_connection()
        try:
            cur = raw.cursor()
            cur.execute("PRAGMA foreign_keys=OFF")
            for table in reversed(Base.metadata.sorted_tables):
                cur.execute(f'DROP TABLE IF EXISTS "{table.name}"')
            cur.execute("PRAGMA foreign_keys=ON")
        finally:
            raw.close()
    Base.metadata.create_all(engine)
    now = datetime.now(UTC).replace(microsecond=0)
    start = now - timedelta(days=SPAN_DAYS)
    span = SPAN_DAYS * 86400
    with engine.begin() as conn:
        q = Sql(conn)
        ts = q.now(now)
        conn.execute(insert(Territory), [{"id": n, "code": f"T{n:02d}", "name": f"Territory {n}"}
                                          for n in range(1, 11)])
        roles = ["field_rep", "marketer", "call_centre", "medical", "compliance", "admin"]
        conn.execute(insert(User), [
            {"id": n, "email": f"{role}@bench.example", "email_bidx": blind_index(f"{role}@bench.example"),
             "name": f"Bench {role}", "role": role, "password_hash": "!benchmark-no-login"}
            for n, role in enumerate(roles, start=1)])
        prefix, series = q.series(args.hcps)
        conn.execute(text(
            f"{prefix}INSERT INTO hcps (id, first_name, last_name, profession, specialty, country, status, "
            "email_status, version, created_at, updated_at, territory_id, tier, tags) "
            f"SELECT n, 'First' || n, 'Last' || n, CASE n % 5 WHEN 0 THEN 'gp' WHEN 1 THEN 'specialist' "
            "WHEN 2 THEN 'pharmacist' WHEN 3 THEN 'nurse' ELSE 'other' END, NULL, 'US', 'active', 'valid', 1, "
            f"{ts}, {ts}, 1 + n % 10, CASE n % 3 WHEN 0 THEN 'A' WHEN 1 THEN 'B' ELSE 'C' END, "
            f"CASE n % 4 WHEN 0 THEN 'kol' WHEN 1 THEN 'new-prescriber' ELSE NULL END FROM {series}"))
        prefix, series = q.series(args.rows)
        bucket = "n % 100"
        channel = (f"CASE WHEN {bucket} < 30 THEN 'visit' WHEN {bucket} < 70 THEN 'email' WHEN {bucket} < 78 "
                   f"THEN 'event' WHEN {bucket} < 86 THEN 'call_centre' WHEN {bucket} < 94 THEN 'order' "
                   f"WHEN {bucket} < 97 THEN 'survey' ELSE 'consent' END")
        kind = (f"CASE WHEN {bucket} < 30 THEN 'visit.submitted' WHEN {bucket} < 70 THEN "
                "(CASE n % 3 WHEN 0 THEN 'email.delivered' WHEN 1 THEN 'email.opened' ELSE 'email.clicked' END) "
                f"WHEN {bucket} < 78 THEN 'event.attended' WHEN {bucket} < 86 THEN "
                "(CASE n % 4 WHEN 0 THEN 'call_centre.product_information' WHEN 1 THEN "
                "'call_centre.medical_inquiry' WHEN 2 THEN 'call_centre.adverse_event' ELSE 'call_centre.other' END) "
                f"WHEN {bucket} < 94 THEN 'order.sent' WHEN {bucket} < 97 THEN 'survey.answered' "
                "ELSE 'consent.granted' END")
        sensitivity = (f"CASE WHEN {bucket} >= 78 AND {bucket} < 86 AND n % 4 = 1 THEN 'medical' "
                       f"WHEN {bucket} >= 78 AND {bucket} < 86 AND n % 4 = 2 THEN 'pv' "
                       f"WHEN {bucket} < 30 AND n % 20 = 0 THEN 'medical' ELSE 'standard' END")
        seconds = "(CAST(n AS BIGINT) * 7919) % " + str(span)
        conn.execute(text(
            f"{prefix}INSERT INTO interactions (id, occurred_at, recorded_at, channel, kind, source, summary, "
            "safe_summary, details, sensitivity, owner_role, consent_gap) "
            f"SELECT n, {q.at(start, seconds)}, {q.at(start, seconds)}, {channel}, {kind}, 'import', "
            f"'item ' || n, '', {q.json}, {sensitivity}, 'system', {q.false} FROM {series}"))
        conn.execute(text(
            "INSERT INTO interaction_participants (interaction_id, hcp_id, occurred_at, channel, kind) "
            f"SELECT id, 1 + (CAST(id AS BIGINT) * 2654435761) % {args.hcps}, occurred_at, channel, kind "
            "FROM interactions"))
        # consent: email promotional for a third, market research for half, visit promotional for most
        for ch, purpose, cond, state in (("email", "promotional", "id % 3 = 0", "granted"),
                                         ("email", "market_research", "id % 2 = 0", "granted"),
                                         ("visit", "promotional", "id % 5 <> 0", "granted"),
                                         ("email", "events", "id % 7 = 0", "withdrawn")):
            conn.execute(text(
                "INSERT INTO consent_states (hcp_id, channel, purpose, state, since, valid_until, source, updated_at) "
                f"SELECT id, '{ch}', '{purpose}', '{state}', {ts}, NULL, 'import', {ts} FROM hcps WHERE {cond}"))
        # segments, plans of this quarter, campaigns, surveys: a handful of rows each
        for n, (name, criteria) in enumerate(SEGMENTS, start=1):
            conn.execute(insert(Segment), [{"id": n, "name": name, "description": "", "professions": [],
                                            "specialties": [], "territory_codes": [], "tags": [], "tiers": [],
                                            "created_by_id": 2, **criteria}])
        first, last = current_quarter(now.date())
        conn.execute(insert(EngagementPlan), [
            {"id": n, "name": f"Quarter plan {n}", "cycle_start": first, "cycle_end": last, "segment_id": n,
             "channel_goals": {"visit": 2, "email": 3, "call_centre": 1}, "product_goals": [], "created_by_id": 2}
            for n in (1, 4, 9)])
        conn.execute(insert(EmailTemplate), [{"id": 1, "name": "Bench", "version": 1, "subject": "s", "html_body": "h",
                                              "text_body": "t", "purpose": "promotional", "products": [],
                                              "language": "en", "status": "approved"}])
        conn.execute(insert(Audience), [{"id": 1, "name": "Everyone tier A", "professions": [], "specialties": [],
                                         "territory_codes": [], "tags": [], "hcp_ids": [], "segment_id": 1}])
        conn.execute(insert(Campaign), [
            {"id": n, "name": f"Campaign {n}", "template_id": 1, "audience_id": 1, "status": "sent",
             "last_sent_at": now - timedelta(days=4 * n)} for n in range(1, 21)])
        conn.execute(text(
            "INSERT INTO campaign_messages (campaign_id, hcp_id, status, sent_at, updated_at) "
            f"SELECT 1 + id % 20, id, 'sent', {ts}, {ts} FROM hcps"))
        for event, cond in (("delivered", "id % 10 <> 0"), ("open", "id % 10 < 4"), ("click", "id % 10 = 1"),
                            ("unsubscribe", "id % 100 = 3"), ("bounce", "id % 10 = 0")):
            conn.execute(text(
                "INSERT INTO email_events (sg_event_id, event_type, platform_type, occurred_at, received_at, hcp_id, "
                f"campaign_id, raw) SELECT '{event}-' || id, '{event}', '{event}', {ts}, {ts}, hcp_id, campaign_id, "
                f"{q.json} FROM campaign_messages WHERE {cond}"))
        conn.execute(insert(Survey), [{"id": n, "name": f"NPS {n}", "kind": "nps", "questions": ["Recommend?"],
                                       "hcp_ids": [], "status": "sent", "created_by_id": 2} for n in (1, 2)])
        conn.execute(text(
            "INSERT INTO survey_responses (survey_id, hcp_id, score, answers, medium, answered_at, recorded_at, "
            "sensitivity, guardrail_hits) "
            f"SELECT 1 + id % 2, id, (id * 7) % 11, {q.json_list}, 'link', "
            f"{q.at(now - timedelta(days=180), '(CAST(id AS BIGINT) * 7919) % ' + str(180 * 86400))}, {ts}, "
            f"'standard', {q.json_list} FROM hcps WHERE id % 8 = 0"))
        if q.pg:
            for table in ("hcps", "interactions", "interaction_participants", "campaign_messages", "email_events",
                          "consent_states", "survey_responses", "segments", "engagement_plans", "campaigns",
                          "surveys", "users", "territories", "audiences", "email_templates"):
                seq_col = "id"
                if table in ("interaction_participants", "consent_states"):
                    continue
                conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', '{seq_col}'), "
                                  f"(SELECT coalesce(max({seq_col}), 1) FROM {table}))"))
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    return time.perf_counter() - started


# -- the measurements -------------------------------------------------------------------------------

def measurements() -> dict[str, Callable[[], Any]]:
    from crm.extensions import db
    from crm.insights import services

    def timed(name: str, days: int | None, segment: int | None = None) -> Callable[[], Any]:
        def run() -> Any:
            until = datetime.now(UTC)
            since = until - timedelta(days=days) if days else None
            w = services.window(db.session, since=since, until=until, segment_id=segment)
            return services.CHARTS[name](db.session, w)
        return run

    out = {}
    for name in services.CHARTS:
        out[f"{name}, 13 weeks"] = timed(name, None)
    for name in ("channel-mix", "reach", "nps-trend"):
        out[f"{name}, 2 years"] = timed(name, 730)
    out["channel-mix, 13 weeks, segment Tier A"] = timed("channel-mix", None, 1)
    out["channel-mix, 2 years, segment Tier A"] = timed("channel-mix", 730, 1)
    return out


def run(args: argparse.Namespace) -> dict[str, list[float]]:
    app = make_app(args.database_url)
    from crm.extensions import db

    with app.app_context():
        engine = db.engine
        if args.rebuild or not _dataset_matches(engine, args):
            print(f"building {args.rows:,} interactions over {args.hcps:,} HCPs ...", flush=True)
            print(f"built in {build(engine, args):.1f} s", flush=True)
        with engine.connect() as conn:
            counts = {t: conn.scalar(select(func.count()).select_from(text(t))) for t in
                      ("interactions", "interaction_participants", "hcps", "consent_states", "campaign_messages",
                       "email_events", "survey_responses")}
        print(", ".join(f"{t} {n:,}" for t, n in counts.items()), flush=True)
        todo = measurements()
        samples: dict[str, list[float]] = {name: [] for name in todo}
        rnd = random.Random(12)  # noqa: S311 - the order of measurements, not security
        for fn in todo.values():  # warm-up: caches and plans, not measured
            fn()
            db.session.remove()
        for r in range(args.rounds):
            order = list(todo)
            rnd.shuffle(order)
            for name in order:
                started = time.perf_counter()
                todo[name]()
                samples[name].append(time.perf_counter() - started)
                db.session.remove()
            print(f"round {r + 1}/{args.rounds} done", flush=True)
    return samples


def report(args: argparse.Namespace, samples: dict[str, list[float]], engine_name: str) -> str:
    lines = [f"{args.rows:,} interactions over two years, {args.hcps:,} HCPs, {len(SEGMENTS)} segments, "
             f"{args.rounds} interleaved rounds, measured {date.today().isoformat()} on {machine()}; "
             f"load average at the end {os.getloadavg()[0]:.1f} (shared machine).", "",
             "| aggregation | min | median | max | under 1 s (median) |", "|---|---|---|---|---|"]
    for name, values in samples.items():
        median = statistics.median(values)
        lines.append(f"| {name} | {min(values) * 1000:.0f} ms | {median * 1000:.0f} ms | {max(values) * 1000:.0f} ms "
                     f"| {'yes' if median < TARGET_S else 'NO'} |")
    met = all(statistics.median(v) < TARGET_S for v in samples.values())
    lines += ["", f"Target (< 1 s per aggregation, median) on {engine_name}: **{'met' if met else 'not met'}**."]
    return "\n".join(lines)


INTRO = """`make bench-insights` (`python -m benchmarks.insights`; `BENCH_ARGS="--database-url postgresql+psycopg://..."`
for PostgreSQL) builds 1M interactions over 50k HCPs with set-based inserts (`INSERT ... SELECT` over a number
series), plus consent states, 20 campaigns with 50k recipients and their email events, about 6,000 NPS answers,
ten segments and three plans of this quarter, then times each aggregation of the insights page
(`crm.insights.services`) in interleaved rounds. The target (issue 12) is under 1 s per aggregation."""


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    samples = run(args)
    engine_name = "PostgreSQL" if args.database_url.startswith("postgresql") else "SQLite"
    body = report(args, samples, engine_name)
    print(body)
    if not args.no_write:
        write_subsection("Insights", INTRO, engine_name, body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
