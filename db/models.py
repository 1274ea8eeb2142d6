"""ORM models: the PostgreSQL schema (evolved by the control plane's Alembic migrations,
``control_plane/migrations/``).

JSON content (variants, rules, snapshots) is stored as PostgreSQL ``json``, which keeps key order as
written, so variants come back in the order the admin declared them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

JsonValue = Any
Timestamp = sa.DateTime(timezone=True)


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: sa.JSON,
        list[Any]: sa.JSON,
        datetime: Timestamp,
    }


def _now() -> Mapped[datetime]:
    return mapped_column(Timestamp, server_default=sa.func.now(), nullable=False)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    key: Mapped[str] = mapped_column(sa.String(128), unique=True)
    name: Mapped[str] = mapped_column(sa.String(256))
    description: Mapped[str] = mapped_column(sa.Text, server_default="")
    revision: Mapped[int] = mapped_column(sa.Integer, server_default="1")
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Environment(Base):
    __tablename__ = "environments"
    __table_args__ = (
        sa.UniqueConstraint("project_id", "key", name="uq_environments_project_key"),
        sa.CheckConstraint("(sampling IS NULL) = (sampling_salt IS NULL)", name="sampling_salt"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(128))
    name: Mapped[str] = mapped_column(sa.String(256))
    description: Mapped[str] = mapped_column(sa.Text, server_default="")
    revision: Mapped[int] = mapped_column(sa.Integer, server_default="1")
    approvals_required: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    """Approvals a change of what this environment serves needs (0: none; a direct write is then 409
    ``approval_required`` and goes through a change request)."""
    sampling: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON(none_as_null=True), nullable=True)
    """``{"attributes": [...], "hashed": [...]}`` when the environment keeps a sample of the contexts it
    evaluates (see :mod:`flagyard.contracts.sampling`), ``None`` (the default) when it does not."""
    sampling_salt: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    """The HMAC key of the hashed attributes (hex): made when sampling is turned on, kept while it stays on
    so a hashed value stays the same across policy changes, dropped when it is turned off. Never shown by
    the API nor audited; only the syncer reads it, to publish the policy."""
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class Flag(Base):
    """A flag's definition; deleted flags stay as tombstones so a re-created key keeps versions rising."""

    __tablename__ = "flags"
    __table_args__ = (
        sa.Index(
            "uq_flags_project_key_live",
            "project_id",
            "key",
            unique=True,
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
        sa.Index("ix_flags_project_key", "project_id", "key"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(128))
    name: Mapped[str] = mapped_column(sa.String(256))
    description: Mapped[str] = mapped_column(sa.Text, server_default="")
    tags: Mapped[list[Any]] = mapped_column(sa.JSON)
    owner: Mapped[str] = mapped_column(sa.String(200), server_default="")
    kind: Mapped[str] = mapped_column(sa.String(16), server_default="temporary")
    removal_date: Mapped[str | None] = mapped_column(sa.String(10), nullable=True)
    """An ISO date (``YYYY-MM-DD``), stored as text so definitions and snapshots hold one JSON form."""
    archived: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    type: Mapped[str] = mapped_column(sa.String(16))
    variants: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    salt: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class FlagEnvironment(Base):
    """A flag's configuration in one environment (one row per flag and environment).

    ``version`` is the flag version at which what this environment serves last changed (its
    configuration, or a definition change that reaches every environment): the version of the
    rule-engine flag of this environment. The flag's counter is shared by all its environments, so
    serving the flag's own version would make every change look like a change in every environment.
    """

    __tablename__ = "flag_environments"

    flag_id: Mapped[int] = mapped_column(sa.ForeignKey("flags.id", ondelete="CASCADE"), primary_key=True)
    environment_id: Mapped[int] = mapped_column(
        sa.ForeignKey("environments.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    enabled: Mapped[bool] = mapped_column(sa.Boolean)
    off_variant: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    default_variant: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    default_split: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    rules: Mapped[list[Any]] = mapped_column(sa.JSON)
    prerequisites: Mapped[list[Any]] = mapped_column(sa.JSON)
    targeting: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    version: Mapped[int] = mapped_column(sa.Integer)


class FlagVersion(Base):
    """An immutable snapshot of a whole flag (definition and every environment config)."""

    __tablename__ = "flag_versions"
    __table_args__ = (sa.UniqueConstraint("flag_id", "version", name="uq_flag_versions_flag_version"),)

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    flag_id: Mapped[int] = mapped_column(sa.ForeignKey("flags.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(sa.Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    action: Mapped[str] = mapped_column(sa.String(32))
    comment: Mapped[str] = mapped_column(sa.Text, server_default="")
    author_key_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    created_at: Mapped[datetime] = _now()


class Segment(Base):
    __tablename__ = "segments"
    __table_args__ = (
        sa.Index(
            "uq_segments_project_key_live",
            "project_id",
            "key",
            unique=True,
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
        sa.Index("ix_segments_project_key", "project_id", "key"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(128))
    name: Mapped[str] = mapped_column(sa.String(256))
    description: Mapped[str] = mapped_column(sa.Text, server_default="")
    included: Mapped[list[Any]] = mapped_column(sa.JSON)
    excluded: Mapped[list[Any]] = mapped_column(sa.JSON)
    rules: Mapped[list[Any]] = mapped_column(sa.JSON)
    version: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    deleted_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class SegmentVersion(Base):
    __tablename__ = "segment_versions"
    __table_args__ = (
        sa.UniqueConstraint("segment_id", "version", name="uq_segment_versions_segment_version"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    segment_id: Mapped[int] = mapped_column(sa.ForeignKey("segments.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(sa.Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    action: Mapped[str] = mapped_column(sa.String(32))
    comment: Mapped[str] = mapped_column(sa.Text, server_default="")
    author_key_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    created_at: Mapped[datetime] = _now()


class AuditEntry(Base):
    """Who changed what, when. Not tied to the project row by a foreign key: it outlives deletions."""

    __tablename__ = "audit_log"
    __table_args__ = (
        sa.Index("ix_audit_log_project_id_id", "project_id", "id"),
        sa.Index("ix_audit_log_resource", "project_id", "resource_type", "resource_key"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    project_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    project_key: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    actor_key_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    actor_key_prefix: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    resource_type: Mapped[str] = mapped_column(sa.String(32))
    resource_key: Mapped[str] = mapped_column(sa.String(256))
    environment_key: Mapped[str | None] = mapped_column(sa.String(128), nullable=True)
    action: Mapped[str] = mapped_column(sa.String(32))
    version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    diff: Mapped[list[Any]] = mapped_column(sa.JSON)
    comment: Mapped[str] = mapped_column(sa.Text, server_default="")
    request_id: Mapped[str | None] = mapped_column(sa.String(64), nullable=True)
    created_at: Mapped[datetime] = _now()


class OutboxEntry(Base):
    """A change to propagate to the data plane; see ``control_plane/outbox.py`` for the contract.

    ``environment_id`` is deliberately not a foreign key: the deletion marker of an environment must
    outlive the environment's row.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        sa.Index("ix_outbox_pending", "id", postgresql_where=sa.text("enqueued_at IS NULL")),
        sa.CheckConstraint(
            "entity_type IN ('flag', 'segment', 'environment', 'sdk_key')", name="entity_type"
        ),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    environment_id: Mapped[int] = mapped_column(sa.BigInteger)
    entity_type: Mapped[str] = mapped_column(sa.String(16))
    entity_key: Mapped[str] = mapped_column(sa.String(128))
    version: Mapped[int] = mapped_column(sa.Integer)
    deleted: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.false())
    created_at: Mapped[datetime] = _now()
    enqueued_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class ApiKey(Base):
    """An admin-API key (role admin/writer/reader) or an environment's SDK key (role sdk).

    Only the SHA-256 of the full key is stored, never the key.
    """

    __tablename__ = "api_keys"
    __table_args__ = (sa.CheckConstraint("role IN ('admin', 'writer', 'reader', 'sdk')", name="role"),)

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(256))
    role: Mapped[str] = mapped_column(sa.String(16))
    project_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=True, index=True
    )
    environment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("environments.id", ondelete="CASCADE"), nullable=True, index=True
    )
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(64))
    created_by_key_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    replaces_key_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    owner: Mapped[str] = mapped_column(sa.String(200), server_default="")
    """The person the key belongs to (name or e-mail): approvals count distinct owners, and nobody
    approves their own change request. Empty: the key (and its rotation chain) is its own owner."""
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class IdempotencyRecord(Base):
    """The first response to a POST carrying an ``Idempotency-Key``, replayed on retries."""

    __tablename__ = "idempotency_records"
    __table_args__ = (sa.Index("ix_idempotency_records_created_at", "created_at"),)

    api_key_id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(sa.String(64))
    status_code: Mapped[int] = mapped_column(sa.Integer)
    body: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, nullable=True)
    headers: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = _now()


class ConsoleSession(Base):
    """A web-console sign-in: an API key exchanged for a random session token held in an HttpOnly cookie.

    Only the SHA-256 of the token is stored. The session acts with its key's role and scope and ends
    with it: a revoked or expired key ends every session made from it (checked on each request).
    """

    __tablename__ = "console_sessions"
    __table_args__ = (sa.Index("ix_console_sessions_expires_at", "expires_at"),)

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    api_key_id: Mapped[int] = mapped_column(sa.ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[datetime] = _now()
    expires_at: Mapped[datetime] = mapped_column(Timestamp)
    revoked_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


SCHEDULED_KINDS = ("toggle", "env_config", "segment", "rollback", "segment_rollback")
SCHEDULED_STATUSES = ("pending", "applied", "failed", "cancelled")


class ScheduledChange(Base):
    """A change to make at ``apply_at`` in an environment, as the key that scheduled it.

    The scheduler (``control_plane/scheduler.py``) claims due ``pending`` rows with ``FOR UPDATE SKIP
    LOCKED`` and marks one ``applied`` in the same transaction as the change itself, so the table is the
    source of truth: durable, and applied exactly once whatever the number of schedulers. ``base`` maps
    every field the change writes (a JSON pointer into the flag or segment) to a SHA-256 of its value at
    ``base_version``: the change applies only while they all still hold, else it is ``failed`` with
    ``conflict``.
    """

    __tablename__ = "scheduled_changes"
    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('toggle', 'env_config', 'segment', 'rollback', 'segment_rollback')", name="kind"
        ),
        sa.CheckConstraint("status IN ('pending', 'applied', 'failed', 'cancelled')", name="status"),
        sa.Index(
            "ix_scheduled_changes_due", "apply_at", "id", postgresql_where=sa.text("status = 'pending'")
        ),
        sa.Index("ix_scheduled_changes_environment_id_id", "environment_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    environment_id: Mapped[int] = mapped_column(sa.ForeignKey("environments.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16))
    target_key: Mapped[str] = mapped_column(sa.String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    payload_bytes: Mapped[int] = mapped_column(sa.Integer)
    """Size of ``payload`` as compact JSON, so an environment's pending total is bounded cheaply."""
    comment: Mapped[str] = mapped_column(sa.Text, server_default="")
    apply_at: Mapped[datetime] = mapped_column(Timestamp)
    status: Mapped[str] = mapped_column(sa.String(16), server_default="pending")
    base_version: Mapped[int] = mapped_column(sa.Integer)
    base: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_by_key_id: Mapped[int] = mapped_column(sa.BigInteger)
    created_by_key_prefix: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    applied_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    applied_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    failure_code: Mapped[str | None] = mapped_column(sa.String(32), nullable=True)
    failure_message: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    failure_details: Mapped[list[Any] | None] = mapped_column(sa.JSON, nullable=True)
    change_request_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("change_requests.id", ondelete="CASCADE"), nullable=True
    )
    """Set when an approved change request is applied at ``apply_at``: the scheduler then re-checks that
    the request is still approved at the same revision before applying it."""


class WebhookSubscription(Base):
    """A project's webhook: where to POST which events, signed with a per-subscription secret.

    The signing secret must be usable in clear to sign, so it cannot be a hash: it is stored encrypted
    (AES-GCM under ``FLAGYARD_WEBHOOK_SECRET_KEY``) and shown once, at creation and rotation.
    """

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(sa.String(2048))
    events: Mapped[list[str]] = mapped_column(ARRAY(sa.String(64)))
    description: Mapped[str] = mapped_column(sa.Text, server_default="")
    enabled: Mapped[bool] = mapped_column(sa.Boolean, server_default=sa.true())
    secret_encrypted: Mapped[bytes] = mapped_column(sa.LargeBinary)
    secret_prefix: Mapped[str] = mapped_column(sa.String(16))
    consecutive_failures: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    failing_since: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    """When the current streak of failed attempts began (``None`` after a success)."""
    disabled_reason: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_by_key_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()


class WebhookDelivery(Base):
    """One event for one subscription: the webhook outbox row (inserted in the change's transaction) and,
    once attempted, its entry in the subscription's delivery log.

    ``status``: ``pending`` (due at ``next_attempt_at``; a worker holds it until ``leased_until``),
    ``delivered`` (a 2xx answer) or ``failed`` (attempts exhausted, refused destination, subscription
    disabled). ``payload`` is the exact body signed and sent, stored as text so every attempt sends the
    same bytes.
    """

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.Index(
            "ix_webhook_deliveries_due", "next_attempt_at", postgresql_where=sa.text("status = 'pending'")
        ),
        sa.Index("ix_webhook_deliveries_subscription_id_id", "subscription_id", "id"),
        sa.Index("ix_webhook_deliveries_created_at", "created_at"),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        sa.ForeignKey("webhook_subscriptions.id", ondelete="CASCADE")
    )
    event: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[str] = mapped_column(sa.Text)
    status: Mapped[str] = mapped_column(sa.String(16), server_default="pending")
    attempts: Mapped[int] = mapped_column(sa.Integer, server_default="0")
    next_attempt_at: Mapped[datetime] = _now()
    leased_until: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    http_status: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    latency_ms: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    response_excerpt: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    error: Mapped[str | None] = mapped_column(sa.Text, nullable=True)
    created_at: Mapped[datetime] = _now()
    last_attempt_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    completed_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)


class ChangeRequest(Base):
    """A proposed change to an environment under an approval policy, with its review state.

    The change is what a scheduled change holds (kind, target, payload, base version and digests of the
    fields it writes); ``revision`` rises with every edit or rebase, and only approvals given at the
    current revision count, so an edit clears them.
    """

    __tablename__ = "change_requests"
    __table_args__ = (
        sa.CheckConstraint(
            "kind IN ('toggle', 'env_config', 'segment', 'rollback', 'segment_rollback')", name="kind"
        ),
        sa.CheckConstraint(
            "status IN ('open', 'approved', 'scheduled', 'applied', 'rejected', 'withdrawn', 'failed')",
            name="status",
        ),
        sa.Index("ix_change_requests_environment_id_id", "environment_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id", ondelete="CASCADE"))
    environment_id: Mapped[int] = mapped_column(sa.ForeignKey("environments.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(sa.String(256))
    description: Mapped[str] = mapped_column(sa.Text, server_default="")
    kind: Mapped[str] = mapped_column(sa.String(16))
    target_key: Mapped[str] = mapped_column(sa.String(128))
    payload: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    status: Mapped[str] = mapped_column(sa.String(16), server_default="open")
    revision: Mapped[int] = mapped_column(sa.Integer, server_default="1")
    base_version: Mapped[int] = mapped_column(sa.Integer)
    base: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    author_key_id: Mapped[int] = mapped_column(sa.BigInteger)
    author_key_prefix: Mapped[str] = mapped_column(sa.String(64))
    created_at: Mapped[datetime] = _now()
    updated_at: Mapped[datetime] = _now()
    applied_at: Mapped[datetime | None] = mapped_column(Timestamp, nullable=True)
    applied_version: Mapped[int | None] = mapped_column(sa.Integer, nullable=True)
    applied_by_key_id: Mapped[int | None] = mapped_column(sa.BigInteger, nullable=True)


class ChangeRequestEvent(Base):
    """One step of a request's review: a comment, an approval or a rejection, by a key at a revision."""

    __tablename__ = "change_request_events"
    __table_args__ = (
        sa.CheckConstraint("action IN ('comment', 'approve', 'reject')", name="action"),
        sa.Index("ix_change_request_events_request_id_id", "request_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger, sa.Identity(), primary_key=True)
    request_id: Mapped[int] = mapped_column(sa.ForeignKey("change_requests.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(sa.String(16))
    revision: Mapped[int] = mapped_column(sa.Integer)
    body: Mapped[str] = mapped_column(sa.Text, server_default="")
    key_id: Mapped[int] = mapped_column(sa.BigInteger)
    key_prefix: Mapped[str] = mapped_column(sa.String(64))
    owner: Mapped[str] = mapped_column(sa.String(200))
    """The identity the approval counts as (the key's normalised owner, or ``key:<first key id>``)."""
    created_at: Mapped[datetime] = _now()
