"""What every operation shares: the acting key, the transaction context, results, lookups and ETags."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from flagyard.control_plane.db import flags as flags_repo
from flagyard.control_plane.db import segments as segments_repo
from flagyard.control_plane.db.deferred import Template, columns
from flagyard.control_plane.db.reads import ReadPool, ReadQuery
from flagyard.control_plane.db.versions import Version, VersionSummary
from flagyard.control_plane.db.webhooks import DELIVERIES
from flagyard.control_plane.exceptions import (
    ApprovalRequiredError,
    Detail,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    PreconditionRequiredError,
)
from flagyard.control_plane.security import Role
from flagyard.control_plane.services.diff import json_diff
from flagyard.control_plane.webhook_events import event_for, payload
from flagyard.db.models import AuditEntry, ChangeRequest, Environment, OutboxEntry, Project, ScheduledChange
from flagyard.rule_engine import Issue, limits

log = structlog.get_logger("flagyard.control_plane")


@dataclass(frozen=True, slots=True)
class Actor:
    """The key a request authenticated with."""

    key_id: int
    prefix: str
    role: Role
    project_id: int | None

    def require(self, role: Role) -> None:
        if not self.role.allows(role):
            raise PermissionDeniedError(f"this needs the {role} role; the key has {self.role}")

    def require_project(self, project_id: int) -> None:
        if self.project_id is not None and self.project_id != project_id:
            raise PermissionDeniedError("the key is scoped to another project")

    @property
    def is_global_admin(self) -> bool:
        return self.role is Role.ADMIN and self.project_id is None


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    """What the RQ job receives (its kwargs); see ``control_plane/outbox.py``."""

    outbox_id: int
    environment_id: int
    entity_type: str
    entity_key: str
    version: int

    def job_kwargs(self) -> dict[str, Any]:
        return {
            "outbox_id": self.outbox_id,
            "environment_id": self.environment_id,
            "entity_type": self.entity_type,
            "entity_key": self.entity_key,
            "version": self.version,
        }


@dataclass(frozen=True, slots=True)
class ProjectRef:
    """A project's identity, read without the ORM."""

    id: int
    key: str


@dataclass(frozen=True, slots=True)
class EnvironmentRef:
    """An environment's identity, read without the ORM."""

    id: int
    key: str


@dataclass(slots=True)
class Result:
    """A successful operation's response."""

    body: Any
    status: int = 200
    etag: str | None = None
    location: str | None = None
    replay: Result | None = None
    """What a retry with the same ``Idempotency-Key`` gets instead of this result, when this one carries
    a secret (a new key): only that is stored, since secrets are kept nowhere but as their hash."""

    def headers(self) -> dict[str, str]:
        headers = {}
        if self.etag is not None:
            headers["ETag"] = self.etag
        if self.location is not None:
            headers["Location"] = self.location
        return headers


def etag(n: int) -> str:
    """The strong ETag of a version or revision number."""
    return f'"{n}"'


_OUTBOX_COLUMNS = {
    "environment_id": sa.BigInteger,
    "entity_type": sa.String,
    "entity_key": sa.String,
    "version": sa.Integer,
    "deleted": sa.Boolean,
}


def _outbox_insert() -> sa.Insert:
    """The outbox rows as one array parameter per column (``outbox_<column>``): unlike a multi-row VALUES,
    the compiled statement is the same whatever the number of rows. It returns the rows as messages."""
    table = (
        sa.func.unnest(
            *(sa.bindparam(f"outbox_{name}", type_=ARRAY(kind)) for name, kind in _OUTBOX_COLUMNS.items())
        )
        .table_valued(*_OUTBOX_COLUMNS)
        .render_derived(name="outbox_rows")
    )
    return (
        sa.insert(OutboxEntry)
        .from_select(list(_OUTBOX_COLUMNS), sa.select(*(table.c[name] for name in _OUTBOX_COLUMNS)))
        .returning(
            OutboxEntry.id,
            OutboxEntry.environment_id,
            OutboxEntry.entity_type,
            OutboxEntry.entity_key,
            OutboxEntry.version,
        )
    )


_AUDIT_COLUMNS = (
    "project_id",
    "project_key",
    "actor_key_id",
    "actor_key_prefix",
    "resource_type",
    "resource_key",
    "environment_key",
    "action",
    "version",
    "diff",
    "comment",
    "request_id",
)
AUDIT = Template("audit", columns(AuditEntry, _AUDIT_COLUMNS))

_COMBINED: dict[tuple[tuple[str, ...], bool], sa.Insert | sa.Update] = {}
"""Combined deferred statements by shape (template names in order, with or without outbox rows)."""
_COMBINED_MAX = 256


MAX_DEFERRED = 32
"""Deferred statements per combined statement; more run early (PostgreSQL binds at most 65,535
parameters)."""


def _combine(templates: list[Template], outbox: bool) -> sa.Insert | sa.Update:
    """One statement: the last part (the outbox insert if any) with every other part as a data-modifying
    CTE; PostgreSQL runs every CTE whether or not it is referenced."""
    parts = [template.at(position) for position, template in enumerate(templates)]
    final = _outbox_insert() if outbox else parts.pop()
    for position, part in enumerate(parts):
        final = final.add_cte(part.cte(f"deferred_{position}"))
    return final


@dataclass
class Tx:
    """One write: its session (one transaction), who acts, the request's preconditions, and what to
    propagate after commit.

    The rows a change appends and nothing in the transaction reads back (version, audit entry, outbox
    rows) are deferred: just before the session commits they go to PostgreSQL as one statement of
    data-modifying CTEs, one round trip instead of one per row set. Whoever commits the session (the
    API's writer or any other caller) triggers it; a transaction that fails never sends them.
    """

    session: Session
    actor: Actor
    request_id: str | None = None
    if_match: str | None = None
    outbox: list[OutboxMessage] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    keys_changed: bool = False
    webhooks_raised: bool = False
    """Set when the transaction may have written webhook deliveries: the worker is woken after commit."""
    """Set when the transaction revokes, rotates or deletes keys: cached authentications are dropped."""
    approved: bool = False
    """Set only by the apply of an approved change request (directly or by the scheduler): the one way
    past an environment's approval policy (:meth:`emit`)."""
    _policies: dict[int, tuple[str, int]] = field(default_factory=dict)
    _deferred: list[tuple[Template, Mapping[str, Any]]] = field(default_factory=list)
    _targets: set[tuple[str, tuple[Any, ...]]] = field(default_factory=set)
    _outbox_rows: list[dict[str, Any]] = field(default_factory=list)
    _hooked: bool = False

    def defer(
        self,
        template: Template,
        params: Mapping[str, Any],
        target: tuple[str, tuple[Any, ...]] | None = None,
    ) -> None:
        """Run ``template`` with ``params`` and the others just before commit (or earlier, once
        :data:`MAX_DEFERRED` wait). An UPDATE names its ``target`` row: one statement may not modify a row
        twice, so a second update of the same row first sends what waits."""
        if target is not None:
            if target in self._targets:
                self.run_deferred()
            self._targets.add(target)
        self._deferred.append((template, params))
        self._hook()
        if len(self._deferred) >= MAX_DEFERRED:
            self.run_deferred()

    def _hook(self) -> None:
        if not self._hooked:
            sa.event.listen(self.session, "before_commit", lambda _session: self.run_deferred())
            self._hooked = True

    def run_deferred(self) -> None:
        """Send every deferred insert now, as one statement; the outbox rows come back as messages."""
        deferred, self._deferred = self._deferred, []
        rows, self._outbox_rows = self._outbox_rows, []
        self._targets.clear()
        if not deferred and not rows:
            return
        shape = (tuple(template.name for template, _ in deferred), bool(rows))
        statement = _COMBINED.get(shape)
        if statement is None:
            statement = _combine([template for template, _ in deferred], bool(rows))
            if len(_COMBINED) < _COMBINED_MAX:
                _COMBINED[shape] = statement
        params: dict[str, Any] = {}
        for position, (_, values) in enumerate(deferred):
            params.update(Template.bind(position, values))
        for name in _OUTBOX_COLUMNS if rows else ():
            params[f"outbox_{name}"] = [row[name] for row in rows]
        result = self.session.connection().execute(statement, params)  # Core, not the ORM's DML path
        if rows:
            self.outbox.extend(OutboxMessage(*row) for row in result)

    def check_if_match(self, current: str, *, required: bool = True) -> None:
        """Optimistic concurrency: 428 without ``If-Match`` (when required), 412 when it is stale."""
        if self.if_match is None:
            if required:
                raise PreconditionRequiredError(
                    f"send If-Match with the resource's ETag (currently {current})"
                )
            return
        tags = [t.strip().removeprefix("W/") for t in self.if_match.split(",")]
        if "*" not in tags and current not in tags:
            raise PreconditionFailedError(f"the resource changed: its ETag is now {current}")

    def audit(
        self,
        project: Project | ProjectRef | None,
        resource_type: str,
        resource_key: str,
        action: str,
        before: Any,
        after: Any,
        *,
        environment: str | None = None,
        version: int | None = None,
        comment: str = "",
    ) -> None:
        """The audit entry of a change and, derived from it, the webhook deliveries it raises (one per
        enabled subscription of the project asking for the event): every change is audited, so every
        change reaches its subscribers, in the same transaction."""
        diff = json_diff(before, after)
        self.defer(
            AUDIT,
            {
                "project_id": project.id if project else None,
                "project_key": project.key if project else None,
                "actor_key_id": self.actor.key_id,
                "actor_key_prefix": self.actor.prefix,
                "resource_type": resource_type,
                "resource_key": resource_key,
                "environment_key": environment,
                "action": action,
                "version": version,
                "diff": diff,
                "comment": comment,
                "request_id": self.request_id,
            },
        )
        event = event_for(resource_type, action) if project is not None else None
        if event is not None and project is not None:
            self.webhooks_raised = True
            self.defer(
                DELIVERIES,
                {
                    "project_id": project.id,
                    "event": event,
                    "payload": payload(
                        event,
                        project=project.key,
                        resource_type=resource_type,
                        key=resource_key,
                        action=action,
                        environment=environment,
                        version=version,
                        actor_key_id=self.actor.key_id,
                        actor_key_prefix=self.actor.prefix,
                        request_id=self.request_id,
                        comment=comment,
                        changes=diff,
                    ),
                },
            )
        self.events.append(
            (
                f"{resource_type}.{action}",
                {
                    "project": project.key if project else None,
                    "key": resource_key,
                    "environment": environment,
                    "version": version,
                },
            )
        )

    def emit(
        self, environment_ids: list[int], entity_type: str, key: str, version: int, *, deleted: bool = False
    ) -> None:
        """Outbox rows (in this transaction) for a change the data plane must pick up.

        The approval policy is enforced here, since every change of what an environment serves (a flag or
        segment written, rolled back, imported, archived or deleted, whatever the caller) writes its
        outbox rows through this: such a change reaching an environment with ``approvals_required > 0``
        is 409 ``approval_required`` unless the transaction applies an approved change request."""
        if entity_type in ("flag", "segment") and not self.approved:
            self._check_policy(environment_ids)
        self._outbox_rows.extend(
            {
                "environment_id": env_id,
                "entity_type": entity_type,
                "entity_key": key,
                "version": version,
                "deleted": deleted,
            }
            for env_id in environment_ids
        )
        self._hook()
        if len(self._outbox_rows) >= MAX_DEFERRED * 8:
            self.run_deferred()

    def know_policies(self, policies: Mapping[int, tuple[str, int]]) -> None:
        """Approval policies (environment id → (key, approvals required)) a locking read already returned,
        so :meth:`emit` needs no statement to check them."""
        self._policies.update(policies)

    def _check_policy(self, environment_ids: list[int]) -> None:
        unknown = [i for i in environment_ids if i not in self._policies]
        if unknown:
            rows = self.session.execute(
                sa.select(Environment.id, Environment.key, Environment.approvals_required).where(
                    Environment.id.in_(unknown)
                )
            )
            self._policies.update({row.id: (row.key, row.approvals_required) for row in rows})
        guarded = sorted(
            {self._policies[i] for i in environment_ids if i in self._policies and self._policies[i][1] > 0}
        )
        if guarded:
            raise ApprovalRequiredError(
                "this change reaches environments with an approval policy: propose it as a change request "
                "(POST /api/v1/projects/{project}/environments/{env}/change-requests) and have it approved",
                [Detail(f"/environments/{key}", f"needs {n} approval(s)") for key, n in guarded],
            )

    def discard(self) -> None:
        """Forget everything this Tx holds back: the caller rolled its statements back (a dry run, or an
        attempt undone to its savepoint), so nothing of it may be sent at commit or dispatched after."""
        self._deferred.clear()
        self._outbox_rows.clear()
        self._targets.clear()
        self.outbox.clear()
        self.events.clear()

    def messages(self) -> list[OutboxMessage]:
        """The outbox rows this transaction wrote, as job messages (complete once it committed)."""
        return list(self.outbox)


def invalid(
    issues: list[Issue], prefix: str = "", message: str = "the request is invalid"
) -> InvalidRequestError:
    unique = list(dict.fromkeys(issues))
    return InvalidRequestError.from_issues(unique, message=message, prefix=prefix)


def ensure_room(
    session: Session, project: Project | ProjectRef, kind: Literal["flags", "segments"], adding: int = 1
) -> None:
    """422 unless the project can hold ``adding`` more live flags (``limits.MAX_FLAGS_PER_ENVIRONMENT``:
    each flag is configured in every environment) or segments (``MAX_SEGMENTS_PER_ENVIRONMENT``).

    Creations of one project are serialised on its row (``FOR NO KEY UPDATE``, which inserts referencing
    it do not wait for), so concurrent ones cannot pass the bound together.
    """
    limit, count = (
        (limits.MAX_FLAGS_PER_ENVIRONMENT, flags_repo.count)
        if kind == "flags"
        else (limits.MAX_SEGMENTS_PER_ENVIRONMENT, segments_repo.count)
    )
    session.execute(sa.select(Project.id).where(Project.id == project.id).with_for_update(key_share=True))
    live = count(session, project.id)
    if live + adding > limit:
        message = (
            f"project '{project.key}' has {live} {kind}; an environment holds at most {limit} "
            f"(limits.MAX_{kind.upper()}_PER_ENVIRONMENT): delete some first"
        )
        raise InvalidRequestError(message, [Detail("", message)])


def get_project(session: Session, actor: Actor, key: str, *, lock: bool = False) -> Project:
    stmt = sa.select(Project).where(Project.key == key)
    if lock:
        stmt = stmt.with_for_update()
    project = session.scalars(stmt).first()
    check_project(actor, key, project.id if project else None)
    assert project is not None
    return project


def check_project(actor: Actor, key: str, project_id: int | None) -> None:
    """403 if the actor may not see the project (whether or not it exists), 404 if there is none."""
    if project_id is None:
        if actor.project_id is not None:
            raise PermissionDeniedError("the key is scoped to another project")
        raise NotFoundError(f"project '{key}' does not exist")
    actor.require_project(project_id)


_PROJECT_ID = ReadQuery(sa.select(Project.id).where(Project.key == sa.bindparam("project")))


async def read_project_id(reads: ReadPool, actor: Actor, key: str) -> int:
    """:func:`get_project` for reads on the event loop: the project's id, or 403/404."""
    rows = await reads.fetch(_PROJECT_ID, {"project": key})
    project_id: int | None = rows[0].id if rows else None
    check_project(actor, key, project_id)
    assert project_id is not None
    return project_id


def get_environment(
    session: Session, project: Project | ProjectRef, key: str, *, lock: bool = False
) -> Environment:
    stmt = sa.select(Environment).where(Environment.project_id == project.id, Environment.key == key)
    if lock:
        stmt = stmt.with_for_update()
    env = session.scalars(stmt).first()
    if env is None:
        raise NotFoundError(f"environment '{key}' does not exist in project '{project.key}'")
    return env


def environment_scope(
    session: Session, actor: Actor, project_key: str, env_key: str
) -> tuple[Project, Environment]:
    """The project (its key checked against the actor's scope) and one of its environments, or 404."""
    project = get_project(session, actor, project_key)
    return project, get_environment(session, project, env_key)


_InEnvironment = TypeVar("_InEnvironment", ScheduledChange, ChangeRequest)


def find_in_environment(
    session: Session,
    model: type[_InEnvironment],
    env: Environment,
    row_id: int,
    noun: str,
    *,
    lock: bool = False,
) -> _InEnvironment:
    """A row of an environment-scoped resource (a scheduled change, a change request) by id, or 404: an id of
    another environment is as missing as one that never existed."""
    stmt = sa.select(model).where(model.id == row_id, model.environment_id == env.id)
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).first()
    if row is None:
        raise NotFoundError(f"{noun} {row_id} does not exist in environment '{env.key}'")
    return row


def environments_of(session: Session, project_id: int) -> list[Environment]:
    return list(
        session.scalars(
            sa.select(Environment).where(Environment.project_id == project_id).order_by(Environment.key)
        )
    )


def page_limit(limit: int) -> int:
    return max(1, min(limit, 500))


def version_summary(v: VersionSummary) -> dict[str, Any]:
    """What a version list shows of one flag or segment version (the snapshot is fetched by number)."""
    return {
        "version": v.version,
        "action": v.action,
        "comment": v.comment,
        "author_key_id": v.author_key_id,
        "created_at": v.created_at,
    }


def version_result(v: Version) -> Result:
    """One version of a flag or segment, with its full snapshot."""
    return Result({**version_summary(v), "snapshot": v.snapshot})


def diff_result(a: Version, b: Version) -> Result:
    """What changed from version ``a`` to version ``b`` of one flag or segment."""
    return Result(
        {"from_version": a.version, "to_version": b.version, "changes": json_diff(a.snapshot, b.snapshot)}
    )


def version_page(versions: list[VersionSummary], limit: int) -> Result:
    """A page of versions, newest first, from a repository's ``versions`` asked for ``limit + 1``: the
    one beyond ``limit`` only tells that there is a next page, whose cursor is the last shown version."""
    more = len(versions) > limit
    versions = versions[:limit]
    return Result(
        {
            "items": [version_summary(v) for v in versions],
            "next_cursor": str(versions[-1].version) if more else None,
        }
    )
