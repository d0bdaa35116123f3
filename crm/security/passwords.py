"""argon2id password hashing. No length truncation (bcrypt's 72-byte limit does not apply).

The cost comes from ``CRM_ARGON2_TIME_COST`` / ``CRM_ARGON2_MEMORY_KIB`` (defaults: argon2-cffi's,
RFC 9106 low-memory profile). The test suite lowers them to stay fast; hashes record their own
parameters, so verification works whatever the current setting.
"""

from __future__ import annotations

import re
from functools import lru_cache
from importlib.resources import files

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app, has_app_context

MIN_LENGTH = 12
MAX_LENGTH = 1024
# Strings whose stretches people type as passwords: digits, alphabet, keyboard rows and columns.
_SEQUENCES = ("0123456789" * 3, "abcdefghijklmnopqrstuvwxyz", "qwertyuiopasdfghjklzxcvbnm", "qwertzuiop",
              "azertyuiop", "1qaz2wsx3edc4rfv5tgb6yhn7ujm8ik9ol0p", "qazwsxedcrfvtgbyhnujmikolp",
              "zaq1xsw2cde3vfr4bgt5nhy6mju7", "1q2w3e4r5t6y7u8i9o0p", "q1w2e3r4t5y6u7i8o9p0")
_LEET = str.maketrans({"@": "a", "4": "a", "8": "b", "3": "e", "6": "g", "1": "i", "!": "i", "0": "o",
                       "$": "s", "5": "s", "7": "t", "+": "t", "2": "z"})


@lru_cache(maxsize=8)
def _hasher_for(time_cost: int | None, memory_kib: int | None) -> PasswordHasher:
    if time_cost is None and memory_kib is None:
        return PasswordHasher()
    default = PasswordHasher()
    return PasswordHasher(time_cost=time_cost or default.time_cost, memory_cost=memory_kib or default.memory_cost)


def _hasher() -> PasswordHasher:
    if has_app_context():
        cfg = current_app.config
        return _hasher_for(cfg.get("CRM_ARGON2_TIME_COST"), cfg.get("CRM_ARGON2_MEMORY_KIB"))
    return _hasher_for(None, None)


@lru_cache(maxsize=8)
def _dummy_hash(hasher: PasswordHasher) -> str:
    # Verified against when the account does not exist, so timing does not reveal it.
    return hasher.hash("not-a-real-password-just-for-timing")


def hash_password(password: str) -> str:
    return _hasher().hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    hasher = _hasher()
    try:
        return hasher.verify(stored_hash or _dummy_hash(hasher), password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    """The bundled list of common passwords (crm/security/common_passwords.txt), lower case."""
    text = files("crm.security").joinpath("common_passwords.txt").read_text(encoding="utf-8")
    return frozenset(line.strip().casefold() for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))


def _compact(value: str) -> str:
    return "".join(c for c in value.casefold() if c.isalnum())


def _cores(password: str) -> set[str]:
    """The forms of ``password`` looked up: as typed, without separators, and its word without the
    digits and symbols people add around it, with l33t spelling undone."""
    lowered = password.casefold().strip()
    forms = {lowered, _compact(lowered)}
    for form in list(forms):
        stripped = re.sub(r"^[\W\d_]+|[\W\d_]+$", "", form)
        forms.add(stripped)
        forms.add(re.sub(r"^[\W_]+|[\W_]+$", "", form.translate(_LEET)))
        forms.add(re.sub(r"^[\W\d_]+|[\W\d_]+$", "", form.translate(_LEET)))
    return {f for f in forms if f}


def _predictable(core: str) -> bool:
    common = common_passwords()
    if core in common:
        return True
    repeated = re.fullmatch(r"(.+?)\1+", core)
    if repeated and (len(repeated.group(1)) <= 4 or repeated.group(1) in common):
        return True  # "aaaaaaaaaaaa", "abcabcabcabc", "passwordpassword"
    return len(core) >= 4 and any(core in seq or core in seq[::-1] for seq in _SEQUENCES)


def password_problem(password: str, *, email: str | None = None, name: str | None = None) -> str | None:
    """Why a new password is refused, or None.

    At least 12 characters, not a common or predictable password (bundled list, repeats, keyboard and
    alphabet runs, also with digits and symbols added around them), and not the user's email or name.
    No composition rules: they make passwords harder to remember, not to guess (NIST SP 800-63B).
    """
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    cores = _cores(password)
    personal = {_compact(v) for v in (email, (email or "").split("@", 1)[0], name) if v}
    if cores & {p for p in personal if p}:
        return "must not be your email address or name"
    if any(_predictable(core) for core in cores):
        return "is too common or too easy to guess; a few unrelated words make a good password"
    return None
