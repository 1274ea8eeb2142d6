"""The flag repository: every statement that reads or writes flags, their configurations and versions.

Services decide what a change is; this module decides how it is stored. The admin API's reads of a
flag, its configurations and pages of flags are :class:`~.reads.ReadQuery` statements on the event
loop (asyncpg); its versions are read on the session (:func:`find`, then :func:`versions` or
:func:`version`, over :mod:`.versions`). A change starts with one locking read (:func:`lock`) and is
recorded with :func:`create`, :func:`record_change` or :func:`delete`, whose statements are deferred to
the transaction's single pre-commit statement (:mod:`.deferred`); a new environment's configurations
are written by :func:`add_environment`. Column lists and defaults come from :mod:`flagyard.db.fields`,
never written out here. Driver errors are mapped in one place for each driver (``map_db_error`` at the
session's commit, ``map_driver_error`` in :class:`~.reads.ReadPool`).
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, aggregate_order_by
from sqlalchemy.orm import Session

from flagyard.control_plane.db.deferred import Owner, Recorder, Template, columns
from flagyard.control_plane.db.reads import ReadPool, ReadQuery
from flagyard.control_plane.db.versions import Live, Version, VersionSummary, VersionTable
from flagyard.db import mapping as m
from flagyard.db.fields import (
    DEFINITION_FIELDS,
    EDITABLE_DEFINITION_FIELDS,
    ENV_CONFIG_FIELDS,
    LISTED_FIELDS,
    default_env_config,
)
from flagyard.db.models import Environment, Flag, FlagEnvironment, FlagVersion, Project


@dataclass(slots=True)
class EnvConfig:
    """A flag's configuration in one environment, and the flag version at which what the environment
    serves last changed."""

    environment_id: int
    version: int
    config: dict[str, Any]
    approvals_required: int = 0
    """The environment's approval policy, read with the lock so the policy check costs no statement."""


@dataclass(slots=True)
class LockedFlag:
    """A live flag as stored, locked ``FOR UPDATE`` until the transaction ends; :func:`record_change`
    keeps it current."""

    project: Owner
    id: int
    version: int
    created_at: datetime
    updated_at: datetime
    definition: dict[str, Any]
    environments: dict[str, EnvConfig]
    """By environment key, in key order."""

    @property
    def key(self) -> str:
        key: str = self.definition["key"]
        return key

    def configs(self) -> dict[str, dict[str, Any]]:
        return {env_key: env.config for env_key, env in self.environments.items()}


# --- locked reads --------------------------------------------------------------------------------

_CONFIG_COLUMNS = [getattr(FlagEnvironment, name) for name in ENV_CONFIG_FIELDS]
_DEFINITION_COLUMNS = [getattr(Flag, name) for name in DEFINITION_FIELDS]


def _locked(where: sa.ColumnElement[bool]) -> sa.Select[Any]:
    """Live flags with every environment's configuration (one row per flag and environment; a flag of a
    project without environments has one row with empty configuration columns), flags locked."""
    return (
        sa.select(
            Project.id.label("project_id"),
            Project.key.label("project_key"),
            Flag.id,
            Flag.version,
            Flag.created_at,
            Flag.updated_at,
            *_DEFINITION_COLUMNS,
            Environment.id.label("environment_id"),
            Environment.key.label("environment"),
            Environment.approvals_required,
            FlagEnvironment.version.label("environment_version"),
            *_CONFIG_COLUMNS,
        )
        .join(Flag, Flag.project_id == Project.id)
        .outerjoin(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
        .outerjoin(Environment, Environment.id == FlagEnvironment.environment_id)
        .where(where, Flag.deleted_at.is_(None))
        .order_by(Flag.key, Environment.key)
        .with_for_update(of=Flag)
    )


_LOCK_ONE = _locked(sa.and_(Project.key == sa.bindparam("project"), Flag.key == sa.bindparam("flag")))
_LOCK_ALL = _locked(Project.id == sa.bindparam("project_id"))
"""Built once, so SQLAlchemy computes their cache keys once."""


def _flags(rows: Iterable[Any]) -> dict[str, LockedFlag]:
    flags: dict[str, LockedFlag] = {}
    for row in rows:
        flag = flags.get(row.key)
        if flag is None:
            flag = flags[row.key] = LockedFlag(
                Owner(row.project_id, row.project_key),
                row.id,
                row.version,
                row.created_at,
                row.updated_at,
                m.flag_definition_dict(row),
                {},
            )
        if row.environment is not None:
            flag.environments[row.environment] = EnvConfig(
                row.environment_id, row.environment_version, m.env_config_dict(row), row.approvals_required
            )
    return flags


def lock(session: Session, project_key: str, key: str) -> LockedFlag | None:
    """The live flag ``key`` of project ``project_key`` with its configurations, locked; ``None`` if there
    is none (the caller tells 403 from 404). One statement: the start of every change to one flag."""
    rows = session.connection().execute(_LOCK_ONE, {"project": project_key, "flag": key}).all()
    return next(iter(_flags(rows).values()), None)


def lock_all(session: Session, project_id: int) -> dict[str, LockedFlag]:
    """Every live flag of a project with its configurations, locked, by key (an import)."""
    return _flags(session.connection().execute(_LOCK_ALL, {"project_id": project_id}).all())


_FIND = sa.select(Flag.id, Flag.version).where(
    Flag.project_id == sa.bindparam("project_id"), Flag.key == sa.bindparam("key"), Flag.deleted_at.is_(None)
)


def find(session: Session, project_id: int, key: str) -> Live | None:
    """The live flag ``key`` of a project, unlocked; ``None`` if there is none."""
    row = session.connection().execute(_FIND, {"project_id": project_id, "key": key}).first()
    return None if row is None else Live(*row)


_IN_ENVIRONMENT = (
    sa.select(Flag, FlagEnvironment)
    .join(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
    .where(
        Flag.project_id == sa.bindparam("project_id"),
        Flag.key == sa.bindparam("key"),
        Flag.deleted_at.is_(None),
        FlagEnvironment.environment_id == sa.bindparam("environment_id"),
    )
)


def in_environment(
    session: Session, project_id: int, environment_id: int, key: str
) -> tuple[Flag, FlagEnvironment] | None:
    """The live flag ``key`` (archived or not) with its configuration in one environment, unlocked, for a
    read that evaluates it (explain, impact preview); ``None`` if there is no such flag."""
    row = session.execute(
        _IN_ENVIRONMENT, {"project_id": project_id, "key": key, "environment_id": environment_id}
    ).first()
    return None if row is None else (row[0], row[1])


def count(session: Session, project_id: int) -> int:
    """How many live flags the project has."""
    live = sa.select(sa.func.count()).where(Flag.project_id == project_id, Flag.deleted_at.is_(None))
    return session.connection().execute(live).scalar_one()


def keys(session: Session, project_id: int) -> list[str]:
    """The keys of the project's served flags (live, not archived), in order."""
    live = sa.select(Flag.key).where(Flag.project_id == project_id, m.flag_is_served())
    return list(session.connection().execute(live.order_by(Flag.key)).scalars())


def next_version(session: Session, project_id: int, key: str) -> int:
    """The first version of a new flag ``key``: above every deleted predecessor's (the data plane's
    version guard only accepts rising versions per key)."""
    previous = session.scalar(
        sa.select(sa.func.max(Flag.version)).where(Flag.project_id == project_id, Flag.key == key)
    )
    return (previous or 0) + 1


_VERSIONS = VersionTable(FlagVersion, FlagVersion.flag_id)


def versions(session: Session, flag_id: int, *, limit: int, cursor: int | None) -> list[VersionSummary]:
    """Up to ``limit`` of a flag's versions below version ``cursor`` (from the newest if ``None``),
    newest first."""
    return _VERSIONS.page(session, flag_id, limit=limit, cursor=cursor)


def version(session: Session, flag_id: int, n: int) -> Version | None:
    """Version ``n`` of a flag with its snapshot."""
    return _VERSIONS.one(session, flag_id, n)


# --- the prerequisite graph ----------------------------------------------------------------------


def graph_lock_key(environment_id: int) -> int:
    """The advisory-lock key of an environment's prerequisite graph: 64 bits of a hash, so it shares
    PostgreSQL's single-key space with the other advisory locks (idempotency keys) without colliding."""
    digest = hashlib.sha256(f"flagyard:prerequisite-graph:{environment_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def lock_graphs(session: Session, environment_ids: Iterable[int]) -> None:
    """Take the graph locks of these environments (transaction-scoped), by ascending id."""
    for environment_id in sorted(set(environment_ids)):
        session.execute(sa.select(sa.func.pg_advisory_xact_lock(graph_lock_key(environment_id))))


def graph(session: Session, environment_id: int, exclude_key: str) -> list[tuple[str, str, Any, list[Any]]]:
    """(key, type, variants, prerequisites) of the other served flags of an environment (an archived flag
    is missing to the planes, so it can be nobody's prerequisite)."""
    rows = session.execute(
        sa.select(Flag.key, Flag.type, Flag.variants, FlagEnvironment.prerequisites)
        .join(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
        .where(
            FlagEnvironment.environment_id == environment_id,
            m.flag_is_served(),
            Flag.key != exclude_key,
        )
    )
    return [(key, type_, variants, prereqs) for key, type_, variants, prereqs in rows]


def prerequisite_users(
    session: Session, project_id: int, key: str, *, archived: bool = True
) -> list[tuple[str, str, list[Any]]]:
    """(flag, environment, prerequisites) of every other live flag that may have ``key`` as prerequisite;
    archived ones too unless ``archived`` is false (they keep their prerequisites to be restorable)."""
    rows = session.execute(
        sa.select(Flag.key, Environment.key, FlagEnvironment.prerequisites)
        .join(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
        .join(Environment, Environment.id == FlagEnvironment.environment_id)
        .where(
            Flag.project_id == project_id,
            Flag.deleted_at.is_(None) if archived else m.flag_is_served(),
            Flag.key != key,
            sa.cast(FlagEnvironment.prerequisites, JSONB).contains([{"flag": key}]),
        )
        .order_by(Flag.key, Environment.key)
    )
    return [(flag_key, env_key, prereqs) for flag_key, env_key, prereqs in rows]


# --- writes --------------------------------------------------------------------------------------

_INSERT = (
    sa.insert(Flag)
    .values({name: sa.bindparam(name) for name in ("project_id", "version", *DEFINITION_FIELDS)})
    .returning(Flag.id, Flag.created_at, Flag.updated_at)
)
"""A new flag's row, at once: its id is needed by the rows that follow."""

_CONFIG_INSERT = Template(
    "flag_env_insert", columns(FlagEnvironment, ("flag_id", "environment_id", "version", *ENV_CONFIG_FIELDS))
)
_CONFIG_UPDATE = Template(
    "flag_env_update",
    lambda p: (
        sa.update(FlagEnvironment)
        .where(FlagEnvironment.flag_id == p("flag_id"), FlagEnvironment.environment_id == p("environment_id"))
        .values({name: p(name) for name in ("version", *ENV_CONFIG_FIELDS)})
    ),
)
_BUMP = Template(
    "flag_bump",
    lambda p: (
        sa.update(Flag).where(Flag.id == p("id")).values(version=p("version"), updated_at=p("updated_at"))
    ),
)
_UPDATE = Template(
    "flag_update",
    lambda p: (
        sa.update(Flag)
        .where(Flag.id == p("id"))
        .values({name: p(name) for name in ("version", "updated_at", *EDITABLE_DEFINITION_FIELDS)})
    ),
)
_DELETE = Template(
    "flag_delete",
    lambda p: (
        sa.update(Flag)
        .where(Flag.id == p("id"))
        .values(version=p("version"), updated_at=p("updated_at"), deleted_at=p("updated_at"))
    ),
)
_VERSION = Template(
    "flag_version",
    columns(FlagVersion, ("flag_id", "version", "snapshot", "action", "comment", "author_key_id")),
)


def _config_params(flag_id: int, env: EnvConfig) -> dict[str, Any]:
    return {"flag_id": flag_id, "environment_id": env.environment_id, "version": env.version, **env.config}


def _log(
    tx: Recorder,
    flag: LockedFlag,
    before: dict[str, Any],
    after: dict[str, Any],
    action: str,
    comment: str,
    environment: str | None,
    environment_ids: list[int],
) -> None:
    """The version row, the audit entry and the outbox rows of a change: every change writes these."""
    tx.defer(
        _VERSION,
        {
            "flag_id": flag.id,
            "version": flag.version,
            "snapshot": after,
            "action": action,
            "comment": comment,
            "author_key_id": tx.actor.key_id,
        },
    )
    tx.audit(
        flag.project,
        "flag",
        flag.key,
        action,
        before,
        after,
        environment=environment,
        version=flag.version,
        comment=comment,
    )
    tx.emit(environment_ids, "flag", flag.key, flag.version)


def create(
    tx: Recorder,
    project: Owner,
    definition: Mapping[str, Any],
    configs: Mapping[str, tuple[int, dict[str, Any]]],
    version: int,
    action: str,
    comment: str,
    *,
    environment: str | None = None,
) -> LockedFlag:
    """Store a new flag at ``version`` with a configuration per environment (env key → (id, config))."""
    definition = {name: definition[name] for name in DEFINITION_FIELDS}
    row = (
        tx.session.connection()
        .execute(_INSERT, {"project_id": project.id, "version": version, **definition})
        .one()
    )
    flag = LockedFlag(
        project,
        row.id,
        version,
        row.created_at,
        row.updated_at,
        definition,
        {k: EnvConfig(env_id, version, dict(config)) for k, (env_id, config) in sorted(configs.items())},
    )
    for env in flag.environments.values():
        tx.defer(_CONFIG_INSERT, _config_params(flag.id, env))
    after = m.flag_snapshot(definition, flag.configs())
    ids = [env.environment_id for env in flag.environments.values()]
    _log(tx, flag, {}, after, action, comment, environment, ids)
    return flag


def record_change(
    tx: Recorder,
    flag: LockedFlag,
    definition: Mapping[str, Any],
    configs: Mapping[str, Mapping[str, Any]],
    action: str,
    comment: str,
    *,
    environment: str | None = None,
) -> int:
    """Store a new version of a locked flag: its ``definition`` and the configuration of each of its
    environments (``configs`` by environment key, every one of them), its version row, audit entry and
    outbox rows; returns the new version and updates ``flag`` to it.

    Only the environments that serve something else after the change move to the new version and get an
    outbox row, so the others' SDKs hear of nothing; every statement waits for the pre-commit one."""
    version, now = flag.version + 1, datetime.now(UTC)
    same_definition = definition is flag.definition or definition == flag.definition
    definition = (
        flag.definition if same_definition else {name: definition[name] for name in DEFINITION_FIELDS}
    )
    before = m.flag_snapshot(flag.definition, flag.configs())
    changed: list[int] = []
    for env_key, env in flag.environments.items():
        given = configs[env_key]
        if same_definition and (given is env.config or given == env.config):
            continue
        config = {name: given[name] for name in ENV_CONFIG_FIELDS}
        # Every configuration field is served, so under the same definition a new configuration is
        # served differently; only a definition change needs the comparison.
        if same_definition or m.serves_differently(flag.definition, env.config, definition, config):
            env.version = version
            changed.append(env.environment_id)
        elif config == env.config:
            continue
        env.config = config
        tx.defer(
            _CONFIG_UPDATE, _config_params(flag.id, env), ("flag_environments", (flag.id, env.environment_id))
        )
    if same_definition:
        tx.defer(_BUMP, {"id": flag.id, "version": version, "updated_at": now}, ("flags", (flag.id,)))
    else:
        params = {"id": flag.id, "version": version, "updated_at": now}
        params.update({name: definition[name] for name in EDITABLE_DEFINITION_FIELDS})
        tx.defer(_UPDATE, params, ("flags", (flag.id,)))
    flag.version, flag.updated_at, flag.definition = version, now, definition
    _log(tx, flag, before, m.flag_snapshot(definition, flag.configs()), action, comment, environment, changed)
    return version


def delete(tx: Recorder, flag: LockedFlag) -> int:
    """Leave a tombstone one version above the flag's last, so a re-created key continues above it; the
    outbox rows carry ``deleted``. Returns that version."""
    version, now = flag.version + 1, datetime.now(UTC)
    tx.defer(_DELETE, {"id": flag.id, "version": version, "updated_at": now}, ("flags", (flag.id,)))
    before = m.flag_snapshot(flag.definition, flag.configs())
    tx.audit(flag.project, "flag", flag.key, "deleted", before, {}, version=version)
    ids = [env.environment_id for env in flag.environments.values()]
    tx.emit(ids, "flag", flag.key, version, deleted=True)
    flag.version = version
    return version


def _add_environment() -> sa.Select[Any]:
    """One statement: a configuration row for every live flag of a project in a new environment, at the
    flag's version, with the declared defaults bound as typed parameters (so JSON fields go as JSON);
    it returns each flag's key and version for the outbox."""
    defaults = [
        sa.bindparam(name, type_=FlagEnvironment.__table__.c[name].type) for name in ENV_CONFIG_FIELDS
    ]
    added = (
        sa.insert(FlagEnvironment)
        .from_select(
            ["flag_id", "environment_id", "version", *ENV_CONFIG_FIELDS],
            sa.select(
                Flag.id, sa.bindparam("environment_id", type_=sa.BigInteger), Flag.version, *defaults
            ).where(Flag.project_id == sa.bindparam("project_id"), Flag.deleted_at.is_(None)),
        )
        .returning(FlagEnvironment.flag_id, FlagEnvironment.version)
        .cte("added")
    )
    return sa.select(Flag.key, added.c.version).join(added, added.c.flag_id == Flag.id).order_by(Flag.key)


_ADD_ENVIRONMENT = _add_environment()


def add_environment(tx: Recorder, project_id: int, environment_id: int) -> None:
    """Configure every live flag of the project in its new environment with the declared defaults
    (:func:`~flagyard.db.fields.default_env_config`: off, serving the caller's default), at the flag's
    current version, and queue an outbox row for each so the data plane loads them. No flag version
    changes: the other environments serve what they served."""
    params = {"project_id": project_id, "environment_id": environment_id, **default_env_config()}
    for key, version in tx.session.connection().execute(_ADD_ENVIRONMENT, params).all():
        tx.emit([environment_id], "flag", key, version)


# --- reads on the event loop ---------------------------------------------------------------------

_WITH_CONFIGS = ReadQuery(
    sa.select(
        Project.id.label("project_id"),
        *_DEFINITION_COLUMNS,
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


async def fetch(reads: ReadPool, project_key: str, key: str) -> list[Any]:
    """A live flag with every environment's configuration: one row per environment (none if there is no
    such project or flag), one statement, so consistent outside a transaction."""
    return await reads.fetch(_WITH_CONFIGS, {"project": project_key, "flag": key})


_ENV_CONFIG = ReadQuery(
    sa.select(
        Project.id.label("project_id"),
        Flag.key,
        Flag.version,
        Environment.key.label("environment"),
        *_CONFIG_COLUMNS,
    )
    .outerjoin(
        Flag,
        sa.and_(Flag.project_id == Project.id, Flag.key == sa.bindparam("flag"), Flag.deleted_at.is_(None)),
    )
    .outerjoin(
        Environment, sa.and_(Environment.project_id == Project.id, Environment.key == sa.bindparam("env"))
    )
    .outerjoin(
        FlagEnvironment,
        sa.and_(FlagEnvironment.flag_id == Flag.id, FlagEnvironment.environment_id == Environment.id),
    )
    .where(Project.key == sa.bindparam("project"))
)


async def fetch_env_config(reads: ReadPool, project_key: str, key: str, env_key: str) -> list[Any]:
    """A project's id beside one flag's configuration in one environment (empty columns for what is
    missing; no row if there is no such project)."""
    return await reads.fetch(_ENV_CONFIG, {"project": project_key, "flag": key, "env": env_key})


PAGE_FIELDS = (*LISTED_FIELDS, "version", "updated_at", "enabled")
"""What a page of flags shows of each flag."""


def page_items(rows: list[Any]) -> list[dict[str, Any]]:
    """The rows of :func:`fetch_page` as dictionaries of :data:`PAGE_FIELDS` (built in C: a page is the
    admin API's second hottest read)."""
    return [dict(zip(PAGE_FIELDS, row[1:], strict=True)) for row in rows]


ArchivedFilter = Literal["false", "true", "all"]
"""Which flags a page lists: those not archived (the default), only archived ones, or all."""


@functools.cache
def _page(cursor: bool, tag: bool, query: bool, archived: ArchivedFilter = "false") -> ReadQuery:
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
            *(getattr(Flag, name) for name in LISTED_FIELDS),
            Flag.version,
            Flag.updated_at,
            sa.func.coalesce(enabled, sa.literal_column("'{}'::json")).label("enabled"),
        )  # the order of PAGE_FIELDS, after the project's id
        .join(Flag, Flag.project_id == Project.id)
        .where(Project.key == sa.bindparam("project"), Flag.deleted_at.is_(None))
    )
    if archived != "all":
        stmt = stmt.where(Flag.archived.is_(archived == "true"))
    if cursor:
        stmt = stmt.where(Flag.key > sa.bindparam("cursor"))
    if tag:
        stmt = stmt.where(sa.cast(Flag.tags, JSONB).contains(sa.bindparam("tags", type_=JSONB)))
    if query:
        like = sa.bindparam("like", type_=sa.String)
        stmt = stmt.where(sa.or_(Flag.key.ilike(like), Flag.name.ilike(like)))
    return ReadQuery(stmt.order_by(Flag.key).limit(sa.bindparam("limit", type_=sa.Integer)))


async def fetch_page(
    reads: ReadPool,
    project_key: str,
    *,
    limit: int,
    cursor: str | None,
    tag: str | None,
    query: str | None,
    archived: ArchivedFilter = "false",
) -> list[Any]:
    """Up to ``limit`` live flags after ``cursor`` (by key): the project's id and :data:`PAGE_FIELDS`
    (``enabled`` by environment), filtered by archived state, by tag and by a substring of key or name."""
    params: dict[str, Any] = {"project": project_key, "limit": limit}
    if cursor:
        params["cursor"] = cursor
    if tag:
        params["tags"] = [tag]
    if query:
        params["like"] = "%" + query.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return await reads.fetch(_page(bool(cursor), bool(tag), bool(query), archived), params)


# --- lifecycle: the stale report -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StaleCandidate:
    """A temporary flag as an environment serves it, with when what the environment serves last changed
    (the creation time of the flag version the environment holds)."""

    environment_id: int
    key: str
    name: str
    owner: str
    removal_date: str | None
    changed_at: datetime


def _stale_candidates() -> Any:
    changed = (
        sa.select(FlagVersion.created_at)
        .where(FlagVersion.flag_id == Flag.id, FlagVersion.version == FlagEnvironment.version)
        .scalar_subquery()
    )
    return (
        sa.select(
            FlagEnvironment.environment_id,
            Flag.key,
            Flag.name,
            Flag.owner,
            Flag.removal_date,
            sa.func.coalesce(changed, Flag.updated_at),
        )
        .join(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
        .where(m.flag_is_served(), Flag.kind == "temporary")
    )


_STALE_IN_ENVIRONMENT = _stale_candidates().where(
    FlagEnvironment.environment_id == sa.bindparam("environment_id")
)
_STALE_EVERYWHERE = _stale_candidates()


def stale_candidates(session: Session, environment_id: int | None = None) -> list[StaleCandidate]:
    """Every served temporary flag of one environment (of every environment if ``None``): the flags the
    stale report considers (permanent and archived flags never are). One statement over at most
    ``MAX_FLAGS_PER_ENVIRONMENT`` rows per environment."""
    if environment_id is None:
        rows = session.connection().execute(_STALE_EVERYWHERE).all()
    else:
        rows = session.connection().execute(_STALE_IN_ENVIRONMENT, {"environment_id": environment_id}).all()
    return [StaleCandidate(*row) for row in rows]
