"""``flagyard keys``: admin-API keys (admin, writer, reader) and SDK keys (one environment each)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import typer

from .admin import connect, group
from .output import Output
from .rest import path

app = group("Keys: API keys for the admin API, SDK keys for the data plane (with --project and --env).")


class Role(StrEnum):
    ADMIN = "admin"
    WRITER = "writer"
    READER = "reader"
    SDK = "sdk"


KeyId = Annotated[int, typer.Argument(min=1, help="The key's id (see `keys list`).", show_default=False)]
Project = Annotated[
    str | None,
    typer.Option("--project", "-p", help="Scope an API key to this project; with --env: SDK keys."),
]
Env = Annotated[str | None, typer.Option("--env", "-e", help="With --project: the environment's SDK keys.")]
COLUMNS = ["id", "name", "role", "owner", "project", "environment", "prefix", "expires_at", "revoked_at"]


def _collection(project: str | None, env: str | None) -> str:
    if env is None:
        return "/api-keys"
    if project is None:
        raise typer.BadParameter("SDK keys need --project as well", param_hint="--env")
    return path("projects", project, "environments", env, "sdk-keys")


def _issued(out: Output, created: dict[str, Any]) -> None:
    out.record(created, COLUMNS)
    out.secret("SDK key" if created["role"] == Role.SDK else f"{created['role']} API key", created["key"])


@app.command("list")
def list_keys(ctx: typer.Context, project: Project = None, env: Env = None) -> None:
    """List API keys (of one project with --project), or an environment's SDK keys (--project and --env)."""
    collection = _collection(project, env)
    with connect(ctx) as (rest, out):
        keys = rest.pages(collection) if env else rest.pages(collection, project=project)
        out.table(keys, COLUMNS)


@app.command("create")
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="What the key is for.", show_default=False)],
    role: Annotated[Role, typer.Option(help="sdk needs --project and --env.")] = Role.READER,
    project: Project = None,
    env: Env = None,
    expires_at: Annotated[
        str | None, typer.Option(help="ISO 8601 time with offset, e.g. 2030-01-01T00:00:00Z.")
    ] = None,
    owner: Annotated[
        str | None,
        typer.Option(
            help="The person the key belongs to (name or e-mail): nobody approves their own change."
        ),
    ] = None,
) -> None:
    """Create a key; its secret is printed once."""
    if (role is Role.SDK) != (env is not None):
        raise typer.BadParameter("--role sdk and --env go together", param_hint="--role")
    body: dict[str, Any] = {"name": name, "expires_at": expires_at}
    if role is not Role.SDK:
        body |= {"role": role.value, "project": project}
        if owner is not None:
            body["owner"] = owner
    with connect(ctx) as (rest, out):
        _issued(out, rest.post(_collection(project, env), body))


@app.command("rotate")
def rotate(
    ctx: typer.Context,
    key_id: KeyId,
    project: Project = None,
    env: Env = None,
    overlap: Annotated[
        int | None, typer.Option(min=0, help="Seconds the old key keeps working (default: the server's).")
    ] = None,
) -> None:
    """Issue a replacement key; the old one keeps working for the overlap window."""
    body = None if overlap is None else {"overlap_seconds": overlap}
    with connect(ctx) as (rest, out):
        _issued(out, rest.post(f"{_collection(project, env)}/{key_id}/rotate", body))
        out.note(f"key {key_id} keeps working until the overlap window ends")


@app.command("update")
def update(
    ctx: typer.Context,
    key_id: KeyId,
    owner: Annotated[
        str, typer.Option(help="Who the key belongs to (name or e-mail); '' clears it.", show_default=False)
    ],
) -> None:
    """Set an API key's owner (approvals count owners; nobody approves their own change)."""
    with connect(ctx) as (rest, out):
        response = rest.request("PATCH", f"{_collection(None, None)}/{key_id}", body={"owner": owner})
        out.record(response.json(), COLUMNS)


@app.command("revoke")
def revoke(ctx: typer.Context, key_id: KeyId, project: Project = None, env: Env = None) -> None:
    """Revoke a key at once."""
    with connect(ctx) as (rest, out):
        rest.remove(f"{_collection(project, env)}/{key_id}", if_match=False)
        out.note(f"revoked key {key_id}")
