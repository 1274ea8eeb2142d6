"""A flag's lifecycle: archiving and unarchiving, and the stale report.

Archiving is a new flag version through the one write path (:func:`~..db.flags.record_change`): the
definition's ``archived`` turns true, every environment moves to the new version and gets an outbox row,
and the syncer, which reads only served flags (:func:`flagyard.db.mapping.flag_is_served`), writes it to
Redis as a delete at that version. So to data planes and SDKs an archived flag is exactly a missing one
(FLAG_NOT_FOUND); unarchiving is the next version, which the version guard lets through as a put of
the configuration the flag had. The flag keeps its row, key, configurations and history meanwhile.

The stale report lists, per environment, the temporary flags nobody evaluated for N days (or ever)
that also did not change there for M days, and the temporary flags past their removal date. Permanent
flags are never listed (as LaunchDarkly leaves them out of its stale suggestions: a kill switch or an
entitlement may rightly go unevaluated for months).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

import redis
from sqlalchemy.orm import Session

from flagyard.contracts.redis import FlagUsage, read_evaluations
from flagyard.control_plane import schemas
from flagyard.control_plane.db import flags as repo
from flagyard.control_plane.exceptions import ConflictError, Detail, ServiceUnavailableError
from flagyard.control_plane.security import Role
from flagyard.control_plane.services.common import (
    Actor,
    Result,
    Tx,
    etag,
    get_environment,
    get_project,
    page_limit,
)
from flagyard.control_plane.services.flags import (
    _locked_body,
    dependents,
    lock_prerequisite_graphs,
    locked,
    validate_all_envs,
)

DEFAULT_STALE_DAYS = 30
"""The report's default for both thresholds, and what the ``flagyard_stale_flags`` gauge counts with."""
MAX_STALE_DAYS = 3650
"""Largest threshold a request may ask for (ten years)."""

REASONS = ("not_evaluated", "not_changed", "past_removal_date")


# --- archive and unarchive -----------------------------------------------------------------------


def archive(tx: Tx, project_key: str, key: str, body: schemas.ArchiveIn) -> Result:
    """Archive a flag: a new version that every environment stops serving. Refused (409) while another
    live, unarchived flag has it as a prerequisite, as a deletion is; archiving an archived flag changes
    nothing."""
    tx.actor.require(Role.WRITER)
    flag = locked(tx, project_key, key)
    tx.check_if_match(etag(flag.version), required=False)
    if flag.definition["archived"]:
        return Result(_locked_body(flag), etag=etag(flag.version))
    # A write adding this flag as a prerequisite must not pass its check before this commits.
    lock_prerequisite_graphs(tx.session, (env.environment_id for env in flag.environments.values()))
    users = dependents(tx.session, flag.project.id, key, archived=False)
    if users:
        raise ConflictError(
            f"flag '{key}' is a prerequisite of other flags; remove those prerequisites first",
            [Detail(f"/environments/{e}", f"flag '{f}' has it as prerequisite") for f, e, _ in users],
        )
    definition = {**flag.definition, "archived": True}
    repo.record_change(tx, flag, definition, flag.configs(), "archived", body.comment or "archived")
    return Result(_locked_body(flag), etag=etag(flag.version))


def unarchive(tx: Tx, project_key: str, key: str, body: schemas.ArchiveIn) -> Result:
    """Serve an archived flag again, as it was, at a new version. Its configurations are validated again
    (422 with pointers if a prerequisite or segment it uses was archived or deleted meanwhile)."""
    tx.actor.require(Role.WRITER)
    s = tx.session
    flag = locked(tx, project_key, key)
    tx.check_if_match(etag(flag.version), required=False)
    if not flag.definition["archived"]:
        return Result(_locked_body(flag), etag=etag(flag.version))
    definition = {**flag.definition, "archived": False}
    lock_prerequisite_graphs(
        s, (env.environment_id for env in flag.environments.values() if env.config["prerequisites"])
    )
    requested = {k: (env.environment_id, env.config) for k, env in flag.environments.items()}
    configs = validate_all_envs(s, flag.project.id, definition, requested, flag.version + 1)
    repo.record_change(tx, flag, definition, configs, "unarchived", body.comment or "unarchived")
    return Result(_locked_body(flag), etag=etag(flag.version))


# --- the stale report ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Thresholds:
    evaluated_days: int
    changed_days: int
    now: float

    def reasons(self, flag: repo.StaleCandidate, usage: FlagUsage | None) -> list[str]:
        """Why ``flag`` is stale (empty if it is not): unused (not evaluated for N days, or never, and not
        changed for M days), or past its removal date whatever its use."""
        reasons: list[str] = []
        last = usage.last_evaluated_at if usage is not None else None
        if (last is None or last < self.now - self.evaluated_days * 86400) and (
            flag.changed_at.timestamp() < self.now - self.changed_days * 86400
        ):
            reasons += ["not_evaluated", "not_changed"]
        today = datetime.fromtimestamp(self.now, UTC).date()
        if flag.removal_date is not None and date.fromisoformat(flag.removal_date) < today:
            reasons.append("past_removal_date")
        return reasons


def _usage(client: redis.Redis, prefix: str, environment_id: int) -> dict[str, FlagUsage]:
    try:
        return read_evaluations(client, prefix, str(environment_id))
    except redis.RedisError as exc:
        raise ServiceUnavailableError(f"evaluation counts are unavailable: {exc}") from exc


def stale_report(
    session: Session,
    actor: Actor,
    client: redis.Redis,
    prefix: str,
    project_key: str,
    env_key: str,
    *,
    evaluated_days: int,
    changed_days: int,
    limit: int,
    cursor: str | None,
) -> Result:
    """A page of the environment's stale flags, by key. Costs one statement over the environment's
    temporary flags and one read of its evaluation hashes (both bounded: ``MAX_FLAGS_PER_ENVIRONMENT``,
    ``MAX_USAGE_FIELDS``), whatever the page."""
    actor.require(Role.READER)
    project = get_project(session, actor, project_key)
    env = get_environment(session, project, env_key)
    candidates = repo.stale_candidates(session, env.id)
    usage = _usage(client, prefix, env.id)
    thresholds = Thresholds(evaluated_days, changed_days, time.time())
    limit = page_limit(limit)
    items: list[dict[str, Any]] = []
    more = False
    for flag in sorted(candidates, key=lambda f: f.key):
        if cursor is not None and flag.key <= cursor:
            continue
        entry = usage.get(flag.key)
        reasons = thresholds.reasons(flag, entry)
        if not reasons:
            continue
        if len(items) == limit:
            more = True
            break
        last = entry.last_evaluated_at if entry is not None else None
        items.append(
            {
                "key": flag.key,
                "name": flag.name,
                "owner": flag.owner,
                "kind": "temporary",
                "removal_date": flag.removal_date,
                "last_evaluated_at": None if last is None else datetime.fromtimestamp(last, UTC),
                "changed_at": flag.changed_at,
                "reasons": reasons,
            }
        )
    return Result(
        {
            "environment": env.key,
            "evaluated_days": evaluated_days,
            "changed_days": changed_days,
            "items": items,
            "next_cursor": items[-1]["key"] if more else None,
        }
    )


def stale_counts(session: Session, client: redis.Redis, prefix: str) -> Mapping[str, int]:
    """(flag, environment) pairs of every project that the report lists with its default thresholds, by
    reason: what the ``flagyard_stale_flags`` gauge shows. One statement over every served temporary
    flag configuration and one evaluation read per environment that has any; raises on a store error."""
    thresholds = Thresholds(DEFAULT_STALE_DAYS, DEFAULT_STALE_DAYS, time.time())
    by_environment: dict[int, list[repo.StaleCandidate]] = {}
    for flag in repo.stale_candidates(session):
        by_environment.setdefault(flag.environment_id, []).append(flag)
    counts = dict.fromkeys(REASONS, 0)
    for environment_id, flags in by_environment.items():
        usage = read_evaluations(client, prefix, str(environment_id))
        for flag in flags:
            for reason in thresholds.reasons(flag, usage.get(flag.key)):
                counts[reason] += 1
    return counts
