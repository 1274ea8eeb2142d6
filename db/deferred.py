"""Statements a write defers to just before commit, built once per position with named parameters.

A :class:`Template` builds its INSERT or UPDATE with :func:`sqlalchemy.bindparam` placeholders suffixed by
its position in the combined statement (``version_0``, ``version_3``), so the combined statement of a
given shape is built and compiled once and every later change of that shape only binds values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

Param = Callable[[str], sa.BindParameter[Any]]


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    build: Callable[[Param], sa.Insert | sa.Update]

    def at(self, position: int) -> sa.Insert | sa.Update:
        return self.build(lambda param: sa.bindparam(f"{param}_{position}"))

    @staticmethod
    def bind(position: int, params: Mapping[str, Any]) -> dict[str, Any]:
        return {f"{name}_{position}": value for name, value in params.items()}


def columns(model: Any, names: tuple[str, ...]) -> Callable[[Param], sa.Insert]:
    """An INSERT of ``names`` into ``model``'s table, one parameter per column."""
    return lambda p: sa.insert(model).values({name: p(name) for name in names})
