"""Feeding the importer: rows in batches, each row with its digest and, when useful, its validation.

Reading, hashing and validating a row needs no database; matching and writing it does. For a large
file the first part runs in a reader process (``python -m crm.integrations.masterdata.reading``)
while the importing process matches and writes the previous batch, so an import uses two CPUs
instead of one (about a third of its time on PostgreSQL, where the importer otherwise waits for
the server). A thread would not do: the interpreter lock would make the two halves take turns.

The reader works one batch ahead of the importer, never more: the importer asks for a batch when
it takes the previous one, and the reader blocks until asked, so memory holds a few batches
whatever the file size. Validating ahead is speculative: a row whose fingerprint shows it
unchanged is not looked at, so the importer asks for validation only while most rows of its last
batch needed it (a first import), not on a re-import. Rows travel without their bytes and their
330 fields (their key, digest, place and size suffice); a row that the importer must validate
itself after all is read again from its own handle on the file and split the same way
(``fields_of_raw_row``).

The reader process is started with the running interpreter and ends when the importer closes it,
when the importer's process dies (its pipe closes), or at the end of the file. Its errors are
raised in the importer as ``ReaderFailed`` with the reader's message; the run is then marked failed
and resumes from its last checkpoint like any other failed run.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from itertools import islice
from pathlib import Path
from typing import IO, Any

from crm.integrations.masterdata.nppes import NppesReader, RowValidator
from crm.integrations.masterdata.records import Deactivation, HcoRecord, HcpRecord, Problem, SourceRow
from crm.integrations.masterdata.taxonomy import TaxonomyTable, load_table

# Part of every row fingerprint: bump it when the mapping rules in nppes.py change, so that the next
# import re-applies rows whose bytes did not change.
RULES_VERSION = "nppes-rules-1"
PROCESS_THRESHOLD_BYTES = 16 * 1024 * 1024  # below this (about 14,000 rows) one process is as quick


class ReaderFailed(RuntimeError):
    """The reader process stopped with an error (its message is kept) or died."""


@dataclass
class ReadBatch:
    rows: list[SourceRow]
    digests: list[str]
    validated: list[tuple[Any, list[Problem]] | None] | None = None  # per row, done ahead; None: not done


@dataclass(frozen=True)
class Start:
    """Where reading starts: just after the header (all zero) or a committed checkpoint."""

    byte_offset: int = 0
    row_offset: int = 0
    line_offset: int = 0


def mapping_key(taxonomy: TaxonomyTable) -> bytes:
    return f"{RULES_VERSION}:{taxonomy.digest}:".encode()


def row_digest(key: bytes, row: SourceRow) -> str:
    """What the row's source bytes and the mapping rules were; equal digests mean nothing to apply."""
    return hashlib.blake2b(key + row.raw.rstrip(b"\r\n"), digest_size=16).hexdigest()


def read_inline(reader: NppesReader, start: Start, batch_size: int, key: bytes) -> Iterator[ReadBatch]:
    """Batches read in this process: full rows, digests, nothing validated ahead."""
    rows = reader.rows(start.byte_offset, start.row_offset, start.line_offset)
    while batch := list(islice(rows, batch_size)):
        yield ReadBatch(batch, [row_digest(key, row) for row in batch])


class ReaderProcess:
    """Batches read, hashed and (on request) validated by a child process, one batch ahead."""

    def __init__(self, path: str | Path, start: Start, batch_size: int) -> None:
        package_root = str(Path(__file__).resolve().parents[3])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (package_root, os.environ.get("PYTHONPATH", "")) if p)}
        # Our own interpreter and module; the path is an argument, never parsed by a shell.
        self._proc = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "crm.integrations.masterdata.reading", str(path), str(start.byte_offset),
             str(start.row_offset), str(start.line_offset), str(batch_size)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env,
        )
        self._requests: IO[bytes] = self._proc.stdin  # type: ignore[assignment]
        self._replies: IO[bytes] = self._proc.stdout  # type: ignore[assignment]

    def batches(self, validate_ahead: Any) -> Iterator[ReadBatch]:
        """Yield batches; ``validate_ahead()`` is asked before each request whether to validate."""
        self._ask(validate_ahead())
        while True:
            item = self._receive()
            if item is None:
                return
            self._ask(validate_ahead())  # the reader works on the next batch while this one is applied
            yield item

    def _ask(self, validate: bool) -> None:
        try:
            self._requests.write(b"v" if validate else b"n")
            self._requests.flush()
        except BrokenPipeError:
            pass  # the reader ended; _receive says how

    def _receive(self) -> ReadBatch | None:
        try:
            # Unpickling is safe here: the bytes come from our own child over a private pipe.
            kind, payload = pickle.load(self._replies)  # noqa: S301
        except EOFError:
            code = self._proc.wait()
            raise ReaderFailed(f"the reader process ended unexpectedly (exit status {code})") from None
        if kind == "error":
            raise ReaderFailed(payload)
        if kind == "end":
            return None
        rows, digests, validated = payload
        return ReadBatch([_unpack_row(r) for r in rows], digests,
                         None if validated is None else [_unpack_validation(v) for v in validated])

    def close(self) -> None:
        for stream in (self._requests, self._replies):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# -- what travels: plain tuples (pickled several times faster than dataclasses) ------------------------

def _pack_row(row: SourceRow) -> tuple[Any, ...]:
    """The row without its bytes and fields: its key, place and size suffice (the importer reads the
    bytes from its own handle on the file if it needs them after all)."""
    error = None if row.error is None else astuple(row.error)
    return (row.row_number, row.line_number, row.end_offset, row.key, error, row.end_line, row.size)


def _unpack_row(packed: tuple[Any, ...]) -> SourceRow:
    row_number, line_number, end_offset, key, error, end_line, size = packed
    return SourceRow(row_number, line_number, end_offset, b"", [key] if key or error is None else [],
                     None if error is None else Problem(*error), end_line, complete=False, size=size)


def _pack_validation(result: tuple[Any, list[Problem]] | None) -> tuple[Any, ...] | None:
    if result is None:
        return None
    record, problems = result
    packed_problems = tuple(astuple(p) for p in problems)
    if record is None:
        return (None, None, packed_problems)
    if isinstance(record, HcpRecord):
        return ("hcp", (record.npi, record.values, record.licences, record.national_id, record.email),
                packed_problems)
    if isinstance(record, HcoRecord):
        return ("hco", (record.npi, record.values), packed_problems)
    return ("deactivation", (record.npi,), packed_problems)


_RECORDS: dict[str | None, Any] = {"hcp": HcpRecord, "hco": HcoRecord, "deactivation": Deactivation}


def _unpack_validation(packed: tuple[Any, ...] | None) -> tuple[Any, list[Problem]] | None:
    if packed is None:
        return None
    kind, fields, problems = packed
    return (None if kind is None else _RECORDS[kind](*fields)), [Problem(*p) for p in problems]


def raw_bytes(fh: IO[bytes], row: SourceRow) -> bytes:
    """The row's bytes, from the importer's own handle on the file when the row travelled without them."""
    if row.complete:
        return row.raw
    return os.pread(fh.fileno(), row.size, row.end_offset - row.size)


def _serve(path: str, start: Start, batch_size: int, requests: IO[bytes], out: IO[bytes]) -> None:
    """Answer each request (``v``: validate, ``n``: do not) with the next batch, then ``end``."""
    with open(path, "rb") as fh:
        reader = NppesReader(fh)
        validator = RowValidator(reader.header, load_table())
        key = mapping_key(validator.taxonomy)
        rows = reader.rows(start.byte_offset, start.row_offset, start.line_offset)
        while request := requests.read(1):  # nothing: the importer is gone or closed us
            validate = request == b"v"
            reader.key_only = not validate  # a row that needs no validation needs no splitting either
            # Row by row: only one row's 330 fields are alive at a time, not a batch's.
            packed: list[tuple[Any, ...]] = []
            digests: list[str] = []
            validated: list[tuple[Any, ...] | None] | None = [] if validate else None
            for row in islice(rows, batch_size):
                packed.append(_pack_row(row))
                digests.append(row_digest(key, row))
                if validated is not None:
                    validated.append(None if row.error is not None
                                     else _pack_validation(validator.validate(row.fields)))
            if not packed:
                pickle.dump(("end", None), out, protocol=pickle.HIGHEST_PROTOCOL)
                out.flush()
                return
            pickle.dump(("batch", (packed, digests, validated)), out, protocol=pickle.HIGHEST_PROTOCOL)
            out.flush()


def main(argv: list[str]) -> int:
    path, byte_offset, row_offset, line_offset, batch_size = argv
    out = sys.stdout.buffer
    try:
        _serve(path, Start(int(byte_offset), int(row_offset), int(line_offset)), int(batch_size), sys.stdin.buffer,
               out)
    except (BrokenPipeError, KeyboardInterrupt):
        return 0
    except Exception as exc:  # reported to the importer, which raises it
        try:
            pickle.dump(("error", f"the reader process failed: {type(exc).__name__}: {exc}"), out)
            out.flush()
        except BrokenPipeError:
            pass
        return 1
    return 0


if __name__ == "__main__":
    # Run the importable module's main, not this __main__ copy's: what is pickled must name classes
    # the importer can find (crm.integrations.masterdata.reading.ReadBatch, not __main__.ReadBatch).
    from crm.integrations.masterdata.reading import main as _main

    sys.exit(_main(sys.argv[1:]))
