"""``flagyard projects``: list, create, show and delete projects."""

from __future__ import annotations

from typing import Annotated

import typer

from .admin import NameOption, YesOption, confirm, connect, group
from .rest import path

app = group("Projects: each holds environments, flags and segments.")

COLUMNS = ["key", "name", "description", "revision", "updated_at"]
ENV_COLUMNS = ["key", "name", "revision", "updated_at"]
Key = Annotated[str, typer.Argument(help="The project's key.", show_default=False)]


@app.command("list")
def list_projects(ctx: typer.Context) -> None:
    """List every project."""
    with connect(ctx) as (rest, out):
        out.table(rest.pages("/projects"), COLUMNS)


@app.command("create")
def create(
    ctx: typer.Context,
    key: Key,
    name: NameOption = None,
    description: Annotated[str, typer.Option(help="What the project is for.")] = "",
) -> None:
    """Create a project (needs a global admin key)."""
    with connect(ctx) as (rest, out):
        project = rest.post("/projects", {"key": key, "name": name or key, "description": description})
        out.record(project, COLUMNS)


@app.command("show")
def show(ctx: typer.Context, key: Key) -> None:
    """Show a project and its environments."""
    with connect(ctx) as (rest, out):
        project = rest.get(path("projects", key))
        environments = rest.pages(path("projects", key, "environments"))
        if out.json_mode:
            out.data({**project, "environments": environments})
            return
        out.record(project, COLUMNS)
        out.table(environments, ENV_COLUMNS, title="environments")


@app.command("delete")
def delete(ctx: typer.Context, key: Key, yes: YesOption = False) -> None:
    """Delete a project with all its environments, flags, segments and keys."""
    confirm(f"Delete project {key!r} with everything in it?", yes)
    with connect(ctx) as (rest, out):
        rest.remove(path("projects", key))
        out.note(f"deleted project {key}")
