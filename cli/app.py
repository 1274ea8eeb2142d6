"""The ``flagyard`` Typer application; each command group lives in its own module."""

from __future__ import annotations

import typer

from .eval_cmd import eval_command

app = typer.Typer(
    name="flagyard",
    help="Flagyard: feature flags and dynamic configuration.",
    no_args_is_help=True,
    add_completion=False,
)
app.command("eval")(eval_command)


@app.callback()
def _root() -> None:
    """Flagyard: feature flags and dynamic configuration."""
