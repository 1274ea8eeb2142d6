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

A Redis outage of any length never ends the process (before, a Redis error in RQ's bookkeeping around a
job — the failure record of a job that failed because Redis was away, a heartbeat — left RQ's work loop
as "an unhandled exception, quitting", and the process, its reconcile thread included, ended with it). The
worker (:class:`_Worker`) ends its RQ work loop quietly on the first Redis connection error, wherever it
occurs; :func:`run_worker` then waits for Redis (backoff up to :data:`OUTAGE_BACKOFF_MAX` seconds) and
starts a new RQ worker under a new name. The old name's liveness key is deleted, so a job the old worker
left started is put back on the queue by the maintenance thread at its next pass (jobs are idempotent).
The maintenance and reconcile threads keep running throughout. Each outage is logged once when it starts
(``syncer.redis_outage``) and once when it ends (``syncer.redis_back``), and counted in
``flagyard_syncer_redis_outages_total`` (:class:`RedisOutage`).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, TypeVar

import redis
import structlog
from prometheus_client import start_http_server
from redis.client import Pipeline
from rq import Queue, SimpleWorker
from rq.exceptions import StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry
from rq.scheduler import RQScheduler

from flagyard.contracts.logs import configure_logging
from flagyard.contracts.redis_connect import redis_client

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
OUTAGE_BACKOFF_MAX = 2.0
"""Seconds at most between two attempts to reach Redis again: how late a worker resumes after an outage."""
REDIS_DOWN = (redis.ConnectionError, redis.TimeoutError)
"""Redis unreachable (refused, reset, timed out, still loading its data): an outage, not a bug."""

_T = TypeVar("_T")


def queue(settings: SyncerSettings, connection: redis.Redis) -> Queue:
    return Queue(settings.sync_queue, connection=connection)


def alive_key(prefix: str, worker_name: str) -> str:
    return f"{prefix}:syncer:alive:{worker_name}"


def lock_key(prefix: str, queue_name: str) -> str:
    return f"{prefix}:syncer:maintenance:{queue_name}"


class RedisOutage:
    """Whether this process finds Redis unreachable. Every thread that meets the outage reports it here; it
    is logged once when it starts (``syncer.redis_outage``, where it was met first) and once when it ends
    (``syncer.redis_back``, with its length), and counted once in ``flagyard_syncer_redis_outages_total``,
    however long it lasts and however many threads meet it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since: float | None = None

    def down(self, where: str, exc: BaseException) -> None:
        with self._lock:
            if self._since is not None:
                return
            self._since = time.monotonic()
        metrics.REDIS_OUTAGES.inc()
        log.error("syncer.redis_outage", where=where, error_type=type(exc).__name__, error=_first_line(exc))

    def up(self) -> None:
        with self._lock:
            since, self._since = self._since, None
        if since is not None:
            log.warning("syncer.redis_back", down_seconds=round(time.monotonic() - since, 2))


def _redis_down(exc: BaseException) -> BaseException | None:
    """The Redis connection error behind ``exc`` (itself or its cause), if any."""
    for error in (exc, exc.__cause__):
        if isinstance(error, REDIS_DOWN):
            return error
    return None


def reconcile_loop(
    settings: SyncerSettings,
    connection: redis.Redis,
    stop: threading.Event,
    outage: RedisOutage | None = None,
) -> None:
    """Reconcile at once (this hydrates an empty Redis), then every ``reconcile_interval_seconds``.

    Nothing a pass raises ends the loop: a pass that fails is counted
    (``flagyard_syncer_failures_total{stage="reconcile"}``), logged (a Redis outage only once, through
    ``outage``) and tried again after at most :data:`RECONCILE_RETRY_SECONDS`;
    ``flagyard_syncer_reconcile_last_success_timestamp_seconds`` tells an alert when passes stop
    succeeding."""
    outage = outage or RedisOutage()
    failed = FailedJobRegistry(queue=queue(settings, connection))
    interval = settings.reconcile_interval_seconds
    while not stop.is_set():
        ok = False
        try:
            jobs.current().reconcile()
            ok = True
            metrics.RECONCILE_LAST_SUCCESS.set(time.time())
            outage.up()
            metrics.FAILED_JOBS.set(failed.count)
        except Exception as exc:  # the thread must survive anything: it is the repair of last resort
            metrics.FAILURES.labels("reconcile").inc()
            down = _redis_down(exc)
            if down is not None:
                outage.down("reconcile", down)
            else:
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
    outage: RedisOutage = field(default_factory=RedisOutage)
    _stuck: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._redis = redis_client(
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
        self._owner = self.worker_name
        """Who holds the maintenance lock: this process's first worker name, kept by :meth:`follow`."""

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
            except REDIS_DOWN as exc:  # the next pass tries again
                self.outage.down("maintenance", exc)
            except Exception as exc:  # a job we cannot read: the next pass tries again
                metrics.FAILURES.labels("maintenance").inc()
                log.warning("maintenance.failed", error_type=type(exc).__name__, error=_first_line(exc))
            else:
                self.outage.up()

    def orphaned(self) -> bool:
        """True (and the worker told to stop) once the process that started this one is gone."""
        if self.parent is None or os.getppid() == self.parent:
            return False
        log.error("worker.orphaned", parent=self.parent)
        os.kill(os.getpid(), signal.SIGTERM)
        return True

    def beat(self) -> None:
        self._redis.set(self._alive, "1", px=int(ALIVE_TTL * 1000))

    def follow(self, worker_name: str) -> None:
        """Keep ``worker_name`` (this process's new RQ worker, after an outage) alive from now on. The old
        name's liveness key is deleted (or expires within :data:`ALIVE_TTL`), so the job its worker left
        started is put back on the queue at the next pass."""
        old = self._alive
        self.worker_name = worker_name
        self._alive = alive_key(self.settings.redis_prefix, worker_name)
        try:
            self.beat()
            self._redis.delete(old)
        except redis.RedisError:
            pass  # the new worker's first heartbeat fails too; the maintenance thread beats again in 1 s

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
        if self._redis.set(self._lock, self._owner, nx=True, px=ttl):
            return True
        holder = self._redis.get(self._lock)
        if holder is not None and _text(holder) == self._owner:
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
            if self._redis.get(self._lock) == self._owner.encode():
                self._redis.delete(self._lock)
        except redis.RedisError:
            pass
        self._redis.close()


class _Worker(SimpleWorker):
    """RQ's ``SimpleWorker`` whose work loop ends quietly at the first Redis connection error, wherever RQ
    meets it (its bookkeeping before and after a job, a heartbeat, a suspension check), and records it in
    :attr:`redis_error`. RQ would log it as an unhandled exception and quit; :func:`run_worker` waits for
    Redis instead and goes on with a new worker. Only the wait for the next job keeps RQ's own reconnect
    loop (its first retry comes before the next heartbeat, which then ends the loop)."""

    redis_error: BaseException | None = None
    signalled: threading.Event
    """Set by SIGTERM or SIGINT, for the whole process: it ends rather than starting a new worker."""

    def _guarded(self, call: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        try:
            return call(*args, **kwargs)
        except REDIS_DOWN as exc:
            self.redis_error = exc
            raise StopRequested from exc

    def request_stop(self, signum: int, frame: FrameType | None) -> None:
        self.signalled.set()
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def check_for_suspension(self, burst: bool) -> None:
        if self.signalled.is_set():  # a signal came between two workers, before RQ's handlers were back
            raise StopRequested
        self._guarded(super().check_for_suspension, burst)

    def run_maintenance_tasks(self) -> None:
        self._guarded(super().run_maintenance_tasks)

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        return self._guarded(super().dequeue_job_and_maintain_ttl, timeout, max_idle_time)

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        self._guarded(super().heartbeat, timeout, pipeline)

    def execute_job(self, job: Job, queue: Queue) -> None:
        self._guarded(super().execute_job, job, queue)

    def perform_job(self, job: Job, queue: Queue, execution: Execution) -> bool:
        done = super().perform_job(job, queue, execution)
        if not done and self.connection.zscore(queue.started_job_registry.key, execution.composite_key):
            # RQ logs and drops a failure it could not record ("failed to persist failure"): the job would
            # stay started under a living worker, which nothing recovers. A new worker name makes it
            # abandoned, so the maintenance thread puts it back on the queue.
            raise redis.ConnectionError("the job's failure could not be recorded in Redis")
        return done


def _stop_pubsub(worker: _Worker) -> None:
    """Stop the worker's pubsub thread, which RQ's teardown stops only when Redis answers (else it would
    retry, and log, every 2 s forever)."""
    thread: Any = getattr(worker, "pubsub_thread", None)
    if thread is not None:
        thread.stop()


def _register_death(worker: _Worker) -> None:
    """What RQ's teardown could not do while Redis was away (best effort: RQ forgets a worker whose key
    expired anyway)."""
    with contextlib.suppress(redis.RedisError):
        worker.register_death()  # type: ignore[no-untyped-call]


def _wait_for_redis(probe: redis.Redis, outage: RedisOutage, stopping: threading.Event) -> bool:
    """Ping Redis (backoff up to :data:`OUTAGE_BACKOFF_MAX` s) until it answers (True) or the worker is told
    to stop (False); an outage is reported at the first ping that fails (a blip already over is not)."""
    delay = 0.1
    while not stopping.is_set():
        try:
            probe.ping()
        except REDIS_DOWN as exc:
            outage.down("worker", exc)
            stopping.wait(delay)
            delay = min(delay * 2, OUTAGE_BACKOFF_MAX)
            continue
        outage.up()
        return True
    return False


def run_worker(
    settings: SyncerSettings, *, index: int = 0, burst: bool = False, parent: int | None = None
) -> None:
    """One worker process: a ``SimpleWorker`` (jobs run in this process, no fork per job) that stops when
    ``parent`` (default: the supervisor named by ``FLAGYARD_SUPERVISOR_PID``, if any) is gone, and outlives
    any Redis outage (see the module's docstring)."""
    configure_logging(settings)  # in every worker: a spawned process starts with structlog unconfigured
    if parent is None:
        parent = _supervisor_pid()
    connection = redis_client(settings.redis_url.get_secret_value())
    # Timeouts: a Redis that hangs must not hang the wait for its return.
    probe = redis_client(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )
    jobs.configure(jobs.build_syncer(settings))
    stop = threading.Event()
    outage = RedisOutage()
    if index == 0:
        if settings.syncer_metrics_port:
            # Its own connection with timeouts: a hanging Redis must not hang /metrics (the k8s probes).
            scrape = redis_client(
                settings.redis_url.get_secret_value(),
                socket_timeout=settings.redis_timeout_seconds,
                socket_connect_timeout=settings.redis_timeout_seconds,
            )
            metrics.REGISTRY.register(metrics.QueueCollector(queue(settings, scrape)))
            start_http_server(
                settings.syncer_metrics_port, addr=settings.syncer_metrics_host, registry=metrics.REGISTRY
            )
        threading.Thread(
            target=reconcile_loop,
            args=(settings, connection, stop, outage),
            name="flagyard-reconcile",
            daemon=True,
        ).start()
    signalled = threading.Event()
    worker = _new_worker(settings, connection, signalled)
    maintenance = Maintenance(settings, worker.name, stop, parent, outage)
    maintenance.start()
    log.info("worker.started", queue=settings.sync_queue, index=index, burst=burst, pid=os.getpid())
    # What start-up built lives as long as the process: keep it out of the cyclic collector, whose full
    # passes over it stalled a job for 60-100 ms once per few hundred changes (propagation_bench's p99).
    gc.freeze()
    try:
        if burst:
            maintenance.tick()  # retries already due and jobs of dead workers are part of this burst
        while True:
            try:
                worker.work(burst=burst, with_scheduler=False, logging_level="WARNING")
            except REDIS_DOWN as exc:  # RQ's teardown could not register the worker's death
                worker.redis_error = worker.redis_error or exc
            if signalled.is_set():
                return
            cause = worker.redis_error
            if cause is None:
                try:
                    probe.ping()
                except REDIS_DOWN as exc:  # met where the worker does not look: an outage all the same
                    cause = exc
            if cause is None:
                return  # a burst done, or an error RQ logged that is not an outage: as before, we end
            if not _outlast(worker, probe, outage, signalled):
                return
            worker = _new_worker(settings, connection, signalled)
            maintenance.follow(worker.name)
            log.info("worker.resumed", worker=worker.name, after=type(cause).__name__)
    finally:
        stop.set()
        maintenance.close()


def _new_worker(settings: SyncerSettings, connection: redis.Redis, signalled: threading.Event) -> _Worker:
    worker = _Worker([queue(settings, connection)], connection=connection, name=None)
    worker.signalled = signalled
    # RQ backs off up to 60 s between reconnects; after a Redis outage jobs would wait that long.
    worker.max_connection_wait_time = OUTAGE_BACKOFF_MAX
    return worker


def _outlast(
    worker: _Worker,
    probe: redis.Redis,
    outage: RedisOutage,
    signalled: threading.Event,
) -> bool:
    """Wait for Redis after ``worker``'s loop ended on an outage; False if a signal asked to stop meanwhile.
    SIGTERM and SIGINT only set ``signalled`` until the next worker's loop installs RQ's handlers again."""

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        signalled.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    _stop_pubsub(worker)
    back = _wait_for_redis(probe, outage, signalled)
    _register_death(worker)
    return back and not signalled.is_set()


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
    connection = redis_client(settings.redis_url.get_secret_value())
    registry = FailedJobRegistry(queue=queue(settings, connection))
    return [job for job in Job.fetch_many(registry.get_job_ids(), connection=connection) if job is not None]


def requeue_failed(settings: SyncerSettings, job_ids: list[str] | None = None) -> int:
    """Put failed jobs back on the queue (all of them when ``job_ids`` is None); returns how many."""
    connection = redis_client(settings.redis_url.get_secret_value())
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
