"""Scenario 4: the data plane is SIGKILLed and restarted (same port) while local-mode SDKs evaluate under
load. The SDKs keep serving their last snapshot without an error meanwhile, then resume and pick up a
change made after the restart."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from e2e_stack import Evaluator, Stack
from fault_flows import create_project, elapsed, env_config_path, resolve_all, start_data_plane, wait_for
from fault_infra import free_port

from flagyard import FlagyardClient, ProviderEvent

pytestmark = pytest.mark.faults

DOWN_SECONDS = 3.0
CONTEXT = {"targeting_key": "user-1", "plan": "ent"}
FLAGS: dict[str, dict[str, Any]] = {
    "checkout": {
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "config": {"enabled": True, "off_variant": "off", "default_variant": "on"},
    },
    "banner": {
        "type": "string",
        "variants": {"a": "Welcome", "b": "Hi"},
        "config": {"enabled": True, "default_variant": "a"},
    },
    "rate-limit": {
        "type": "integer",
        "variants": {"normal": 100, "raised": 500},
        "config": {
            "enabled": True,
            "default_variant": "normal",
            "rules": [
                {
                    "id": "ent",
                    "variant": "raised",
                    "clauses": [{"attribute": "plan", "operator": "eq", "values": ["ent"]}],
                }
            ],
        },
    },
    "ratio": {
        "type": "float",
        "variants": {"low": 0.25, "high": 0.75},
        "config": {"enabled": True, "default_variant": "high"},
    },
}
EXPECTED = {"checkout": True, "banner": "Welcome", "rate-limit": 500, "ratio": 0.75}
DEFAULTS = {"checkout": False, "banner": "default", "rate-limit": -1, "ratio": -1.0}


class Load:
    """Threads evaluating every flag through the SDK clients in a loop; each answer must be error-free and
    one of the values acceptable for its flag at that time."""

    def __init__(self, clients: list[FlagyardClient], threads: int = 4) -> None:
        self.clients = clients
        self.accept: dict[str, list[Any]] = {key: [value] for key, value in EXPECTED.items()}
        self.phase = "up"
        self.counts: dict[str, int] = {}
        self.failures: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(i,), name=f"load-{i}", daemon=True)
            for i in range(threads)
        ]

    def start(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(15)
        assert not any(t.is_alive() for t in self._threads)

    def _run(self, index: int) -> None:
        client = self.clients[index % len(self.clients)]
        n = 0
        while not self._stop.is_set():
            phase = self.phase
            for key, default in DEFAULTS.items():
                details = client.details(key, default, CONTEXT)
                if details.error_code is not None or details.value not in self.accept[key]:
                    with self._lock:
                        self.failures.append(f"{phase} {key}: {details}")
            n += len(DEFAULTS)
            if n >= 400:
                with self._lock:
                    self.counts[phase] = self.counts.get(phase, 0) + n
                n = 0
            time.sleep(0.0005)
        with self._lock:
            self.counts[self.phase] = self.counts.get(self.phase, 0) + n


def test_data_plane_restart__local_sdks_under_load__serve_last_snapshot_then_resume(
    fault_stack: Stack,
) -> None:
    stack = fault_stack
    sdk_key = create_project(stack.api, FLAGS)
    stack.start_syncer()
    port = free_port()
    start_data_plane(stack, "data_plane", port)
    probe = Evaluator(port, sdk_key)
    clients: list[FlagyardClient] = []
    events: list[tuple[ProviderEvent, float]] = []
    load: Load | None = None
    try:
        wait_for(lambda: len(resolve_all(probe, CONTEXT).flags) == len(FLAGS), 30)
        for stale_after in (1.0, 10.0):
            client = FlagyardClient(
                target=f"127.0.0.1:{port}",
                sdk_key=sdk_key,
                mode="local",
                ready_timeout=30,
                stale_after=stale_after,
                report_interval=0,
            )
            assert client.wait_ready(30)
            clients.append(client)
        clients[0].add_listener(lambda event, _flags, _msg: events.append((event, time.monotonic())))
        load = Load(clients).start()
        time.sleep(1.0)

        stack.kill("data_plane")  # SIGKILL: every stream breaks
        load.phase = "down"
        killed_at = time.monotonic()
        time.sleep(DOWN_SECONDS)
        start_data_plane(stack, "data_plane", port)
        load.phase = "restarted"
        wait_for(lambda: len(resolve_all(probe, CONTEXT).flags) == len(FLAGS), 30)

        changed_at = time.monotonic()
        path = env_config_path("banner")
        r = stack.api.patch(
            path, json={"default_variant": "b"}, headers={"If-Match": stack.api.get(path).headers["etag"]}
        )
        assert r.status_code == 200, r.text
        load.accept["banner"] = ["Welcome", "Hi"]  # until the SDKs have it
        for client in clients:
            wait_for(lambda c=client: c.string("banner", "default", CONTEXT) == "Hi", 45)  # type: ignore[misc]
        resumed_seconds = elapsed(changed_at)
        load.accept["banner"] = ["Hi"]
        load.phase = "changed"
        time.sleep(0.5)
        load.stop()
        kinds = [str(event) for event, _ in events]
        print(
            "faults.summary",
            {
                "evaluations": load.counts,
                "failures": len(load.failures),
                "down_seconds": DOWN_SECONDS,
                "change_seen_seconds": resumed_seconds,
                "sdk_events": kinds,
                "stale_after_kill_seconds": next(
                    (round(t - killed_at, 2) for e, t in events if e is ProviderEvent.STALE), None
                ),
            },
        )
        assert load.failures == [], load.failures[:5]
        assert load.counts.get("down", 0) > 1000
        # The outage was seen (STALE after stale_after=1 s), the reconnection too (READY after it).
        stale = [t for e, t in events if e is ProviderEvent.STALE]
        assert stale, kinds
        assert any(e is ProviderEvent.READY and t > stale[0] for e, t in events), kinds
        assert any(e is ProviderEvent.CONFIGURATION_CHANGED and t > changed_at for e, t in events), kinds
    finally:
        if load is not None:
            load.stop()
        for client in clients:
            client.close()
        probe.close()
