"""Control-plane configuration from the environment (prefix ``FLAGYARD_``).

Secrets are :class:`~pydantic.SecretStr`, so they never reach a log line or a ``repr``. In
``production`` mode the settings refuse the development defaults (the bootstrap admin key above all).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_BOOTSTRAP_ADMIN_KEY = "fy_admin_development-bootstrap-key-do-not-use-in-production"
"""The bootstrap admin key of development mode; production mode refuses it."""

DEV_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/flagyard"


class Settings(BaseSettings):
    """Every knob of the control plane. Read once at start-up; pass explicitly to :func:`create_app`."""

    model_config = SettingsConfigDict(env_prefix="FLAGYARD_", env_file=None, extra="ignore", frozen=True)

    mode: Literal["development", "production"] = "development"

    database_url: SecretStr = SecretStr(DEV_DATABASE_URL)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    db_read_pool_size: int = Field(default=10, ge=1, le=200)
    """Connections of the event loop's pool for single-statement reads (beside ``db_pool_size``)."""
    db_connect_timeout_seconds: int = Field(default=3, ge=1)
    db_statement_timeout_ms: int = Field(default=15_000, ge=0)

    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    redis_timeout_seconds: float = Field(default=2.0, gt=0)
    sync_queue: str = "flagyard-sync"
    redis_prefix: str = Field(default="flagyard", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """Prefix of every key of the Redis contract (ARCHITECTURE.md), shared with the syncer and data plane."""
    stale_flag_days: float = Field(default=7.0, gt=0)
    """A flag not evaluated for this long (or never) is reported as stale."""

    bootstrap_admin_key: SecretStr | None = SecretStr(DEV_BOOTSTRAP_ADMIN_KEY)
    """Inserted as a global admin key on first start (when no API key exists at all)."""
    key_rotation_overlap_seconds: int = Field(default=24 * 3600, ge=0)
    """How long a rotated key keeps working next to its replacement."""

    auth_cache_seconds: float = Field(default=5.0, ge=0)
    """How long a process trusts a key it authenticated; other processes see a revocation this late."""

    rate_limit_requests: int = Field(default=1200, ge=0)
    """Requests per key per window on the admin API; 0 disables rate limiting."""
    rate_limit_window_seconds: int = Field(default=60, ge=1)

    idempotency_ttl_seconds: int = Field(default=24 * 3600, ge=60)

    outbox_dispatch: Literal["inline", "background"] = "background"
    """``inline`` enqueues in the request after commit; ``background`` hands rows to a batching thread."""
    outbox_relay_interval_seconds: float = Field(default=5.0, ge=0)
    """How often the in-app relay runs; 0 disables it (run ``python -m flagyard.control_plane.outbox``)."""
    outbox_grace_seconds: float = Field(default=10.0, ge=0)
    """Rows not enqueued this long after their commit are re-enqueued by the relay."""
    outbox_retention_hours: float = Field(default=72.0, gt=0)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = True
    access_log: bool = True

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.mode != "production":
            return self
        problems = []
        key = self.bootstrap_admin_key
        if key is not None:
            value = key.get_secret_value()
            if value == DEV_BOOTSTRAP_ADMIN_KEY:
                problems.append("FLAGYARD_BOOTSTRAP_ADMIN_KEY is the development default")
            elif not value.startswith("fy_admin_") or len(value) < len("fy_admin_") + 32:
                problems.append(
                    "FLAGYARD_BOOTSTRAP_ADMIN_KEY must be fy_admin_ followed by 32+ random characters"
                )
        if self.database_url.get_secret_value() == DEV_DATABASE_URL:
            problems.append("FLAGYARD_DATABASE_URL is the development default")
        if problems:
            raise ValueError("production mode refuses default secrets: " + "; ".join(problems))
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg 3 driver, whatever scheme was configured."""
        url = self.database_url.get_secret_value()
        for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url
