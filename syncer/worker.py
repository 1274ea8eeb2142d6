"""Running the syncer: RQ workers without a fork per job, the periodic reconcile, failed-job tools.

Nothing here forks: RQ's ``with_scheduler`` would fork a scheduler process that outlives a worker killed
with SIGKILL (holding its metrics port, so every restart failed). Instead each worker process runs one
maintenance thread (:class:`Maintenance`) that, every :data:`MAINTENANCE_INTERVAL` seconds:

* refreshes the worker's liveness key (``P:syncer:alive:{worker}``, expiring after :data:`ALIVE_TTL`);
* while it holds the queue's maintenance lock (one worker at a time, expiring after :data:`LOCK_TTL`):
  moves retries whose delay is over from the scheduled registry to the queue (RQ's scheduler, in process);
  puts back at the front of the queue every started job whose worker's liveness key is gone (the worker
  died mid-job: RQ alone would notice only when the job's timeout + 60 s ran out) and every job left in
  RQ's intermediate list longer than :data:`STUCK_SECONDS` (the worker died between taking it and
  starting it). Jobs are idempotent (the version guard), so running one again is always safe;
* stops the worker (SIGTERM, a warm shutdown) when the process that started it is gone, so no worker
  outlives the process that supervises it.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import threading
import time
from dataclasses import dataclass, field

import redis
import structlog
from prometheus_client import start_http_server
from rq import Queue, SimpleWorker
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.scheduler import RQScheduler

from . import jobs, metrics
from .settings import SyncerSettings

log = structlog.get_logger("flagyard.syncer")

MAINTENANCE_INTERVAL = 1.0
"""Seconds between two maintenance passes of a worker process."""
ALIVE_TTL = 4.0
"""Seconds a worker's liveness key lives without a refresh: how soon a dead worker's job is run again."""
LOCK_TTL = 3.0
"""Seconds the queue's maintenance lock outlives the worker holding it (a SIGKILLed one)."""
STUCK_SECONDS = 3.0
"""Seconds a job may sit in RQ's intermediate list, between a worker taking it and starting it."""
RECONCILE_RETRY_SECONDS = 5.0
"""Seconds before a failed reconcile pass is tried again (when the interval is longer)."""


def queue(settings: SyncerSettings, connection: redis.Redis) -> Queue:
    return Queue(settings.sync_queue, connection=connection)


def alive_key(prefix: str, worker_name: str) -> str:
    return f"{prefix}:syncer:alive:{worker_name}"


def lock_key(prefix: str, queue_name: str) -> str:
    return f"{prefix}:syncer:maintenance:{queue_name}"


def reconcile_loop(settings: SyncerSettings, connection: redis.Redis, stop: threading.Event) -> None:
    """Reconcile at once (this hydrates an empty Redis), then every ``reconcile_interval_seconds``.

    Nothing a pass raises ends the loop: a pass that fails is logged, counted
    (``flagyard_syncer_failures_total{stage="reconcile"}``) and tried again after at most
    :data:`RECONCILE_RETRY_SECONDS`; ``flagyard_syncer_reconcile_last_success_timestamp_seconds`` tells an
    alert when passes stop succeeding."""
    failed = FailedJobRegistry(queue=queue(settings, connection))
    interval = settings.reconcile_interval_seconds
    while not stop.is_set():
        ok = False
        try:
            jobs.current().reconcile()
            ok = True
            metrics.RECONCILE_LAST_SUCCESS.set(time.time())
            metrics.FAILED_JOBS.set(failed.count)
        except Exception as exc:  # the thread must survive anything: it is the repair of last resort
            metrics.FAILURES.labels("reconcile").inc()
            log.error("reconcile.failed", error_type=type(exc).__name__, error=_first_line(exc))
        if interval <= 0 or stop.wait(interval if ok else min(interval, RECONCILE_RETRY_SECONDS)):
            return


@dataclass
class Maintenance:
    """The maintenance thread of one worker process (see the module's docstring)."""

    settings: SyncerSettings
    worker_name: str
    stop: threading.Event
    parent: int | None = None
    """The process whose end stops this worker (its supervisor), or None."""
    _stuck: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._redis = redis.Redis.from_url(
            self.settings.redis_url.get_secret_value(),
            socket_timeout=self.settings.redis_timeout_seconds,
            socket_connect_timeout=self.settings.redis_timeout_seconds,
        )
        self._queue = queue(self.settings, self._redis)
        self._scheduler = RQScheduler(
            [self._queue.name], connection=self._redis, logging_level=logging.WARNING, name=self.worker_name
        )
        self._scheduler.prepare_registries([self._queue.name])
        self._alive = alive_key(self.settings.redis_prefix, self.worker_name)
        self._lock = lock_key(self.settings.redis_prefix, self._queue.name)

    def start(self) -> threading.Thread:
        self.beat()
        thread = threading.Thread(target=self.run, name="flagyard-maintenance", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        while not self.stop.wait(MAINTENANCE_INTERVAL):
            if self.orphaned():
                return
            try:
                self.tick()
            except Exception as exc:  # Redis away, a job we cannot read: the next pass tries again
                metrics.FAILURES.labels("maintenance").inc()
                log.warning("maintenance.failed", error_type=type(exc).__name__, error=_first_line(exc))

    def orphaned(self) -> bool:
        """True (and the worker told to stop) once the process that started this one is gone."""
        if self.parent is None or os.getppid() == self.parent:
            return False
        log.error("worker.orphaned", parent=self.parent)
        os.kill(os.getpid(), signal.SIGTERM)
        return True

    def beat(self) -> None:
        self._redis.set(self._alive, "1", px=int(ALIVE_TTL * 1000))

    def tick(self) -> None:
        self.beat()
        if not self._hold_lock():
            self._stuck.clear()
            return
        self._scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
        self.recover_abandoned()
        self.recover_stuck()

    def _hold_lock(self) -> bool:
        ttl = int(LOCK_TTL * 1000)
        if self._redis.set(self._lock, self.worker_name, nx=True, px=ttl):
            return True
        holder = self._redis.get(self._lock)
        if holder is not None and _text(holder) == self.worker_name:
            self._redis.pexpire(self._lock, ttl)
            return True
        return False

    def recover_abandoned(self) -> int:
        """Requeue every started job whose worker is dead; returns how many."""
        registry = self._queue.started_job_registry
        recovered = 0
        for entry in self._started_entries():
            # The execution names its worker from the moment it is registered (the job only a moment
            # later, and until then still names the worker of a previous, abandoned execution).
            execution = Execution.from_composite_key(entry, connection=self._redis)
            worker = _text(self._redis.hget(execution.key, "worker_name") or b"")
            if worker and self._redis.exists(alive_key(self.settings.redis_prefix, worker)):
                continue
            if not self._redis.zrem(registry.key, entry):
                continue  # finished meanwhile, or another worker took it
            job = Job.fetch_many([execution.job_id], connection=self._redis)[0]
            if job is None or job.get_status(refresh=True) != JobStatus.STARTED:
                continue
            job.started_at = None
            self._queue.enqueue_job(job, at_front=True)
            recovered += 1
            metrics.JOBS_RECOVERED.labels("abandoned").inc()
            log.warning("job.recovered", job_id=job.id, reason="abandoned", worker=worker)
        return recovered

    def _started_entries(self) -> list[str]:
        """The started registry's ``job_id:execution_id`` entries."""
        return [_text(raw) for raw in self._redis.zrange(self._queue.started_job_registry.key, 0, -1)]

    def recover_stuck(self) -> int:
        """Requeue jobs a dead worker took from the queue but never started; returns how many."""
        now = time.monotonic()
        key = self._queue.intermediate_queue_key
        waiting = {_text(raw) for raw in self._redis.lrange(key, 0, -1)}
        started = {entry.split(":", 1)[0] for entry in self._started_entries()}
        self._stuck = {job_id: self._stuck.get(job_id, now) for job_id in waiting - started}
        recovered = 0
        for job_id, since in list(self._stuck.items()):
            if now - since < STUCK_SECONDS:
                continue
            del self._stuck[job_id]
            if not self._redis.lrem(key, 1, job_id):
                continue
            job = Job.fetch_many([job_id], connection=self._redis)[0]
            if job is None or job.get_status(refresh=True) not in (JobStatus.QUEUED, JobStatus.STARTED):
                continue
            self._queue.enqueue_job(job, at_front=True)
            recovered += 1
            metrics.JOBS_RECOVERED.labels("stuck").inc()
            log.warning("job.recovered", job_id=job_id, reason="stuck")
        return recovered

    def close(self) -> None:
        try:
            self._redis.delete(self._alive)
            if self._redis.get(self._lock) == self.worker_name.encode():
                self._redis.delete(self._lock)
        except redis.RedisError:
            pass
        self._redis.close()


def run_worker(
    settings: SyncerSettings, *, index: int = 0, burst: bool = False, parent: int | None = None
) -> None:
    """One worker process: a ``SimpleWorker`` (jobs run in this process, no fork per job) that stops when
    ``parent`` (default: the supervisor named by ``FLAGYARD_SUPERVISOR_PID``, if any) is gone."""
    if parent is None:
        parent = _supervisor_pid()
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
            start_http_server(
                settings.syncer_metrics_port, addr=settings.syncer_metrics_host, registry=metrics.REGISTRY
            )
        threading.Thread(
            target=reconcile_loop, args=(settings, connection, stop), name="flagyard-reconcile", daemon=True
        ).start()
    worker = SimpleWorker([queue(settings, connection)], connection=connection, name=None)
    # RQ backs off up to 60 s between reconnects; after a Redis outage jobs would wait that long.
    worker.max_connection_wait_time = 2.0
    maintenance = Maintenance(settings, worker.name, stop, parent)
    maintenance.start()
    log.info("worker.started", queue=settings.sync_queue, index=index, burst=burst, pid=os.getpid())
    # What start-up built lives as long as the process: keep it out of the cyclic collector, whose full
    # passes over it stalled a job for 60-100 ms once per few hundred changes (propagation_bench's p99).
    gc.freeze()
    try:
        if burst:
            maintenance.tick()  # retries already due and jobs of dead workers are part of this burst
        worker.work(burst=burst, with_scheduler=False, logging_level="WARNING")
    finally:
        stop.set()
        maintenance.close()


def run_workers(settings: SyncerSettings, processes: int, *, burst: bool = False) -> None:
    """``processes`` worker processes (the first also reconciles and serves metrics); waits for all."""
    if processes == 1:
        run_worker(settings, burst=burst)
        return
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(
            target=run_worker,
            args=(settings,),
            kwargs={"index": i, "burst": burst, "parent": os.getpid()},
            daemon=False,
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


def _supervisor_pid() -> int | None:
    """The supervisor that started this process (``flagyard up`` sets ``FLAGYARD_SUPERVISOR_PID``), if it
    is still our parent."""
    try:
        pid = int(os.environ.get("FLAGYARD_SUPERVISOR_PID", ""))
    except ValueError:
        return None
    return pid if pid == os.getppid() else None


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_line(exc: BaseException) -> str:
    """An error's first line only: a driver's message may go on to repeat the statement and its data."""
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else ""
