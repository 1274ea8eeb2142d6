"""environment sampling: the opt-in policy of context samples and its salt

Revision ID: 0010_environment_sampling
Revises: 0009_change_requests
Create Date: 2026-12-07 15:30:00

``environments.sampling`` (``{"attributes": [...], "hashed": [...]}``, NULL: the environment does not
sample, the default for existing environments) and ``environments.sampling_salt`` (the per-environment
HMAC key of the hashed attributes, set exactly when ``sampling`` is). The syncer publishes both to Redis
as the environment's :class:`~flagyard.contracts.sampling.SamplingPolicy`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010_environment_sampling"
down_revision: str | None = "0009_change_requests"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("environments", sa.Column("sampling", sa.JSON(), nullable=True))
    op.add_column("environments", sa.Column("sampling_salt", sa.String(length=64), nullable=True))
    op.create_check_constraint(
        op.f("ck_environments_sampling_salt"),
        "environments",
        "(sampling IS NULL) = (sampling_salt IS NULL)",
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_environments_sampling_salt"), "environments", type_="check")
    op.drop_column("environments", "sampling_salt")
    op.drop_column("environments", "sampling")
