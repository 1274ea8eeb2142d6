"""Flags: definitions, per-environment configurations, toggles, versions, diffs and rollbacks.

Every change bumps the flag's single version counter, stores a full snapshot as a new version, writes
an audit entry and outbox rows, all in the caller's transaction (:class:`~.common.Tx`). Each environment
also records the version at which what it serves last changed (``FlagEnvironment.version``): only the
environments a change reaches get the new version and an outbox row, so the others' SDKs hear of nothing.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from flagyard import rule_engine
from flagyard.control_plane import schemas
from flagyard.control_plane.db.reads import ReadPool, ReadQuery
from flagyard.control_plane.exceptions import ConflictError, Detail, InvalidRequestError, NotFoundError
from flagyard.control_plane.security import Role, new_salt
from flagyard.control_plane.services.common import (
    Actor,
    EnvironmentRef,
    ProjectRef,
    Result,
    Tx,
    check_project,
    diff_result,
    ensure_room,
    environments_of,
    etag,
    get_environment,
    get_flag,
    get_project,
    get_project_flag,
    invalid,
    page_limit,
    read_project_id,
    segment_keys,
    version_page,
    version_result,
)
from flagyard.db import mapping as m
from flagyard.db.deferred import Template, columns
from flagyard.db.models import Environment, Flag, FlagEnvironment, FlagVersion, Project
from flagyard.rule_engine import DefinitionError, Issue, validate_flag
from flagyard.rule_engine.validation import pointer

ConfigRows = dict[str, tuple[Environment, FlagEnvironment]]


def flag_location(project: str, key: str) -> str:
    return f"/api/v1/projects/{project}/flags/{key}"


# --- reading -------------------------------------------------------------------------------------


def config_rows(session: Session, flag_id: int) -> ConfigRows:
    rows = session.execute(
        sa.select(Environment, FlagEnvironment)
        .join(FlagEnvironment, FlagEnvironment.environment_id == Environment.id)
        .where(FlagEnvironment.flag_id == flag_id)
        .order_by(Environment.key)
    ).all()
    return {env.key: (env, cfg) for env, cfg in rows}


_CONFIG_COLUMNS = [getattr(FlagEnvironment, name) for name in m.ENV_CONFIG_FIELDS]


@dataclass(slots=True)
class LockedFlag:
    """A live flag locked ``FOR UPDATE`` for a change of one environment's configuration; read with
    Core, not the ORM (its writes are deferred statements, so nothing needs an ORM object)."""

    id: int
    key: str
    name: str
    description: str
    tags: list[str]
    type: str
    variants: dict[str, Any]
    salt: str
    version: int
    updated_at: datetime


_LOCKED_FLAG_FIELDS = tuple(field.name for field in fields(LockedFlag))

_LOCKED_FLAG = (
    sa.select(
        Project.id.label("project_id"),
        Project.key.label("project_key"),
        *(getattr(Flag, name) for name in _LOCKED_FLAG_FIELDS),
        Environment.id.label("environment_id"),
        Environment.key.label("environment"),
        *_CONFIG_COLUMNS,
    )
    .join(Flag, Flag.project_id == Project.id)
    .join(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
    .join(Environment, Environment.id == FlagEnvironment.environment_id)
    .where(
        Project.key == sa.bindparam("project"), Flag.key == sa.bindparam("flag"), Flag.deleted_at.is_(None)
    )
    .order_by(Environment.key)
    .with_for_update(of=Flag)
)
"""Built once, so SQLAlchemy computes its cache key once."""

LockedConfigs = dict[str, tuple[EnvironmentRef, dict[str, Any]]]
"""A locked flag's configurations by environment key."""


def locked_flag(
    session: Session, actor: Actor, project_key: str, key: str, env_key: str
) -> tuple[ProjectRef, LockedFlag, LockedConfigs, EnvironmentRef]:
    """A project, one of its live flags (locked ``FOR UPDATE``), the flag's configurations and the
    environment ``env_key``, in one statement: the start of every change to one flag's environment."""
    rows = session.connection().execute(_LOCKED_FLAG, {"project": project_key, "flag": key}).all()
    if not rows:  # no such project or flag (404), or a key scoped elsewhere (403), or no environments
        found, _ = get_project_flag(session, actor, project_key, key, lock=True)
        get_environment(session, found, env_key)
        raise NotFoundError(f"flag '{key}' has no configuration in environment '{env_key}'")
    first = rows[0]
    actor.require_project(first.project_id)
    flag = LockedFlag(*(getattr(first, name) for name in _LOCKED_FLAG_FIELDS))
    configs = {
        row.environment: (EnvironmentRef(row.environment_id, row.environment), m.env_config_dict(row))
        for row in rows
    }
    ref = ProjectRef(first.project_id, first.project_key)
    if env_key not in configs:
        get_environment(session, ref, env_key)
        raise NotFoundError(f"flag '{key}' has no configuration in environment '{env_key}'")
    return ref, flag, configs, configs[env_key][0]


def _configs(rows: ConfigRows) -> dict[str, dict[str, Any]]:
    return {key: m.env_config_dict(cfg) for key, (_, cfg) in rows.items()}


def flag_body(flag: Any, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The API's view of a flag (a :class:`Flag` or a row with its columns) and its configurations."""
    body = m.flag_definition_dict(flag)
    body.update(version=flag.version, created_at=flag.created_at, updated_at=flag.updated_at)
    body["environments"] = configs
    return body


def env_body(flag: Any, env_key: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"flag": flag.key, "environment": env_key, "version": flag.version, **config}


_FLAG_WITH_CONFIGS = ReadQuery(
    sa.select(
        Project.id.label("project_id"),
        Flag.key,
        Flag.name,
        Flag.description,
        Flag.tags,
        Flag.type,
        Flag.variants,
        Flag.salt,
        Flag.version,
        Flag.created_at,
        Flag.updated_at,
        Environment.key.label("environment"),
        *_CONFIG_COLUMNS,
    )
    .join(Flag, Flag.project_id == Project.id)
    .outerjoin(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
    .outerjoin(Environment, Environment.id == FlagEnvironment.environment_id)
    .where(
        Project.key == sa.bindparam("project"),
        Flag.key == sa.bindparam("flag"),
        Flag.deleted_at.is_(None),
    )
    .order_by(Environment.key)
)
"""A flag with every environment's configuration: one row per environment, one statement."""


async def read_flag(reads: ReadPool, actor: Actor, project_key: str, key: str) -> Result:
    """One statement, so it is consistent outside a transaction (the hot read of the admin API)."""
    rows = await reads.fetch(_FLAG_WITH_CONFIGS, {"project": project_key, "flag": key})
    if not rows:
        await read_project_id(reads, actor, project_key)
        raise NotFoundError(f"flag '{key}' does not exist in project '{project_key}'")
    flag = rows[0]
    actor.require_project(flag.project_id)
    configs = {row.environment: m.env_config_dict(row) for row in rows if row.environment is not None}
    return Result(flag_body(flag, configs), etag=etag(flag.version))


_ENV_CONFIG = ReadQuery(
    sa.select(Project.id.label("project_id"), Flag.key, Flag.version, Environment.key.label("environment"),
              *_CONFIG_COLUMNS)
    .outerjoin(Flag, sa.and_(Flag.project_id == Project.id, Flag.key == sa.bindparam("flag"),
                             Flag.deleted_at.is_(None)))
    .outerjoin(Environment, sa.and_(Environment.project_id == Project.id,
                                    Environment.key == sa.bindparam("env")))
    .outerjoin(FlagEnvironment, sa.and_(FlagEnvironment.flag_id == Flag.id,
                                        FlagEnvironment.environment_id == Environment.id))
    .where(Project.key == sa.bindparam("project"))
)  # fmt: skip
"""A project's id beside one flag's configuration in one environment (empty columns for what is missing)."""


async def read_env_config(reads: ReadPool, actor: Actor, project_key: str, key: str, env_key: str) -> Result:
    rows = await reads.fetch(_ENV_CONFIG, {"project": project_key, "flag": key, "env": env_key})
    check_project(actor, project_key, rows[0].project_id if rows else None)
    row = rows[0]
    if row.key is None:
        raise NotFoundError(f"flag '{key}' does not exist in project '{project_key}'")
    if row.environment is None:
        raise NotFoundError(f"environment '{env_key}' does not exist in project '{project_key}'")
    return Result(env_body(row, row.environment, m.env_config_dict(row)), etag=etag(row.version))


@functools.cache
def _flag_page(cursor: bool, tag: bool, query: bool) -> ReadQuery:
    """A page of flags with each flag's ``enabled`` map (a correlated subquery), one statement; compiled
    once per combination of filters."""
    by_key = aggregate_order_by(FlagEnvironment.enabled, Environment.key)
    enabled = (
        sa.select(sa.func.json_object_agg(Environment.key, by_key))
        .select_from(FlagEnvironment)
        .join(Environment, Environment.id == FlagEnvironment.environment_id)
        .where(FlagEnvironment.flag_id == Flag.id)
        .scalar_subquery()
    )
    stmt = (
        sa.select(
            Project.id.label("project_id"),
            Flag.key,
            Flag.name,
            Flag.description,
            Flag.tags,
            Flag.type,
            Flag.version,
            Flag.updated_at,
            sa.func.coalesce(enabled, sa.literal_column("'{}'::json")).label("enabled"),
        )
        .join(Flag, Flag.project_id == Project.id)
        .where(Project.key == sa.bindparam("project"), Flag.deleted_at.is_(None))
    )
    if cursor:
        stmt = stmt.where(Flag.key > sa.bindparam("cursor"))
    if tag:
        stmt = stmt.where(sa.cast(Flag.tags, JSONB).contains(sa.bindparam("tags", type_=JSONB)))
    if query:
        like = sa.bindparam("like", type_=sa.String)
        stmt = stmt.where(sa.or_(Flag.key.ilike(like), Flag.name.ilike(like)))
    return ReadQuery(stmt.order_by(Flag.key).limit(sa.bindparam("limit", type_=sa.Integer)))


async def list_flags(
    reads: ReadPool,
    actor: Actor,
    project_key: str,
    *,
    limit: int,
    cursor: str | None,
    tag: str | None,
    query: str | None,
) -> Result:
    """One statement, like :func:`read_flag`."""
    limit = page_limit(limit)
    params: dict[str, Any] = {"project": project_key, "limit": limit + 1}
    if cursor:
        params["cursor"] = cursor
    if tag:
        params["tags"] = [tag]
    if query:
        params["like"] = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    flags = await reads.fetch(_flag_page(bool(cursor), bool(tag), bool(query)), params)
    if flags:
        actor.require_project(flags[0].project_id)
    else:
        await read_project_id(reads, actor, project_key)
    more = len(flags) > limit
    flags = flags[:limit]
    items = [
        {
            "key": f.key,
            "name": f.name,
            "description": f.description,
            "tags": f.tags,
            "type": f.type,
            "version": f.version,
            "updated_at": f.updated_at,
            "enabled": f.enabled,
        }
        for f in flags
    ]
    return Result({"items": items, "next_cursor": flags[-1].key if more else None})


# --- validation ----------------------------------------------------------------------------------


def _prefixed(issues: list[Issue], prefix: str) -> list[Issue]:
    return [Issue(prefix + i.path, i.message) for i in issues]


def validate_definition(definition: dict[str, Any]) -> None:
    """Check the project-wide part alone (key, type, variants)."""
    try:
        validate_flag(m.rule_engine_flag_data(definition, m.default_env_config(), 0))
    except DefinitionError as exc:
        raise invalid(exc.issues) from exc


def _uses_segments(rules: list[Any]) -> bool:
    return any(
        clause.get("operator") == "segment_match" for rule in rules for clause in rule.get("clauses", ())
    )


def graph_lock_key(environment_id: int) -> int:
    """The advisory-lock key of an environment's prerequisite graph: 64 bits of a hash, so it shares
    PostgreSQL's single-key space with the other advisory locks (idempotency keys) without colliding."""
    digest = hashlib.sha256(f"flagyard:prerequisite-graph:{environment_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_prerequisite_graphs(session: Session, environment_ids: Iterable[int]) -> None:
    """Serialise changes of these environments' prerequisite graphs until the transaction ends.

    The cycle check reads the other flags' prerequisites without locking them (each write locks only
    its own flag), so two writes adding A -> B and B -> A could each pass it before the other commits.
    A write that adds or changes prerequisites (or deletes a flag others may come to depend on) takes
    this lock before reading the graph; the second writer then waits, and its check (READ COMMITTED: a
    fresh snapshot per statement) sees the first one's edges. Writes that leave prerequisites alone
    never take it. Lock order: the flag row(s) first (``FOR UPDATE``), then these, by ascending id, so
    two graph writers never wait on each other in a circle.
    """
    for environment_id in sorted(set(environment_ids)):
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(graph_lock_key(environment_id))))


def env_graph(session: Session, environment_id: int, exclude_key: str) -> dict[str, rule_engine.Flag]:
    """The other live flags of an environment, enough for prerequisite checks (key, variants, edges)."""
    rows = session.execute(
        sa.select(Flag.key, Flag.type, Flag.variants, FlagEnvironment.prerequisites)
        .join(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
        .where(
            FlagEnvironment.environment_id == environment_id,
            Flag.deleted_at.is_(None),
            Flag.key != exclude_key,
        )
    )
    return {
        key: rule_engine.Flag.model_construct(
            key=key,
            type=rule_engine.FlagType(type_),
            variants=variants,
            prerequisites=[
                rule_engine.Prerequisite.model_construct(flag=p["flag"], variant=p["variant"])
                for p in prereqs
            ],
        )
        for key, type_, variants, prereqs in rows
    }


def validate_env_config(
    session: Session,
    project_id: int,
    environment_id: int,
    definition: dict[str, Any],
    config: dict[str, Any],
    version: int,
    *,
    known_segments: set[str] | None = None,
    graph: dict[str, rule_engine.Flag] | None = None,
) -> tuple[dict[str, Any] | None, list[Issue]]:
    """The canonical configuration if the flag is valid in the environment, else its issues."""
    segments = None
    if _uses_segments(config["rules"]):
        segments = known_segments if known_segments is not None else segment_keys(session, project_id)
    flags = None
    if config["prerequisites"]:
        flags = graph if graph is not None else env_graph(session, environment_id, definition["key"])
    try:
        flag = validate_flag(
            m.rule_engine_flag_data(definition, config, version), segments=segments, flags=flags
        )
    except DefinitionError as exc:
        return None, exc.issues
    return m.canonical_env_config(flag), []


def dependents(session: Session, project_id: int, key: str) -> list[tuple[str, str, str]]:
    """(flag, environment, variant) of every live flag that has ``key`` as a prerequisite."""
    rows = session.execute(
        sa.select(Flag.key, Environment.key, FlagEnvironment.prerequisites)
        .join(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
        .join(Environment, Environment.id == FlagEnvironment.environment_id)
        .where(
            Flag.project_id == project_id,
            Flag.deleted_at.is_(None),
            Flag.key != key,
            sa.cast(FlagEnvironment.prerequisites, JSONB).contains([{"flag": key}]),
        )
        .order_by(Flag.key, Environment.key)
    )
    return [
        (flag_key, env_key, p["variant"])
        for flag_key, env_key, prereqs in rows
        for p in prereqs
        if p["flag"] == key
    ]


def check_dependents(session: Session, project_id: int, key: str, variants: dict[str, Any]) -> None:
    """Refuse variants that flags depending on this one (as a prerequisite) still need."""
    broken = [
        Issue(
            "/variants", f"flag '{f}' in environment '{e}' has this flag as prerequisite with variant '{v}'"
        )
        for f, e, v in dependents(session, project_id, key)
        if v not in variants
    ]
    if broken:
        raise invalid(broken)


def _validate_all_envs(
    session: Session,
    project_id: int,
    definition: dict[str, Any],
    configs: dict[str, tuple[int, dict[str, Any]]],
    version: int,
) -> dict[str, dict[str, Any]]:
    """Validate a flag in every environment; issues point into the flag resource (``/environments/E``)."""
    issues: list[Issue] = []
    result = {}
    known = (
        segment_keys(session, project_id)
        if any(_uses_segments(c["rules"]) for _, c in configs.values())
        else None
    )
    for env_key, (env_id, config) in configs.items():
        canonical, env_issues = validate_env_config(
            session, project_id, env_id, definition, config, version, known_segments=known
        )
        issues += _prefixed(env_issues, "/environments/" + pointer(env_key)[1:])
        if canonical is not None:
            result[env_key] = canonical
    if issues:
        raise invalid(issues)
    return result


# --- writing -------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


_FLAG_BUMP = Template(
    "flag_bump",
    lambda p: (
        sa.update(Flag).where(Flag.id == p("id")).values(version=p("version"), updated_at=p("updated_at"))
    ),
)
_FLAG_VERSION = Template(
    "flag_version",
    columns(FlagVersion, ("flag_id", "version", "snapshot", "action", "comment", "author_key_id")),
)


def _record(
    tx: Tx,
    project: Project | ProjectRef,
    flag: Flag | LockedFlag,
    before: dict[str, Any],
    after: dict[str, Any],
    action: str,
    comment: str,
    env_ids: list[int],
    *,
    environment: str | None = None,
) -> None:
    """Bump the version and write the version row, the audit entry and the outbox rows.

    ``env_ids`` are the environments that serve something else after the change: the caller has set
    their ``FlagEnvironment.version`` to ``flag.version + 1``; only they get an outbox row."""
    version, now = flag.version + 1, _now()
    tx.defer(_FLAG_BUMP, {"id": flag.id, "version": version, "updated_at": now}, ("flags", (flag.id,)))
    if isinstance(flag, Flag):  # already written: the ORM must not write it again
        set_committed_value(flag, "version", version)
        set_committed_value(flag, "updated_at", now)
    else:
        flag.version, flag.updated_at = version, now
    tx.defer(
        _FLAG_VERSION,
        {
            "flag_id": flag.id,
            "version": version,
            "snapshot": after,
            "action": action,
            "comment": comment,
            "author_key_id": tx.actor.key_id,
        },
    )
    tx.audit(
        project,
        "flag",
        flag.key,
        action,
        before,
        after,
        environment=environment,
        version=flag.version,
        comment=comment,
    )
    tx.emit(env_ids, "flag", flag.key, flag.version)


def create_flag(tx: Tx, project_key: str, body: schemas.FlagCreate) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    project = get_project(s, tx.actor, project_key)
    envs = environments_of(s, project.id)
    env_keys = {e.key for e in envs}
    unknown = [
        Issue("/environments/" + pointer(k)[1:], f"environment '{k}' does not exist")
        for k in body.environments
        if k not in env_keys
    ]
    if unknown:
        raise invalid(unknown)
    live = sa.select(Flag.id).where(
        Flag.project_id == project.id, Flag.key == body.key, Flag.deleted_at.is_(None)
    )
    if s.scalar(live) is not None:
        raise ConflictError(f"flag '{body.key}' already exists in project '{project.key}'")
    ensure_room(s, project, Flag)
    # A re-created key continues above its deleted predecessor: the data plane's version guard only
    # accepts rising versions per key.
    previous = s.scalar(
        sa.select(sa.func.max(Flag.version)).where(Flag.project_id == project.id, Flag.key == body.key)
    )
    version = (previous or 0) + 1
    definition = {
        "key": body.key,
        "name": body.name,
        "description": body.description,
        "tags": list(body.tags),
        "type": body.type.value,
        "variants": body.variants,
        "salt": new_salt(),
    }
    validate_definition(definition)
    requested = {
        e.key: (
            e.id,
            body.environments[e.key].model_dump(mode="json")
            if e.key in body.environments
            else m.default_env_config(),
        )
        for e in envs
    }
    configs = _validate_all_envs(s, project.id, definition, requested, version)
    flag = Flag(project_id=project.id, version=version, **definition)
    s.add(flag)
    s.flush()
    for env in envs:
        s.add(FlagEnvironment(flag_id=flag.id, environment_id=env.id, version=version, **configs[env.key]))
    snapshot = m.flag_snapshot(definition, configs)
    s.add(
        FlagVersion(
            flag_id=flag.id,
            version=version,
            snapshot=snapshot,
            action="created",
            comment=body.comment,
            author_key_id=tx.actor.key_id,
        )
    )
    tx.audit(project, "flag", flag.key, "created", {}, snapshot, version=version, comment=body.comment)
    tx.emit([e.id for e in envs], "flag", flag.key, version)
    s.flush()
    return Result(flag_body(flag, configs), 201, etag(version), flag_location(project.key, flag.key))


def _explicit_nulls(changes: dict[str, Any], fields: tuple[str, ...]) -> None:
    bad = [
        Detail("/" + name, "may not be null") for name in fields if name in changes and changes[name] is None
    ]
    if bad:
        raise InvalidRequestError("the request is invalid", bad)


def update_flag(tx: Tx, project_key: str, key: str, body: schemas.FlagUpdate) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    project = get_project(s, tx.actor, project_key)
    flag = get_flag(s, project, key, lock=True)
    tx.check_if_match(etag(flag.version))
    changes = body.model_dump(mode="json", exclude_unset=True, exclude={"comment"})
    _explicit_nulls(changes, ("name", "description", "tags", "type", "variants"))
    before_def = m.flag_definition_dict(flag)
    after_def = {**before_def, **changes}
    rows = config_rows(s, flag.id)
    configs = _configs(rows)
    if after_def == before_def:
        return Result(flag_body(flag, configs), etag=etag(flag.version))
    validate_definition(after_def)
    if after_def["type"] != before_def["type"] or after_def["variants"] != before_def["variants"]:
        # A write adding this flag as a prerequisite with a variant removed here must not slip between.
        lock_prerequisite_graphs(s, (env.id for env, _ in rows.values()))
        configs = _validate_all_envs(
            s,
            project.id,
            after_def,
            {k: (env.id, configs[k]) for k, (env, _) in rows.items()},
            flag.version + 1,
        )
        check_dependents(s, project.id, key, after_def["variants"])
    before_configs = _configs(rows)
    before = m.flag_snapshot(before_def, before_configs)
    for name, value in changes.items():
        setattr(flag, name, value)
    changed = _apply_configs(flag, rows, before_def, before_configs, after_def, configs)
    after = m.flag_snapshot(after_def, configs)
    _record(tx, project, flag, before, after, "updated", body.comment, changed)
    return Result(flag_body(flag, configs), etag=etag(flag.version))


def _apply_configs(
    flag: Flag,
    rows: ConfigRows,
    before_definition: dict[str, Any],
    before_configs: dict[str, dict[str, Any]],
    after_definition: dict[str, Any],
    configs: dict[str, dict[str, Any]],
) -> list[int]:
    """Set every environment's configuration; those that serve something else get the coming version
    (``flag.version + 1``, above whatever each environment had). Returns their ids."""
    changed = []
    for env_key, (env, cfg) in rows.items():
        if m.serves_differently(
            before_definition, before_configs[env_key], after_definition, configs[env_key]
        ):
            cfg.version = flag.version + 1
            changed.append(env.id)
        m.apply_env_config(cfg, configs[env_key])
    return changed


def _change_env(
    tx: Tx,
    project: ProjectRef,
    flag: LockedFlag,
    env: EnvironmentRef,
    configs: LockedConfigs,
    new_config: dict[str, Any],
    action: str,
    comment: str,
) -> Result:
    before_configs = {env_key: config for env_key, (_, config) in configs.items()}
    definition = m.flag_definition_dict(flag)
    before = m.flag_snapshot(definition, before_configs)
    tx.defer(
        m.ENV_CONFIG_UPDATE,
        m.env_config_params(flag.id, env.id, new_config, flag.version + 1),
        ("flag_environments", (flag.id, env.id)),
    )
    after = m.flag_snapshot(definition, {**before_configs, env.key: new_config})
    _record(tx, project, flag, before, after, action, comment, [env.id], environment=env.key)
    return Result(env_body(flag, env.key, new_config), etag=etag(flag.version))


def update_env_config(
    tx: Tx, project_key: str, key: str, env_key: str, body: schemas.EnvConfigPatch
) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    project, flag, configs, env = locked_flag(s, tx.actor, project_key, key, env_key)
    tx.check_if_match(etag(flag.version))
    changes = body.model_dump(mode="json", exclude_unset=True, exclude={"comment"})
    _explicit_nulls(changes, ("enabled", "rules", "prerequisites"))
    before = configs[env.key][1]
    after = {**before, **changes}
    if after == before:
        return Result(env_body(flag, env.key, before), etag=etag(flag.version))
    if after["prerequisites"] and after["prerequisites"] != before["prerequisites"]:
        lock_prerequisite_graphs(s, [env.id])
    canonical, issues = validate_env_config(
        s, project.id, env.id, m.flag_definition_dict(flag), after, flag.version + 1
    )
    if canonical is None:
        raise invalid(issues)
    if canonical == before:  # the same configuration, written differently
        return Result(env_body(flag, env.key, before), etag=etag(flag.version))
    return _change_env(tx, project, flag, env, configs, canonical, "updated", body.comment)


def toggle(tx: Tx, project_key: str, key: str, env_key: str, body: schemas.ToggleIn) -> Result:
    """The kill switch: only ``enabled`` changes, so nothing needs validating; If-Match is optional."""
    tx.actor.require(Role.WRITER)
    s = tx.session
    project, flag, configs, env = locked_flag(s, tx.actor, project_key, key, env_key)
    tx.check_if_match(etag(flag.version), required=False)
    before = configs[env.key][1]
    if before["enabled"] == body.enabled:
        return Result(env_body(flag, env.key, before), etag=etag(flag.version))
    return _change_env(
        tx, project, flag, env, configs, {**before, "enabled": body.enabled}, "toggled", body.comment
    )


def delete_flag(tx: Tx, project_key: str, key: str) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    project = get_project(s, tx.actor, project_key)
    flag = get_flag(s, project, key, lock=True)
    tx.check_if_match(etag(flag.version))
    # Otherwise a write adding this flag as a prerequisite could pass its check before this commits.
    rows = config_rows(s, flag.id)
    lock_prerequisite_graphs(s, (env.id for env, _ in rows.values()))
    users = dependents(s, project.id, key)
    if users:
        raise ConflictError(
            f"flag '{key}' is a prerequisite of other flags; remove those prerequisites first",
            [Detail(f"/environments/{e}", f"flag '{f}' has it as prerequisite") for f, e, _ in users],
        )
    before = m.flag_snapshot(m.flag_definition_dict(flag), _configs(rows))
    flag.version += 1
    flag.deleted_at = flag.updated_at = _now()
    tx.audit(project, "flag", key, "deleted", before, {}, version=flag.version)
    tx.emit([env.id for env, _ in rows.values()], "flag", key, flag.version, deleted=True)
    return Result(None, 204)


# --- versions ------------------------------------------------------------------------------------


def list_versions(
    session: Session, actor: Actor, project_key: str, key: str, *, limit: int, cursor: int | None
) -> Result:
    flag = get_flag(session, get_project(session, actor, project_key), key)
    return version_page(session, FlagVersion, FlagVersion.flag_id == flag.id, limit=limit, cursor=cursor)


def _version(session: Session, flag: Flag, n: int) -> FlagVersion:
    v = session.scalars(
        sa.select(FlagVersion).where(FlagVersion.flag_id == flag.id, FlagVersion.version == n)
    ).first()
    if v is None:
        raise NotFoundError(f"flag '{flag.key}' has no version {n}")
    return v


def read_version(session: Session, actor: Actor, project_key: str, key: str, n: int) -> Result:
    project = get_project(session, actor, project_key)
    flag = get_flag(session, project, key)
    return version_result(_version(session, flag, n))


def diff_versions(
    session: Session, actor: Actor, project_key: str, key: str, from_: int, to: int | None
) -> Result:
    project = get_project(session, actor, project_key)
    flag = get_flag(session, project, key)
    return diff_result(
        _version(session, flag, from_), _version(session, flag, to if to is not None else flag.version)
    )


def rollback(tx: Tx, project_key: str, key: str, body: schemas.RollbackIn) -> Result:
    """Restore version ``n`` as a new, higher version (environments created since keep their config)."""
    tx.actor.require(Role.WRITER)
    s = tx.session
    project = get_project(s, tx.actor, project_key)
    flag = get_flag(s, project, key, lock=True)
    tx.check_if_match(etag(flag.version), required=False)
    target = _version(s, flag, body.version)
    rows = config_rows(s, flag.id)
    before_def = m.flag_definition_dict(flag)
    before_configs = _configs(rows)
    snap = target.snapshot
    after_def = {**{f: snap[f] for f in m.DEFINITION_FIELDS}, "key": flag.key, "salt": flag.salt}
    saved = snap.get("environments", {})
    requested = {k: (env.id, saved.get(k, before_configs[k])) for k, (env, _) in rows.items()}
    variants_change = after_def["variants"] != before_def["variants"]
    lock_prerequisite_graphs(
        s,
        (
            env_id
            for k, (env_id, config) in requested.items()
            if variants_change
            or (config.get("prerequisites") and config["prerequisites"] != before_configs[k]["prerequisites"])
        ),
    )
    try:
        validate_definition(after_def)
        configs = _validate_all_envs(s, project.id, after_def, requested, flag.version + 1)
        check_dependents(s, project.id, key, after_def["variants"])
    except InvalidRequestError as exc:
        exc.message = f"version {body.version} is no longer valid (it refers to something that changed)"
        raise
    before = m.flag_snapshot(before_def, before_configs)
    after = m.flag_snapshot(after_def, configs)
    if after == before:
        raise ConflictError(f"version {body.version} is the same as the current state; nothing to roll back")
    for name in ("name", "description", "tags", "type", "variants"):
        setattr(flag, name, after_def[name])
    changed = _apply_configs(flag, rows, before_def, before_configs, after_def, configs)
    comment = body.comment or f"rollback to version {body.version}"
    _record(tx, project, flag, before, after, "rolled_back", comment, changed)
    return Result(flag_body(flag, configs), etag=etag(flag.version))
