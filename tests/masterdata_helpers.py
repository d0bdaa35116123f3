"""Building NPPES files for the master-data tests."""

from __future__ import annotations

import io
from pathlib import Path

from crm.integrations.masterdata.synthetic import INDEX, nppes_row, write_nppes

SAMPLE = Path(__file__).parent / "data" / "nppes_sample.csv"


def csv_bytes(rows: list[list[str]], header: bool = True) -> bytes:
    buf = io.StringIO(newline="")
    write_nppes(buf, rows, header=header)
    return buf.getvalue().encode("utf-8")


def write_file(path: Path, rows: list[list[str]], header: bool = True) -> Path:
    path.write_bytes(csv_bytes(rows, header=header))
    return path


def row(n: int, **values: str) -> list[str]:
    """Synthetic row ``n`` with some columns replaced (column names as in the NPPES header)."""
    out = nppes_row(n)
    for column, value in values.items():
        out[INDEX[column]] = value
    return out
