"""CSV exports that spreadsheets open safely (SPEC section 9: formula injection).

A cell that starts like a formula (``=``, ``+``, ``-``, ``@``, tab or carriage return) is prefixed with an
apostrophe, so Excel, LibreOffice and Google Sheets show it as text instead of running it. Every CSV export
goes through ``csv_safe``/``to_csv``; imports use ``FORMULA_START`` to flag such values on the way in.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from crm.db import iso_z

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(value: Any) -> str:
    """One CSV cell: times in UTC with ``Z``, ``None`` empty, formula-like text prefixed with ``'``."""
    if value is None:
        return ""
    text = (iso_z(value) or "") if isinstance(value, datetime) else str(value)
    return "'" + text if text.startswith(FORMULA_START) else text


def to_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    writer.writerow([csv_safe(h) for h in header])
    for row in rows:
        writer.writerow([csv_safe(v) for v in row])
    return buf.getvalue()
