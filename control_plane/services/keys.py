"""API keys (admin/writer/reader, global or per project) and SDK keys (per environment).

Keys are shown once at creation; only their SHA-256 is stored. Rotation issues a new key and lets the
old one work until the overlap window ends. Revocation is immediate in the process that commits it;
other control-plane processes notice within ``FLAGYARD_AUTH_CACHE_SECONDS`` (:class:`KeyCache`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flagyard.control_plane import schemas
from flagyard.control_plane.exceptions import (
    AuthenticationError,
    Detail,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
)
from flagyard.control_plane.security import (
    Role,
    display_prefix,
    generate_key,
    hash_key,
    hashes_equal,
    parse_role,
)
from flagyard.control_plane.services.common import Actor, Result, Tx, get_environment, get_project, page_limit
from flagyard.db.models import ApiKey, Environment, Project


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Authenticated:
    actor: Actor
    expires_at: datetime | None
    fresh_until: float


class KeyCache:
    """Admin-API keys that authenticated recently, by hash, so most requests skip the key lookup.

    Only successful authentications are kept, for ``ttl`` seconds; a key's own expiry is still checked
    on every hit. A rotation or revocation committed through this process clears the cache at once;
    other control-plane processes notice within ``ttl``. ``ttl == 0`` disables the cache.
    """

    def __init__(self, ttl: float, max_entries: int = 4096) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: dict[str, _Authenticated] = {}
        self._lock = threading.Lock()

    def get(self, digest: str, now: datetime) -> Actor | None:
        entry = self._entries.get(digest)
        if entry is None or entry.fresh_until <= time.monotonic():
            return None
        if entry.expires_at is not None and entry.expires_at <= now:
            return None
        return entry.actor

    def put(self, digest: str, actor: Actor, expires_at: datetime | None) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
            self._entries[digest] = _Authenticated(actor, expires_at, time.monotonic() + self.ttl)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def key_digest(presented: str) -> str:
    """The stored form of a presented admin-API key; :class:`AuthenticationError` if it cannot be one."""
    if parse_role(presented) is None or len(presented) > 200:
        raise AuthenticationError("not a Flagyard API key")
    return hash_key(presented)


def cached_actor(presented: str, cache: KeyCache) -> Actor | None:
    """The actor of a key that authenticated within the cache's lifetime, without the database."""
    return cache.get(key_digest(presented), _now())


def authenticate(
    session: Session, presented: str, now: datetime | None = None, cache: KeyCache | None = None
) -> Actor:
    """The actor of an admin-API key; :class:`AuthenticationError` for anything not currently valid."""
    digest = key_digest(presented)
    now = now or _now()
    if cache is not None:
        cached = cache.get(digest, now)
        if cached is not None:
            return cached
    row = session.execute(
        sa.select(
            ApiKey.id,
            ApiKey.key_hash,
            ApiKey.prefix,
            ApiKey.role,
            ApiKey.project_id,
            ApiKey.expires_at,
            ApiKey.revoked_at,
        ).where(ApiKey.key_hash == digest)
    ).first()
    if row is None or not hashes_equal(row.key_hash, digest):
        raise AuthenticationError("unknown API key")
    if row.revoked_at is not None:
        raise AuthenticationError("the API key was revoked")
    if row.expires_at is not None and row.expires_at <= now:
        raise AuthenticationError("the API key has expired")
    if Role(row.role) is Role.SDK:
        raise PermissionDeniedError(
            "SDK keys are for the data plane; the admin API needs an admin, writer or reader key"
        )
    actor = Actor(key_id=row.id, prefix=row.prefix, role=Role(row.role), project_id=row.project_id)
    if cache is not None:
        cache.put(digest, actor, row.expires_at)
    return actor


def ensure_bootstrap_key(session: Session, key: str) -> bool:
    """Insert the bootstrap admin key if no key exists at all (first start). True if it was inserted."""
    if parse_role(key) is not Role.ADMIN:
        raise ValueError("the bootstrap key must be an fy_admin_ key")
    inserted = session.execute(
        sa.text(
            "INSERT INTO api_keys (name, role, key_hash, prefix) "
            "SELECT 'bootstrap', 'admin', :hash, :prefix WHERE NOT EXISTS (SELECT 1 FROM api_keys) "
            "ON CONFLICT DO NOTHING"
        ),
        {"hash": hash_key(key), "prefix": display_prefix(key)},
    )
    return bool(getattr(inserted, "rowcount", 0))


def key_body(k: ApiKey, project: str | None, environment: str | None) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "role": k.role,
        "project": project,
        "environment": environment,
        "prefix": k.prefix,
        "created_at": k.created_at,
        "expires_at": k.expires_at,
        "revoked_at": k.revoked_at,
        "replaces_key_id": k.replaces_key_id,
        "owner": k.owner,
    }


def _names(session: Session, k: ApiKey) -> tuple[str | None, str | None]:
    project = (
        session.scalar(sa.select(Project.key).where(Project.id == k.project_id)) if k.project_id else None
    )
    env = (
        session.scalar(sa.select(Environment.key).where(Environment.id == k.environment_id))
        if k.environment_id
        else None
    )
    return project, env


def _audit_project(session: Session, k: ApiKey) -> Project | None:
    return session.get(Project, k.project_id) if k.project_id else None


def _emit_sdk_key(tx: Tx, row: ApiKey) -> None:
    """SDK keys reach the data plane through the outbox too (entity_key: the key's id)."""
    if row.role == Role.SDK.value and row.environment_id is not None:
        tx.emit([row.environment_id], "sdk_key", str(row.id), 1, deleted=row.revoked_at is not None)


def _issue(
    tx: Tx,
    name: str,
    role: Role,
    project: Project | None,
    env: Environment | None,
    expires_at: datetime | None,
    replaces: int | None = None,
    owner: str = "",
) -> tuple[ApiKey, str]:
    key = generate_key(role)
    row = ApiKey(
        name=name,
        role=role.value,
        project_id=project.id if project else None,
        environment_id=env.id if env else None,
        key_hash=hash_key(key),
        prefix=display_prefix(key),
        created_by_key_id=tx.actor.key_id,
        expires_at=expires_at,
        replaces_key_id=replaces,
        owner=owner.strip(),
    )
    tx.session.add(row)
    tx.session.flush()
    _emit_sdk_key(tx, row)
    return row, key


REPLAY_REFUSED_CODE = "secret_not_replayable"


def secret_replay(key_id: int, location: str) -> Result:
    """The answer to a retry of a request that issued key ``key_id``: 409 naming the key, never its
    secret (shown once, stored only as a hash). ``Location`` points at the key."""
    message = (
        f"key {key_id} was issued by the first request with this Idempotency-Key; its secret is shown "
        f"only once and is not stored: rotate key {key_id} for a new secret, or revoke it"
    )
    body = {
        "code": REPLAY_REFUSED_CODE,
        "message": message,
        "details": [{"path": "/key", "message": "a key's secret is never replayed"}],
    }
    return Result(body, 409, location=location)


def _check_expiry(expires_at: datetime | None) -> None:
    if expires_at is None:
        return
    if expires_at.tzinfo is None:
        raise InvalidRequestError(
            "the request is invalid", [Detail("/expires_at", "give a time zone offset")]
        )
    if expires_at <= _now():
        raise InvalidRequestError("the request is invalid", [Detail("/expires_at", "must be in the future")])


def create_api_key(tx: Tx, body: schemas.ApiKeyCreate) -> Result:
    tx.actor.require(Role.ADMIN)
    _check_expiry(body.expires_at)
    project = None
    if body.project is not None:
        project = get_project(tx.session, tx.actor, body.project)
    elif not tx.actor.is_global_admin:
        raise PermissionDeniedError("a project-scoped key can only create keys for its own project")
    row, key = _issue(tx, body.name, Role(body.role), project, None, body.expires_at, owner=body.owner)
    tx.audit(
        project,
        "api_key",
        str(row.id),
        "created",
        {},
        {"name": row.name, "role": row.role, "prefix": row.prefix, "owner": row.owner},
    )
    location = f"/api/v1/api-keys/{row.id}"
    return Result(
        {**key_body(row, body.project, None), "key": key},
        201,
        location=location,
        replay=secret_replay(row.id, location),
    )


def _visible_key(tx_session: Session, actor: Actor, key_id: int, *, sdk: bool) -> ApiKey:
    row = tx_session.get(ApiKey, key_id)
    if row is None or (row.role == Role.SDK.value) != sdk:
        raise NotFoundError(f"key {key_id} does not exist")
    if actor.project_id is not None and row.project_id != actor.project_id:
        raise NotFoundError(f"key {key_id} does not exist")
    return row


def list_api_keys(
    session: Session, actor: Actor, *, limit: int, cursor: int | None, project: str | None
) -> Result:
    actor.require(Role.ADMIN)
    stmt = sa.select(ApiKey).where(ApiKey.role != Role.SDK.value)
    if actor.project_id is not None:
        stmt = stmt.where(ApiKey.project_id == actor.project_id)
    if project is not None:
        stmt = stmt.where(ApiKey.project_id == get_project(session, actor, project).id)
    if cursor is not None:
        stmt = stmt.where(ApiKey.id > cursor)
    limit = page_limit(limit)
    rows = list(session.scalars(stmt.order_by(ApiKey.id).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    projects = dict(
        session.execute(
            sa.select(Project.id, Project.key).where(
                Project.id.in_({r.project_id for r in rows if r.project_id})
            )
        ).all()
    )
    return Result(
        {
            "items": [key_body(r, projects.get(r.project_id) if r.project_id else None, None) for r in rows],
            "next_cursor": str(rows[-1].id) if more else None,
        }
    )


def read_api_key(session: Session, actor: Actor, key_id: int) -> Result:
    actor.require(Role.ADMIN)
    row = _visible_key(session, actor, key_id, sdk=False)
    return Result(key_body(row, *_names(session, row)))


def _rotate(tx: Tx, row: ApiKey, overlap_seconds: int) -> Result:
    if row.revoked_at is not None:
        raise InvalidRequestError("a revoked key cannot be rotated")
    now = _now()
    if row.expires_at is not None and row.expires_at <= now:
        raise InvalidRequestError("an expired key cannot be rotated")
    project = _audit_project(tx.session, row)
    env = tx.session.get(Environment, row.environment_id) if row.environment_id else None
    new, key = _issue(
        tx, row.name, Role(row.role), project, env, row.expires_at, replaces=row.id, owner=row.owner
    )
    ends = now + timedelta(seconds=overlap_seconds)
    row.expires_at = min(ends, row.expires_at) if row.expires_at else ends
    tx.keys_changed = True
    _emit_sdk_key(tx, row)
    tx.audit(
        project,
        "sdk_key" if row.role == Role.SDK.value else "api_key",
        str(row.id),
        "rotated",
        {"expires_at": None},
        {"expires_at": row.expires_at.isoformat(), "replaced_by": new.id},
        environment=env.key if env else None,
    )
    body = {**key_body(new, project.key if project else None, env.key if env else None), "key": key}
    location = (
        f"/api/v1/projects/{project.key}/environments/{env.key}/sdk-keys/{new.id}"
        if project is not None and env is not None
        else f"/api/v1/api-keys/{new.id}"
    )
    return Result(body, 201, replay=secret_replay(new.id, location))


def _revoke(tx: Tx, row: ApiKey) -> Result:
    if row.revoked_at is None:
        row.revoked_at = _now()
        tx.keys_changed = True
        _emit_sdk_key(tx, row)
        project = _audit_project(tx.session, row)
        env = tx.session.get(Environment, row.environment_id) if row.environment_id else None
        tx.audit(
            project,
            "sdk_key" if row.role == Role.SDK.value else "api_key",
            str(row.id),
            "revoked",
            {},
            {"revoked_at": row.revoked_at.isoformat()},
            environment=env.key if env else None,
        )
    return Result(None, 204)


def rotate_api_key(tx: Tx, key_id: int, body: schemas.RotateIn, default_overlap: int) -> Result:
    tx.actor.require(Role.ADMIN)
    row = _visible_key(tx.session, tx.actor, key_id, sdk=False)
    return _rotate(tx, row, body.overlap_seconds if body.overlap_seconds is not None else default_overlap)


def update_api_key(tx: Tx, key_id: int, body: schemas.ApiKeyUpdate) -> Result:
    """Set a key's owner (an admin; audited, since the owner is what self-approval is judged by). Approvals
    already given keep the identity they were given as."""
    tx.actor.require(Role.ADMIN)
    row = _visible_key(tx.session, tx.actor, key_id, sdk=False)
    before = row.owner
    row.owner = body.owner.strip()
    tx.session.flush()
    if row.owner != before:
        tx.audit(
            _audit_project(tx.session, row),
            "api_key",
            str(row.id),
            "updated",
            {"owner": before},
            {"owner": row.owner},
        )
    return Result(key_body(row, *_names(tx.session, row)))


def revoke_api_key(tx: Tx, key_id: int) -> Result:
    tx.actor.require(Role.ADMIN)
    return _revoke(tx, _visible_key(tx.session, tx.actor, key_id, sdk=False))


# --- SDK keys ------------------------------------------------------------------------------------


def _sdk_key(tx: Tx, project_key: str, env_key: str, key_id: int) -> ApiKey:
    project = get_project(tx.session, tx.actor, project_key)
    env = get_environment(tx.session, project, env_key)
    row = tx.session.get(ApiKey, key_id)
    if row is None or row.role != Role.SDK.value or row.environment_id != env.id:
        raise NotFoundError(f"SDK key {key_id} does not exist in environment '{env_key}'")
    return row


def create_sdk_key(tx: Tx, project_key: str, env_key: str, body: schemas.SdkKeyCreate) -> Result:
    tx.actor.require(Role.ADMIN)
    _check_expiry(body.expires_at)
    project = get_project(tx.session, tx.actor, project_key)
    env = get_environment(tx.session, project, env_key)
    row, key = _issue(tx, body.name, Role.SDK, project, env, body.expires_at)
    tx.audit(
        project,
        "sdk_key",
        str(row.id),
        "created",
        {},
        {"name": row.name, "prefix": row.prefix},
        environment=env.key,
    )
    location = f"/api/v1/projects/{project.key}/environments/{env.key}/sdk-keys/{row.id}"
    return Result(
        {**key_body(row, project.key, env.key), "key": key},
        201,
        location=location,
        replay=secret_replay(row.id, location),
    )


def list_sdk_keys(session: Session, actor: Actor, project_key: str, env_key: str) -> Result:
    actor.require(Role.ADMIN)
    project = get_project(session, actor, project_key)
    env = get_environment(session, project, env_key)
    rows = session.scalars(
        sa.select(ApiKey)
        .where(ApiKey.environment_id == env.id, ApiKey.role == Role.SDK.value)
        .order_by(ApiKey.id)
    )
    return Result({"items": [key_body(r, project.key, env.key) for r in rows], "next_cursor": None})


def rotate_sdk_key(
    tx: Tx, project_key: str, env_key: str, key_id: int, body: schemas.RotateIn, default_overlap: int
) -> Result:
    tx.actor.require(Role.ADMIN)
    row = _sdk_key(tx, project_key, env_key, key_id)
    return _rotate(tx, row, body.overlap_seconds if body.overlap_seconds is not None else default_overlap)


def revoke_sdk_key(tx: Tx, project_key: str, env_key: str, key_id: int) -> Result:
    tx.actor.require(Role.ADMIN)
    return _revoke(tx, _sdk_key(tx, project_key, env_key, key_id))
