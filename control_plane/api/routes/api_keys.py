"""Admin-API keys (admin, writer, reader; global or per project)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Query
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import PostContext, ReadContext, StateDep, WriteContext
from flagyard.control_plane.api.params import API_PREFIX, ERRORS, WRITE_ERRORS, IntCursor, KeyId, Limit
from flagyard.control_plane.services import keys as ops
from flagyard.rule_engine.model import KEY_PATTERN

router = APIRouter(
    route_class=StrictRoute, prefix=API_PREFIX + "/api-keys", tags=["api-keys"], responses=ERRORS
)


@router.get("", response_model=schemas.Page[schemas.ApiKeyOut], summary="List API keys (admin)")
def list_keys(
    ctx: ReadContext,
    limit: Limit = 50,
    cursor: IntCursor = None,
    project: Annotated[str | None, Query(pattern=KEY_PATTERN)] = None,
) -> Response:
    return ctx.read(
        lambda session, actor: ops.list_api_keys(session, actor, limit=limit, cursor=cursor, project=project)
    )


@router.post(
    "",
    status_code=201,
    response_model=schemas.ApiKeyCreated,
    responses=WRITE_ERRORS,
    summary="Create an API key (the key is in the response, once)",
)
def create_key(body: schemas.ApiKeyCreate, ctx: PostContext) -> Response:
    return ctx.write(lambda tx: ops.create_api_key(tx, body))


@router.get("/{key_id}", response_model=schemas.ApiKeyOut, summary="Get an API key's metadata")
def get_key(key_id: KeyId, ctx: ReadContext) -> Response:
    return ctx.read(lambda session, actor: ops.read_api_key(session, actor, key_id))


@router.post(
    "/{key_id}/rotate",
    status_code=201,
    response_model=schemas.ApiKeyCreated,
    responses=WRITE_ERRORS,
    summary="Issue a replacement; the old key works until the overlap window ends",
)
def rotate_key(
    key_id: KeyId, ctx: PostContext, state: StateDep, body: Annotated[schemas.RotateIn | None, Body()] = None
) -> Response:
    overlap = state.settings.key_rotation_overlap_seconds
    return ctx.write(lambda tx: ops.rotate_api_key(tx, key_id, body or schemas.RotateIn(), overlap))


@router.patch(
    "/{key_id}",
    response_model=schemas.ApiKeyOut,
    responses=WRITE_ERRORS,
    summary="Set an API key's owner (admin; audited)",
)
def update_key(key_id: KeyId, body: schemas.ApiKeyUpdate, ctx: WriteContext) -> Response:
    return ctx.write(lambda tx: ops.update_api_key(tx, key_id, body))


@router.delete(
    "/{key_id}", status_code=204, responses=WRITE_ERRORS, summary="Revoke an API key (immediately)"
)
def revoke_key(key_id: KeyId, ctx: WriteContext) -> Response:
    return ctx.write(lambda tx: ops.revoke_api_key(tx, key_id))
