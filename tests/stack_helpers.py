"""Helpers the suites that run a whole stack share: a migrated database, and the control plane's settings
for a test (inline outbox dispatch, no relay, no rate limits, quiet logs) on a prefix and queue of its own.

Importable by name from any test directory (``tests/`` is on the import path through its conftest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config

from flagyard.control_plane.settings import Settings

ROOT = Path(__file__).resolve().parents[1]


def migrate(db_url: str) -> None:
    """Bring the database at ``db_url`` to the newest schema."""
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", db_url)
    config.attributes["configure_logging"] = False
    command.upgrade(config, "head")


def stack_settings(db_url: str, redis_url: str, *, prefix: str, queue: str, **overrides: Any) -> Settings:
    """The control plane's settings for a test stack; ``overrides`` replace any default below."""
    values: dict[str, Any] = {
        "database_url": db_url,
        "redis_url": redis_url,
        "sync_queue": queue,
        "redis_prefix": prefix,
        "outbox_dispatch": "inline",
        "outbox_relay_interval_seconds": 0,
        "rate_limit_requests": 0,
        "access_log": False,
        "log_level": "WARNING",
    }
    return Settings(**{**values, **overrides})
