"""What the admin command groups share: the global options, the connection, files and error reporting."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from .exceptions import CliError, InputError
from .output import Output
from .rest import DEFAULT_URL, Rest


@dataclass(frozen=True)
class Target:
    """Where admin commands send their requests, and how they print (the global options)."""

    url: str = DEFAULT_URL
    api_key: str | None = field(default=None, repr=False)
    json_output: bool = False


UrlOption = Annotated[
    str, typer.Option("--url", envvar="FLAGYARD_URL", help="Base URL of the control plane's admin API.")
]
ApiKeyOption = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="FLAGYARD_API_KEY",
        help="Admin API key (fy_admin_…); never printed.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Admin commands print JSON instead of tables.")]
ProjectOption = Annotated[
    str, typer.Option("--project", "-p", envvar="FLAGYARD_PROJECT", help="The project's key.")
]
EnvOption = Annotated[str, typer.Option("--env", "-e", help="The environment's key.")]
NameOption = Annotated[str | None, typer.Option("--name", help="Display name (default: the key).")]
CommentOption = Annotated[str, typer.Option("--comment", "-m", help="Why: kept with the version.")]
YesOption = Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]


def target(ctx: typer.Context) -> Target:
    found = ctx.find_object(Target)
    return found if found is not None else Target()


@contextmanager
def connect(ctx: typer.Context) -> Iterator[tuple[Rest, Output]]:
    """The REST client and the output of an admin command. A :class:`CliError` inside the block is
    reported as one line on stderr and exits with its code, without a traceback."""
    chosen = target(ctx)
    try:
        with Rest(chosen.url, chosen.api_key) as rest:
            yield rest, Output(chosen.json_output)
    except CliError as exc:
        typer.secho(f"flagyard: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(exc.exit_code) from exc


def confirm(question: str, yes: bool) -> None:
    """Ask before a destructive change unless ``--yes`` was given (no: exit without changing anything)."""
    if not yes:
        typer.confirm(question, abort=True)


def read_document(file: Path) -> Any:
    """A JSON file's content, or a YAML file's (``.yaml``/``.yml``, needs PyYAML) as JSON would hold it:
    YAML dates become ISO 8601 strings."""
    try:
        text = file.read_bytes()
    except OSError as exc:
        raise InputError(f"{file}: {exc.strerror or exc}") from exc
    if file.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml  # type: ignore[import-untyped]
        except ImportError as exc:
            raise InputError(
                f"{file}: YAML needs PyYAML (`pip install 'flagyard[cli]'`); or use JSON"
            ) from exc
        try:
            return orjson.loads(orjson.dumps(yaml.safe_load(text), option=orjson.OPT_NON_STR_KEYS))
        except yaml.YAMLError as exc:
            raise InputError(f"{file}: not valid YAML: {' '.join(str(exc).split())}") from exc
        except TypeError as exc:
            raise InputError(f"{file}: holds what JSON cannot: {exc}") from exc
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{file}: not valid JSON: {exc}") from exc


def read_object(file: Path) -> dict[str, Any]:
    """:func:`read_document` for a file that must hold one JSON object (mapping)."""
    document = read_document(file)
    if not isinstance(document, dict):
        raise InputError(f"{file}: expected an object (a mapping of fields), not {type(document).__name__}")
    return document


def group(help: str) -> typer.Typer:
    """A Typer app for one admin command group."""
    return typer.Typer(help=help, no_args_is_help=True)
