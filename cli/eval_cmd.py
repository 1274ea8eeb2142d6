"""``flagyard eval``: evaluate flags from a local file (native or flagd format), no server needed.

The work is in :mod:`eval_core` (standard library only, so the base install has ``eval`` too); this is
its Typer front end."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from flagyard.rule_engine import FlagType

from .eval_core import UsageError, load_file, run


def eval_command(
    file: Annotated[
        Path,
        typer.Option("--file", "-f", help="Flags file, native or flagd JSON.", exists=True, dir_okay=False),
    ],
    flag: Annotated[str | None, typer.Option("--flag", help="Key of the flag to evaluate.")] = None,
    flag_type: Annotated[
        FlagType, typer.Option("--type", help="Type the caller expects.")
    ] = FlagType.BOOLEAN,
    default: Annotated[
        str | None, typer.Option("--default", help="Default value (JSON; raw text for strings).")
    ] = None,
    context: Annotated[str, typer.Option("--context", help="Evaluation context as a JSON object.")] = "{}",
    batch: Annotated[
        bool, typer.Option("--batch", help="Read JSON-line requests on stdin; write one result line each.")
    ] = False,
) -> None:
    """Evaluate flags against a local file, without any server."""
    flagset = load_file(file, sys.stderr)
    if flagset is None:
        raise typer.Exit(2)
    try:
        run(
            flagset,
            flag=flag,
            flag_type=flag_type,
            default=default,
            context=context,
            batch=batch,
            stdin=sys.stdin.buffer,
            stdout=sys.stdout.buffer,
        )
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None
