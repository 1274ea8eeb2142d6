"""idempotency records: no key secret, and an index to prune expired ones

Revision ID: 0003_idempotency
Revises: 0002_environment_change_version
Create Date: 2026-12-06 21:45:00

The first response of a key creation or rotation sent with an ``Idempotency-Key`` used to be stored with
the new key's plaintext, kept until the record's key was reused. Those rows now hold what a retry gets
instead (409 ``secret_not_replayable`` naming the key, ``Location`` pointing at it); the secret is gone,
and cannot be restored by a downgrade. The index on ``created_at`` lets the write path prune expired
records a bounded batch at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_idempotency"
down_revision: str | None = "0002_environment_change_version"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SCRUB = """
UPDATE idempotency_records
SET status_code = 409,
    body = json_build_object(
        'code', 'secret_not_replayable',
        'message', 'key ' || (body->>'id') || ' was issued by the first request with this Idempotency-Key; '
            || 'its secret is shown only once and is not stored: rotate key ' || (body->>'id')
            || ' for a new secret, or revoke it',
        'details', json_build_array(
            json_build_object('path', '/key', 'message', 'a key''s secret is never replayed')
        )
    ),
    headers = CASE WHEN headers->>'Location' IS NULL THEN '{}'::json
                   ELSE json_build_object('Location', headers->>'Location') END
WHERE json_typeof(body) = 'object'
  AND body->>'key' LIKE 'fy\\_%'
  AND (body::jsonb) ? 'prefix'
  AND (body::jsonb) ? 'role'
"""


def upgrade() -> None:
    op.create_index("ix_idempotency_records_created_at", "idempotency_records", ["created_at"], unique=False)
    op.execute(sa.text(SCRUB))


def downgrade() -> None:
    op.drop_index("ix_idempotency_records_created_at", table_name="idempotency_records")
