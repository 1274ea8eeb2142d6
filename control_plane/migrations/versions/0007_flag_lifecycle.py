"""flag lifecycle: owner, kind, removal date and archived on flags

Revision ID: 0007_flag_lifecycle
Revises: 0006_scheduled_changes
Create Date: 2026-12-07 12:50:00

Existing flags become temporary (the declared default: the stale report errs toward showing a flag
that may be removed), without owner or removal date, and not archived. ``removal_date`` is an ISO date
kept as text so a flag's definition and its JSON snapshots hold the same value.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_flag_lifecycle"
down_revision: str | None = "0006_scheduled_changes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("flags", sa.Column("owner", sa.String(length=200), server_default="", nullable=False))
    op.add_column(
        "flags", sa.Column("kind", sa.String(length=16), server_default="temporary", nullable=False)
    )
    op.add_column("flags", sa.Column("removal_date", sa.String(length=10), nullable=True))
    op.add_column("flags", sa.Column("archived", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    op.drop_column("flags", "archived")
    op.drop_column("flags", "removal_date")
    op.drop_column("flags", "kind")
    op.drop_column("flags", "owner")
