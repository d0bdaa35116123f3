"""Fuzz the JSON API with schemathesis against a throwaway database filled with the demo data.

    python -m tests.schemathesis_run [--database-url URL] [--max-time SECONDS] [--roles admin,marketer]

Starts the app on a fresh SQLite file (or, given ``--database-url``, on an emptied PostgreSQL database),
migrates it, loads ``crm demo``, serves it on a loopback port, takes a bearer token per role and runs
``st run`` against ``/api/v1/openapi.json`` with the checks ``not_a_server_error``,
``status_code_conformance``, ``content_type_conformance`` and ``response_schema_conformance``. Exits
non-zero on any failure. Fuzzing writes data: never point it at a database you care about.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


def _prepare_env(database_url: str | None, workdir: Path) -> None:
    os.environ["CRM_INSTANCE_PATH"] = str(workdir / "instance")
    os.environ["CRM_OUTBOX_DIR"] = str(workdir / "outbox")
    os.environ["CRM_DATABASE_URL"] = database_url or f"sqlite:///{workdir / 'fuzz.sqlite3'}"
    os.environ.pop("CRM_ENV", None)  # development: keys are generated under the instance folder
    # One log line per fuzzed request would bury the findings (and CI's log) under tens of thousands of lines:
    # the server logs warnings and errors only; schemathesis reports every failing case itself.
    os.environ.setdefault("CRM_LOG_LEVEL", "WARNING")


def _empty_postgres(url: str) -> None:
    """Create the database when it is missing, else empty it."""
    from sqlalchemy import create_engine, text

    from crm.dbcheck import create_database

    create_database(url)
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def _flask(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "flask", "--app", "wsgi", *args], cwd=ROOT, check=True,  # noqa: S603
                   stdout=subprocess.DEVNULL)


def _serve() -> str:
    from werkzeug.serving import make_server

    from crm import create_app

    logging.getLogger("werkzeug").setLevel(os.environ["CRM_LOG_LEVEL"])  # werkzeug says INFO unless told
    server = make_server("127.0.0.1", 0, create_app(), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


def _token(base: str, email: str, password: str) -> str:
    req = urllib.request.Request(  # noqa: S310 - loopback URL built above
        f"{base}/api/v1/auth/token", data=json.dumps({"email": email, "password": password}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req) as resp:  # noqa: S310
        return json.load(resp)["token"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="PostgreSQL URL of a throwaway database (emptied first)")
    parser.add_argument("--max-time", type=int, default=60, help="seconds of fuzzing per role")
    parser.add_argument("--roles", default="admin,field_rep,marketer,call_centre",
                        help="comma-separated demo roles to fuzz as (each with its own time budget)")
    parser.add_argument("--max-examples", type=int, default=30, help="test cases per operation and phase")
    parser.add_argument("--seed", type=int, default=None)
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="crm-fuzz-"))
    _prepare_env(args.database_url, workdir)
    if args.database_url:
        _empty_postgres(args.database_url)
    _flask("db", "upgrade")
    _flask("crm", "demo")
    base = _serve()

    from crm.demo import demo_logins

    logins = {role: (email, password) for role, email, password in demo_logins()}
    failed: list[str] = []
    roles = [r.strip() for r in args.roles.split(",") if r.strip()]
    # Every token first: fuzzing the token endpoint with bad passwords locks this address out (429).
    tokens = {role: _token(base, *logins[role]) for role in roles}
    for role, token in tokens.items():
        print(f"== schemathesis as {role} ({os.environ['CRM_DATABASE_URL'].split(':')[0]})", flush=True)
        cmd = [
            str(Path(sys.executable).with_name("st")), "run", f"{base}/api/v1/openapi.json",
            "--checks", CHECKS, "--max-time", str(args.max_time), "--max-examples", str(args.max_examples),
            "--header", f"Authorization: Bearer {token}", "--workers", "1",
            "--suppress-health-check", "all", "--request-timeout", "30",
            "--report", "junit", "--report-junit-path", str(workdir / f"junit-{role}.xml"),
        ]
        if args.seed is not None:
            cmd += ["--seed", str(args.seed)]
        if subprocess.run(cmd, cwd=workdir).returncode != 0:  # noqa: S603 - its cache and reports stay there
            failed.append(role)
    print(f"reports under {workdir}; failed as: {', '.join(failed) or 'none'}")
    print(f"schemathesis: {len(tokens) - len(failed)} passed, {len(failed)} failed")  # one run per role
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
