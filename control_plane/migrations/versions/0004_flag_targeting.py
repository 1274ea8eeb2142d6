"""flag_environments.targeting: a JsonLogic targeting expression as a flag's rule form

Revision ID: 0004_flag_targeting
Revises: 0003_idempotency
Create Date: 2026-12-07 03:40:00

A flag's configuration in an environment carries either structured ``rules`` or one JsonLogic
``targeting`` expression (flagd's dialect). Nullable, ``NULL`` (no targeting) for every existing row,
which is what ``db/fields.py`` declares as the field's default.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_flag_targeting"
down_revision: str | None = "0003_idempotency"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("flag_environments", sa.Column("targeting", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("flag_environments", "targeting")
