"""Segments: project-wide audiences, versioned like flags and propagated to every environment.

This module decides what a change is (checks, validation, the new definition); the segment repository
(:mod:`flagyard.control_plane.db.segments`) stores it.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from flagyard.control_plane import schemas
from flagyard.control_plane.db import segments as repo
from flagyard.control_plane.db.deferred import Owner
from flagyard.control_plane.db.reads import ReadPool
from flagyard.control_plane.db.versions import Live, Version
from flagyard.control_plane.exceptions import ConflictError, Detail, InvalidRequestError, NotFoundError
from flagyard.control_plane.security import Role
from flagyard.control_plane.services.common import (
    Actor,
    Result,
    Tx,
    check_project,
    diff_result,
    ensure_room,
    etag,
    get_project,
    invalid,
    page_limit,
    version_page,
    version_result,
)
from flagyard.db import fields
from flagyard.db import mapping as m
from flagyard.rule_engine import DefinitionError, Issue, validate_segment


def segment_location(project: str, key: str) -> str:
    return f"/api/v1/projects/{project}/segments/{key}"


def segment_body(seg: Any) -> dict[str, Any]:
    """The API's view of a segment (a row with its columns)."""
    body = m.segment_dict(seg)
    body.update(version=seg.version, created_at=seg.created_at, updated_at=seg.updated_at)
    return body


def _locked_body(seg: repo.LockedSegment) -> dict[str, Any]:
    body = dict(seg.definition)
    body.update(version=seg.version, created_at=seg.created_at, updated_at=seg.updated_at)
    return body


def _graph(session: Session, project_id: int, exclude: str) -> dict[str, list[str]]:
    return {key: _references(rules) for key, rules in repo.references(session, project_id, exclude)}


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


def validate(session: Session, project_id: int, data: dict[str, Any], version: int) -> list[Any]:
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


def locked(tx: Tx, project_key: str, key: str) -> repo.LockedSegment:
    """The live segment ``key`` locked for a change, or 403/404."""
    project = get_project(tx.session, tx.actor, project_key)
    seg = repo.lock(tx.session, project.id, key)
    if seg is None:
        raise NotFoundError(f"segment '{key}' does not exist in project '{project.key}'")
    return seg


def create_segment(tx: Tx, project_key: str, body: schemas.SegmentCreate) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    project = get_project(s, tx.actor, project_key)
    if repo.find(s, project.id, body.key) is not None:
        raise ConflictError(f"segment '{body.key}' already exists in project '{project.key}'")
    ensure_room(s, project, "segments")
    version = repo.next_version(s, project.id, body.key)
    data = fields.complete(fields.SEGMENT, body.model_dump(mode="json", exclude={"comment"}))
    data["rules"] = validate(s, project.id, data, version)
    # A new segment is used by no flag, so it changes nothing an approval policy guards.
    approved, tx.approved = tx.approved, True
    try:
        seg = repo.create(tx, Owner(project.id, project.key), data, version, "created", body.comment)
    finally:
        tx.approved = approved
    return Result(_locked_body(seg), 201, etag(seg.version), segment_location(project.key, seg.key))


async def read_segment(reads: ReadPool, actor: Actor, project_key: str, key: str) -> Result:
    rows = await repo.fetch(reads, project_key, key)
    check_project(actor, project_key, rows[0].project_id if rows else None)
    seg = rows[0]
    if seg.key is None:
        raise NotFoundError(f"segment '{key}' does not exist in project '{project_key}'")
    return Result(segment_body(seg), etag=etag(seg.version))


async def list_segments(
    reads: ReadPool, actor: Actor, project_key: str, *, limit: int, cursor: str | None
) -> Result:
    """One statement, like :func:`read_segment`."""
    limit = page_limit(limit)
    rows = await repo.fetch_page(reads, project_key, limit=limit + 1, cursor=cursor)
    check_project(actor, project_key, rows[0].project_id if rows else None)
    segs = [row for row in rows if row.key is not None]
    more = len(segs) > limit
    segs = segs[:limit]
    return Result({"items": [segment_body(x) for x in segs], "next_cursor": segs[-1].key if more else None})


def update_segment(tx: Tx, project_key: str, key: str, body: schemas.SegmentUpdate) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    seg = locked(tx, project_key, key)
    tx.check_if_match(etag(seg.version))
    changes = body.model_dump(mode="json", exclude_unset=True, exclude={"comment"})
    bad = [Detail("/" + k, "may not be null") for k in fields.explicit_nulls(fields.SEGMENT, changes)]
    if bad:
        raise InvalidRequestError("the request is invalid", bad)
    before = seg.definition
    after = {**before, **changes}
    if after == before:
        return Result(_locked_body(seg), etag=etag(seg.version))
    after["rules"] = validate(s, seg.project.id, after, seg.version + 1)
    repo.record_change(tx, seg, after, "updated", body.comment)
    return Result(_locked_body(seg), etag=etag(seg.version))


def users_of(session: Session, project_id: int, key: str) -> list[Detail]:
    """Flags (any environment) and segments whose rules match segment ``key``."""
    flags, segments = repo.users(session, project_id, key)
    return [Detail(f"/flags/{f}/environments/{e}", "its rules use this segment") for f, e in flags] + [
        Detail(f"/segments/{other}", "its rules use this segment") for other in segments
    ]


def segment_usage(session: Session, actor: Actor, project_key: str, key: str) -> Result:
    """Where the segment is used: the same query that keeps a used segment from being deleted."""
    project = get_project(session, actor, project_key)
    if repo.find(session, project.id, key) is None:
        raise NotFoundError(f"segment '{key}' does not exist in project '{project.key}'")
    flags, segments = repo.users(session, project.id, key)
    by_flag: dict[str, list[str]] = {}
    for flag, env in flags:
        by_flag.setdefault(flag, []).append(env)
    return Result(
        {
            "items": [{"flag": f, "environments": by_flag[f]} for f in sorted(by_flag)],
            "segments": sorted(segments),
        }
    )


def delete_segment(tx: Tx, project_key: str, key: str) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    seg = locked(tx, project_key, key)
    tx.check_if_match(etag(seg.version))
    users = users_of(s, seg.project.id, key)
    if users:
        raise ConflictError(f"segment '{key}' is in use; remove the references first", users)
    repo.delete(tx, seg)
    return Result(None, 204)


def _live(session: Session, actor: Actor, project_key: str, key: str) -> Live:
    """The live segment ``key`` (unlocked: its versions never change), or 403/404."""
    project = get_project(session, actor, project_key)
    seg = repo.find(session, project.id, key)
    if seg is None:
        raise NotFoundError(f"segment '{key}' does not exist in project '{project.key}'")
    return seg


def _version(session: Session, segment_id: int, key: str, n: int) -> Version:
    v = repo.version(session, segment_id, n)
    if v is None:
        raise NotFoundError(f"segment '{key}' has no version {n}")
    return v


def list_versions(
    session: Session, actor: Actor, project_key: str, key: str, *, limit: int, cursor: int | None
) -> Result:
    seg = _live(session, actor, project_key, key)
    limit = page_limit(limit)
    return version_page(repo.versions(session, seg.id, limit=limit + 1, cursor=cursor), limit)


def read_version(session: Session, actor: Actor, project_key: str, key: str, n: int) -> Result:
    seg = _live(session, actor, project_key, key)
    return version_result(_version(session, seg.id, key, n))


def diff_versions(
    session: Session, actor: Actor, project_key: str, key: str, from_: int, to: int | None
) -> Result:
    seg = _live(session, actor, project_key, key)
    return diff_result(
        _version(session, seg.id, key, from_),
        _version(session, seg.id, key, to if to is not None else seg.version),
    )


def rollback(tx: Tx, project_key: str, key: str, body: schemas.RollbackIn) -> Result:
    """Restore version ``n`` as a new, higher version; a snapshot stored before a field existed reads
    the field's declared default (:mod:`..db.fields`)."""
    tx.actor.require(Role.WRITER)
    s = tx.session
    seg = locked(tx, project_key, key)
    tx.check_if_match(etag(seg.version), required=False)
    snapshot = _version(s, seg.id, key, body.version).snapshot
    after = fields.complete(fields.SEGMENT, {**snapshot, "key": seg.key})
    if after == seg.definition:
        raise ConflictError(f"version {body.version} is the same as the current state; nothing to roll back")
    try:
        after["rules"] = validate(s, seg.project.id, after, seg.version + 1)
    except InvalidRequestError as exc:
        exc.message = f"version {body.version} is no longer valid (it refers to something that changed)"
        raise
    comment = body.comment or f"rollback to version {body.version}"
    repo.record_change(tx, seg, after, "rolled_back", comment)
    return Result(_locked_body(seg), etag=etag(seg.version))
