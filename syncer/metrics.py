"""The syncer's Prometheus metrics (prefix ``flagyard_syncer_``, bounded labels)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import redis
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job

REGISTRY = CollectorRegistry(auto_describe=True)

CHANGES = Counter(
    "flagyard_syncer_changes_total",
    "Changes handled, by outcome: applied (Redis changed), ignored (Redis already as new), invalid.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
JOB_SECONDS = Histogram(
    "flagyard_syncer_job_duration_seconds",
    "Time to handle one job (read PostgreSQL, validate, write Redis).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
PROPAGATION_SECONDS = Histogram(
    "flagyard_syncer_propagation_seconds",
    "From the outbox row's commit to the change being in Redis.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
FAILED_JOBS = Gauge(
    "flagyard_syncer_failed_jobs",
    "Jobs in RQ's failed registry (retries exhausted); `python -m flagyard.syncer failed requeue`.",
    registry=REGISTRY,
)
RECONCILE_REPAIRS = Counter(
    "flagyard_syncer_reconcile_repairs_total",
    "Differences between PostgreSQL and Redis repaired by the periodic reconcile.",
    ["kind"],
    registry=REGISTRY,
)
RECONCILE_RUNS = Counter(
    "flagyard_syncer_reconcile_runs_total", "Reconcile passes, by outcome.", ["outcome"], registry=REGISTRY
)

RECONCILE_LAST_SUCCESS = Gauge(
    "flagyard_syncer_reconcile_last_success_timestamp_seconds",
    "Unix time the last reconcile pass completed (0: none yet in this process); alert when it gets old.",
    registry=REGISTRY,
)
FAILURES = Counter(
    "flagyard_syncer_failures_total",
    "Unexpected failures the syncer isolated and carried on after, by stage: change (one change of a job), "
    "reconcile_definition (one flag or segment), reconcile_environment, reconcile_sdk_keys, reconcile "
    "(a whole pass), maintenance. The rest of the job or pass was still written.",
    ["stage"],
    registry=REGISTRY,
)
JOBS_RECOVERED = Counter(
    "flagyard_syncer_jobs_recovered_total",
    "Jobs put back on the queue because their worker died: abandoned (died mid-job), stuck (died between "
    "taking the job and starting it).",
    ["reason"],
    registry=REGISTRY,
)
REDIS_OUTAGES = Counter(
    "flagyard_syncer_redis_outages_total",
    "Times this process found Redis unreachable (counted once per outage, however long); the worker waits "
    "for Redis's return and goes on, its reconcile and maintenance threads keep running.",
    registry=REGISTRY,
)
FAILURE_STAGES = (
    "change",
    "reconcile_definition",
    "reconcile_environment",
    "reconcile_sdk_keys",
    "reconcile",
    "maintenance",
)
for _stage in FAILURE_STAGES:
    FAILURES.labels(_stage)
for _reason in ("abandoned", "stuck"):
    JOBS_RECOVERED.labels(_reason)


class QueueCollector(Collector):
    """The sync queue as Prometheus sees it at scrape time (read from Redis, so every replica agrees):
    ``flagyard_syncer_queue_jobs{state}`` (queued, started, scheduled — retries waiting for their delay) and
    ``flagyard_syncer_queue_oldest_job_age_seconds`` (0 when the queue is empty). Nothing is yielded while
    Redis is unreachable, so the series go stale rather than report a wrong zero."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue

    def collect(self) -> Iterator[Metric]:
        queue = self._queue
        try:
            queued = queue.count
            started = queue.started_job_registry.get_job_count(cleanup=False)
            scheduled = queue.scheduled_job_registry.get_job_count(cleanup=False)
            age = _oldest_age(queue)
        except redis.RedisError:
            return
        jobs = GaugeMetricFamily(
            "flagyard_syncer_queue_jobs", "Jobs of the sync queue by state.", labels=["state"]
        )
        jobs.add_metric(["queued"], queued)
        jobs.add_metric(["started"], started)
        jobs.add_metric(["scheduled"], scheduled)
        yield jobs
        yield GaugeMetricFamily(
            "flagyard_syncer_queue_oldest_job_age_seconds",
            "Time the oldest queued sync job has waited since it was enqueued (0: queue empty).",
            value=age,
        )


def _oldest_age(queue: Queue) -> float:
    ids = queue.get_job_ids(0, 1)
    if not ids:
        return 0.0
    try:
        enqueued_at = Job.fetch(ids[0], connection=queue.connection).enqueued_at
    except NoSuchJobError:
        return 0.0
    if enqueued_at is None:
        return 0.0
    if enqueued_at.tzinfo is None:
        enqueued_at = enqueued_at.replace(tzinfo=UTC)
    return max(0.0, (datetime.now(UTC) - enqueued_at).total_seconds())
