"""Control-plane configuration from the environment (prefix ``FLAGYARD_``).

Secrets are :class:`~pydantic.SecretStr`, so they never reach a log line or a ``repr``; a settings error
is reported by :meth:`Settings.from_env` without the values pydantic would quote (it prints the raw input,
which holds every secret). In ``production`` mode the settings refuse the development defaults: the
bootstrap admin key, a weak one, and the development database credentials however the URL is spelled.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Any, Literal, Self

import sqlalchemy as sa
from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from flagyard.control_plane.exceptions import ConfigurationError

DEV_BOOTSTRAP_ADMIN_KEY = "fy_admin_development-bootstrap-key-do-not-use-in-production"
"""The bootstrap admin key of development mode; production mode refuses it."""

DEV_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/flagyard"

MIN_BOOTSTRAP_SECRET_CHARS = 43
"""Characters after ``fy_admin_``: 32 random bytes in URL-safe base64, what ``generate_key`` writes."""
MIN_BOOTSTRAP_SECRET_BITS = 128
"""Entropy the secret part must show (Shannon estimate of its characters × length); a generated key
shows about 200, a repeated or keyboard pattern far less."""
_BOOTSTRAP_KEY = re.compile(r"^fy_admin_([A-Za-z0-9_-]+)$")
_PLACEHOLDER = "REPLACE_ME"
"""The password of the Kubernetes secret template (k8s/secret.template.yaml)."""


def estimated_bits(secret: str) -> float:
    """Entropy a string shows: its length times the Shannon entropy of its character frequencies."""
    if not secret:
        return 0.0
    counts = Counter(secret).values()
    n = len(secret)
    return -n * sum(c / n * math.log2(c / n) for c in counts)


def bootstrap_key_problem(value: str) -> str | None:
    """Why production mode refuses a bootstrap admin key, or ``None`` (never quotes the key)."""
    if value == DEV_BOOTSTRAP_ADMIN_KEY:
        return "FLAGYARD_BOOTSTRAP_ADMIN_KEY is the development default"
    match = _BOOTSTRAP_KEY.match(value)
    if match is None:
        return "FLAGYARD_BOOTSTRAP_ADMIN_KEY must be fy_admin_ followed by URL-safe base64 characters"
    secret = match.group(1)
    if len(secret) < MIN_BOOTSTRAP_SECRET_CHARS:
        return (
            f"FLAGYARD_BOOTSTRAP_ADMIN_KEY needs at least {MIN_BOOTSTRAP_SECRET_CHARS} random characters "
            "after fy_admin_ (32 random bytes)"
        )
    if estimated_bits(secret) < MIN_BOOTSTRAP_SECRET_BITS:
        return (
            f"FLAGYARD_BOOTSTRAP_ADMIN_KEY is not random enough (under {MIN_BOOTSTRAP_SECRET_BITS} bits); "
            "generate one: fy_admin_ + secrets.token_urlsafe(32)"
        )
    return None


def database_url_problem(url: str) -> str | None:
    """Why production mode refuses a database URL, or ``None``.

    The URL is parsed, so any spelling of the development default is caught (``postgres://``,
    ``postgresql://``, ``postgresql+psycopg://``, ``localhost``, no port): the development credentials are
    PostgreSQL's superuser ``postgres`` without a password, trusted by the local server. The Kubernetes
    template's placeholders (password ``REPLACE_ME``, a host under ``.invalid``) are refused too.
    """
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return "FLAGYARD_DATABASE_URL is not a database URL"
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        return "FLAGYARD_DATABASE_URL must be a PostgreSQL URL"
    if parsed.username in (None, "", "postgres") and not parsed.password:
        return "FLAGYARD_DATABASE_URL uses the development credentials (user postgres without a password)"
    if parsed.password == _PLACEHOLDER or (parsed.host or "").lower().endswith(".invalid"):
        return "FLAGYARD_DATABASE_URL is the deployment template's placeholder"
    return None


def describe_errors(exc: ValidationError, env_prefix: str = "FLAGYARD_") -> str:
    """A settings error as lines ``FLAGYARD_NAME: why``, without the input values pydantic would quote
    (its default message shows the value, or for a model-level error every value: all the secrets)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = "_".join(str(part) for part in error.get("loc", ())).upper()
        where = f"{env_prefix}{loc}" if loc else "settings"
        lines.append(f"{where}: {error.get('msg', 'invalid')}")
    return "\n".join(lines)


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
    sync_queue: str = Field(default="", pattern=r"^[A-Za-z0-9_.:-]*$")
    """The RQ queue of outbox jobs; by default ``<redis_prefix>-sync``, so deployments that share a Redis
    with different prefixes never consume each other's jobs (RQ's own keys, ``rq:…``, are not under the
    prefix; only the queue name tells them apart)."""
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
    auth_failure_limit: int = Field(default=30, ge=0)
    """Failed authentications (401) per client address per window; beyond, 429. 0 disables it."""
    auth_failure_window_seconds: int = Field(default=60, ge=1)

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

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """The settings of the ``FLAGYARD_*`` environment; :class:`ConfigurationError` (naming each bad
        setting and why, never its value) instead of pydantic's message."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise ConfigurationError(f"bad settings:\n{describe_errors(exc)}") from None

    @model_validator(mode="before")
    @classmethod
    def _queue_follows_prefix(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("sync_queue"):
            return {**data, "sync_queue": f"{data.get('redis_prefix') or 'flagyard'}-sync"}
        return data

    @model_validator(mode="after")
    def _refuse_default_secrets(self) -> Settings:
        if self.mode != "production":
            return self
        problems = []
        key = self.bootstrap_admin_key
        if key is not None:
            problem = bootstrap_key_problem(key.get_secret_value())
            if problem:
                problems.append(problem)
        problem = database_url_problem(self.database_url.get_secret_value())
        if problem:
            problems.append(problem)
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
