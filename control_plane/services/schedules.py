"""Scheduled changes: any change a writer can make (toggle, environment configuration, segment change,
rollback), recorded now and applied at a given time by the scheduler (``control_plane/scheduler.py``).

A schedule is applied through the very service function a direct change calls (:mod:`.flags`,
:mod:`.segments`), as the key that scheduled it, in the transaction that marks it ``applied``: one write
path, one version, one audit entry naming that key, one set of outbox rows. It is checked twice: when it
is made (the change is run as a dry run inside a savepoint that is rolled back, so a bad one fails at
once with the same 422 pointers, prefixed by ``/body``) and when it is applied.

The change itself, its dry run and its base (the three-way check at its time: a newer change of a field it
writes makes it ``failed`` with ``conflict``) are :mod:`.proposed`'s, shared with change requests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flagyard.control_plane import schemas
from flagyard.control_plane.exceptions import (
    AuthenticationError,
    ConflictError,
    ControlPlaneError,
    Detail,
    InvalidRequestError,
)
from flagyard.control_plane.security import Role
from flagyard.control_plane.services import proposed
from flagyard.control_plane.services.common import (
    Actor,
    ProjectRef,
    Result,
    Tx,
    environment_scope,
    etag,
    find_in_environment,
    get_environment,
    get_project,
    page_limit,
)
from flagyard.db.models import ApiKey, Environment, Project, ScheduledChange

MAX_PENDING_PER_ENVIRONMENT = 1000
"""Pending schedules of one environment (checked under a lock on the environment row)."""
MAX_PENDING_BYTES_PER_ENVIRONMENT = 64 * 1024 * 1024
"""Bodies (compact JSON) of an environment's pending schedules together: with the count, what one writer
can make the database hold for later (a segment body alone may be a few MiB)."""
MAX_LEAD = timedelta(days=366)
"""How far ahead a change may be scheduled."""
CLOCK_SKEW = timedelta(seconds=5)
"""How far in the past ``apply_at`` may lie (the client's clock); such a change applies at once."""
MAX_ROTATION_CHAIN = 32
"""Rotations followed from the scheduling key to the key that acts for it now."""


def location(project: str, env: str, change_id: int) -> str:
    return f"/api/v1/projects/{project}/environments/{env}/scheduled-changes/{change_id}"


# --- making, reading, rescheduling, cancelling ---------------------------------------------------


def check_apply_at(apply_at: datetime, now: datetime) -> datetime:
    if apply_at.tzinfo is None:  # the schema takes only aware times; a direct caller might not
        raise InvalidRequestError("the request is invalid", [Detail("/apply_at", "needs a UTC offset")])
    if apply_at < now - CLOCK_SKEW:
        raise InvalidRequestError(
            "the request is invalid", [Detail("/apply_at", f"is in the past (now is {now.isoformat()})")]
        )
    if apply_at > now + MAX_LEAD:
        raise InvalidRequestError(
            "the request is invalid",
            [Detail("/apply_at", f"is more than {MAX_LEAD.days} days ahead")],
        )
    return apply_at.astimezone(UTC)


def lock_environment(session: Session, project: Project, env_key: str) -> Environment:
    """The environment, locked against concurrent schedulings (``FOR NO KEY UPDATE``: inserts that
    reference it do not wait), so two cannot pass the pending bound together."""
    env = get_environment(session, project, env_key)
    session.execute(sa.select(Environment.id).where(Environment.id == env.id).with_for_update(key_share=True))
    return env


def _pending(session: Session, environment_id: int) -> tuple[int, int]:
    """(pending schedules, their bodies' bytes) of an environment."""
    count, size = session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(ScheduledChange.payload_bytes), 0)).where(
            ScheduledChange.environment_id == environment_id, ScheduledChange.status == "pending"
        )
    ).one()
    return int(count), int(size)


def ensure_room(session: Session, env: Environment, payload_bytes: int) -> None:
    """422 unless the environment can hold one more pending schedule of this size (under its lock)."""
    pending, size = _pending(session, env.id)
    if pending >= MAX_PENDING_PER_ENVIRONMENT:
        message = (
            f"environment '{env.key}' has {pending} pending scheduled changes, the most it may hold "
            f"(MAX_PENDING_PER_ENVIRONMENT): cancel some first"
        )
        raise InvalidRequestError(message, [Detail("", message)])
    if size + payload_bytes > MAX_PENDING_BYTES_PER_ENVIRONMENT:
        message = (
            f"environment '{env.key}' holds {size} bytes of pending scheduled changes; this one "
            f"({payload_bytes} bytes) would pass {MAX_PENDING_BYTES_PER_ENVIRONMENT} "
            f"(MAX_PENDING_BYTES_PER_ENVIRONMENT): cancel some first"
        )
        raise InvalidRequestError(message, [Detail("/body", message)])


def change_body(row: ScheduledChange, project: str, environment: str) -> dict[str, Any]:
    failure = None
    if row.failure_code is not None:
        failure = {
            "code": row.failure_code,
            "message": row.failure_message or "",
            "details": list(row.failure_details or []),
        }
    return {
        "id": row.id,
        "project": project,
        "environment": environment,
        "kind": row.kind,
        "target": row.target_key,
        "body": row.payload,
        "comment": row.comment,
        "apply_at": row.apply_at,
        "status": row.status,
        "base_version": row.base_version,
        "created_by_key_id": row.created_by_key_id,
        "created_by_key_prefix": row.created_by_key_prefix,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
        "applied_at": row.applied_at,
        "applied_version": row.applied_version,
        "failure": failure,
        "change_request_id": row.change_request_id,
    }


def create_change(
    tx: Tx, project_key: str, env_key: str, body: schemas.ScheduledChangeCreate, now: datetime | None = None
) -> Result:
    """Schedule a change: checked now exactly as it would be applied (a dry run rolled back)."""
    tx.actor.require(Role.WRITER)
    s = tx.session
    now = now or datetime.now(UTC)
    project = get_project(s, tx.actor, project_key)
    apply_at = check_apply_at(body.apply_at, now)
    payload = proposed.stored(body.kind, body.body)
    payload_bytes = len(orjson.dumps(payload))
    env = lock_environment(s, project, env_key)
    ensure_room(s, env, payload_bytes)
    target = proposed.dry_run(tx, project.key, env.key, body.kind, body.target, payload, body.comment)
    row = ScheduledChange(
        project_id=project.id,
        environment_id=env.id,
        kind=body.kind,
        target_key=body.target,
        payload=payload,
        payload_bytes=payload_bytes,
        comment=body.comment,
        apply_at=apply_at,
        status="pending",
        base_version=target.version,
        base=proposed.base_of(target),
        created_by_key_id=tx.actor.key_id,
        created_by_key_prefix=tx.actor.prefix,
    )
    s.add(row)
    s.flush()
    s.refresh(row)
    tx.audit(
        project,
        "scheduled_change",
        str(row.id),
        "scheduled",
        {},
        {
            "kind": row.kind,
            "target": row.target_key,
            "apply_at": apply_at.isoformat(),
            "base_version": target.version,
            "body": payload,
        },
        environment=env.key,
        comment=body.comment,
    )
    return Result(
        change_body(row, project.key, env.key), 201, location=location(project.key, env.key, row.id)
    )


def _find(
    session: Session, actor: Actor, project_key: str, env_key: str, change_id: int, *, lock: bool = False
) -> tuple[Project, Environment, ScheduledChange]:
    project, env = environment_scope(session, actor, project_key, env_key)
    return (
        project,
        env,
        find_in_environment(session, ScheduledChange, env, change_id, "scheduled change", lock=lock),
    )


def list_changes(
    session: Session,
    actor: Actor,
    project_key: str,
    env_key: str,
    *,
    status: str | None,
    limit: int,
    cursor: int | None,
) -> Result:
    """Newest first; ``next_cursor`` is the last id shown."""
    project, env = environment_scope(session, actor, project_key, env_key)
    limit = page_limit(limit)
    stmt = sa.select(ScheduledChange).where(ScheduledChange.environment_id == env.id)
    if status is not None:
        stmt = stmt.where(ScheduledChange.status == status)
    if cursor is not None:
        stmt = stmt.where(ScheduledChange.id < cursor)
    rows = list(session.scalars(stmt.order_by(ScheduledChange.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Result(
        {
            "items": [change_body(r, project.key, env.key) for r in rows],
            "next_cursor": str(rows[-1].id) if more else None,
        }
    )


def read_change(session: Session, actor: Actor, project_key: str, env_key: str, change_id: int) -> Result:
    project, env, row = _find(session, actor, project_key, env_key, change_id)
    return Result(change_body(row, project.key, env.key))


def _still_pending(row: ScheduledChange) -> None:
    if row.status != "pending":
        raise ConflictError(f"scheduled change {row.id} is {row.status}; only a pending one can change")


def reschedule_change(
    tx: Tx,
    project_key: str,
    env_key: str,
    change_id: int,
    body: schemas.ScheduledChangeUpdate,
    now: datetime | None = None,
) -> Result:
    """Move a pending change (its row locked: a scheduler applying it finishes first, then this is 409)."""
    tx.actor.require(Role.WRITER)
    project, env, row = _find(tx.session, tx.actor, project_key, env_key, change_id, lock=True)
    _still_pending(row)
    apply_at = check_apply_at(body.apply_at, now or datetime.now(UTC))
    before = row.apply_at.isoformat()
    row.apply_at = apply_at
    row.updated_at = sa.func.now()
    tx.session.flush()
    tx.session.refresh(row)
    tx.audit(
        project,
        "scheduled_change",
        str(row.id),
        "rescheduled",
        {"apply_at": before},
        {"apply_at": apply_at.isoformat()},
        environment=env.key,
    )
    return Result(change_body(row, project.key, env.key))


def cancel_change(tx: Tx, project_key: str, env_key: str, change_id: int) -> Result:
    tx.actor.require(Role.WRITER)
    project, env, row = _find(tx.session, tx.actor, project_key, env_key, change_id, lock=True)
    _still_pending(row)
    if row.change_request_id is not None:
        raise ConflictError(
            f"scheduled change {row.id} applies change request {row.change_request_id}: withdraw the "
            "request instead (its author)"
        )
    row.status = "cancelled"
    row.updated_at = sa.func.now()
    tx.session.flush()
    tx.session.refresh(row)
    tx.audit(
        project,
        "scheduled_change",
        str(row.id),
        "cancelled",
        {"status": "pending"},
        {"status": "cancelled"},
        environment=env.key,
    )
    return Result(change_body(row, project.key, env.key))


# --- applying (the scheduler) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Claimed:
    """A due change, its row locked until the transaction ends."""

    row: ScheduledChange
    project: ProjectRef
    environment: str


def claim(session: Session, now: datetime) -> Claimed | None:
    """The most overdue pending change, locked; ``SKIP LOCKED``, so schedulers never take the same one
    (and one re-read after another's commit no longer matches ``status = 'pending'``)."""
    row = session.scalars(
        sa.select(ScheduledChange)
        .where(ScheduledChange.status == "pending", ScheduledChange.apply_at <= now)
        .order_by(ScheduledChange.apply_at, ScheduledChange.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    ).first()
    if row is None:
        return None
    project_key, env_key = session.execute(
        sa.select(Project.key, Environment.key)
        .join(Environment, Environment.project_id == Project.id)
        .where(Environment.id == row.environment_id)
    ).one()
    return Claimed(row, ProjectRef(row.project_id, project_key), env_key)


def author(session: Session, row: ScheduledChange, now: datetime) -> Actor:
    """The key that acts for the schedule's author now: the author's key, or the key that replaced it
    by rotation once it expired. 401 (so the change fails) if revoked, expired without replacement or
    deleted; its role and scope are checked again by the change itself."""
    return acting_key(session, row.created_by_key_id, now)


def acting_key(session: Session, key_id: int | None, now: datetime) -> Actor:
    """The key that acts for key ``key_id`` now (itself, or its rotation successor once it expired)."""
    for _ in range(MAX_ROTATION_CHAIN):
        key = session.get(ApiKey, key_id) if key_id is not None else None
        if key is None:
            raise AuthenticationError("the key that made the change no longer exists")
        if key.revoked_at is not None:
            raise AuthenticationError(f"the key that made the change ({key.prefix}…) was revoked")
        if key.expires_at is None or key.expires_at > now:
            return Actor(key.id, key.prefix, Role(key.role), key.project_id)
        key_id = session.scalar(
            sa.select(ApiKey.id).where(ApiKey.replaces_key_id == key.id).order_by(ApiKey.id.desc()).limit(1)
        )
        if key_id is None:
            raise AuthenticationError(f"the key that made the change ({key.prefix}…) has expired")
    raise AuthenticationError("the key that made the change was rotated too many times to follow")


def failure_actor(row: ScheduledChange) -> Actor:
    """Who a failure's audit entry names: the schedule's author (whatever its key's state now)."""
    return Actor(row.created_by_key_id, row.created_by_key_prefix, Role.READER, None)


def request_id(change_id: int) -> str:
    return f"scheduled-change-{change_id}"


def apply_claimed(tx: Tx, claimed: Claimed) -> int:
    """Make the change (the three-way check, then the direct change's service function) and mark the
    schedule applied, in ``tx``. The applied version, or a :class:`ControlPlaneError` to record as the
    failure (``conflict`` when a field it changes changed since it was scheduled)."""
    row, project, env_key = claimed.row, claimed.project, claimed.environment
    payload = dict(row.payload)
    comment = f"scheduled change #{row.id}" + (f": {row.comment}" if row.comment else "")
    if row.change_request_id is not None:
        # An approved change request applied at its time: still scheduled (so unedited) and approved,
        # and on its base; then it passes the approval policy, as its apply now would.
        from flagyard.control_plane.services import change_requests

        request, _ = change_requests.check_scheduled(tx.session, row.change_request_id)
        tx.approved = True
    target = proposed.lock_target(tx, project.key, env_key, row.kind, row.target_key, payload)
    if row.change_request_id is not None:
        change_requests.check_base(request, target)
    moved = proposed.moved(target, dict(row.base), row.base_version, "scheduled")
    if moved:
        raise ConflictError(
            f"the {'segment' if row.kind in proposed.SEGMENT_KINDS else 'flag'} changed since version "
            f"{row.base_version} in fields this change also changes (now version {target.version})",
            moved,
        )
    tx.if_match = etag(target.version)
    result = proposed.run(
        tx, project.key, env_key, row.kind, row.target_key, proposed.body(row.kind, payload, comment[:2000])
    )
    version = int(result.body["version"])
    row.status = "applied"
    row.applied_at = sa.func.now()
    row.updated_at = sa.func.now()
    row.applied_version = version
    if row.change_request_id is not None:
        change_requests.finish_scheduled(tx.session, row.change_request_id, version)
    tx.session.flush()
    tx.audit(
        project,
        "scheduled_change",
        str(row.id),
        "applied",
        {"status": "pending"},
        {"status": "applied", "version": version},
        environment=env_key,
        version=version,
        comment=comment,
    )
    return version


def record_failure(tx: Tx, claimed: Claimed, error: ControlPlaneError) -> None:
    """Mark the schedule failed with the change's error, audited (as its author), in ``tx``."""
    row = claimed.row
    row.status = "failed"
    row.updated_at = sa.func.now()
    row.failure_code = error.code[:32]
    row.failure_message = error.message
    row.failure_details = [d.as_dict() for d in error.details[:100]]
    if row.change_request_id is not None:
        from flagyard.control_plane.services import change_requests

        change_requests.finish_scheduled(tx.session, row.change_request_id, None)
    tx.session.flush()
    tx.audit(
        claimed.project,
        "scheduled_change",
        str(row.id),
        "failed",
        {"status": "pending"},
        {"status": "failed", "code": row.failure_code, "message": error.message},
        environment=claimed.environment,
        comment=f"scheduled change #{row.id} failed: {error.message}"[:2000],
    )


def backlog(session: Session, now: datetime) -> tuple[int, int]:
    """(pending schedules, those of them already due)."""
    pending, overdue = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.count().filter(ScheduledChange.apply_at <= now),
        ).where(ScheduledChange.status == "pending")
    ).one()
    return int(pending), int(overdue)
