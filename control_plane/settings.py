"""Control-plane configuration from the environment (prefix ``FLAGYARD_``).

The control plane composes the shared groups (mode and logging, Redis and the sync queue:
:mod:`flagyard.contracts.settings`; the database: :mod:`flagyard.db.settings`) and adds its own knobs: the
bootstrap admin key, rate limits, authentication, idempotency and the outbox. Secrets are
:class:`~pydantic.SecretStr`, so they never reach a log line or a ``repr``; a settings error is reported by
:meth:`Settings.from_env` without the values pydantic would quote (it prints the raw input, which holds every
secret). In ``production`` mode the settings refuse the development defaults: the bootstrap admin key, a weak
one, and the development database credentials however the URL is spelled.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from typing import Literal

from pydantic import Field, SecretStr

from flagyard.contracts.settings import PLACEHOLDER_PASSWORD, SyncQueueSettings
from flagyard.control_plane.exceptions import ConfigurationError
from flagyard.db.settings import DatabaseSettings

DEV_BOOTSTRAP_ADMIN_KEY = "fy_admin_development-bootstrap-key-do-not-use-in-production"
"""The bootstrap admin key of development mode; production mode refuses it."""

MIN_BOOTSTRAP_SECRET_CHARS = 43
"""Characters after ``fy_admin_``: 32 random bytes in URL-safe base64, what ``generate_key`` writes."""
MIN_BOOTSTRAP_SECRET_BITS = 128
"""Entropy the secret part must show (Shannon estimate of its characters × length); a generated key
shows about 200, a repeated or keyboard pattern far less."""
DEV_WEBHOOK_SECRET_KEY = "development-webhook-secret-key-do-not-use-in-production"  # noqa: S105 - refused in production
"""The key webhook signing secrets are encrypted with in development mode; production mode refuses it."""
MIN_WEBHOOK_SECRET_KEY_CHARS = 32
_BOOTSTRAP_KEY = re.compile(r"^fy_admin_([A-Za-z0-9_-]+)$")


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


def webhook_secret_key_problem(value: str | None) -> str | None:
    """Why production mode refuses the webhook secrets' encryption key, or ``None`` (never quotes it)."""
    if not value:
        return (
            "FLAGYARD_WEBHOOK_SECRET_KEY is not set (it encrypts webhook signing secrets): generate one with "
            "secrets.token_urlsafe(32)"
        )
    if value == PLACEHOLDER_PASSWORD:
        return "FLAGYARD_WEBHOOK_SECRET_KEY is the deployment template's placeholder"
    if value == DEV_WEBHOOK_SECRET_KEY:
        return "FLAGYARD_WEBHOOK_SECRET_KEY is the development default"
    if len(value) < MIN_WEBHOOK_SECRET_KEY_CHARS or estimated_bits(value) < MIN_BOOTSTRAP_SECRET_BITS:
        return (
            f"FLAGYARD_WEBHOOK_SECRET_KEY is too weak (at least {MIN_WEBHOOK_SECRET_KEY_CHARS} characters "
            f"showing {MIN_BOOTSTRAP_SECRET_BITS} bits): generate one with secrets.token_urlsafe(32)"
        )
    return None


class Settings(DatabaseSettings, SyncQueueSettings):
    """Every knob of the control plane. Read once at start-up; pass explicitly to :func:`create_app`."""

    configuration_error = ConfigurationError

    db_read_pool_size: int = Field(default=10, ge=1, le=200)
    """Connections of the event loop's pool for single-statement reads (beside ``db_pool_size``)."""
    stale_flag_days: float = Field(default=7.0, gt=0)
    """A flag not evaluated for this long (or never) is reported as stale."""

    bootstrap_admin_key: SecretStr | None = SecretStr(DEV_BOOTSTRAP_ADMIN_KEY)
    """Inserted as a global admin key on first start (when no API key exists at all)."""
    key_rotation_overlap_seconds: int = Field(default=24 * 3600, ge=0)
    """How long a rotated key keeps working next to its replacement."""

    auth_cache_seconds: float = Field(default=5.0, ge=0)
    """How long a process trusts a key it authenticated; other processes see a revocation this late."""

    session_ttl_seconds: int = Field(default=8 * 3600, ge=300, le=30 * 24 * 3600)
    """How long a console sign-in lasts (never beyond its key's own expiry)."""
    session_cookie_secure: bool = False
    """Mark the console's session cookie ``Secure`` on every response, not only on requests that
    arrived over TLS: set it where TLS ends at a proxy that does not forward the scheme."""

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

    scheduler_interval_seconds: float = Field(default=1.0, ge=0, le=60)
    """How often the in-app scheduler applies due scheduled changes (a change lands within about this
    long after its time); 0 disables it (run ``python -m flagyard.control_plane.scheduler``)."""
    webhook_secret_key: SecretStr | None = None
    """Encrypts webhook signing secrets at rest (AES-GCM); changing it makes stored secrets unreadable
    (rotate each subscription's secret). Unset: the development key in development mode; production mode
    refuses it unset, weak, the development value or the deployment template's placeholder."""
    webhook_allow_private: bool = False
    """Deliver to loopback, private, link-local, multicast and reserved addresses (tests, closed networks);
    off, such destinations are refused after DNS resolution, so a subscriber cannot reach internal hosts."""
    webhook_poll_interval_seconds: float = Field(default=1.0, ge=0, le=60)
    """How often each control-plane process looks for due deliveries; 0 disables the in-app worker
    (run ``python -m flagyard.control_plane.webhooks``)."""
    webhook_concurrency: int = Field(default=8, ge=1, le=64)
    """Deliveries in flight at once per process: a hanging receiver holds one slot until its timeout."""
    webhook_concurrency_per_subscription: int = Field(default=2, ge=1, le=64)
    """Deliveries of one subscription in flight at once (across processes): what a slow or hostile
    receiver can hold of the worker at most."""
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    """The whole of one attempt (DNS, connect, send, status and the capped body), then it is cut."""
    webhook_max_attempts: int = Field(default=8, ge=1, le=20)
    """Attempts per delivery; after the last failed one the delivery is marked failed."""
    webhook_backoff_base_seconds: float = Field(default=10.0, ge=0.01, le=3600)
    """Delay before the second attempt; it doubles per attempt (with jitter), at most the maximum."""
    webhook_backoff_max_seconds: float = Field(default=3600.0, ge=0.01, le=86400)
    webhook_disable_after_failures: int = Field(default=20, ge=1, le=1000)
    """Consecutive failed attempts (across deliveries) after which a subscription is disabled (audited;
    PATCH ``enabled: true`` re-enables it), once they also span ``webhook_disable_after_seconds``."""
    webhook_disable_after_seconds: float = Field(default=3600.0, ge=0, le=30 * 24 * 3600)
    """How long failures must last (from the streak's first failed attempt) before they disable a
    subscription: a burst of failures during a receiver's short restart does not."""
    webhook_retention_hours: float = Field(default=168.0, gt=0, le=24 * 90)
    """Finished deliveries are kept this long in the delivery log (and at most 1,000 per subscription)."""

    access_log: bool = True
    """One log line per request, with its request id."""

    def webhook_key(self) -> str | None:
        """The key webhook secrets are encrypted with: the setting, else (development mode only) the
        development default. ``None`` only for settings built without validation in production mode:
        webhooks then answer 503 rather than encrypt with a known key."""
        if self.webhook_secret_key is not None:
            return self.webhook_secret_key.get_secret_value()
        return DEV_WEBHOOK_SECRET_KEY if self.mode == "development" else None

    def production_problems(self) -> list[str]:
        key = self.bootstrap_admin_key
        problem = bootstrap_key_problem(key.get_secret_value()) if key is not None else None
        webhook = self.webhook_secret_key
        webhook_problem = webhook_secret_key_problem(webhook.get_secret_value() if webhook else None)
        return [
            *([problem] if problem else []),
            *([webhook_problem] if webhook_problem else []),
            *super().production_problems(),
        ]
