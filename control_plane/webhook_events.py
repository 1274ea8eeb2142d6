"""The webhook event table and the payload of an event (pure: no I/O).

Events are derived from the audit entry every change writes in its transaction
(:meth:`.services.common.Tx.audit`), so no write path can forget to emit one: the table maps an audited
``(resource_type, action)`` to the event a subscriber receives (scheduled changes and change requests
are audited as ``scheduled_change`` / ``change_request`` resources).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

EVENTS: dict[str, str] = {
    "flag.changed": "a flag was created, updated (definition or one environment), rolled back, imported or "
    "deleted; `data.action` says which",
    "flag.toggled": "a flag was switched on or off in one environment",
    "segment.changed": "a segment was created, updated, rolled back, imported or deleted",
    "scheduled_change.applied": "a scheduled change was applied",
    "scheduled_change.failed": "a scheduled change could not be applied",
    "change_request.opened": "a change request was opened",
    "change_request.approved": "a change request was approved",
    "change_request.applied": "a change request was applied",
    "key.created": "an API or SDK key of the project was created or issued by a rotation",
    "key.revoked": "an API or SDK key of the project was revoked",
}
"""Every event a subscription may ask for, with what it means (published in the OpenAPI document)."""

TEST_EVENT = "webhook.test"
"""Sent only by ``POST …/webhooks/{id}/test``, whatever the subscription's events."""

_EXPLICIT = {
    ("flag", "toggled"): "flag.toggled",
    ("api_key", "created"): "key.created",
    ("api_key", "rotated"): "key.created",
    ("api_key", "revoked"): "key.revoked",
    ("sdk_key", "created"): "key.created",
    ("sdk_key", "rotated"): "key.created",
    ("sdk_key", "revoked"): "key.revoked",
    ("change_request", "created"): "change_request.opened",
}
_CHANGED = {"flag": "flag.changed", "segment": "segment.changed"}

MAX_CHANGED_PATHS = 50
"""JSON pointers of what changed listed in a payload at most (the full diff is in the audit log)."""


def event_for(resource_type: str, action: str) -> str | None:
    """The event an audited change raises, or ``None`` (webhooks, projects and environments raise none)."""
    explicit = _EXPLICIT.get((resource_type, action))
    if explicit is not None:
        return explicit
    if resource_type in _CHANGED:
        return _CHANGED[resource_type]
    name = f"{resource_type}.{action}"
    return name if name in EVENTS else None


def payload(
    event: str,
    *,
    project: str | None,
    resource_type: str,
    key: str,
    action: str,
    environment: str | None,
    version: int | None,
    actor_key_id: int | None,
    actor_key_prefix: str | None,
    request_id: str | None,
    comment: str = "",
    changes: list[dict[str, Any]] | None = None,
    at: datetime | None = None,
) -> str:
    """The body sent for an event (Standard Webhooks' ``{type, timestamp, data}``), as the exact text
    signed and stored: each retry sends the same bytes."""
    paths = [str(c.get("path", "")) for c in (changes or [])]
    body = {
        "type": event,
        "timestamp": (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "data": {
            "project": project,
            "environment": environment,
            "resource_type": resource_type,
            "key": key,
            "action": action,
            "version": version,
            "actor": {"key_id": actor_key_id, "key_prefix": actor_key_prefix},
            "request_id": request_id,
            "comment": comment,
            "changed_paths": paths[:MAX_CHANGED_PATHS],
            "changed_paths_truncated": len(paths) > MAX_CHANGED_PATHS,
        },
    }
    return orjson.dumps(body).decode()
