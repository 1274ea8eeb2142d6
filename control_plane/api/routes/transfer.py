"""Bulk export and import of an environment's flags and segments."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Query
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import ImportRoute
from flagyard.control_plane.api.deps import PostContext, ReadContext
from flagyard.control_plane.api.params import API_PREFIX, ERRORS, WRITE_ERRORS, EnvKey, ProjectKey
from flagyard.control_plane.exceptions import Detail, InvalidRequestError
from flagyard.control_plane.services import transfer as ops

router = APIRouter(
    route_class=ImportRoute,
    prefix=API_PREFIX + "/projects/{project}/environments/{env}",
    tags=["import-export"],
    responses=ERRORS,
)

Format = Annotated[
    Literal["native", "flagd"], Query(description="`native` (rule-engine document) or `flagd`.")
]


@router.get(
    "/export",
    summary="Export every flag and segment of an environment",
    responses={200: {"content": {"application/json": {"schema": {"type": "object"}}}}},
)
def export(project: ProjectKey, env: EnvKey, ctx: ReadContext, format: Format = "native") -> Response:
    return ctx.read(lambda session, actor: ops.export_environment(session, actor, project, env, format))


@router.post(
    "/import",
    response_model=schemas.ImportResult,
    responses=WRITE_ERRORS,
    summary="Import flags and segments: all validated first, then applied atomically, or nothing",
)
def import_(
    project: ProjectKey,
    env: EnvKey,
    ctx: PostContext,
    document: Annotated[dict[str, Any], Body(description="A native or flagd document.")],
    format: Format = "native",
) -> Response:
    where = schemas.check_finite(document)
    if where:
        raise InvalidRequestError(
            "the request is invalid", [Detail(where, "NaN and Infinity are not JSON numbers")]
        )
    return ctx.write(lambda tx: ops.import_environment(tx, project, env, document, format))
