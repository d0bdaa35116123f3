"""SQLite readers and the write lock: p50/p99 of timeline GET requests from 4 concurrent reader processes,
with and without a concurrent writer, with read requests beginning deferred (now) or IMMEDIATE (before
issue 13). The two configurations are interleaved round by round in one run, so a busy machine slows both.

"Before" is the same code with no method counted as read-only (``crm.web.READ_METHODS`` emptied in the
reader processes): every request then begins ``BEGIN IMMEDIATE``, as every transaction did before.

The writer is one process that loops short write transactions (``BEGIN IMMEDIATE``, one UPDATE, a few
milliseconds of work inside the transaction, ``COMMIT``, a pause), like a stream of save requests.

    python -m benchmarks.read_locks [--rounds N] [--requests N] [--role field_rep|medical] [--no-write]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sqlite3
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.report import machine, percentile, write_subsection

DATA_DIR = Path(__file__).resolve().parent / ".data"
DB_FILE = DATA_DIR / "read-locks.sqlite3"
READERS = 4
HEAVY_HCP = 1  # the HCP with the most items (benchmarks.timeline's data layout)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.read_locks", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of (before, after) x (no writer, writer)")
    parser.add_argument("--requests", type=int, default=30, help="requests per reader process per measurement")
    parser.add_argument("--role", default="field_rep", choices=["field_rep", "medical"],
                        help="the reader's role; medical reads of medical items are logged (a short write)")
    parser.add_argument("--hold-ms", type=float, default=5.0, help="the writer's work inside each transaction")
    parser.add_argument("--gap-ms", type=float, default=20.0, help="the writer's pause between transactions")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    return parser.parse_args(argv)


def build(app: Any) -> None:
    """A small timeline data set (20,000 items, 2,000 on the heavy HCP), rebuilt each run (a few seconds)."""
    from benchmarks.timeline import build as build_timeline
    from crm.extensions import db

    with app.app_context():
        build_timeline(db.engine, argparse.Namespace(rows=20_000, hcps=200, heavy=2_000))


def token_for(app: Any, role: str) -> str:
    from crm.auth.models import ApiToken, User
    from crm.db import utcnow
    from crm.extensions import db
    from crm.security.tokens import new_token, token_hash

    with app.app_context():
        user = db.session.query(User).filter_by(role=role).one()
        raw = new_token()
        db.session.add(ApiToken(user_id=user.id, token_hash=token_hash(raw), role_at_issue=role,
                                expires_at=utcnow() + timedelta(hours=12)))
        db.session.commit()
        db.session.remove()
    return raw


def reader(app: Any, token: str, before: bool, requests: int, out: Any, start: Any) -> None:
    import crm.web

    if before:
        crm.web.READ_METHODS = frozenset()  # every request begins IMMEDIATE, as before issue 13
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    url = f"/api/v1/hcps/{HEAVY_HCP}/timeline"
    client.get(url, headers=headers)  # warm-up: connection, pragmas, statement cache
    start.wait()
    samples = []
    for _ in range(requests):
        began = time.perf_counter()
        resp = client.get(url, headers=headers)
        samples.append(time.perf_counter() - began)
        if resp.status_code != 200:
            out.put(("error", resp.status_code))
            return
    out.put(("ok", samples))


def writer(path: str, hold: float, gap: float, stop: Any, done: Any) -> None:
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    n = 0
    while not stop.is_set():
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE hcps SET version = version + 1 WHERE id = ?", (2 + n % 100,))
        time.sleep(hold)  # the rest of a save request's work, inside its transaction
        conn.execute("COMMIT")
        n += 1
        done.value = n
        time.sleep(gap)
    conn.close()


def measure(app: Any, token: str, before: bool, with_writer: bool,
            args: argparse.Namespace) -> tuple[list[float], float, float]:
    """The latencies of every reader request, the requests per second of all readers together, and the
    writer's commits per second."""
    ctx = multiprocessing.get_context("fork")
    out, start, stop = ctx.Queue(), ctx.Event(), ctx.Event()
    commits = ctx.Value("i", 0)
    procs = [ctx.Process(target=reader, args=(app, token, before, args.requests, out, start))
             for _ in range(READERS)]
    extra = [ctx.Process(target=writer, args=(str(DB_FILE), args.hold_ms / 1000,
                                                    args.gap_ms / 1000, stop, commits))] if with_writer else []
    for p in procs + extra:
        p.start()
    time.sleep(0.5)  # let the readers warm up before the clock starts
    start.set()
    began = time.perf_counter()
    commits_before = commits.value
    samples: list[float] = []
    for _ in procs:
        status, value = out.get(timeout=600)
        if status != "ok":
            raise SystemExit(f"a reader got HTTP {value}")
        samples += value
    wall = time.perf_counter() - began
    written = commits.value - commits_before
    stop.set()
    for p in procs + extra:
        p.join(60)
    return samples, len(samples) / wall, written / wall


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CRM_INSTANCE_PATH", str(DATA_DIR / "instance"))
    os.environ.setdefault("CRM_LOG_LEVEL", "WARNING")  # no request line per sample on the console
    from benchmarks.timeline import make_app

    url = f"sqlite:///{DB_FILE}"
    app = make_app(url)
    build(app)
    token = token_for(app, args.role)
    with app.app_context():
        from crm.extensions import db

        db.engine.dispose()  # no pooled connection crosses the forks
    configs = [(before, w) for w in (False, True) for before in (True, False)]
    rounds: list[dict[tuple[bool, bool], list[float]]] = []
    rates: list[dict[tuple[bool, bool], float]] = []
    writes: list[dict[tuple[bool, bool], float]] = []
    for r in range(args.rounds):
        order = configs if r % 2 == 0 else list(reversed(configs))
        measured = {c: measure(app, token, c[0], c[1], args) for c in order}
        result = {c: m[0] for c, m in measured.items()}
        rounds.append(result)
        rates.append({c: m[1] for c, m in measured.items()})
        writes.append({c: m[2] for c, m in measured.items()})
        print(f"round {r + 1}: " + ", ".join(
            f"{'before' if b else 'after'}/{'writer' if w else 'idle'} p50 {ms(statistics.median(s))} "
            f"p99 {ms(percentile(s, 99))} ms" for (b, w), s in result.items()), flush=True)

    def row(before: bool, with_writer: bool) -> str:
        p50s = [statistics.median(x[(before, with_writer)]) for x in rounds]
        p99s = [percentile(x[(before, with_writer)], 99) for x in rounds]
        rps = [x[(before, with_writer)] for x in rates]
        wps = [x[(before, with_writer)] for x in writes]
        return (f"| {'before (all IMMEDIATE)' if before else 'after (reads deferred)'} | "
                f"{'yes' if with_writer else 'no'} | {ms(min(p50s))}-{ms(max(p50s))} | "
                f"{ms(min(p99s))}-{ms(max(p99s))} | {min(rps):.0f}-{max(rps):.0f} | "
                f"{f'{min(wps):.0f}-{max(wps):.0f}' if with_writer else '-'} |")

    def ratios(with_writer: bool, pct: float | None) -> str:
        def stat(s: list[float]) -> float:
            return statistics.median(s) if pct is None else percentile(s, pct)

        values = [stat(x[(True, with_writer)]) / stat(x[(False, with_writer)]) for x in rounds]
        return f"{statistics.median(values):.1f}x (rounds {min(values):.1f}x-{max(values):.1f}x)"

    body = "\n".join([
        f"Reader role `{args.role}`, {READERS} reader processes x {args.requests} requests per measurement, "
        f"{args.rounds} rounds, writer holding each write transaction {args.hold_ms:g} ms with "
        f"{args.gap_ms:g} ms between transactions. "
        f"Machine: {machine()}.",
        "",
        "| requests | concurrent writer | p50 ms (range over rounds) | p99 ms (range over rounds) "
        "| reads/s, all readers (range) | writer commits/s (range) |",
        "|---|---|---|---|---|---|",
        row(True, False), row(False, False), row(True, True), row(False, True),
        "",
        f"Before/after ratio, no writer: p50 {ratios(False, None)}, p99 {ratios(False, 99)}.",
        f"Before/after ratio, with a writer: p50 {ratios(True, None)}, p99 {ratios(True, 99)}.",
    ])
    print(body)
    if not args.no_write:
        intro = ("`python -m benchmarks.read_locks` (issue 13 item 4): timeline GET requests of the heavy HCP "
                 "(2,000 items, first page) on SQLite from 4 reader processes, before (every transaction "
                 "`BEGIN IMMEDIATE`) and after (read requests begin deferred), interleaved in one run. "
                 "Before, readers ran one at a time: the one holding the lock ran alone (a low p50) while the "
                 "others slept in SQLite's busy handler (a p99 of hundreds of ms) and the writer starved. After, "
                 "the 4 readers run at once, so on 2 cores each request takes longer (p50 up) but none waits "
                 "for a lock (p99 down several times), reads/s stay level or rise and the writer commits 2-3x "
                 "more. A `medical` reader also writes its sensitive-read rows in a short write transaction at "
                 "the end of each request. `make bench-read-locks`; about a minute.")
        write_subsection("SQLite readers and the write lock", intro, f"Reader role {args.role}", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
