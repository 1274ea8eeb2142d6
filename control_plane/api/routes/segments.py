"""Segments: reusable audiences, per project."""

from __future__ import annotations

from typing import Annotated

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
    IntCursor,
    KeyCursor,
    Limit,
    ProjectKey,
    SegmentKey,
    VersionNumber,
)
from flagyard.control_plane.services import segments as ops

router = APIRouter(
    route_class=StrictRoute,
    prefix=API_PREFIX + "/projects/{project}/segments",
    tags=["segments"],
    responses=ERRORS,
)


@router.get("", response_model=schemas.Page[schemas.SegmentOut], summary="List segments")
async def list_segments(
    project: ProjectKey, ctx: ReadContext, limit: Limit = 50, cursor: KeyCursor = None
) -> Response:
    return await ctx.read_async(
        lambda reads, actor: ops.list_segments(reads, actor, project, limit=limit, cursor=cursor)
    )


@router.post(
    "", status_code=201, response_model=schemas.SegmentOut, responses=WRITE_ERRORS, summary="Create a segment"
)
def create_segment(project: ProjectKey, body: schemas.SegmentCreate, ctx: PostContext) -> Response:
    return ctx.write(lambda tx: ops.create_segment(tx, project, body))


@router.get("/{segment}", response_model=schemas.SegmentOut, summary="Get a segment")
async def get_segment(project: ProjectKey, segment: SegmentKey, ctx: ReadContext) -> Response:
    return await ctx.read_async(lambda reads, actor: ops.read_segment(reads, actor, project, segment))


@router.patch(
    "/{segment}", response_model=schemas.SegmentOut, responses=CHANGE_ERRORS, summary="Update a segment"
)
def update_segment(
    project: ProjectKey, segment: SegmentKey, body: schemas.SegmentUpdate, ctx: ChangeContext
) -> Response:
    return ctx.write(lambda tx: ops.update_segment(tx, project, segment, body))


@router.delete(
    "/{segment}", status_code=204, responses=CHANGE_ERRORS, summary="Delete a segment (409 while in use)"
)
def delete_segment(project: ProjectKey, segment: SegmentKey, ctx: ChangeContext) -> Response:
    return ctx.write(lambda tx: ops.delete_segment(tx, project, segment))


@router.get(
    "/{segment}/flags",
    response_model=schemas.SegmentUsageOut,
    summary="Where the segment is used: flags (by environment) and other segments",
)
def segment_usage(project: ProjectKey, segment: SegmentKey, ctx: ReadContext) -> Response:
    return ctx.read(lambda session, actor: ops.segment_usage(session, actor, project, segment))


@router.get(
    "/{segment}/versions", response_model=schemas.Page[schemas.VersionSummary], summary="List versions"
)
def list_versions(
    project: ProjectKey,
    segment: SegmentKey,
    ctx: ReadContext,
    limit: Limit = 50,
    cursor: IntCursor = None,
) -> Response:
    return ctx.read(
        lambda session, actor: ops.list_versions(session, actor, project, segment, limit=limit, cursor=cursor)
    )


@router.get("/{segment}/versions/{n}", response_model=schemas.VersionOut, summary="Get one version")
def get_version(project: ProjectKey, segment: SegmentKey, n: VersionNumber, ctx: ReadContext) -> Response:
    return ctx.read(lambda session, actor: ops.read_version(session, actor, project, segment, n))


@router.get("/{segment}/diff", response_model=schemas.DiffOut, summary="Diff two versions")
def diff(
    project: ProjectKey,
    segment: SegmentKey,
    ctx: ReadContext,
    from_: Annotated[int, Query(alias="from", ge=1, le=2**31 - 1)],
    to: Annotated[int | None, Query(ge=1, le=2**31 - 1)] = None,
) -> Response:
    return ctx.read(lambda session, actor: ops.diff_versions(session, actor, project, segment, from_, to))


@router.post(
    "/{segment}/rollback",
    response_model=schemas.SegmentOut,
    responses=MATCHED_WRITE_ERRORS,
    summary="Restore an earlier version as a new version",
)
def rollback(
    project: ProjectKey, segment: SegmentKey, body: schemas.RollbackIn, ctx: PostChangeContext
) -> Response:
    return ctx.write(lambda tx: ops.rollback(tx, project, segment, body))
