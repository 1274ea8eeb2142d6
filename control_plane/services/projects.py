"""Projects and their environments."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from flagyard.contracts.sampling import policy_issues
from flagyard.control_plane import schemas
from flagyard.control_plane.db import flags as flags_repo
from flagyard.control_plane.db import segments as segments_repo
from flagyard.control_plane.exceptions import (
    ConflictError,
    Detail,
    InvalidRequestError,
    PermissionDeniedError,
)
from flagyard.control_plane.security import Role
from flagyard.control_plane.services.common import (
    Actor,
    Result,
    Tx,
    environments_of,
    etag,
    get_environment,
    get_project,
    page_limit,
)
from flagyard.db.models import Environment, Project


def project_body(p: Project) -> dict[str, Any]:
    return {
        "key": p.key,
        "name": p.name,
        "description": p.description,
        "revision": p.revision,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    }


def environment_body(e: Environment) -> dict[str, Any]:
    return {
        "key": e.key,
        "name": e.name,
        "description": e.description,
        "revision": e.revision,
        "approvals_required": e.approvals_required,
        "sampling": _sampling(e),
        "created_at": e.created_at,
        "updated_at": e.updated_at,
    }


def _sampling(e: Environment) -> dict[str, Any] | None:
    """The environment's sampling policy as the API shows and audits it: without its salt."""
    if e.sampling is None:
        return None
    return {"attributes": list(e.sampling["attributes"]), "hashed": list(e.sampling["hashed"])}


def _fields(x: Project | Environment) -> dict[str, Any]:
    fields: dict[str, Any] = {"key": x.key, "name": x.name, "description": x.description}
    if isinstance(x, Environment):
        fields["approvals_required"] = x.approvals_required
        fields["sampling"] = _sampling(x)
    return fields


def _checked_sampling(body: schemas.SamplingIn | None) -> dict[str, Any] | None:
    """The policy to store, checked with the contract's own rules (the syncer publishes it and data planes
    parse it with them): every problem is one detail pointing into the request."""
    if body is None:
        return None
    details = [
        Detail(f"/sampling/{where}", message)
        for where, message in policy_issues(body.attributes, body.hashed)
    ]
    if not body.attributes and not body.hashed:
        details.append(Detail("/sampling", "names no attribute; send null to turn sampling off"))
    if details:
        raise InvalidRequestError("the sampling policy is invalid", details)
    return {"attributes": list(body.attributes), "hashed": list(body.hashed)}


def _set_sampling(env: Environment, policy: dict[str, Any] | None) -> None:
    """Store the policy; the salt is made when sampling is turned on and kept while it stays on, so hashed
    values in the sample (and in samples yet to come) stay comparable across policy changes."""
    env.sampling = policy
    if policy is None:
        env.sampling_salt = None
    elif env.sampling_salt is None:
        env.sampling_salt = secrets.token_hex(16)


def create_project(tx: Tx, body: schemas.ProjectCreate) -> Result:
    tx.actor.require(Role.ADMIN)
    if not tx.actor.is_global_admin:
        raise PermissionDeniedError(
            "a project-scoped key cannot create projects; it needs a global admin key"
        )
    s = tx.session
    if s.scalar(sa.select(Project.id).where(Project.key == body.key)) is not None:
        raise ConflictError(f"project '{body.key}' already exists")
    project = Project(key=body.key, name=body.name, description=body.description, revision=1)
    s.add(project)
    s.flush()
    tx.audit(project, "project", project.key, "created", {}, _fields(project), version=1)
    return Result(project_body(project), 201, etag(1), f"/api/v1/projects/{project.key}")


def list_projects(session: Session, actor: Actor, *, limit: int, cursor: str | None) -> Result:
    actor.require(Role.READER)
    stmt = sa.select(Project)
    if actor.project_id is not None:
        stmt = stmt.where(Project.id == actor.project_id)
    if cursor:
        stmt = stmt.where(Project.key > cursor)
    limit = page_limit(limit)
    rows = list(session.scalars(stmt.order_by(Project.key).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return Result({"items": [project_body(p) for p in rows], "next_cursor": rows[-1].key if more else None})


def read_project(session: Session, actor: Actor, key: str) -> Result:
    actor.require(Role.READER)
    p = get_project(session, actor, key)
    return Result(project_body(p), etag=etag(p.revision))


def update_project(tx: Tx, key: str, body: schemas.ProjectUpdate) -> Result:
    tx.actor.require(Role.ADMIN)
    p = get_project(tx.session, tx.actor, key, lock=True)
    tx.check_if_match(etag(p.revision))
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    before = _fields(p)
    if {**before, **changes} == before:
        return Result(project_body(p), etag=etag(p.revision))
    for name, value in changes.items():
        setattr(p, name, value)
    p.revision += 1
    p.updated_at = datetime.now(UTC)
    tx.audit(p, "project", p.key, "updated", before, _fields(p), version=p.revision)
    return Result(project_body(p), etag=etag(p.revision))


def delete_project(tx: Tx, key: str) -> Result:
    """Delete a project with everything in it; each environment gets a deletion marker in the outbox."""
    tx.actor.require(Role.ADMIN)
    s = tx.session
    p = get_project(s, tx.actor, key, lock=True)
    tx.check_if_match(etag(p.revision))
    for env in environments_of(s, p.id):
        tx.emit([env.id], "environment", env.key, env.revision + 1, deleted=True)
    tx.audit(p, "project", p.key, "deleted", _fields(p), {}, version=p.revision + 1)
    s.delete(p)
    tx.keys_changed = True
    return Result(None, 204)


# --- environments --------------------------------------------------------------------------------


def create_environment(tx: Tx, project_key: str, body: schemas.EnvironmentCreate) -> Result:
    """A new environment: every live flag gets an (off) configuration in it, and the data plane gets
    every flag and segment of it through the outbox."""
    tx.actor.require(Role.ADMIN)
    sampling = _checked_sampling(body.sampling)
    s = tx.session
    project = get_project(s, tx.actor, project_key, lock=True)
    exists = sa.select(Environment.id).where(
        Environment.project_id == project.id, Environment.key == body.key
    )
    if s.scalar(exists) is not None:
        raise ConflictError(f"environment '{body.key}' already exists in project '{project.key}'")
    env = Environment(
        project_id=project.id,
        key=body.key,
        name=body.name,
        description=body.description,
        revision=1,
        approvals_required=body.approvals_required,
    )
    _set_sampling(env, sampling)
    s.add(env)
    s.flush()
    if sampling is not None:
        # The syncer publishes the policy with the environment (an environment with no flag nor segment
        # would otherwise get no job at all).
        tx.emit([env.id], "environment", env.key, env.revision)
    # Its first content (every flag off, every segment) is where a policy starts, not a change under it.
    approved, tx.approved = tx.approved, True
    try:
        flags_repo.add_environment(tx, project.id, env.id)
        segments_repo.add_environment(tx, project.id, env.id)
    finally:
        tx.approved = approved
    tx.audit(project, "environment", env.key, "created", {}, _fields(env), environment=env.key, version=1)
    location = f"/api/v1/projects/{project.key}/environments/{env.key}"
    return Result(environment_body(env), 201, etag(1), location)


def list_environments(session: Session, actor: Actor, project_key: str) -> Result:
    actor.require(Role.READER)
    project = get_project(session, actor, project_key)
    return Result(
        {"items": [environment_body(e) for e in environments_of(session, project.id)], "next_cursor": None}
    )


def read_environment(session: Session, actor: Actor, project_key: str, key: str) -> Result:
    actor.require(Role.READER)
    env = get_environment(session, get_project(session, actor, project_key), key)
    return Result(environment_body(env), etag=etag(env.revision))


def update_environment(tx: Tx, project_key: str, key: str, body: schemas.EnvironmentUpdate) -> Result:
    tx.actor.require(Role.ADMIN)
    sampling = _checked_sampling(body.sampling)
    project = get_project(tx.session, tx.actor, project_key)
    env = get_environment(tx.session, project, key, lock=True)
    tx.check_if_match(etag(env.revision))
    set_fields = body.model_dump(exclude_unset=True, exclude={"sampling"})
    changes = {k: v for k, v in set_fields.items() if v is not None}
    if "sampling" in body.model_fields_set:  # null is a value here: sampling off
        changes["sampling"] = sampling
    before = _fields(env)
    if {**before, **changes} == before:
        return Result(environment_body(env), etag=etag(env.revision))
    for name, value in changes.items():
        if name == "sampling":
            _set_sampling(env, value)
        else:
            setattr(env, name, value)
    env.revision += 1
    env.updated_at = datetime.now(UTC)
    if changes.get("sampling", before["sampling"]) != before["sampling"]:
        # The syncer publishes the policy (or withdraws it with the sample) from the committed row.
        tx.emit([env.id], "environment", env.key, env.revision)
    tx.audit(
        project,
        "environment",
        env.key,
        "updated",
        before,
        _fields(env),
        environment=env.key,
        version=env.revision,
    )
    return Result(environment_body(env), etag=etag(env.revision))


def delete_environment(tx: Tx, project_key: str, key: str) -> Result:
    """Delete an environment (its flag configurations and SDK keys go with it) and tell the data plane."""
    tx.actor.require(Role.ADMIN)
    project = get_project(tx.session, tx.actor, project_key)
    env = get_environment(tx.session, project, key, lock=True)
    tx.check_if_match(etag(env.revision))
    tx.emit([env.id], "environment", env.key, env.revision + 1, deleted=True)
    tx.audit(
        project,
        "environment",
        env.key,
        "deleted",
        _fields(env),
        {},
        environment=env.key,
        version=env.revision + 1,
    )
    tx.session.delete(env)
    return Result(None, 204)
