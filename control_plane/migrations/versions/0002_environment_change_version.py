"""environment change version: the flag version at which each environment's served flag last changed

Revision ID: 0002_environment_change_version
Revises: 0001
Create Date: 2026-12-06 21:40:00.000000

Existing rows get their flag's current version: Redis already holds that version (or an older one the
reconcile would have rewritten to it anyway), so the upgrade rewrites nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_environment_change_version"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("flag_environments", sa.Column("version", sa.Integer(), nullable=True))
    op.execute(
        "UPDATE flag_environments AS fe SET version = f.version FROM flags AS f WHERE f.id = fe.flag_id"
    )
    op.alter_column("flag_environments", "version", nullable=False)


def downgrade() -> None:
    op.drop_column("flag_environments", "version")
