"""Webhook subscriptions of a project: create, read, update, delete, rotate the secret, send a test event,
and read the delivery log.

Writers and admins of the project manage them. The signing secret is shown once (creation, rotation), is
stored only encrypted (:mod:`flagyard.control_plane.webhook_secrets`) and is never replayed for a retried
``Idempotency-Key`` (409 ``secret_not_replayable``), logged or audited. Deliveries are written by the
changes themselves (:meth:`.common.Tx.audit`) and sent by :mod:`flagyard.control_plane.webhooks`.
"""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flagyard.control_plane import schemas
from flagyard.control_plane.exceptions import (
    Detail,
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
)
from flagyard.control_plane.security import Role
from flagyard.control_plane.services.common import Actor, Result, Tx, get_project, page_limit
from flagyard.control_plane.services.keys import REPLAY_REFUSED_CODE
from flagyard.control_plane.webhook_events import TEST_EVENT, payload
from flagyard.control_plane.webhook_secrets import SecretBox, new_secret
from flagyard.db.models import Project, WebhookDelivery, WebhookSubscription

MAX_WEBHOOKS_PER_PROJECT = 50
"""Subscriptions of one project (each change fans out to at most this many deliveries per event)."""


def _now() -> datetime:
    return datetime.now(UTC)


def body_of(row: WebhookSubscription, project_key: str) -> dict[str, Any]:
    """A subscription as the API shows it: never its secret, only the secret's display prefix."""
    return {
        "id": row.id,
        "project": project_key,
        "url": row.url,
        "events": list(row.events),
        "description": row.description,
        "enabled": row.enabled,
        "disabled_reason": row.disabled_reason,
        "consecutive_failures": row.consecutive_failures,
        "secret_prefix": row.secret_prefix,
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def delivery_body(d: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": d.id,
        "event": d.event,
        "status": d.status,
        "attempts": d.attempts,
        "http_status": d.http_status,
        "latency_ms": d.latency_ms,
        "response_excerpt": d.response_excerpt,
        "error": d.error,
        "created_at": d.created_at,
        "last_attempt_at": d.last_attempt_at,
        "next_attempt_at": d.next_attempt_at if d.status == "pending" else None,
        "completed_at": d.completed_at,
    }


def check_url(url: str, *, allow_private: bool, path: str = "/url") -> None:
    """422 for a URL that cannot be a webhook destination: no host, credentials in it, a bad port, or (unless
    private destinations are allowed) a literal private, loopback, link-local or multicast address. Names are
    resolved and checked again at every delivery."""
    problem = None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        parts, port, problem = None, None, "not a valid URL"
    if parts is not None:
        if parts.scheme not in ("http", "https"):
            problem = "the scheme must be http or https"
        elif not parts.hostname:
            problem = "the URL has no host"
        elif parts.username is not None or parts.password is not None:
            problem = (
                "credentials in the URL are not accepted: receivers authenticate deliveries by signature"
            )
        elif port == 0:
            problem = "port 0 is not a destination"
        elif not allow_private:
            try:
                address = ipaddress.ip_address(parts.hostname)
            except ValueError:
                address = None
            if address is not None and not is_public(address):
                problem = (
                    f"{address} is not a public address (set FLAGYARD_WEBHOOK_ALLOW_PRIVATE=true to deliver "
                    "to private networks)"
                )
    if problem is not None:
        raise InvalidRequestError("the request is invalid", [Detail(path, problem)])


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a delivery may go to ``address`` when private destinations are not allowed."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return not (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


def _subscription(
    session: Session, project: Project, webhook_id: int, *, lock: bool = False
) -> WebhookSubscription:
    stmt = sa.select(WebhookSubscription).where(
        WebhookSubscription.id == webhook_id, WebhookSubscription.project_id == project.id
    )
    if lock:
        stmt = stmt.with_for_update()
    row = session.scalars(stmt).first()
    if row is None:
        raise NotFoundError(f"webhook {webhook_id} does not exist in project '{project.key}'")
    return row


def _box(key: str | None) -> SecretBox:
    if key is None:
        raise ServiceUnavailableError(
            "webhooks are unavailable: set FLAGYARD_WEBHOOK_SECRET_KEY (it encrypts signing secrets)"
        )
    return SecretBox(key)


def _location(project_key: str, webhook_id: int) -> str:
    return f"/api/v1/projects/{project_key}/webhooks/{webhook_id}"


def secret_replay(webhook_id: int, location: str) -> Result:
    """A retry of a request that issued a signing secret: 409 naming the subscription, never the secret."""
    message = (
        f"webhook {webhook_id} was created or rotated by the first request with this Idempotency-Key; its "
        f"secret is shown only once: rotate webhook {webhook_id}'s secret for a new one"
    )
    body = {
        "code": REPLAY_REFUSED_CODE,
        "message": message,
        "details": [{"path": "/secret", "message": "a webhook's secret is never replayed"}],
    }
    return Result(body, 409, location=location)


def _audited(row: WebhookSubscription) -> dict[str, Any]:
    return {
        "url": row.url,
        "events": list(row.events),
        "description": row.description,
        "enabled": row.enabled,
    }


def create_webhook(
    tx: Tx, project_key: str, body: schemas.WebhookCreate, *, secret_key: str | None, allow_private: bool
) -> Result:
    tx.actor.require(Role.WRITER)
    project = get_project(tx.session, tx.actor, project_key)
    check_url(body.url, allow_private=allow_private)
    box = _box(secret_key)
    # Creations of one project are serialised on its row, so concurrent ones cannot pass the bound together.
    tx.session.execute(sa.select(Project.id).where(Project.id == project.id).with_for_update(key_share=True))
    count = tx.session.scalar(sa.select(sa.func.count()).where(WebhookSubscription.project_id == project.id))
    if (count or 0) >= MAX_WEBHOOKS_PER_PROJECT:
        message = (
            f"project '{project.key}' has {count} webhooks; a project holds at most "
            f"{MAX_WEBHOOKS_PER_PROJECT}: delete some first"
        )
        raise InvalidRequestError(message, [Detail("", message)])
    secret = new_secret()
    now = _now()
    row = WebhookSubscription(
        project_id=project.id,
        url=body.url,
        events=list(dict.fromkeys(body.events)),
        description=body.description,
        enabled=body.enabled,
        secret_encrypted=box.seal(secret),
        secret_prefix=secret.prefix,
        consecutive_failures=0,
        created_by_key_id=tx.actor.key_id,
        created_at=now,
        updated_at=now,
    )
    tx.session.add(row)
    tx.session.flush()
    tx.audit(project, "webhook", str(row.id), "created", {}, _audited(row))
    location = _location(project.key, row.id)
    return Result(
        {**body_of(row, project.key), "secret": secret.reveal()},
        201,
        location=location,
        replay=secret_replay(row.id, location),
    )


def list_webhooks(session: Session, actor: Actor, project_key: str) -> Result:
    actor.require(Role.WRITER)
    project = get_project(session, actor, project_key)
    rows = session.scalars(
        sa.select(WebhookSubscription)
        .where(WebhookSubscription.project_id == project.id)
        .order_by(WebhookSubscription.id)
    )
    return Result({"items": [body_of(r, project.key) for r in rows], "next_cursor": None})


def read_webhook(session: Session, actor: Actor, project_key: str, webhook_id: int) -> Result:
    actor.require(Role.WRITER)
    project = get_project(session, actor, project_key)
    return Result(body_of(_subscription(session, project, webhook_id), project.key))


def update_webhook(
    tx: Tx, project_key: str, webhook_id: int, body: schemas.WebhookUpdate, *, allow_private: bool
) -> Result:
    tx.actor.require(Role.WRITER)
    project = get_project(tx.session, tx.actor, project_key)
    nulls = [
        Detail(f"/{name}", "must not be null")
        for name in ("url", "events", "description", "enabled")
        if name in body.model_fields_set and getattr(body, name) is None
    ]
    if nulls:
        raise InvalidRequestError("the request is invalid", nulls)
    row = _subscription(tx.session, project, webhook_id, lock=True)
    before = _audited(row)
    if body.url is not None:
        check_url(body.url, allow_private=allow_private)
        row.url = body.url
    if body.events is not None:
        row.events = list(dict.fromkeys(body.events))
    if body.description is not None:
        row.description = body.description
    if body.enabled is not None:
        if body.enabled and not row.enabled:
            row.consecutive_failures = 0
            row.failing_since = None
            row.disabled_reason = None
        row.enabled = body.enabled
        if not body.enabled and row.disabled_reason is None:
            row.disabled_reason = "disabled by a request"
    after = _audited(row)
    if after != before:
        row.updated_at = _now()
        tx.audit(project, "webhook", str(row.id), "updated", before, after)
    tx.session.flush()
    return Result(body_of(row, project.key))


def delete_webhook(tx: Tx, project_key: str, webhook_id: int) -> Result:
    tx.actor.require(Role.WRITER)
    project = get_project(tx.session, tx.actor, project_key)
    row = _subscription(tx.session, project, webhook_id, lock=True)
    tx.audit(project, "webhook", str(row.id), "deleted", _audited(row), {})
    tx.session.delete(row)  # its deliveries go with it (ON DELETE CASCADE)
    tx.session.flush()
    return Result(None, 204)


def rotate_secret(tx: Tx, project_key: str, webhook_id: int, *, secret_key: str | None) -> Result:
    tx.actor.require(Role.WRITER)
    project = get_project(tx.session, tx.actor, project_key)
    box = _box(secret_key)
    row = _subscription(tx.session, project, webhook_id, lock=True)
    secret = new_secret()
    before = {"secret_prefix": row.secret_prefix}
    row.secret_encrypted = box.seal(secret)
    row.secret_prefix = secret.prefix
    row.updated_at = _now()
    tx.audit(project, "webhook", str(row.id), "secret_rotated", before, {"secret_prefix": row.secret_prefix})
    tx.session.flush()
    location = _location(project.key, row.id)
    return Result(
        {**body_of(row, project.key), "secret": secret.reveal()},
        201,
        location=location,
        replay=secret_replay(row.id, location),
    )


def send_test(tx: Tx, project_key: str, webhook_id: int) -> Result:
    """Queue a ``webhook.test`` delivery for the subscription (enabled or not), due at once."""
    tx.actor.require(Role.WRITER)
    project = get_project(tx.session, tx.actor, project_key)
    row = _subscription(tx.session, project, webhook_id)
    delivery = WebhookDelivery(
        subscription_id=row.id,
        event=TEST_EVENT,
        payload=payload(
            TEST_EVENT,
            project=project.key,
            resource_type="webhook",
            key=str(row.id),
            action="test",
            environment=None,
            version=None,
            actor_key_id=tx.actor.key_id,
            actor_key_prefix=tx.actor.prefix,
            request_id=tx.request_id,
        ),
        status="pending",
        attempts=0,
        next_attempt_at=_now(),
    )
    tx.session.add(delivery)
    tx.session.flush()
    tx.webhooks_raised = True
    return Result({"delivery_id": delivery.id, "event": TEST_EVENT}, 202)


def list_deliveries(
    session: Session,
    actor: Actor,
    project_key: str,
    webhook_id: int,
    *,
    limit: int,
    cursor: int | None,
    status: str | None,
) -> Result:
    """The subscription's delivery log, newest first."""
    actor.require(Role.WRITER)
    project = get_project(session, actor, project_key)
    row = _subscription(session, project, webhook_id)
    stmt = sa.select(WebhookDelivery).where(WebhookDelivery.subscription_id == row.id)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    if cursor is not None:
        stmt = stmt.where(WebhookDelivery.id < cursor)
    limit = page_limit(limit)
    rows = list(session.scalars(stmt.order_by(WebhookDelivery.id.desc()).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Result(
        {"items": [delivery_body(d) for d in rows], "next_cursor": str(rows[-1].id) if more else None}
    )
