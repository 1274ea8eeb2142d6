"""Scheduled changes: a toggle, configuration, segment change or rollback to apply at a given time."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import PostContext, ReadContext, WriteContext
from flagyard.control_plane.api.params import (
    API_PREFIX,
    ERRORS,
    WRITE_ERRORS,
    EnvKey,
    IntCursor,
    Limit,
    ProjectKey,
)
from flagyard.control_plane.services import schedules as ops

router = APIRouter(
    route_class=StrictRoute,
    prefix=API_PREFIX + "/projects/{project}/environments/{env}/scheduled-changes",
    tags=["scheduled changes"],
    responses=ERRORS,
)

ChangeId = Annotated[int, Path(ge=1, le=2**62, description="The scheduled change's id.")]


@router.post(
    "",
    status_code=201,
    response_model=schemas.ScheduledChangeOut,
    responses=WRITE_ERRORS,
    summary="Schedule a change (checked now as if applied now; 422 pointers under /body)",
)
def create_change(
    project: ProjectKey, env: EnvKey, body: schemas.ScheduledChangeCreate, ctx: PostContext
) -> Response:
    return ctx.write(lambda tx: ops.create_change(tx, project, env, body))


@router.get(
    "",
    response_model=schemas.Page[schemas.ScheduledChangeOut],
    summary="List scheduled changes, newest first",
)
def list_changes(
    project: ProjectKey,
    env: EnvKey,
    ctx: ReadContext,
    status: schemas.ScheduledStatus | None = None,
    limit: Limit = 50,
    cursor: IntCursor = None,
) -> Response:
    return ctx.read(
        lambda session, actor: ops.list_changes(
            session, actor, project, env, status=status, limit=limit, cursor=cursor
        )
    )


@router.get("/{change_id}", response_model=schemas.ScheduledChangeOut, summary="Get a scheduled change")
def read_change(project: ProjectKey, env: EnvKey, change_id: ChangeId, ctx: ReadContext) -> Response:
    return ctx.read(lambda session, actor: ops.read_change(session, actor, project, env, change_id))


@router.patch(
    "/{change_id}",
    response_model=schemas.ScheduledChangeOut,
    responses=WRITE_ERRORS,
    summary="Reschedule a pending change (409 once applied, failed or cancelled)",
)
def reschedule_change(
    project: ProjectKey,
    env: EnvKey,
    change_id: ChangeId,
    body: schemas.ScheduledChangeUpdate,
    ctx: WriteContext,
) -> Response:
    return ctx.write(lambda tx: ops.reschedule_change(tx, project, env, change_id, body))


@router.post(
    "/{change_id}/cancel",
    response_model=schemas.ScheduledChangeOut,
    responses=WRITE_ERRORS,
    summary="Cancel a pending change (409 once applied, failed or cancelled)",
)
def cancel_change(project: ProjectKey, env: EnvKey, change_id: ChangeId, ctx: PostContext) -> Response:
    return ctx.write(lambda tx: ops.cancel_change(tx, project, env, change_id))
