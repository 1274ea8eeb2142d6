"""``flagyard segments``: reusable audiences of a project."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from .admin import CommentOption, NameOption, ProjectOption, connect, group, read_object
from .output import Column
from .rest import path

app = group("Segments: reusable audiences that flag rules match with segment_match.")

Key = Annotated[str, typer.Argument(help="The segment's key.", show_default=False)]
Include = Annotated[
    list[str] | None, typer.Option("--include", help="A targeting key always in the segment (repeatable).")
]
Exclude = Annotated[
    list[str] | None, typer.Option("--exclude", help="A targeting key never in the segment (repeatable).")
]
File = Annotated[
    Path | None,
    typer.Option(
        "--file",
        "-f",
        help="JSON or YAML object with any of name, description, included, excluded, rules; "
        "options given on the command line win.",
        dir_okay=False,
    ),
]
Description = Annotated[str | None, typer.Option(help="What the audience is.")]

COLUMNS: list[Column] = [
    "key",
    "name",
    "version",
    ("included", lambda s: len(s["included"])),
    ("excluded", lambda s: len(s["excluded"])),
    ("rules", lambda s: len(s["rules"])),
    "updated_at",
]
FIELDS: list[Column] = [
    "key",
    "name",
    "description",
    "version",
    "included",
    "excluded",
    "rules",
    "updated_at",
]


def _body(
    file: Path | None,
    name: str | None,
    description: str | None,
    include: list[str] | None,
    exclude: list[str] | None,
    comment: str,
) -> dict[str, Any]:
    body = read_object(file) if file is not None else {}
    given = {
        "name": name,
        "description": description,
        "included": include,
        "excluded": exclude,
        "comment": comment or None,
    }
    body.update({field: value for field, value in given.items() if value is not None})
    return body


def _segment_path(project: str, key: str) -> str:
    return path("projects", project, "segments", key)


@app.command("list")
def list_segments(ctx: typer.Context, project: ProjectOption) -> None:
    """List a project's segments."""
    with connect(ctx) as (rest, out):
        out.table(rest.pages(path("projects", project, "segments")), COLUMNS)


@app.command("show")
def show(ctx: typer.Context, key: Key, project: ProjectOption) -> None:
    """Show a segment."""
    with connect(ctx) as (rest, out):
        out.record(rest.get(_segment_path(project, key)), FIELDS)


@app.command("create")
def create(
    ctx: typer.Context,
    key: Key,
    project: ProjectOption,
    name: NameOption = None,
    description: Description = None,
    include: Include = None,
    exclude: Exclude = None,
    file: File = None,
    comment: CommentOption = "",
) -> None:
    """Create a segment."""
    with connect(ctx) as (rest, out):
        body = {"key": key, **_body(file, name, description, include, exclude, comment)}
        body.setdefault("name", key)
        out.record(rest.post(path("projects", project, "segments"), body), FIELDS)


@app.command("update")
def update(
    ctx: typer.Context,
    key: Key,
    project: ProjectOption,
    name: Annotated[str | None, typer.Option(help="New display name.")] = None,
    description: Description = None,
    include: Include = None,
    exclude: Exclude = None,
    file: File = None,
    comment: CommentOption = "",
) -> None:
    """Change a segment: only the fields given (the lists are replaced whole)."""
    with connect(ctx) as (rest, out):
        body = _body(file, name, description, include, exclude, comment)
        out.record(rest.update(_segment_path(project, key), body), FIELDS)


@app.command("delete")
def delete(ctx: typer.Context, key: Key, project: ProjectOption) -> None:
    """Delete a segment (refused while a flag rule uses it)."""
    with connect(ctx) as (rest, out):
        rest.remove(_segment_path(project, key))
        out.note(f"deleted segment {key}")
