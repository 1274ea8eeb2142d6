"""``flagyard webhooks``: a project's webhook subscriptions, their signing secret, test events and
delivery log."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .admin import connect, group
from .output import Output
from .rest import path

app = group("Webhooks: POST a project's events (flag toggled or changed, keys, …) to a URL, signed.")

Project = Annotated[str, typer.Option("--project", "-p", help="The project's key.", show_default=False)]
WebhookId = Annotated[
    int, typer.Argument(min=1, help="The webhook's id (see `webhooks list`).", show_default=False)
]
Events = Annotated[
    list[str] | None,
    typer.Option(
        "--event",
        help="An event to receive (repeat): flag.changed, flag.toggled, segment.changed, key.created, "
        "key.revoked, scheduled_change.applied|failed, change_request.opened|approved|applied.",
    ),
]
COLUMNS = ["id", "url", "events", "enabled", "consecutive_failures", "disabled_reason", "secret_prefix"]
DELIVERY_COLUMNS = [
    "id",
    "event",
    "status",
    "attempts",
    "http_status",
    "latency_ms",
    "error",
    "created_at",
    "next_attempt_at",
]


def _collection(project: str) -> str:
    return path("projects", project, "webhooks")


def _issued(out: Output, created: dict[str, Any]) -> None:
    out.record(created, COLUMNS)
    out.secret("webhook signing secret", created["secret"], kept="only encrypted it is kept")


@app.command("list")
def list_webhooks(ctx: typer.Context, project: Project) -> None:
    """List the project's webhooks."""
    with connect(ctx) as (rest, out):
        out.table(rest.pages(_collection(project)), COLUMNS)


@app.command("show")
def show(ctx: typer.Context, webhook_id: WebhookId, project: Project) -> None:
    """One webhook."""
    with connect(ctx) as (rest, out):
        out.record(rest.get(f"{_collection(project)}/{webhook_id}"))


@app.command("create")
def create(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Argument(help="Where deliveries are POSTed (http or https).", show_default=False)
    ],
    project: Project,
    events: Events = None,
    description: Annotated[str, typer.Option(help="What it is for.")] = "",
    disabled: Annotated[bool, typer.Option("--disabled", help="Create it disabled.")] = False,
) -> None:
    """Subscribe a URL to events; the signing secret (whsec_…) is printed once."""
    body = {"url": url, "events": events or [], "description": description, "enabled": not disabled}
    with connect(ctx) as (rest, out):
        _issued(out, rest.post(_collection(project), body))


@app.command("update")
def update(
    ctx: typer.Context,
    webhook_id: WebhookId,
    project: Project,
    url: Annotated[str | None, typer.Option(help="A new URL.")] = None,
    events: Events = None,
    description: Annotated[str | None, typer.Option(help="A new description.")] = None,
    enabled: Annotated[
        bool | None, typer.Option("--enable/--disable", help="Enable (also after auto-disable) or disable.")
    ] = None,
) -> None:
    """Change a webhook's URL, events, description or whether it is enabled."""
    body: dict[str, Any] = {
        name: value
        for name, value in (
            ("url", url),
            ("events", events),
            ("description", description),
            ("enabled", enabled),
        )
        if value is not None
    }
    if not body:
        raise typer.BadParameter("give at least one of --url, --event, --description, --enable/--disable")
    with connect(ctx) as (rest, out):
        response = rest.request("PATCH", f"{_collection(project)}/{webhook_id}", body=body)
        out.record(response.json(), COLUMNS)


@app.command("delete")
def delete(ctx: typer.Context, webhook_id: WebhookId, project: Project) -> None:
    """Delete a webhook and its delivery log."""
    with connect(ctx) as (rest, out):
        rest.remove(f"{_collection(project)}/{webhook_id}", if_match=False)
        out.note(f"deleted webhook {webhook_id}")


@app.command("rotate-secret")
def rotate_secret(ctx: typer.Context, webhook_id: WebhookId, project: Project) -> None:
    """Replace the signing secret (the old one stops at once); the new one is printed once."""
    with connect(ctx) as (rest, out):
        _issued(out, rest.post(f"{_collection(project)}/{webhook_id}/rotate-secret"))


@app.command("test")
def test(ctx: typer.Context, webhook_id: WebhookId, project: Project) -> None:
    """Queue a webhook.test event; see `webhooks deliveries` for how it went."""
    with connect(ctx) as (rest, out):
        queued = rest.post(f"{_collection(project)}/{webhook_id}/test")
        if out.json_mode:
            out.data(queued)
        else:
            out.note(f"queued {queued['event']} as delivery {queued['delivery_id']}")


@app.command("deliveries")
def deliveries(
    ctx: typer.Context,
    webhook_id: WebhookId,
    project: Project,
    status: Annotated[str | None, typer.Option(help="pending, delivered or failed.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=500, help="How many, newest first.")] = 50,
) -> None:
    """The webhook's delivery log, newest first."""
    with connect(ctx) as (rest, out):
        page = rest.get(f"{_collection(project)}/{webhook_id}/deliveries", status=status, limit=limit)
        out.table(page["items"], DELIVERY_COLUMNS)
