"""The webhook outbox insert a change defers next to its audit entry (see :meth:`.services.common.Tx.audit`).

One ``INSERT … SELECT`` per audited event: a delivery row for every enabled subscription of the project
that asked for the event, none when there is no such subscription. It joins the change's one deferred
statement, so emitting costs the write no extra round trip, and it commits or rolls back with the change.
"""

from __future__ import annotations

import sqlalchemy as sa

from flagyard.control_plane.db.deferred import Param, Template
from flagyard.db.models import WebhookDelivery, WebhookSubscription


def _deliveries(p: Param) -> sa.Insert:
    subs = WebhookSubscription.__table__.c
    event = sa.cast(p("event"), sa.String)
    return sa.insert(WebhookDelivery).from_select(
        ["subscription_id", "event", "payload"],
        sa.select(subs.id, event, sa.cast(p("payload"), sa.Text)).where(
            subs.project_id == sa.cast(p("project_id"), sa.BigInteger),
            subs.enabled,
            event == sa.func.any(subs.events),
        ),
    )


DELIVERIES = Template("webhook_deliveries", _deliveries)
