"""Local mode against a real data plane and Redis: the snapshot, changes as events, readiness, a rejected
key, staleness, and resuming after the data plane is killed and restarted."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sdk_helpers import (
    BETA_USER,
    FLAGS,
    SDK_KEY,
    Env,
    Events,
    ProcessPlane,
    ThreadPlane,
    free_port,
    seeded_env,
    stopping_planes,
    unused_target,
    wait_until,
)

from flagyard import ErrorCode, FlagyardClient, ProviderEvent, ProviderStatus, Reason
from flagyard.contracts.redis import delete_sdk_key, hash_sdk_key
from flagyard.sdk._grpc import Backoff
from flagyard.sdk._local import LocalResolver


@pytest.fixture
def env() -> Iterator[Env]:
    yield from seeded_env()


@pytest.fixture
def planes() -> Iterator[list[ThreadPlane]]:
    yield from stopping_planes()


@pytest.fixture
def plane(env: Env, planes: list[ThreadPlane]) -> ThreadPlane:
    planes.append(ThreadPlane(env.settings()).start())
    return planes[-1]


@pytest.fixture
def client(plane: ThreadPlane) -> Iterator[FlagyardClient]:
    with FlagyardClient(target=plane.target, sdk_key=SDK_KEY, mode="local") as c:
        yield c


def test_local_client__first_snapshot__ready_and_all_five_types_in_process(
    client: FlagyardClient, plane: ThreadPlane
) -> None:
    assert client.ready
    calls_before = plane.requests("ResolveBoolean", "OK")

    assert client.boolean("new-checkout", False, BETA_USER) is True
    assert client.string("banner", "x") == "Welcome"
    assert client.integer("rate-limit", 1, {"plan": "ent"}) == 500
    assert client.float("ratio", 0.0) == 0.75
    assert client.object("theme", {}) == {"bg": "#000", "sizes": [1, 2]}
    details = client.details("new-checkout", False, BETA_USER)
    assert (details.variant, details.reason, details.rule_id) == ("on", Reason.TARGETING_MATCH, "beta")
    assert set(client.all_flags(BETA_USER)) == set(FLAGS)
    assert plane.requests("ResolveBoolean", "OK") == calls_before  # nothing went over the network


def test_local_client__evaluation_error__default_with_error_code(client: FlagyardClient) -> None:
    assert client.details("missing", "d").error_code is ErrorCode.FLAG_NOT_FOUND
    assert client.details("banner", 3).error_code is ErrorCode.TYPE_MISMATCH
    assert client.integer("banner", 3) == 3


def test_local_client__flag_changed_in_redis__configuration_changed_with_key_and_new_value(
    env: Env, client: FlagyardClient
) -> None:
    events = Events()
    client.add_listener(events)

    env.put_flag("banner", default_variant="b")
    changed = events.wait(ProviderEvent.CONFIGURATION_CHANGED)

    assert changed[0][1] == ["banner"]
    assert client.string("banner", "x") == "Hi"
    assert events.seen[0][0] is ProviderEvent.READY  # told on subscribing


def test_local_client__segment_and_prerequisite__changed_lists_the_dependent_flags(
    env: Env, client: FlagyardClient
) -> None:
    events = Events()
    client.add_listener(events)

    env.put("segment", "beta", {"key": "beta", "included": ["u-vip"]})
    changed = events.wait(ProviderEvent.CONFIGURATION_CHANGED)
    env.put("flag", "ratio", None)
    deleted = events.wait(ProviderEvent.CONFIGURATION_CHANGED, 2)[1]

    assert changed[0][1] == ["gated", "new-checkout"]
    assert client.boolean("new-checkout", True, BETA_USER) is False
    assert deleted[1] == ["ratio"]
    assert client.details("ratio", 0.5).error_code is ErrorCode.FLAG_NOT_FOUND


def test_local_client__no_data_plane__not_ready_defaults_then_error_event() -> None:
    events = Events()
    started = time.monotonic()
    client = FlagyardClient(target=unused_target(), sdk_key=SDK_KEY, mode="local", ready_timeout=0.3)
    client.add_listener(events)
    try:
        result = client.details("banner", "d")

        assert time.monotonic() - started < 2
        assert not client.ready
        assert (result.value, result.reason, result.error_code) == (
            "d",
            Reason.ERROR,
            ErrorCode.PROVIDER_NOT_READY,
        )
        assert client.all_flags() == {}
        events.wait(ProviderEvent.ERROR)
    finally:
        client.close()


def test_local_client__bad_sdk_key__one_error_event_defaults_and_no_hot_loop(plane: ThreadPlane) -> None:
    events = Events()
    client = FlagyardClient(target=plane.target, sdk_key="not-a-key", mode="local", ready_timeout=0)
    client.add_listener(events)
    try:
        wait_until(lambda: client.status is ProviderStatus.FATAL)
        time.sleep(0.5)  # give a hot loop the time to show

        assert plane.requests("SyncFlags", "UNAUTHENTICATED") == 1
        assert len(events.of(ProviderEvent.ERROR)) == 1
        result = client.details("banner", "d")
        assert (result.value, result.error_code) == ("d", ErrorCode.GENERAL)
        assert "rejected" in (result.error_message or "")
    finally:
        client.close()


def test_local_client__key_revoked_while_streaming__fatal_defaults_one_error_no_stale_no_storm(
    env: Env, planes: list[ThreadPlane]
) -> None:
    plane = ThreadPlane(env.settings(sdk_key_cache_seconds=0.5, sync_heartbeat_seconds=60)).start()
    planes.append(plane)
    events = Events()
    client = FlagyardClient(
        target=plane.target, sdk_key=SDK_KEY, mode="local", ready_timeout=10, stale_after=0.2
    )
    client.add_listener(events)
    try:
        assert client.string("banner", "d") == "Welcome"

        delete_sdk_key(env.rds, env.prefix, hash_sdk_key(SDK_KEY))

        wait_until(lambda: client.status is ProviderStatus.FATAL, timeout=10)
        time.sleep(0.6)  # past stale_after, and time for a reconnect storm to show
        assert plane.requests("SyncFlags", "UNAUTHENTICATED") == 1
        errors = events.of(ProviderEvent.ERROR)
        assert len(errors) == 1
        assert "rejected" in (errors[0][2] or "")
        assert events.of(ProviderEvent.STALE) == []
        result = client.details("banner", "d")
        assert (result.value, result.reason, result.error_code) == ("d", Reason.ERROR, ErrorCode.GENERAL)
        assert client.all_flags() == {}
        assert client.ready is False
    finally:
        client.close()


def test_local_client__bootstrap_file__served_until_the_data_plane_connects(
    env: Env, planes: list[ThreadPlane], tmp_path: Path
) -> None:
    path = tmp_path / "bootstrap.json"
    path.write_text(
        '{"flags": [{"key": "banner", "type": "string", "variants": {"x": "Boot"}, "default_variant": "x"}]}'
    )
    port = free_port()
    events = Events()
    client = FlagyardClient(
        target=f"127.0.0.1:{port}", sdk_key=SDK_KEY, mode="local", bootstrap_file=path, ready_timeout=0
    )
    client.add_listener(events)
    try:
        assert client.string("banner", "d") == "Boot"

        planes.append(ThreadPlane(env.settings(port=port)).start())
        assert client.wait_ready(10)

        assert client.string("banner", "d") == "Welcome"
        assert client.float("ratio", 0.0) == 0.75
        assert set(events.wait(ProviderEvent.CONFIGURATION_CHANGED)[0][1]) == set(FLAGS)
    finally:
        client.close()


def test_local_client__data_plane_killed_and_restarted__stale_then_resumes_with_only_missed_changes(
    env: Env,
) -> None:
    dp = ProcessPlane(env, free_port()).start()
    events = Events()
    # Reconnect attempts 1-2 s apart: the changes below land in the restarted data plane's history before
    # the client is back, so it resumes from its revision and gets exactly those changes.
    resolver = LocalResolver(dp.target, SDK_KEY, stale_after=0.3, backoff=Backoff(2.0, 2.0), ready_timeout=10)
    client = FlagyardClient(resolver)
    client.add_listener(events)
    try:
        flagset = resolver.flagset
        assert flagset is not None
        untouched = flagset.flags["ratio"]
        revision = resolver.revision
        assert revision is not None

        dp.kill()
        events.wait(ProviderEvent.STALE)
        assert client.string("banner", "x") == "Welcome"  # the last known flags keep serving
        dp.start()
        env.put_flag("banner", default_variant="b")
        env.put_flag("rate-limit", default_variant="raised")

        events.wait(ProviderEvent.CONFIGURATION_CHANGED, 2, timeout=15)
        assert client.string("banner", "x") == "Hi"
        assert client.integer("rate-limit", 0) == 500
        assert resolver.revision == revision + 2
        assert resolver.flagset is flagset  # resumed: no snapshot replaced the flags
        assert flagset.flags["ratio"] is untouched
        kinds = [e[0] for e in events.seen]
        assert kinds[:3] == [ProviderEvent.READY, ProviderEvent.STALE, ProviderEvent.READY]
        assert [e[1] for e in events.of(ProviderEvent.CONFIGURATION_CHANGED)] == [["banner"], ["rate-limit"]]
    finally:
        client.close()
        dp.kill()


def test_local_client__changes_while_the_data_plane_was_down__snapshot_replaces_the_flags(
    env: Env, planes: list[ThreadPlane]
) -> None:
    first = ThreadPlane(env.settings()).start()
    planes.append(first)
    events = Events()
    client = FlagyardClient(target=first.target, sdk_key=SDK_KEY, mode="local", stale_after=0.2)
    client.add_listener(events)
    try:
        first.stop()
        events.wait(ProviderEvent.STALE)
        env.put_flag("banner", default_variant="b")
        env.put("flag", "ratio", None)
        planes.append(ThreadPlane(env.settings(port=first.port)).start())

        changed = events.wait(ProviderEvent.CONFIGURATION_CHANGED, timeout=15)

        assert changed[0][1] == ["banner", "ratio"]
        assert client.string("banner", "x") == "Hi"
        assert client.details("ratio", 0.5).error_code is ErrorCode.FLAG_NOT_FOUND
        assert [e[0] for e in events.seen][:3] == [
            ProviderEvent.READY,
            ProviderEvent.STALE,
            ProviderEvent.READY,
        ]
    finally:
        client.close()
