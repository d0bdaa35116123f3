"""The NPPES NPI registry CSV: a streaming reader that knows where it is, and a strict row validator.

Reading: the csv module over a stream of decoded lines, so quoted fields may hold CRLF; every row
knows the byte just after it, which is the checkpoint a resumed import seeks to. UTF-8 with or
without a BOM is read; UTF-16 (with or without a BOM) and files that do not decode as UTF-8 are
refused as a whole with a message that says what to do. A later line that does not decode is a
row error, the rest of the file is still read.

Validation never repairs a value: an NPI that fails the check digit, a date that is not a calendar
date, a name that a spreadsheet would run as a formula or that is a spreadsheet error value, a
value that starts with a stray tab or apostrophe, a ZIP code that lost its leading zero: the row
is rejected, with the field and the reason, and the import goes on.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from itertools import chain
from typing import BinaryIO

from crm.errors import DomainError
from crm.hcps.identifiers import npi_check_digit
from crm.integrations.masterdata.records import (
    Deactivation,
    HcoRecord,
    HcpRecord,
    Problem,
    SourceRow,
)
from crm.integrations.masterdata.taxonomy import CODE_PATTERN, TaxonomyTable

# The years a date may have, as everywhere in the CRM (crm.schemas); kept here as literals because the
# reader process imports this module without the web stack.
MIN_YEAR, MAX_YEAR = 1900, 2200

UTF8_BOM = b"\xef\xbb\xbf"
_SNIFF_BYTES = 65536
TAXONOMY_SLOTS = 15

C_NPI = "NPI"
C_ENTITY = "Entity Type Code"
C_ORG = "Provider Organization Name (Legal Business Name)"
C_LAST = "Provider Last Name (Legal Name)"
C_FIRST = "Provider First Name"
C_ADDR1 = "Provider First Line Business Practice Location Address"
C_ADDR2 = "Provider Second Line Business Practice Location Address"
C_CITY = "Provider Business Practice Location Address City Name"
C_STATE = "Provider Business Practice Location Address State Name"
C_POSTAL = "Provider Business Practice Location Address Postal Code"
C_COUNTRY = "Provider Business Practice Location Address Country Code (If outside U.S.)"
C_PHONE = "Provider Business Practice Location Address Telephone Number"
C_DEACTIVATED = "NPI Deactivation Date"
C_REACTIVATED = "NPI Reactivation Date"
DATE_COLUMNS = ("Provider Enumeration Date", "Last Update Date", C_DEACTIVATED, C_REACTIVATED,
                "Certification Date")


def _slot_columns(k: int) -> tuple[str, str, str, str]:
    return (f"Healthcare Provider Taxonomy Code_{k}", f"Provider License Number_{k}",
            f"Provider License Number State Code_{k}", f"Healthcare Provider Primary Taxonomy Switch_{k}")


REQUIRED_COLUMNS = (
    C_NPI, C_ENTITY, C_ORG, C_LAST, C_FIRST, C_ADDR1, C_ADDR2, C_CITY, C_STATE, C_POSTAL, C_COUNTRY,
    C_PHONE, *DATE_COLUMNS[:4],
    *[c for k in range(1, TAXONOMY_SLOTS + 1) for c in _slot_columns(k)],
)

# The longest value the CRM keeps per field; longer values are rejected, never cut.
MAX_LENGTH = {C_FIRST: 200, C_LAST: 200, C_ORG: 300, C_ADDR1: 250, C_ADDR2: 250, C_CITY: 120,
              C_STATE: 40, C_POSTAL: 20, C_PHONE: 40}
# Fields whose values are contact data: the error report never repeats them.
CONTACT_FIELDS = frozenset({C_ADDR1, C_ADDR2, C_PHONE})

ERROR_VALUES = ("#REF!", "#N/A", "#NAME?", "#VALUE!", "#DIV/0!", "#NUM!", "#NULL!", "#SPILL!", "#CALC!",
                "#GETTING_DATA", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!")
_SPREADSHEET_NUMBER = re.compile(r"^\d(\.\d+)?[eE][+-]?\d+$|^\d+\.\d*$")
_DATE = re.compile(r"^(\d{2})/(\d{2})/(\d{4})$")
_STATE = re.compile(r"^[A-Z]{2}$")
_PHONE = re.compile(r"^[0-9 ()./-]*$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# A row needs a closer look only when a checked value holds a control character or a "#", or
# starts with one of these (the fields are joined with \x1f, itself a control character, so the
# join is searched for "#" and the other controls only; _SUSPECT_START finds the rows where a value
# may start with one of these, which are then checked value by value).
_SUSPECT = re.compile(r"[\x00-\x1e\x7f#]")
_SUSPECT_FIRST = frozenset("=+-@\t'")
_SUSPECT_START = re.compile(r"(?:^|\x1f)[=+\-@\t']")


Reject = Callable[[str, str, "str | None"], None]  # (column, reason, offending value)


class FileRefused(DomainError):
    """The file as a whole cannot be read as an NPPES CSV (encoding, empty, not the NPPES layout)."""

    status = 422
    title = "File refused"


# -- reading --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Header:
    columns: list[str]
    index: dict[str, int]
    end_offset: int  # the byte just after the header row
    end_line: int  # the physical line the header ends on


def sniff_encoding(head: bytes) -> None:
    """Refuse what is not UTF-8: UTF-16/32 (BOM or NUL bytes) and bytes that do not decode."""
    if not head or head == UTF8_BOM:
        raise FileRefused("The file is empty: an NPPES file starts with its header row.")
    if head.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise FileRefused("The file is UTF-32; save it as UTF-8 (\"CSV UTF-8\") and import it again.")
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or b"\x00" in head[:4096]:
        raise FileRefused("The file is UTF-16 (as Excel's \"Unicode text\" saves it); save it as UTF-8 "
                          "(\"CSV UTF-8\") and import it again.")
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head.removeprefix(UTF8_BOM), final=False)
    except UnicodeDecodeError as exc:
        offset = exc.start + (len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0)
        raise FileRefused(
            f"The file is not UTF-8 (byte 0x{head[offset]:02x} at offset {offset} does not decode; it may be "
            "Latin-1 or Windows-1252). Save it as UTF-8 (\"CSV UTF-8\") and import it again."
        ) from exc


class NppesReader:
    """Reads one NPPES file from a binary stream; ``rows()`` can start again from any checkpoint."""

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        head = fh.read(_SNIFF_BYTES)
        sniff_encoding(head)
        self._start = len(UTF8_BOM) if head.startswith(UTF8_BOM) else 0
        self.header = self._read_header()
        # While True, rows that take the quoted fast path come with their key only (``complete=False``:
        # split them with ``fields_of_raw_row`` if they are needed); may be switched between rows.
        self.key_only = False

    def _read_header(self) -> Header:
        stream = _LineStream(self.fh, self._start, 0)
        try:
            columns = next(csv.reader(stream.lines(), strict=True))
        except StopIteration as exc:
            raise FileRefused("The file is empty: an NPPES file starts with its header row.") from exc
        except csv.Error as exc:
            raise FileRefused(f"The header row is not valid CSV ({exc}).") from exc
        if stream.bad_encoding:
            raise FileRefused("The header row is not UTF-8; save the file as UTF-8 (\"CSV UTF-8\").")
        columns = [c.strip() for c in columns]
        index = {name: i for i, name in enumerate(columns)}
        missing = [c for c in REQUIRED_COLUMNS if c not in index]
        if missing:
            if columns and columns[0].isdigit():
                raise FileRefused("The first row holds data, not the NPPES header row; keep the header.")
            shown = ", ".join(repr(c) for c in missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4
                                                                 else "")
            raise FileRefused(f"This is not the NPPES NPI file layout: the header lacks {shown}.")
        return Header(columns, index, stream.offset, stream.line)

    def rows(self, start_offset: int = 0, start_row: int = 0, start_line: int = 0) -> Iterator[SourceRow]:
        """Data rows from ``start_offset`` (a checkpoint; 0 = just after the header)."""
        if start_offset <= self.header.end_offset:
            start_offset, start_row, start_line = self.header.end_offset, 0, self.header.end_line
        stream = _LineStream(self.fh, start_offset, start_line)
        lines = stream.lines()
        width = len(self.header.columns)
        row_number = start_row
        for line in lines:
            first_line = stream.line
            if self.key_only and (shape := quoted_line_shape(line)) is not None:
                raw = stream.take()
                bad_encoding, stream.bad_encoding = stream.bad_encoding, False
                row_number += 1
                key, count = shape
                nul = b"\x00" in raw
                yield SourceRow(row_number, first_line, stream.offset, raw, [key.replace("\x00", "")],
                                _read_error(bad_encoding, count, width, nul), end_line=stream.line, complete=False)
                continue
            fields = quoted_line_fields(line)
            if fields is None:  # anything else is read by the csv module, from this line to the row's end
                try:
                    fields = next(csv.reader(chain((line,), lines), strict=True))
                except csv.Error as exc:
                    row_number += 1
                    raw = stream.take()
                    yield SourceRow(row_number, first_line, stream.offset, raw,
                                    error=Problem("_row", f"not valid CSV: {exc}"), end_line=stream.line)
                    continue
            raw = stream.take()
            bad_encoding = stream.bad_encoding
            stream.bad_encoding = False
            if not fields:  # a blank line (often the last one) is not a row
                continue
            row_number += 1
            nul = b"\x00" in raw
            if nul:  # the row is refused; its key and values go to lookups and the report without the NUL
                fields = [f.replace("\x00", "") for f in fields]
            yield SourceRow(row_number, first_line, stream.offset, raw, fields,
                            _read_error(bad_encoding, len(fields), width, nul), end_line=stream.line)


def _read_error(bad_encoding: bool, columns: int, width: int, nul: bool = False) -> Problem | None:
    """Why a row that was read is unusable as a whole, or None."""
    if bad_encoding:
        return Problem("_row", "is not valid UTF-8")
    if nul:  # PostgreSQL stores no NUL character, and no NPPES value holds one
        return Problem("_row", "contains a NUL character")
    if columns != width:
        return Problem("_row", f"has {columns} columns; the header has {width}")
    return None


def fields_of_raw_row(raw: bytes) -> list[str]:
    """The fields of one row from its raw bytes, split exactly as ``NppesReader.rows`` split them
    (the same lines, the same fast path, the same csv module settings). For rows that were read
    without error: a row with an error has no fields to give."""
    lines = (line.decode("utf-8") for line in io.BytesIO(raw))
    first = next(lines)
    fields = quoted_line_fields(first)
    if fields is None:
        fields = next(csv.reader(chain((first,), lines), strict=True))
    return fields


def quoted_line_shape(line: str) -> tuple[str, int] | None:
    """The first field and the number of fields of a line that ``quoted_line_fields`` would split
    (None for any other line), without splitting it: all a row needs when its bytes turn out to
    be unchanged since the last import."""
    text = line[:-1] if line.endswith("\n") else line
    if text.endswith("\r"):
        text = text[:-1]
    if len(text) < 2 or text[0] != '"' or text[-1] != '"' or len(text) > csv.field_size_limit():
        return None
    separators = text.count('","', 1, len(text) - 1)
    if text.count('"') != 2 * separators + 2:
        return None
    end = text.find('","', 1, len(text) - 1)
    return (text[1:-1] if end < 0 else text[1:end]), separators + 1


def quoted_line_fields(line: str) -> list[str] | None:
    """The fields of a line as NPPES writes it (every field quoted, none holding a quote or a line
    break), split without the csv module; None for any other line.

    Exact: when the line's only quotes are its first and last and those of the ``","`` separators,
    no field holds a quote, so the separators are exactly where the csv module would split (a line
    longer than the csv module's field size limit is left to it, to refuse the same way).
    """
    text = line[:-1] if line.endswith("\n") else line
    if text.endswith("\r"):
        text = text[:-1]
    if len(text) < 2 or text[0] != '"' or text[-1] != '"' or len(text) > csv.field_size_limit():
        return None
    inner = text[1:-1]
    separators = inner.count('","')
    if text.count('"') != 2 * separators + 2:
        return None
    return inner.split('","')


class _LineStream:
    """Binary lines decoded one by one, counting bytes and lines, keeping the raw bytes of the current row."""

    def __init__(self, fh: BinaryIO, offset: int, line: int) -> None:
        fh.seek(offset)
        self.fh = fh
        self.offset = offset
        self.line = line
        self.bad_encoding = False
        self._raw: list[bytes] = []

    def lines(self) -> Iterator[str]:
        for raw in self.fh:
            self._raw.append(raw)
            self.offset += len(raw)
            self.line += 1
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError:
                self.bad_encoding = True
                yield raw.decode("utf-8", "replace")

    def take(self) -> bytes:
        raw = b"".join(self._raw)
        self._raw.clear()
        return raw


# -- validation -----------------------------------------------------------------------------------

def npi_problem(value: str) -> str | None:
    """Why ``value`` is not an NPI (10 digits, Luhn check digit over the prefix 80840), or None."""
    if value == "":
        return "is missing"
    if _SPREADSHEET_NUMBER.match(value):
        return ("looks like a number reformatted by a spreadsheet (digits lost); export the NPI column as "
                "text")
    if not (value.isascii() and value.isdigit()):
        return "must be 10 digits"
    if len(value) != 10:
        return f"has {len(value)} digits; an NPI has 10"
    if npi_check_digit(value[:9]) != value[9]:
        return "has a wrong check digit"
    return None


def text_problem(value: str) -> str | None:
    """Why a text value cannot be imported as it stands (spreadsheet artefacts), or None."""
    if not value:
        return None
    first = value[0]
    if first in "=+-@":
        return f"starts with {first!r}: a spreadsheet would run it as a formula"
    if first == "\t":
        return "starts with a tab (a spreadsheet formula escape)"
    if first == "'":
        return "starts with an apostrophe (a spreadsheet text marker)"
    upper = value.strip().upper()
    if upper.startswith("#") and upper.startswith(ERROR_VALUES):
        return f"is a spreadsheet error value ({value.strip()[:20]})"
    if _CONTROL.search(value):
        return "contains a line break or another control character"
    return None


@lru_cache(maxsize=8192)
def date_problem(value: str) -> str | None:
    """Why ``value`` is not a strict MM/DD/YYYY calendar date, or None (empty is allowed)."""
    if value == "":
        return None
    match = _DATE.match(value)
    if not match:
        return "is not a date in the form MM/DD/YYYY"
    month, day, year = (int(g) for g in match.groups())
    try:
        date(year, month, day)
    except ValueError:
        return "is not a calendar date"
    if not MIN_YEAR <= year <= MAX_YEAR:
        return f"is outside the years {MIN_YEAR} to {MAX_YEAR}"
    return None


def _parse_date(value: str) -> date | None:
    if not value:
        return None
    month, day, year = value.split("/")
    return date(int(year), int(month), int(day))


class RowValidator:
    """Turns the fields of one row into an HcpRecord, HcoRecord or Deactivation, and its problems.

    Written for speed (it runs once per row of files with millions of rows): column positions are
    looked up once, and the common case (nothing suspicious in the row) takes a single regex scan.
    """

    def __init__(self, header: Header, taxonomy: TaxonomyTable) -> None:
        ix = header.index
        self.taxonomy = taxonomy
        self.dates = [(c, ix[c]) for c in DATE_COLUMNS if c in ix]
        self.slots = [tuple(ix[c] for c in _slot_columns(k)) for k in range(1, TAXONOMY_SLOTS + 1)]
        (self.i_npi, self.i_entity, self.i_org, self.i_last, self.i_first, self.i_addr1, self.i_addr2, self.i_city,
         self.i_state, self.i_postal, self.i_country, self.i_phone, self.i_deactivated, self.i_reactivated) = (
            ix[c] for c in (C_NPI, C_ENTITY, C_ORG, C_LAST, C_FIRST, C_ADDR1, C_ADDR2, C_CITY, C_STATE, C_POSTAL,
                            C_COUNTRY, C_PHONE, C_DEACTIVATED, C_REACTIVATED))
        place = ((C_ADDR1, self.i_addr1), (C_ADDR2, self.i_addr2), (C_CITY, self.i_city), (C_STATE, self.i_state),
                 (C_POSTAL, self.i_postal), (C_PHONE, self.i_phone), (C_COUNTRY, self.i_country))
        self.text_hcp = ((C_FIRST, self.i_first), (C_LAST, self.i_last), *place)
        self.text_hco = ((C_ORG, self.i_org), *place)
        self.limits_hcp = tuple(MAX_LENGTH.get(c, 1000) for c, _i in self.text_hcp)
        self.limits_hco = tuple(MAX_LENGTH.get(c, 1000) for c, _i in self.text_hco)

    def validate(self, fields: list[str]) -> tuple[HcpRecord | HcoRecord | Deactivation | None, list[Problem]]:
        problems: list[Problem] = []

        def reject(column: str, reason: str, value: str | None) -> None:
            shown = None if column in CONTACT_FIELDS or value is None else value[:200]
            problems.append(Problem(column, reason, shown))

        npi = fields[self.i_npi]
        why = npi_problem(npi)
        if why:
            reject(C_NPI, f"The NPI {why}.", npi)
        for column, i in self.dates:
            why = date_problem(fields[i])
            if why:
                reject(column, f"{fields[i]!r} {why}.", fields[i])
        entity = fields[self.i_entity]
        if entity not in ("1", "2", ""):
            reject(C_ENTITY, "must be 1 (individual) or 2 (organisation).", entity)
        deactivated = fields[self.i_deactivated]
        status = self._status(deactivated, fields[self.i_reactivated], problems) if deactivated else "active"
        if entity == "":
            if not deactivated:
                reject(C_ENTITY, "is empty, and the NPI is not deactivated.", entity)
            return (None if problems else Deactivation(npi)), problems

        checked, limits = (self.text_hcp, self.limits_hcp) if entity == "1" else (self.text_hco, self.limits_hco)
        values = [fields[i] for _c, i in checked]
        joined = "\x1f".join(values)
        if _SUSPECT.search(joined) or (_SUSPECT_START.search(joined)
                                       and any(v[:1] in _SUSPECT_FIRST for v in values if v)):
            for (column, _i), value in zip(checked, values, strict=True):
                why = text_problem(value)
                if why:
                    reject(column, why, value)
        for (column, _i), value, limit in zip(checked, values, limits, strict=True):
            if len(value) > limit:
                reject(column, f"is {len(value)} characters; the CRM keeps at most {limit} (not cut)", value)
        for column, i in checked[: 2 if entity == "1" else 1]:
            if not fields[i].strip():
                reject(column, "is empty.", "")
        country = fields[self.i_country] or "US"
        if not _STATE.match(country):
            reject(C_COUNTRY, "is not a two-letter country code.", country)
        state, postal, phone = fields[self.i_state], fields[self.i_postal], fields[self.i_phone]
        if country == "US":
            self._check_us_address(state, postal, reject)
        if not _PHONE.match(phone):
            reject(C_PHONE, "is not a phone number.", None)
        code, code_column, licences = self._slots(fields, reject, problems, entity == "1")
        if problems and any(p.severity == "rejected" for p in problems):
            return None, problems

        addr1, addr2 = fields[self.i_addr1].strip(), fields[self.i_addr2].strip()
        address = (f"{addr1}, {addr2}" if addr1 and addr2 else addr1 or addr2) or None
        entry = self.taxonomy.get(code) if code else None
        if entity == "1":
            if entry is None or entry.profession is None:
                problems.append(self._taxonomy_flag(code, code_column, entry is not None, "profession 'other'"))
                profession, specialty = "other", None
            else:
                profession, specialty = entry.profession, entry.specialty
            return HcpRecord(npi=npi, licences=licences, values={
                "first_name": fields[self.i_first], "last_name": fields[self.i_last], "profession": profession,
                "specialty": specialty, "phone": phone or None, "address_line": address,
                "city": fields[self.i_city] or None, "postal_code": postal or None, "state": state or None,
                "country": country, "status": status}), problems
        if entry is None or entry.hco_kind is None:
            problems.append(self._taxonomy_flag(code, code_column, entry is not None, "kind 'other'"))
        kind = entry.hco_kind if entry and entry.hco_kind else "other"
        return HcoRecord(npi=npi, values={
            "name": fields[self.i_org], "kind": kind, "city": fields[self.i_city] or None,
            "postal_code": postal or None, "state": state or None, "country": country, "status": status}), problems

    @staticmethod
    def _status(deactivated: str, reactivated: str, problems: list[Problem]) -> str:
        if not deactivated or any(p.field in (C_DEACTIVATED, C_REACTIVATED) for p in problems):
            return "active"
        back = _parse_date(reactivated)
        gone = _parse_date(deactivated)
        return "active" if back is not None and gone is not None and back >= gone else "inactive"

    @staticmethod
    def _check_us_address(state: str, postal: str, reject: Reject) -> None:
        if state and not _STATE.match(state):
            reject(C_STATE, "is not a two-letter US state code.", state)
        if postal and not (postal.isdigit() and len(postal) in (5, 9)):
            if postal.isdigit() and len(postal) in (4, 8):
                reject(C_POSTAL, f"has {len(postal)} digits: a leading zero was lost (format the column as "
                                 "text).", postal)
            else:
                reject(C_POSTAL, "is not a US ZIP code (5 or 9 digits).", postal)

    def _slots(self, fields: list[str], reject: Reject, problems: list[Problem],
               individual: bool) -> tuple[str, str, tuple[tuple[str, str], ...]]:
        """The primary taxonomy code (and its column), and an individual's licences as (state, number)."""
        first: tuple[str, str] | None = None
        primary: tuple[str, str] | None = None
        licences: list[tuple[str, str]] = []
        for k, (code_i, num_i, state_i, switch_i) in enumerate(self.slots, start=1):
            code, number = fields[code_i], fields[num_i]
            if code:
                column = f"Healthcare Provider Taxonomy Code_{k}"
                if not CODE_PATTERN.match(code):
                    reject(column, "is not a NUCC taxonomy code (ten characters ending in X).", code)
                else:
                    first = first or (code, column)
                    if primary is None and fields[switch_i] == "Y":
                        primary = (code, column)
            if number and individual:
                self._licence(k, number, fields[state_i], reject, problems, licences)
        code, column = primary or first or ("", "Healthcare Provider Taxonomy Code_1")
        return code, column, tuple(licences)

    @staticmethod
    def _licence(k: int, number: str, state: str, reject: Reject, problems: list[Problem],
                 out: list[tuple[str, str]]) -> None:
        column = f"Provider License Number_{k}"
        why = text_problem(number)
        if why is None and len(number) > 60:
            why = f"is {len(number)} characters; the CRM keeps at most 60 (not cut)"
        if why:
            reject(column, why, number)
        elif not state:
            problems.append(Problem(column, "a licence number without a state; not kept", number, "flagged"))
        elif not _STATE.match(state):
            reject(f"Provider License Number State Code_{k}", "is not a two-letter state code.", state)
        elif (state, number) not in out:
            out.append((state, number))

    def _taxonomy_flag(self, code: str, column: str, known: bool, fallback: str) -> Problem:
        if not code:
            return Problem(column, f"no taxonomy code; imported with {fallback}", None, "flagged")
        if known:
            return Problem(column, f"{code} does not apply to this entity type; imported with {fallback}", code,
                           "flagged")
        return Problem(column, f"{code} is not in the taxonomy mapping; imported with {fallback}", code,
                       "flagged")
