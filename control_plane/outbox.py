"""The transactional outbox: how a committed change reaches the syncer, at least once.

Contract (the syncer relies on it):

* Every change writes, **in the same transaction**, one ``outbox`` row per affected environment:
  ``(id, environment_id, entity_type, entity_key, version, deleted, created_at, enqueued_at)`` with
  ``entity_type`` one of ``flag``, ``segment``, ``environment``, ``sdk_key`` (``entity_key`` is then the
  key's id; created, rotated or revoked). ``deleted`` marks a deletion (of the flag, the segment, the
  whole environment, or a revoked SDK key). A transaction that fails leaves no row.
* After commit, the rows become RQ jobs on queue ``flagyard-sync`` calling the syncer's
  :data:`~flagyard.contracts.queue.SYNC_JOB_FUNCTION` (by dotted path) with kwargs
  ``{"changes": [...]}``, a list of up to :data:`JOB_BATCH` changes
  ``{outbox_id, environment_id, entity_type, entity_key, version}`` (batching amortises RQ's own cost
  per job); then ``enqueued_at`` is set: at once by an inline dispatcher, within :data:`MARK_DELAY`
  seconds (one UPDATE for every row queued meanwhile) by the background one.
* The relay (:func:`relay_once`, looped by :class:`Relay` or ``python -m flagyard.control_plane.outbox``)
  re-enqueues rows whose ``enqueued_at`` is still NULL some grace period after their creation (the
  process died between commit and enqueue, or Redis was down). So a job can arrive twice, or after a
  newer one: the syncer must be idempotent and keep only rising versions per (environment, entity).
* Versions per flag (and per segment) only ever increase, also across delete and re-create of a key.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

import redis
import sqlalchemy as sa
import structlog
from rq import Queue, Retry
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session, sessionmaker

from flagyard.contracts.queue import SYNC_JOB_FUNCTION
from flagyard.contracts.redis_connect import redis_client
from flagyard.control_plane.metrics import Metrics
from flagyard.control_plane.services.common import OutboxMessage
from flagyard.db.models import OutboxEntry

JOB_BATCH = 200
"""Changes carried by one job at most: RQ's own cost per job (about 3 ms on the 2-core reference machine)
is paid once per batch, while a batch stays small enough for one syncer pass to finish well inside a
job timeout."""
JOB_RETRY_INTERVALS = [1, 2, 5, 10, 30]
"""Seconds between the retries of a failing job; after the last it lands in RQ's failed registry."""
MARK_DELAY = 0.2
"""Seconds the background dispatcher lets queued rows wait to be marked, so one UPDATE marks many. Far
below the relay's grace period: a row the relay sees unmarked was not queued."""
MARK_BATCH = 1000
"""Queued rows that are marked at once, without waiting for :data:`MARK_DELAY`."""

log = structlog.get_logger("flagyard.outbox")


def enqueue(connection: redis.Redis, queue_name: str, messages: Sequence[OutboxMessage]) -> None:
    """Enqueue the messages as RQ jobs of up to :data:`JOB_BATCH` changes each, in one Redis pipeline."""
    if not messages:
        return
    q = Queue(queue_name, connection=connection)
    batches = [messages[i : i + JOB_BATCH] for i in range(0, len(messages), JOB_BATCH)]
    q.enqueue_many(
        [
            Queue.prepare_data(
                SYNC_JOB_FUNCTION,
                kwargs={"changes": [m.job_kwargs() for m in batch]},
                description="sync "
                + ", ".join(
                    f"{m.entity_type} {m.entity_key} v{m.version} env {m.environment_id}" for m in batch[:3]
                )
                + (f" and {len(batch) - 3} more" if len(batch) > 3 else ""),
                meta={"outbox_ids": [m.outbox_id for m in batch]},
                retry=Retry(max=len(JOB_RETRY_INTERVALS), interval=JOB_RETRY_INTERVALS),
            )
            for batch in batches
        ]
    )


_MARK = (
    sa.update(OutboxEntry)
    .where(
        OutboxEntry.id == sa.any_(sa.bindparam("ids", type_=ARRAY(sa.BigInteger))),
        OutboxEntry.enqueued_at.is_(None),
    )
    .values(enqueued_at=sa.func.now())
)


def mark_enqueued(session: Session, ids: Iterable[int]) -> None:
    """Set ``enqueued_at`` on these rows (Core: no ORM bookkeeping; one array parameter)."""
    session.connection().execute(_MARK, {"ids": list(ids)})


def deliver(
    sessions: sessionmaker[Session],
    connection: redis.Redis,
    queue_name: str,
    messages: Sequence[OutboxMessage],
    metrics: Metrics | None = None,
) -> bool:
    """Enqueue committed rows and mark them; on failure leave them to the relay. True if all went well."""
    if not messages:
        return True
    return _enqueue_direct(connection, queue_name, messages, metrics) and _mark(
        sessions, [m.outbox_id for m in messages]
    )


def _enqueue_direct(
    connection: redis.Redis, queue_name: str, messages: Sequence[OutboxMessage], metrics: Metrics | None
) -> bool:
    try:
        enqueue(connection, queue_name, messages)
    except redis.RedisError as exc:
        log.warning("outbox.enqueue_failed", rows=len(messages), error=str(exc))
        if metrics:
            metrics.outbox_enqueue_failures.inc(len(messages))
        return False
    if metrics:
        metrics.outbox_enqueued.labels(path="direct").inc(len(messages))
    return True


def _mark(sessions: sessionmaker[Session], ids: list[int]) -> bool:
    if not ids:
        return True
    try:
        with sessions() as session, session.begin():
            mark_enqueued(session, ids)
    except sa.exc.SQLAlchemyError as exc:
        # The jobs are queued; the relay will queue them again later (at-least-once).
        log.warning("outbox.mark_failed", rows=len(ids), error=str(exc))
        return False
    return True


_MARK_NOW = object()
"""Queued by :meth:`Dispatcher.flush`: mark what was queued without waiting for :data:`MARK_DELAY`."""


class Dispatcher:
    """Hands committed outbox rows to RQ: ``inline`` in the caller, or batched on a background thread.

    The background thread queues each batch's jobs at once (that is what propagation waits for) and
    marks the rows it queued with one UPDATE every :data:`MARK_DELAY` seconds; rows whose jobs could
    not be queued stay unmarked for the relay.
    """

    def __init__(
        self,
        sessions: sessionmaker[Session],
        connection: redis.Redis,
        queue_name: str,
        *,
        background: bool,
        metrics: Metrics | None = None,
    ) -> None:
        self._sessions = sessions
        self._redis = connection
        self._queue_name = queue_name
        self._metrics = metrics
        self._background = background
        self._pending: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="flagyard-outbox-dispatcher", daemon=True)
            self._thread.start()

    def dispatch(self, messages: Sequence[OutboxMessage]) -> None:
        """Call after commit only."""
        if not messages:
            return
        if not self._background:
            deliver(self._sessions, self._redis, self._queue_name, messages, self._metrics)
            return
        for message in messages:
            self._pending.put(message)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait until everything dispatched so far was queued and marked; False on timeout."""
        if self._thread is not None:
            self._pending.put(_MARK_NOW)
        deadline = time.monotonic() + timeout
        while self._pending.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Queue and mark what is pending, then stop the thread."""
        if self._thread is not None:
            self._pending.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _take(self, timeout: float | None) -> list[object]:
        try:
            batch = [self._pending.get(timeout=timeout)]
        except queue.Empty:
            return []
        while len(batch) < 500:
            try:
                batch.append(self._pending.get_nowait())
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        unmarked: list[int] = []
        mark_by = 0.0
        owed = 0  # items taken whose task_done waits for their rows to be marked
        while True:
            batch = self._take(max(0.0, mark_by - time.monotonic()) if unmarked else None)
            messages = [m for m in batch if isinstance(m, OutboxMessage)]
            stopping = None in batch
            try:
                if messages and _enqueue_direct(self._redis, self._queue_name, messages, self._metrics):
                    if not unmarked:
                        mark_by = time.monotonic() + MARK_DELAY
                    unmarked.extend(m.outbox_id for m in messages)
                if unmarked and (
                    not batch
                    or stopping
                    or _MARK_NOW in batch
                    or len(unmarked) >= MARK_BATCH
                    or time.monotonic() >= mark_by
                ):
                    _mark(self._sessions, unmarked)
                    unmarked = []
            except Exception:
                log.exception("outbox.dispatch_crashed")
                unmarked = []  # the relay queues them again
            owed += len(batch)
            if not unmarked:
                for _ in range(owed):
                    self._pending.task_done()
                owed = 0
            if stopping:
                return


def relay_once(
    sessions: sessionmaker[Session],
    connection: redis.Redis,
    queue_name: str,
    *,
    grace_seconds: float,
    batch_size: int = 500,
    metrics: Metrics | None = None,
) -> int:
    """Re-enqueue rows committed more than ``grace_seconds`` ago and still not enqueued.

    Rows are locked with ``SKIP LOCKED`` so several relays can run at once; if Redis fails, nothing is
    marked and the rows are tried again next time. Returns how many rows were enqueued.
    """
    with sessions() as session, session.begin():
        rows = session.execute(
            sa.select(
                OutboxEntry.id,
                OutboxEntry.environment_id,
                OutboxEntry.entity_type,
                OutboxEntry.entity_key,
                OutboxEntry.version,
            )
            .where(
                OutboxEntry.enqueued_at.is_(None),
                OutboxEntry.created_at
                < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, grace_seconds),
            )
            .order_by(OutboxEntry.id)
            .limit(batch_size)
            .with_for_update(skip_locked=True)
        ).all()
        if not rows:
            return 0
        messages = [OutboxMessage(*row) for row in rows]
        enqueue(connection, queue_name, messages)
        mark_enqueued(session, [m.outbox_id for m in messages])
    log.info("outbox.relayed", rows=len(messages))
    if metrics:
        metrics.outbox_enqueued.labels(path="relay").inc(len(messages))
    return len(messages)


def prune(sessions: sessionmaker[Session], retention_hours: float) -> int:
    """Delete rows enqueued longer ago than the retention period."""
    with sessions() as session, session.begin():
        result = session.execute(
            sa.delete(OutboxEntry).where(
                OutboxEntry.enqueued_at
                < sa.func.now() - sa.func.make_interval(0, 0, 0, 0, 0, 0, retention_hours * 3600)
            )
        )
        return int(getattr(result, "rowcount", 0) or 0)


def backlog(session: Session) -> tuple[int, float]:
    """(rows not yet enqueued, age in seconds of the oldest of them)."""
    count, age = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(
                sa.func.extract("epoch", sa.func.now() - sa.func.min(OutboxEntry.created_at)), 0
            ),
        ).where(OutboxEntry.enqueued_at.is_(None))
    ).one()
    return int(count), float(age)


class Relay:
    """Runs :func:`relay_once` (and pruning) every ``interval`` seconds on a daemon thread."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        connection: redis.Redis,
        queue_name: str,
        *,
        interval: float,
        grace_seconds: float,
        retention_hours: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._args: dict[str, Any] = {"grace_seconds": grace_seconds, "metrics": metrics}
        self._sessions, self._redis, self._queue_name = sessions, connection, queue_name
        self._interval, self._retention = interval, retention_hours
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="flagyard-outbox-relay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run(self) -> None:
        last_prune = 0.0
        while not self._stop.wait(self._interval):
            try:
                while relay_once(self._sessions, self._redis, self._queue_name, **self._args) == 500:
                    pass
                if time.monotonic() - last_prune > 3600:
                    prune(self._sessions, self._retention)
                    last_prune = time.monotonic()
            except (redis.RedisError, sa.exc.SQLAlchemyError) as exc:
                log.warning("outbox.relay_failed", error=str(exc))


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m flagyard.control_plane.outbox [--once]``: run the relay from the command line."""
    from flagyard.contracts.logs import configure_logging
    from flagyard.db.engine import make_engine, make_sessionmaker

    from .exceptions import ConfigurationError
    from .settings import Settings

    parser = argparse.ArgumentParser(description="Re-enqueue outbox rows whose enqueue was lost.")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        raise SystemExit(f"flagyard.control_plane.outbox: {exc}") from None
    configure_logging(settings)
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    connection = redis_client(settings.redis_url.get_secret_value())
    if args.once:
        relay_once(sessions, connection, settings.sync_queue, grace_seconds=settings.outbox_grace_seconds)
        return
    relay = Relay(
        sessions,
        connection,
        settings.sync_queue,
        interval=settings.outbox_relay_interval_seconds or 5.0,
        grace_seconds=settings.outbox_grace_seconds,
        retention_hours=settings.outbox_retention_hours,
    )
    with contextlib.suppress(KeyboardInterrupt):
        relay.run()


if __name__ == "__main__":
    main()
