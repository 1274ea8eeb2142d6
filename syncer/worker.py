"""Running the syncer: RQ workers without a fork per job, the periodic reconcile, failed-job tools."""

from __future__ import annotations

import gc
import multiprocessing
import threading

import redis
import structlog
from prometheus_client import start_http_server
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import FailedJobRegistry

from . import jobs, metrics
from .exceptions import StoreUnavailableError
from .settings import SyncerSettings

log = structlog.get_logger("flagyard.syncer")


def queue(settings: SyncerSettings, connection: redis.Redis) -> Queue:
    return Queue(settings.sync_queue, connection=connection)


def reconcile_loop(settings: SyncerSettings, connection: redis.Redis, stop: threading.Event) -> None:
    """Reconcile at once (this hydrates an empty Redis), then every ``reconcile_interval_seconds``."""
    syncer = jobs.current()
    failed = FailedJobRegistry(queue=queue(settings, connection))
    while not stop.is_set():
        try:
            syncer.reconcile()
            metrics.FAILED_JOBS.set(failed.count)
        except StoreUnavailableError as exc:
            log.warning("reconcile.failed", error=str(exc))
        except redis.RedisError as exc:
            log.warning("reconcile.failed", error=str(exc))
        if settings.reconcile_interval_seconds <= 0 or stop.wait(settings.reconcile_interval_seconds):
            return


def run_worker(settings: SyncerSettings, *, index: int = 0, burst: bool = False) -> None:
    """One worker process: a ``SimpleWorker`` (jobs run in this process, no fork per job)."""
    connection = redis.Redis.from_url(settings.redis_url.get_secret_value())
    jobs.configure(jobs.build_syncer(settings))
    stop = threading.Event()
    if index == 0:
        if settings.syncer_metrics_port:
            # Its own connection with timeouts: a hanging Redis must not hang /metrics (the k8s probes).
            scrape = redis.Redis.from_url(
                settings.redis_url.get_secret_value(),
                socket_timeout=settings.redis_timeout_seconds,
                socket_connect_timeout=settings.redis_timeout_seconds,
            )
            metrics.REGISTRY.register(metrics.QueueCollector(queue(settings, scrape)))
            start_http_server(settings.syncer_metrics_port, registry=metrics.REGISTRY)
        threading.Thread(
            target=reconcile_loop, args=(settings, connection, stop), name="flagyard-reconcile", daemon=True
        ).start()
    worker = SimpleWorker([queue(settings, connection)], connection=connection, name=None)
    # RQ backs off up to 60 s between reconnects; after a Redis outage jobs would wait that long.
    worker.max_connection_wait_time = 2.0
    log.info("worker.started", queue=settings.sync_queue, index=index, burst=burst)
    # What start-up built lives as long as the process: keep it out of the cyclic collector, whose full
    # passes over it stalled a job for 60-100 ms once per few hundred changes (propagation_bench's p99).
    gc.freeze()
    try:
        worker.work(burst=burst, with_scheduler=True, logging_level="WARNING")
    finally:
        stop.set()


def run_workers(settings: SyncerSettings, processes: int, *, burst: bool = False) -> None:
    """``processes`` worker processes (the first also reconciles and serves metrics); waits for all."""
    if processes == 1:
        run_worker(settings, burst=burst)
        return
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=run_worker, args=(settings,), kwargs={"index": i, "burst": burst}, daemon=False
        )
        for i in range(processes)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()


def failed_jobs(settings: SyncerSettings) -> list[Job]:
    """Jobs whose retries are exhausted."""
    connection = redis.Redis.from_url(settings.redis_url.get_secret_value())
    registry = FailedJobRegistry(queue=queue(settings, connection))
    return [job for job in Job.fetch_many(registry.get_job_ids(), connection=connection) if job is not None]


def requeue_failed(settings: SyncerSettings, job_ids: list[str] | None = None) -> int:
    """Put failed jobs back on the queue (all of them when ``job_ids`` is None); returns how many."""
    connection = redis.Redis.from_url(settings.redis_url.get_secret_value())
    registry = FailedJobRegistry(queue=queue(settings, connection))
    ids = registry.get_job_ids() if job_ids is None else job_ids
    for job_id in ids:
        registry.requeue(job_id)
    return len(ids)
