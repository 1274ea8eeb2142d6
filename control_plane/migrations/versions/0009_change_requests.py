"""change requests: approval policies on environments, key owners, requests and their reviews

Revision ID: 0009_change_requests
Revises: 0008_webhooks
Create Date: 2026-12-07 13:20:00

``environments.approvals_required`` (0: no policy, the default for existing environments) makes a direct
write to an environment 409 ``approval_required``; the change goes through a ``change_requests`` row and
its ``change_request_events`` (comments, approvals, rejections) instead. ``api_keys.owner`` names the
person a key belongs to, so approvals count people, not keys (empty for existing keys: each rotation
chain is its own owner). A scheduled change may apply an approved request (``change_request_id``).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_change_requests"
down_revision: str | None = "0008_webhooks"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "environments", sa.Column("approvals_required", sa.Integer(), server_default="0", nullable=False)
    )
    op.add_column("api_keys", sa.Column("owner", sa.String(length=200), server_default="", nullable=False))
    op.create_table(
        "change_requests",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("environment_id", sa.BigInteger(), nullable=False),
        sa.Column("title", sa.String(length=256), nullable=False),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target_key", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
        sa.Column("revision", sa.Integer(), server_default="1", nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("author_key_id", sa.BigInteger(), nullable=False),
        sa.Column("author_key_prefix", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applied_version", sa.Integer(), nullable=True),
        sa.Column("applied_by_key_id", sa.BigInteger(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('toggle', 'env_config', 'segment', 'rollback', 'segment_rollback')",
            name=op.f("ck_change_requests_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'approved', 'scheduled', 'applied', 'rejected', 'withdrawn', 'failed')",
            name=op.f("ck_change_requests_status"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_change_requests_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_change_requests_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_requests")),
    )
    op.create_index("ix_change_requests_environment_id_id", "change_requests", ["environment_id", "id"])
    op.create_table(
        "change_request_events",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("request_id", sa.BigInteger(), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), server_default="", nullable=False),
        sa.Column("key_id", sa.BigInteger(), nullable=False),
        sa.Column("key_prefix", sa.String(length=64), nullable=False),
        sa.Column("owner", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.CheckConstraint(
            "action IN ('comment', 'approve', 'reject')", name=op.f("ck_change_request_events_action")
        ),
        sa.ForeignKeyConstraint(
            ["request_id"],
            ["change_requests.id"],
            name=op.f("fk_change_request_events_request_id_change_requests"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_change_request_events")),
    )
    op.create_index("ix_change_request_events_request_id_id", "change_request_events", ["request_id", "id"])
    op.add_column("scheduled_changes", sa.Column("change_request_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_scheduled_changes_change_request_id_change_requests"),
        "scheduled_changes",
        "change_requests",
        ["change_request_id"],
        ["id"],
        ondelete="CASCADE",
    )


def downgrade() -> None:
    op.drop_constraint(
        op.f("fk_scheduled_changes_change_request_id_change_requests"),
        "scheduled_changes",
        type_="foreignkey",
    )
    op.drop_column("scheduled_changes", "change_request_id")
    op.drop_table("change_request_events")
    op.drop_table("change_requests")
    op.drop_column("api_keys", "owner")
    op.drop_column("environments", "approvals_required")
