"""OpenFeature hears of every status change of a FlagyardProvider exactly once, through the real
openfeature-sdk and a real data plane: one PROVIDER_READY at start (OpenFeature's own, after initialize),
PROVIDER_STALE and PROVIDER_READY again around a data-plane outage, PROVIDER_ERROR and PROVIDER_READY
around a broken offline file.

OpenFeature runs handlers on a thread pool; each test ends by waiting for an event the SDK sends after the
ones counted (a CONFIGURATION_CHANGED from the same thread), so a duplicate would have been dispatched."""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.event import EventDetails
from openfeature.event import ProviderEvent as OFEvent
from openfeature.provider import ProviderStatus as OFStatus
from polling_helpers import free_port
from sdk_helpers import SDK_KEY, Env, ThreadPlane, seeded_env, stopping_planes, wait_until

from flagyard import FlagyardClient, FlagyardProvider, ProviderEvent, ProviderStatus


@pytest.fixture
def env() -> Iterator[Env]:
    yield from seeded_env()


@pytest.fixture
def planes() -> Iterator[list[ThreadPlane]]:
    yield from stopping_planes()


class Heard:
    """Every OpenFeature event of the provider named ``flagyard``, counted per kind (handlers registered
    before the provider, so nothing is missed)."""

    EVENTS = (
        OFEvent.PROVIDER_READY,
        OFEvent.PROVIDER_STALE,
        OFEvent.PROVIDER_ERROR,
        OFEvent.PROVIDER_CONFIGURATION_CHANGED,
    )

    def __init__(self) -> None:
        self.seen: list[tuple[OFEvent, EventDetails]] = []
        self._lock = threading.Lock()
        self._handlers = {event: self._handler(event) for event in self.EVENTS}
        for event, handler in self._handlers.items():
            api.add_handler(event, handler)

    def _handler(self, event: OFEvent) -> Any:
        def record(details: EventDetails) -> None:
            if details.provider_name == "flagyard":  # not the no-op provider's immediate READY
                with self._lock:
                    self.seen.append((event, details))

        return record

    def counts(self) -> Counter[OFEvent]:
        with self._lock:
            return Counter(event for event, _ in self.seen)

    def wait(self, event: OFEvent, count: int = 1, timeout: float = 15) -> None:
        wait_until(lambda: self.counts()[event] >= count, timeout)

    def remove(self) -> None:
        for event, handler in self._handlers.items():
            api.remove_handler(event, handler)


@pytest.fixture
def heard() -> Iterator[Heard]:
    heard = Heard()
    yield heard
    heard.remove()
    api.shutdown()
    api.clear_providers()


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_start__one_provider_ready(env: Env, planes: list[ThreadPlane], heard: Heard, mode: str) -> None:
    plane = ThreadPlane(env.settings()).start()
    planes.append(plane)
    provider = FlagyardProvider(target=plane.target, sdk_key=SDK_KEY, mode=mode)  # type: ignore[arg-type]
    api.set_provider_and_wait(provider)
    assert api.get_client().get_provider_status() is OFStatus.READY

    env.put_flag("banner", default_variant="b")
    if mode == "local":
        heard.wait(OFEvent.PROVIDER_CONFIGURATION_CHANGED)
    else:  # remote mode streams nothing: wait for the value instead
        wait_until(lambda: api.get_client().get_string_value("banner", "") == "Hi")
        heard.wait(OFEvent.PROVIDER_READY)

    assert heard.counts()[OFEvent.PROVIDER_READY] == 1
    assert heard.counts()[OFEvent.PROVIDER_ERROR] == 0


def test_local__first_snapshot_announced_while_initialize_returns__one_provider_ready(
    env: Env, planes: list[ThreadPlane], heard: Heard
) -> None:
    """The client's READY reaches the provider only after OpenFeature announced initialize's outcome (an app
    listener ahead of it holds the event until then): it must not be announced a second time."""
    port = free_port()
    client = FlagyardClient(target=f"127.0.0.1:{port}", sdk_key=SDK_KEY, mode="local", ready_timeout=0)
    announced = threading.Event()

    def on_ready(details: EventDetails) -> None:
        if details.provider_name == "flagyard":
            announced.set()

    api.add_handler(OFEvent.PROVIDER_READY, on_ready)

    def app_listener(event: ProviderEvent, flags: list[str], message: str | None) -> None:
        if event is ProviderEvent.READY:
            announced.wait(15)

    client.add_listener(app_listener)
    provider = FlagyardProvider(client=client, ready_timeout=15)
    setting = threading.Thread(target=api.set_provider_and_wait, args=(provider,), daemon=True)
    setting.start()
    wait_until(lambda: provider._subscribed)  # the provider listens before the data plane exists
    planes.append(ThreadPlane(env.settings(port=port)).start())
    setting.join(20)
    assert announced.is_set()

    env.put_flag("banner", default_variant="b")
    heard.wait(OFEvent.PROVIDER_CONFIGURATION_CHANGED)

    api.remove_handler(OFEvent.PROVIDER_READY, on_ready)
    assert heard.counts()[OFEvent.PROVIDER_READY] == 1
    assert client.status is ProviderStatus.READY


def test_local__data_plane_outage__one_stale_then_one_ready_again(
    env: Env, planes: list[ThreadPlane], heard: Heard
) -> None:
    first = ThreadPlane(env.settings()).start()
    planes.append(first)
    api.set_provider_and_wait(
        FlagyardProvider(target=first.target, sdk_key=SDK_KEY, mode="local", stale_after=0.2)
    )
    first.stop()
    heard.wait(OFEvent.PROVIDER_STALE)
    planes.append(ThreadPlane(env.settings(port=first.port)).start())
    heard.wait(OFEvent.PROVIDER_READY, 2)

    env.put_flag("banner", default_variant="b")
    heard.wait(OFEvent.PROVIDER_CONFIGURATION_CHANGED)

    counts = heard.counts()
    assert (counts[OFEvent.PROVIDER_READY], counts[OFEvent.PROVIDER_STALE]) == (2, 1)
    assert counts[OFEvent.PROVIDER_ERROR] == 0
    assert api.get_client().get_provider_status() is OFStatus.READY


def test_offline__file_broken_then_fixed__one_error_then_ready_and_changed(
    tmp_path: Path, heard: Heard
) -> None:
    path = tmp_path / "flags.json"
    good = {
        "flags": [
            {"key": "a", "type": "boolean", "variants": {"on": True, "off": False}, "default_variant": "off"}
        ]
    }
    path.write_text(json.dumps(good))
    provider = FlagyardProvider(client=FlagyardClient.offline(path, watch=True, poll_interval=0.05))
    api.set_provider_and_wait(provider)

    path.write_text('{"flags": [{"key": "a", "type": "boolean"}]}')
    heard.wait(OFEvent.PROVIDER_ERROR)
    assert api.get_client().get_provider_status() is OFStatus.ERROR
    assert api.get_client().get_boolean_value("a", True) is False  # the last good file still serves
    good["flags"][0]["default_variant"] = "on"
    path.write_text(json.dumps(good))
    heard.wait(OFEvent.PROVIDER_CONFIGURATION_CHANGED)

    counts = heard.counts()
    assert (counts[OFEvent.PROVIDER_READY], counts[OFEvent.PROVIDER_ERROR]) == (2, 1)
    assert api.get_client().get_provider_status() is OFStatus.READY
    assert api.get_client().get_boolean_value("a", False) is True
