"""``flagyard import`` and ``flagyard export``: an environment's flags and segments as one document."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from .admin import EnvOption, ProjectOption, connect, read_document
from .exceptions import InputError
from .rest import path

SUMMARY = [
    "created",
    "updated",
    "unchanged",
    "segments_created",
    "segments_updated",
    "segments_unchanged",
]


class Format(StrEnum):
    NATIVE = "native"
    FLAGD = "flagd"


FormatOption = Annotated[Format, typer.Option("--format", help="native (Flagyard) or flagd JSON.")]


def _counts(document: Any, fmt: Format) -> tuple[int, int]:
    """How many flags and segments the document holds; :class:`InputError` if its shape is wrong."""
    if not isinstance(document, dict):
        raise InputError("the document must be a JSON object")
    flags, segments = document.get("flags"), document.get("segments", [])
    expected = dict if fmt is Format.FLAGD else list
    if not isinstance(flags, expected):
        shape = "an object keyed by flag" if fmt is Format.FLAGD else "a list"
        raise InputError(f"'flags' must be {shape} in the {fmt} format")
    if not isinstance(segments, list):
        raise InputError("'segments' must be a list")
    return len(flags), len(segments)


def import_command(
    ctx: typer.Context,
    file: Annotated[
        Path, typer.Argument(help="The document: JSON, or YAML (.yaml).", dir_okay=False, show_default=False)
    ],
    project: ProjectOption,
    env: EnvOption,
    fmt: FormatOption = Format.NATIVE,
) -> None:
    """Import flags and segments into an environment: validated whole, then applied atomically, or nothing."""
    with connect(ctx) as (rest, out):
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
        with Progress(*columns, console=out.stderr) as progress:
            step = progress.add_task(f"reading {file.name}", total=3)
            document = read_document(file)
            progress.update(step, advance=1, description="checking the document's shape")
            try:
                flags, segments = _counts(document, fmt)
            except InputError as exc:
                raise InputError(f"{file}: {exc}") from exc
            progress.update(
                step,
                advance=1,
                description=f"uploading {flags} flags, {segments} segments; the server validates and applies",
            )
            params = {"format": fmt.value}
            result = rest.post(path("projects", project, "environments", env, "import"), document, **params)
            progress.update(step, advance=1, description="imported")
        if out.json_mode:
            out.data(result)
        else:
            out.record({field: " ".join(result[field]) or "-" for field in SUMMARY})


def export_command(
    ctx: typer.Context,
    project: ProjectOption,
    env: EnvOption,
    fmt: FormatOption = Format.NATIVE,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.", dir_okay=False)
    ] = None,
) -> None:
    """Export an environment's flags and segments as one JSON document."""
    with connect(ctx) as (rest, out):
        document = rest.get(path("projects", project, "environments", env, "export"), format=fmt.value)
        text = orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"
        if output is None:
            typer.echo(text.decode(), nl=False)
            return
        try:
            output.write_bytes(text)
        except OSError as exc:
            raise InputError(f"{output}: {exc.strerror or exc}") from exc
        out.note(f"exported {project}/{env} ({fmt}) to {output}")
