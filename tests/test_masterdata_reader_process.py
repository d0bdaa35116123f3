"""The reader process: the same rows, digests and validation as reading inline, and the same import."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from sqlalchemy import delete, func, select

from crm.hcps.identifiers import make_npi
from crm.hcps.models import HCO, HCP, HCPIdentifier
from crm.integrations.masterdata import importer, reading
from crm.integrations.masterdata.importer import import_nppes_file
from crm.integrations.masterdata.models import ImportFingerprint, ImportRowError, ImportRun
from crm.integrations.masterdata.nppes import (
    NppesReader,
    RowValidator,
    fields_of_raw_row,
    quoted_line_fields,
    quoted_line_shape,
)
from crm.integrations.masterdata.reading import ReaderFailed, ReaderProcess, Start, mapping_key, read_inline
from crm.integrations.masterdata.synthetic import INDEX, nppes_row
from crm.integrations.masterdata.taxonomy import load_table
from tests.masterdata_helpers import csv_bytes, row

LAST = "Provider Last Name (Legal Name)"
OTHER_ORG = "Provider Other Organization Name"


def tricky_file(path: Path) -> Path:
    """Every kind of row the reader and validator tell apart, in batches that cut through them."""
    multi_line = row(3)
    multi_line[INDEX[OTHER_ORG]] = "Formerly\r\nSt. Elsewhere"
    bad_encoding = csv_bytes([row(9, **{LAST: "MÜLLER"})], header=False).replace("Ü".encode(), "Ü".encode("latin-1"))
    deactivated = [""] * len(nppes_row(0))
    deactivated[INDEX["NPI"]] = make_npi(1)
    deactivated[INDEX["NPI Deactivation Date"]] = "05/01/2024"
    data = (
        csv_bytes([row(0), row(1), row(2, NPI="123456789"), multi_line, row(4, **{LAST: "=HYPERLINK(\"x\")"}),
                   row(5, **{"Provider Enumeration Date": "02/30/2011"}), row(0), nppes_row(6)[:200]])
        + b'"1000000012","1","x"oops",\r\n\r\n'
        + csv_bytes([row(n) for n in range(100, 160)], header=False)  # past the 64 KB that are sniffed
        + bad_encoding
        + csv_bytes([row(10), row(11, **{LAST: "SMITH-JONES"}), row(10, **{LAST: "LATER"}), deactivated,
                     row(12, **{"Entity Type Code": "2"})], header=False)
    )
    path.write_bytes(data)
    return path


def inline_batches(path: Path, batch_size: int, start: Start = Start()):
    with open(path, "rb") as fh:
        reader = NppesReader(fh)
        validator = RowValidator(reader.header, load_table())
        for batch in read_inline(reader, start, batch_size, mapping_key(validator.taxonomy)):
            yield batch, [None if r.error is not None else validator.validate(r.fields) for r in batch.rows]


@pytest.mark.parametrize("validate", [True, False])
def test_the_reader_process_reads_hashes_and_validates_like_this_process(tmp_path, validate):
    path = tricky_file(tmp_path / "tricky.csv")
    helper = ReaderProcess(path, Start(), 4)
    try:
        remote = list(helper.batches(lambda: validate))
    finally:
        helper.close()
    local = list(inline_batches(path, 4))
    assert [len(b.rows) for b in remote] == [len(b.rows) for b, _v in local] and len(remote) == 19
    with open(path, "rb") as fh:
        for got, (want, validations) in zip(remote, local, strict=True):
            assert got.digests == want.digests
            assert (got.validated is not None) == validate
            for i, (r, w) in enumerate(zip(got.rows, want.rows, strict=True)):
                assert (r.row_number, r.line_number, r.end_offset, r.end_line, r.key, r.error) == (
                    w.row_number, w.line_number, w.end_offset, w.end_line, w.key, w.error)
                assert not r.complete and r.raw == b""
                assert reading.raw_bytes(fh, r) == w.raw  # the importer can read the row again
                if w.error is None:
                    assert fields_of_raw_row(w.raw) == w.fields
                if validate:
                    assert got.validated[i] == validations[i]
    # the line checkpoint is the row's last physical line (the multi-line row ends a line later)
    rows = [r for b, _v in local for r in b.rows]
    assert [r.end_line - r.line_number for r in rows].count(1) == 1
    assert all(r.end_line == r.line_number + r.raw.count(b"\n") - r.raw.endswith(b"\n") for r in rows)


def test_a_resumed_reader_process_starts_at_the_checkpoint(tmp_path):
    path = tricky_file(tmp_path / "tricky.csv")
    first = next(inline_batches(path, 5))[0].rows[-1]
    start = Start(first.end_offset, first.row_number, first.end_line)
    helper = ReaderProcess(path, start, 100)
    try:
        remote = [r for b in helper.batches(lambda: True) for r in b.rows]
    finally:
        helper.close()
    local = [r for b, _v in inline_batches(path, 100, start) for r in b.rows]
    assert [(r.row_number, r.line_number, r.key) for r in remote] == [
        (r.row_number, r.line_number, r.key) for r in local]
    assert remote[0].row_number == 6


def snapshot(db, run: ImportRun):
    hcps = {}
    for hcp in db.scalars(select(HCP)):
        npi = next((i.value for i in hcp.identifiers if i.kind == "npi"), None)
        hcps[npi] = (hcp.first_name, hcp.last_name, hcp.profession, hcp.phone, hcp.address_line, hcp.status,
                     sorted((i.kind, i.value) for i in hcp.identifiers))
    errors = [(e.row_number, e.line_number, e.severity, e.field, e.reason) for e in
              db.scalars(select(ImportRowError).where(ImportRowError.run_id == run.id)
                         .order_by(ImportRowError.row_number, ImportRowError.id))]
    hcos = sorted((h.npi, h.name, h.kind) for h in db.scalars(select(HCO)))
    counts = (run.status, run.created, run.updated, run.unchanged, run.rejected, run.flagged, run.row_offset,
              run.line_offset, run.byte_offset)
    return counts, hcps, hcos, errors


def test_the_same_file_imports_the_same_either_way(db, tmp_path):
    path = tricky_file(tmp_path / "tricky.csv")
    results = []
    for use_process in (True, False):
        run = import_nppes_file(db, None, path, batch_size=3, reader_process=use_process)
        results.append(snapshot(db, run))
        for model in (ImportRowError, ImportFingerprint, HCPIdentifier, HCP, HCO, ImportRun):
            db.execute(delete(model))  # a fresh database for the second way
        db.flush()
    by_process, inline = results
    counts, hcps, hcos, errors = by_process
    assert counts[0] == "completed" and counts[8] == path.stat().st_size
    assert counts[1] == len(hcps) + len(hcos) > 5 and counts[4] >= 5 and len(errors) >= 6
    assert by_process == inline


def test_a_reimport_with_changed_rows_reads_and_checks_them_again(db, tmp_path, monkeypatch):
    split_again: list[bytes] = []

    def spy(raw: bytes) -> list[str]:
        split_again.append(raw)
        return fields_of_raw_row(raw)

    monkeypatch.setattr(importer, "fields_of_raw_row", spy)
    rows = [row(n) for n in range(12)]
    first = tmp_path / "a.csv"
    first.write_bytes(csv_bytes(rows))
    import_nppes_file(db, None, first, batch_size=3, reader_process=True)
    rows[7] = row(7, **{LAST: "CHANGED"})
    rows[10] = row(10, NPI="123")
    path = tmp_path / "b.csv"
    path.write_bytes(csv_bytes(rows))
    run = import_nppes_file(db, None, path, batch_size=3, reader_process=True)
    assert (run.created, run.updated, run.unchanged, run.rejected) == (0, 1, 10, 1)
    changed = db.scalar(select(HCP).join(HCPIdentifier).where(HCPIdentifier.value == make_npi(7)))
    assert changed.last_name == "CHANGED"
    error = db.scalar(select(ImportRowError).where(ImportRowError.run_id == run.id))
    assert (error.row_number, error.field) == (11, "NPI")
    # after a first batch of unchanged rows the reader stops validating and splitting: the changed
    # rows were read again from the importer's own handle on the file
    assert [raw.split(b",")[0] for raw in split_again] == [f'"{make_npi(7)}"'.encode(), b'"123"']


def test_a_failed_reader_process_fails_the_run_which_then_resumes(db, tmp_path, monkeypatch):
    path = tricky_file(tmp_path / "tricky.csv")
    hidden = tmp_path / "hidden.csv"
    started: list[ReaderProcess] = []
    real_init = ReaderProcess.__init__

    def vanishing_file(self, file, start, batch_size):  # the file disappears as the reader starts
        path.rename(hidden)
        real_init(self, file, start, batch_size)
        started.append(self)

    monkeypatch.setattr(ReaderProcess, "__init__", vanishing_file)
    with pytest.raises(ReaderFailed, match="reader process failed: FileNotFoundError"):
        import_nppes_file(db, None, path, batch_size=3, reader_process=True)
    assert started[0]._proc.poll() is not None  # no reader left behind
    failed = db.scalar(select(ImportRun))
    assert failed.status == "failed" and "FileNotFoundError" in failed.error
    monkeypatch.undo()
    hidden.rename(path)
    again = import_nppes_file(db, None, path, batch_size=3, reader_process=True)
    assert again.id == failed.id and again.status == "completed"


@pytest.fixture
def started(monkeypatch) -> list[ReaderProcess]:
    """Every reader process the test starts, recorded as it starts."""
    readers: list[ReaderProcess] = []
    real_init = ReaderProcess.__init__

    def recorded(self, *args):
        real_init(self, *args)
        readers.append(self)

    monkeypatch.setattr(ReaderProcess, "__init__", recorded)
    return readers


def test_an_importer_that_fails_stops_its_reader(db, tmp_path, monkeypatch, started):
    path = tricky_file(tmp_path / "tricky.csv")

    def failing(*args):
        raise RuntimeError("disk full")

    monkeypatch.setattr(importer, "_apply_batch", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        import_nppes_file(db, None, path, batch_size=3, reader_process=True)
    assert started[0]._proc.poll() is not None


def test_large_files_are_read_by_a_reader_process_small_ones_inline(db, tmp_path, monkeypatch, started):
    path = tricky_file(tmp_path / "tricky.csv")
    import_nppes_file(db, None, path)
    assert started == []
    monkeypatch.setattr(importer, "PROCESS_THRESHOLD_BYTES", path.stat().st_size // 2)
    path.write_bytes(path.read_bytes() + csv_bytes([row(40)], header=False))  # another file, another run
    run = import_nppes_file(db, None, path)
    assert len(started) == 1 and run.status == "completed" and run.created == 1
    assert db.scalar(select(func.count()).select_from(ImportRun)) == 2


def test_the_key_only_shape_agrees_with_splitting():
    rng = random.Random(7)
    pieces = ['"', ",", '","', "a", "é", "\r", "\n", " ", "x,y", '""']
    lines = ['""', '"a"', '"a","b"', '"a","b"\r\n', '"","",""\n', 'a,b\n', '"a"b","c"', '"a\n', '"', "",
             '"a","b",', ',"a"']
    ends = ["", "\n", "\r\n"]
    lines += ['"' + "".join(rng.choice(pieces) for _ in range(rng.randint(0, 12))) + '"' + rng.choice(ends)
              for _ in range(3000)]
    for line in lines:
        fields = quoted_line_fields(line)
        shape = quoted_line_shape(line)
        assert (shape is None) == (fields is None), line
        if fields is not None:
            assert shape == (fields[0], len(fields)), line
