"""The sync queue's failed jobs (retries exhausted): list them and put them back on the queue.

Global admin only. The registry is RQ's ``FailedJobRegistry`` of the queue the outbox enqueues to, the
same one ``python -m flagyard.syncer failed list|requeue`` works on; the control plane reaches it
through its own Redis connection, without importing the syncer.
"""

from __future__ import annotations

from datetime import UTC, datetime

import redis
from rq import Queue
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job
from rq.registry import FailedJobRegistry

from flagyard.control_plane.exceptions import (
    Detail,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
)
from flagyard.control_plane.services.common import Actor, Result, Tx


def _require_global_admin(actor: Actor) -> None:
    if not actor.is_global_admin:
        raise PermissionDeniedError("the sync queue's failed jobs need a global admin key")


def _registry(connection: redis.Redis, queue: str) -> FailedJobRegistry:
    return FailedJobRegistry(queue=Queue(queue, connection=connection))


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


def list_failed(connection: redis.Redis, queue: str, actor: Actor, limit: int, cursor: int | None) -> Result:
    _require_global_admin(actor)
    start = cursor or 0
    try:
        registry = _registry(connection, queue)
        ids = registry.get_job_ids(start, start + limit)
        jobs = [job for job in Job.fetch_many(ids[:limit], connection=connection) if job is not None]
        items = [_job_body(job) for job in jobs]
    except redis.RedisError as exc:
        raise ServiceUnavailableError("Redis is unavailable; the failed jobs cannot be read") from exc
    return Result({"items": items, "next_cursor": str(start + limit) if len(ids) > limit else None})


def requeue(connection: redis.Redis, queue: str, tx: Tx, job_ids: list[str] | None) -> Result:
    _require_global_admin(tx.actor)
    try:
        registry = _registry(connection, queue)
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
