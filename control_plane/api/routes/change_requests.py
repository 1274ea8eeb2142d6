"""Change requests: a change proposed to an environment with an approval policy, reviewed, then applied."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import ChangeContext, PostContext, ReadContext
from flagyard.control_plane.api.params import (
    API_PREFIX,
    CHANGE_ERRORS,
    ERRORS,
    WRITE_ERRORS,
    EnvKey,
    IntCursor,
    Limit,
    ProjectKey,
)
from flagyard.control_plane.services import change_requests as ops

router = APIRouter(
    route_class=StrictRoute,
    prefix=API_PREFIX + "/projects/{project}/environments/{env}/change-requests",
    tags=["change requests"],
    responses=ERRORS,
)

RequestId = Annotated[int, Path(ge=1, le=2**62, description="The change request's id.")]


@router.post(
    "",
    status_code=201,
    response_model=schemas.ChangeRequestOut,
    responses=WRITE_ERRORS,
    summary="Propose a change (checked now as if applied now; 422 pointers under /body)",
)
def create_request(
    project: ProjectKey, env: EnvKey, body: schemas.ChangeRequestCreate, ctx: PostContext
) -> Response:
    return ctx.write(lambda tx: ops.create_request(tx, project, env, body))


@router.get("", response_model=schemas.Page[schemas.ChangeRequestOut], summary="List change requests")
def list_requests(
    project: ProjectKey,
    env: EnvKey,
    ctx: ReadContext,
    status: schemas.ChangeRequestStatus | None = None,
    limit: Limit = 50,
    cursor: IntCursor = None,
) -> Response:
    return ctx.read(
        lambda session, actor: ops.list_requests(
            session, actor, project, env, status=status, limit=limit, cursor=cursor
        )
    )


@router.get(
    "/{request_id}",
    response_model=schemas.ChangeRequestDetail,
    summary="Get a change request with its diff against the current state, comments and reviews",
)
def read_request(project: ProjectKey, env: EnvKey, request_id: RequestId, ctx: ReadContext) -> Response:
    return ctx.read(lambda session, actor: ops.read_request(session, actor, project, env, request_id))


@router.patch(
    "/{request_id}",
    response_model=schemas.ChangeRequestOut,
    responses=CHANGE_ERRORS,
    summary="Edit an open request (its author; If-Match: the revision): approvals are cleared",
)
def update_request(
    project: ProjectKey,
    env: EnvKey,
    request_id: RequestId,
    body: schemas.ChangeRequestUpdate,
    ctx: ChangeContext,
) -> Response:
    return ctx.write(lambda tx: ops.update_request(tx, project, env, request_id, body))


@router.post(
    "/{request_id}/rebase",
    response_model=schemas.ChangeRequestOut,
    responses=WRITE_ERRORS,
    summary="Re-base an open request on the current state (its author): approvals are cleared",
)
def rebase_request(project: ProjectKey, env: EnvKey, request_id: RequestId, ctx: PostContext) -> Response:
    return ctx.write(lambda tx: ops.rebase_request(tx, project, env, request_id))


@router.post(
    "/{request_id}/comments",
    status_code=201,
    response_model=schemas.ChangeRequestOut,
    responses=WRITE_ERRORS,
    summary="Comment on a request",
)
def comment_request(
    project: ProjectKey,
    env: EnvKey,
    request_id: RequestId,
    body: schemas.ChangeRequestComment,
    ctx: PostContext,
) -> Response:
    return ctx.write(lambda tx: ops.comment_request(tx, project, env, request_id, body))


@router.post(
    "/{request_id}/approve",
    response_model=schemas.ChangeRequestOut,
    responses=WRITE_ERRORS,
    summary="Approve a revision (not its author's keys or owner: 403 self_approval; 409 if edited since)",
)
def approve_request(
    project: ProjectKey,
    env: EnvKey,
    request_id: RequestId,
    body: schemas.ChangeRequestReview,
    ctx: PostContext,
) -> Response:
    return ctx.write(lambda tx: ops.approve_request(tx, project, env, request_id, body))


@router.post(
    "/{request_id}/reject",
    response_model=schemas.ChangeRequestOut,
    responses=WRITE_ERRORS,
    summary="Reject a revision (final)",
)
def reject_request(
    project: ProjectKey,
    env: EnvKey,
    request_id: RequestId,
    body: schemas.ChangeRequestReview,
    ctx: PostContext,
) -> Response:
    return ctx.write(lambda tx: ops.reject_request(tx, project, env, request_id, body))


@router.post(
    "/{request_id}/withdraw",
    response_model=schemas.ChangeRequestOut,
    responses=WRITE_ERRORS,
    summary="Withdraw a request (its author; final; a scheduled apply is cancelled)",
)
def withdraw_request(project: ProjectKey, env: EnvKey, request_id: RequestId, ctx: PostContext) -> Response:
    return ctx.write(lambda tx: ops.withdraw_request(tx, project, env, request_id))


@router.post(
    "/{request_id}/apply",
    response_model=schemas.ChangeRequestOut,
    responses={**WRITE_ERRORS, 202: {"model": schemas.ChangeRequestOut, "description": "Scheduled"}},
    summary="Apply an approved request as its author, now or at apply_at (409 rebase_required if the "
    "target moved since its base)",
)
def apply_request(
    project: ProjectKey,
    env: EnvKey,
    request_id: RequestId,
    body: schemas.ChangeRequestApply,
    ctx: PostContext,
) -> Response:
    return ctx.write(lambda tx: ops.apply_request(tx, project, env, request_id, body))
