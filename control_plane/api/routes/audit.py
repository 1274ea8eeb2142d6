"""The audit log: who changed what, when."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import ReadContext
from flagyard.control_plane.api.params import API_PREFIX, ERRORS, IntCursor, Limit, ProjectKey
from flagyard.control_plane.services import audit as ops

router = APIRouter(route_class=StrictRoute, prefix=API_PREFIX, tags=["audit"], responses=ERRORS)

ResourceType = Annotated[
    str | None,
    Query(
        pattern=r"^(project|environment|flag|segment|api_key|sdk_key|scheduled_change|webhook|change_request)$",
        description="Resource type.",
    ),
]
Short = Annotated[str | None, Query(max_length=256)]
ActorKey = Annotated[int | None, Query(ge=1, le=2**62, description="Id of the acting key.")]


@router.get(
    "/projects/{project}/audit",
    response_model=schemas.Page[schemas.AuditOut],
    summary="A project's audit log, newest first",
)
def project_audit(
    project: ProjectKey,
    ctx: ReadContext,
    resource_type: ResourceType = None,
    resource_key: Short = None,
    action: Short = None,
    environment: Short = None,
    actor_key_id: ActorKey = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Limit = 50,
    cursor: IntCursor = None,
) -> Response:
    return ctx.read(
        lambda session, actor: ops.list_audit(
            session,
            actor,
            project,
            resource_type=resource_type,
            resource_key=resource_key,
            action=action,
            environment=environment,
            actor_key_id=actor_key_id,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
    )


@router.get(
    "/audit", response_model=schemas.Page[schemas.AuditOut], summary="The whole audit log (global admin)"
)
def global_audit(
    ctx: ReadContext,
    resource_type: ResourceType = None,
    resource_key: Short = None,
    action: Short = None,
    actor_key_id: ActorKey = None,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Limit = 50,
    cursor: IntCursor = None,
) -> Response:
    return ctx.read(
        lambda session, actor: ops.list_audit(
            session,
            actor,
            None,
            resource_type=resource_type,
            resource_key=resource_key,
            action=action,
            actor_key_id=actor_key_id,
            since=since,
            until=until,
            limit=limit,
            cursor=cursor,
        )
    )
