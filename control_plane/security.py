"""API and SDK keys: their format, generation and hashing.

A key is ``fy_<role>_<secret>`` where ``role`` is ``admin``, ``writer``, ``reader`` or ``sdk`` and
``secret`` is 32 random bytes (256 bits) in URL-safe base64 (43 characters). Only ``hash_key(key)``,
the SHA-256 hex digest of the whole key string, is stored; the data plane checks SDK keys by the same
hash. ``display_prefix(key)`` (the role part plus the first 6 secret characters) identifies a key in
listings and audit entries without revealing it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from enum import StrEnum

KEY_PREFIX = "fy_"
_SECRET_BYTES = 32
_PREFIX_SECRET_CHARS = 6


class Role(StrEnum):
    """Admin-API roles, each including the ones below it; ``sdk`` keys cannot use the admin API."""

    ADMIN = "admin"
    WRITER = "writer"
    READER = "reader"
    SDK = "sdk"

    @property
    def rank(self) -> int:
        return _RANKS[self]

    def allows(self, required: Role) -> bool:
        return self is not Role.SDK and self.rank >= required.rank


_RANKS = {Role.ADMIN: 3, Role.WRITER: 2, Role.READER: 1, Role.SDK: 0}


def generate_key(role: Role) -> str:
    """A new random key of ``role``."""
    return f"{KEY_PREFIX}{role.value}_{secrets.token_urlsafe(_SECRET_BYTES)}"


def hash_key(key: str) -> str:
    """What is stored and looked up: the SHA-256 hex digest of the full key (UTF-8)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def display_prefix(key: str) -> str:
    """``fy_admin_AbC123``: enough to recognise a key, useless to use it."""
    role, _, secret = key.removeprefix(KEY_PREFIX).partition("_")
    return f"{KEY_PREFIX}{role}_{secret[:_PREFIX_SECRET_CHARS]}"


def parse_role(key: str) -> Role | None:
    """The role a key claims by its format, or ``None`` if it is not a Flagyard key."""
    if not key.startswith(KEY_PREFIX):
        return None
    role, sep, secret = key[len(KEY_PREFIX) :].partition("_")
    if not sep or not secret:
        return None
    try:
        return Role(role)
    except ValueError:
        return None


def hashes_equal(stored: str, presented: str) -> bool:
    """Constant-time comparison of two key hashes."""
    return hmac.compare_digest(stored.encode(), presented.encode())


def new_salt() -> str:
    """The random bucketing salt a flag gets at creation."""
    return secrets.token_hex(8)
