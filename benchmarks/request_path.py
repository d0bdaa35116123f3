"""Request-path benchmark: a timeline request under gunicorn against Flask's hello world under the same
gunicorn settings, interleaved (issue 15 items 1 and 6).

Starts two gunicorn servers with the same settings (``--workers``, sync workers, the project's
``crm/gunicorn_conf.py``): the CRM (``wsgi:app``) on a SQLite data set built by ``benchmarks.timeline``'s
builder, and ``benchmarks.hello_app``. A load driver in a process of its own (``http.client``, one
request at a time, a new connection per request as gunicorn's sync workers close each one) drives one
server for ``--seconds``, then the other, A B A B ... for ``--rounds`` rounds, the order alternating per
round. Each round's ratio is the timeline's requests/s over the hello world's of the same round; the
report gives the ratios' minimum, median and maximum. Target: the timeline request serves at least 50%
of the hello world's requests/s.

    python -m benchmarks.request_path [--rounds N] [--seconds S] [--workers N] [--limit N] [--no-write]
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from benchmarks.report import machine, write_subsection

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(__file__).resolve().parent / ".data"
DB_FILE = DATA_DIR / "request-path.sqlite3"
TOKEN = "benchmark-request-path-token"  # only ever in the benchmark's own throwaway database
TARGET = 0.5


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.request_path", description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=8, help="A B rounds (default 8)")
    parser.add_argument("--seconds", type=float, default=3.0, help="seconds per measurement (default 3)")
    parser.add_argument("--workers", type=int, default=1, help="gunicorn workers of each server (default 1)")
    parser.add_argument("--limit", type=int, default=50, help="items per timeline page (default 50)")
    parser.add_argument("--rows", type=int, default=100_000, help="interactions in the data set (default 100,000)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    parser.add_argument("--drive", nargs=4, metavar=("PORT", "PATH", "TOKEN", "SECONDS"), help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# -- the load driver (a process of its own) -----------------------------------------------------

def drive(port: int, path: str, token: str, seconds: float) -> tuple[int, int]:
    """Requests completed in ``seconds`` (one at a time) and how many were not 200."""
    headers = {"Authorization": f"Bearer {token}"} if token != "-" else {}
    done = bad = 0
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        conn.close()
        done += 1
        bad += response.status != 200
    return done, bad


def run_driver(port: int, path: str, token: str, seconds: float) -> tuple[float, int]:
    out = subprocess.run([sys.executable, "-m", "benchmarks.request_path", "--drive", str(port), path, token,
                          str(seconds)], cwd=ROOT, capture_output=True, text=True, check=True)
    done, bad = (int(v) for v in out.stdout.split())
    return done / seconds, bad


# -- the servers --------------------------------------------------------------------------------

def cpu_seconds(master: int) -> float:
    """CPU time (user + system) used so far by a gunicorn master and its workers, from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    for pid in [str(master), *children]:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return total

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(app: str, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    gunicorn = str(Path(sys.executable).parent / "gunicorn")
    proc = subprocess.Popen([gunicorn, "--bind", f"127.0.0.1:{port}", "--workers", str(workers), "--config",
                             "crm/gunicorn_conf.py", app], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"gunicorn {app} did not start on port {port}")


def prepare(args: argparse.Namespace) -> str:
    """Build (or reuse) the data set; put the benchmark's token on the field rep. Returns the URL."""
    from sqlalchemy import insert

    from benchmarks import timeline as bt

    url = f"sqlite:///{DB_FILE}"
    app = bt.make_app(url)
    built = argparse.Namespace(rows=args.rows, hcps=max(2, args.rows // 20), heavy=min(args.rows, 10_000))
    from crm.auth.models import ApiToken
    from crm.db import utcnow
    from crm.extensions import db
    from crm.security.tokens import token_hash

    with app.app_context():
        if not bt._dataset_matches(db.engine, built):
            print(f"building {built.rows:,} interactions ...", flush=True)
            bt.build(db.engine, built)
        with db.engine.begin() as conn:
            conn.execute(ApiToken.__table__.delete())
            conn.execute(insert(ApiToken), [{"user_id": 1, "token_hash": token_hash(TOKEN),
                                             "role_at_issue": "field_rep",
                                             "expires_at": utcnow() + timedelta(days=1)}])
        db.engine.dispose()
    return url


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.drive:
        port, path, token, seconds = args.drive
        print(*drive(int(port), path, token, float(seconds)))
        return 0
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CRM_INSTANCE_PATH", str(DATA_DIR / "instance"))
    url = prepare(args)
    env = {**os.environ, "CRM_DATABASE_URL": url, "CRM_ENV": "development"}
    crm_port, hello_port = free_port(), free_port()
    servers = [start("wsgi:app", crm_port, args.workers, env), start("benchmarks.hello_app:app", hello_port,
                                                                      args.workers, env)]
    path = f"/api/v1/hcps/1/timeline?limit={args.limit}"
    targets = {"timeline": (crm_port, path, TOKEN), "hello": (hello_port, "/", "-")}
    rates: dict[str, list[float]] = {"timeline": [], "hello": []}
    cpu: dict[str, list[float]] = {"timeline": [], "hello": []}  # server CPU seconds per request
    masters = {"timeline": servers[0].pid, "hello": servers[1].pid}
    try:
        for port, p, tok in targets.values():  # warm-up: imports, connections, caches
            run_driver(port, p, tok, 1.0)
        for r in range(args.rounds):
            order = ["timeline", "hello"] if r % 2 == 0 else ["hello", "timeline"]
            for name in order:
                used = cpu_seconds(masters[name])
                rate, bad = run_driver(*targets[name], args.seconds)
                used = cpu_seconds(masters[name]) - used
                if bad:
                    raise SystemExit(f"{name}: {bad} requests did not answer 200")
                rates[name].append(rate)
                cpu[name].append(used / max(1.0, rate * args.seconds))
            print(f"round {r + 1}: timeline {rates['timeline'][-1]:,.0f} req/s "
                  f"({cpu['timeline'][-1] * 1000:.2f} ms CPU each), hello {rates['hello'][-1]:,.0f} req/s "
                  f"({cpu['hello'][-1] * 1000:.2f} ms CPU each), "
                  f"ratio {rates['timeline'][-1] / rates['hello'][-1]:.2f}",
                  flush=True)
    finally:
        for proc in servers:
            proc.send_signal(signal.SIGTERM)
        for proc in servers:
            proc.wait(timeout=30)
    text_out = report(rates, cpu, args)
    print(text_out)
    if not args.no_write:
        write_subsection("Request path", INTRO, "Timeline request against hello world (SQLite)", text_out)
        print("written to docs/performance.md")
    return 0


def spread(values: list[float], fmt: str = "{:.2f}") -> str:
    return f"{fmt.format(statistics.median(values))} (min {fmt.format(min(values))}, max {fmt.format(max(values))})"


def report(rates: dict[str, list[float]], cpu: dict[str, list[float]], args: argparse.Namespace) -> str:
    ratios = [t / h for t, h in zip(rates["timeline"], rates["hello"], strict=True)]
    cpu_ratios = [h / t for t, h in zip(cpu["timeline"], cpu["hello"], strict=True) if t > 0]
    ms_cpu = "{:.2f}"
    timeline_cpu = spread([c * 1000 for c in cpu["timeline"]], ms_cpu)
    hello_cpu = spread([c * 1000 for c in cpu["hello"]], ms_cpu)
    cpu_ratio = spread(cpu_ratios) if cpu_ratios else "-"
    median = statistics.median(ratios)
    verdict = "met" if median >= TARGET else "NOT met"
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    return f"""{args.rounds} rounds of {args.seconds:g} s per server, {args.workers} sync worker(s) each, first page of
{args.limit} items of the HCP holding 10,000 (field rep, bearer token) on a SQLite data set of {args.rows:,}
interactions. Machine: {machine()}. Load average at the end: {load} (1, 5, 15 min).

| measure | requests/s, median (min, max over rounds) | server CPU ms per request, median (min, max) |
|---|---|---|
| `GET /api/v1/hcps/1/timeline?limit={args.limit}` | {spread(rates["timeline"], "{:,.0f}")} | {timeline_cpu} |
| hello world `GET /` | {spread(rates["hello"], "{:,.0f}")} | {hello_cpu} |

| ratio, round by round | median (min, max) | target | verdict |
|---|---|---|---|
| timeline / hello world requests/s | {spread(ratios)} | >= {TARGET:.2f} | {verdict} |
| hello world / timeline server CPU per request (what a CPU-bound server would reach) | {cpu_ratio} | (ref.) | |
"""


INTRO = """`python -m benchmarks.request_path` (`make bench-request`; issue 15 items 1 and 6). Two gunicorn
servers with the same settings (`crm/gunicorn_conf.py`, sync workers, the same number of workers): the CRM
and Flask's hello world (`benchmarks/hello_app.py`). A load driver in a separate process (`http.client`,
one request at a time, a new connection per request, as sync workers close each) drives one server for a few
seconds, then the other, A B A B in one run, the order alternating per round; each round's ratio compares
two measurements taken seconds apart, so a shared machine's drift cancels out and the spread of the
ratios says how noisy the run was. The servers' CPU time per request (master and workers, from /proc) is
reported too: on a machine that other work keeps busy, requests/s measure the share of a CPU a server was
given as much as its cost, and the CPU ratio says what the same code would reach on a quiet machine.
The CRM writes its request log line as in production (to /dev/null).

What a timeline request costs on top of the hello world: the bearer token checked and the viewer (role,
active, expiry, territories) read in one statement (no User loaded, no email decrypted); the page's one
statement; redaction; the JSON written by orjson with stored JSON passed through; no existence query
when the page has rows; no COMMIT for a request that wrote nothing; the query schema built once. Both
statements are compiled once and run on the DBAPI cursor (`crm.db.driver_rows`: no SQLAlchemy execution
context or result object, still in the session's transaction and seen by the engine's listeners); a
pooled SQLite connection keeps its read-only mode between reads (a `PRAGMA query_only` run expires
SQLite's prepared statements: every read request used to re-prepare its page statement); the items are
built in one pass from the driver's rows; no session cookie, no signing serializer; the query string
loaded once per distinct string; the request log record made without a stack walk; Flask's per-hook
coroutine check answered once. `python -m benchmarks.request_profile` shows where the rest goes."""


if __name__ == "__main__":
    raise SystemExit(main())
