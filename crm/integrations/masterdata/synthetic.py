"""Synthetic files in the NPPES layout (the 330 columns of the monthly dissemination file), for the
import benchmark and the tests: deterministic, valid NPIs, realistic names, addresses and codes."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from typing import TextIO

from crm.hcps.identifiers import make_npi

_FIRST_COLUMNS = [
    "NPI", "Entity Type Code", "Replacement NPI", "Employer Identification Number (EIN)",
    "Provider Organization Name (Legal Business Name)", "Provider Last Name (Legal Name)", "Provider First Name",
    "Provider Middle Name", "Provider Name Prefix Text", "Provider Name Suffix Text", "Provider Credential Text",
    "Provider Other Organization Name", "Provider Other Organization Name Type Code", "Provider Other Last Name",
    "Provider Other First Name", "Provider Other Middle Name", "Provider Other Name Prefix Text",
    "Provider Other Name Suffix Text", "Provider Other Credential Text", "Provider Other Last Name Type Code",
    "Provider First Line Business Mailing Address", "Provider Second Line Business Mailing Address",
    "Provider Business Mailing Address City Name", "Provider Business Mailing Address State Name",
    "Provider Business Mailing Address Postal Code",
    "Provider Business Mailing Address Country Code (If outside U.S.)",
    "Provider Business Mailing Address Telephone Number", "Provider Business Mailing Address Fax Number",
    "Provider First Line Business Practice Location Address",
    "Provider Second Line Business Practice Location Address",
    "Provider Business Practice Location Address City Name", "Provider Business Practice Location Address State Name",
    "Provider Business Practice Location Address Postal Code",
    "Provider Business Practice Location Address Country Code (If outside U.S.)",
    "Provider Business Practice Location Address Telephone Number",
    "Provider Business Practice Location Address Fax Number", "Provider Enumeration Date", "Last Update Date",
    "NPI Deactivation Reason Code", "NPI Deactivation Date", "NPI Reactivation Date", "Provider Gender Code",
    "Authorized Official Last Name", "Authorized Official First Name", "Authorized Official Middle Name",
    "Authorized Official Title or Position", "Authorized Official Telephone Number",
]
_TAIL_COLUMNS = [
    "Is Sole Proprietor", "Is Organization Subpart", "Parent Organization LBN", "Parent Organization TIN",
    "Authorized Official Name Prefix Text", "Authorized Official Name Suffix Text",
    "Authorized Official Credential Text",
]


def nppes_header() -> list[str]:
    """The 330 column names of the NPPES NPI file, in order."""
    columns = list(_FIRST_COLUMNS)
    for k in range(1, 16):
        columns += [f"Healthcare Provider Taxonomy Code_{k}", f"Provider License Number_{k}",
                    f"Provider License Number State Code_{k}", f"Healthcare Provider Primary Taxonomy Switch_{k}"]
    for k in range(1, 51):
        columns += [f"Other Provider Identifier_{k}", f"Other Provider Identifier Type Code_{k}",
                    f"Other Provider Identifier State_{k}", f"Other Provider Identifier Issuer_{k}"]
    columns += _TAIL_COLUMNS
    columns += [f"Healthcare Provider Taxonomy Group_{k}" for k in range(1, 16)]
    columns.append("Certification Date")
    return columns


HEADER = nppes_header()
INDEX = {name: i for i, name in enumerate(HEADER)}

_FIRST = ["AISHA", "JAMES", "PRIYA", "JOHN", "LINDA", "MOHAMMED", "YUKI", "LARS", "JENNIFER", "KWAME", "SOFIA",
          "DAVID", "ELENA", "OMAR", "GRACE", "WEI"]
_LAST = ["JOHNSON", "O'BRIEN", "NGUYEN", "WILLIAMS", "DAVIS", "SCHMIDT", "OKAFOR", "MÜLLER", "GARCIA", "HADDAD",
         "KOWALSKI", "TANAKA", "SMITH", "PATEL", "ROSSI", "LEE"]
_PLACES = [("BOSTON", "MA", "02115"), ("SEATTLE", "WA", "98104"), ("CHICAGO", "IL", "60611"),
           ("NEW YORK", "NY", "10016"), ("HOUSTON", "TX", "77030"), ("SAN FRANCISCO", "CA", "94143")]
_STREETS = ["Oak St", "Main Ave", "Longwood St", "Beacon St", "Main Blvd", "Elm Rd", "Harbor Way"]
_HCP_CODES = ["207Q00000X", "208D00000X", "207R00000X", "207RC0000X", "207RX0202X", "2084P0800X", "183500000X",
              "163W00000X", "363L00000X", "363LF0000X", "2080P0207X", "207V00000X"]
_HCO_CODES = [("282N00000X", "GENERAL HOSPITAL"), ("3336C0003X", "COMMUNITY PHARMACY"),
              ("261QP2300X", "FAMILY PRACTICE LLC")]


def nppes_row(n: int, org_every: int = 7) -> list[str]:
    """Data row number ``n`` (0-based): an organisation every ``org_every`` rows, an individual otherwise."""
    row = [""] * len(HEADER)
    city, state, zip5 = _PLACES[n % len(_PLACES)]
    row[INDEX["NPI"]] = make_npi(n)
    street = f"{(n * 37) % 990 + 10} {_STREETS[n % len(_STREETS)]}"
    for prefix in ("Provider First Line Business Mailing Address",
                   "Provider First Line Business Practice Location Address"):
        row[INDEX[prefix]] = street
    for kind in ("Mailing", "Practice Location"):
        row[INDEX[f"Provider Business {kind} Address City Name"]] = city
        row[INDEX[f"Provider Business {kind} Address State Name"]] = state
        row[INDEX[f"Provider Business {kind} Address Postal Code"]] = f"{zip5}{n % 10000:04d}"
        row[INDEX[f"Provider Business {kind} Address Country Code (If outside U.S.)"]] = "US"
        row[INDEX[f"Provider Business {kind} Address Telephone Number"]] = f"{2000000000 + (n * 7919) % 7999999999}"
    row[INDEX["Provider Enumeration Date"]] = f"{n % 12 + 1:02d}/{n % 28 + 1:02d}/{2005 + n % 18}"
    row[INDEX["Last Update Date"]] = f"{(n + 5) % 12 + 1:02d}/{(n + 3) % 28 + 1:02d}/2024"
    row[INDEX["Healthcare Provider Primary Taxonomy Switch_1"]] = "Y"
    if n % org_every == org_every - 1:
        code, suffix = _HCO_CODES[n % len(_HCO_CODES)]
        row[INDEX["Entity Type Code"]] = "2"
        row[INDEX["Employer Identification Number (EIN)"]] = "<UNAVAIL>"
        row[INDEX["Provider Organization Name (Legal Business Name)"]] = f"{city} {suffix} {n}"
        row[INDEX["Authorized Official Last Name"]] = _LAST[n % len(_LAST)]
        row[INDEX["Authorized Official First Name"]] = _FIRST[(n // 3) % len(_FIRST)]
        row[INDEX["Authorized Official Title or Position"]] = "ADMINISTRATOR"
        row[INDEX["Healthcare Provider Taxonomy Code_1"]] = code
        row[INDEX["Is Organization Subpart"]] = "N"
    else:
        row[INDEX["Entity Type Code"]] = "1"
        row[INDEX["Provider Last Name (Legal Name)"]] = _LAST[n % len(_LAST)]
        row[INDEX["Provider First Name"]] = _FIRST[(n // len(_LAST)) % len(_FIRST)]
        row[INDEX["Provider Middle Name"]] = "A"
        row[INDEX["Provider Credential Text"]] = "MD"
        row[INDEX["Provider Gender Code"]] = "F" if n % 2 else "M"
        row[INDEX["Healthcare Provider Taxonomy Code_1"]] = _HCP_CODES[n % len(_HCP_CODES)]
        row[INDEX["Provider License Number_1"]] = f"L{n:08d}"
        row[INDEX["Provider License Number State Code_1"]] = state
        row[INDEX["Is Sole Proprietor"]] = "Y" if n % 3 else "N"
    return row


def nppes_rows(count: int, start: int = 0) -> Iterator[list[str]]:
    for n in range(start, start + count):
        yield nppes_row(n)


def write_nppes(fh: TextIO, rows: Iterator[list[str]] | list[list[str]], header: bool = True) -> None:
    """Write rows as NPPES does: every field quoted, CRLF line ends (open ``fh`` with ``newline=""``)."""
    writer = csv.writer(fh, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
    if header:
        writer.writerow(HEADER)
    writer.writerows(rows)
