"""A proposed change: what a scheduled change and a change request both hold, check and apply.

A proposed change is any change a writer can make to what an environment serves (kind ``toggle``,
``env_config``, ``segment``, ``rollback``, ``segment_rollback``), a ``target`` flag or segment and the direct
change's body. It is checked when proposed by running it as a dry run inside a savepoint that is rolled
back (a bad one fails at once with the same 422 pointers, prefixed by ``/body``), and applied later through
the very service function a direct change calls (:mod:`.flags`, :mod:`.segments`), so there is one write
path.

Base: at its proposal the change records the flag's or segment's version and a digest of the value of
every field it writes (JSON pointers into the flag or segment, e.g. ``/environments/prod/enabled``; a
rollback writes the whole flag or segment). It applies only while each of those fields still holds that
value (a three-way check: a newer change of other fields merges, a newer change of the same field is a
conflict); it never overwrites a newer change.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError
from sqlalchemy.orm import Session

from flagyard.control_plane import schemas
from flagyard.control_plane.db import flags as flags_repo
from flagyard.control_plane.db import segments as segments_repo
from flagyard.control_plane.exceptions import (
    ControlPlaneError,
    Detail,
    InvalidRequestError,
    NotFoundError,
)
from flagyard.control_plane.services import flags as flag_ops
from flagyard.control_plane.services import segments as segment_ops
from flagyard.control_plane.services.common import Result, Tx, etag
from flagyard.rule_engine.validation import pointer

BODIES: dict[str, type[BaseModel]] = {
    "toggle": schemas.ToggleIn,
    "env_config": schemas.EnvConfigPatch,
    "segment": schemas.SegmentUpdate,
    "rollback": schemas.RollbackIn,
    "segment_rollback": schemas.RollbackIn,
}
SEGMENT_KINDS = ("segment", "segment_rollback")


def body(kind: str, payload: dict[str, Any], comment: str = "") -> BaseModel:
    """The direct change's body; a problem is 422 with pointers under ``/body``."""
    try:
        return BODIES[kind].model_validate({**payload, "comment": comment})
    except ValidationError as exc:
        details = []
        for error in exc.errors():
            inner = (error.get("ctx") or {}).get("pointer", "")
            message = "unknown field" if error["type"] == "extra_forbidden" else str(error["msg"])
            details.append(Detail("/body" + pointer(*(str(p) for p in error["loc"])) + inner, message))
        raise InvalidRequestError("the request is invalid", details) from exc


def stored(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """What is kept of a body: the fields it sets, without its comment (the schedule's is used)."""
    given = body(kind, {k: v for k, v in payload.items() if k != "comment"})
    kept = given.model_dump(mode="json", exclude_unset=True, exclude={"comment"})
    if not kept:
        raise InvalidRequestError("the request is invalid", [Detail("/body", "names no field to change")])
    return kept


def flag_state(flag: flags_repo.LockedFlag) -> dict[str, Any]:
    state = {pointer(name): value for name, value in flag.definition.items() if name != "salt"}
    for env_key, env in flag.environments.items():
        state.update({pointer("environments", env_key, name): v for name, v in env.config.items()})
    return state


def segment_state(seg: segments_repo.LockedSegment) -> dict[str, Any]:
    return {pointer(name): value for name, value in seg.definition.items()}


def written_by_flag_rollback(session: Session, flag: flags_repo.LockedFlag, n: int) -> list[str]:
    """Every field a rollback to version ``n`` writes (as :func:`.flags.rollback` builds it): the whole
    definition, and the configuration of each environment the snapshot holds (the others keep theirs).
    A newer change of any of them would be overwritten, so each must still hold its base value."""
    version = flags_repo.version(session, flag.id, n)
    if version is None:
        return []  # the dry run (or the change at its time) answers 404
    saved = version.snapshot.get("environments", {})
    return [path for path in flag_state(flag) if not path.startswith("/environments/")] + [
        pointer("environments", env_key, name)
        for env_key, env in flag.environments.items()
        if env_key in saved
        for name in env.config
    ]


def digest(value: Any) -> str:
    """What ``base`` keeps of a value: enough to tell it changed, a fixed size whatever the value."""
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).hexdigest()


@dataclass(frozen=True, slots=True)
class Target:
    """The flag or segment a change applies to, locked, with its state as JSON pointers."""

    version: int
    state: dict[str, Any]
    touched: list[str]


def lock_target(
    tx: Tx, project_key: str, env_key: str, kind: str, key: str, payload: dict[str, Any]
) -> Target:
    """Lock the flag or segment (403/404 as the direct change answers) and work out what the change
    touches."""
    s = tx.session
    if kind in SEGMENT_KINDS:
        seg = segment_ops.locked(tx, project_key, key)
        state = segment_state(seg)
        # A segment rollback writes the whole segment.
        touched = [pointer(name) for name in payload] if kind == "segment" else list(state)
        return Target(seg.version, state, touched)
    flag = flag_ops.locked(tx, project_key, key)
    if kind in ("toggle", "env_config") and env_key not in flag.environments:
        raise NotFoundError(f"flag '{key}' has no configuration in environment '{env_key}'")
    if kind == "toggle":
        touched = [pointer("environments", env_key, "enabled")]
    elif kind == "env_config":
        touched = [pointer("environments", env_key, name) for name in payload]
    else:
        touched = written_by_flag_rollback(s, flag, int(payload["version"]))
    return Target(flag.version, flag_state(flag), touched)


def run(tx: Tx, project_key: str, env_key: str, kind: str, key: str, body: BaseModel) -> Result:
    """The direct change, through its one service function."""
    if isinstance(body, schemas.ToggleIn):
        return flag_ops.toggle(tx, project_key, key, env_key, body)
    if isinstance(body, schemas.EnvConfigPatch):
        return flag_ops.update_env_config(tx, project_key, key, env_key, body)
    if isinstance(body, schemas.SegmentUpdate):
        return segment_ops.update_segment(tx, project_key, key, body)
    assert isinstance(body, schemas.RollbackIn)
    if kind == "segment_rollback":
        return segment_ops.rollback(tx, project_key, key, body)
    return flag_ops.rollback(tx, project_key, key, body)


def under_body(exc: ControlPlaneError) -> ControlPlaneError:
    """A validation problem of the change points into the schedule's ``body`` (the resource's place
    otherwise, e.g. ``/rules/0``, would be ambiguous in the schedule's request)."""
    if isinstance(exc, InvalidRequestError):
        exc.details = [Detail("/body" + d.path, d.message) for d in exc.details]
    return exc


def base_of(target: Target) -> dict[str, str]:
    """What a proposal records of its target: a digest of each field it writes."""
    return {path: digest(target.state.get(path)) for path in target.touched}


def moved(target: Target, base: dict[str, Any], base_version: int, since: str) -> list[Detail]:
    """The fields the change writes that changed since its base (``since``: "scheduled", "reviewed")."""
    return [
        Detail(path, f"changed since the change was {since} at version {base_version}")
        for path, value in base.items()
        if digest(target.state.get(path)) != value
    ]


def dry_run(
    tx: Tx, project_key: str, env_key: str, kind: str, key: str, payload: dict[str, Any], comment: str = ""
) -> Target:
    """Run the change now and roll it back (a savepoint, and nothing deferred is kept): a change that could
    not be made now fails with the direct change's error (422 pointers under ``/body``). The target as it
    stands, for the base. The dry run carries ``tx``'s actor and its ``approved`` flag."""
    s = tx.session
    dry = Tx(s, tx.actor, tx.request_id, approved=tx.approved)
    savepoint = s.begin_nested()
    try:
        target = lock_target(dry, project_key, env_key, kind, key, payload)
        dry.if_match = etag(target.version)
        run(dry, project_key, env_key, kind, key, body(kind, payload, comment))
    except ControlPlaneError as exc:
        raise under_body(exc) from None
    finally:
        savepoint.rollback()
        dry.discard()
    return target
