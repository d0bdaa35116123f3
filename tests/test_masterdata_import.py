"""The NPPES import against the database: create, upsert, unchanged re-import, bad rows, resume, CLI."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select

from crm.audit.models import AuditRecord
from crm.errors import Forbidden
from crm.hcps.identifiers import make_npi
from crm.hcps.models import HCO, HCP, HCPIdentifier
from crm.integrations.masterdata import importer
from crm.integrations.masterdata.importer import import_nppes_file
from crm.integrations.masterdata.models import ImportFingerprint, ImportRowError, ImportRun
from crm.integrations.masterdata.nppes import FileRefused, RowValidator
from crm.integrations.masterdata.report import error_report_lines
from crm.integrations.masterdata.synthetic import nppes_row
from tests.masterdata_helpers import SAMPLE, row, write_file

LAST = "Provider Last Name (Legal Name)"
FIRST = "Provider First Name"
CITY = "Provider Business Practice Location Address City Name"
PHONE = "Provider Business Practice Location Address Telephone Number"


def count(db, model) -> int:
    return db.scalar(select(func.count()).select_from(model))


def hcp_by_npi(db, npi: str) -> HCP:
    return db.scalar(select(HCP).join(HCPIdentifier).where(HCPIdentifier.kind == "npi", HCPIdentifier.value == npi))


def errors_of(db, run: ImportRun) -> list[ImportRowError]:
    return list(db.scalars(select(ImportRowError).where(ImportRowError.run_id == run.id)
                           .order_by(ImportRowError.row_number, ImportRowError.id)))


def test_sample_creates_hcps_and_hcos_and_a_second_run_changes_nothing(db):
    run = import_nppes_file(db, None, SAMPLE)
    assert (run.status, run.created, run.updated, run.unchanged, run.rejected) == ("completed", 300, 0, 0, 0)
    assert count(db, HCP) == 255 and count(db, HCO) == 45
    hcp = hcp_by_npi(db, "2260181591")
    assert (hcp.first_name, hcp.last_name, hcp.profession, hcp.specialty) == (
        "PRIYA", "JOHNSON", "specialist", "Pediatric Hematology-Oncology")
    assert (hcp.address_line, hcp.city, hcp.postal_code, hcp.state, hcp.phone) == (
        "72 Oak St", "BOSTON", "021159264", "MA", "3269947784")
    assert {(i.kind, i.value) for i in hcp.identifiers} == {("npi", "2260181591"), ("licence:MA", "241821")}
    hco = db.scalar(select(HCO).where(HCO.npi == "2288975149"))
    assert (hco.name, hco.kind, hco.city) == ("BOSTON CARDIOLOGY ASSOCIATES", "hospital", "BOSTON")

    audits, versions = count(db, AuditRecord), sorted(db.scalars(select(HCP.version)))
    again = import_nppes_file(db, None, SAMPLE)
    assert again.id != run.id
    assert (again.created, again.updated, again.unchanged, again.rejected) == (0, 0, 300, 0)
    assert count(db, AuditRecord) == audits  # no audit, no version bump
    assert sorted(db.scalars(select(HCP.version))) == versions


def test_changed_row_updates_only_the_changed_fields_with_an_audit(db, tmp_path):
    rows = [row(0), row(1), row(2)]
    import_nppes_file(db, None, write_file(tmp_path / "a.csv", rows))
    target = hcp_by_npi(db, make_npi(1))
    version, first_name = target.version, target.first_name
    other_version = hcp_by_npi(db, make_npi(2)).version
    rows[1] = row(1, **{CITY: "SPRINGFIELD", PHONE: "2175550100"})
    run = import_nppes_file(db, None, write_file(tmp_path / "b.csv", rows))
    assert (run.created, run.updated, run.unchanged) == (0, 1, 2)
    db.expire_all()
    target = hcp_by_npi(db, make_npi(1))
    assert (target.city, target.phone, target.first_name) == ("SPRINGFIELD", "2175550100", first_name)
    assert target.version == version + 1 and hcp_by_npi(db, make_npi(2)).version == other_version
    rec = db.scalar(select(AuditRecord).where(AuditRecord.action == "hcp.update",
                                              AuditRecord.entity_id == str(target.id)))
    assert set(rec.changes) == {"city", "phone"}
    assert rec.changes["city"] == {"before": "[personal data withheld]", "after": "[personal data withheld]"}
    assert nppes_row(1)[30] not in str(rec.changes) and "SPRINGFIELD" not in str(rec.changes)
    assert rec.changes["phone"]["after"] == "[personal data withheld]"
    assert rec.reason == f"NPPES import run {run.id}, row 2"


def test_a_change_in_a_column_the_crm_does_not_keep_writes_nothing(db, tmp_path):
    import_nppes_file(db, None, write_file(tmp_path / "a.csv", [row(0)]))
    audits, version = count(db, AuditRecord), hcp_by_npi(db, make_npi(0)).version
    run = import_nppes_file(db, None, write_file(tmp_path / "b.csv", [row(0, **{"Last Update Date": "01/02/2026"})]))
    assert (run.updated, run.unchanged) == (0, 1)
    assert count(db, AuditRecord) == audits and hcp_by_npi(db, make_npi(0)).version == version


def test_exact_duplicate_row_is_imported_once_and_flagged(db, tmp_path):
    run = import_nppes_file(db, None, write_file(tmp_path / "dup.csv", [row(0), row(1), row(0)]))
    assert (run.created, run.unchanged, run.flagged) == (2, 1, 1)
    assert count(db, HCP) == 2
    [err] = errors_of(db, run)
    assert (err.row_number, err.severity, err.reason) == (3, "flagged", "exact duplicate of row 1")


def test_exact_duplicate_in_a_later_batch_is_flagged_too(db, tmp_path):
    run = import_nppes_file(db, None, write_file(tmp_path / "dup.csv", [row(0), row(1), row(2), row(0)]),
                            batch_size=2)
    assert (run.created, run.unchanged, run.flagged) == (3, 1, 1)
    assert "exact duplicate" in errors_of(db, run)[0].reason


def test_same_npi_twice_with_different_values_applies_the_later_row(db, tmp_path):
    run = import_nppes_file(db, None, write_file(tmp_path / "twice.csv", [row(0), row(0, **{CITY: "SALEM"})]))
    assert (run.created, run.updated) == (1, 1)
    assert hcp_by_npi(db, make_npi(0)).city == "SALEM"
    assert "appears again" in errors_of(db, run)[0].reason


def test_bad_rows_are_rejected_with_field_and_reason_and_the_rest_is_imported(db, tmp_path):
    short = row(9)[:100]
    rows = [
        row(0, NPI="123456789"),  # 9 digits
        row(1, NPI="1000000013"),  # bad check digit
        row(2, NPI="1.00000E+09"),  # read by a spreadsheet as a number
        row(3, **{FIRST: '=HYPERLINK("http://evil.example","x")'}),
        row(4, **{LAST: "+SUM(A1:A3)"}),
        row(5, **{LAST: "#REF!"}),
        row(7, **{"Provider Enumeration Date": "02/30/2011"}),
        short,
        row(8),
    ]
    run = import_nppes_file(db, None, write_file(tmp_path / "bad.csv", rows))
    assert (run.created, run.rejected, run.status) == (1, 8, "completed")
    reasons = {(e.row_number, e.field): e.reason for e in errors_of(db, run)}
    assert "9 digits" in reasons[(1, "NPI")]
    assert "check digit" in reasons[(2, "NPI")]
    assert "spreadsheet" in reasons[(3, "NPI")]
    assert "formula" in reasons[(4, FIRST)]
    assert "formula" in reasons[(5, LAST)]
    assert "error value" in reasons[(6, LAST)]
    assert "calendar date" in reasons[(7, "Provider Enumeration Date")]
    assert "100 columns" in reasons[(8, "_row")]
    assert hcp_by_npi(db, make_npi(8)) is not None and count(db, HCP) == 1


def test_error_report_is_formula_safe_csv(db, tmp_path):
    run = import_nppes_file(db, None, write_file(tmp_path / "bad.csv", [row(3, **{FIRST: "=1+2"}),
                                                                         row(4, **{FIRST: "@SUM(A1)"})]))
    text = "".join(error_report_lines(db, run.id))
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == ["run_id", "row", "line", "npi", "severity", "field", "reason", "value"]
    values = [line[7] for line in lines[1:]]
    assert values == ["'=1+2", "'@SUM(A1)"]
    assert all(not cell.startswith(("=", "+", "-", "@")) for line in lines for cell in line)


def test_header_only_file_completes_with_no_rows(db, tmp_path):
    run = import_nppes_file(db, None, write_file(tmp_path / "empty.csv", []))
    assert (run.status, run.row_offset, run.created) == ("completed", 0, 0)


def test_refused_files_leave_no_run(db, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    with pytest.raises(FileRefused, match="empty"):
        import_nppes_file(db, None, empty)
    utf16 = tmp_path / "utf16.csv"
    utf16.write_bytes(SAMPLE.read_text(encoding="utf-8").encode("utf-16"))
    with pytest.raises(FileRefused, match="UTF-16"):
        import_nppes_file(db, None, utf16)
    assert count(db, ImportRun) == 0


def test_deactivated_npi_makes_the_existing_record_inactive(db, tmp_path):
    import_nppes_file(db, None, write_file(tmp_path / "a.csv", [row(0), row(6)]))
    gone = []
    for n in (0, 6, 13):
        r = [""] * len(row(0))
        r[0], r[39] = make_npi(n), "05/01/2024"  # NPI, NPI Deactivation Date
        gone.append(r)
    run = import_nppes_file(db, None, write_file(tmp_path / "b.csv", gone))
    assert (run.updated, run.rejected) == (2, 1)
    assert hcp_by_npi(db, make_npi(0)).status == "inactive"
    assert db.scalar(select(HCO).where(HCO.npi == make_npi(6))).status == "inactive"
    assert "not in the CRM" in errors_of(db, run)[0].reason


def test_a_deactivation_date_on_a_full_row_imports_an_inactive_hcp(db, tmp_path):
    import_nppes_file(db, None, write_file(tmp_path / "a.csv", [row(0, **{"NPI Deactivation Date": "05/01/2024"})]))
    assert hcp_by_npi(db, make_npi(0)).status == "inactive"


def test_licence_already_held_by_another_hcp_is_flagged_not_attached(db, tmp_path, factory):
    other = factory.hcp()
    db.add(HCPIdentifier(hcp_id=other.id, kind="licence:MA", value="L00000000"))
    db.flush()
    run = import_nppes_file(db, None, write_file(tmp_path / "a.csv", [row(0)]))
    assert (run.created, run.flagged) == (1, 1)
    assert "already belongs to HCP" in errors_of(db, run)[0].reason
    assert {i.kind for i in hcp_by_npi(db, make_npi(0)).identifiers} == {"npi"}


def test_existing_hcp_with_the_npi_is_updated_not_duplicated(db, tmp_path, factory):
    existing = factory.hcp(first_name="AISHA", last_name="JOHNSON", email="aisha@clinic.example")
    db.add(HCPIdentifier(hcp_id=existing.id, kind="npi", value=make_npi(0)))
    db.flush()
    run = import_nppes_file(db, None, write_file(tmp_path / "a.csv", [row(0)]))
    assert (run.created, run.updated) == (0, 1)
    db.expire_all()
    hcp = db.get(HCP, existing.id)
    assert hcp.email == "aisha@clinic.example"  # fields the file does not carry are kept
    assert hcp.city == "BOSTON" and ("licence:MA", "L00000000") in {(i.kind, i.value) for i in hcp.identifiers}


def test_upsert_falls_back_to_national_id_then_email(db, tmp_path, factory, monkeypatch):
    by_national = factory.hcp(first_name="AISHA", last_name="JOHNSON")
    db.add(HCPIdentifier(hcp_id=by_national.id, kind="national_id", value="NAT-1"))
    by_email = factory.hcp(first_name="JAMES", last_name="JOHNSON", email="james@clinic.example")
    db.flush()
    extra = {make_npi(0): ("NAT-1", None), make_npi(1): (None, "James@Clinic.example "), make_npi(2): (None, None)}
    validate = RowValidator.validate

    def with_keys(self, fields):  # a source that carries national ids and emails, unlike NPPES
        record, problems = validate(self, fields)
        if record is not None:
            record.national_id, record.email = extra[record.npi]
        return record, problems

    monkeypatch.setattr(RowValidator, "validate", with_keys)
    run = import_nppes_file(db, None, write_file(tmp_path / "a.csv", [row(0), row(1), row(2)]))
    assert (run.created, run.updated) == (1, 2)
    assert hcp_by_npi(db, make_npi(0)).id == by_national.id
    assert hcp_by_npi(db, make_npi(1)).id == by_email.id
    assert count(db, HCP) == 3


def test_national_id_of_an_hcp_with_another_npi_is_refused(db, tmp_path, factory, monkeypatch):
    other = factory.hcp()
    db.add_all([HCPIdentifier(hcp_id=other.id, kind="national_id", value="NAT-9"),
                HCPIdentifier(hcp_id=other.id, kind="npi", value=make_npi(50))])
    db.flush()
    validate = RowValidator.validate

    def with_keys(self, fields):
        record, problems = validate(self, fields)
        record.national_id = "NAT-9"
        return record, problems

    monkeypatch.setattr(RowValidator, "validate", with_keys)
    run = import_nppes_file(db, None, write_file(tmp_path / "a.csv", [row(0)]))
    assert run.rejected == 1 and "whose NPI is" in errors_of(db, run)[0].reason


def test_erased_hcp_is_not_brought_back(db, tmp_path):
    from crm.hcps.erasure import erase_hcp

    import_nppes_file(db, None, write_file(tmp_path / "a.csv", [row(0)]))
    erase_hcp(db, None, hcp_by_npi(db, make_npi(0)), "GDPR request")
    unchanged = import_nppes_file(db, None, write_file(tmp_path / "a.csv", [row(0)]))
    assert (unchanged.created, unchanged.unchanged) == (0, 1)
    changed = import_nppes_file(db, None, write_file(tmp_path / "b.csv", [row(0, **{CITY: "SALEM"})]))
    assert (changed.created, changed.rejected) == (0, 1)
    assert "not created again" in errors_of(db, changed)[0].reason
    assert count(db, HCP) == 1


def test_an_organisation_npi_cannot_become_an_individual(db, tmp_path):
    import_nppes_file(db, None, write_file(tmp_path / "a.csv", [row(6)]))
    as_person = row(6, **{"Entity Type Code": "1", LAST: "SMITH", FIRST: "JO"})
    run = import_nppes_file(db, None, write_file(tmp_path / "b.csv", [as_person]))
    assert run.rejected == 1 and any("organisation" in e.reason for e in errors_of(db, run))


def test_only_admins_import(db, tmp_path, factory):
    for role in ("field_rep", "marketer", "call_centre", "medical", "compliance"):
        with pytest.raises(Forbidden):
            import_nppes_file(db, factory.user(role), write_file(tmp_path / "a.csv", [row(0)]))
    run = import_nppes_file(db, factory.user("admin"), write_file(tmp_path / "a.csv", [row(0)]))
    assert run.created == 1 and run.actor_label.endswith("<admin>")


def test_creates_are_audited_per_batch(db, tmp_path):
    run = import_nppes_file(db, None, write_file(tmp_path / "a.csv", [row(n) for n in range(5)]), batch_size=3)
    recs = list(db.scalars(select(AuditRecord).where(AuditRecord.action == "masterdata.import")
                           .order_by(AuditRecord.id)))
    assert [r.changes["rows"] for r in recs] == [[1, 3], [4, 5]]
    assert sum(len(r.changes["created_hcp_ids"]) for r in recs) == 5
    assert all(r.entity_id == str(run.id) for r in recs)


def test_a_failed_run_resumes_from_its_checkpoint(db, tmp_path, monkeypatch):
    path = write_file(tmp_path / "a.csv", [row(n) for n in range(10)])
    real = importer._apply_batch
    calls = {"n": 0}

    def failing(session, ctx, rows, counts):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(session, ctx, rows, counts)

    monkeypatch.setattr(importer, "_apply_batch", failing)
    with pytest.raises(RuntimeError):
        import_nppes_file(db, None, path, batch_size=3)
    failed = db.scalar(select(ImportRun))
    assert (failed.status, failed.row_offset, failed.created) == ("failed", 6, 6)
    assert "disk full" in failed.error
    assert count(db, HCP) == 6
    resumed = import_nppes_file(db, None, path, batch_size=3)
    assert resumed.id == failed.id and resumed.resumed == 1
    assert (resumed.status, resumed.created, resumed.row_offset) == ("completed", 10, 10)
    assert count(db, HCP) + count(db, HCO) == 10 and count(db, ImportFingerprint) == 10


def test_a_run_left_running_by_a_dead_process_is_resumed(db, tmp_path):
    path = write_file(tmp_path / "a.csv", [row(n) for n in range(4)])
    run = import_nppes_file(db, None, path)
    run.status = "running"  # as a killed process leaves it (its lock died with it)
    db.commit()
    again = import_nppes_file(db, None, path)
    assert again.id == run.id and again.status == "completed" and again.resumed == 1


def test_cli_imports_and_prints_counts(runner, db, tmp_path):
    path = write_file(tmp_path / "a.csv", [row(0), row(1, NPI="123"), row(6)])
    result = runner.invoke(args=["crm", "import", "hcps", str(path)])
    assert result.exit_code == 0, result.output
    assert "created 2, updated 0, unchanged 0, rejected 1" in result.output
    assert "crm import errors" in result.output
    run_id = db.scalar(select(ImportRun.id))
    report = runner.invoke(args=["crm", "import", "errors", str(run_id)])
    assert report.exit_code == 0 and "has 3 digits" in report.output
    out = tmp_path / "errors.csv"
    assert runner.invoke(args=["crm", "import", "errors", str(run_id), "--output", str(out)]).exit_code == 0
    assert "has 3 digits" in out.read_text()
    again = runner.invoke(args=["crm", "import", "hcps", str(path)])
    assert "created 0, updated 0, unchanged 2, rejected 1" in again.output


def test_cli_refuses_a_utf16_file_with_a_clear_message(runner, db, tmp_path):
    path = tmp_path / "u16.csv"
    path.write_bytes(SAMPLE.read_text(encoding="utf-8").encode("utf-16"))
    result = runner.invoke(args=["crm", "import", "hcps", str(path)])
    assert result.exit_code == 1 and "UTF-16" in result.output
    assert runner.invoke(args=["crm", "import", "errors", "999"]).exit_code == 1


def test_cli_header_only_file(runner, db, tmp_path):
    result = runner.invoke(args=["crm", "import", "hcps", str(write_file(tmp_path / "h.csv", []))])
    assert result.exit_code == 0 and "no data rows" in result.output


def test_progress_is_reported_after_each_committed_batch(db, tmp_path):
    path = write_file(tmp_path / "a.csv", [row(n) for n in range(5)])
    seen: list[tuple[int, int]] = []
    import_nppes_file(db, None, path, batch_size=2, progress=lambda rows, offset: seen.append((rows, offset)))
    assert [rows for rows, _ in seen] == [2, 4, 5]
    assert seen[-1][1] == path.stat().st_size and seen[0][1] < seen[1][1] < seen[2][1]
