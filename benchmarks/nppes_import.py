"""NPPES import benchmark: rows/s, peak memory and re-import speed on SQLite and PostgreSQL.

    python -m benchmarks.nppes_import                      # 100,000 and 1,000,000 rows, both databases
    python -m benchmarks.nppes_import --rows 100000 --rows 300000 --db sqlite
    python -m benchmarks.nppes_import --write-doc          # also (re)write "NPPES import" in docs/performance.md

Each measurement runs in a fresh child process, so its peak RSS (``resource.getrusage``) belongs to
that import alone. Files are generated once per size (the 330-column NPPES layout, valid NPIs) into
``--workdir`` and reused. The PostgreSQL database (``--pg-url``) is emptied before each size; it must
exist (``psql -h 127.0.0.1 -U postgres -c 'create database bench_import'``) and must not be the test
database.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/bench_import"
DOC = ROOT / "docs" / "performance.md"
SECTION = "## NPPES import"


def generate(path: Path, rows: int) -> None:
    from crm.integrations.masterdata.synthetic import nppes_rows, write_nppes

    if path.exists() and path.stat().st_size > 0:
        return
    tmp = path.with_suffix(".part")
    with tmp.open("w", encoding="utf-8", newline="") as fh:
        write_nppes(fh, nppes_rows(rows))
    tmp.rename(path)


def _app(url: str):
    from cryptography.fernet import Fernet

    from crm import create_app

    options = {"connect_args": {"timeout": 30}} if url.startswith("sqlite") else {"pool_pre_ping": True}
    key_file = Path(os.environ["BENCH_KEY_FILE"])
    return create_app({"SQLALCHEMY_DATABASE_URI": url, "SQLALCHEMY_ENGINE_OPTIONS": options,
                       "CRM_ENCRYPTION_KEYS": [key_file.read_text().strip() or Fernet.generate_key().decode()],
                       "CRM_BLIND_INDEX_KEY": "benchmark-blind-index-key", "SECRET_KEY": "benchmark"})


def child(url: str, path: str, reset: bool) -> None:
    """One import in this process; prints a JSON line with the measurements."""
    from sqlalchemy import text

    from crm.extensions import db
    from crm.integrations.masterdata.importer import import_nppes_file

    app = _app(url)
    with app.app_context():
        if reset:
            with db.engine.begin() as conn:
                if conn.dialect.name == "postgresql":
                    conn.execute(text("DROP SCHEMA public CASCADE"))
                    conn.execute(text("CREATE SCHEMA public"))
                else:
                    db.metadata.drop_all(conn)
            db.create_all()
        watcher = ChildPeakRss()
        started, cpu = time.perf_counter(), time.process_time()
        run = import_nppes_file(db.session, None, path, batch_size=1000)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        reader_rss = watcher.stop()
        rows = run.created + run.updated + run.unchanged + run.rejected
        print(json.dumps({
            "rows": rows, "created": run.created, "unchanged": run.unchanged, "rejected": run.rejected,
            "seconds": round(elapsed, 2), "cpu_seconds": round(cpu, 2), "rows_per_s": round(rows / elapsed),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            # the reader process (see crm/integrations/masterdata/reading.py), 0 when the file was read inline
            "reader_rss_mb": round(reader_rss / 1024, 1),
        }))


class ChildPeakRss:
    """The largest peak RSS (``VmHWM``, kB) of this process's children, read four times a second.

    Not ``getrusage(RUSAGE_CHILDREN)``: Linux carries a child's peak across ``exec``, so a child
    started by fork+exec reports the parent's size at the fork, not its own. The children are
    looked for until one is found, then only their status files are read (a full scan of /proc
    at every tick would take CPU from the import being measured).
    """

    def __init__(self) -> None:
        self.peak = 0
        self._children: set[Path] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        me = str(os.getpid())
        while not self._stop.wait(0.25):
            if not self._children:
                self._children = {p for p in Path("/proc").iterdir() if p.name.isdigit()
                                  and self._field(p, "PPid") == me}
            for child in list(self._children):
                hwm = self._field(child, "VmHWM")
                if hwm is None:
                    self._children.discard(child)  # ended; a later reader is found by the next scan
                else:
                    self.peak = max(self.peak, int(hwm.split()[0]))

    @staticmethod
    def _field(proc: Path, name: str) -> str | None:
        try:
            for line in (proc / "status").read_text().splitlines():
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip()
        except OSError:
            return None
        return None

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def measure(url: str, path: Path, reset: bool) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.nppes_import", "--child", url, str(path),
                          "--reset" if reset else "--no-reset"],
                         cwd=ROOT, capture_output=True, text=True, env=os.environ.copy())
    if out.returncode != 0:
        raise SystemExit(f"the import of {path.name} into {url} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, action="append", help="file size(s) in rows (default 100k and 1M)")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/crm-bench-import"))
    parser.add_argument("--write-doc", action="store_true", help="write the results into docs/performance.md")
    parser.add_argument("--child", nargs=2, metavar=("URL", "FILE"), help=argparse.SUPPRESS)
    parser.add_argument("--reset", dest="reset", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-reset", dest="reset", action="store_false", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.reset)
        return

    from cryptography.fernet import Fernet

    sizes = args.rows or [100_000, 1_000_000]
    args.workdir.mkdir(parents=True, exist_ok=True)
    key_file = args.workdir / "fernet.key"
    if not key_file.exists():
        key_file.write_text(Fernet.generate_key().decode())
    os.environ["BENCH_KEY_FILE"] = str(key_file)
    databases = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    results = []
    for rows in sizes:
        path = args.workdir / f"nppes-{rows}.csv"
        t = time.perf_counter()
        generate(path, rows)
        print(f"file {path.name}: {path.stat().st_size / 1e6:,.0f} MB ({time.perf_counter() - t:.0f}s to make)",
              flush=True)
        for name in databases:
            if name == "sqlite":
                db_file = args.workdir / f"bench-{rows}.sqlite3"
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{db_file}{suffix}").unlink(missing_ok=True)
                url = f"sqlite:///{db_file}"
            else:
                url = args.pg_url
            first = measure(url, path, reset=True)
            again = measure(url, path, reset=False)
            result = {"db": name, "rows": rows, "file_mb": round(path.stat().st_size / 1e6), "first": first,
                      "again": again, "speedup": round(first["seconds"] / max(again["seconds"], 1e-6), 1)}
            results.append(result)
            print(json.dumps(result), flush=True)
            with (args.workdir / "results.jsonl").open("a") as log:
                log.write(json.dumps(result) + "\n")
    if args.write_doc:
        write_doc(_latest(args.workdir / "results.jsonl"))


def _latest(log: Path) -> list[dict]:
    """The latest result per (database, rows) in the results log, so sizes can be measured one at a time."""
    latest: dict[tuple[str, int], dict] = {}
    for line in log.read_text().splitlines():
        result = json.loads(line)
        latest[(result["db"], result["rows"])] = result
    return [latest[k] for k in sorted(latest, key=lambda k: (k[0] != "sqlite", k[1]))]


def _total_rss(result: dict) -> float:
    """Peak RSS of the first import: the importing process plus its reader process."""
    return result["first"]["peak_rss_mb"] + result["first"].get("reader_rss_mb", 0)


def write_doc(results: list[dict]) -> None:
    lines = [
        SECTION, "",
        f"Measured {time.strftime('%Y-%m-%d')} with `make bench-import` (`python -m benchmarks.nppes_import`) on "
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}. Synthetic files in the "
        "330-column NPPES layout (1 organisation in 7), batches of 1,000 rows committed with their checkpoint; "
        "each import in a fresh process; peak RSS is that process's plus its reader process's own (files over "
        "16 MB are read by a second process). Runs of the same size vary by about 5% on this shared machine.", "",
        "| database | rows | file | first import | rows/s | CPU s | peak RSS (importer + reader) "
        "| re-import (unchanged) | speed-up |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        f, a = r["first"], r["again"]
        lines.append(f"| {r['db']} | {r['rows']:,} | {r['file_mb']:,} MB | {f['seconds']:,.1f} s | "
                     f"{f['rows_per_s']:,} | {f['cpu_seconds']:,.1f} | {f['peak_rss_mb']:,.0f} + "
                     f"{f.get('reader_rss_mb', 0):,.0f} MB | "
                     f"{a['seconds']:,.1f} s ({a['rows_per_s']:,} rows/s, {a['peak_rss_mb']:,.0f} MB) | "
                     f"{r['speedup']}x |")
    lines += ["", "**Against the targets** (at the largest size measured per database):", ""]
    for name in sorted({r["db"] for r in results}, key=lambda n: n != "sqlite"):
        mine = sorted((r for r in results if r["db"] == name), key=lambda r: r["rows"])
        big, small = mine[-1], mine[0]
        rate, mem = big["first"]["rows_per_s"], _total_rss(big)
        growth = f"{_total_rss(small):.0f} MB at {small['rows']:,} rows" if small is not big else "one size"
        lines.append(
            f"- {name}: {rate:,} rows/s (target 10,000: {'met' if rate >= 10_000 else 'not met'}); peak memory "
            f"{mem:.0f} MB at {big['rows']:,} rows vs {growth} (target < 200 MB and flat: "
            f"{'met' if mem < 200 and abs(mem - _total_rss(small)) < 20 else 'not met'}); re-import "
            f"{big['speedup']}x faster (target 3x: {'met' if big['speedup'] >= 3 else 'not met'}).")
    lines += [
        "",
        "**Where the time goes.** A file of more than 16 MB is read by two processes: a reader process "
        "parses, hashes and validates batch n+1 (CSV parsing of 330 fields ~12 µs a row, validation ~17 µs) "
        "while the importing process matches and writes batch n (lookups, change detection, two Fernet "
        "encryptions for phone and address line ~18 µs, bulk writes: COPY on PostgreSQL, one executemany "
        "on SQLite) and commits it with its checkpoint. On PostgreSQL about half of the importer's wall time "
        "is the server's work (index and foreign-key maintenance of the HCP, identifier and fingerprint "
        "rows, ~50 µs a row), which is why it stays below SQLite. Peak memory is the interpreter and the "
        "application (~88 MB after `create_app`), SQLite's page cache (up to 32 MB per connection), and a few "
        "batches in the importer, and ~20 MB in the "
        "reader; neither grows with the file. The re-import reads and hashes each row without splitting its "
        "fields (the first field and the column count suffice), compares the digest with the stored "
        "fingerprint, one query per batch, and validates nothing; a changed row is read again and checked "
        "in full.",
    ]
    text = DOC.read_text() if DOC.exists() else "# Performance\n"
    block = "\n".join(lines) + "\n"
    if SECTION in text:
        head, _, rest = text.partition(SECTION)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1:] if nxt >= 0 else ""
        text = head + block + ("\n" + tail if tail else "")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    DOC.write_text(text)
    print(f"wrote the '{SECTION[3:]}' section of {DOC.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
