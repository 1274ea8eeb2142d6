"""``flagyard envs``: list, show, create, update (approval policy, context sampling) and delete a project's
environments."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .admin import NameOption, ProjectOption, YesOption, confirm, connect, group
from .output import Column
from .rest import path

app = group("Environments of a project (development, production, …).")


def sampling_text(env: dict[str, Any]) -> str:
    """``off``, or what a sample keeps: ``plan, country; hashed: email``."""
    sampling = env.get("sampling")
    if not sampling:
        return "off"
    parts = [", ".join(sampling["attributes"])] if sampling["attributes"] else []
    if sampling["hashed"]:
        parts.append("hashed: " + ", ".join(sampling["hashed"]))
    return "; ".join(parts)


COLUMNS: list[Column] = [
    "key",
    "name",
    "description",
    "approvals_required",
    ("sampling", sampling_text),
    "revision",
    "updated_at",
]
Key = Annotated[str, typer.Argument(help="The environment's key.", show_default=False)]
AttributeList = Annotated[
    str | None,
    typer.Option(
        metavar="ATTR,ATTR…",
        help="Context attributes (comma-separated paths, e.g. plan,app.version) a sample keeps in clear; "
        "turns sampling on. Left out, the current list is kept; '' empties it.",
    ),
]
HashedList = Annotated[
    str | None,
    typer.Option(
        metavar="ATTR,ATTR…",
        help="Context attributes a sample keeps only as a salted hash (e.g. targeting_key,email); turns "
        "sampling on. Left out, the current list is kept; '' empties it.",
    ),
]


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@app.command("list")
def list_envs(ctx: typer.Context, project: ProjectOption) -> None:
    """List a project's environments."""
    with connect(ctx) as (rest, out):
        out.table(rest.pages(path("projects", project, "environments")), COLUMNS)


@app.command("show")
def show(ctx: typer.Context, key: Key, project: ProjectOption) -> None:
    """Show an environment, its approval policy and what it samples."""
    with connect(ctx) as (rest, out):
        out.record(rest.get(path("projects", project, "environments", key)), COLUMNS)


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
    sample_attributes: AttributeList = None,
    sample_hashed: HashedList = None,
    no_sampling: Annotated[
        bool, typer.Option("--no-sampling", help="Stop sampling contexts and delete the sample.")
    ] = False,
) -> None:
    """Rename an environment, set its approval policy, or what of the contexts it evaluates is sampled
    (for impact previews; admins only)."""
    sampling_given = sample_attributes is not None or sample_hashed is not None
    if no_sampling and sampling_given:
        raise typer.BadParameter(
            "turns sampling off; leave out --sample-attributes and --sample-hashed",
            param_hint="--no-sampling",
        )
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = name
    if description is not None:
        changes["description"] = description
    if approvals is not None:
        changes["approvals_required"] = approvals
    if no_sampling:
        changes["sampling"] = None
    env_path = path("projects", project, "environments", key)
    with connect(ctx) as (rest, out):
        if not sampling_given:
            out.record(rest.update(env_path, changes), COLUMNS)
            return
        # A list left out keeps its value as read here, and the write is conditional on that read.
        read = rest.request("GET", env_path)
        current = read.json().get("sampling") or {"attributes": [], "hashed": []}
        attributes = current["attributes"] if sample_attributes is None else _names(sample_attributes)
        hashed = current["hashed"] if sample_hashed is None else _names(sample_hashed)
        changes["sampling"] = {"attributes": attributes, "hashed": hashed}
        written = rest.request("PATCH", env_path, body=changes, headers={"If-Match": read.headers["etag"]})
        out.record(written.json(), COLUMNS)


@app.command("delete")
def delete(ctx: typer.Context, key: Key, project: ProjectOption, yes: YesOption = False) -> None:
    """Delete an environment with its flag configurations and SDK keys."""
    confirm(f"Delete environment {key!r} of project {project!r}?", yes)
    with connect(ctx) as (rest, out):
        rest.remove(path("projects", project, "environments", key))
        out.note(f"deleted environment {key} of project {project}")
