"""The sync queue's failed jobs (retries exhausted): list them and put them back on the queue.

Global admin only. The registry is RQ's ``FailedJobRegistry`` of the queue the outbox enqueues to, the
same one the syncer's ``failed list|requeue`` command works on; the control plane reaches it
through its own Redis connection, without importing the syncer.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import redis
from fastapi import APIRouter, Body
from pydantic import Field, StringConstraints
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import ReadContext, WriteContext
from flagyard.control_plane.api.params import API_PREFIX, ERRORS, WRITE_ERRORS, IntCursor, Limit
from flagyard.control_plane.exceptions import (
    Detail,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from flagyard.control_plane.services.common import Actor, Result, Tx
from flagyard.control_plane.state import AppState

router = APIRouter(route_class=StrictRoute, prefix=API_PREFIX + "/jobs", tags=["jobs"], responses=ERRORS)

JobId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$")]


class FailedJobOut(schemas.Output):
    id: str
    description: str | None
    enqueued_at: datetime | None
    ended_at: datetime | None
    error: str = Field(description="The last attempt's exception: its type and message.")


class RequeueIn(schemas.Input):
    job_ids: list[JobId] | None = Field(
        default=None, min_length=1, max_length=1000, description="Jobs to requeue; none: every failed job."
    )


class RequeueOut(schemas.Output):
    requeued: list[str]


def _require_global_admin(actor: Actor) -> None:
    if not actor.is_global_admin:
        raise PermissionDeniedError("the sync queue's failed jobs need a global admin key")


def _registry(state: AppState) -> FailedJobRegistry:
    return FailedJobRegistry(queue=Queue(state.settings.sync_queue, connection=state.redis))


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


def _exception(traceback: str) -> str:
    """The exception of a formatted traceback (its type and message, without the frames)."""
    lines = traceback.rstrip().splitlines()
    start = max((i for i, line in enumerate(lines) if line.startswith("Traceback (")), default=-1)
    return " ".join(line for line in lines[start + 1 :] if not line.startswith(" "))[:2000]


def _job_body(job: Job) -> dict[str, object]:
    result = job.latest_result()
    return {
        "id": job.id,
        "description": job.description,
        "enqueued_at": _utc(job.enqueued_at),
        "ended_at": _utc(job.ended_at),
        "error": _exception(result.exc_string or "") if result is not None else "",
    }


def list_failed(state: AppState, actor: Actor, limit: int, cursor: int | None) -> Result:
    _require_global_admin(actor)
    start = cursor or 0
    try:
        registry = _registry(state)
        ids = registry.get_job_ids(start, start + limit)
        jobs = [job for job in Job.fetch_many(ids[:limit], connection=state.redis) if job is not None]
        items = [_job_body(job) for job in jobs]
    except redis.RedisError as exc:
        raise ServiceUnavailableError("Redis is unavailable; the failed jobs cannot be read") from exc
    return Result({"items": items, "next_cursor": str(start + limit) if len(ids) > limit else None})


def requeue(state: AppState, tx: Tx, job_ids: list[str] | None) -> Result:
    _require_global_admin(tx.actor)
    try:
        registry = _registry(state)
        if job_ids is None:
            ids = registry.get_job_ids()
        else:
            ids = list(dict.fromkeys(job_ids))
            missing = [
                Detail(f"/job_ids/{i}", f"job {job_id} is not in the failed registry")
                for i, job_id in enumerate(job_ids)
                if job_id not in registry
            ]
            if missing:
                raise NotFoundError("no such failed job; nothing was requeued", missing)
        requeued = []
        for job_id in ids:
            try:
                registry.requeue(job_id)
            except (InvalidJobOperation, NoSuchJobError):
                continue  # requeued or deleted concurrently
            requeued.append(job_id)
    except redis.RedisError as exc:
        raise ServiceUnavailableError("Redis is unavailable; no failed job was requeued") from exc
    tx.events.append(("job.requeued", {"count": len(requeued), "job_ids": requeued[:20]}))
    return Result({"requeued": requeued})


@router.get(
    "/failed",
    response_model=schemas.Page[FailedJobOut],
    summary="List the sync jobs whose retries are exhausted (global admin)",
)
def list_failed_jobs(ctx: ReadContext, limit: Limit = 50, cursor: IntCursor = None) -> Response:
    state = ctx.state
    return ctx.read(lambda session, actor: list_failed(state, actor, limit, cursor))


@router.post(
    "/failed/requeue",
    response_model=RequeueOut,
    responses={**WRITE_ERRORS, 404: {"model": schemas.ErrorBody, "description": "A job is not failed."}},
    summary="Put failed sync jobs back on the queue (all of them without job_ids; global admin)",
)
def requeue_failed_jobs(ctx: WriteContext, body: Annotated[RequeueIn | None, Body()] = None) -> Response:
    state = ctx.state
    return ctx.write(lambda tx: requeue(state, tx, (body or RequeueIn()).job_ids))
