"""Reading CSV exports from other systems the way they really arrive.

* Encoding: UTF-8 with or without a byte-order mark, or UTF-16 with one (Excel's "Unicode text").
* Separator: sniffed from the header line among ``,`` ``;`` tab and ``|`` (Excel in much of Europe
  writes ``;``).
* Line breaks: CRLF or LF, also inside quoted fields (a multi-line address or comment stays one cell).
* Columns are found by header name, not position: case, spaces, ``_``, ``-`` and ``.`` are ignored, and
  each field has aliases ("Attendee ID", "attendee_id" and "ATTENDEEID" are one column).

Rows are numbered as a spreadsheet shows records: the header is row 1, the first data record row 2.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass

from crm.errors import Invalid
from crm.reports import FORMULA_START
from crm.schemas import DB_INT_MAX, MAX_YEAR, MIN_YEAR

SEPARATORS = (",", ";", "\t", "|")
_NOT_NAME = re.compile(r"[\s_\-.]+")


class FileRefused(Invalid):
    """The file as a whole cannot be read (encoding, header, required columns); no row was imported."""


@dataclass(frozen=True)
class Row:
    number: int
    values: dict[str, str]
    extra_cells: bool = False


def normalise_header(name: str) -> str:
    return _NOT_NAME.sub("", name.replace("\ufeff", "")).casefold()


def decode(data: bytes) -> str:
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise FileRefused("The file says it is UTF-16 but is not.", errors={"file": [str(exc)]}) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FileRefused("The file is not UTF-8 text; export it as CSV UTF-8.",
                          errors={"file": [f"byte {exc.start} is not UTF-8"]}) from exc


def sniff_separator(text: str) -> str:
    """The separator of the header line: the candidate that occurs most often outside quotes."""
    header = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        elif ch in "\r\n" and not quoted:
            break
        elif not quoted:
            header.append(ch)
    line = "".join(header)
    counts = {sep: line.count(sep) for sep in SEPARATORS}
    best = max(SEPARATORS, key=lambda s: counts[s])
    return best if counts[best] else ","


# What the database columns can hold: no NUL in text (PostgreSQL refuses it), ids within the Integer
# columns, dates and times in the years both engines and the app's arithmetic handle.
ID_MAX = DB_INT_MAX


def nul_problem(values: dict[str, str]) -> str | None:
    """The first column whose cell holds a NUL character, as a row error, or None."""
    for name, value in values.items():
        if "\x00" in value:
            return f"{name} contains a NUL character"
    return None


def id_problem(name: str, raw: str) -> str | None:
    """Why ``raw`` is not a CRM id (digits, 1 to 2**31-1), or None."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or not 1 <= int(raw) <= ID_MAX:
        return f"{name} {raw[:40]!r} is not a number from 1 to {ID_MAX} (a CRM id)"
    return None


def year_problem(name: str, raw: str, year: int) -> str | None:
    if not MIN_YEAR <= year <= MAX_YEAR:
        return f"{name} {raw[:40]!r} is outside the years {MIN_YEAR} to {MAX_YEAR}"
    return None


def formula_problem(value: str) -> str | None:
    """Why a cell would be run by a spreadsheet as a formula, or None."""
    if value and value.startswith(FORMULA_START):
        shown = {"\t": "a tab", "\r": "a carriage return"}.get(value[0], repr(value[0]))
        return f"starts with {shown}: a spreadsheet would run it as a formula"
    return None


def read(data: bytes, aliases: dict[str, tuple[str, ...]], required: tuple[str, ...] = ()) -> tuple[
        list[str], Iterator[Row]]:
    """The fields found in the header and an iterator over the data rows as ``{field: value}``.

    ``aliases`` maps each field to the header names that mean it. Unknown columns are ignored; a
    field named by two columns, or a required field missing, refuses the file.
    """
    text = decode(data)
    if not text.strip():
        raise FileRefused("The file is empty.", errors={"file": ["no header line"]})
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sniff_separator(text))
    try:
        header = next(reader)
    except csv.Error as exc:
        raise FileRefused("The header line cannot be read.", errors={"file": [str(exc)]}) from exc
    lookup = {normalise_header(a): name for name, names in aliases.items() for a in (name, *names)}
    columns: dict[int, str] = {}
    seen: dict[str, str] = {}
    errors: dict[str, list[str]] = {}
    for index, raw in enumerate(header):
        name = lookup.get(normalise_header(raw))
        if name is None:
            continue
        if name in seen:
            errors.setdefault("header", []).append(f"columns {seen[name]!r} and {raw!r} both mean {name}")
        seen[name] = raw
        columns[index] = name
    missing = [f for f in required if f not in seen]
    if missing:
        wanted = "; ".join(f"{f} (one of: {', '.join((f, *aliases[f]))})" for f in missing)
        errors.setdefault("header", []).append(f"missing column(s): {wanted}")
    if errors:
        raise FileRefused("The file's header does not have the columns needed.", errors=errors)

    def rows() -> Iterator[Row]:
        number = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise FileRefused(f"Row {number + 1} cannot be read: {exc}", errors={"file": [str(exc)]}) from exc
            number += 1
            if not any(c.strip() for c in cells):
                continue
            values = {name: "" for name in seen}
            for index, name in columns.items():
                if index < len(cells):
                    values[name] = cells[index].strip()
            extra = len(cells) > len(header) and any(c.strip() for c in cells[len(header):])
            yield Row(number, values, extra)

    return list(seen), rows()
