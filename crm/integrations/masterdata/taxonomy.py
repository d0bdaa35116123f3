"""NUCC Health Care Provider Taxonomy codes -> (profession, specialty) for HCPs, kind for HCOs.

The mapping is data (``nucc_taxonomy.csv`` next to this module), so a data steward can extend it
without touching code. Its digest is part of the import's mapping version: a changed table makes
the next import re-apply every row instead of skipping rows whose source bytes did not change.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from crm.hcps.professions import PROFESSIONS

TAXONOMY_FILE = Path(__file__).with_name("nucc_taxonomy.csv")
CODE_PATTERN = re.compile(r"^[0-9]{3}[0-9A-Z]{6}X$")
HCO_KINDS = ("hospital", "practice", "pharmacy", "wholesaler")


@dataclass(frozen=True)
class Taxonomy:
    code: str
    profession: str | None  # for individuals (entity type 1)
    specialty: str | None
    hco_kind: str | None  # for organisations (entity type 2)
    nucc_name: str


@dataclass(frozen=True)
class TaxonomyTable:
    entries: dict[str, Taxonomy]
    digest: str

    def get(self, code: str) -> Taxonomy | None:
        return self.entries.get(code)


def parse_table(raw: bytes) -> TaxonomyTable:
    """Read the mapping; a bad line is an error naming the line (the table is ours, it must be right)."""
    entries: dict[str, Taxonomy] = {}
    reader = csv.DictReader(io.StringIO(raw.decode("utf-8")))
    for line, row in enumerate(reader, start=2):
        code = row["code"].strip()
        profession = row["profession"].strip() or None
        hco_kind = row["hco_kind"].strip() or None
        if not CODE_PATTERN.match(code):
            raise ValueError(f"{TAXONOMY_FILE.name} line {line}: {code!r} is not a NUCC taxonomy code")
        if code in entries:
            raise ValueError(f"{TAXONOMY_FILE.name} line {line}: {code} appears twice")
        if profession is not None and profession not in PROFESSIONS:
            raise ValueError(f"{TAXONOMY_FILE.name} line {line}: unknown profession {profession!r}")
        if hco_kind is not None and hco_kind not in HCO_KINDS:
            raise ValueError(f"{TAXONOMY_FILE.name} line {line}: unknown HCO kind {hco_kind!r}")
        if (profession is None) == (hco_kind is None):
            raise ValueError(f"{TAXONOMY_FILE.name} line {line}: give a profession or an HCO kind, not both")
        entries[code] = Taxonomy(code, profession, row["specialty"].strip() or None, hco_kind,
                                 row["nucc_name"].strip())
    return TaxonomyTable(entries, hashlib.sha256(raw).hexdigest())


@lru_cache(maxsize=1)
def load_table() -> TaxonomyTable:
    return parse_table(TAXONOMY_FILE.read_bytes())
