"""The scheduler: applies due scheduled changes (``services/schedules.py``), once each.

Why a table polled under a lock rather than RQ's scheduler: RQ keeps its schedule in Redis, which this
deployment runs without persistence (``--save ""``): a Redis restart would forget every schedule. The
``scheduled_changes`` table is in PostgreSQL, so a schedule is as durable as the change it makes, and
marking it ``applied`` commits in the same transaction as the change (its version, audit entry and
outbox rows): a crash before the commit leaves it pending for the next pass, a crash after leaves it
applied; nothing is applied twice.

Every control-plane process runs :class:`Scheduler` on a thread (``FLAGYARD_SCHEDULER_INTERVAL_SECONDS``,
0 disables it), and ``python -m flagyard.control_plane.scheduler`` runs it alone; any number may run at
once, since each claims a row with ``FOR UPDATE SKIP LOCKED`` (:func:`run_once`).

Outcomes: :data:`OUTCOME_HOOKS` are called after each commit with an :class:`Outcome` (applied or
failed): the one place to hang notifications (webhooks) of scheduled changes.
"""

from __future__ import annotations

import argparse
import contextlib
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import sqlalchemy as sa
import structlog
from sqlalchemy.orm import Session, sessionmaker

from flagyard.contracts.redis_connect import redis_client
from flagyard.control_plane.exceptions import ControlPlaneError, is_connection_error
from flagyard.control_plane.metrics import Metrics
from flagyard.control_plane.outbox import Dispatcher
from flagyard.control_plane.services import schedules
from flagyard.control_plane.services.common import Tx

log = structlog.get_logger("flagyard.scheduler")

BATCH = 100
"""Changes one pass applies at most (each in its own transaction); the next pass goes on."""


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of one scheduled change (after its transaction committed)."""

    id: int
    project: str
    environment: str
    kind: str
    target: str
    status: Literal["applied", "failed"]
    version: int | None
    """The flag's or segment's version after the change (``applied``)."""
    failure_code: str | None
    failure_message: str | None


OUTCOME_HOOKS: list[Callable[[Outcome], None]] = []
"""Called with every committed outcome, in the scheduler's thread; a hook's error is logged and ignored."""


def _finished(outcome: Outcome, metrics: Metrics | None) -> None:
    if metrics is not None:
        metrics.scheduled_applied.labels(outcome=outcome.status).inc()
    if outcome.status == "applied":
        log.info(
            "scheduled_change.applied",
            id=outcome.id,
            project=outcome.project,
            environment=outcome.environment,
            kind=outcome.kind,
            target=outcome.target,
            version=outcome.version,
        )
    else:
        log.warning(
            "scheduled_change.failed",
            id=outcome.id,
            project=outcome.project,
            environment=outcome.environment,
            kind=outcome.kind,
            target=outcome.target,
            code=outcome.failure_code,
            error=outcome.failure_message,
        )
    for hook in OUTCOME_HOOKS:
        try:
            hook(outcome)
        except Exception:
            log.exception("scheduled_change.hook_failed", id=outcome.id)


def apply_one(
    sessions: sessionmaker[Session],
    dispatcher: Dispatcher | None,
    now: datetime,
    metrics: Metrics | None = None,
) -> Outcome | None:
    """Claim the most overdue pending change and apply it, or record why it failed; ``None`` when
    nothing is due (or every due one is being applied by another scheduler).

    The change runs inside a savepoint: when it fails, the savepoint is rolled back and the failure is
    recorded in the same transaction, the row still locked. A lost connection or an operational error
    (timeout, deadlock) rolls everything back and leaves the change pending for the next pass.
    """
    with sessions() as session:
        claimed = schedules.claim(session, now)
        if claimed is None:
            session.rollback()
            return None
        row = claimed.row
        tx: Tx | None = None
        version: int | None = None
        error: ControlPlaneError | None = None
        try:
            with session.begin_nested():
                actor = schedules.author(session, row, now)
                tx = Tx(session, actor, schedules.request_id(row.id))
                version = schedules.apply_claimed(tx, claimed)
        except Exception as exc:
            if isinstance(exc, sa.exc.SQLAlchemyError) and is_connection_error(exc):
                raise  # the database's trouble, not the change's: it stays pending for the next pass
            if isinstance(exc, ControlPlaneError):
                error = exc
            else:
                # A bug, or a statement the database refuses for this change (its savepoint is rolled
                # back, the transaction goes on): retrying it each pass would hold up every change due
                # after it, so it fails visibly and the error is logged.
                log.exception("scheduled_change.crashed", id=row.id)
                error = ControlPlaneError("the change could not be applied (an internal error)")
            if tx is not None:
                tx.discard()
            tx = Tx(session, schedules.failure_actor(row), schedules.request_id(row.id))
            schedules.record_failure(tx, claimed, error)
        assert tx is not None
        tx.run_deferred()
        session.commit()
    if dispatcher is not None:
        dispatcher.dispatch(tx.messages())
    outcome = Outcome(
        id=row.id,
        project=claimed.project.key,
        environment=claimed.environment,
        kind=row.kind,
        target=row.target_key,
        status="applied" if error is None else "failed",
        version=version,
        failure_code=error.code if error else None,
        failure_message=error.message if error else None,
    )
    _finished(outcome, metrics)
    return outcome


def run_once(
    sessions: sessionmaker[Session],
    dispatcher: Dispatcher | None,
    *,
    now: datetime | None = None,
    metrics: Metrics | None = None,
    batch: int = BATCH,
) -> list[Outcome]:
    """Apply up to ``batch`` changes due at ``now`` (the clock's now by default), each in its own
    transaction."""
    now = now or datetime.now(UTC)
    outcomes = []
    for _ in range(batch):
        outcome = apply_one(sessions, dispatcher, now, metrics)
        if outcome is None:
            break
        outcomes.append(outcome)
    return outcomes


class Scheduler:
    """Runs :func:`run_once` every ``interval`` seconds on a daemon thread."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        dispatcher: Dispatcher | None,
        *,
        interval: float,
        metrics: Metrics | None = None,
    ) -> None:
        self._sessions, self._dispatcher, self._metrics = sessions, dispatcher, metrics
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.run, name="flagyard-scheduler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                while len(run_once(self._sessions, self._dispatcher, metrics=self._metrics)) == BATCH:
                    if self._stop.is_set():
                        return
            except sa.exc.SQLAlchemyError as exc:
                log.warning("scheduler.pass_failed", error=str(exc).splitlines()[0][:300])
            except Exception:
                log.exception("scheduler.pass_crashed")


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m flagyard.control_plane.scheduler [--once]``: run the scheduler alone."""

    from flagyard.contracts.logs import configure_logging
    from flagyard.db.engine import make_engine, make_sessionmaker

    from .exceptions import ConfigurationError
    from .settings import Settings

    parser = argparse.ArgumentParser(description="Apply due scheduled changes.")
    parser.add_argument("--once", action="store_true", help="one pass, then exit")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except ConfigurationError as exc:
        raise SystemExit(f"flagyard.control_plane.scheduler: {exc}") from None
    configure_logging(settings)
    sessions = make_sessionmaker(make_engine(settings))
    connection = redis_client(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )
    # Inline: each change's outbox rows are queued before the next; a failed enqueue is left to the relay.
    dispatcher = Dispatcher(sessions, connection, settings.sync_queue, background=False)
    if args.once:
        run_once(sessions, dispatcher)
        return
    scheduler = Scheduler(sessions, dispatcher, interval=settings.scheduler_interval_seconds or 1.0)
    log.info("scheduler.started", interval=settings.scheduler_interval_seconds or 1.0)
    with contextlib.suppress(KeyboardInterrupt):
        scheduler.run()


if __name__ == "__main__":
    main()
