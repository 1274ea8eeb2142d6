"""Web-console sessions: an API key exchanged for a session token held in an HttpOnly cookie.

The console never keeps the API key: sign-in sends it once, and the browser then holds only a random
session token (256 bits) in a cookie that scripts cannot read (``HttpOnly``), that no other site's
request carries (``SameSite=Strict``) and that is ``Secure`` over TLS. Only the token's SHA-256 is
stored. A session acts with its key's role and project scope, and ends at its expiry (at most
``FLAGYARD_SESSION_TTL_SECONDS``, never after the key's own expiry), at sign-out, or when its key is
revoked or expires; at most :data:`MAX_SESSIONS_PER_KEY` live at once per key (a new sign-in ends the
oldest).

State changes made with a session also need its CSRF token in ``X-CSRF-Token``: a value derived from
the session token, which the console reads from the sign-in response or ``GET /sessions/current`` (a
page of another origin can read neither). Requests with ``Authorization: Bearer`` are unaffected.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flagyard.control_plane.exceptions import AuthenticationError, CsrfError
from flagyard.control_plane.security import Role, hash_key, hashes_equal
from flagyard.control_plane.services.common import Actor
from flagyard.control_plane.services.keys import KeyCache
from flagyard.db.models import ApiKey, ConsoleSession, Project

COOKIE = "flagyard_session"
CSRF_HEADER = "X-CSRF-Token"
MAX_SESSIONS_PER_KEY = 20
"""Live sessions one key may hold; signing in again beyond it ends the oldest."""
PRUNE_BATCH = 100
"""Expired or ended sessions deleted per sign-in, so the table holds about the live ones."""
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_TOKEN = re.compile(r"^[A-Za-z0-9_-]{43}$")
_CACHE_PREFIX = "session:"


def _now() -> datetime:
    return datetime.now(UTC)


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """The stored form of a session token; :class:`AuthenticationError` if it cannot be one."""
    if not _TOKEN.match(token):
        raise AuthenticationError("the console session is not valid; sign in again")
    return hash_key(token)


def csrf_token(token: str) -> str:
    """The CSRF token of a session: derived from its token, so nothing more is stored."""
    digest = hashlib.sha256(b"flagyard-csrf\x00" + token.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def check_csrf(method: str, token: str, presented: str | None) -> None:
    """Refuse a state change made with a session but without its CSRF token (403 ``csrf_failed``)."""
    if method in SAFE_METHODS:
        return
    if presented is None or not hmac.compare_digest(presented.encode(), csrf_token(token).encode()):
        raise CsrfError(f"a change made with a console session needs the session's {CSRF_HEADER} header")


@dataclass(frozen=True, slots=True)
class SessionInfo:
    actor: Actor
    expires_at: datetime
    project: str | None


def _project_key(session: Session, project_id: int | None) -> str | None:
    if project_id is None:
        return None
    return session.scalar(sa.select(Project.key).where(Project.id == project_id))


def session_body(info: SessionInfo, token: str) -> dict[str, Any]:
    return {
        "role": info.actor.role.value,
        "project": info.project,
        "key_id": info.actor.key_id,
        "key_prefix": info.actor.prefix,
        "expires_at": info.expires_at,
        "csrf_token": csrf_token(token),
    }


def create_session(session: Session, actor: Actor, ttl_seconds: int) -> tuple[str, SessionInfo]:
    """A new session of ``actor``'s key (the caller commits): its token, shown only to the browser."""
    now = _now()
    key_expiry = session.scalar(sa.select(ApiKey.expires_at).where(ApiKey.id == actor.key_id))
    expires_at = now + timedelta(seconds=ttl_seconds)
    if key_expiry is not None:
        expires_at = min(expires_at, key_expiry)
    token = new_token()
    session.add(ConsoleSession(token_hash=hash_key(token), api_key_id=actor.key_id, expires_at=expires_at))
    session.flush()
    _end_beyond_limit(session, actor.key_id, now)
    _prune(session, now)
    return token, SessionInfo(actor, expires_at, _project_key(session, actor.project_id))


def _end_beyond_limit(session: Session, key_id: int, now: datetime) -> None:
    live = (
        sa.select(ConsoleSession.id)
        .where(
            ConsoleSession.api_key_id == key_id,
            ConsoleSession.revoked_at.is_(None),
            ConsoleSession.expires_at > now,
        )
        .order_by(ConsoleSession.created_at.desc(), ConsoleSession.id.desc())
        .offset(MAX_SESSIONS_PER_KEY)
    )
    session.execute(sa.update(ConsoleSession).where(ConsoleSession.id.in_(live)).values(revoked_at=now))


def _prune(session: Session, now: datetime) -> None:
    done = (
        sa.select(ConsoleSession.id)
        .where(sa.or_(ConsoleSession.expires_at <= now, ConsoleSession.revoked_at.is_not(None)))
        .order_by(ConsoleSession.expires_at)
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    session.execute(sa.delete(ConsoleSession).where(ConsoleSession.id.in_(done)))


def cached_session_actor(token: str, cache: KeyCache) -> Actor | None:
    return cache.get(_CACHE_PREFIX + token_digest(token), _now())


def look_up(session: Session, token: str) -> SessionInfo:
    """The live session of ``token`` and its key's actor; :class:`AuthenticationError` otherwise."""
    digest = token_digest(token)
    now = _now()
    row = session.execute(
        sa.select(
            ConsoleSession.token_hash,
            ConsoleSession.expires_at,
            ConsoleSession.revoked_at,
            ApiKey.id,
            ApiKey.prefix,
            ApiKey.role,
            ApiKey.project_id,
            ApiKey.expires_at.label("key_expires_at"),
            ApiKey.revoked_at.label("key_revoked_at"),
        )
        .join(ApiKey, ApiKey.id == ConsoleSession.api_key_id)
        .where(ConsoleSession.token_hash == digest)
    ).first()
    if row is None or not hashes_equal(row.token_hash, digest):
        raise AuthenticationError("the console session is not valid; sign in again")
    if row.revoked_at is not None:
        raise AuthenticationError("the console session was signed out; sign in again")
    if row.key_revoked_at is not None:
        raise AuthenticationError("the API key of this console session was revoked")
    expires_at = row.expires_at
    if row.key_expires_at is not None:
        expires_at = min(expires_at, row.key_expires_at)
    if expires_at <= now:
        raise AuthenticationError("the console session has expired; sign in again")
    role = Role(row.role)
    actor = Actor(key_id=row.id, prefix=row.prefix, role=role, project_id=row.project_id)
    return SessionInfo(actor, expires_at, _project_key(session, row.project_id))


def authenticate_session(session: Session, token: str, cache: KeyCache | None = None) -> Actor:
    """The actor of a console session (cached like keys, so most requests skip the lookup)."""
    if cache is not None:
        cached = cached_session_actor(token, cache)
        if cached is not None:
            return cached
    info = look_up(session, token)
    if cache is not None:
        cache.put(_CACHE_PREFIX + token_digest(token), info.actor, info.expires_at)
    return info.actor


def end_session(session: Session, token: str) -> None:
    """Sign out: the session ends now (the caller commits and clears the authentication cache)."""
    session.execute(
        sa.update(ConsoleSession)
        .where(ConsoleSession.token_hash == token_digest(token), ConsoleSession.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
