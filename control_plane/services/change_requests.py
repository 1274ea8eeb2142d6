"""Change requests: a proposed change to an environment with an approval policy, reviewed before it is
applied.

An environment's ``approvals_required`` (0 to 10, set by an admin) makes every direct change of what it
serves 409 ``approval_required`` (:meth:`.common.Tx.emit`). The change is proposed instead as a request:
the same kind, target and body as a scheduled change (:mod:`.proposed`: dry run at proposal, base version
and digests of the fields it writes). Reviewers approve or reject one **revision** of it; an edit or a
rebase makes a new revision, so approvals given before no longer count. It is applied (by its author or an
approver of the current revision, once ``approvals_required`` distinct owners other than the author's have
approved it) through the direct change's service function as its **author**, with ``Tx.approved`` set: the
only way past the policy. A request whose target moved since its base is 409 ``rebase_required``, never
applied blind. ``apply_at`` applies it later through a scheduled change linked to it; the scheduler checks
again that it is still approved, unedited and on its base.

Identity: approvals count people. A key's identity is its ``owner`` (trimmed, case-insensitive) and the
first key of its rotation chain; a reviewer sharing either with the author is refused (403
``self_approval``), and two approvals sharing an owner count once.

Every step is audited as resource ``change_request`` (``created``, ``edited``, ``rebased``, ``commented``,
``approved``, ``rejected``, ``withdrawn``, ``scheduled``, ``applied``, ``failed``); the change itself is
audited as usual, naming the author's key, with request id ``change-request-<id>`` in its comment.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flagyard.control_plane import schemas
from flagyard.control_plane.exceptions import (
    ApprovalRequiredError,
    AuthenticationError,
    ConflictError,
    Detail,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    RebaseRequiredError,
    SelfApprovalError,
)
from flagyard.control_plane.security import Role
from flagyard.control_plane.services import flags as flag_ops
from flagyard.control_plane.services import proposed, schedules
from flagyard.control_plane.services import segments as segment_ops
from flagyard.control_plane.services.common import (
    Actor,
    Result,
    Tx,
    environment_scope,
    environments_of,
    etag,
    find_in_environment,
    get_environment,
    get_project,
    page_limit,
)
from flagyard.control_plane.services.diff import json_diff
from flagyard.db import mapping as m
from flagyard.db.models import (
    ApiKey,
    ChangeRequest,
    ChangeRequestEvent,
    Environment,
    Project,
    ScheduledChange,
)

MAX_OPEN_PER_ENVIRONMENT = 1000
"""Open (or approved, or scheduled) requests of one environment, counted under a lock on its row."""
MAX_EVENTS_PER_REQUEST = 1000
"""Comments, approvals and rejections of one request, counted under its row lock."""
_LIVE = ("open", "approved", "scheduled")
_EDITABLE = ("open", "approved")


def location(project: str, env: str, request_id: int) -> str:
    return f"/api/v1/projects/{project}/environments/{env}/change-requests/{request_id}"


def audit_request_id(request_id: int) -> str:
    return f"change-request-{request_id}"


# --- identity ------------------------------------------------------------------------------------


def identities(session: Session, key_id: int) -> tuple[str, set[str]]:
    """(the identity an approval by ``key_id`` counts as, every identity the key shares): its owner
    (``owner:<trimmed, lower-case>``) when it has one, and ``key:<id>`` of the first key of its rotation
    chain (a rotated key is its predecessor's successor, the same person)."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise AuthenticationError("the key no longer exists")
    owner = key.owner.strip().casefold()
    root = key
    for _ in range(schedules.MAX_ROTATION_CHAIN):
        if root.replaces_key_id is None:
            break
        previous = session.get(ApiKey, root.replaces_key_id)
        if previous is None:
            break
        root = previous
        owner = owner or root.owner.strip().casefold()
    chain = f"key:{root.id}"
    if owner:
        return f"owner:{owner}"[:200], {f"owner:{owner}"[:200], chain}
    return chain, {chain}


# --- reading -------------------------------------------------------------------------------------


def _required(session: Session, env: Environment, kind: str) -> int:
    """The approvals a request needs: its environment's policy, or for a segment (project-wide, so it
    reaches every environment) the strictest policy of the project."""
    if kind in proposed.SEGMENT_KINDS:
        return max((e.approvals_required for e in environments_of(session, env.project_id)), default=0)
    return env.approvals_required


def _approvers(session: Session, row: ChangeRequest) -> set[str]:
    """The distinct identities that approved the current revision."""
    return set(
        session.scalars(
            sa.select(ChangeRequestEvent.owner).where(
                ChangeRequestEvent.request_id == row.id,
                ChangeRequestEvent.action == "approve",
                ChangeRequestEvent.revision == row.revision,
            )
        )
    )


def _bodies(
    session: Session, rows: list[ChangeRequest], project: str, env: Environment
) -> list[dict[str, Any]]:
    """The API's view of requests of one environment: three statements whatever their number."""
    ids = [r.id for r in rows]
    approvals: dict[tuple[int, int], int] = {
        (request_id, revision): int(n)
        for request_id, revision, n in session.execute(
            sa.select(
                ChangeRequestEvent.request_id,
                ChangeRequestEvent.revision,
                sa.func.count(sa.distinct(ChangeRequestEvent.owner)),
            )
            .where(ChangeRequestEvent.request_id.in_(ids), ChangeRequestEvent.action == "approve")
            .group_by(ChangeRequestEvent.request_id, ChangeRequestEvent.revision)
        )
    }
    scheduled = dict(
        session.execute(
            sa.select(ScheduledChange.change_request_id, sa.func.max(ScheduledChange.id))
            .where(ScheduledChange.change_request_id.in_(ids))
            .group_by(ScheduledChange.change_request_id)
        ).all()
    )
    flag_policy = env.approvals_required
    segment_policy = (
        _required(session, env, "segment") if any(r.kind in proposed.SEGMENT_KINDS for r in rows) else 0
    )
    return [
        {
            "id": row.id,
            "project": project,
            "environment": env.key,
            "title": row.title,
            "description": row.description,
            "kind": row.kind,
            "target": row.target_key,
            "body": row.payload,
            "status": row.status,
            "revision": row.revision,
            "base_version": row.base_version,
            "approvals_required": segment_policy if row.kind in proposed.SEGMENT_KINDS else flag_policy,
            "approvals": approvals.get((row.id, row.revision), 0),
            "author_key_id": row.author_key_id,
            "author_key_prefix": row.author_key_prefix,
            "created_at": row.created_at,
            "updated_at": row.updated_at,
            "applied_at": row.applied_at,
            "applied_version": row.applied_version,
            "applied_by_key_id": row.applied_by_key_id,
            "scheduled_change_id": scheduled.get(row.id),
        }
        for row in rows
    ]


def _body(session: Session, row: ChangeRequest, project: str, env: Environment) -> dict[str, Any]:
    return _bodies(session, [row], project, env)[0]


def _find(
    session: Session, actor: Actor, project_key: str, env_key: str, request_id: int, *, lock: bool = False
) -> tuple[Project, Environment, ChangeRequest]:
    project, env = environment_scope(session, actor, project_key, env_key)
    return (
        project,
        env,
        find_in_environment(session, ChangeRequest, env, request_id, "change request", lock=lock),
    )


def list_requests(
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
    actor.require(Role.READER)
    project, env = environment_scope(session, actor, project_key, env_key)
    limit = page_limit(limit)
    stmt = sa.select(ChangeRequest).where(ChangeRequest.environment_id == env.id)
    if status is not None:
        stmt = stmt.where(ChangeRequest.status == status)
    if cursor is not None:
        stmt = stmt.where(ChangeRequest.id < cursor)
    rows = list(session.scalars(stmt.order_by(ChangeRequest.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Result(
        {
            "items": _bodies(session, rows, project.key, env) if rows else [],
            "next_cursor": str(rows[-1].id) if more else None,
        }
    )


def _snapshot(tx: Tx, project_key: str, kind: str, key: str) -> tuple[int, dict[str, Any]]:
    """The target as the API shows its versions' snapshots, locked."""
    if kind in proposed.SEGMENT_KINDS:
        seg = segment_ops.locked(tx, project_key, key)
        return seg.version, dict(seg.definition)
    flag = flag_ops.locked(tx, project_key, key)
    snapshot = m.flag_snapshot(flag.definition, flag.configs())
    snapshot.pop("salt", None)
    return flag.version, snapshot


def _diff(
    session: Session, actor: Actor, project: Project, env: Environment, row: ChangeRequest
) -> tuple[int | None, list[dict[str, Any]]]:
    """(current version, what applying the request now would change): the change is run in a savepoint
    that is rolled back, as its dry run is, and the target read before and after. The reader's key runs
    it with the writer role inside that savepoint only: nothing of it is kept, and the reader may read
    the target anyway."""
    acting = Actor(actor.key_id, actor.prefix, Role.WRITER, actor.project_id)
    dry = Tx(session, acting, approved=True)
    savepoint = session.begin_nested()
    try:
        try:
            version, before = _snapshot(dry, project.key, row.kind, row.target_key)
        except NotFoundError:
            return None, []  # the target was deleted since: nothing to apply it to
        try:
            dry.if_match = etag(version)
            proposed.run(
                dry,
                project.key,
                env.key,
                row.kind,
                row.target_key,
                proposed.body(row.kind, dict(row.payload)),
            )
            dry.run_deferred()
            _, after = _snapshot(dry, project.key, row.kind, row.target_key)
        except (ConflictError, InvalidRequestError, NotFoundError):
            after = before  # e.g. a rollback to the current state, or no longer valid: nothing to show
        return version, json_diff(before, after)
    finally:
        savepoint.rollback()
        dry.discard()


def read_request(session: Session, actor: Actor, project_key: str, env_key: str, request_id: int) -> Result:
    actor.require(Role.READER)
    project, env, row = _find(session, actor, project_key, env_key, request_id)
    version, diff = _diff(session, actor, project, env, row)
    events = session.scalars(
        sa.select(ChangeRequestEvent)
        .where(ChangeRequestEvent.request_id == row.id)
        .order_by(ChangeRequestEvent.id)
    )
    body = _body(session, row, project.key, env)
    body.update(
        current_version=version,
        diff=diff,
        events=[
            {
                "id": e.id,
                "action": e.action,
                "revision": e.revision,
                "body": e.body,
                "key_id": e.key_id,
                "key_prefix": e.key_prefix,
                "owner": e.owner,
                "created_at": e.created_at,
            }
            for e in events
        ],
    )
    return Result(body, etag=etag(row.revision))


# --- proposing and editing -----------------------------------------------------------------------


def _propose(tx: Tx, project: Project, env: Environment, kind: str, key: str, payload: dict[str, Any]) -> Any:
    """The request's change checked now (a dry run past the policy: it is what the request is for)."""
    approved, tx.approved = tx.approved, True
    try:
        return proposed.dry_run(tx, project.key, env.key, kind, key, payload)
    finally:
        tx.approved = approved


def _payload(kind: str, body: dict[str, Any]) -> dict[str, Any]:
    """The body as stored: its size is bounded by the request's (``limits.MAX_REQUEST_BODY_BYTES``) and
    its content by the direct change's own bounds, which the dry run applies (a segment ≤ 2 MiB)."""
    return proposed.stored(kind, body)


def _lock_environment(session: Session, project: Project, env_key: str) -> Environment:
    env = get_environment(session, project, env_key)
    session.execute(sa.select(Environment.id).where(Environment.id == env.id).with_for_update(key_share=True))
    return env


def create_request(tx: Tx, project_key: str, env_key: str, body: schemas.ChangeRequestCreate) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    project = get_project(s, tx.actor, project_key)
    payload = _payload(body.kind, body.body)
    env = _lock_environment(s, project, env_key)
    live = s.scalar(
        sa.select(sa.func.count()).where(
            ChangeRequest.environment_id == env.id, ChangeRequest.status.in_(_LIVE)
        )
    )
    if (live or 0) >= MAX_OPEN_PER_ENVIRONMENT:
        message = (
            f"environment '{env.key}' has {live} open change requests, the most it may hold "
            f"(MAX_OPEN_PER_ENVIRONMENT): withdraw or reject some first"
        )
        raise InvalidRequestError(message, [Detail("", message)])
    target = _propose(tx, project, env, body.kind, body.target, payload)
    row = ChangeRequest(
        project_id=project.id,
        environment_id=env.id,
        title=body.title,
        description=body.description,
        kind=body.kind,
        target_key=body.target,
        payload=payload,
        status="open",
        revision=1,
        base_version=target.version,
        base=proposed.base_of(target),
        author_key_id=tx.actor.key_id,
        author_key_prefix=tx.actor.prefix,
    )
    s.add(row)
    s.flush()
    s.refresh(row)
    _audit(tx, project, env, row, "created", {}, _audited(row))
    return Result(
        _body(s, row, project.key, env), 201, etag(row.revision), location(project.key, env.key, row.id)
    )


def _audited(row: ChangeRequest) -> dict[str, Any]:
    return {
        "title": row.title,
        "kind": row.kind,
        "target": row.target_key,
        "body": row.payload,
        "revision": row.revision,
        "base_version": row.base_version,
        "status": row.status,
    }


def _audit(
    tx: Tx,
    project: Project,
    env: Environment,
    row: ChangeRequest,
    action: str,
    before: Any,
    after: Any,
    comment: str = "",
    version: int | None = None,
) -> None:
    tx.audit(
        project,
        "change_request",
        str(row.id),
        action,
        before,
        after,
        environment=env.key,
        version=version,
        comment=comment[:2000],
    )


def _require_author(session: Session, actor: Actor, row: ChangeRequest, what: str) -> None:
    """The request's author: its key, a key of its rotation chain, or another key of its owner."""
    _, mine = identities(session, actor.key_id)
    _, theirs = identities(session, row.author_key_id)
    if not mine & theirs:
        raise PermissionDeniedError(f"only the request's author may {what} it")


def _editable(row: ChangeRequest) -> None:
    if row.status not in _EDITABLE:
        raise ConflictError(f"change request {row.id} is {row.status}; only an open one can change")


def _new_revision(tx: Tx, project: Project, env: Environment, row: ChangeRequest) -> None:
    """Re-check the change and re-base it on the current state: a new revision, approvals cleared."""
    target = _propose(tx, project, env, row.kind, row.target_key, dict(row.payload))
    row.base_version = target.version
    row.base = proposed.base_of(target)
    row.revision += 1
    row.status = "open"
    row.updated_at = sa.func.now()


def update_request(
    tx: Tx, project_key: str, env_key: str, request_id: int, body: schemas.ChangeRequestUpdate
) -> Result:
    """Edit an open request (its author; If-Match: the revision): re-checked, re-based, approvals cleared."""
    tx.actor.require(Role.WRITER)
    s = tx.session
    project, env, row = _find(s, tx.actor, project_key, env_key, request_id, lock=True)
    tx.check_if_match(etag(row.revision))
    _require_author(s, tx.actor, row, "edit")
    _editable(row)
    before = _audited(row)
    if body.body is not None:
        row.payload = _payload(row.kind, body.body)
    if body.title is not None:
        row.title = body.title
    if body.description is not None:
        row.description = body.description
    _new_revision(tx, project, env, row)
    s.flush()
    s.refresh(row)
    _audit(tx, project, env, row, "edited", before, _audited(row))
    return Result(_body(s, row, project.key, env), etag=etag(row.revision))


def rebase_request(tx: Tx, project_key: str, env_key: str, request_id: int) -> Result:
    """Re-record the base on the current state (its author): a new revision, so approvals are cleared."""
    tx.actor.require(Role.WRITER)
    s = tx.session
    project, env, row = _find(s, tx.actor, project_key, env_key, request_id, lock=True)
    _require_author(s, tx.actor, row, "rebase")
    _editable(row)
    before = _audited(row)
    _new_revision(tx, project, env, row)
    s.flush()
    s.refresh(row)
    _audit(tx, project, env, row, "rebased", before, _audited(row))
    return Result(_body(s, row, project.key, env), etag=etag(row.revision))


# --- reviewing -----------------------------------------------------------------------------------


def _event(tx: Tx, row: ChangeRequest, action: str, text: str, owner: str) -> None:
    s = tx.session
    count = s.scalar(sa.select(sa.func.count()).where(ChangeRequestEvent.request_id == row.id)) or 0
    if count >= MAX_EVENTS_PER_REQUEST:
        message = f"change request {row.id} has {count} comments and reviews, the most it may hold"
        raise InvalidRequestError(message, [Detail("", message)])
    s.add(
        ChangeRequestEvent(
            request_id=row.id,
            action=action,
            revision=row.revision,
            body=text,
            key_id=tx.actor.key_id,
            key_prefix=tx.actor.prefix,
            owner=owner,
        )
    )


def comment_request(
    tx: Tx, project_key: str, env_key: str, request_id: int, body: schemas.ChangeRequestComment
) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    project, env, row = _find(s, tx.actor, project_key, env_key, request_id, lock=True)
    identity, _ = identities(s, tx.actor.key_id)
    _event(tx, row, "comment", body.body, identity)
    s.flush()
    _audit(tx, project, env, row, "commented", {}, {"revision": row.revision}, comment=body.body)
    return Result(_body(s, row, project.key, env), 201)


def _review(
    tx: Tx, project_key: str, env_key: str, request_id: int, body: schemas.ChangeRequestReview, action: str
) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    project, env, row = _find(s, tx.actor, project_key, env_key, request_id, lock=True)
    _editable(row)
    if body.revision != row.revision:
        raise ConflictError(
            f"change request {row.id} is at revision {row.revision}, not {body.revision}: it changed since "
            "you reviewed it; review it again",
            [Detail("/revision", f"the current revision is {row.revision}")],
        )
    identity, mine = identities(s, tx.actor.key_id)
    _, authors = identities(s, row.author_key_id)
    if mine & authors:
        raise SelfApprovalError(
            "a change request cannot be reviewed by its author (the same key, a key of its rotation chain, "
            "or another key of the same owner)"
        )
    before = {"status": row.status}
    if action == "approve":
        if identity in _approvers(s, row):
            raise ConflictError(f"'{identity}' already approved revision {row.revision}")
        _event(tx, row, "approve", body.comment, identity)
        s.flush()
        if len(_approvers(s, row)) >= _required(s, env, row.kind):
            row.status = "approved"
    else:
        _event(tx, row, "reject", body.comment, identity)
        row.status = "rejected"
    row.updated_at = sa.func.now()
    s.flush()
    s.refresh(row)
    verb = "approved" if action == "approve" else "rejected"
    after = {"status": row.status, "revision": row.revision, "as": identity}
    _audit(tx, project, env, row, verb, before, after, comment=body.comment)
    return Result(_body(s, row, project.key, env))


def approve_request(
    tx: Tx, project_key: str, env_key: str, request_id: int, body: schemas.ChangeRequestReview
) -> Result:
    return _review(tx, project_key, env_key, request_id, body, "approve")


def reject_request(
    tx: Tx, project_key: str, env_key: str, request_id: int, body: schemas.ChangeRequestReview
) -> Result:
    """Final: a rejected request is never applied (propose a new one)."""
    return _review(tx, project_key, env_key, request_id, body, "reject")


def withdraw_request(tx: Tx, project_key: str, env_key: str, request_id: int) -> Result:
    """Final (its author): a scheduled apply of it is cancelled too."""
    tx.actor.require(Role.WRITER)
    s = tx.session
    project, env, row = _find(s, tx.actor, project_key, env_key, request_id, lock=True)
    _require_author(s, tx.actor, row, "withdraw")
    if row.status not in _LIVE:
        raise ConflictError(f"change request {row.id} is {row.status}; only an open one can be withdrawn")
    before = {"status": row.status}
    # SKIP LOCKED: a schedule a scheduler is applying right now waits for this request's row lock, then
    # finds it withdrawn and fails without applying; waiting for it here would be a deadlock.
    pending = s.scalars(
        sa.select(ScheduledChange.id)
        .where(ScheduledChange.change_request_id == row.id, ScheduledChange.status == "pending")
        .with_for_update(skip_locked=True)
    ).all()
    if pending:
        s.execute(
            sa.update(ScheduledChange)
            .where(ScheduledChange.id.in_(pending))
            .values(status="cancelled", updated_at=sa.func.now())
        )
    row.status = "withdrawn"
    row.updated_at = sa.func.now()
    s.flush()
    s.refresh(row)
    _audit(tx, project, env, row, "withdrawn", before, {"status": row.status})
    return Result(_body(s, row, project.key, env))


# --- applying ------------------------------------------------------------------------------------


def _check_approved(session: Session, env: Environment, row: ChangeRequest) -> set[str]:
    approvers = _approvers(session, row)
    required = _required(session, env, row.kind)
    if len(approvers) < required:
        raise ApprovalRequiredError(
            f"change request {row.id} has {len(approvers)} of the {required} approvals it needs "
            f"(revision {row.revision})"
        )
    return approvers


def check_base(row: ChangeRequest, target: proposed.Target) -> None:
    """Refuse a request whose target moved since its base: the reviewers approved the change against that
    state, so even a change of other fields makes it stale (stricter than a schedule's three-way check)."""
    if target.version == row.base_version:
        return
    moved = proposed.moved(target, dict(row.base), row.base_version, "reviewed")
    raise RebaseRequiredError(
        f"the target changed since change request {row.id} was based on version {row.base_version} (now "
        f"version {target.version}): rebase it (POST …/rebase) and have it approved again",
        moved or [Detail("/base_version", f"the target is at version {target.version} now")],
    )


def apply_now(tx: Tx, project: Project, env: Environment, row: ChangeRequest, now: datetime) -> int:
    """Make the request's change as its author, past the policy, in ``tx``; the new version. The caller
    has checked the request (status, approvals) under its row lock."""
    author = schedules.acting_key(tx.session, row.author_key_id, now)
    actor, if_match, approved = tx.actor, tx.if_match, tx.approved
    tx.actor, tx.approved = author, True
    try:
        target = proposed.lock_target(tx, project.key, env.key, row.kind, row.target_key, dict(row.payload))
        check_base(row, target)
        tx.if_match = etag(target.version)
        comment = f"change request #{row.id}: {row.title}"[:2000]
        result = proposed.run(
            tx, project.key, env.key, row.kind, row.target_key, proposed.body(row.kind, row.payload, comment)
        )
    finally:
        tx.actor, tx.if_match, tx.approved = actor, if_match, approved
    return int(result.body["version"])


def apply_request(
    tx: Tx,
    project_key: str,
    env_key: str,
    request_id: int,
    body: schemas.ChangeRequestApply,
    now: datetime | None = None,
) -> Result:
    """Apply an approved request now, or schedule it (``apply_at``): its author or an approver of the
    current revision."""
    tx.actor.require(Role.WRITER)
    s = tx.session
    now = now or datetime.now(UTC)
    project, env, row = _find(s, tx.actor, project_key, env_key, request_id, lock=True)
    if row.status not in _EDITABLE:
        raise ConflictError(f"change request {row.id} is {row.status}; only an approved one can be applied")
    approvers = _check_approved(s, env, row)
    identity, mine = identities(s, tx.actor.key_id)
    _, authors = identities(s, row.author_key_id)
    # Without a policy any writer could make the change directly; with one, the author or an approver.
    if _required(s, env, row.kind) > 0 and not (mine & authors) and identity not in approvers:
        raise PermissionDeniedError("only the request's author or one of its approvers may apply it")
    before = {"status": row.status}
    try:
        if body.apply_at is not None:
            return _schedule(tx, project, env, row, body.apply_at, now)
        version = apply_now(tx, project, env, row, now)
    except AuthenticationError as exc:  # the author's key, not the caller's: not a 401
        raise ConflictError(f"the request cannot be applied as its author: {exc.message}") from None
    row.status = "applied"
    row.applied_at = sa.func.now()
    row.applied_version = version
    row.applied_by_key_id = tx.actor.key_id
    row.updated_at = sa.func.now()
    s.flush()
    s.refresh(row)
    after = {"status": "applied", "version": version, "approvers": sorted(approvers)}
    _audit(tx, project, env, row, "applied", before, after, version=version)
    return Result(_body(s, row, project.key, env))


def _schedule(
    tx: Tx, project: Project, env: Environment, row: ChangeRequest, apply_at: datetime, now: datetime
) -> Result:
    s = tx.session
    when = schedules.check_apply_at(apply_at, now)
    # A dry run now (past the policy), as the author, and the base must not have moved already.
    payload_bytes = len(orjson.dumps(row.payload))
    # The environment before the target, as a schedule's creation locks them.
    schedules.lock_environment(s, project, env.key)
    schedules.ensure_room(s, env, payload_bytes)
    author = schedules.acting_key(s, row.author_key_id, now)
    author_tx = Tx(s, author, tx.request_id, approved=True)
    target = proposed.dry_run(author_tx, project.key, env.key, row.kind, row.target_key, dict(row.payload))
    check_base(row, target)
    scheduled = ScheduledChange(
        project_id=project.id,
        environment_id=env.id,
        kind=row.kind,
        target_key=row.target_key,
        payload=row.payload,
        payload_bytes=payload_bytes,
        comment=f"change request #{row.id}: {row.title}"[:2000],
        apply_at=when,
        status="pending",
        base_version=row.base_version,
        base=row.base,
        created_by_key_id=row.author_key_id,
        created_by_key_prefix=row.author_key_prefix,
        change_request_id=row.id,
    )
    s.add(scheduled)
    before = {"status": row.status}
    row.status = "scheduled"
    row.updated_at = sa.func.now()
    s.flush()
    s.refresh(row)
    after = {"status": "scheduled", "apply_at": when.isoformat(), "scheduled_change": scheduled.id}
    _audit(tx, project, env, row, "scheduled", before, after)
    return Result(_body(s, row, project.key, env), 202)


def check_scheduled(session: Session, request_id: int) -> tuple[ChangeRequest, Environment]:
    """For the scheduler: the request a due schedule applies, locked, still ``scheduled`` (so unedited:
    edits need an open request) and still approved under the policy as it is now."""
    row = session.scalars(
        sa.select(ChangeRequest).where(ChangeRequest.id == request_id).with_for_update()
    ).first()
    if row is None or row.status != "scheduled":
        raise ConflictError(f"change request {request_id} is no longer scheduled")
    env = session.get(Environment, row.environment_id)
    assert env is not None
    _check_approved(session, env, row)
    return row, env


def finish_scheduled(session: Session, request_id: int, version: int | None) -> None:
    """Mark the request a schedule applied (``version``) or failed (``None``)."""
    session.execute(
        sa.update(ChangeRequest)
        .where(ChangeRequest.id == request_id, ChangeRequest.status == "scheduled")
        .values(
            status="applied" if version is not None else "failed",
            applied_version=version,
            applied_at=sa.func.now() if version is not None else None,
            updated_at=sa.func.now(),
        )
    )


def counts(session: Session) -> dict[str, int]:
    """Requests by status (the ``flagyard_change_requests`` gauge)."""
    return {
        status: int(n)
        for status, n in session.execute(
            sa.select(ChangeRequest.status, sa.func.count()).group_by(ChangeRequest.status)
        )
    }
