"""FlagyardProvider in remote and local modes through the OpenFeature API: all five types, errors,
events (READY, CONFIGURATION_CHANGED with flags_changed, ERROR/FATAL, STALE)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails
from openfeature.event import ProviderEvent as OFEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import Reason
from openfeature.provider import ProviderStatus
from sdk_helpers import SDK_KEY, Env, ThreadPlane, seeded_env, stopping_planes, unused_target, wait_until

from flagyard import FlagyardProvider
from flagyard.contracts.redis import delete_sdk_key, hash_sdk_key


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
def openfeature() -> Iterator[None]:
    yield
    api.shutdown()
    api.clear_providers()


class Recorder:
    def __init__(self) -> None:
        self.seen: list[tuple[OFEvent, EventDetails]] = []
        self._lock = threading.Lock()

    def handler(self, event: OFEvent) -> Any:
        def record(details: EventDetails) -> None:
            with self._lock:
                self.seen.append((event, details))

        return record

    def of(self, event: OFEvent) -> list[EventDetails]:
        with self._lock:
            return [d for e, d in self.seen if e is event]


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_provider__openfeature_api__all_five_types_and_errors(
    plane: ThreadPlane, openfeature: None, mode: str
) -> None:
    api.set_provider_and_wait(FlagyardProvider(target=plane.target, sdk_key=SDK_KEY, mode=mode))  # type: ignore[arg-type]
    client = api.get_client()
    ctx = EvaluationContext("u-1", {"country": "DE", "plan": "ent"})

    assert client.get_provider_status() is ProviderStatus.READY
    assert client.get_boolean_value("new-checkout", False, ctx) is True
    assert client.get_string_value("banner", "x", ctx) == "Welcome"
    assert client.get_integer_value("rate-limit", 0, ctx) == 500
    assert client.get_float_value("ratio", 0.0, ctx) == 0.75
    assert client.get_object_value("theme", {}, ctx) == {"bg": "#000", "sizes": [1, 2]}
    details = client.get_boolean_details("new-checkout", False, ctx)
    assert (details.variant, details.reason, details.flag_metadata) == (
        "on",
        Reason.TARGETING_MATCH,
        {"owner": "checkout"},
    )
    missing = client.get_string_details("missing", "d", ctx)
    assert (missing.value, missing.reason, missing.error_code) == (
        "d",
        Reason.ERROR,
        ErrorCode.FLAG_NOT_FOUND,
    )
    mismatch = client.get_integer_details("banner", 7, ctx)
    assert (mismatch.value, mismatch.error_code) == (7, ErrorCode.TYPE_MISMATCH)


def test_provider__local_change_in_redis__configuration_changed_with_flags_changed(
    env: Env, plane: ThreadPlane, openfeature: None
) -> None:
    recorder = Recorder()
    api.set_provider_and_wait(FlagyardProvider(target=plane.target, sdk_key=SDK_KEY, mode="local"))
    handler = recorder.handler(OFEvent.PROVIDER_CONFIGURATION_CHANGED)
    api.add_handler(OFEvent.PROVIDER_CONFIGURATION_CHANGED, handler)
    try:
        env.put_flag("rate-limit", default_variant="raised")
        changed = wait_until(lambda: recorder.of(OFEvent.PROVIDER_CONFIGURATION_CHANGED))
        assert changed[0].flags_changed == ["rate-limit"]
        assert api.get_client().get_integer_value("rate-limit", 0) == 500
    finally:
        api.remove_handler(OFEvent.PROVIDER_CONFIGURATION_CHANGED, handler)


def test_provider__local_data_plane_stops_and_returns__stale_then_ready(
    env: Env, planes: list[ThreadPlane], openfeature: None
) -> None:
    first = ThreadPlane(env.settings()).start()
    planes.append(first)
    api.set_provider_and_wait(
        FlagyardProvider(target=first.target, sdk_key=SDK_KEY, mode="local", stale_after=0.2)
    )
    client = api.get_client()

    first.stop()
    wait_until(lambda: client.get_provider_status() is ProviderStatus.STALE)
    assert client.get_string_value("banner", "x") == "Welcome"
    planes.append(ThreadPlane(env.settings(port=first.port)).start())

    wait_until(lambda: client.get_provider_status() is ProviderStatus.READY, timeout=15)


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_provider__bad_sdk_key__fatal_status_and_defaults(
    plane: ThreadPlane, openfeature: None, mode: str
) -> None:
    provider = FlagyardProvider(target=plane.target, sdk_key="nope", mode=mode, ready_timeout=3)  # type: ignore[arg-type]
    api.set_provider(provider)
    client = api.get_client()

    wait_until(lambda: client.get_provider_status() is ProviderStatus.FATAL)
    details = client.get_boolean_details("new-checkout", True)
    assert (details.value, details.error_code) == (True, ErrorCode.PROVIDER_FATAL)


def test_provider__local_key_revoked_while_streaming__fatal_status_and_defaults(
    env: Env, planes: list[ThreadPlane], openfeature: None
) -> None:
    plane = ThreadPlane(env.settings(sdk_key_cache_seconds=0.5, sync_heartbeat_seconds=60)).start()
    planes.append(plane)
    api.set_provider(
        FlagyardProvider(
            target=plane.target, sdk_key=SDK_KEY, mode="local", ready_timeout=10, stale_after=0.2
        )
    )
    client = api.get_client()
    wait_until(lambda: client.get_provider_status() is ProviderStatus.READY, timeout=10)
    assert client.get_string_value("banner", "x") == "Welcome"

    delete_sdk_key(env.rds, env.prefix, hash_sdk_key(SDK_KEY))

    wait_until(lambda: client.get_provider_status() is ProviderStatus.FATAL, timeout=10)
    time.sleep(0.4)  # past stale_after: FATAL stays
    assert client.get_provider_status() is ProviderStatus.FATAL
    details = client.get_string_details("banner", "x")
    assert (details.value, details.error_code) == ("x", ErrorCode.PROVIDER_FATAL)


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_provider__no_data_plane__error_status_and_defaults(openfeature: None, mode: str) -> None:
    api.set_provider(FlagyardProvider(target=unused_target(), sdk_key=SDK_KEY, mode=mode, ready_timeout=0.3))  # type: ignore[arg-type]
    client = api.get_client()

    wait_until(lambda: client.get_provider_status() is ProviderStatus.ERROR)
    details = client.get_string_details("banner", "d")
    assert (details.value, details.reason) == ("d", Reason.ERROR)
    expected = ErrorCode.GENERAL if mode == "remote" else ErrorCode.PROVIDER_NOT_READY
    assert details.error_code == expected
