"""``flagyard envs``: list, create, update (approval policy) and delete a project's environments."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .admin import NameOption, ProjectOption, YesOption, confirm, connect, group
from .rest import path

app = group("Environments of a project (development, production, …).")

COLUMNS = ["key", "name", "description", "approvals_required", "revision", "updated_at"]
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


@app.command("update")
def update(
    ctx: typer.Context,
    key: Key,
    project: ProjectOption,
    name: NameOption = None,
    description: Annotated[str | None, typer.Option(help="What the environment is for.")] = None,
    approvals: Annotated[
        int | None,
        typer.Option(
            "--approvals",
            min=0,
            max=10,
            help="Approvals a change of what it serves needs (0 turns the policy off; admins only).",
        ),
    ] = None,
) -> None:
    """Rename an environment, or set its approval policy."""
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if description is not None:
        changes["description"] = description
    if approvals is not None:
        changes["approvals_required"] = approvals
    with connect(ctx) as (rest, out):
        out.record(rest.update(path("projects", project, "environments", key), changes), COLUMNS)


@app.command("delete")
def delete(ctx: typer.Context, key: Key, project: ProjectOption, yes: YesOption = False) -> None:
    """Delete an environment with its flag configurations and SDK keys."""
    confirm(f"Delete environment {key!r} of project {project!r}?", yes)
    with connect(ctx) as (rest, out):
        rest.remove(path("projects", project, "environments", key))
        out.note(f"deleted environment {key} of project {project}")
