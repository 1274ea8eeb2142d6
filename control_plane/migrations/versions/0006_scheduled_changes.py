"""scheduled_changes: changes to apply at a given time, polled by the scheduler

Revision ID: 0006_scheduled_changes
Revises: 0005_console_sessions
Create Date: 2026-12-07 12:30:00

A writer schedules a toggle, an environment-configuration change, a segment change or a rollback for
``apply_at``. The scheduler claims due ``pending`` rows with ``FOR UPDATE SKIP LOCKED`` (the partial index
``ix_scheduled_changes_due`` holds only those) and marks each ``applied`` or ``failed`` in the transaction
that makes the change, so a schedule is durable and applied once. Rows go with their environment.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_scheduled_changes"
down_revision: str | None = "0005_console_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scheduled_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("project_id", sa.BigInteger(), nullable=False),
        sa.Column("environment_id", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("target_key", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("payload_bytes", sa.Integer(), nullable=False),
        sa.Column("comment", sa.Text(), server_default="", nullable=False),
        sa.Column("apply_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=16), server_default="pending", nullable=False),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("base", sa.JSON(), nullable=False),
        sa.Column("created_by_key_id", sa.BigInteger(), nullable=False),
        sa.Column("created_by_key_prefix", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False),
        sa.Column("applied_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("applied_version", sa.Integer(), nullable=True),
        sa.Column("failure_code", sa.String(length=32), nullable=True),
        sa.Column("failure_message", sa.Text(), nullable=True),
        sa.Column("failure_details", sa.JSON(), nullable=True),
        sa.CheckConstraint(
            "kind IN ('toggle', 'env_config', 'segment', 'rollback', 'segment_rollback')",
            name=op.f("ck_scheduled_changes_kind"),
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'applied', 'failed', 'cancelled')",
            name=op.f("ck_scheduled_changes_status"),
        ),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_scheduled_changes_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environments.id"],
            name=op.f("fk_scheduled_changes_environment_id_environments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scheduled_changes")),
    )
    op.create_index(
        "ix_scheduled_changes_due",
        "scheduled_changes",
        ["apply_at", "id"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_index("ix_scheduled_changes_environment_id_id", "scheduled_changes", ["environment_id", "id"])


def downgrade() -> None:
    op.drop_table("scheduled_changes")
