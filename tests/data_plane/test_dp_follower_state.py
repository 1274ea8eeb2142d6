"""The data plane's state without Redis: the follower's status table (every pair allowed or refused, with
what the health service and the degraded gauge are told), and a CachedEnvironment applying events in
revision order, telling gaps from regressions, and knowing the positions SyncFlags can resume from."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
import pytest
from dp_helpers import settings_for
from prometheus_client import CollectorRegistry

from flagyard.contracts import redis as contract
from flagyard.data_plane.convert import BulkEncoder
from flagyard.data_plane.follower import TRANSITIONS, Follower, FollowerStatus
from flagyard.data_plane.l1 import CachedEnvironment, build
from flagyard.data_plane.metrics import Metrics
from flagyard.data_plane.store import RedisStore
from flagyard.rule_engine import FlagType

F = FollowerStatus
# One row per source status: the table reads like the one in ARCHITECTURE.md.
ALLOWED = {
    (F.LOADING, F.SERVING), (F.LOADING, F.UNREACHABLE), (F.UNREACHABLE, F.SERVING),
    (F.SERVING, F.DEGRADED), (F.DEGRADED, F.SERVING),
}  # fmt: skip
"""Written out by hand, not derived from the table under test."""
PATHS: dict[FollowerStatus, list[FollowerStatus]] = {
    F.LOADING: [],
    F.UNREACHABLE: [F.UNREACHABLE],
    F.SERVING: [F.SERVING],
    F.DEGRADED: [F.SERVING, F.DEGRADED],
}


def follower_in(status: FollowerStatus) -> tuple[Follower, list[FollowerStatus]]:
    """A follower (never started: no Redis call is made) brought to ``status`` through allowed moves."""
    settings = settings_for("fydp-state")
    store = RedisStore(settings.redis_url.get_secret_value(), settings.redis_prefix, timeout=1, block_ms=100)
    told: list[FollowerStatus] = []
    follower = Follower(store, settings, Metrics(CollectorRegistry()), BulkEncoder(), on_status=told.append)
    for step in PATHS[status]:
        assert follower._move(step)
    told.clear()
    return follower, told


def degraded_gauge(follower: Follower) -> float | None:
    return follower.metrics.registry.get_sample_value("flagyard_data_plane_degraded")


def test_table__is_the_documented_one() -> None:
    assert set(TRANSITIONS) == set(FollowerStatus)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED


@pytest.mark.parametrize(("source", "target"), sorted(ALLOWED))
def test_allowed_transition__status_told_once_and_flags_follow(
    source: FollowerStatus, target: FollowerStatus
) -> None:
    follower, told = follower_in(source)

    assert follower._move(target) is True

    assert (follower.status, told) == (target, [target])
    assert follower.ready is (target in (F.SERVING, F.DEGRADED))
    assert follower.degraded is (target in (F.UNREACHABLE, F.DEGRADED))
    assert degraded_gauge(follower) == (1.0 if follower.degraded else 0.0)


@pytest.mark.parametrize(
    ("source", "target"), sorted(set(itertools.product(FollowerStatus, repeat=2)) - ALLOWED)
)
def test_refused_pair__status_unchanged_nothing_told(source: FollowerStatus, target: FollowerStatus) -> None:
    follower, told = follower_in(source)

    assert follower._move(target) is False

    assert (follower.status, told) == (source, [])


# --- CachedEnvironment ---------------------------------------------------------------------------------


def stored(key: str, version: int, variant: str = "off") -> bytes:
    flag = {"key": key, "type": "boolean", "variants": {"on": True, "off": False}, "default_variant": variant}
    return orjson.dumps({"version": version, "definition": flag})


def event(revision: int, key: str, version: int, op: Any = "put") -> contract.Event:
    return contract.Event(f"{revision}-0", revision, op, "flag", key, version)


def loaded(revision: int = 2, **flags: bytes) -> CachedEnvironment:
    data = contract.EnvironmentData(
        env_id="e",
        revision=revision,
        last_event_id=f"{revision}-0",
        exists=True,
        flags=flags,
        segments={},
        meta={"environment": "production"},
    )
    env = CachedEnvironment("e", history=2)
    env.install(data, asyncio.run(build(data, lazy=False, on_invalid=lambda *_: None)))
    return env


def put(env: CachedEnvironment, e: contract.Event, raw: bytes) -> list[tuple[str, str, str]]:
    """Apply ``e`` with ``raw`` as the value Redis holds now; the (kind, key, problem) reported invalid."""
    invalid: list[tuple[str, str, str]] = []
    env.apply(e, raw, e.version, lambda *problem: invalid.append(problem))
    return invalid


def value(env: CachedEnvironment, key: str) -> Any:
    return env.flagset.evaluate(key, None, {}, FlagType.BOOLEAN).value


def test_install__holds_the_load_and_its_position() -> None:
    env = loaded(2, a=stored("a", 1, "on"))
    assert (env.revision, env.event_id, env.generation) == (2, "2-0", 1)
    assert value(env, "a") is True
    assert env.position_known(2, "2-0")
    assert not env.position_known(2, "other")


@pytest.mark.parametrize(
    ("revisions", "usable", "cause"),
    [
        ([3, 4, 5], 3, None),
        ([3, 5], 1, "gap"),
        ([4], 0, "gap"),
        ([3, 3], 1, "regression"),
        ([2], 0, "regression"),
        ([], 0, None),
    ],
)
def test_contiguous__applies_only_the_next_revisions_and_names_the_break(
    revisions: list[int], usable: int, cause: str | None
) -> None:
    env = loaded(2)
    events = [event(r, "a", r) for r in revisions]
    assert env.contiguous(events) == (events[:usable], cause)


def test_apply__put_newer_ignores_older_deletes_and_keeps_a_replayable_history() -> None:
    env = loaded(2, a=stored("a", 5))

    put(env, event(3, "a", 6), stored("a", 6, "on"))
    assert value(env, "a") is True
    put(env, event(4, "a", 4), stored("a", 4, "off"))  # older than held: the revision moves, the value not
    assert (value(env, "a"), env.revision) == (True, 4)
    env.apply(event(5, "a", 7, "delete"), None, 7, lambda *_: None)
    assert "a" not in env.flagset.flags

    assert env.position_known(5, "5-0")
    assert env.position_known(3, "3-0")  # history of 2: revisions 4 and 5 replay from 3
    assert not env.position_known(2, "2-0")
    assert len(list(env.changes_after(3))) == 2


def test_apply__value_that_does_not_compile__reported_skipped_and_the_revision_still_moves() -> None:
    env = loaded(2, a=stored("a", 1, "on"))

    invalid = put(env, event(3, "a", 2), orjson.dumps({"version": 2, "definition": {"key": "a"}}))

    assert [(kind, key) for kind, key, _ in invalid] == [("flag", "a")]
    assert (value(env, "a"), env.revision) == (True, 3)
    assert env.position_known(3, "3-0")


def test_apply__value_stored_under_another_key__reported_skipped() -> None:
    env = loaded(2, a=stored("a", 1, "on"))

    invalid = put(env, event(3, "a", 2), stored("b", 2))

    assert [(kind, key) for kind, key, _ in invalid] == [("flag", "a")]
    assert "stored under another key ('b')" in invalid[0][2]
    assert (value(env, "a"), "b" in env.flagset.flags) == (True, False)


def test_environments__share_one_copy_of_each_flag_key() -> None:
    """Each environment's load parses its own copy of a key; L1 keeps one (interned) for all of them."""
    key = "".join(["shared-", "key"])  # built at run time: not a constant the compiler interned
    first = loaded(2, **{key: stored(key, 1)})
    second = loaded(2, **{"".join(["shared-", "key"]): stored("".join(["shared-", "key"]), 1)})
    held = [next(iter(env.flagset.flags)) for env in (first, second)]
    compiled = [env.flagset.flags[key] for env in (first, second)]
    entries = [env.definitions["flag", key] for env in (first, second)]
    assert held[0] is held[1]
    assert all(c.key is held[0] for c in compiled)
    assert all(e.key is held[0] for e in entries)
