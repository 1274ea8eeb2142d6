"""Webhook subscriptions of a project, their signing secret, test events and delivery log."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from flagyard.control_plane import schemas
from flagyard.control_plane.api.body import StrictRoute
from flagyard.control_plane.api.deps import PostContext, ReadContext, StateDep, WriteContext
from flagyard.control_plane.api.params import API_PREFIX, ERRORS, WRITE_ERRORS, IntCursor, Limit, ProjectKey
from flagyard.control_plane.services import webhooks as ops

router = APIRouter(
    route_class=StrictRoute,
    prefix=API_PREFIX + "/projects/{project}/webhooks",
    tags=["webhooks"],
    responses=ERRORS,
)

WebhookId = Annotated[int, Path(ge=1, le=2**62, description="The webhook subscription's id.")]


@router.get("", response_model=schemas.Page[schemas.WebhookOut], summary="List a project's webhooks (writer)")
def list_webhooks(project: ProjectKey, ctx: ReadContext) -> Response:
    return ctx.read(lambda session, actor: ops.list_webhooks(session, actor, project))


@router.post(
    "",
    status_code=201,
    response_model=schemas.WebhookCreated,
    responses=WRITE_ERRORS,
    summary="Subscribe a URL to events (the signing secret is in the response, once)",
)
def create_webhook(
    project: ProjectKey, body: schemas.WebhookCreate, ctx: PostContext, state: StateDep
) -> Response:
    settings = state.settings
    return ctx.write(
        lambda tx: ops.create_webhook(
            tx,
            project,
            body,
            secret_key=settings.webhook_key(),
            allow_private=settings.webhook_allow_private,
        )
    )


@router.get("/{webhook_id}", response_model=schemas.WebhookOut, summary="Get a webhook subscription")
def get_webhook(project: ProjectKey, webhook_id: WebhookId, ctx: ReadContext) -> Response:
    return ctx.read(lambda session, actor: ops.read_webhook(session, actor, project, webhook_id))


@router.patch(
    "/{webhook_id}",
    response_model=schemas.WebhookOut,
    responses=WRITE_ERRORS,
    summary="Change a webhook's URL, events, description or enabled (re-enables after auto-disable)",
)
def update_webhook(
    project: ProjectKey,
    webhook_id: WebhookId,
    body: schemas.WebhookUpdate,
    ctx: WriteContext,
    state: StateDep,
) -> Response:
    allow = state.settings.webhook_allow_private
    return ctx.write(lambda tx: ops.update_webhook(tx, project, webhook_id, body, allow_private=allow))


@router.delete(
    "/{webhook_id}", status_code=204, responses=WRITE_ERRORS, summary="Delete a webhook and its delivery log"
)
def delete_webhook(project: ProjectKey, webhook_id: WebhookId, ctx: WriteContext) -> Response:
    return ctx.write(lambda tx: ops.delete_webhook(tx, project, webhook_id))


@router.post(
    "/{webhook_id}/rotate-secret",
    status_code=201,
    response_model=schemas.WebhookCreated,
    responses=WRITE_ERRORS,
    summary="Replace the signing secret (the new one is in the response, once; the old one stops at once)",
)
def rotate_secret(project: ProjectKey, webhook_id: WebhookId, ctx: PostContext, state: StateDep) -> Response:
    key = state.settings.webhook_key()
    return ctx.write(lambda tx: ops.rotate_secret(tx, project, webhook_id, secret_key=key))


@router.post(
    "/{webhook_id}/test",
    status_code=202,
    response_model=schemas.WebhookTestOut,
    responses=WRITE_ERRORS,
    summary="Queue a webhook.test event for this subscription",
)
def send_test(project: ProjectKey, webhook_id: WebhookId, ctx: PostContext) -> Response:
    return ctx.write(lambda tx: ops.send_test(tx, project, webhook_id))


@router.get(
    "/{webhook_id}/deliveries",
    response_model=schemas.Page[schemas.WebhookDeliveryOut],
    summary="The webhook's delivery log, newest first",
)
def list_deliveries(
    project: ProjectKey,
    webhook_id: WebhookId,
    ctx: ReadContext,
    limit: Limit = 50,
    cursor: IntCursor = None,
    status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
) -> Response:
    return ctx.read(
        lambda session, actor: ops.list_deliveries(
            session, actor, project, webhook_id, limit=limit, cursor=cursor, status=status
        )
    )
