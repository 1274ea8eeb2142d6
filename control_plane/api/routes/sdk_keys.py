"""SDK keys: per-environment, server-side keys the data plane accepts."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import PostContext, ReadContext, StateDep, WriteContext
from flagyard.control_plane.api.params import API_PREFIX, ERRORS, WRITE_ERRORS, EnvKey, KeyId, ProjectKey
from flagyard.control_plane.services import keys as ops

router = APIRouter(
    route_class=StrictRoute,
    prefix=API_PREFIX + "/projects/{project}/environments/{env}/sdk-keys",
    tags=["sdk-keys"],
    responses=ERRORS,
)


@router.get(
    "", response_model=schemas.Page[schemas.ApiKeyOut], summary="List an environment's SDK keys (admin)"
)
def list_sdk_keys(project: ProjectKey, env: EnvKey, ctx: ReadContext) -> Response:
    return ctx.read(lambda session, actor: ops.list_sdk_keys(session, actor, project, env))


@router.post(
    "",
    status_code=201,
    response_model=schemas.ApiKeyCreated,
    responses=WRITE_ERRORS,
    summary="Create an SDK key (the key is in the response, once)",
)
def create_sdk_key(
    project: ProjectKey, env: EnvKey, body: schemas.SdkKeyCreate, ctx: PostContext
) -> Response:
    return ctx.write(lambda tx: ops.create_sdk_key(tx, project, env, body))


@router.post(
    "/{key_id}/rotate",
    status_code=201,
    response_model=schemas.ApiKeyCreated,
    responses=WRITE_ERRORS,
    summary="Rotate an SDK key with an overlap window",
)
def rotate_sdk_key(
    project: ProjectKey,
    env: EnvKey,
    key_id: KeyId,
    ctx: PostContext,
    state: StateDep,
    body: Annotated[schemas.RotateIn | None, Body()] = None,
) -> Response:
    overlap = state.settings.key_rotation_overlap_seconds
    return ctx.write(
        lambda tx: ops.rotate_sdk_key(tx, project, env, key_id, body or schemas.RotateIn(), overlap)
    )


@router.delete(
    "/{key_id}", status_code=204, responses=WRITE_ERRORS, summary="Revoke an SDK key (immediately)"
)
def revoke_sdk_key(project: ProjectKey, env: EnvKey, key_id: KeyId, ctx: WriteContext) -> Response:
    return ctx.write(lambda tx: ops.revoke_sdk_key(tx, project, env, key_id))
