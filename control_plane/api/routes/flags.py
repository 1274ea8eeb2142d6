"""Flags: definitions, environment configurations, toggles, versions, diffs and rollbacks."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import ChangeContext, PostChangeContext, PostContext, ReadContext
from flagyard.control_plane.api.params import (
    API_PREFIX,
    CHANGE_ERRORS,
    ERRORS,
    MATCHED_WRITE_ERRORS,
    WRITE_ERRORS,
    EnvKey,
    FlagKey,
    IntCursor,
    KeyCursor,
    Limit,
    ProjectKey,
    VersionNumber,
)
from flagyard.control_plane.services import flags as ops
from flagyard.control_plane.services import lifecycle

router = APIRouter(
    route_class=StrictRoute, prefix=API_PREFIX + "/projects/{project}/flags", tags=["flags"], responses=ERRORS
)


@router.get("", response_model=schemas.Page[schemas.FlagSummary], summary="List flags")
async def list_flags(
    project: ProjectKey,
    ctx: ReadContext,
    limit: Limit = 50,
    cursor: KeyCursor = None,
    tag: Annotated[str | None, Query(max_length=64)] = None,
    q: Annotated[str | None, Query(max_length=128, description="Substring of key or name.")] = None,
    archived: Annotated[
        Literal["false", "true", "all"],
        Query(description="Archived flags are hidden unless `true` (only them) or `all`."),
    ] = "false",
) -> Response:
    return await ctx.read_async(
        lambda reads, actor: ops.list_flags(
            reads, actor, project, limit=limit, cursor=cursor, tag=tag, query=q, archived=archived
        )
    )


@router.post(
    "", status_code=201, response_model=schemas.FlagOut, responses=WRITE_ERRORS, summary="Create a flag"
)
def create_flag(project: ProjectKey, body: schemas.FlagCreate, ctx: PostContext) -> Response:
    return ctx.write(lambda tx: ops.create_flag(tx, project, body))


@router.get(
    "/{flag}", response_model=schemas.FlagOut, summary="Get a flag with every environment's configuration"
)
async def get_flag(project: ProjectKey, flag: FlagKey, ctx: ReadContext) -> Response:
    return await ctx.read_async(lambda reads, actor: ops.read_flag(reads, actor, project, flag))


@router.patch(
    "/{flag}", response_model=schemas.FlagOut, responses=CHANGE_ERRORS, summary="Update a flag's definition"
)
def update_flag(project: ProjectKey, flag: FlagKey, body: schemas.FlagUpdate, ctx: ChangeContext) -> Response:
    return ctx.write(lambda tx: ops.update_flag(tx, project, flag, body))


@router.delete("/{flag}", status_code=204, responses=CHANGE_ERRORS, summary="Delete a flag")
def delete_flag(project: ProjectKey, flag: FlagKey, ctx: ChangeContext) -> Response:
    return ctx.write(lambda tx: ops.delete_flag(tx, project, flag))


@router.get(
    "/{flag}/environments/{env}",
    response_model=schemas.FlagEnvironmentOut,
    summary="Get a flag's configuration in one environment",
)
async def get_env_config(project: ProjectKey, flag: FlagKey, env: EnvKey, ctx: ReadContext) -> Response:
    return await ctx.read_async(lambda reads, actor: ops.read_env_config(reads, actor, project, flag, env))


@router.patch(
    "/{flag}/environments/{env}",
    response_model=schemas.FlagEnvironmentOut,
    responses=CHANGE_ERRORS,
    summary="Update a flag's configuration in one environment",
)
def update_env_config(
    project: ProjectKey, flag: FlagKey, env: EnvKey, body: schemas.EnvConfigPatch, ctx: ChangeContext
) -> Response:
    return ctx.write(lambda tx: ops.update_env_config(tx, project, flag, env, body))


@router.post(
    "/{flag}/environments/{env}/toggle",
    response_model=schemas.FlagEnvironmentOut,
    responses=MATCHED_WRITE_ERRORS,
    summary="Turn a flag on or off in one environment (kill switch; If-Match optional)",
)
def toggle(
    project: ProjectKey, flag: FlagKey, env: EnvKey, body: schemas.ToggleIn, ctx: PostChangeContext
) -> Response:
    return ctx.write(lambda tx: ops.toggle(tx, project, flag, env, body))


@router.get(
    "/{flag}/versions", response_model=schemas.Page[schemas.VersionSummary], summary="List a flag's versions"
)
def list_versions(
    project: ProjectKey,
    flag: FlagKey,
    ctx: ReadContext,
    limit: Limit = 50,
    cursor: IntCursor = None,
) -> Response:
    return ctx.read(
        lambda session, actor: ops.list_versions(session, actor, project, flag, limit=limit, cursor=cursor)
    )


@router.get(
    "/{flag}/versions/{n}", response_model=schemas.VersionOut, summary="Get one version with its snapshot"
)
def get_version(project: ProjectKey, flag: FlagKey, n: VersionNumber, ctx: ReadContext) -> Response:
    return ctx.read(lambda session, actor: ops.read_version(session, actor, project, flag, n))


@router.get(
    "/{flag}/diff", response_model=schemas.DiffOut, summary="Diff two versions (to defaults to the latest)"
)
def diff(
    project: ProjectKey,
    flag: FlagKey,
    ctx: ReadContext,
    from_: Annotated[int, Query(alias="from", ge=1, le=2**31 - 1)],
    to: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    return ctx.read(lambda session, actor: ops.diff_versions(session, actor, project, flag, from_, to))


@router.post(
    "/{flag}/rollback",
    response_model=schemas.FlagOut,
    responses=MATCHED_WRITE_ERRORS,
    summary="Restore an earlier version as a new version",
)
def rollback(
    project: ProjectKey, flag: FlagKey, body: schemas.RollbackIn, ctx: PostChangeContext
) -> Response:
    return ctx.write(lambda tx: ops.rollback(tx, project, flag, body))


@router.post(
    "/{flag}/archive",
    response_model=schemas.FlagOut,
    responses=MATCHED_WRITE_ERRORS,
    summary="Archive a flag: served nowhere (missing to SDKs), hidden from lists, kept with its history",
)
def archive(project: ProjectKey, flag: FlagKey, body: schemas.ArchiveIn, ctx: PostChangeContext) -> Response:
    return ctx.write(lambda tx: lifecycle.archive(tx, project, flag, body))


@router.post(
    "/{flag}/unarchive",
    response_model=schemas.FlagOut,
    responses=MATCHED_WRITE_ERRORS,
    summary="Unarchive a flag: served again as it was, at a new version",
)
def unarchive(
    project: ProjectKey, flag: FlagKey, body: schemas.ArchiveIn, ctx: PostChangeContext
) -> Response:
    return ctx.write(lambda tx: lifecycle.unarchive(tx, project, flag, body))
