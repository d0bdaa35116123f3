"""argon2id password hashing. No length truncation (bcrypt's 72-byte limit does not apply).

The cost comes from ``CRM_ARGON2_TIME_COST`` / ``CRM_ARGON2_MEMORY_KIB`` (defaults: argon2-cffi's,
RFC 9106 low-memory profile). The test suite lowers them to stay fast; hashes record their own
parameters, so verification works whatever the current setting.
"""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from flask import current_app, has_app_context

MIN_LENGTH = 10


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


def password_problem(password: str) -> str | None:
    """Why a new password is refused, or None. Length only: composition rules weaken passwords."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > 1024:
        return "must be at most 1024 characters"
    return None
