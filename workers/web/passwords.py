"""Console passwords: argon2id hashes (argon2-cffi's defaults), never the password itself.

``verify_password`` also runs for an unknown user name (against a hash of nothing anyone
knows), so a login takes as long for a name that exists as for one that does not.
"""

from __future__ import annotations

import secrets
from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from trading.exceptions import BadInput

MIN_LENGTH = 8
MAX_LENGTH = 1024

_HASHER = PasswordHasher()


def check_new_password(password: str) -> str:
    """``password`` if it may be set, else ``BadInput`` (empty, too short, too long, or more
    than one line)."""
    if not password:
        raise BadInput("the password is empty")
    if "\n" in password or "\r" in password:
        raise BadInput("the password must be one line")
    if len(password) < MIN_LENGTH:
        raise BadInput(f"the password is too short (at least {MIN_LENGTH} characters)")
    if len(password) > MAX_LENGTH:
        raise BadInput(f"the password is too long (at most {MAX_LENGTH} characters)")
    return password


def hash_password(password: str) -> str:
    """The argon2id hash of a password ``check_new_password`` accepts."""
    return _HASHER.hash(check_new_password(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; ``None`` (no such user) checks against a
    throwaway hash so it costs the same, and is always False."""
    if not password or len(password) > MAX_LENGTH:
        return False
    try:
        matched = _HASHER.verify(password_hash or _unknown_user_hash(), password)
    except (VerificationError, InvalidHashError):
        return False
    return matched and password_hash is not None


@lru_cache(maxsize=1)
def _unknown_user_hash() -> str:
    return _HASHER.hash(secrets.token_urlsafe(32))
