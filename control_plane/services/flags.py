"""Flags: definitions, per-environment configurations, toggles, versions, diffs and rollbacks.

Every change bumps the flag's single version counter, stores a full snapshot as a new version, writes
an audit entry and outbox rows, all in the caller's transaction (:class:`~.common.Tx`), through the
flag repository (:mod:`flagyard.control_plane.db.flags`): this module decides what a change is (checks,
validation, the new definition and configurations), the repository how it is stored. Each environment
also records the version at which what it serves last changed: only the environments a change reaches
get the new version and an outbox row, so the others' SDKs hear of nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy.orm import Session

from flagyard import rule_engine
from flagyard.control_plane import schemas
from flagyard.control_plane.db import flags as repo
from flagyard.control_plane.db import segments as segments_repo
from flagyard.control_plane.db.deferred import Owner
from flagyard.control_plane.db.reads import ReadPool
from flagyard.control_plane.db.versions import Live, Version
from flagyard.control_plane.exceptions import (
    ApprovalRequiredError,
    ConflictError,
    Detail,
    FlagArchivedError,
    InvalidRequestError,
    NotFoundError,
)
from flagyard.control_plane.security import Role, new_salt
from flagyard.control_plane.services.common import (
    Actor,
    ProjectRef,
    Result,
    Tx,
    check_project,
    diff_result,
    ensure_room,
    environments_of,
    etag,
    get_environment,
    get_project,
    invalid,
    page_limit,
    read_project_id,
    version_page,
    version_result,
)
from flagyard.db import fields
from flagyard.db import mapping as m
from flagyard.rule_engine import DefinitionError, Issue, validate_flag
from flagyard.rule_engine.validation import pointer


def flag_location(project: str, key: str) -> str:
    return f"/api/v1/projects/{project}/flags/{key}"


# --- reading -------------------------------------------------------------------------------------


def locked(tx: Tx, project_key: str, key: str) -> repo.LockedFlag:
    """The live flag ``key`` locked for a change, or 403/404."""
    flag = repo.lock(tx.session, project_key, key)
    if flag is None:  # no such project or flag (404), or a key scoped elsewhere (403)
        project = get_project(tx.session, tx.actor, project_key)
        raise NotFoundError(f"flag '{key}' does not exist in project '{project.key}'")
    tx.actor.require_project(flag.project.id)
    tx.know_policies({e.environment_id: (k, e.approvals_required) for k, e in flag.environments.items()})
    return flag


def not_archived(flag: repo.LockedFlag) -> repo.LockedFlag:
    """Refuse a change of an archived flag (409 ``flag_archived``): it is served nowhere, so a change would
    be a version nobody sees; unarchiving it first makes the change visible where it lands."""
    if flag.definition["archived"]:
        raise FlagArchivedError(f"flag '{flag.key}' is archived; unarchive it first")
    return flag


def _locked_env(tx: Tx, project_key: str, key: str, env_key: str) -> tuple[repo.LockedFlag, repo.EnvConfig]:
    flag = not_archived(locked(tx, project_key, key))
    env = flag.environments.get(env_key)
    if env is None:
        get_environment(tx.session, ProjectRef(*flag.project), env_key)
        raise NotFoundError(f"flag '{key}' has no configuration in environment '{env_key}'")
    return flag, env


def flag_body(flag: Any, configs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The API's view of a flag (a row with its columns) and its configurations."""
    body = m.flag_definition_dict(flag)
    body.update(version=flag.version, created_at=flag.created_at, updated_at=flag.updated_at)
    body["environments"] = configs
    return body


def _locked_body(flag: repo.LockedFlag) -> dict[str, Any]:
    body = dict(flag.definition)
    body.update(version=flag.version, created_at=flag.created_at, updated_at=flag.updated_at)
    body["environments"] = flag.configs()
    return body


def env_body(key: str, version: int, env_key: str, config: dict[str, Any]) -> dict[str, Any]:
    return {"flag": key, "environment": env_key, "version": version, **config}


async def read_flag(reads: ReadPool, actor: Actor, project_key: str, key: str) -> Result:
    """One statement, so it is consistent outside a transaction (the hot read of the admin API)."""
    rows = await repo.fetch(reads, project_key, key)
    if not rows:
        await read_project_id(reads, actor, project_key)
        raise NotFoundError(f"flag '{key}' does not exist in project '{project_key}'")
    flag = rows[0]
    actor.require_project(flag.project_id)
    configs = {row.environment: m.env_config_dict(row) for row in rows if row.environment is not None}
    return Result(flag_body(flag, configs), etag=etag(flag.version))


async def read_env_config(reads: ReadPool, actor: Actor, project_key: str, key: str, env_key: str) -> Result:
    rows = await repo.fetch_env_config(reads, project_key, key, env_key)
    check_project(actor, project_key, rows[0].project_id if rows else None)
    row = rows[0]
    if row.key is None:
        raise NotFoundError(f"flag '{key}' does not exist in project '{project_key}'")
    if row.environment is None:
        raise NotFoundError(f"environment '{env_key}' does not exist in project '{project_key}'")
    body = env_body(row.key, row.version, row.environment, m.env_config_dict(row))
    return Result(body, etag=etag(row.version))


async def list_flags(
    reads: ReadPool,
    actor: Actor,
    project_key: str,
    *,
    limit: int,
    cursor: str | None,
    tag: str | None,
    query: str | None,
    archived: repo.ArchivedFilter = "false",
) -> Result:
    """One statement, like :func:`read_flag`; archived flags only when asked for."""
    limit = page_limit(limit)
    flags = await repo.fetch_page(
        reads, project_key, limit=limit + 1, cursor=cursor, tag=tag, query=query, archived=archived
    )
    if flags:
        actor.require_project(flags[0].project_id)
    else:
        await read_project_id(reads, actor, project_key)
    more = len(flags) > limit
    flags = flags[:limit]
    items = repo.page_items(flags)
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


def _uses_segments(config: dict[str, Any]) -> bool:
    """Whether validating the configuration needs the segment keys (``segment_match`` clauses, or
    targeting, whose ``$ref`` nodes name segments)."""
    return config.get("targeting") is not None or any(
        clause.get("operator") == "segment_match"
        for rule in config["rules"]
        for clause in rule.get("clauses", ())
    )


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
    repo.lock_graphs(session, environment_ids)


def env_graph(session: Session, environment_id: int, exclude_key: str) -> dict[str, rule_engine.Flag]:
    """The other live flags of an environment, enough for prerequisite checks (key, variants, edges)."""
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
        for key, type_, variants, prereqs in repo.graph(session, environment_id, exclude_key)
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
    if _uses_segments(config):
        segments = (
            known_segments if known_segments is not None else set(segments_repo.keys(session, project_id))
        )
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


def dependents(
    session: Session, project_id: int, key: str, *, archived: bool = True
) -> list[tuple[str, str, str]]:
    """(flag, environment, variant) of every live flag that has ``key`` as a prerequisite (archived ones
    too unless ``archived`` is false: they keep theirs, so they can be unarchived as they were)."""
    return [
        (flag_key, env_key, p["variant"])
        for flag_key, env_key, prereqs in repo.prerequisite_users(session, project_id, key, archived=archived)
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


def validate_all_envs(
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
        set(segments_repo.keys(session, project_id))
        if any(_uses_segments(c) for _, c in configs.values())
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


def _explicit_nulls(declared: tuple[fields.Field, ...], changes: dict[str, Any]) -> None:
    bad = [Detail("/" + name, "may not be null") for name in fields.explicit_nulls(declared, changes)]
    if bad:
        raise InvalidRequestError("the request is invalid", bad)


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
    if repo.find(s, project.id, body.key) is not None:  # archived flags keep their key
        raise ConflictError(
            f"flag '{body.key}' already exists in project '{project.key}' (it may be archived)"
        )
    ensure_room(s, project, "flags")
    version = repo.next_version(s, project.id, body.key)
    given = body.model_dump(mode="json", include=set(fields.BODY_DEFINITION_FIELDS))
    definition = fields.complete(fields.FLAG_DEFINITION, {**given, "salt": new_salt()})
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
    configs = validate_all_envs(s, project.id, definition, requested, version)
    owner = Owner(project.id, project.key)
    guarded = [e.key for e in envs if e.approvals_required > 0 and e.key in body.environments]
    if guarded and not tx.approved:
        raise ApprovalRequiredError(
            "a new flag may be configured only in environments without an approval policy: create it "
            "without these and propose their configuration as change requests",
            [Detail("/environments/" + pointer(k)[1:], "has an approval policy") for k in guarded],
        )
    # A new flag is served off (the declared defaults) where it is not configured: nothing an approval
    # policy guards changes there, so the creation itself passes the policy.
    approved, tx.approved = tx.approved, True
    try:
        flag = repo.create(
            tx,
            owner,
            definition,
            {e.key: (e.id, configs[e.key]) for e in envs},
            version,
            "created",
            body.comment,
        )
    finally:
        tx.approved = approved
    return Result(_locked_body(flag), 201, etag(version), flag_location(project.key, flag.key))


def update_flag(tx: Tx, project_key: str, key: str, body: schemas.FlagUpdate) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    flag = locked(tx, project_key, key)
    tx.check_if_match(etag(flag.version))
    not_archived(flag)
    changes = body.model_dump(mode="json", exclude_unset=True, exclude={"comment"})
    _explicit_nulls(fields.FLAG_DEFINITION, changes)
    before = flag.definition
    after = {**before, **changes}
    if after == before:
        return Result(_locked_body(flag), etag=etag(flag.version))
    validate_definition(after)
    configs = flag.configs()
    if after["type"] != before["type"] or after["variants"] != before["variants"]:
        # A write adding this flag as a prerequisite with a variant removed here must not slip between.
        lock_prerequisite_graphs(s, (env.environment_id for env in flag.environments.values()))
        requested = {k: (env.environment_id, env.config) for k, env in flag.environments.items()}
        configs = validate_all_envs(s, flag.project.id, after, requested, flag.version + 1)
        check_dependents(s, flag.project.id, key, after["variants"])
    repo.record_change(tx, flag, after, configs, "updated", body.comment)
    return Result(_locked_body(flag), etag=etag(flag.version))


def _change_env(
    tx: Tx, flag: repo.LockedFlag, env_key: str, config: dict[str, Any], action: str, comment: str
) -> Result:
    configs = {**flag.configs(), env_key: config}
    repo.record_change(tx, flag, flag.definition, configs, action, comment, environment=env_key)
    return Result(env_body(flag.key, flag.version, env_key, config), etag=etag(flag.version))


def patched_config(before: dict[str, Any], body: schemas.EnvConfigPatch) -> dict[str, Any]:
    """The configuration ``body`` makes of ``before`` (not yet validated): each field it sets replaces
    that field, the others keep theirs; ``null`` for a field that may not be null is 422. Shared by the
    PATCH and the impact preview, so a preview previews exactly what the PATCH would store."""
    changes = body.model_dump(mode="json", exclude_unset=True, exclude={"comment"})
    _explicit_nulls(fields.FLAG_ENV_CONFIG, changes)
    return {**before, **changes}


def update_env_config(
    tx: Tx, project_key: str, key: str, env_key: str, body: schemas.EnvConfigPatch
) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    flag, env = _locked_env(tx, project_key, key, env_key)
    tx.check_if_match(etag(flag.version))
    before = env.config
    after = patched_config(before, body)
    if after == before:
        return Result(env_body(key, flag.version, env_key, before), etag=etag(flag.version))
    if after["prerequisites"] and after["prerequisites"] != before["prerequisites"]:
        lock_prerequisite_graphs(s, [env.environment_id])
    canonical, issues = validate_env_config(
        s, flag.project.id, env.environment_id, flag.definition, after, flag.version + 1
    )
    if canonical is None:
        raise invalid(issues)
    if canonical == before:  # the same configuration, written differently
        return Result(env_body(key, flag.version, env_key, before), etag=etag(flag.version))
    return _change_env(tx, flag, env_key, canonical, "updated", body.comment)


def toggle(tx: Tx, project_key: str, key: str, env_key: str, body: schemas.ToggleIn) -> Result:
    """The kill switch: only ``enabled`` changes, so nothing needs validating; If-Match is optional."""
    tx.actor.require(Role.WRITER)
    flag, env = _locked_env(tx, project_key, key, env_key)
    tx.check_if_match(etag(flag.version), required=False)
    before = env.config
    if before["enabled"] == body.enabled:
        return Result(env_body(key, flag.version, env_key, before), etag=etag(flag.version))
    return _change_env(tx, flag, env_key, {**before, "enabled": body.enabled}, "toggled", body.comment)


def delete_flag(tx: Tx, project_key: str, key: str) -> Result:
    tx.actor.require(Role.WRITER)
    s = tx.session
    flag = locked(tx, project_key, key)
    tx.check_if_match(etag(flag.version))
    # Otherwise a write adding this flag as a prerequisite could pass its check before this commits.
    lock_prerequisite_graphs(s, (env.environment_id for env in flag.environments.values()))
    users = dependents(s, flag.project.id, key)
    if users:
        raise ConflictError(
            f"flag '{key}' is a prerequisite of other flags; remove those prerequisites first",
            [Detail(f"/environments/{e}", f"flag '{f}' has it as prerequisite") for f, e, _ in users],
        )
    repo.delete(tx, flag)
    return Result(None, 204)


# --- versions ------------------------------------------------------------------------------------


def _live(session: Session, actor: Actor, project_key: str, key: str) -> Live:
    """The live flag ``key`` (unlocked: its versions never change), or 403/404."""
    project = get_project(session, actor, project_key)
    flag = repo.find(session, project.id, key)
    if flag is None:
        raise NotFoundError(f"flag '{key}' does not exist in project '{project.key}'")
    return flag


def list_versions(
    session: Session, actor: Actor, project_key: str, key: str, *, limit: int, cursor: int | None
) -> Result:
    flag = _live(session, actor, project_key, key)
    limit = page_limit(limit)
    return version_page(repo.versions(session, flag.id, limit=limit + 1, cursor=cursor), limit)


def _version(session: Session, flag_id: int, key: str, n: int) -> Version:
    v = repo.version(session, flag_id, n)
    if v is None:
        raise NotFoundError(f"flag '{key}' has no version {n}")
    return v


def read_version(session: Session, actor: Actor, project_key: str, key: str, n: int) -> Result:
    flag = _live(session, actor, project_key, key)
    return version_result(_version(session, flag.id, key, n))


def diff_versions(
    session: Session, actor: Actor, project_key: str, key: str, from_: int, to: int | None
) -> Result:
    flag = _live(session, actor, project_key, key)
    return diff_result(
        _version(session, flag.id, key, from_),
        _version(session, flag.id, key, to if to is not None else flag.version),
    )


def rollback(tx: Tx, project_key: str, key: str, body: schemas.RollbackIn) -> Result:
    """Restore version ``n`` as a new, higher version (environments created since keep their config).

    A snapshot stored before a field existed reads the field's declared default (:mod:`..db.fields`)."""
    tx.actor.require(Role.WRITER)
    s = tx.session
    flag = locked(tx, project_key, key)
    tx.check_if_match(etag(flag.version), required=False)
    not_archived(flag)
    snap = _version(s, flag.id, key, body.version).snapshot
    kept = {name: flag.definition[name] for name in ("key", "salt", *fields.OPERATION_DEFINITION_FIELDS)}
    after_def = fields.complete(fields.FLAG_DEFINITION, {**snap, **kept})
    saved = snap.get("environments", {})
    before_configs = flag.configs()
    requested = {
        k: (
            env.environment_id,
            fields.complete(fields.FLAG_ENV_CONFIG, saved[k]) if k in saved else env.config,
        )
        for k, env in flag.environments.items()
    }
    variants_change = after_def["variants"] != flag.definition["variants"]
    lock_prerequisite_graphs(
        s,
        (
            env_id
            for k, (env_id, config) in requested.items()
            if variants_change
            or (config["prerequisites"] and config["prerequisites"] != before_configs[k]["prerequisites"])
        ),
    )
    try:
        validate_definition(after_def)
        configs = validate_all_envs(s, flag.project.id, after_def, requested, flag.version + 1)
        check_dependents(s, flag.project.id, key, after_def["variants"])
    except InvalidRequestError as exc:
        exc.message = f"version {body.version} is no longer valid (it refers to something that changed)"
        raise
    if after_def == flag.definition and configs == before_configs:
        raise ConflictError(f"version {body.version} is the same as the current state; nothing to roll back")
    comment = body.comment or f"rollback to version {body.version}"
    repo.record_change(tx, flag, after_def, configs, "rolled_back", comment)
    return Result(_locked_body(flag), etag=etag(flag.version))
