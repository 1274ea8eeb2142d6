"""What one running control plane holds: settings, database, Redis, outbox dispatcher, limiter, metrics."""

from __future__ import annotations

from dataclasses import dataclass

import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from flagyard.control_plane.db.reads import ReadPool
from flagyard.control_plane.metrics import Metrics
from flagyard.control_plane.outbox import Dispatcher, Relay
from flagyard.control_plane.ratelimit import RateLimiter
from flagyard.control_plane.scheduler import Scheduler
from flagyard.control_plane.services.keys import KeyCache
from flagyard.control_plane.settings import Settings
from flagyard.control_plane.webhooks import Worker


@dataclass
class AppState:
    settings: Settings
    engine: sa.Engine
    sessions: sessionmaker[Session]
    autocommit_sessions: sessionmaker[Session]
    """Sessions without a transaction, for reads that are one statement."""
    reads: ReadPool
    """The event loop's connections for single-statement reads."""
    redis: redis.Redis
    dispatcher: Dispatcher
    limiter: RateLimiter
    metrics: Metrics
    key_cache: KeyCache
    relay: Relay | None = None
    scheduler: Scheduler | None = None
    webhooks: Worker | None = None
    """The webhook delivery loop of this process (``None`` when its poll interval is 0)."""
