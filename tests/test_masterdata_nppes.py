"""Reading and validating the NPPES layout, without a database: encodings, quoting, every bad value."""

from __future__ import annotations

import io

import pytest

from crm.hcps.identifiers import make_npi
from crm.integrations.masterdata.nppes import FileRefused, NppesReader, RowValidator, npi_problem
from crm.integrations.masterdata.records import Deactivation, HcoRecord, HcpRecord
from crm.integrations.masterdata.synthetic import HEADER, INDEX, nppes_row, write_nppes
from crm.integrations.masterdata.taxonomy import load_table, parse_table
from tests.masterdata_helpers import SAMPLE, csv_bytes


def reader_for(data: bytes) -> NppesReader:
    return NppesReader(io.BytesIO(data))


def validate(row: list[str]):
    reader = reader_for(csv_bytes([]))
    return RowValidator(reader.header, load_table()).validate(row)


def rejected(row: list[str]) -> dict[str, str]:
    record, problems = validate(row)
    assert record is None
    return {p.field: p.reason for p in problems if p.severity == "rejected"}


def with_values(n: int = 0, **values: str) -> list[str]:
    row = nppes_row(n)
    for column, value in values.items():
        row[INDEX[column]] = value
    return row


# -- files -----------------------------------------------------------------------------------------

def test_sample_file_reads_300_rows_with_offsets_that_resume():
    data = SAMPLE.read_bytes()
    reader = reader_for(data)
    assert len(reader.header.columns) == 330 and reader.header.columns == HEADER
    rows = list(reader.rows())
    assert len(rows) == 300 and all(r.error is None for r in rows)
    assert rows[-1].end_offset == len(data)
    # starting again from the checkpoint after row 120 gives exactly the rows after it
    again = list(reader.rows(rows[119].end_offset, 120, rows[119].line_number))
    assert [r.key for r in again] == [r.key for r in rows[120:]]
    assert again[0].row_number == 121 and again[0].line_number == rows[120].line_number


def test_utf8_with_and_without_bom_read_the_same():
    plain = csv_bytes([nppes_row(1)])
    with_bom = b"\xef\xbb\xbf" + plain
    a, b = list(reader_for(plain).rows()), list(reader_for(with_bom).rows())
    assert [r.fields for r in a] == [r.fields for r in b]
    assert reader_for(with_bom).header.columns[0] == "NPI"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-16-be"])
def test_utf16_file_is_refused_clearly(encoding):
    text = csv_bytes([nppes_row(1)]).decode("utf-8")
    with pytest.raises(FileRefused, match="UTF-16"):
        reader_for(text.encode(encoding))


def test_latin1_file_is_refused_clearly():
    row = with_values(7, **{"Provider Last Name (Legal Name)": "MÜLLER"})
    data = csv_bytes([row]).decode("utf-8").encode("latin-1")
    with pytest.raises(FileRefused, match="not UTF-8"):
        reader_for(data)


def test_undecodable_line_after_the_first_64kb_is_a_row_error():
    rows = [nppes_row(n) for n in range(80)]
    data = csv_bytes(rows)
    bad = nppes_row(80)
    bad[INDEX["Provider Last Name (Legal Name)"]] = "MÜLLER"
    tail = csv_bytes([bad], header=False).replace("Ü".encode(), "Ü".encode("latin-1"))
    assert len(data) > 65536
    parsed = list(reader_for(data + tail + csv_bytes([nppes_row(81)], header=False)).rows())
    assert len(parsed) == 82
    assert parsed[80].error is not None and "UTF-8" in parsed[80].error.reason
    assert parsed[81].error is None


def test_empty_file_is_refused():
    with pytest.raises(FileRefused, match="empty"):
        reader_for(b"")
    with pytest.raises(FileRefused, match="empty"):
        reader_for(b"\xef\xbb\xbf")


def test_header_only_file_has_no_rows():
    assert list(reader_for(csv_bytes([])).rows()) == []


def test_a_file_that_is_not_nppes_is_refused():
    with pytest.raises(FileRefused, match="not the NPPES"):
        reader_for(b"name,email\r\nAda,ada@example.org\r\n")
    data = csv_bytes([nppes_row(1)])
    headerless = data[data.index(b"\r\n") + 2:]
    with pytest.raises(FileRefused, match="header"):
        reader_for(headerless)


def test_crlf_inside_quoted_fields_keeps_rows_whole():
    first = nppes_row(1)
    first[INDEX["Provider Other Organization Name"]] = "Formerly\r\nSt. Elsewhere"
    rows = list(reader_for(csv_bytes([first, nppes_row(2)])).rows())
    assert len(rows) == 2
    assert rows[0].fields[INDEX["Provider Other Organization Name"]] == "Formerly\r\nSt. Elsewhere"
    assert rows[1].line_number == rows[0].line_number + 2
    record, problems = validate(rows[0].fields)
    assert isinstance(record, HcpRecord) and problems == []


def test_row_with_fewer_columns_is_a_row_error_and_reading_goes_on():
    short = nppes_row(1)[:200]
    rows = list(reader_for(csv_bytes([short, nppes_row(2)])).rows())
    assert rows[0].error is not None and "200 columns" in rows[0].error.reason
    assert rows[1].error is None


def test_broken_quoting_is_a_row_error():
    data = csv_bytes([nppes_row(1)]) + b'"1000000012","1","x"oops",\r\n' + csv_bytes([nppes_row(2)], header=False)
    rows = list(reader_for(data).rows())
    assert any(r.error is not None and "CSV" in r.error.reason for r in rows)
    assert rows[-1].key == make_npi(2)


def test_blank_lines_are_not_rows():
    data = csv_bytes([nppes_row(1)]) + b"\r\n\r\n"
    assert len(list(reader_for(data).rows())) == 1


# -- values ----------------------------------------------------------------------------------------

def test_a_valid_individual_maps_to_an_hcp_with_licences():
    record, problems = validate(nppes_row(0))
    assert problems == [] and isinstance(record, HcpRecord)
    assert record.values["profession"] == "gp" and record.values["specialty"] == "Family Medicine"
    assert record.values["status"] == "active" and record.values["country"] == "US"
    assert record.licences == (("MA", "L00000000"),)


def test_a_valid_organisation_maps_to_an_hco():
    record, problems = validate(nppes_row(6))
    assert problems == [] and isinstance(record, HcoRecord)
    assert record.values["kind"] == "hospital" and record.values["name"].endswith("GENERAL HOSPITAL 6")


@pytest.mark.parametrize("npi, why", [
    ("123456789", "has 9 digits"),
    ("1234567890", "wrong check digit"),
    ("1.23457E+09", "spreadsheet"),
    ("1234567893.0", "spreadsheet"),
    ("", "is missing"),
    ("12345678ab", "10 digits"),
])
def test_bad_npis_are_rejected_with_the_reason(npi, why):
    assert why in npi_problem(npi)
    assert why in rejected(with_values(NPI=npi))["NPI"]


def test_a_valid_npi_passes():
    assert npi_problem("1234567893") is None


@pytest.mark.parametrize("value, why", [
    ("=HYPERLINK(\"http://evil.example\",\"click\")", "formula"),
    ("+SUM(A1:A9)", "formula"),
    ("-1+1", "formula"),
    ("@SUM(A1)", "formula"),
    ("#REF!", "error value"),
    ("#N/A", "error value"),
    ("\tSMITH", "tab"),
    ("'SMITH", "apostrophe"),
])
def test_spreadsheet_artefacts_in_names_are_rejected(value, why):
    reasons = rejected(with_values(**{"Provider First Name": value}))
    assert why in reasons["Provider First Name"]


def test_spreadsheet_artefact_in_an_organisation_name_is_rejected():
    reasons = rejected(with_values(6, **{"Provider Organization Name (Legal Business Name)": "=cmd|' /C calc'!A0"}))
    assert "formula" in reasons["Provider Organization Name (Legal Business Name)"]


def test_apostrophes_inside_names_are_fine():
    record, problems = validate(with_values(**{"Provider Last Name (Legal Name)": "O'BRIEN-D'ARCY"}))
    assert problems == [] and record.values["last_name"] == "O'BRIEN-D'ARCY"


@pytest.mark.parametrize("value, why", [
    ("02/30/2011", "not a calendar date"),
    ("13/01/2011", "not a calendar date"),
    ("2011-02-03", "MM/DD/YYYY"),
    ("2/3/2011", "MM/DD/YYYY"),
])
def test_impossible_or_loose_dates_are_rejected(value, why):
    assert why in rejected(with_values(**{"Provider Enumeration Date": value}))["Provider Enumeration Date"]


def test_long_names_are_kept_whole():
    long_first = "MARIA-GUADALUPE ALEXANDRA VON HOHENZOLLERN-SIGMARINGEN"
    record, problems = validate(with_values(**{"Provider First Name": long_first}))
    assert problems == [] and record.values["first_name"] == long_first


def test_names_longer_than_the_crm_keeps_are_rejected_not_cut():
    assert "not cut" in rejected(with_values(**{"Provider First Name": "A" * 201}))["Provider First Name"]


def test_zip_code_that_lost_its_leading_zero_is_rejected():
    reasons = rejected(with_values(**{"Provider Business Practice Location Address Postal Code": "2115"}))
    assert "leading zero" in reasons["Provider Business Practice Location Address Postal Code"]


def test_address_and_phone_values_are_not_repeated_in_problems():
    _record, problems = validate(with_values(**{
        "Provider First Line Business Practice Location Address": "=EVIL()",
        "Provider Business Practice Location Address Telephone Number": "CALL ME"}))
    assert {p.field for p in problems} == {"Provider First Line Business Practice Location Address",
                                            "Provider Business Practice Location Address Telephone Number"}
    assert all(p.value is None for p in problems)


def test_line_break_in_an_imported_field_is_rejected():
    reasons = rejected(with_values(**{"Provider First Line Business Practice Location Address": "1 Main St\r\nFl 2"}))
    assert "line break" in reasons["Provider First Line Business Practice Location Address"]


def test_entity_type_must_be_known():
    assert "must be 1" in rejected(with_values(**{"Entity Type Code": "3"}))["Entity Type Code"]


def test_deactivated_npi_makes_the_record_inactive_and_reactivation_active_again():
    record, _ = validate(with_values(**{"NPI Deactivation Date": "05/01/2020"}))
    assert record.values["status"] == "inactive"
    record, _ = validate(with_values(**{"NPI Deactivation Date": "05/01/2020", "NPI Reactivation Date": "06/01/2021"}))
    assert record.values["status"] == "active"


def test_deactivation_only_row_and_empty_entity_type():
    row = [""] * len(HEADER)
    row[INDEX["NPI"]] = make_npi(5)
    row[INDEX["NPI Deactivation Date"]] = "05/01/2020"
    record, problems = validate(row)
    assert isinstance(record, Deactivation) and problems == []
    row[INDEX["NPI Deactivation Date"]] = ""
    assert "not deactivated" in rejected(row)["Entity Type Code"]


def test_unknown_taxonomy_code_is_flagged_not_rejected():
    record, problems = validate(with_values(**{"Healthcare Provider Taxonomy Code_1": "999Z99999X"}))
    assert record.values["profession"] == "other"
    assert [p.severity for p in problems] == ["flagged"] and "not in the taxonomy" in problems[0].reason


def test_malformed_taxonomy_code_is_rejected():
    reasons = rejected(with_values(**{"Healthcare Provider Taxonomy Code_1": "#N/A"}))
    assert "NUCC" in reasons["Healthcare Provider Taxonomy Code_1"]


def test_primary_taxonomy_follows_the_switch():
    row = with_values(**{"Healthcare Provider Primary Taxonomy Switch_1": "N",
                         "Healthcare Provider Taxonomy Code_2": "183500000X",
                         "Healthcare Provider Primary Taxonomy Switch_2": "Y"})
    record, _ = validate(row)
    assert record.values["profession"] == "pharmacist"


def test_licence_without_a_state_is_flagged_and_not_kept():
    record, problems = validate(with_values(**{"Provider License Number State Code_1": ""}))
    assert record.licences == () and problems[0].severity == "flagged"


def test_taxonomy_table_covers_the_sample_and_the_common_professions():
    import csv

    table = load_table()
    with SAMPLE.open(encoding="utf-8-sig", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    codes = {r[INDEX[f"Healthcare Provider Taxonomy Code_{k}"]] for r in rows for k in range(1, 16)} - {""}
    assert codes and all(table.get(c) is not None for c in codes)
    expected = {"207Q00000X": "gp", "208D00000X": "gp", "207R00000X": "specialist", "207RC0000X": "specialist",
                "207RX0202X": "specialist", "2084P0800X": "specialist", "183500000X": "pharmacist",
                "163W00000X": "nurse", "363L00000X": "nurse"}
    assert {c: table.get(c).profession for c in expected} == expected


def test_taxonomy_table_refuses_a_bad_line():
    with pytest.raises(ValueError, match="line 2"):
        parse_table(b"code,profession,specialty,hco_kind,nucc_name\nnot-a-code,gp,GP,,x\n")
    with pytest.raises(ValueError, match="unknown profession"):
        parse_table(b"code,profession,specialty,hco_kind,nucc_name\n207Q00000X,doctor,GP,,x\n")


def test_synthetic_writer_round_trips():
    buf = io.StringIO()
    write_nppes(buf, [nppes_row(3)])
    rows = list(reader_for(buf.getvalue().encode()).rows())
    assert rows[0].fields == nppes_row(3)
