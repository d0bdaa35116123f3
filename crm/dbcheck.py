"""``python -m crm.dbcheck URL``: exit 0 when the database answers, 1 (with the reason) when not.

Also ``create_database``, for the test suite, the fuzzing run and the benchmarks, which each use a
PostgreSQL database of their own on a server that at first holds only ``postgres``.
"""

import sys

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def create_database(url: str) -> None:
    """Create the PostgreSQL database named in ``url`` when it does not exist (through the server's
    ``postgres`` database; nothing is done for any other engine)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        return
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            if not conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                                {"n": parsed.database}).scalar():
                conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


def main(argv: list[str]) -> int:
    url = argv[1] if len(argv) > 1 else ""
    if not url:
        print("usage: python -m crm.dbcheck DATABASE_URL", file=sys.stderr)
        return 2
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 5} if "postgresql" in url else {})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        print(f"database unreachable: {exc.__class__.__name__}: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
