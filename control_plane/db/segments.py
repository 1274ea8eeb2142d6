"""The segment repository: every statement that reads or writes segments and their versions.

The same seam as :mod:`.flags`: one locking read starts a change, :func:`create`, :func:`record_change`
and :func:`delete` store it with deferred statements, reads of segments run on the event loop and
reads of versions on the session (:mod:`.versions`); columns come from :mod:`flagyard.db.fields`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, JSONPATH
from sqlalchemy.orm import Session

from flagyard.control_plane.db.deferred import Owner, Recorder, Template, columns
from flagyard.control_plane.db.reads import ReadPool, ReadQuery
from flagyard.control_plane.db.versions import Live, Version, VersionSummary, VersionTable
from flagyard.db import mapping as m
from flagyard.db.fields import EDITABLE_SEGMENT_FIELDS, SEGMENT_FIELDS
from flagyard.db.models import (
    Environment,
    Flag,
    FlagEnvironment,
    Project,
    Segment,
    SegmentVersion,
)


@dataclass(slots=True)
class LockedSegment:
    """A live segment as stored, locked ``FOR UPDATE`` until the transaction ends."""

    project: Owner
    id: int
    version: int
    created_at: datetime
    updated_at: datetime
    definition: dict[str, Any]

    @property
    def key(self) -> str:
        key: str = self.definition["key"]
        return key


_COLUMNS = [getattr(Segment, name) for name in SEGMENT_FIELDS]


def _locked(where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    return (
        sa.select(
            Project.id.label("project_id"),
            Project.key.label("project_key"),
            Segment.id,
            Segment.version,
            Segment.created_at,
            Segment.updated_at,
            *_COLUMNS,
        )
        .join(Segment, Segment.project_id == Project.id)
        .where(where, Segment.deleted_at.is_(None))
        .order_by(Segment.key)
        .with_for_update(of=Segment)
    )


_LOCK_ONE = _locked(sa.and_(Project.id == sa.bindparam("project_id"), Segment.key == sa.bindparam("segment")))
_LOCK_ALL = _locked(Project.id == sa.bindparam("project_id"))


def _segment(row: Any) -> LockedSegment:
    return LockedSegment(
        Owner(row.project_id, row.project_key),
        row.id,
        row.version,
        row.created_at,
        row.updated_at,
        m.segment_dict(row),
    )


def lock(session: Session, project_id: int, key: str) -> LockedSegment | None:
    row = session.connection().execute(_LOCK_ONE, {"project_id": project_id, "segment": key}).first()
    return None if row is None else _segment(row)


def lock_all(session: Session, project_id: int) -> dict[str, LockedSegment]:
    """Every live segment of a project, locked, by key (an import)."""
    rows = session.connection().execute(_LOCK_ALL, {"project_id": project_id})
    return {row.key: _segment(row) for row in rows}


_FIND = sa.select(Segment.id, Segment.version).where(
    Segment.project_id == sa.bindparam("project_id"),
    Segment.key == sa.bindparam("key"),
    Segment.deleted_at.is_(None),
)


def find(session: Session, project_id: int, key: str) -> Live | None:
    """The live segment ``key`` of a project, unlocked; ``None`` if there is none."""
    row = session.connection().execute(_FIND, {"project_id": project_id, "key": key}).first()
    return None if row is None else Live(*row)


def count(session: Session, project_id: int) -> int:
    """How many live segments the project has."""
    live = sa.select(sa.func.count()).where(Segment.project_id == project_id, Segment.deleted_at.is_(None))
    return session.connection().execute(live).scalar_one()


def keys(session: Session, project_id: int) -> list[str]:
    """The keys of the project's live segments, in order."""
    live = sa.select(Segment.key).where(Segment.project_id == project_id, Segment.deleted_at.is_(None))
    return list(session.connection().execute(live.order_by(Segment.key)).scalars())


def next_version(session: Session, project_id: int, key: str) -> int:
    """The first version of a new segment ``key``: above every deleted predecessor's."""
    previous = session.scalar(
        sa.select(sa.func.max(Segment.version)).where(Segment.project_id == project_id, Segment.key == key)
    )
    return (previous or 0) + 1


_VERSIONS = VersionTable(SegmentVersion, SegmentVersion.segment_id)


def versions(session: Session, segment_id: int, *, limit: int, cursor: int | None) -> list[VersionSummary]:
    """Up to ``limit`` of a segment's versions below version ``cursor`` (from the newest if ``None``),
    newest first."""
    return _VERSIONS.page(session, segment_id, limit=limit, cursor=cursor)


def version(session: Session, segment_id: int, n: int) -> Version | None:
    """Version ``n`` of a segment with its snapshot."""
    return _VERSIONS.one(session, segment_id, n)


def references(session: Session, project_id: int, exclude: str) -> list[tuple[str, list[Any]]]:
    """(key, rules) of the project's other live segments."""
    rows = session.execute(
        sa.select(Segment.key, Segment.rules).where(
            Segment.project_id == project_id, Segment.deleted_at.is_(None), Segment.key != exclude
        )
    )
    return [(key, rules) for key, rules in rows]


_TARGETING_REF = 'strict $.**."$ref" ? (@ == $key)'
"""A ``{"$ref": key}`` node anywhere in a flag's JsonLogic targeting (native targeting names segments)."""


def users(session: Session, project_id: int, key: str) -> tuple[list[tuple[str, str]], list[str]]:
    """(flag, environment) of every live flag configuration whose rules match segment ``key`` or whose
    targeting refers to it, and every other live segment whose rules match it."""
    needle = [{"clauses": [{"operator": "segment_match", "values": [key]}]}]
    in_targeting = sa.func.jsonb_path_exists(
        sa.cast(FlagEnvironment.targeting, JSONB),
        sa.cast(_TARGETING_REF, JSONPATH),
        sa.func.jsonb_build_object("key", key),
    )
    flags = session.execute(
        sa.select(Flag.key, Environment.key)
        .join(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
        .join(Environment, Environment.id == FlagEnvironment.environment_id)
        .where(
            Flag.project_id == project_id,
            Flag.deleted_at.is_(None),
            sa.or_(sa.cast(FlagEnvironment.rules, JSONB).contains(needle), in_targeting.is_(True)),
        )
        .order_by(Flag.key, Environment.key)
    )
    segments = session.scalars(
        sa.select(Segment.key).where(
            Segment.project_id == project_id,
            Segment.deleted_at.is_(None),
            Segment.key != key,
            sa.cast(Segment.rules, JSONB).contains(needle),
        )
    )
    return [(f, e) for f, e in flags], list(segments)


def _environment_ids(session: Session, project_id: int) -> list[int]:
    """A segment is the same in every environment of its project: each gets an outbox row."""
    return list(
        session.scalars(
            sa.select(Environment.id).where(Environment.project_id == project_id).order_by(Environment.key)
        )
    )


# --- writes --------------------------------------------------------------------------------------

_INSERT = (
    sa.insert(Segment)
    .values({name: sa.bindparam(name) for name in ("project_id", "version", *SEGMENT_FIELDS)})
    .returning(Segment.id, Segment.created_at, Segment.updated_at)
)
_UPDATE = Template(
    "segment_update",
    lambda p: (
        sa.update(Segment)
        .where(Segment.id == p("id"))
        .values({name: p(name) for name in ("version", "updated_at", *EDITABLE_SEGMENT_FIELDS)})
    ),
)
_DELETE = Template(
    "segment_delete",
    lambda p: (
        sa.update(Segment)
        .where(Segment.id == p("id"))
        .values(version=p("version"), updated_at=p("updated_at"), deleted_at=p("updated_at"))
    ),
)
_VERSION = Template(
    "segment_version",
    columns(SegmentVersion, ("segment_id", "version", "snapshot", "action", "comment", "author_key_id")),
)


def _log(tx: Recorder, seg: LockedSegment, before: dict[str, Any], action: str, comment: str) -> None:
    """The version row, the audit entry and the outbox rows of a change: every change writes these."""
    after = dict(seg.definition)
    tx.defer(
        _VERSION,
        {
            "segment_id": seg.id,
            "version": seg.version,
            "snapshot": after,
            "action": action,
            "comment": comment,
            "author_key_id": tx.actor.key_id,
        },
    )
    tx.audit(seg.project, "segment", seg.key, action, before, after, version=seg.version, comment=comment)
    tx.emit(_environment_ids(tx.session, seg.project.id), "segment", seg.key, seg.version)


def create(
    tx: Recorder, project: Owner, definition: Mapping[str, Any], version: int, action: str, comment: str
) -> LockedSegment:
    """Store a new segment at ``version``."""
    definition = {name: definition[name] for name in SEGMENT_FIELDS}
    row = (
        tx.session.connection()
        .execute(_INSERT, {"project_id": project.id, "version": version, **definition})
        .one()
    )
    seg = LockedSegment(project, row.id, version, row.created_at, row.updated_at, definition)
    _log(tx, seg, {}, action, comment)
    return seg


def record_change(
    tx: Recorder, seg: LockedSegment, definition: Mapping[str, Any], action: str, comment: str
) -> int:
    """Store a new version of a locked segment (its row, version row, audit entry and an outbox row per
    environment of the project); returns the new version and updates ``seg`` to it."""
    version, now = seg.version + 1, datetime.now(UTC)
    definition = {name: definition[name] for name in SEGMENT_FIELDS}
    before = seg.definition
    params = {"id": seg.id, "version": version, "updated_at": now}
    params.update({name: definition[name] for name in EDITABLE_SEGMENT_FIELDS})
    tx.defer(_UPDATE, params, ("segments", (seg.id,)))
    seg.version, seg.updated_at, seg.definition = version, now, definition
    _log(tx, seg, before, action, comment)
    return version


def delete(tx: Recorder, seg: LockedSegment) -> int:
    """Leave a tombstone one version above the segment's last; the outbox rows carry ``deleted``."""
    version, now = seg.version + 1, datetime.now(UTC)
    tx.defer(_DELETE, {"id": seg.id, "version": version, "updated_at": now}, ("segments", (seg.id,)))
    tx.audit(seg.project, "segment", seg.key, "deleted", seg.definition, {}, version=version)
    tx.emit(_environment_ids(tx.session, seg.project.id), "segment", seg.key, version, deleted=True)
    seg.version = version
    return version


_LIVE_VERSIONS = (
    sa.select(Segment.key, Segment.version)
    .where(Segment.project_id == sa.bindparam("project_id"), Segment.deleted_at.is_(None))
    .order_by(Segment.key)
)


def add_environment(tx: Recorder, project_id: int, environment_id: int) -> None:
    """Queue an outbox row for every live segment of the project to its new environment: a segment is
    the same in every environment, so nothing is stored and no version changes."""
    rows = tx.session.connection().execute(_LIVE_VERSIONS, {"project_id": project_id}).all()
    for key, version in rows:
        tx.emit([environment_id], "segment", key, version)


# --- reads on the event loop ---------------------------------------------------------------------

_READ_COLUMNS = [*_COLUMNS, Segment.version, Segment.created_at, Segment.updated_at]


def _project_segments(on: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """A project's id beside its live segments that match ``on``: one row with empty segment columns if
    none does, no row if there is no such project (so one statement tells 403/404 apart too)."""
    joined = sa.and_(Segment.project_id == Project.id, Segment.deleted_at.is_(None), on)
    return (
        sa.select(Project.id.label("project_id"), *_READ_COLUMNS)
        .outerjoin(Segment, joined)
        .where(Project.key == sa.bindparam("project"))
    )


_ONE = ReadQuery(_project_segments(Segment.key == sa.bindparam("segment")))


async def fetch(reads: ReadPool, project_key: str, key: str) -> list[Any]:
    return await reads.fetch(_ONE, {"project": project_key, "segment": key})


@functools.cache
def _page(cursor: bool) -> ReadQuery:
    after = Segment.key > sa.bindparam("cursor") if cursor else sa.true()
    return ReadQuery(
        _project_segments(after).order_by(Segment.key).limit(sa.bindparam("limit", type_=sa.Integer))
    )


async def fetch_page(reads: ReadPool, project_key: str, *, limit: int, cursor: str | None) -> list[Any]:
    params: dict[str, Any] = {"project": project_key, "limit": limit}
    if cursor:
        params["cursor"] = cursor
    return await reads.fetch(_page(bool(cursor)), params)
