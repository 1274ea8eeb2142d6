"""Has a change reached the data planes? PostgreSQL's committed state against what Redis and the data
planes hold of one environment.

The environment revision is Redis's, not PostgreSQL's: ``P:env:{id}:rev`` counts the changes the syncer
applied there (one ``INCR`` per flag or segment written or deleted, a restore after Redis lost its data
starting again from 0), and it is the number data planes serve and SDKs see. PostgreSQL keeps no such
counter: ``EnvironmentOut.revision`` versions the environment's own name and description, flag and segment
versions count per key, and outbox rows are pruned and coalesce (a burst of changes to one flag becomes
one write). So the control plane does not guess the number; it counts what is still to come:

``revision`` = the stored revision + one per definition Redis does not hold as committed (a live flag of
the environment or segment of the project whose committed version is above the version Redis holds for
it, or a definition Redis holds that is no longer live). That is the revision Redis reaches when the
syncer has written them, because the syncer writes the *current* state of each key once (what the
reconcile repairs, key by key). When nothing is pending it equals the stored revision; a definition the
syncer refuses (invalid) stays pending, which is the truth: it never reaches the data planes.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from flagyard.contracts.redis import PropagationState, read_propagation
from flagyard.control_plane.exceptions import ServiceUnavailableError
from flagyard.control_plane.security import Role
from flagyard.control_plane.services.common import Actor, Result, get_environment, get_project
from flagyard.db.models import Flag, FlagEnvironment, Segment

MAX_DATA_PLANES = 100
"""Data planes listed at most (by id); ``in_sync`` still counts every live report."""


def committed_versions(session: Session, project_id: int, environment_id: int) -> dict[str, int]:
    """``kind:key`` → the version the syncer writes for every live definition of the environment (a flag's
    version in that environment, a segment's own version), as in ``P:env:{id}:versions``."""
    flags = session.execute(
        sa.select(Flag.key, FlagEnvironment.version)
        .join(FlagEnvironment, FlagEnvironment.flag_id == Flag.id)
        .where(FlagEnvironment.environment_id == environment_id, Flag.deleted_at.is_(None))
    )
    segments = session.execute(
        sa.select(Segment.key, Segment.version).where(
            Segment.project_id == project_id, Segment.deleted_at.is_(None)
        )
    )
    wanted = {f"flag:{key}": int(version) for key, version in flags}
    wanted.update({f"segment:{key}": int(version) for key, version in segments})
    return wanted


def pending_changes(wanted: dict[str, int], held: PropagationState) -> int:
    """Definitions the syncer has still to write (each will be one revision)."""
    behind = sum(1 for field, version in wanted.items() if held.versions.get(field, -1) < version)
    return behind + len(held.present - wanted.keys())


def read_propagation_state(
    session: Session, actor: Actor, client: redis.Redis, prefix: str, project_key: str, env_key: str
) -> Result:
    actor.require(Role.READER)
    project = get_project(session, actor, project_key)
    env = get_environment(session, project, env_key)
    wanted = committed_versions(session, project.id, env.id)
    now = time.time()
    try:
        held = read_propagation(client, prefix, str(env.id), now=now)
    except redis.RedisError as exc:
        raise ServiceUnavailableError(f"the propagation state is unavailable: {exc}") from exc
    stored = held.revision
    revision = (stored or 0) + pending_changes(wanted, held)
    in_sync = (stored or 0) == revision and all(r.revision >= revision for r in held.served)
    return Result(
        {
            "environment": env.key,
            "revision": revision,
            "stored_revision": stored,
            "data_planes": [
                {
                    "id": r.instance_id,
                    "revision": r.revision,
                    "reported_at": datetime.fromtimestamp(r.reported_at_ms / 1000, UTC),
                }
                for r in held.served[:MAX_DATA_PLANES]
            ],
            "in_sync": in_sync,
        }
    )
