"""The sync queue's failed jobs (retries exhausted): list them and put them back on the queue.

Global admin only. The registry is RQ's ``FailedJobRegistry`` of the queue the outbox enqueues to, the
same one the syncer's ``failed list|requeue`` command works on; the control plane reaches it
through its own Redis connection, without importing the syncer.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import PostContext, ReadContext
from flagyard.control_plane.api.params import API_PREFIX, ERRORS, WRITE_ERRORS, IntCursor, Limit
from flagyard.control_plane.services import jobs as ops

router = APIRouter(route_class=StrictRoute, prefix=API_PREFIX + "/jobs", tags=["jobs"], responses=ERRORS)


@router.get(
    "/failed",
    response_model=schemas.Page[schemas.FailedJobOut],
    summary="List the sync jobs whose retries are exhausted (global admin)",
)
def list_failed_jobs(ctx: ReadContext, limit: Limit = 50, cursor: IntCursor = None) -> Response:
    connection, queue = ctx.state.redis, ctx.state.settings.sync_queue
    return ctx.read(lambda session, actor: ops.list_failed(connection, queue, actor, limit, cursor))


@router.post(
    "/failed/requeue",
    response_model=schemas.RequeueOut,
    responses={**WRITE_ERRORS, 404: {"model": schemas.ErrorBody, "description": "A job is not failed."}},
    summary="Put failed sync jobs back on the queue (all of them without job_ids; global admin)",
)
def requeue_failed_jobs(
    ctx: PostContext, body: Annotated[schemas.RequeueIn | None, Body()] = None
) -> Response:
    connection, queue = ctx.state.redis, ctx.state.settings.sync_queue
    return ctx.write(lambda tx: ops.requeue(connection, queue, tx, (body or schemas.RequeueIn()).job_ids))
