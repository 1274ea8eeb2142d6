"""Projects."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import ChangeContext, PostContext, ReadContext
from flagyard.control_plane.api.params import (
    API_PREFIX,
    CHANGE_ERRORS,
    ERRORS,
    WRITE_ERRORS,
    KeyCursor,
    Limit,
    ProjectKey,
)
from flagyard.control_plane.services import projects as ops

router = APIRouter(
    route_class=StrictRoute, prefix=API_PREFIX + "/projects", tags=["projects"], responses=ERRORS
)


@router.get("", response_model=schemas.Page[schemas.ProjectOut], summary="List projects")
def list_projects(ctx: ReadContext, limit: Limit = 50, cursor: KeyCursor = None) -> Response:
    return ctx.read(lambda session, actor: ops.list_projects(session, actor, limit=limit, cursor=cursor))


@router.post(
    "",
    status_code=201,
    response_model=schemas.ProjectOut,
    responses=WRITE_ERRORS,
    summary="Create a project (global admin)",
)
def create_project(body: schemas.ProjectCreate, ctx: PostContext) -> Response:
    return ctx.write(lambda tx: ops.create_project(tx, body))


@router.get("/{project}", response_model=schemas.ProjectOut, summary="Get a project")
def get_project(project: ProjectKey, ctx: ReadContext) -> Response:
    return ctx.read(lambda session, actor: ops.read_project(session, actor, project))


@router.patch(
    "/{project}", response_model=schemas.ProjectOut, responses=CHANGE_ERRORS, summary="Update a project"
)
def update_project(project: ProjectKey, body: schemas.ProjectUpdate, ctx: ChangeContext) -> Response:
    return ctx.write(lambda tx: ops.update_project(tx, project, body))


@router.delete(
    "/{project}", status_code=204, responses=CHANGE_ERRORS, summary="Delete a project and all in it"
)
def delete_project(project: ProjectKey, ctx: ChangeContext) -> Response:
    return ctx.write(lambda tx: ops.delete_project(tx, project))
