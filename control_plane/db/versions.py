"""The version tables of flags and segments: one shape, so one set of statements for both repositories.

A repository reads a flag's or segment's versions through its :class:`VersionTable`; services get
plain records (:class:`VersionSummary`, :class:`Version`) and never the ORM classes. A page selects no
snapshot: snapshots are the bulk of a version row, and a list shows none of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm import QueryableAttribute, Session

from flagyard.db.models import FlagVersion, SegmentVersion


class Live(NamedTuple):
    """A live flag or segment, unlocked: enough to read its versions (``version`` is its current one)."""

    id: int
    version: int


@dataclass(frozen=True, slots=True)
class VersionSummary:
    """What a list of versions shows of one version."""

    version: int
    action: str
    comment: str
    author_key_id: int | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Version(VersionSummary):
    """One version with the full snapshot it recorded."""

    snapshot: dict[str, Any]


class VersionTable:
    """The statements of one version table (``flag_versions`` or ``segment_versions``), built once so
    SQLAlchemy computes their cache keys once."""

    __slots__ = ("_first", "_next", "_one")

    def __init__(
        self, model: type[FlagVersion] | type[SegmentVersion], owner: QueryableAttribute[int]
    ) -> None:
        summary = sa.select(model.version, model.action, model.comment, model.author_key_id, model.created_at)
        newest = (model.version.desc(),)
        limit = sa.bindparam("limit", type_=sa.Integer)
        self._first = summary.where(owner == sa.bindparam("owner")).order_by(*newest).limit(limit)
        self._next = (
            summary.where(owner == sa.bindparam("owner"), model.version < sa.bindparam("cursor"))
            .order_by(*newest)
            .limit(limit)
        )
        self._one = sa.select(
            model.version,
            model.action,
            model.comment,
            model.author_key_id,
            model.created_at,
            model.snapshot,
        ).where(owner == sa.bindparam("owner"), model.version == sa.bindparam("n"))

    def page(
        self, session: Session, owner_id: int, *, limit: int, cursor: int | None
    ) -> list[VersionSummary]:
        """Up to ``limit`` versions below ``cursor`` (all if ``None``), newest first."""
        if cursor is None:
            rows = session.connection().execute(self._first, {"owner": owner_id, "limit": limit})
        else:
            rows = session.connection().execute(
                self._next, {"owner": owner_id, "limit": limit, "cursor": cursor}
            )
        return [VersionSummary(*row) for row in rows]

    def one(self, session: Session, owner_id: int, n: int) -> Version | None:
        row = session.connection().execute(self._one, {"owner": owner_id, "n": n}).first()
        return None if row is None else Version(*row)
