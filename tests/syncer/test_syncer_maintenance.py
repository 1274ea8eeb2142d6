"""The syncer's maintenance thread against a real Redis (db 4, a fresh prefix and queue per test): it does
what RQ's forked scheduler did (due retries back on the queue) and puts back jobs a dead worker held."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from rq import Queue, Retry

from flagyard.contracts.queue import SYNC_JOB_FUNCTION
from flagyard.syncer.settings import SyncerSettings
from flagyard.syncer.worker import STUCK_SECONDS, Maintenance, alive_key, lock_key

REDIS_URL = os.environ.get("FLAGYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/4")


@pytest.fixture
def settings() -> Iterator[SyncerSettings]:
    settings = SyncerSettings(
        redis_url=REDIS_URL,  # type: ignore[arg-type]
        redis_prefix=f"fymaint-{uuid.uuid4().hex[:8]}",
        sync_queue=f"flagyard-sync-maint-{uuid.uuid4().hex[:8]}",
    )
    yield settings
    client = redis.Redis.from_url(REDIS_URL)
    for key in [
        *client.scan_iter(f"{settings.redis_prefix}:*"),
        *client.scan_iter(f"rq:*{settings.sync_queue}*"),
    ]:
        client.delete(key)
    client.close()


@pytest.fixture
def queue(settings: SyncerSettings) -> Iterator[Queue]:
    client = redis.Redis.from_url(REDIS_URL)
    yield Queue(settings.sync_queue, connection=client)
    client.close()


def maintenance(settings: SyncerSettings) -> Maintenance:
    return Maintenance(settings, f"worker-{uuid.uuid4().hex[:8]}", threading.Event())


def test_tick__retry_due__moved_back_to_the_queue(settings: SyncerSettings, queue: Queue) -> None:
    due = queue.enqueue_at(
        datetime.now(UTC) - timedelta(seconds=1), SYNC_JOB_FUNCTION, changes=[], retry=Retry(max=1)
    )
    later = queue.enqueue_at(datetime.now(UTC) + timedelta(hours=1), SYNC_JOB_FUNCTION, changes=[])
    m = maintenance(settings)
    try:
        m.tick()  # before: only RQ's forked scheduler process did this
    finally:
        m.close()
    assert queue.get_job_ids() == [due.id]
    assert queue.scheduled_job_registry.get_job_ids() == [later.id]


def test_tick__job_left_in_the_intermediate_list__requeued_after_the_grace(
    settings: SyncerSettings, queue: Queue
) -> None:
    job = queue.enqueue(SYNC_JOB_FUNCTION, changes=[])
    # A worker took it (RQ moves it to the intermediate list) and died before starting it.
    queue.connection.lmove(queue.key, queue.intermediate_queue_key, "RIGHT", "LEFT")
    m = maintenance(settings)
    try:
        m.tick()
        assert queue.get_job_ids() == []  # a live worker may be about to start it
        time.sleep(STUCK_SECONDS + 0.2)
        m.tick()  # before: RQ looked again only after a minute, at its 10-minute maintenance
    finally:
        m.close()
    assert queue.get_job_ids() == [job.id]
    assert queue.connection.llen(queue.intermediate_queue_key) == 0


def test_tick__lock_held_by_a_live_worker__only_the_holder_maintains(
    settings: SyncerSettings, queue: Queue
) -> None:
    holder, other = maintenance(settings), maintenance(settings)
    due = queue.enqueue_at(datetime.now(UTC) - timedelta(seconds=1), SYNC_JOB_FUNCTION, changes=[])
    try:
        holder.beat()
        queue.connection.set(
            lock_key(settings.redis_prefix, settings.sync_queue), holder.worker_name, px=3000
        )
        other.tick()
        assert queue.get_job_ids() == []
        holder.tick()
        assert queue.get_job_ids() == [due.id]
        assert queue.connection.exists(alive_key(settings.redis_prefix, other.worker_name))
    finally:
        holder.close()
        other.close()
    assert not queue.connection.exists(alive_key(settings.redis_prefix, holder.worker_name))
