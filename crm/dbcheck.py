"""``python -m crm.dbcheck URL``: exit 0 when the database answers, 1 (with the reason) when not."""

import sys

from sqlalchemy import create_engine, text


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
