"""The NPPES import: streaming batches, checkpointed, resumable, upserting by natural key.

One run per file (identified by its SHA-256). Rows are read in batches (1,000 by default); each
batch is written and committed together with the run's checkpoint (byte and row offset, counts),
so a run killed at any row and started again with the same file continues after the last committed
batch and ends with exactly the rows of the file. Memory holds a few batches, whatever the file
size. A large file is read, hashed and validated by a reader process one batch ahead of the batch
being written (reading.py), so that work does not wait for the database.

Two imports of the same file never run at once: the run lock (a PostgreSQL advisory lock held on
its own connection; on SQLite an exclusive ``flock`` on a file beside the database) is held for
the whole run and dies with the process, and at most one ``running`` row per file hash can exist
(a partial unique index), claimed in its own transaction. A second start refuses clearly; a start
after a crash finds the stale ``running`` row and resumes it.

Upsert: NPI first, then national id, then the email blind index. A row whose source bytes did not
change since they were last applied (``ImportFingerprint``) is counted unchanged without being
validated or loaded; other rows are compared field by field and only changed fields are written,
each change audited with before/after. Unchanged rows write nothing: no audit, no version bump.

Runs commit per batch (a checkpoint that is not committed is no checkpoint), so the importer is a
job runner like a command, not a service: call it from the command line or a request that does
nothing else.
"""

from __future__ import annotations

import fcntl
import gc
import hashlib
import logging
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import Any

from sqlalchemy import String, and_, bindparam, func, insert, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from crm.access.policy import require_write
from crm.audit import services as audit
from crm.db import DbSession, among, bulk_parameters, utcnow
from crm.errors import Conflict
from crm.hcps.models import HCO, HCP, HCPIdentifier
from crm.integrations.masterdata.models import ImportFingerprint, ImportRowError, ImportRun
from crm.integrations.masterdata.nppes import NppesReader, RowValidator, fields_of_raw_row
from crm.integrations.masterdata.reading import (
    PROCESS_THRESHOLD_BYTES,
    ReadBatch,
    ReaderProcess,
    Start,
    mapping_key,
    raw_bytes,
    read_inline,
)
from crm.integrations.masterdata.records import Deactivation, HcoRecord, HcpRecord, Problem, SourceRow
from crm.integrations.masterdata.taxonomy import load_table
from crm.security.crypto import blind_index

SOURCE = "nppes"
DEFAULT_BATCH_SIZE = 1000
HCP_FIELDS = ("first_name", "last_name", "profession", "specialty", "phone", "address_line", "city",
              "postal_code", "state", "country", "status")
HCO_FIELDS = ("name", "kind", "city", "postal_code", "state", "country", "status")
_LIVE = ("active", "inactive")  # statuses an import may change; merged and erased records it leaves alone
_LOCK_BASE = 7_310_200
logger = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (rows read so far in this process, byte offset)


class ImportAlreadyRunning(Conflict):
    """Another process is importing the same file right now."""


def file_digest(path: str | Path) -> tuple[str, int]:
    """SHA-256 (hex) and size of a file, read in chunks."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


# -- the run lock ----------------------------------------------------------------------------------

@contextmanager
def run_lock(session: DbSession, file_sha256: str) -> Iterator[None]:
    """Hold the lock for importing the file with this hash; ``ImportAlreadyRunning`` when it is taken.

    The lock belongs to the process (a database session on PostgreSQL, an open file description on
    SQLite), so a killed import releases it and a later start can resume the run.
    """
    bind = session.get_bind()
    engine: Any = getattr(bind, "engine", bind)
    if engine.dialect.name == "postgresql":
        key = int(file_sha256[:15], 16)
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:base, :key)"),
                               {"base": _LOCK_BASE, "key": key % 2_000_000_000}).scalar()
            if not got:
                raise _already_running(session, file_sha256)
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:base, :key)"),
                             {"base": _LOCK_BASE, "key": key % 2_000_000_000})
        return
    path = _lock_path(engine.url.database, file_sha256)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise _already_running(session, file_sha256) from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock_path(database: str | None, file_sha256: str) -> str:
    if database and database != ":memory:":
        folder = Path(f"{database}.import-locks")
    else:
        folder = Path(tempfile.gettempdir()) / "crm-import-locks"
    folder.mkdir(parents=True, exist_ok=True)
    return str(folder / f"{file_sha256[:32]}.lock")


def _already_running(session: DbSession, file_sha256: str) -> ImportAlreadyRunning:
    run = session.scalar(select(ImportRun).where(ImportRun.file_sha256 == file_sha256,
                                                 ImportRun.status == "running").order_by(ImportRun.id.desc()))
    session.rollback()
    if run is None:
        return ImportAlreadyRunning("An import of this file is already running; wait for it to finish.")
    return ImportAlreadyRunning(
        f"Import run {run.id} of this file is already running (started {run.started_at:%Y-%m-%d %H:%M} UTC by "
        f"{run.actor_label}, {run.row_offset} rows done). Wait for it to finish; starting the file again "
        "afterwards re-checks it and changes nothing that is unchanged.",
        run_id=run.id,
    )


# -- running an import -----------------------------------------------------------------------------

@dataclass
class _Counts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: int = 0
    flagged: int = 0


def import_nppes_file(
    session: DbSession,
    actor: Any,
    path: str | Path,
    *,
    filename: str | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    progress: Progress | None = None,
    reader_process: bool | None = None,
) -> ImportRun:
    """Import (or resume importing) an NPPES CSV file; returns the finished ``ImportRun``.

    Refuses the file as a whole (``FileRefused``) when it is not UTF-8 or not the NPPES layout,
    and refuses to start (``ImportAlreadyRunning``) while the same file is being imported. Commits
    once per batch; on an error the run is marked failed (and resumes when started again).
    ``reader_process``: read and validate in a second process (see reading.py); by default when
    more than ``PROCESS_THRESHOLD_BYTES`` of the file are left to read.
    """
    if actor is not None:
        from crm.auth.services import viewer_for

        require_write(viewer_for(session, actor), "masterdata.import")
    file_sha256, size = file_digest(path)
    with open(path, "rb") as fh:
        reader = NppesReader(fh)
        with run_lock(session, file_sha256):
            run = _claim(session, actor, file_sha256, size, filename or Path(path).name)
            run_id = run.id
            if reader_process is None:
                reader_process = size - max(run.byte_offset, reader.header.end_offset) > PROCESS_THRESHOLD_BYTES
            try:
                _run(session, actor, run, reader, Path(path) if reader_process else None, batch_size, progress)
            except BaseException as exc:
                _mark_failed(session, run_id, exc)
                raise
    return session.get(ImportRun, run_id)  # type: ignore[return-value]


def _mark_failed(session: DbSession, run_id: int, exc: BaseException) -> None:
    """Best effort: when the database itself is gone, the run stays ``running`` and resumes all the same."""
    try:
        session.rollback()
        session.execute(update(ImportRun).where(ImportRun.id == run_id).values(
            status="failed", error=f"{type(exc).__name__}: {exc}"[:2000], finished_at=utcnow()))
        session.commit()
    except SQLAlchemyError:
        logger.exception("import run %s: could not record the failure", run_id)
        session.rollback()


def _claim(session: DbSession, actor: Any, file_sha256: str, size: int, filename: str) -> ImportRun:
    """Resume the file's unfinished run (killed or failed), or claim a new one, in its own transaction."""
    session.commit()
    latest = session.scalar(select(ImportRun).where(ImportRun.file_sha256 == file_sha256,
                                                    ImportRun.source == SOURCE).order_by(ImportRun.id.desc()))
    if latest is not None and latest.status in ("running", "failed"):
        latest.status = "running"
        latest.resumed += 1
        latest.error = None
        latest.finished_at = None
        session.commit()
        return latest
    run = ImportRun(source=SOURCE, filename=filename[:300], file_sha256=file_sha256, file_size=size,
                    status="running", actor_id=getattr(actor, "id", None),
                    actor_label="system" if actor is None else f"{actor.name} <{actor.role}>", started_at=utcnow())
    session.add(run)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        raise _already_running(session, file_sha256) from None
    return run


def _run(session: DbSession, actor: Any, run: ImportRun, reader: NppesReader, in_process_of: Path | None,
         batch_size: int, progress: Progress | None) -> None:
    """Apply the file batch by batch; ``in_process_of``: the file's path when a reader process reads it."""
    ctx = _Context(run_id=run.id, validator=RowValidator(reader.header, load_table()), actor=actor, file=reader.fh)
    counts = _Counts(run.created, run.updated, run.unchanged, run.rejected, run.flagged)
    start = Start(run.byte_offset, run.row_offset, run.line_offset)
    validate_ahead = True  # until a batch shows that most rows are unchanged (a re-import)
    helper = ReaderProcess(in_process_of, start, batch_size) if in_process_of is not None else None
    batches = helper.batches(lambda: validate_ahead) if helper is not None else \
        read_inline(reader, start, batch_size, ctx.mapping_key)
    done = 0
    analysed_at = 0
    relaxed = session.get_bind().dialect.name == "postgresql"
    try:
        while True:
            with _collector_paused():
                batch = next(batches, None)
                if batch is None:
                    break
                if relaxed:
                    _relax_commit(session)
                needed = _apply_batch(session, ctx, batch, counts)
                validate_ahead = needed * 2 > len(batch.rows)
                last = batch.rows[-1]
                _checkpoint(session, ctx.run_id, last, counts)
                session.commit()
            done += len(batch.rows)
            if done >= 2 * max(analysed_at, batch_size):
                _refresh_statistics(session)
                analysed_at = done
            if progress is not None:
                progress(done, last.end_offset)
    finally:
        if helper is not None:
            helper.close()
    session.execute(update(ImportRun).where(ImportRun.id == ctx.run_id).values(
        status="completed", finished_at=utcnow()))
    session.commit()


def _relax_commit(session: DbSession) -> None:
    """PostgreSQL: the batch's COMMIT does not wait for its WAL record to reach the disk.

    Safe here, and only here: a batch and its checkpoint commit together, and a crash of the server
    loses at most the last few committed transactions *whole* (never a part of one, never out of
    order). The run then resumes from the last checkpoint that did reach the disk and applies the lost
    batches again, so the file still ends up imported exactly once. The final ``completed`` mark and
    every other transaction of the application keep the default, durable commit.
    """
    session.execute(text("SET LOCAL synchronous_commit TO OFF"))


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while one batch is worked on.

    A batch allocates tens of thousands of objects that live until it is written, so the collector
    would run hundreds of times per batch and, every few batches, rescan the whole process (the
    application, the mappings, the caches) for nothing: a fifth of an import's time. Paused per
    batch, whatever garbage a batch leaves is collected between batches, and memory stays that of
    one batch. A collector paused by the caller stays paused.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _refresh_statistics(session: DbSession) -> None:
    """PostgreSQL: keep the planner's statistics up with tables that grow under the import.

    A table that was empty when last analysed looks tiny to the planner, which then answers the
    batch lookups (``source_key IN (...1,000 keys...)``) by filtering everything it has, a cost that
    grows with every batch. Analysing each time the run has doubled its rows keeps the lookups on
    their indexes at the price of a logarithmic number of (sampled) ANALYZE runs.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text("ANALYZE hcps (id, email_bidx), hcp_identifiers (kind, value), hcos (npi), "
                         "import_fingerprints (source, source_key)"))
    session.commit()


def _checkpoint(session: DbSession, run_id: int, last: SourceRow, counts: _Counts) -> None:
    session.execute(update(ImportRun).where(ImportRun.id == run_id).values(
        byte_offset=last.end_offset, row_offset=last.row_number, line_offset=last.end_line,
        created=counts.created, updated=counts.updated, unchanged=counts.unchanged,
        rejected=counts.rejected, flagged=counts.flagged, checkpoint_at=utcnow()))


# -- one batch ------------------------------------------------------------------------------------

@dataclass
class _Context:
    run_id: int
    validator: RowValidator
    actor: Any
    file: Any  # the importer's handle on the file (rows sent by a reader process come without their bytes)
    mapping_key: bytes = b""

    def __post_init__(self) -> None:
        self.mapping_key = mapping_key(self.validator.taxonomy)


@dataclass
class _New:
    """A record this batch will insert (bulk, at the end of the batch)."""

    values: dict[str, Any]
    identifiers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class _Batch:
    """What one batch knows about the database, loaded up front in a few queries."""

    hcp_by_npi: dict[str, HCP]
    hcp_by_national_id: dict[str, HCP]
    hcps_by_email: dict[str, list[HCP]]
    hco_by_npi: dict[str, HCO]
    licence_holders: dict[tuple[str, str], int]
    imported_before: set[str] = field(default_factory=set)  # NPIs with a fingerprint from an earlier row
    # per NPI, what this batch has done so far: a loaded HCP/HCO, or a new one still to be inserted
    state: dict[str, HCP | HCO | _New] = field(default_factory=dict)
    new_hcps: list[_New] = field(default_factory=list)
    new_hcos: list[_New] = field(default_factory=list)
    claimed_licences: dict[tuple[str, str], str] = field(default_factory=dict)  # -> NPI of the row claiming it
    fingerprints: dict[str, str] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    audits: list[tuple[str, str, Any, dict[str, Any], str]] = field(default_factory=list)


def _apply_batch(session: DbSession, ctx: _Context, read: ReadBatch, counts: _Counts) -> int:
    """Apply one batch; returns how many of its rows needed validating (were new or changed)."""
    rows, digests = read.rows, read.digests
    keys = {r.key for r in rows if r.error is None and r.key}
    known: dict[str, str] = {}
    seen_in_file: set[str] = set()  # applied earlier in this run (an earlier batch)
    if keys:
        for key, digest, run_id in session.execute(
            select(ImportFingerprint.source_key, ImportFingerprint.digest, ImportFingerprint.run_id)
            .where(ImportFingerprint.source == SOURCE, among(session, ImportFingerprint.source_key, keys))
        ):
            known[key] = digest
            if run_id == ctx.run_id:
                seen_in_file.add(key)
    repeated = {k for k, n in Counter(r.key for r in rows).items() if n > 1}

    # Validate every row that may be applied (pure work, no database), unless the reader did.
    parsed: list[tuple[Any, list[Problem]]] = []
    needed = 0
    for i, (row, digest) in enumerate(zip(rows, digests, strict=True)):
        if row.error is not None:
            parsed.append((None, [row.error]))
        elif known.get(row.key) == digest and row.key not in repeated:
            parsed.append((None, []))  # unchanged since last applied: no need to look closer
        else:
            needed += 1
            ahead = read.validated[i] if read.validated is not None else None
            if ahead is None:
                ahead = ctx.validator.validate(row.fields if row.complete else
                                               fields_of_raw_row(raw_bytes(ctx.file, row)))
            parsed.append(ahead)

    batch = _load(session, [rec for rec, _ in parsed if rec is not None])
    batch.imported_before = set(known)
    applied: dict[str, tuple[str, int]] = {}  # NPI -> (digest, row number) of the row applied last
    for row, digest, (record, problems) in zip(rows, digests, parsed, strict=True):
        outcome = _apply_row(ctx, batch, row, digest, record, problems, applied, seen_in_file)
        setattr(counts, outcome, getattr(counts, outcome) + 1)
        notes = problems if outcome == "rejected" else [p for p in problems if p.severity == "flagged"]
        if outcome != "rejected" and notes:
            counts.flagged += 1
        for p in notes:
            batch.errors.append({"run_id": ctx.run_id, "row_number": row.row_number, "line_number": row.line_number,
                                 "npi": row.key[:40] or None, "severity": p.severity, "field": p.field[:120],
                                 "reason": p.reason[:400], "value": p.value[:200] if p.value else p.value})
        if outcome in ("created", "updated") and not notes:
            batch.fingerprints[row.key] = digest
    _write(session, ctx, batch, rows)
    return needed


def _apply_row(ctx: _Context, batch: _Batch, row: SourceRow, digest: str, record: Any, problems: list[Problem],
               applied: dict[str, tuple[str, int]], seen_in_file: set[str]) -> str:
    """Decide one row: created, updated, unchanged or rejected (problems get the reasons and remarks)."""
    if record is None and (problems or row.error is not None):
        return "rejected"
    key = row.key
    earlier = applied.get(key)
    if earlier is not None and earlier[0] == digest:
        problems.append(Problem("_row", f"exact duplicate of row {earlier[1]}", None, "flagged"))
        return "unchanged"
    if record is None:  # fingerprint matched
        if key in seen_in_file:
            problems.append(Problem("_row", "exact duplicate of an earlier row of this file", None, "flagged"))
        return "unchanged"
    if earlier is not None:
        problems.append(Problem("NPI", f"the NPI appears again (row {earlier[1]}); this later row is applied",
                                key, "flagged"))
    if isinstance(record, HcpRecord):
        outcome = _apply_hcp(ctx, batch, row, record, problems)
    elif isinstance(record, HcoRecord):
        outcome = _apply_hco(ctx, batch, row, record, problems)
    else:
        outcome = _apply_deactivation(ctx, batch, row, record, problems)
    if outcome != "rejected":
        applied[key] = (digest, row.row_number)
    return outcome


def _load(session: DbSession, records: list[Any]) -> _Batch:
    """Everything the batch needs from the database, in a handful of queries (never one per row)."""
    npis = {r.npi for r in records if r.npi}
    national_ids = {r.national_id for r in records if isinstance(r, HcpRecord) and r.national_id}
    emails = {blind_index(r.email) for r in records if isinstance(r, HcpRecord) and r.email}
    licences = {pair for r in records if isinstance(r, HcpRecord) for pair in r.licences}

    # Every lookup names the identifier kinds exactly, so it is an index search on (kind, value).
    ids_by_key: dict[tuple[str, str], int] = {}
    for kind, values in (("npi", npis), ("national_id", national_ids)):
        if values:
            for value, hcp_id in session.execute(select(HCPIdentifier.value, HCPIdentifier.hcp_id)
                                                 .where(HCPIdentifier.kind == kind,
                                                        among(session, HCPIdentifier.value, values))):
                ids_by_key[(kind, value)] = hcp_id
    hcp_ids = set(ids_by_key.values())
    email_rows = session.execute(select(HCP.email_bidx, HCP.id).where(among(session, HCP.email_bidx, emails))).all() \
        if emails else []
    hcp_ids |= {hcp_id for _b, hcp_id in email_rows}
    hcps = {h.id: h for h in session.scalars(select(HCP).where(among(session, HCP.id, hcp_ids)))} if hcp_ids else {}
    hcos = {h.npi: h for h in session.scalars(select(HCO).where(among(session, HCO.npi, npis))) if h.npi} \
        if npis else {}
    holders: dict[tuple[str, str], int] = {}
    if licences:
        for kind, value, hcp_id in session.execute(_identifiers_among(session, {(f"licence:{s}", n)
                                                                                for s, n in licences})):
            holders[(kind, value)] = hcp_id
    by_email: dict[str, list[HCP]] = {}
    for bidx, hcp_id in email_rows:
        if bidx is not None:
            by_email.setdefault(bidx, []).append(hcps[hcp_id])
    return _Batch(
        hcp_by_npi={v: hcps[i] for (k, v), i in ids_by_key.items() if k == "npi"},
        hcp_by_national_id={v: hcps[i] for (k, v), i in ids_by_key.items() if k == "national_id"},
        hcps_by_email=by_email, hco_by_npi=hcos, licence_holders=holders,
    )


def _identifiers_among(session: DbSession, pairs: set[tuple[str, str]]) -> Any:
    """``(kind, value, hcp_id)`` of the identifiers that are one of ``pairs``. PostgreSQL joins the
    pairs as an array pair (one index probe per pair, not one per kind x value); SQLite filters by
    both lists and the exact pairs are picked out by the caller's dictionary."""
    columns = (HCPIdentifier.kind, HCPIdentifier.value, HCPIdentifier.hcp_id)
    if session.get_bind().dialect.name == "postgresql":
        kinds, values = zip(*sorted(pairs), strict=True)
        wanted = func.unnest(bindparam(None, list(kinds), type_=ARRAY(String)),
                             bindparam(None, list(values), type_=ARRAY(String))) \
            .table_valued("kind", "value").render_derived()
        return select(*columns).join(wanted, and_(HCPIdentifier.kind == wanted.c.kind,
                                                  HCPIdentifier.value == wanted.c.value))
    return select(*columns).where(HCPIdentifier.kind.in_({k for k, _v in pairs}),
                                  HCPIdentifier.value.in_({v for _k, v in pairs}))


_REFUSED = object()  # _match_hcp: the row names an HCP ambiguously or inconsistently


def _match_hcp(batch: _Batch, record: HcpRecord, problems: list[Problem]) -> Any:
    """The HCP this record is about: by NPI, then national id, then email; None when new, or _REFUSED."""
    if record.npi and record.npi in batch.hcp_by_npi:
        return batch.hcp_by_npi[record.npi]
    found: HCP | None = None
    how = ""
    if record.national_id and record.national_id in batch.hcp_by_national_id:
        found = batch.hcp_by_national_id[record.national_id]
        how = f"national id {record.national_id}"
    elif record.email:
        live = [h for h in batch.hcps_by_email.get(blind_index(record.email) or "", []) if h.status in _LIVE]
        if len(live) > 1:
            ids = ", ".join(str(h.id) for h in sorted(live, key=lambda h: h.id))
            problems.append(Problem("email", f"matches several HCPs ({ids}); merge the duplicates first"))
            return _REFUSED
        found = live[0] if live else None
        how = "email address"
    if found is not None and record.npi:
        other = [i.value for i in found.identifiers if i.kind == "npi" and i.value != record.npi]
        if other:
            problems.append(Problem("NPI", f"the {how} belongs to HCP {found.id}, whose NPI is {other[0]}",
                                    record.npi))
            return _REFUSED
    return found


def _wanted_identifiers(record: HcpRecord) -> list[tuple[str, str]]:
    out = [("npi", record.npi)] if record.npi else []
    if record.national_id:
        out.append(("national_id", record.national_id))
    return out


def _apply_hcp(ctx: _Context, batch: _Batch, row: SourceRow, record: HcpRecord, problems: list[Problem]) -> str:
    key = record.npi or f"row:{row.row_number}"
    if record.npi and record.npi in batch.hco_by_npi:
        problems.append(Problem("Entity Type Code", f"NPI {record.npi} is an organisation (HCO "
                                f"{batch.hco_by_npi[record.npi].id}) here, this row an individual", "1"))
        return "rejected"
    target: Any = batch.state.get(key)
    if target is None:
        target = _match_hcp(batch, record, problems)
        if target is _REFUSED:
            return "rejected"
    if isinstance(target, HCP) and target.status == "merged":
        problems.append(Problem("NPI", f"HCP {target.id} was merged into HCP {target.merged_into_id}; "
                                "a merged record is not updated", record.npi))
        return "rejected"
    if isinstance(target, HCP) and target.status == "erased":
        problems.append(Problem("NPI", f"HCP {target.id} was erased; an import does not bring it back",
                                record.npi))
        return "rejected"
    values = {f: record.values.get(f) for f in HCP_FIELDS}
    values["country"] = values["country"] or "US"
    if record.email:
        values["email"] = record.email
    if target is None and record.npi in batch.imported_before:
        problems.append(Problem("NPI", f"NPI {record.npi} was imported before and no HCP carries it any more "
                                "(erased, or the identifier was removed); it is not created again", record.npi))
        return "rejected"
    if target is None:  # a new HCP
        new = _New({**values, "email": record.email, "email_bidx": blind_index(record.email)},
                   _wanted_identifiers(record))
        new.identifiers += _free_licences(batch, key, None, record, problems)
        batch.new_hcps.append(new)
        batch.state[key] = new
        return "created"
    if isinstance(target, _New):  # created earlier in this batch: the later row wins
        changed = {k: v for k, v in values.items() if target.values.get(k) != v}
        target.values.update(changed)
        if "email" in changed:
            target.values["email_bidx"] = blind_index(changed["email"])
        extra = [p for p in _free_licences(batch, key, None, record, problems) if p not in target.identifiers]
        target.identifiers += extra
        return "updated" if changed or extra else "unchanged"

    batch.state[key] = target
    if target.status not in _LIVE:
        values.pop("status")
    before = {f: getattr(target, f) for f in values}
    changed = {k: v for k, v in values.items() if before[k] != v}
    held = {(i.kind, i.value) for i in target.identifiers}
    new_idents = [p for p in _wanted_identifiers(record) if p not in held]
    new_idents += [p for p in _free_licences(batch, key, target.id, record, problems) if p not in held]
    if not changed and not new_idents:
        return "unchanged"
    for k, v in changed.items():
        setattr(target, k, v)
    if "email" in changed:
        target.email_bidx = blind_index(changed["email"])
    for kind, value in new_idents:
        target.identifiers.append(HCPIdentifier(kind=kind, value=value))
    diff = audit.diff(before, {k: changed.get(k, before[k]) for k in before})
    if new_idents:
        diff["identifiers"] = {"added": [f"{k}={v}" for k, v in new_idents]}
    batch.audits.append(("hcp.update", "hcp", target, diff, f"NPPES import run {ctx.run_id}, row {row.row_number}"))
    return "updated"


def _free_licences(batch: _Batch, key: str, hcp_id: int | None, record: HcpRecord,
                   problems: list[Problem]) -> list[tuple[str, str]]:
    """The row's licences as identifiers, leaving out (and flagging) those another HCP already holds."""
    out = []
    for state, number in record.licences:
        kind = f"licence:{state}"
        holder = batch.licence_holders.get((kind, number))
        claimed = batch.claimed_licences.get((kind, number))
        if holder is not None and holder != hcp_id:
            problems.append(Problem("Provider License Number", f"licence {state} {number} already belongs to HCP "
                                    f"{holder} (a suspected duplicate); not attached here", number, "flagged"))
        elif claimed is not None and claimed != key:
            problems.append(Problem("Provider License Number", f"licence {state} {number} is also on NPI {claimed} "
                                    "in this file (a suspected duplicate); not attached here", number, "flagged"))
        else:
            batch.claimed_licences[(kind, number)] = key
            out.append((kind, number))
    return out


def _apply_hco(ctx: _Context, batch: _Batch, row: SourceRow, record: HcoRecord, problems: list[Problem]) -> str:
    if record.npi in batch.hcp_by_npi:
        problems.append(Problem("Entity Type Code", f"NPI {record.npi} is an individual (HCP "
                                f"{batch.hcp_by_npi[record.npi].id}) here, this row an organisation", "2"))
        return "rejected"
    target: Any = batch.state.get(record.npi) or batch.hco_by_npi.get(record.npi)
    values = {f: record.values.get(f) for f in HCO_FIELDS}
    if target is None:
        new = _New({**values, "npi": record.npi})
        batch.new_hcos.append(new)
        batch.state[record.npi] = new
        return "created"
    if isinstance(target, _New):
        changed = {k: v for k, v in values.items() if target.values.get(k) != v}
        target.values.update(changed)
        return "updated" if changed else "unchanged"
    if isinstance(target, HCP):
        problems.append(Problem("Entity Type Code", f"NPI {record.npi} is an individual (HCP {target.id}) in this "
                                "file, this row an organisation", "2"))
        return "rejected"
    batch.state[record.npi] = target
    before = {f: getattr(target, f) for f in HCO_FIELDS}
    changed = {k: v for k, v in values.items() if before[k] != v}
    if not changed:
        return "unchanged"
    for k, v in changed.items():
        setattr(target, k, v)
    batch.audits.append(("hco.update", "hco", target,
                         audit.diff(before, {k: changed.get(k, before[k]) for k in before}),
                         f"NPPES import run {ctx.run_id}, row {row.row_number}"))
    return "updated"


def _apply_deactivation(ctx: _Context, batch: _Batch, row: SourceRow, record: Deactivation,
                        problems: list[Problem]) -> str:
    target: Any = (batch.state.get(record.npi) or batch.hcp_by_npi.get(record.npi)
                   or batch.hco_by_npi.get(record.npi))
    if target is None:
        problems.append(Problem("NPI", "a deactivated NPI that is not in the CRM; nothing to import", record.npi))
        return "rejected"
    if isinstance(target, _New):
        if target.values["status"] == "inactive":
            return "unchanged"
        target.values["status"] = "inactive"
        return "updated"
    batch.state[record.npi] = target
    if target.status != "active":
        return "unchanged"
    target.status = "inactive"
    entity = "hcp" if isinstance(target, HCP) else "hco"
    batch.audits.append((f"{entity}.update", entity, target, audit.diff({"status": "active"}, {"status": "inactive"}),
                         f"NPPES import run {ctx.run_id}, row {row.row_number}: NPI deactivated"))
    return "updated"


def _write(session: DbSession, ctx: _Context, batch: _Batch, rows: Sequence[SourceRow]) -> None:
    """Insert the batch's new rows in bulk, flush its updates, then audit and keep its errors."""
    created_hcp_ids: list[int] = []
    created_hco_ids: list[int] = []
    session.flush()
    if batch.new_hcps:
        created_hcp_ids = _insert_with_ids(session, HCP.__table__, [n.values for n in batch.new_hcps])
        idents = [{"hcp_id": hcp_id, "kind": kind, "value": value}
                  for hcp_id, new in zip(created_hcp_ids, batch.new_hcps, strict=True)
                  for kind, value in new.identifiers]
        _bulk_insert(session, HCPIdentifier.__table__, idents)
    if batch.new_hcos:
        created_hco_ids = _insert_with_ids(session, HCO.__table__, [n.values for n in batch.new_hcos])
    audit.record_many(session, ctx.actor, [(action, entity, obj.id, changes, reason)
                                           for action, entity, obj, changes, reason in batch.audits])
    if created_hcp_ids or created_hco_ids:
        audit.record(session, ctx.actor, "masterdata.import", "import_run", ctx.run_id,
                     {"rows": [rows[0].row_number, rows[-1].row_number],
                      "created_hcp_ids": created_hcp_ids, "created_hco_ids": created_hco_ids},
                     reason=f"NPPES import run {ctx.run_id}")
    if batch.fingerprints:
        _store_fingerprints(session, ctx.run_id, batch.fingerprints, batch.imported_before)
    if batch.errors:
        session.execute(insert(ImportRowError), batch.errors)


def _insert_with_ids(session: DbSession, table: Any, rows: list[dict[str, Any]]) -> list[int]:
    """Insert ``rows`` with ids allocated up front, so one executemany does it and the ids are known.

    PostgreSQL hands out the ids from the table's own sequence (safe under concurrency); SQLite
    continues after the highest id, which is safe because its writers are serialised (every
    transaction starts with BEGIN IMMEDIATE). ``RETURNING`` in parameter order would cost one
    statement per row on SQLite.
    """
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        sequence = session.scalar(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table.name})
        ids = list(session.scalars(text("SELECT nextval(CAST(:s AS regclass)) FROM generate_series(1, :n)"),
                                   {"s": sequence, "n": len(rows)}))
    else:
        top = session.scalar(select(func.max(table.c.id))) or 0
        ids = list(range(top + 1, top + 1 + len(rows)))
    # Defaults given explicitly, once per batch rather than once per row.
    stamps = {"created_at": now, "updated_at": now, **({"version": 1} if "version" in table.c else {})}
    _bulk_insert(session, table, rows, same=stamps, columns={"id": ids})
    return ids


def _bulk_insert(session: DbSession, table: Any, rows: list[dict[str, Any]], *, same: dict[str, Any] | None = None,
                 columns: dict[str, list[Any]] | None = None) -> None:
    """Write ``rows`` (all with the same keys; see ``crm.db.bulk_parameters`` for ``same`` and
    ``columns``) in one go: COPY on PostgreSQL, one executemany on SQLite."""
    if not rows:
        return
    conn = session.connection()
    keys, params = bulk_parameters(table, rows, conn.dialect, same=same, columns=columns)
    if conn.dialect.name == "postgresql":
        _copy_in(conn, table, keys, params)
        return
    compiled = table.insert().compile(dialect=conn.dialect, column_keys=keys)
    if compiled.positiontup is not None:
        order = [keys.index(k) for k in compiled.positiontup]
        if order != list(range(len(keys))):  # the statement names the columns in another order
            pick = itemgetter(*order)
            params = [pick(row) if len(order) > 1 else (pick(row),) for row in params]
        conn.exec_driver_sql(compiled.string, params)
    else:
        conn.exec_driver_sql(compiled.string, [dict(zip(keys, row, strict=True)) for row in params])


def _copy_in(conn: Any, table: Any, keys: list[str], rows: Any) -> None:
    """PostgreSQL: the rows through ``COPY ... FROM STDIN`` on the session's own connection (so in its
    transaction): one stream instead of one INSERT per row, with the same constraints and triggers."""
    quote = conn.dialect.identifier_preparer.quote
    columns = ", ".join(quote(table.c[k].name) for k in keys)
    with conn.connection.driver_connection.cursor() as cursor:
        with cursor.copy(f"COPY {quote(table.name)} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def _store_fingerprints(session: DbSession, run_id: int, digests: dict[str, str], known: set[str]) -> None:
    """Insert the digests of keys seen for the first time, update the others (plain statements: an
    upsert costs several times more per row)."""
    table: Any = ImportFingerprint.__table__
    fresh = [{"source_key": k, "digest": d} for k, d in digests.items() if k not in known]
    again = [{"k": k, "d": d, "r": run_id} for k, d in digests.items() if k in known]
    _bulk_insert(session, table, fresh, same={"source": SOURCE, "run_id": run_id})
    if again:
        session.execute(
            update(table).where(table.c.source == SOURCE, table.c.source_key == bindparam("k"))
            .values(digest=bindparam("d"), run_id=bindparam("r")), again)
