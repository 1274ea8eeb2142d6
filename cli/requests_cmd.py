"""``flagyard requests``: change requests, the way to change an environment with an approval policy."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from .admin import EnvOption, ProjectOption, connect, group
from .rest import path
from .schedules_cmd import Kind, change_body, parse_time

app = group(
    "Change requests: a change proposed to an environment with an approval policy, approved by other "
    "people than its author, then applied (now or --at a time) as its author."
)

Id = Annotated[int, typer.Argument(help="The change request's id.", show_default=False, min=1)]
BodyOption = Annotated[
    str | None, typer.Option("--body", help="The change as the direct request's JSON body.")
]
FileOption = Annotated[
    Path | None, typer.Option("--file", "-f", help="The body from a JSON or YAML file.", dir_okay=False)
]
EnabledOption = Annotated[
    bool | None, typer.Option("--on/--off", help="toggle: turn the flag on or off.", show_default=False)
]
VersionOption = Annotated[
    int | None, typer.Option("--version", help="rollback: the version to restore.", min=1)
]
MessageOption = Annotated[str, typer.Option("--message", "-m", help="A comment for the review.")]

COLUMNS: list[Any] = [
    "id",
    "status",
    "title",
    "kind",
    "target",
    ("body", lambda c: orjson.dumps(c["body"]).decode()[:60]),
    "revision",
    ("approvals", lambda c: f"{c['approvals']}/{c['approvals_required']}"),
    "author_key_prefix",
]


def _requests(project: str, env: str, *rest: str | int) -> str:
    return path("projects", project, "environments", env, "change-requests", *rest)


def _revision(rest: Any, project: str, env: str, request_id: int, revision: int | None) -> int:
    """The revision reviewed: the one given, else the current one (shown by ``requests show``)."""
    if revision is not None:
        return revision
    return int(rest.get(_requests(project, env, request_id))["revision"])


@app.command("create")
def create(
    ctx: typer.Context,
    kind: Annotated[Kind, typer.Argument(help="What to change.", show_default=False)],
    target: Annotated[str, typer.Argument(help="The flag's or segment's key.", show_default=False)],
    project: ProjectOption,
    env: EnvOption,
    title: Annotated[str, typer.Option("--title", "-t", help="What the change is for.", show_default=False)],
    description: Annotated[str, typer.Option(help="More about it.")] = "",
    body: BodyOption = None,
    file: FileOption = None,
    enabled: EnabledOption = None,
    version: VersionOption = None,
) -> None:
    """Propose a change; it is checked now exactly as if it were made now."""
    with connect(ctx) as (rest, out):
        request = {
            "kind": kind.value,
            "target": target,
            "body": change_body(kind, file, body, enabled, version),
            "title": title,
            "description": description,
        }
        out.record(rest.post(_requests(project, env), request))


@app.command("list")
def list_requests(
    ctx: typer.Context,
    project: ProjectOption,
    env: EnvOption,
    status: Annotated[str | None, typer.Option(help="open, approved, scheduled, applied, …")] = None,
) -> None:
    """List an environment's change requests, newest first."""
    with connect(ctx) as (rest, out):
        out.table(rest.pages(_requests(project, env), status=status), COLUMNS)


@app.command("show")
def show(ctx: typer.Context, request_id: Id, project: ProjectOption, env: EnvOption) -> None:
    """Show a request with its diff against the current state, its comments and reviews."""
    with connect(ctx) as (rest, out):
        out.record(rest.get(_requests(project, env, request_id)))


@app.command("edit")
def edit(
    ctx: typer.Context,
    request_id: Id,
    project: ProjectOption,
    env: EnvOption,
    title: Annotated[str | None, typer.Option("--title", "-t", help="A new title.")] = None,
    description: Annotated[str | None, typer.Option(help="A new description.")] = None,
    body: BodyOption = None,
    file: FileOption = None,
    enabled: EnabledOption = None,
    version: VersionOption = None,
) -> None:
    """Edit your request: it is checked and re-based again, and every approval is cleared."""
    with connect(ctx) as (rest, out):
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = title
        if description is not None:
            changes["description"] = description
        if body is not None or file is not None or enabled is not None or version is not None:
            current = rest.get(_requests(project, env, request_id))
            changes["body"] = change_body(Kind(current["kind"]), file, body, enabled, version)
        out.record(rest.update(_requests(project, env, request_id), changes))


@app.command("rebase")
def rebase(ctx: typer.Context, request_id: Id, project: ProjectOption, env: EnvOption) -> None:
    """Re-base your request on the current state (after its target changed); approvals are cleared."""
    with connect(ctx) as (rest, out):
        out.record(rest.post(_requests(project, env, request_id, "rebase")))


@app.command("comment")
def comment(
    ctx: typer.Context,
    request_id: Id,
    project: ProjectOption,
    env: EnvOption,
    message: Annotated[str, typer.Option("--message", "-m", help="The comment.", show_default=False)],
) -> None:
    """Comment on a request."""
    with connect(ctx) as (rest, out):
        out.record(rest.post(_requests(project, env, request_id, "comments"), {"body": message}))


RevisionOption = Annotated[
    int | None,
    typer.Option(help="The revision you reviewed (default: the current one; give it to be sure)."),
]


@app.command("approve")
def approve(
    ctx: typer.Context,
    request_id: Id,
    project: ProjectOption,
    env: EnvOption,
    revision: RevisionOption = None,
    message: MessageOption = "",
) -> None:
    """Approve a request (not your own)."""
    with connect(ctx) as (rest, out):
        review = {"revision": _revision(rest, project, env, request_id, revision), "comment": message}
        out.record(rest.post(_requests(project, env, request_id, "approve"), review))


@app.command("reject")
def reject(
    ctx: typer.Context,
    request_id: Id,
    project: ProjectOption,
    env: EnvOption,
    revision: RevisionOption = None,
    message: MessageOption = "",
) -> None:
    """Reject a request (final)."""
    with connect(ctx) as (rest, out):
        review = {"revision": _revision(rest, project, env, request_id, revision), "comment": message}
        out.record(rest.post(_requests(project, env, request_id, "reject"), review))


@app.command("withdraw")
def withdraw(ctx: typer.Context, request_id: Id, project: ProjectOption, env: EnvOption) -> None:
    """Withdraw your request (final)."""
    with connect(ctx) as (rest, out):
        out.record(rest.post(_requests(project, env, request_id, "withdraw")))


@app.command("apply")
def apply(
    ctx: typer.Context,
    request_id: Id,
    project: ProjectOption,
    env: EnvOption,
    at: Annotated[
        str | None,
        typer.Option("--at", help="Apply it then (ISO 8601 with offset, or +90s, +10m, +2h, +3d)."),
    ] = None,
) -> None:
    """Apply an approved request as its author (now, or --at a time)."""
    with connect(ctx) as (rest, out):
        body = {"apply_at": parse_time(at)} if at else {}
        out.record(rest.post(_requests(project, env, request_id, "apply"), body))
