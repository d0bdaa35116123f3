"""Where the server time of one timeline request goes (issue 15 item 1): the request of
``benchmarks.request_path`` (``GET /api/v1/hcps/1/timeline?limit=50``, field rep, bearer token) run through
the CRM's WSGI app in this process, without gunicorn or sockets, on the same SQLite data set.

Prints the CPU time per request (and the hello world's, in this process too), then a cProfile of
``--requests`` requests with the time spent inside each part of the stack (a function's own time,
grouped by the package or module it belongs to). cProfile slows Python code down more than C code (the
SQLite driver, orjson), so the shares are indicative; the first figure is the one without the profiler.

    python -m benchmarks.request_profile [--requests N] [--limit N] [--top N] [--no-write]

Writes the table to the "Request path" section of docs/performance.md (its own subsection).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
import time
from collections import defaultdict
from typing import Any

from benchmarks import request_path
from benchmarks.report import write_subsection

GROUPS = (  # (label, what a profiled function's file name or C function name contains), first match wins
    ("SQLite (the driver's execute and fetchall: the SQL itself)", ("sqlite3.Cursor", "sqlite3.Connection")),
    ("orjson (the response body)", ("orjson",)),
    ("crm.timeline (page query parameters, items)", ("/crm/timeline/",)),
    ("crm.access (decide, redact, log reads)", ("/crm/access/",)),
    ("crm.db (driver statements, transaction modes)", ("/crm/db.py",)),
    ("crm.auth (bearer token, viewer)", ("/crm/auth/",)),
    ("crm.web and crm.logging (request boundary: id, log line, headers, commit decision)",
     ("/crm/web.py", "/crm/logging.py", "/crm/schemas.py")),
    ("SQLAlchemy (session, connection, pool, events)", ("/sqlalchemy/",)),
    ("Flask-SQLAlchemy (scoped session, binds)", ("/flask_sqlalchemy/",)),
    ("Flask, Werkzeug, Flask-Login, Flask-WTF (request, routing, response, hooks)",
     ("/flask/", "/werkzeug/", "/flask_login/", "/flask_wtf/", "/blinker/", "/itsdangerous/")),
    ("marshmallow (query string)", ("/marshmallow/",)),
    ("logging (standard library)", ("/logging/",)),
)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.request_profile", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests measured and profiled (default 2,000)")
    parser.add_argument("--limit", type=int, default=50, help="items per timeline page (default 50)")
    parser.add_argument("--rows", type=int, default=100_000, help="interactions in the data set (default 100,000)")
    parser.add_argument("--top", type=int, default=0, help="also print the N functions with most own time")
    parser.add_argument("--no-write", action="store_true", help="print only; leave docs/performance.md alone")
    return parser.parse_args(argv)


def environ(path: str, query: str, token: str | None) -> dict[str, Any]:
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1",
           "SERVER_PORT": "8000", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
           "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr, "wsgi.multithread": False,
           "wsgi.multiprocess": True, "wsgi.run_once": False, "wsgi.version": (1, 0),
           "HTTP_HOST": "127.0.0.1:8000", "REMOTE_ADDR": "127.0.0.1"}
    if token:
        env["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    return env


def cpu_per_request(app: Any, env: dict[str, Any], n: int) -> float:
    statuses: list[str] = []

    def start_response(status: str, _headers: Any, _exc: Any = None) -> None:
        statuses.append(status)

    def one() -> None:
        b"".join(app(dict(env, **{"wsgi.input": io.BytesIO(b"")}), start_response))

    for _ in range(200):  # warm-up: imports, statements compiled, connections
        one()
    if not statuses[-1].startswith("200"):
        raise SystemExit(f"the request answered {statuses[-1]}")
    best = float("inf")
    for _batch in range(3):  # the least of three batches: the run least disturbed by other work
        started = time.process_time()
        for _ in range(n // 3):
            one()
        best = min(best, (time.process_time() - started) / (n // 3))
    return best


def raw_sql_cpu(url: str, limit: int, n: int) -> float:
    """CPU per run of the page's statement alone, hand-written, on a sqlite3 connection of its own (the
    floor: what the database does for the page, without any Python around it)."""
    import sqlite3

    from benchmarks.timeline import RAW_PAGE

    conn = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
    conn.execute("PRAGMA cache_size=-32000")  # as crm.db sets it
    sql = RAW_PAGE.format(ph="?", keyset="", limit=limit + 1, agg="group_concat", sep="CHAR(31)")
    try:
        for _ in range(200):
            conn.execute(sql, (1,)).fetchall()
        started = time.process_time()
        for _ in range(n):
            conn.execute(sql, (1,)).fetchall()
        return (time.process_time() - started) / n
    finally:
        conn.close()


def ablation(app: Any, env: dict[str, Any], n: int) -> list[tuple[str, float]]:
    """CPU per request as the parts of the request are taken away one after the other, each replaced by
    its result kept from a first run (only here, in the benchmark): what each part costs inside a real
    request, without a profiler's distortion. Returns (what was taken away, CPU per request left)."""
    from crm.access.policy import Viewer
    from crm.auth import services
    from crm.timeline import queries

    kept: dict[str, Any] = {}
    real_rows, real_page, real_viewer = queries.driver_rows, queries.timeline_page, services.viewer_for_token

    def rows_kept(session: Any, key: Any, build: Any, params: Any) -> Any:
        if "rows" not in kept:
            kept["rows"] = real_rows(session, key, build, params)
        return list(kept["rows"])

    def page_kept(*args: Any) -> Any:
        if "page" not in kept:
            kept["page"] = real_page(*args)
        return kept["page"]

    def viewer_kept(session: Any, raw: str) -> Viewer:
        if "viewer" not in kept:
            kept["viewer"] = real_viewer(session, raw)
        return kept["viewer"]  # type: ignore[no-any-return]

    steps: list[tuple[str, Any]] = [
        ("nothing (the whole request)", lambda: None),
        ("the page's SQL statement", lambda: setattr(queries, "driver_rows", rows_kept)),
        ("the page's items: query shape, build, redaction (the page kept whole)",
         lambda: setattr(queries, "timeline_page", page_kept)),
        ("the token's statement, and with it the session, connection and transaction",
         lambda: setattr(services, "viewer_for_token", viewer_kept)),
        ("the 50 items in the JSON body (an empty page, its existence check skipped)",
         lambda: (setattr(queries, "timeline_page", lambda *a: ([], None)),
                  setattr(queries, "require_hcp", lambda *a: None))),
    ]
    real_require = queries.require_hcp
    out: list[tuple[str, float]] = []
    try:
        for label, take_away in steps:
            take_away()
            out.append((label, cpu_per_request(app, env, n)))
    finally:
        queries.driver_rows, queries.timeline_page, services.viewer_for_token = real_rows, real_page, real_viewer
        queries.require_hcp = real_require
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    request_path.DATA_DIR.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("CRM_INSTANCE_PATH", str(request_path.DATA_DIR / "instance"))
    url = request_path.prepare(argparse.Namespace(rows=args.rows))
    os.environ.update({"CRM_DATABASE_URL": url, "CRM_ENV": "development"})
    from benchmarks.hello_app import app as hello
    from crm import create_app

    crm = create_app()
    real_stderr, sys.stderr = sys.stderr, open(os.devnull, "w")  # the request log line, as in the benchmark
    try:
        env = environ("/api/v1/hcps/1/timeline", f"limit={args.limit}", request_path.TOKEN)
        crm_cpu = cpu_per_request(crm, env, args.requests)
        hello_cpu = cpu_per_request(hello, environ("/", "", None), args.requests)
        sql_cpu = raw_sql_cpu(url, args.limit, args.requests)
        steps = ablation(crm, env, args.requests)
        profile = cProfile.Profile()
        profile.runcall(cpu_per_request, crm, env, args.requests)
    finally:
        sys.stderr.close()
        sys.stderr = real_stderr
    stats = pstats.Stats(profile)
    own: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _line, name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{filename} {name}"
        label = next((label for label, keys in GROUPS if any(k in where for k in keys)), "other (Python, C builtins)")
        own[label] += tottime
        total += tottime
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    ablated = "".join(f"| {label} | {cpu * 1e6:.0f} us | "
                      f"{'' if i == 0 else f'{(steps[i - 1][1] - cpu) * 1e6:.0f} us'} |\n"
                      for i, (label, cpu) in enumerate(steps))
    rows = "".join(f"| {label} | {seconds / total * 100:.0f}% |\n"
                   for label, seconds in sorted(own.items(), key=lambda kv: -kv[1]))
    text_out = f"""`python -m benchmarks.request_profile` (issue 15 item 1): the request of the benchmark above run
{args.requests:,} times through the CRM's WSGI app in one process (no gunicorn, no sockets; the request log
line written to /dev/null), on the same data set. Load average at the end: {load} (1, 5, 15 min).

CPU per request in process (the least of three batches): timeline `?limit={args.limit}`
{crm_cpu * 1e6:.0f} us, Flask's hello world {hello_cpu * 1e6:.0f} us; the page's statement alone, hand-written
on a sqlite3 connection: {sql_cpu * 1e6:.0f} us (the token's statement: a few us). Under gunicorn both cost
more (the table above): the parsing and the socket, and a processor cache gone cold between requests,
which the larger request pays more for.

Taken away one after the other (each part replaced by its result kept from a first run, in this
benchmark only), the request costs (CPU per request in process, and what the part took away cost):

| taken away, cumulatively | CPU per request | the part cost |
|---|---|---|
{ablated}| what is left against the hello world | | {(steps[-1][1] - hello_cpu) * 1e6:.0f} us more |

The same request under cProfile, own time of the functions grouped by part of the stack (the profiler
slows Python code more than C code, so SQLite's and orjson's shares are understated):

| part of the stack | share |
|---|---|
{rows}"""
    print(text_out)
    if not args.no_write:
        write_subsection("Request path", request_path.INTRO, "Where a timeline request's time goes (in process)",
                         text_out)
        print("written to docs/performance.md")
    if args.top:
        out = io.StringIO()
        pstats.Stats(profile, stream=out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
