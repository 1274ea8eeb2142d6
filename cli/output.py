"""How admin commands print: rich tables for people, JSON with ``--json``; notes always go to stderr."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import orjson
import typer
from rich import box
from rich.console import Console
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

Column = str | tuple[str, Callable[[Any], Any]]
"""A field name, or a header with a function of the row."""


def cell(value: Any) -> Text:
    """A value as plain table text (never rich markup); booleans, lists and objects as compact JSON."""
    if value is None:
        return Text("")
    if isinstance(value, bool | dict | list):
        return Text(orjson.dumps(value).decode())
    return Text(str(value))


def on_off(enabled: bool) -> str:
    return "on" if enabled else "off"


def _header_and_getter(column: Column) -> tuple[str, Callable[[Any], Any]]:
    if isinstance(column, str):
        return column, lambda row: row.get(column)
    return column


class Output:
    """One command's output, in the mode the global ``--json`` option chose."""

    def __init__(self, json_mode: bool) -> None:
        self.json_mode = json_mode
        self.console = Console(highlight=False)
        self.stderr = Console(stderr=True, highlight=False)

    def data(self, value: Any) -> None:
        """Print ``value`` as indented JSON on stdout."""
        typer.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())

    def table(self, rows: Sequence[Any], columns: Sequence[Column], *, title: str | None = None) -> None:
        """Rows as a table, or as a JSON array with ``--json``."""
        if self.json_mode:
            self.data(list(rows))
            return
        getters = [_header_and_getter(c) for c in columns]
        table = Table(*(header for header, _ in getters), title=title, box=box.SIMPLE_HEAD)
        for row in rows:
            table.add_row(*(cell(get(row)) for _, get in getters))
        self.console.print(table)

    def record(self, value: dict[str, Any], fields: Sequence[Column] | None = None) -> None:
        """One object as ``field  value`` lines, or as JSON with ``--json``."""
        if self.json_mode:
            self.data(value)
            return
        table = Table(show_header=False, box=None, padding=(0, 2, 0, 0))
        table.add_column(style="bold")
        table.add_column()
        for header, get in (_header_and_getter(c) for c in fields or list(value)):
            table.add_row(header, cell(get(value)))
        self.console.print(table)

    def note(self, message: str) -> None:
        """A message for the person at the terminal (stderr, so stdout stays data)."""
        self.stderr.print(Text(message), soft_wrap=True)

    def secret(self, what: str, key: str, kept: str = "only its hash is kept") -> None:
        """A newly issued secret, printed once and clearly (``--json`` has it in the record)."""
        if self.json_mode:
            return
        self.console.print(
            Panel(
                Text(key, style="bold"),
                title=f"new {what}",
                subtitle=f"shown once: store it now, {kept}",
                expand=False,
            )
        )
