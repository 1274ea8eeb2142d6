"""Remote mode against a real data plane and Redis: typed getters, details, bulk, cache, failures."""

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
    ThreadPlane,
    seeded_env,
    stopping_planes,
    unused_target,
    wait_until,
)

from flagyard import ErrorCode, FlagyardClient, ProviderEvent, ProviderStatus, Reason


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
    with FlagyardClient(target=plane.target, sdk_key=SDK_KEY, mode="remote") as c:
        yield c


def test_remote_client__all_five_types__served_by_the_data_plane(client: FlagyardClient) -> None:
    assert client.ready
    assert client.boolean("new-checkout", False, BETA_USER) is True
    assert client.boolean("new-checkout", True, {"targeting_key": "u-2", "country": "FR"}) is False
    assert client.string("banner", "x") == "Welcome"
    assert client.integer("rate-limit", 1, {"plan": "ent"}) == 500
    assert client.float("ratio", 0.0) == 0.75
    assert client.float("rate-limit", 0.0) == 100.0
    assert client.object("theme", {}) == {"bg": "#000", "sizes": [1, 2]}
    assert type(client.object("theme", {})["sizes"][0]) is int


def test_remote_client__details__carry_variant_reason_metadata_and_version(client: FlagyardClient) -> None:
    result = client.details("new-checkout", False, BETA_USER)

    assert (result.value, result.variant, result.reason, result.error_code) == (
        True,
        "on",
        Reason.TARGETING_MATCH,
        None,
    )
    assert result.flag_metadata == {"owner": "checkout"}
    assert result.version == 1


@pytest.mark.parametrize(
    ("key", "default", "code"),
    [
        ("missing", True, ErrorCode.FLAG_NOT_FOUND),
        ("banner", 3, ErrorCode.TYPE_MISMATCH),
        ("", "d", ErrorCode.FLAG_NOT_FOUND),
    ],
)
def test_remote_client__evaluation_error__default_with_error_code(
    client: FlagyardClient, key: str, default: object, code: ErrorCode
) -> None:
    result = client.details(key, default)

    assert (result.value, result.reason, result.error_code) == (default, Reason.ERROR, code)


def test_remote_client__context_not_json__sent_as_json(client: FlagyardClient) -> None:
    assert client.integer("rate-limit", 1, {"plan": "ent", "tags": ("a", "b"), "at": object()}) == 500


def test_remote_client__all_flags__every_flag_in_one_call(client: FlagyardClient, plane: ThreadPlane) -> None:
    flags = client.all_flags(BETA_USER)

    assert set(flags) == set(FLAGS)
    assert flags["new-checkout"].value is True
    assert flags["theme"].value == {"bg": "#000", "sizes": [1, 2]}
    assert flags["rate-limit"].value == 100
    assert plane.requests("ResolveAll", "OK") == 2  # the readiness check, then the bulk call


def test_remote_client__cache_ttl__cached_until_it_expires(env: Env, plane: ThreadPlane) -> None:
    with FlagyardClient(target=plane.target, sdk_key=SDK_KEY, mode="remote", cache_ttl=0.5) as client:
        assert client.string("banner", "x", {"targeting_key": "u-1"}) == "Welcome"
        env.put_flag("banner", default_variant="b")
        wait_until(
            lambda: plane.plane and plane.plane.follower.envs["env-sdk"].flagset.flags["banner"].version == 2
        )

        assert client.string("banner", "x", {"targeting_key": "u-1"}) == "Welcome"  # cached
        assert client.string("banner", "x", {"targeting_key": "u-2"}) == "Hi"  # another context
        wait_until(lambda: client.string("banner", "x", {"targeting_key": "u-1"}) == "Hi", timeout=3)
    assert plane.requests("ResolveString", "OK") >= 3


def test_remote_client__no_server__default_with_error_instead_of_waiting_for_a_connection() -> None:
    events = Events()
    client = FlagyardClient(
        target=unused_target(), sdk_key=SDK_KEY, mode="remote", ready_timeout=0.2, timeout=0.5
    )
    client.add_listener(events)
    try:
        started = time.monotonic()
        result = client.details("banner", "fallback")
        elapsed = time.monotonic() - started

        assert not client.ready
        assert (result.value, result.reason, result.error_code) == (
            "fallback",
            Reason.ERROR,
            ErrorCode.GENERAL,
        )
        assert "UNAVAILABLE" in (result.error_message or "")
        assert elapsed < 10 * 0.5, (
            "the call must give up at its deadline, not wait for gRPC's reconnect backoff"
        )
        assert client.boolean("new-checkout", True) is True
        assert client.all_flags() == {}
    finally:
        client.close()


def test_remote_client__bad_sdk_key__one_error_event_and_no_call_while_rejected(plane: ThreadPlane) -> None:
    events = Events()
    client = FlagyardClient(target=plane.target, sdk_key="not-a-key", mode="remote", ready_timeout=1)
    client.add_listener(events)
    try:
        results = [client.details("banner", "d") for _ in range(50)]

        assert client.status is ProviderStatus.FATAL
        assert {(r.value, r.error_code) for r in results} == {("d", ErrorCode.GENERAL)}
        assert "rejected" in (results[0].error_message or "")
        assert len(events.of(ProviderEvent.ERROR)) == 1
        assert plane.requests("ResolveAll", "UNAUTHENTICATED") == 1
        assert plane.requests("ResolveString", "UNAUTHENTICATED") == 0
    finally:
        client.close()


def test_remote_client__data_plane_restarts__calls_fail_then_recover(
    env: Env, planes: list[ThreadPlane]
) -> None:
    first = ThreadPlane(env.settings()).start()
    planes.append(first)
    events = Events()
    client = FlagyardClient(target=first.target, sdk_key=SDK_KEY, mode="remote")
    client.add_listener(events)
    try:
        assert client.string("banner", "x") == "Welcome"
        first.stop()
        assert client.details("banner", "x").error_code is ErrorCode.GENERAL
        events.wait(ProviderEvent.ERROR)

        second = ThreadPlane(env.settings(port=first.port)).start()
        planes.append(second)
        env.put_flag("banner", default_variant="b")

        wait_until(lambda: client.string("banner", "x") == "Hi", timeout=10, interval=0.1)
        assert [e[0] for e in events.seen] == [ProviderEvent.READY, ProviderEvent.ERROR, ProviderEvent.READY]
    finally:
        client.close()


def test_remote_client__bootstrap_file__served_while_the_data_plane_is_unreachable(tmp_path: Path) -> None:
    path = tmp_path / "bootstrap.json"
    path.write_text(
        '{"flags": [{"key": "banner", "type": "string", "variants": {"x": "Boot"}, "default_variant": "x"}]}'
    )

    with FlagyardClient(
        target=unused_target(), sdk_key=SDK_KEY, mode="remote", bootstrap_file=path, ready_timeout=0
    ) as client:
        assert client.string("banner", "d") == "Boot"
        assert client.details("missing", "d").error_code is ErrorCode.FLAG_NOT_FOUND
        assert set(client.all_flags()) == {"banner"}


def test_remote_client__closed__defaults_never_raises(plane: ThreadPlane) -> None:
    client = FlagyardClient(target=plane.target, sdk_key=SDK_KEY, mode="remote")
    client.close()

    assert client.string("banner", "d") == "d"
    assert client.details("banner", "d").error_code is ErrorCode.GENERAL
