"""HCP identifiers: the US National Provider Identifier (NPI) check digit.

An NPI is 10 digits; the last is a Luhn check digit computed over the card-issuer prefix 80840
followed by the first nine digits (CMS, "NPI Check Digit").
"""

from __future__ import annotations

_PREFIX = "80840"


def _luhn_sum(digits: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:  # every second digit from the right, starting with the rightmost (no check digit yet)
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total


def npi_check_digit(first_nine: str) -> str:
    if len(first_nine) != 9 or not first_nine.isdigit():
        raise ValueError("an NPI stem is 9 digits")
    return str((10 - _luhn_sum(_PREFIX + first_nine) % 10) % 10)


def npi_problem(value: str | None) -> str | None:
    """Why ``value`` is not a valid NPI, or None when it is."""
    if value is None or value == "":
        return "is required"
    if not (value.isascii() and value.isdigit()):  # "１２３" (full-width) is digits to Python, not to CMS
        return "must be 10 digits"
    if len(value) != 10:
        return f"must be 10 digits (got {len(value)})"
    if npi_check_digit(value[:9]) != value[9]:
        return "has a wrong check digit"
    return None


def make_npi(n: int) -> str:
    """A valid NPI built from the number ``n`` (demo data, tests, benchmarks)."""
    stem = f"1{n % 100_000_000:08d}"
    return stem + npi_check_digit(stem)
