"""Reading the audit log (entries are written by :meth:`.common.Tx.audit` inside each change)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flagyard.control_plane.exceptions import PermissionDeniedError
from flagyard.control_plane.security import Role
from flagyard.control_plane.services.common import Actor, Result, get_project, page_limit
from flagyard.db.models import AuditEntry


def entry_body(e: AuditEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "project": e.project_key,
        "actor_key_id": e.actor_key_id,
        "actor_key_prefix": e.actor_key_prefix,
        "resource_type": e.resource_type,
        "resource_key": e.resource_key,
        "environment": e.environment_key,
        "action": e.action,
        "version": e.version,
        "diff": e.diff,
        "comment": e.comment,
        "request_id": e.request_id,
        "created_at": e.created_at,
    }


def list_audit(
    session: Session,
    actor: Actor,
    project_key: str | None,
    *,
    resource_type: str | None = None,
    resource_key: str | None = None,
    action: str | None = None,
    environment: str | None = None,
    actor_key_id: int | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = 50,
    cursor: int | None = None,
) -> Result:
    """Newest first. Without a project: every entry (global admin keys only)."""
    actor.require(Role.READER)
    stmt = sa.select(AuditEntry)
    if project_key is not None:
        project = get_project(session, actor, project_key)
        stmt = stmt.where(AuditEntry.project_id == project.id)
    elif not actor.is_global_admin:
        raise PermissionDeniedError("the global audit log needs a global admin key")
    filters = {
        AuditEntry.resource_type: resource_type,
        AuditEntry.resource_key: resource_key,
        AuditEntry.action: action,
        AuditEntry.environment_key: environment,
        AuditEntry.actor_key_id: actor_key_id,
    }
    for column, value in filters.items():
        if value is not None:
            stmt = stmt.where(column == value)
    if since is not None:
        stmt = stmt.where(AuditEntry.created_at >= since)
    if until is not None:
        stmt = stmt.where(AuditEntry.created_at < until)
    if cursor is not None:
        stmt = stmt.where(AuditEntry.id < cursor)
    limit = page_limit(limit)
    rows = list(session.scalars(stmt.order_by(AuditEntry.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Result({"items": [entry_body(e) for e in rows], "next_cursor": str(rows[-1].id) if more else None})
