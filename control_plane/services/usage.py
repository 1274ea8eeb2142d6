"""Which flags are evaluated, and which are stale: the counts SDKs report through the data plane."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import redis
from sqlalchemy.orm import Session

from flagyard.contracts.redis import read_evaluations
from flagyard.control_plane.db import flags as flags_repo
from flagyard.control_plane.exceptions import ServiceUnavailableError
from flagyard.control_plane.security import Role
from flagyard.control_plane.services.common import Actor, Result, get_environment, get_project


def read_usage(
    session: Session,
    actor: Actor,
    client: redis.Redis,
    prefix: str,
    project_key: str,
    env_key: str,
    stale_days: float,
) -> Result:
    """Every live flag of the project with its reported evaluations in one environment, most used first."""
    actor.require(Role.READER)
    project = get_project(session, actor, project_key)
    env = get_environment(session, project, env_key)
    keys = flags_repo.keys(session, project.id)
    try:
        usage = read_evaluations(client, prefix, str(env.id))
    except redis.RedisError as exc:
        raise ServiceUnavailableError(f"evaluation counts are unavailable: {exc}") from exc
    horizon = time.time() - stale_days * 86400
    flags = []
    for key in keys:
        entry = usage.get(key)
        last = entry.last_evaluated_at if entry else None
        flags.append(
            {
                "key": key,
                "evaluations": entry.evaluations if entry else 0,
                "variants": entry.variants if entry else {},
                "reasons": entry.reasons if entry else {},
                "last_evaluated_at": None if last is None else datetime.fromtimestamp(last, UTC),
                "stale": last is None or last < horizon,
            }
        )
    flags.sort(key=lambda f: (-int(f["evaluations"]), str(f["key"])))  # type: ignore[call-overload]
    return Result({"environment": env.key, "stale_after_days": stale_days, "flags": flags})
