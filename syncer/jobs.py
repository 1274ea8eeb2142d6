"""The RQ job functions the control plane enqueues by dotted path
(:data:`flagyard.contracts.queue.SYNC_JOB_FUNCTION` names :func:`sync_changes`).

A worker process configures one :class:`~.core.Syncer` with :func:`configure`; if none was configured,
the first job builds one from the environment's settings.
"""

from __future__ import annotations

import threading
from typing import Any

from flagyard.contracts.redis_connect import redis_client
from flagyard.db.engine import make_engine, make_sessionmaker

from .core import Outcome, Syncer
from .settings import SyncerSettings

_lock = threading.Lock()
_syncer: Syncer | None = None


def configure(syncer: Syncer | None) -> None:
    """Set (or, with ``None``, forget) the syncer that jobs in this process use."""
    global _syncer
    with _lock:
        _syncer = syncer


def build_syncer(settings: SyncerSettings) -> Syncer:
    """A syncer over the configured PostgreSQL and Redis."""
    client = redis_client(
        settings.redis_url.get_secret_value(),
        socket_timeout=settings.redis_timeout_seconds,
        socket_connect_timeout=settings.redis_timeout_seconds,
    )
    sessions = make_sessionmaker(make_engine(settings))
    return Syncer(sessions, client, settings.redis_prefix, stream_maxlen=settings.stream_max_length)


def current() -> Syncer:
    global _syncer
    with _lock:
        if _syncer is None:
            _syncer = build_syncer(SyncerSettings.from_env())
        return _syncer


def sync_change(
    outbox_id: int, environment_id: int, entity_type: str, entity_key: str, version: int
) -> Outcome:
    """Propagate one committed change to Redis (idempotent; see :class:`~.core.Syncer`)."""
    return current().sync_change(environment_id, entity_type, entity_key, version, outbox_id)


def sync_changes(changes: list[dict[str, Any]]) -> dict[str, int]:
    """Propagate a batch of committed changes (one outbox job); returns how many had each outcome."""
    return current().sync_changes(changes)
