"""The writer side of the Redis contract, against a real Redis (db 14, a fresh prefix per test)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagyard.contracts import redis as rs

REDIS_DB = 14
ENV = "env-a"


def flag(key: str, value: bool = True) -> dict[str, Any]:
    return {"key": key, "type": "boolean", "variants": {"v": value}, "default_variant": "v"}


@pytest.fixture
def rds() -> Iterator[redis.Redis]:
    client = redis.Redis(db=REDIS_DB)
    yield client
    client.close()


def _clean(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def prefix(rds: redis.Redis) -> Iterator[str]:
    p = f"fytest-{uuid.uuid4().hex[:12]}"
    yield p
    _clean(rds, p)


def test_apply_change__new_version__writes_value_version_revision_event_and_env(
    rds: redis.Redis, prefix: str
) -> None:
    result = rs.apply_change(
        rds, prefix, ENV, "flag", "f", 3, flag("f"), {"project": "p", "environment": "e"}
    )

    keys = rs.EnvKeys(prefix, ENV)
    assert result.applied
    assert result.revision == 1
    assert result.version == 3
    stored = rs.parse_stored(rds.hget(keys.flags, "f"))  # type: ignore[arg-type]
    assert stored.version == 3
    assert stored.definition == {**flag("f"), "version": 3}
    assert rds.hget(keys.versions, "flag:f") == b"3"
    assert rds.get(keys.rev) == b"1"
    [(event_id, fields)] = rds.xrange(keys.events)
    event = rs.parse_event(event_id, fields)
    assert (event.revision, event.op, event.kind, event.key, event.version) == (1, "put", "flag", "f", 3)
    assert event.event_id == result.event_id
    assert rds.smembers(rs.envs_key(prefix)) == {ENV.encode()}
    assert rds.hgetall(keys.meta) == {b"project": b"p", b"environment": b"e"}


def test_apply_change__same_or_older_version__nothing_written(rds: redis.Redis, prefix: str) -> None:
    rs.apply_change(rds, prefix, ENV, "flag", "f", 5, flag("f", True))

    same = rs.apply_change(rds, prefix, ENV, "flag", "f", 5, flag("f", False))
    older = rs.apply_change(rds, prefix, ENV, "flag", "f", 4, None)

    keys = rs.EnvKeys(prefix, ENV)
    assert not same.applied
    assert not older.applied
    assert same.revision == older.revision == 1
    assert older.version == 5
    assert rs.parse_stored(rds.hget(keys.flags, "f")).definition["variants"] == {"v": True}  # type: ignore[arg-type]
    assert rds.xlen(keys.events) == 1


def test_apply_change__delete_then_older_put__tombstone_rejects_the_put(
    rds: redis.Redis, prefix: str
) -> None:
    rs.apply_change(rds, prefix, ENV, "segment", "s", 1, {"key": "s"})
    deleted = rs.apply_change(rds, prefix, ENV, "segment", "s", 2, None)
    resurrected = rs.apply_change(rds, prefix, ENV, "segment", "s", 1, {"key": "s"})

    keys = rs.EnvKeys(prefix, ENV)
    assert deleted.applied
    assert not resurrected.applied
    assert rds.hget(keys.segments, "s") is None
    assert rds.hget(keys.versions, "segment:s") == b"2"


@pytest.mark.parametrize(
    ("kind", "key", "version", "definition"),
    [
        ("widget", "f", 1, None),
        ("flag", "", 1, None),
        ("flag", "f", -1, None),
        ("flag", "f", 2**53, None),
        ("flag", "f", True, None),
        ("flag", "f", 1, {"key": "other"}),
    ],
)
def test_apply_change__bad_arguments__contract_error(
    rds: redis.Redis, prefix: str, kind: Any, key: str, version: Any, definition: Any
) -> None:
    with pytest.raises(rs.RedisContractError):
        rs.apply_change(rds, prefix, ENV, kind, key, version, definition)


def test_load_environment__after_changes__revision_agrees_with_last_event(
    rds: redis.Redis, prefix: str
) -> None:
    for version in (1, 2, 3):
        rs.apply_change(rds, prefix, ENV, "flag", f"f{version}", version, flag(f"f{version}"))
    last = rs.apply_change(rds, prefix, ENV, "flag", "f1", 9, None)

    data = rs.load_environment_sync(rds, prefix, ENV)

    assert data.exists
    assert data.revision == 4
    assert data.last_event_id == last.event_id
    assert sorted(data.flags) == ["f2", "f3"]
    assert rs.parse_stored(data.flags["f2"]).version == 2


def test_load_environment__unknown_env__empty_and_not_existing(rds: redis.Redis, prefix: str) -> None:
    data = rs.load_environment_sync(rds, prefix, "nope")

    assert not data.exists
    assert data.revision == 0
    assert data.last_event_id == ""
    assert data.flags == {}


def test_sdk_keys__put_then_delete__record_round_trips_then_disappears(rds: redis.Redis, prefix: str) -> None:
    key_hash = rs.hash_sdk_key("secret")
    record = rs.SdkKeyRecord("env-a", "shop", "prod", time.time() + 60)

    rs.put_sdk_key(rds, prefix, key_hash, record)
    stored = rds.hget(rs.sdkkeys_key(prefix), key_hash)
    assert stored is not None
    assert rs.parse_sdk_key(stored) == record
    assert rs.delete_sdk_key(rds, prefix, key_hash)
    assert rds.hget(rs.sdkkeys_key(prefix), key_hash) is None


def test_sdk_keys__raw_key_instead_of_hash__contract_error(rds: redis.Redis, prefix: str) -> None:
    with pytest.raises(rs.RedisContractError):
        rs.put_sdk_key(rds, prefix, "secret", rs.SdkKeyRecord("e", "p", "e", None))


@pytest.mark.parametrize("raw", [b"nope", b"[]", b'{"version": "1", "definition": {}}', b'{"version": 1}'])
def test_parse_stored__not_the_contract__contract_error(raw: bytes) -> None:
    with pytest.raises(rs.RedisContractError):
        rs.parse_stored(raw)


# One change: (version, delete?). Versions collide on purpose (duplicates with different content).
changes = st.lists(st.tuples(st.integers(0, 12), st.booleans()), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(changes=changes, data=st.data())
def test_apply_change__any_order_with_duplicates__highest_version_wins_and_never_regresses(
    rds: redis.Redis, changes: list[tuple[int, bool]], data: st.DataObject
) -> None:
    prefix = f"fytest-prop-{uuid.uuid4().hex[:12]}"
    try:
        # Duplicates, then a random order (as RQ retries and concurrent workers would deliver them).
        deliveries = data.draw(st.permutations(changes + changes[: len(changes) // 2]))
        held = -1
        held_delete = False
        applied = 0
        keys = rs.EnvKeys(prefix, ENV)
        for version, delete in deliveries:
            definition = None if delete else {**flag("f"), "metadata": {"v": version, "d": delete}}
            result = rs.apply_change(rds, prefix, ENV, "flag", "f", version, definition)
            assert result.applied == (version > held)
            if result.applied:
                held, held_delete = version, delete
                applied += 1
            stored_version = int(rds.hget(keys.versions, "flag:f"))  # type: ignore[arg-type]
            assert stored_version == held  # never regresses
        raw = rds.hget(keys.flags, "f")
        first_with_max = next(d for v, d in deliveries if v == max(v for v, _ in deliveries))
        assert held == max(v for v, _ in changes)
        assert held_delete == first_with_max
        assert (raw is None) == held_delete
        if raw is not None:
            assert rs.parse_stored(raw).definition["metadata"]["v"] == held
        assert int(rds.get(keys.rev)) == applied == rds.xlen(keys.events)  # type: ignore[arg-type]
        revs = [int(f[b"rev"]) for _, f in rds.xrange(keys.events)]
        assert revs == list(range(1, applied + 1))
    finally:
        _clean(rds, prefix)


def test_parse_event__stream_entry__round_trips(rds: redis.Redis, prefix: str) -> None:
    rs.apply_change(rds, prefix, ENV, "segment", "s", 7, None)

    [(event_id, fields)] = rds.xrange(rs.EnvKeys(prefix, ENV).events)

    event = rs.parse_event(event_id, fields)
    assert (event.op, event.kind, event.key, event.version, event.revision) == (
        "delete",
        "segment",
        "s",
        7,
        1,
    )
    assert orjson.loads(orjson.dumps(event.event_id)) == event_id.decode()


def test_apply_changes__batch_with_stale_entries__each_guarded_in_order(
    rds: redis.Redis, prefix: str
) -> None:
    results = rs.apply_changes(
        rds,
        prefix,
        ENV,
        [
            rs.Change("flag", "a", 2, flag("a")),
            rs.Change("flag", "a", 1, flag("a", False)),
            rs.Change("flag", "b", 1, flag("b")),
            rs.Change("flag", "a", 3, None),
        ],
    )

    assert [r.applied for r in results] == [True, False, True, True]
    assert [r.revision for r in results] == [1, 1, 2, 3]
    assert sorted(rs.load_environment_sync(rds, prefix, ENV).flags) == ["b"]


def test_apply_change__if_listed_and_environment_not_listed__nothing_written(
    rds: redis.Redis, prefix: str
) -> None:
    """One change must not create an environment Redis does not list (it lost its data): readers would
    load the environment holding that change alone."""
    keys = rs.EnvKeys(prefix, ENV)
    refused = rs.apply_change(rds, prefix, ENV, "flag", "f", 3, flag("f"), if_listed=True)
    assert (refused.applied, refused.missing) == (False, True)
    assert rds.exists(keys.flags, keys.versions, keys.rev, keys.events, keys.meta) == 0
    assert not rds.sismember(rs.envs_key(prefix), ENV)
    # once listed (a restore wrote it), the same write goes through the version guard as usual
    rs.apply_change(rds, prefix, ENV, "flag", "g", 1, flag("g"))
    written = rs.apply_change(rds, prefix, ENV, "flag", "f", 3, flag("f"), {"project": "p"}, if_listed=True)
    assert (written.applied, written.missing, written.revision) == (True, False, 2)
    assert rds.hget(keys.meta, "project") == b"p"
    again = rs.apply_change(rds, prefix, ENV, "flag", "f", 3, flag("f"), if_listed=True)
    assert (again.applied, again.missing) == (False, False)


def test_apply_changes__atomic_if_listed_and_not_listed__none_written(rds: redis.Redis, prefix: str) -> None:
    changes = [rs.Change("flag", "a", 1, flag("a")), rs.Change("flag", "b", 1, flag("b"))]
    results = rs.apply_changes(rds, prefix, ENV, changes, atomic=True, if_listed=True)
    assert [(r.applied, r.missing) for r in results] == [(False, True), (False, True)]
    assert not rs.load_environment_sync(rds, prefix, ENV).exists
    results = rs.apply_changes(rds, prefix, ENV, changes, atomic=True)
    assert [r.applied for r in results] == [True, True]
