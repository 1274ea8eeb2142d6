"""Syncer configuration (prefix ``FLAGYARD_``): the shared groups it reads and its own knobs.

The syncer reads PostgreSQL (:class:`~flagyard.db.settings.DatabaseSettings`: production mode refuses the
development database credentials) and consumes the sync queue and writes the Redis contract
(:class:`~flagyard.contracts.settings.SyncQueueSettings`); nothing of the control plane's API, keys or outbox.
"""

from __future__ import annotations

from pydantic import Field

from flagyard.contracts.settings import SyncQueueSettings
from flagyard.db.settings import DatabaseSettings

from .exceptions import ConfigurationError


class SyncerSettings(DatabaseSettings, SyncQueueSettings):
    """The database, Redis and queue the syncer works between, and the syncer's own knobs."""

    configuration_error = ConfigurationError

    stream_max_length: int = Field(default=10_000, ge=100)
    """Approximate length each environment's event stream is trimmed to."""
    reconcile_interval_seconds: float = Field(default=60.0, ge=0)
    """How often PostgreSQL and Redis are compared and repaired; 0 disables the loop."""
    syncer_workers: int = Field(default=1, ge=1, le=64)
    """Worker processes started by ``python -m flagyard.syncer worker``."""
    syncer_metrics_port: int = Field(default=9102, ge=0, le=65535)
    """Prometheus metrics port of the first worker process (0: no metrics server)."""
    syncer_metrics_host: str = "0.0.0.0"  # noqa: S104 - a scraper elsewhere must reach it; `flagyard up` binds loopback
    """Address the metrics server binds."""
