"""Real processes and real commits: an import killed mid-file resumes; the same file twice at once refuses."""

from __future__ import annotations

import os
import traceback
from collections.abc import Callable

import pytest
from sqlalchemy import func, select

from crm.extensions import db as _db
from crm.hcps.models import HCO, HCP, HCPIdentifier
from crm.integrations.masterdata import importer
from crm.integrations.masterdata.importer import ImportAlreadyRunning, import_nppes_file
from crm.integrations.masterdata.models import ImportFingerprint, ImportRun
from crm.integrations.masterdata.synthetic import nppes_row
from tests.masterdata_helpers import write_file

pytestmark = pytest.mark.committing


def fork(fn: Callable[[], None]) -> int:
    """Run ``fn`` in a child process that exits without running any of the parent's cleanup."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is not collected
        code = 0
        try:
            fn()
        except BaseException:
            traceback.print_exc()
            code = 1
        finally:
            os._exit(code)
    return pid


def exit_code(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def count(model) -> int:
    return _db.session.scalar(select(func.count()).select_from(model))


def test_import_killed_at_row_5001_of_10000_resumes_with_exactly_the_rows_of_the_file(committing_app, tmp_path):
    path = write_file(tmp_path / "ten-thousand.csv", [nppes_row(n) for n in range(10_000)])
    with committing_app.app_context():
        _db.engine.dispose()

    def killed_child() -> None:
        with committing_app.app_context():
            real = importer._checkpoint

            def die_in_sixth_batch(session, run_id, last, counts):
                if last.row_number > 5000:
                    os._exit(137)  # SIGKILL-like: no rollback, no "failed" status, rows 5,001+ flushed, uncommitted
                real(session, run_id, last, counts)

            importer._checkpoint = die_in_sixth_batch
            import_nppes_file(_db.session, None, path, batch_size=1000)

    assert exit_code(fork(killed_child)) == 137
    with committing_app.app_context():
        run = _db.session.scalar(select(ImportRun))
        assert (run.status, run.row_offset, run.created) == ("running", 5000, 5000)
        assert count(HCP) + count(HCO) == 5000
        again = import_nppes_file(_db.session, None, path, batch_size=1000)
        assert again.id == run.id and again.resumed == 1
        assert (again.status, again.row_offset, again.created, again.rejected) == ("completed", 10_000, 10_000, 0)
        hcos = count(HCO)
        assert count(HCP) + hcos == 10_000
        npis = _db.session.scalar(select(func.count(func.distinct(HCPIdentifier.value)))
                                  .where(HCPIdentifier.kind == "npi"))
        assert npis == count(HCP) == 10_000 - hcos
        assert count(ImportFingerprint) == 10_000
        _db.session.remove()


def test_two_imports_of_the_same_file_at_once_the_second_refuses(committing_app, tmp_path):
    path = write_file(tmp_path / "six.csv", [nppes_row(n) for n in range(6)])
    with committing_app.app_context():
        _db.engine.dispose()
    go_r, go_w = os.pipe()
    started_r, started_w = os.pipe()

    def first_import() -> None:
        def progress(rows: int, offset: int) -> None:
            if rows == 2:  # first batch committed; hold the run open until the parent has tried
                os.write(started_w, b"s")
                os.read(go_r, 1)

        with committing_app.app_context():
            import_nppes_file(_db.session, None, path, batch_size=2, progress=progress)

    pid = fork(first_import)
    try:
        assert os.read(started_r, 1) == b"s"
        with committing_app.app_context():
            run = _db.session.scalar(select(ImportRun))
            with pytest.raises(ImportAlreadyRunning) as refused:
                import_nppes_file(_db.session, None, path)
            assert f"Import run {run.id} of this file is already running" in refused.value.detail
            assert refused.value.status == 409
            result = committing_app.test_cli_runner().invoke(args=["crm", "import", "hcps", str(path)])
            assert result.exit_code == 1 and "already running" in result.output
            assert _db.session.scalar(select(func.count()).select_from(ImportRun)) == 1
            _db.session.remove()
    finally:
        os.write(go_w, b"g")
    assert exit_code(pid) == 0
    with committing_app.app_context():
        first = _db.session.scalar(select(ImportRun))
        assert (first.status, first.created) == ("completed", 6)
        second = import_nppes_file(_db.session, None, path)
        assert second.id != first.id and (second.created, second.unchanged) == (0, 6)
        _db.session.remove()


def test_the_running_row_is_unique_per_file_in_the_database(committing_app):
    from sqlalchemy.exc import IntegrityError

    with committing_app.app_context():
        for _ in range(2):
            _db.session.add(ImportRun(source="nppes", filename="f.csv", file_sha256="a" * 64, file_size=1,
                                      status="completed", actor_label="system"))
        _db.session.add(ImportRun(source="nppes", filename="f.csv", file_sha256="a" * 64, file_size=1,
                                  status="running", actor_label="system"))
        _db.session.commit()
        _db.session.add(ImportRun(source="nppes", filename="f.csv", file_sha256="a" * 64, file_size=1,
                                  status="running", actor_label="system"))
        with pytest.raises(IntegrityError):
            _db.session.commit()
        _db.session.rollback()
        _db.session.remove()
