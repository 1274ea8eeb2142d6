"""The transactional outbox: how a committed change reaches the syncer, at least once.

Contract (the syncer relies on it):

* Every change writes, **in the same transaction**, one ``outbox`` row per affected environment:
  ``(id, environment_id, entity_type, entity_key, version, deleted, created_at, enqueued_at)`` with
  ``entity_type`` one of ``flag``, ``segment``, ``environment``, ``sdk_key`` (``entity_key`` is then the
  key's id; created, rotated or revoked). ``deleted`` marks a deletion (of the flag, the segment, the
  whole environment, or a revoked SDK key). A transaction that fails leaves no row.
* After commit, the rows become RQ jobs on queue ``flagyard-sync`` calling
  ``flagyard.syncer.jobs.sync_changes`` (by dotted path) with kwargs ``{"changes": [...]}``, a list of up
  to :data:`JOB_BATCH` changes ``{outbox_id, environment_id, entity_type, entity_key, version}``
  (batching amortises RQ's own cost per job); then ``enqueued_at`` is set.
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
from sqlalchemy.orm import Session, sessionmaker

from flagyard.control_plane.db.models import OutboxEntry
from flagyard.control_plane.metrics import Metrics
from flagyard.control_plane.services.common import OutboxMessage

JOB_FUNCTION = "flagyard.syncer.jobs.sync_changes"
"""The RQ job's function, by dotted path (the control plane does not import the syncer)."""
JOB_BATCH = 200
"""Changes carried by one job at most."""
JOB_RETRY_INTERVALS = [1, 2, 5, 10, 30]
"""Seconds between the retries of a failing job; after the last it lands in RQ's failed registry."""

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
                JOB_FUNCTION,
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


def mark_enqueued(session: Session, ids: Iterable[int]) -> None:
    session.execute(
        sa.update(OutboxEntry)
        .where(OutboxEntry.id.in_(list(ids)), OutboxEntry.enqueued_at.is_(None))
        .values(enqueued_at=sa.func.now())
    )


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
    try:
        enqueue(connection, queue_name, messages)
    except redis.RedisError as exc:
        log.warning("outbox.enqueue_failed", rows=len(messages), error=str(exc))
        if metrics:
            metrics.outbox_enqueue_failures.inc(len(messages))
        return False
    if metrics:
        metrics.outbox_enqueued.labels(path="direct").inc(len(messages))
    try:
        with sessions() as session, session.begin():
            mark_enqueued(session, [m.outbox_id for m in messages])
    except sa.exc.SQLAlchemyError as exc:
        # The jobs are queued; the relay will queue them again later (at-least-once).
        log.warning("outbox.mark_failed", rows=len(messages), error=str(exc))
        return False
    return True


class Dispatcher:
    """Hands committed outbox rows to RQ: ``inline`` in the caller, or batched on a background thread."""

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
        self._pending: queue.Queue[OutboxMessage | None] = queue.Queue()
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
        """Wait until everything dispatched so far was handled; False on timeout."""
        deadline = time.monotonic() + timeout
        while self._pending.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._pending.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _run(self) -> None:
        while True:
            first = self._pending.get()
            batch = [first]
            while len(batch) < 500:
                try:
                    batch.append(self._pending.get_nowait())
                except queue.Empty:
                    break
            messages = [m for m in batch if m is not None]
            try:
                deliver(self._sessions, self._redis, self._queue_name, messages, self._metrics)
            except Exception:
                log.exception("outbox.dispatch_crashed")
            finally:
                for _ in batch:
                    self._pending.task_done()
            if any(m is None for m in batch):
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
    from .db.engine import make_engine, make_sessionmaker
    from .logs import configure_logging
    from .settings import Settings

    parser = argparse.ArgumentParser(description="Re-enqueue outbox rows whose enqueue was lost.")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging(settings)
    engine = make_engine(settings)
    sessions = make_sessionmaker(engine)
    connection = redis.Redis.from_url(settings.redis_url.get_secret_value())
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
