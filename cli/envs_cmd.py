"""``flagyard envs``: list, create and delete a project's environments."""

from __future__ import annotations

from typing import Annotated

import typer

from .admin import NameOption, ProjectOption, YesOption, confirm, connect, group
from .rest import path

app = group("Environments of a project (development, production, …).")

COLUMNS = ["key", "name", "description", "revision", "updated_at"]
Key = Annotated[str, typer.Argument(help="The environment's key.", show_default=False)]


@app.command("list")
def list_envs(ctx: typer.Context, project: ProjectOption) -> None:
    """List a project's environments."""
    with connect(ctx) as (rest, out):
        out.table(rest.pages(path("projects", project, "environments")), COLUMNS)


@app.command("create")
def create(
    ctx: typer.Context,
    key: Key,
    project: ProjectOption,
    name: NameOption = None,
    description: Annotated[str, typer.Option(help="What the environment is for.")] = "",
) -> None:
    """Create an environment; every flag starts off in it."""
    with connect(ctx) as (rest, out):
        body = {"key": key, "name": name or key, "description": description}
        out.record(rest.post(path("projects", project, "environments"), body), COLUMNS)


@app.command("delete")
def delete(ctx: typer.Context, key: Key, project: ProjectOption, yes: YesOption = False) -> None:
    """Delete an environment with its flag configurations and SDK keys."""
    confirm(f"Delete environment {key!r} of project {project!r}?", yes)
    with connect(ctx) as (rest, out):
        rest.remove(path("projects", project, "environments", key))
        out.note(f"deleted environment {key} of project {project}")
