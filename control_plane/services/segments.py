"""Segments: project-wide audiences, versioned like flags and propagated to every environment."""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from flagyard.control_plane import schemas
from flagyard.control_plane.db.reads import ReadPool, ReadQuery
from flagyard.control_plane.exceptions import ConflictError, Detail, InvalidRequestError, NotFoundError
from flagyard.control_plane.security import Role
from flagyard.control_plane.services.common import (
    Actor,
    Result,
    Tx,
    check_project,
    diff_result,
    ensure_room,
    environments_of,
    etag,
    get_project,
    get_segment,
    invalid,
    page_limit,
    version_page,
    version_result,
)
from flagyard.db import mapping as m
from flagyard.db.models import (
    Environment,
    Flag,
    FlagEnvironment,
    Project,
    Segment,
    SegmentVersion,
)
from flagyard.rule_engine import DefinitionError, Issue, validate_segment


def segment_body(seg: Any) -> dict[str, Any]:
    """The API's view of a segment (a :class:`Segment` or a row with its columns)."""
    body = m.segment_dict(seg)
    body.update(version=seg.version, created_at=seg.created_at, updated_at=seg.updated_at)
    return body


def _graph(session: Session, project_id: int, exclude: str) -> dict[str, list[str]]:
    rows = session.execute(
        sa.select(Segment.key, Segment.rules).where(
            Segment.project_id == project_id, Segment.deleted_at.is_(None), Segment.key != exclude
        )
    )
    return {key: _references(rules) for key, rules in rows}


def _references(rules: list[Any]) -> list[str]:
    return [
        v
        for rule in rules
        for clause in rule.get("clauses", ())
        if clause.get("operator") == "segment_match"
        for v in clause.get("values", ())
        if isinstance(v, str)
    ]


def _cycle_through(start: str, edges: dict[str, list[str]]) -> list[str] | None:
    """A reference cycle through ``start``, as the list of its segments, or ``None``."""
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        for nxt in edges.get(node, ()):
            if nxt == start:
                return [*path, start]
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, [*path, nxt]))
    return None


def _validate(session: Session, project_id: int, data: dict[str, Any], version: int) -> list[Any]:
    """Canonical rules of a valid segment, or 422 with every problem."""
    graph = _graph(session, project_id, data["key"])
    try:
        segment = validate_segment(
            m.rule_engine_segment_data(data, version), segments=set(graph), references=graph
        )
    except DefinitionError as exc:
        raise invalid(exc.issues) from exc
    rules = m.canonical_segment_rules(segment)
    cycle = _cycle_through(data["key"], {**graph, data["key"]: _references(rules)})
    if cycle:
        raise invalid([Issue("/rules", "segment cycle: " + " -> ".join(cycle))])
    return rules


def _record(
    tx: Tx,
    project: Project,
    seg: Segment,
    before: dict[str, Any],
    after: dict[str, Any],
    action: str,
    comment: str,
) -> None:
    seg.version += 1
    seg.updated_at = datetime.now(UTC)
    tx.session.add(
        SegmentVersion(
            segment_id=seg.id,
            version=seg.version,
            snapshot=after,
            action=action,
            comment=comment,
            author_key_id=tx.actor.key_id,
        )
    )
    tx.audit(project, "segment", seg.key, action, before, after, version=seg.version, comment=comment)
    tx.emit([e.id for e in environments_of(tx.session, project.id)], "segment", seg.key, seg.version)


def create_segment(tx: Tx, project_key: str, body: schemas.SegmentCreate) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    project = get_project(s, tx.actor, project_key)
    live = sa.select(Segment.id).where(
        Segment.project_id == project.id, Segment.key == body.key, Segment.deleted_at.is_(None)
    )
    if s.scalar(live) is not None:
        raise ConflictError(f"segment '{body.key}' already exists in project '{project.key}'")
    ensure_room(s, project, Segment)
    previous = s.scalar(
        sa.select(sa.func.max(Segment.version)).where(
            Segment.project_id == project.id, Segment.key == body.key
        )
    )
    data = body.model_dump(mode="json", exclude={"comment"})
    data["rules"] = _validate(s, project.id, data, (previous or 0) + 1)
    seg = Segment(project_id=project.id, version=previous or 0, **data)
    s.add(seg)
    s.flush()
    _record(tx, project, seg, {}, m.segment_dict(seg), "created", body.comment)
    s.flush()
    return Result(
        segment_body(seg), 201, etag(seg.version), f"/api/v1/projects/{project.key}/segments/{seg.key}"
    )


_SEGMENT_COLUMNS = [
    getattr(Segment, name) for name in (*m.SEGMENT_FIELDS, "version", "created_at", "updated_at")
]


def _project_segments(on: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """A project's id beside its live segments that match ``on``: one row with empty segment columns if
    none does, no row if there is no such project (so one statement tells 403/404 apart too)."""
    joined = sa.and_(Segment.project_id == Project.id, Segment.deleted_at.is_(None), on)
    return (
        sa.select(Project.id.label("project_id"), *_SEGMENT_COLUMNS)
        .outerjoin(Segment, joined)
        .where(Project.key == sa.bindparam("project"))
    )


_SEGMENT = ReadQuery(_project_segments(Segment.key == sa.bindparam("segment")))


async def read_segment(reads: ReadPool, actor: Actor, project_key: str, key: str) -> Result:
    rows = await reads.fetch(_SEGMENT, {"project": project_key, "segment": key})
    check_project(actor, project_key, rows[0].project_id if rows else None)
    seg = rows[0]
    if seg.key is None:
        raise NotFoundError(f"segment '{key}' does not exist in project '{project_key}'")
    return Result(segment_body(seg), etag=etag(seg.version))


@functools.cache
def _segment_page(cursor: bool) -> ReadQuery:
    after = Segment.key > sa.bindparam("cursor") if cursor else sa.true()
    return ReadQuery(
        _project_segments(after).order_by(Segment.key).limit(sa.bindparam("limit", type_=sa.Integer))
    )


async def list_segments(
    reads: ReadPool, actor: Actor, project_key: str, *, limit: int, cursor: str | None
) -> Result:
    """One statement, like :func:`read_segment`."""
    limit = page_limit(limit)
    params: dict[str, Any] = {"project": project_key, "limit": limit + 1}
    if cursor:
        params["cursor"] = cursor
    rows = await reads.fetch(_segment_page(bool(cursor)), params)
    check_project(actor, project_key, rows[0].project_id if rows else None)
    segs = [row for row in rows if row.key is not None]
    more = len(segs) > limit
    segs = segs[:limit]
    return Result({"items": [segment_body(x) for x in segs], "next_cursor": segs[-1].key if more else None})


def update_segment(tx: Tx, project_key: str, key: str, body: schemas.SegmentUpdate) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    project = get_project(s, tx.actor, project_key)
    seg = get_segment(s, project, key, lock=True)
    tx.check_if_match(etag(seg.version))
    changes = body.model_dump(mode="json", exclude_unset=True, exclude={"comment"})
    bad = [Detail("/" + k, "may not be null") for k, v in changes.items() if v is None]
    if bad:
        raise InvalidRequestError("the request is invalid", bad)
    before = m.segment_dict(seg)
    after = {**before, **changes}
    if after == before:
        return Result(segment_body(seg), etag=etag(seg.version))
    after["rules"] = _validate(s, project.id, after, seg.version + 1)
    for name, value in after.items():
        setattr(seg, name, value)
    _record(tx, project, seg, before, after, "updated", body.comment)
    return Result(segment_body(seg), etag=etag(seg.version))


def users_of(session: Session, project_id: int, key: str) -> list[Detail]:
    """Flags (any environment) and segments whose rules match segment ``key``."""
    needle = [{"clauses": [{"operator": "segment_match", "values": [key]}]}]
    flags = session.execute(
        sa.select(Flag.key, Environment.key)
        .join(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
        .join(Environment, Environment.id == FlagEnvironment.environment_id)
        .where(
            Flag.project_id == project_id,
            Flag.deleted_at.is_(None),
            sa.cast(FlagEnvironment.rules, JSONB).contains(needle),
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
    return [Detail(f"/flags/{f}/environments/{e}", "its rules use this segment") for f, e in flags] + [
        Detail(f"/segments/{other}", "its rules use this segment") for other in segments
    ]


def delete_segment(tx: Tx, project_key: str, key: str) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    project = get_project(s, tx.actor, project_key)
    seg = get_segment(s, project, key, lock=True)
    tx.check_if_match(etag(seg.version))
    users = users_of(s, project.id, key)
    if users:
        raise ConflictError(f"segment '{key}' is in use; remove the references first", users)
    before = m.segment_dict(seg)
    seg.version += 1
    seg.deleted_at = seg.updated_at = datetime.now(UTC)
    tx.audit(project, "segment", key, "deleted", before, {}, version=seg.version)
    envs = [e.id for e in environments_of(s, project.id)]
    tx.emit(envs, "segment", key, seg.version, deleted=True)
    return Result(None, 204)


def _version(session: Session, seg: Segment, n: int) -> SegmentVersion:
    v = session.scalars(
        sa.select(SegmentVersion).where(SegmentVersion.segment_id == seg.id, SegmentVersion.version == n)
    ).first()
    if v is None:
        raise NotFoundError(f"segment '{seg.key}' has no version {n}")
    return v


def list_versions(
    session: Session, actor: Actor, project_key: str, key: str, *, limit: int, cursor: int | None
) -> Result:
    seg = get_segment(session, get_project(session, actor, project_key), key)
    return version_page(
        session, SegmentVersion, SegmentVersion.segment_id == seg.id, limit=limit, cursor=cursor
    )


def read_version(session: Session, actor: Actor, project_key: str, key: str, n: int) -> Result:
    project = get_project(session, actor, project_key)
    seg = get_segment(session, project, key)
    return version_result(_version(session, seg, n))


def diff_versions(
    session: Session, actor: Actor, project_key: str, key: str, from_: int, to: int | None
) -> Result:
    project = get_project(session, actor, project_key)
    seg = get_segment(session, project, key)
    return diff_result(
        _version(session, seg, from_), _version(session, seg, to if to is not None else seg.version)
    )


def rollback(tx: Tx, project_key: str, key: str, body: schemas.RollbackIn) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    project = get_project(s, tx.actor, project_key)
    seg = get_segment(s, project, key, lock=True)
    tx.check_if_match(etag(seg.version), required=False)
    target = _version(s, seg, body.version)
    before = m.segment_dict(seg)
    after = {**{f: target.snapshot[f] for f in m.SEGMENT_FIELDS}, "key": seg.key}
    if after == before:
        raise ConflictError(f"version {body.version} is the same as the current state; nothing to roll back")
    try:
        after["rules"] = _validate(s, project.id, after, seg.version + 1)
    except InvalidRequestError as exc:
        exc.message = f"version {body.version} is no longer valid (it refers to something that changed)"
        raise
    for name, value in after.items():
        setattr(seg, name, value)
    _record(
        tx, project, seg, before, after, "rolled_back", body.comment or f"rollback to version {body.version}"
    )
    return Result(segment_body(seg), etag=etag(seg.version))
