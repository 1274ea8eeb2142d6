"""The syncer's queue gauges (what FlagyardSyncerBacklog alerts on), read from a real RQ queue in Redis."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import redis
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue
from rq.utils import utcformat

from flagyard.contracts.queue import SYNC_JOB_FUNCTION
from flagyard.syncer.metrics import QueueCollector

REDIS_URL = "redis://127.0.0.1:6379/10"


@pytest.fixture
def queue() -> Iterator[Queue]:
    connection = redis.Redis.from_url(REDIS_URL)
    name = f"flagyard-sync-ops-{uuid.uuid4().hex[:8]}"
    try:
        yield Queue(name, connection=connection)
    finally:
        for key in connection.scan_iter(f"rq:*{name}*"):
            connection.delete(key)
        connection.close()


def _samples(collector: QueueCollector) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_queue_collector__empty_queue__zero_jobs_and_zero_age(queue: Queue) -> None:
    samples = _samples(QueueCollector(queue))
    assert samples == {
        ("flagyard_syncer_queue_jobs", (("state", "queued"),)): 0.0,
        ("flagyard_syncer_queue_jobs", (("state", "started"),)): 0.0,
        ("flagyard_syncer_queue_jobs", (("state", "scheduled"),)): 0.0,
        ("flagyard_syncer_queue_oldest_job_age_seconds", ()): 0.0,
    }


def test_queue_collector__jobs_waiting__counts_them_and_ages_the_oldest(queue: Queue) -> None:
    oldest = queue.enqueue(SYNC_JOB_FUNCTION, changes=[])
    queue.enqueue(SYNC_JOB_FUNCTION, changes=[])
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    queue.connection.hset(oldest.key, "enqueued_at", utcformat(two_hours_ago))

    samples = _samples(QueueCollector(queue))

    assert samples["flagyard_syncer_queue_jobs", (("state", "queued"),)] == 2.0
    assert samples["flagyard_syncer_queue_oldest_job_age_seconds", ()] >= 2 * 3600


def test_queue_collector__retry_waiting__counted_as_scheduled(queue: Queue) -> None:
    queue.enqueue_at(datetime.now(UTC) + timedelta(hours=1), SYNC_JOB_FUNCTION, changes=[])

    samples = _samples(QueueCollector(queue))

    assert samples["flagyard_syncer_queue_jobs", (("state", "scheduled"),)] == 1.0
    assert samples["flagyard_syncer_queue_jobs", (("state", "queued"),)] == 0.0


def test_queue_collector__redis_unreachable__exports_nothing_rather_than_zero() -> None:
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    samples = _samples(QueueCollector(Queue("flagyard-sync", connection=unreachable)))
    assert samples == {}
