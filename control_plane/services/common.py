"""What every operation shares: the acting key, the transaction context, results, lookups and ETags."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, TypeVar

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session

from flagyard.control_plane.db.models import (
    AuditEntry,
    Environment,
    Flag,
    FlagVersion,
    OutboxEntry,
    Project,
    Segment,
    SegmentVersion,
)
from flagyard.control_plane.exceptions import (
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    PreconditionFailedError,
    PreconditionRequiredError,
)
from flagyard.control_plane.security import Role
from flagyard.control_plane.services.diff import json_diff
from flagyard.rule_engine import Issue

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


@dataclass(slots=True)
class Result:
    """A successful operation's response."""

    body: Any
    status: int = 200
    etag: str | None = None
    location: str | None = None

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


@dataclass
class Tx:
    """One write: its session (one transaction), who acts, the request's preconditions, and what to
    propagate after commit."""

    session: Session
    actor: Actor
    request_id: str | None = None
    if_match: str | None = None
    outbox: list[OutboxMessage] = field(default_factory=list)
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

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
        project: Project | None,
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
        self.session.execute(
            sa.insert(AuditEntry).values(
                project_id=project.id if project else None,
                project_key=project.key if project else None,
                actor_key_id=self.actor.key_id,
                actor_key_prefix=self.actor.prefix,
                resource_type=resource_type,
                resource_key=resource_key,
                environment_key=environment,
                action=action,
                version=version,
                diff=json_diff(before, after),
                comment=comment,
                request_id=self.request_id,
            )
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
        """Outbox rows (in this transaction) for a change the data plane must pick up."""
        if not environment_ids:
            return
        inserted = self.session.execute(
            sa.insert(OutboxEntry).returning(OutboxEntry.id, OutboxEntry.environment_id),
            [
                {
                    "environment_id": env_id,
                    "entity_type": entity_type,
                    "entity_key": key,
                    "version": version,
                    "deleted": deleted,
                }
                for env_id in environment_ids
            ],
        )
        self.outbox.extend(
            OutboxMessage(outbox_id, env_id, entity_type, key, version) for outbox_id, env_id in inserted
        )

    def messages(self) -> list[OutboxMessage]:
        """The outbox rows this transaction wrote, as job messages."""
        return list(self.outbox)


def invalid(
    issues: list[Issue], prefix: str = "", message: str = "the request is invalid"
) -> InvalidRequestError:
    unique = list(dict.fromkeys(issues))
    return InvalidRequestError.from_issues(unique, message=message, prefix=prefix)


def get_project(session: Session, actor: Actor, key: str, *, lock: bool = False) -> Project:
    stmt = sa.select(Project).where(Project.key == key)
    if lock:
        stmt = stmt.with_for_update()
    project = session.scalars(stmt).first()
    if project is None:
        if actor.project_id is not None:
            raise PermissionDeniedError("the key is scoped to another project")
        raise NotFoundError(f"project '{key}' does not exist")
    actor.require_project(project.id)
    return project


def get_environment(session: Session, project: Project, key: str, *, lock: bool = False) -> Environment:
    stmt = sa.select(Environment).where(Environment.project_id == project.id, Environment.key == key)
    if lock:
        stmt = stmt.with_for_update()
    env = session.scalars(stmt).first()
    if env is None:
        raise NotFoundError(f"environment '{key}' does not exist in project '{project.key}'")
    return env


def environments_of(session: Session, project_id: int) -> list[Environment]:
    return list(
        session.scalars(
            sa.select(Environment).where(Environment.project_id == project_id).order_by(Environment.key)
        )
    )


def get_flag(session: Session, project: Project, key: str, *, lock: bool = False) -> Flag:
    stmt = sa.select(Flag).where(Flag.project_id == project.id, Flag.key == key, Flag.deleted_at.is_(None))
    if lock:
        stmt = stmt.with_for_update()
    flag = session.scalars(stmt).first()
    if flag is None:
        raise NotFoundError(f"flag '{key}' does not exist in project '{project.key}'")
    return flag


def get_project_flag(
    session: Session, actor: Actor, project_key: str, key: str, *, lock: bool = False
) -> tuple[Project, Flag]:
    """A project and one of its live flags in one query (the hot path of reads and updates)."""
    stmt = (
        sa.select(Project, Flag)
        .join(Flag, Flag.project_id == Project.id)
        .where(Project.key == project_key, Flag.key == key, Flag.deleted_at.is_(None))
    )
    if lock:
        stmt = stmt.with_for_update(of=Flag)
    row = session.execute(stmt).first()
    if row is None:
        project = get_project(session, actor, project_key)
        raise NotFoundError(f"flag '{key}' does not exist in project '{project.key}'")
    actor.require_project(row[0].id)
    return row[0], row[1]


def get_segment(session: Session, project: Project, key: str, *, lock: bool = False) -> Segment:
    stmt = sa.select(Segment).where(
        Segment.project_id == project.id, Segment.key == key, Segment.deleted_at.is_(None)
    )
    if lock:
        stmt = stmt.with_for_update()
    segment = session.scalars(stmt).first()
    if segment is None:
        raise NotFoundError(f"segment '{key}' does not exist in project '{project.key}'")
    return segment


def segment_keys(session: Session, project_id: int) -> set[str]:
    return set(
        session.scalars(
            sa.select(Segment.key).where(Segment.project_id == project_id, Segment.deleted_at.is_(None))
        )
    )


def page_limit(limit: int) -> int:
    return max(1, min(limit, 500))


VersionRow = TypeVar("VersionRow", FlagVersion, SegmentVersion)


def version_summary(v: FlagVersion | SegmentVersion) -> dict[str, Any]:
    """What a version list shows of one flag or segment version (the snapshot is fetched by number)."""
    return {
        "version": v.version,
        "action": v.action,
        "comment": v.comment,
        "author_key_id": v.author_key_id,
        "created_at": v.created_at,
    }


def version_page(
    session: Session,
    model: type[VersionRow],
    owner: sa.ColumnElement[bool],
    *,
    limit: int,
    cursor: int | None,
) -> Result:
    """Newest-first page of versions of one flag or segment, with a cursor to the next page."""
    stmt = sa.select(model).where(owner)
    if cursor is not None:
        stmt = stmt.where(model.version < cursor)
    limit = page_limit(limit)
    versions = list(session.scalars(stmt.order_by(model.version.desc()).limit(limit + 1)))
    more = len(versions) > limit
    versions = versions[:limit]
    return Result(
        {
            "items": [version_summary(v) for v in versions],
            "next_cursor": str(versions[-1].version) if more else None,
        }
    )
