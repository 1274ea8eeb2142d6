"""Explain and impact preview: one flag evaluated here, for an admin, as a data plane would evaluate it.

Both evaluate in the environment as it is served (:func:`environment_flagset`: every served flag with the
environment's configuration and every live segment, from the loader behind export and full sync), so
prerequisites and segments decide exactly as in a data plane, with the rule engine's own code. Both are
reads: the session is never committed, nothing is locked, no version, audit entry or outbox row is
written.

The preview applies the proposed change the way the PATCH does (:func:`.flags.patched_config`, then
:func:`.flags.validate_env_config`, with the same 422s, their pointers under ``/config``), then counts,
context by context, whether the flag would serve another variant. Its contexts are the caller's, or the
environment's sample of recently evaluated contexts that data planes keep in Redis
(:mod:`flagyard.contracts.sampling`).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import redis
from sqlalchemy.orm import Session

from flagyard import rule_engine
from flagyard.contracts.sampling import read_samples
from flagyard.control_plane import schemas
from flagyard.control_plane.db import flags as flags_repo
from flagyard.control_plane.exceptions import (
    Detail,
    FlagArchivedError,
    InvalidRequestError,
    NotFoundError,
    ServiceUnavailableError,
)
from flagyard.control_plane.security import Role
from flagyard.control_plane.services import flags as flag_ops
from flagyard.control_plane.services.common import Actor, Result, environment_scope, invalid
from flagyard.db import mapping as m
from flagyard.db.models import Environment, Flag, FlagEnvironment, Project


def environment_flagset(session: Session, environment_id: int) -> rule_engine.FlagSet:
    """The environment compiled as SDKs evaluate it: the document export and full sync serve (archived
    flags left out, so missing), compiled by the rule engine."""
    return rule_engine.FlagSet.from_document(m.load_environment_document(session, environment_id))


def _scope(
    session: Session, actor: Actor, project_key: str, key: str, env_key: str
) -> tuple[Project, Environment, Flag, FlagEnvironment]:
    """The project, environment and flag (with its configuration there), or 403/404 as the flag's GET."""
    actor.require(Role.READER)
    project, env = environment_scope(session, actor, project_key, env_key)
    found = flags_repo.in_environment(session, project.id, env.id, key)
    if found is None:
        raise NotFoundError(f"flag '{key}' does not exist in project '{project.key}'")
    return project, env, found[0], found[1]


def explain(
    session: Session,
    actor: Actor,
    project_key: str,
    key: str,
    env_key: str,
    body: schemas.ExplainIn,
) -> Result:
    """The flag evaluated for the context in the environment as served, with the decision's trace
    (:func:`flagyard.rule_engine.explain`). An archived flag explains as what SDKs get: FLAG_NOT_FOUND."""
    _, env, _, _ = _scope(session, actor, project_key, key, env_key)
    flagset = environment_flagset(session, env.id)
    return Result(rule_engine.explain(flagset, key, body.context, body.default).to_dict())


def _proposed_flag(
    session: Session, project_id: int, row: Flag, config: FlagEnvironment, patch: schemas.EnvConfigPatch
) -> rule_engine.Flag:
    """The flag as the PATCH would store it in this environment, or the PATCH's 422 (under ``/config``)."""
    definition = m.flag_definition_dict(row)
    version = row.version + 1
    try:
        after = flag_ops.patched_config(m.env_config_dict(config), patch)
        canonical, issues = flag_ops.validate_env_config(
            session, project_id, config.environment_id, definition, after, version
        )
        if canonical is None:
            raise invalid(issues)
    except InvalidRequestError as exc:
        exc.details = [Detail("/config" + d.path, d.message) for d in exc.details]
        raise
    return rule_engine.Flag.model_validate(m.rule_engine_flag_data(definition, canonical, version))


def _sample(client: redis.Redis, prefix: str, environment_id: int) -> list[dict[str, Any]]:
    try:
        return read_samples(client, prefix, str(environment_id))
    except redis.RedisError as exc:
        raise ServiceUnavailableError(f"the environment's context sample is unavailable: {exc}") from exc


def _variant_order(variant: str | None) -> tuple[bool, str]:
    """``None`` (no variant) before every variant, variants by name."""
    return variant is not None, variant or ""


def compare(
    key: str,
    before: rule_engine.FlagSet,
    after: rule_engine.FlagSet,
    contexts: list[dict[str, Any]],
) -> dict[str, Any]:
    """Evaluate ``key`` for each context in both flag sets and count the changes of variant: the counts of
    :class:`~flagyard.control_plane.schemas.PreviewOut` (but ``source`` and ``note``)."""
    transitions: Counter[tuple[str | None, str | None]] = Counter()
    errors_before = errors_after = 0
    for context in contexts:
        was = before.evaluate(key, None, context)
        will = after.evaluate(key, None, context)
        errors_before += was.is_error
        errors_after += will.is_error
        if was.variant != will.variant:
            transitions[was.variant, will.variant] += 1
    ordered = sorted(
        transitions.items(), key=lambda t: (-t[1], _variant_order(t[0][0]), _variant_order(t[0][1]))
    )
    changed = sum(transitions.values())
    return {
        "contexts": len(contexts),
        "changed": changed,
        "transitions": [{"from": a, "to": b, "count": n} for (a, b), n in ordered],
        "unchanged": len(contexts) - changed,
        "errors_before": errors_before,
        "errors_after": errors_after,
    }


def preview(
    session: Session,
    actor: Actor,
    client: redis.Redis,
    prefix: str,
    project_key: str,
    key: str,
    env_key: str,
    body: schemas.PreviewIn,
) -> Result:
    """How many of the contexts the proposed configuration would serve another variant, and which.

    The current and the proposed flag are both built from the one row read here and each put into the
    environment's flag set, so the two differ in the proposed change only (even if the flag changes while
    this reads). An archived flag is refused as its PATCH is (409)."""
    project, env, row, config = _scope(session, actor, project_key, key, env_key)
    if row.archived:
        raise FlagArchivedError(f"flag '{key}' is archived; unarchive it first")
    proposed = _proposed_flag(session, project.id, row, config, body.config)
    if body.contexts is not None:
        source, contexts = "supplied", body.contexts
    else:
        source, contexts = "sample", _sample(client, prefix, env.id)
    before = environment_flagset(session, env.id)
    before.put_flag(rule_engine.compile_flag(m.to_rule_engine_flag(row, config)))
    after = rule_engine.FlagSet(before.flags.values(), before.segments.values(), before.metadata)
    after.put_flag(rule_engine.compile_flag(proposed))
    counts = compare(key, before, after, contexts)
    note = None
    if not contexts:
        note = (
            "no contexts were supplied"
            if source == "supplied"
            else f"environment '{env.key}' holds no sample of evaluated contexts (sampling is off, or "
            "nothing was evaluated recently): supply contexts to preview over"
        )
    return Result({"source": source, **counts, "note": note})
