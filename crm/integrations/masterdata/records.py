"""What a source row becomes once it is parsed and validated: plain values, no database."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Problem:
    """Why a row was rejected (``severity="rejected"``) or imported with a remark (``"flagged"``)."""

    field: str
    reason: str
    value: str | None = None
    severity: str = "rejected"


@dataclass
class HcpRecord:
    """An individual (HCP). Matched to an existing HCP by NPI, then national id, then email."""

    npi: str | None
    values: dict[str, Any]  # HCP columns: first_name, last_name, profession, specialty, phone, ...
    licences: tuple[tuple[str, str], ...] = ()  # (state, number)
    national_id: str | None = None
    email: str | None = None


@dataclass
class HcoRecord:
    """An organisation (HCO), matched by NPI."""

    npi: str
    values: dict[str, Any]  # HCO columns: name, kind, city, postal_code, state, country, status


@dataclass
class Deactivation:
    """A deactivated NPI with no other data (the NPPES layout of a deactivated record)."""

    npi: str


@dataclass
class SourceRow:
    """One data row of the file, as read: its place, its raw bytes and its fields (or why they are unusable)."""

    row_number: int  # 1 = the first row after the header
    line_number: int  # the physical line where the row starts (header = line 1)
    end_offset: int  # the byte just after the row: the checkpoint once it is committed
    raw: bytes
    fields: list[str] = field(default_factory=list)
    error: Problem | None = None  # unreadable: bad encoding, bad quoting, wrong column count
    end_line: int = 0  # the physical line where the row ends (the line checkpoint once committed)
    complete: bool = True  # False: ``fields`` holds the key only and ``raw`` is empty (see reading.py)
    size: int = -1  # the row's bytes in the file: ``len(raw)``, also once ``raw`` is left behind

    def __post_init__(self) -> None:
        if self.size < 0:
            self.size = len(self.raw)

    @property
    def key(self) -> str:
        return self.fields[0] if self.fields else ""
