"""Statements a write defers to just before commit, built once per position with named parameters.

A :class:`Template` builds its INSERT or UPDATE with :func:`sqlalchemy.bindparam` placeholders suffixed by
its position in the combined statement (``version_0``, ``version_3``), so the combined statement of a
given shape is built and compiled once and every later change of that shape only binds values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

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


class Owner(NamedTuple):
    """The project a change is audited under."""

    id: int
    key: str


class Author(Protocol):
    @property
    def key_id(self) -> int: ...


class Recorder(Protocol):
    """What a repository records a change through: the transaction's session, its deferred statements,
    audit entries and outbox rows (:class:`flagyard.control_plane.services.common.Tx`)."""

    @property
    def session(self) -> Session: ...

    @property
    def actor(self) -> Author: ...

    def defer(
        self, template: Template, params: Mapping[str, Any], target: tuple[str, tuple[Any, ...]] | None = None
    ) -> None: ...

    def audit(
        self,
        project: Any,
        resource_type: str,
        resource_key: str,
        action: str,
        before: Any,
        after: Any,
        *,
        environment: str | None = None,
        version: int | None = None,
        comment: str = "",
    ) -> None: ...

    def emit(
        self, environment_ids: list[int], entity_type: str, key: str, version: int, *, deleted: bool = False
    ) -> None: ...
