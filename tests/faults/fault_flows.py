"""What the fault-injection scenarios share (a uniquely named module, importable next to conftest):
building a project through the admin API, starting data planes, and readers that poll in a thread and
record what they saw."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc
import httpx
from e2e_stack import Evaluator, Stack, wait_until
from google.protobuf import struct_pb2
from prometheus_client.parser import text_string_to_metric_families

from flagyard.contracts.redis import load_environment_sync, parse_stored
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb

PROJECT = "shop"
ENV = "prod"
API = f"/api/v1/projects/{PROJECT}"


def env_config_path(flag: str) -> str:
    return f"{API}/flags/{flag}/environments/{ENV}"


def create_project(api: httpx.Client, flags: Mapping[str, Mapping[str, Any]]) -> str:
    """Project ``shop`` with environment ``prod`` and ``flags`` (key → body without the key; its
    ``config`` is the prod configuration); returns an SDK key of prod."""
    r = api.post("/api/v1/projects", json={"key": PROJECT, "name": "Shop"})
    assert r.status_code == 201, r.text
    r = api.post(f"{API}/environments", json={"key": ENV, "name": "Prod"})
    assert r.status_code == 201, r.text
    for key, spec in flags.items():
        body = {k: v for k, v in spec.items() if k != "config"}
        body |= {"key": key, "name": key, "environments": {ENV: dict(spec.get("config", {}))}}
        r = api.post(f"{API}/flags", json=body)
        assert r.status_code == 201, r.text
    r = api.post(f"{API}/environments/{ENV}/sdk-keys", json={"name": "faults"})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def boolean_flag(default_variant: str = "off", enabled: bool = True) -> dict[str, Any]:
    return {
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "config": {"enabled": enabled, "off_variant": "off", "default_variant": default_variant},
    }


def pg_versions(api: httpx.Client) -> dict[str, int]:
    """Every live flag's version, as the control plane (PostgreSQL) has it."""
    r = api.get(f"{API}/flags", params={"limit": 500})
    assert r.status_code == 200, r.text
    assert r.json()["next_cursor"] is None
    return {item["key"]: int(item["version"]) for item in r.json()["items"]}


def redis_versions(client: Any, prefix: str) -> dict[str, int]:
    """Flag versions held in Redis, over every environment the syncer wrote (the tests have one)."""
    out: dict[str, int] = {}
    for raw_env in client.smembers(f"{prefix}:envs"):
        env_id = raw_env.decode() if isinstance(raw_env, bytes) else str(raw_env)
        for key, raw in load_environment_sync(client, prefix, env_id).flags.items():
            out[key] = parse_stored(raw).version
    return out


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """A process's Prometheus metrics: (sample name, sorted labels) → value."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def syncer_metrics_port(stack: Stack) -> int:
    """The port the stack's syncer serves metrics on (conftest picks a free one)."""
    return int(stack.env["FLAGYARD_SYNCER_METRICS_PORT"])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_data_plane(stack: Stack, name: str, port: int, timeout: float = 30.0) -> None:
    stack.start(name, "flagyard.data_plane", "--port", str(port))
    wait_until(lambda: _port_open(port), timeout)


def struct(context: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(dict(context))
    return s


def resolve_all(evaluator: Evaluator, context: Mapping[str, Any], timeout: float = 5.0) -> Any:
    return evaluator.stub.ResolveAll(
        pb.ResolveAllRequest(context=struct(context)), metadata=evaluator.metadata, timeout=timeout
    )


def served_versions(evaluator: Evaluator, context: Mapping[str, Any]) -> dict[str, int]:
    """Flag → version the data plane serves (its L1), through one ResolveAll."""
    response = resolve_all(evaluator, context)
    return {key: int(res.version) for key, res in response.flags.items() if res.HasField("version")}


def try_served_versions(evaluator: Evaluator, context: Mapping[str, Any]) -> dict[str, int] | None:
    try:
        return served_versions(evaluator, context)
    except grpc.RpcError:
        return None


class VersionWatch:
    """Per-flag versions one reader observed, in the order it observed them: any decrease is recorded, and
    so is every flag it had seen that a later read did not answer (``vanished``: flag × read). The
    scenarios never delete a flag, so each one is a flag lost while it existed."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.high: dict[str, int] = {}
        self.regressions: list[tuple[str, int, int]] = []
        self.reads = 0
        self.errors = 0
        self.vanished = 0
        self.vanished_reads: list[tuple[int, int, list[str]]] = []
        """The first few reads that lost flags: (read number, flags answered, a few of the missing)."""
        self.last_error = ""

    def observe(self, versions: Mapping[str, int]) -> None:
        self.reads += 1
        for key, version in versions.items():
            held = self.high.get(key)
            if held is not None and version < held:
                self.regressions.append((key, held, version))
            if held is None or version > held:
                self.high[key] = version
        missing = [key for key in self.high if key not in versions]
        self.vanished += len(missing)
        if missing and len(self.vanished_reads) < 5:
            self.vanished_reads.append((self.reads, len(versions), sorted(missing)[:5]))

    def figures(self) -> dict[str, Any]:
        return {
            "reads": self.reads,
            "errors": self.errors,
            "regressions": len(self.regressions),
            "vanished_flag_reads": self.vanished,
        }


class Poller:
    """Calls ``read`` in a daemon thread every ``interval`` s until stopped; exceptions are counted in the
    watch (the read decides what counts as an error by raising)."""

    def __init__(self, watch: VersionWatch, read: Callable[[], Mapping[str, int]], interval: float) -> None:
        self.watch = watch
        self._read = read
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"poll-{watch.name}", daemon=True)

    def start(self) -> Poller:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                versions = self._read()
            except Exception as exc:
                self.watch.errors += 1
                self.watch.last_error = f"{type(exc).__name__}: {exc}"[:300]
            else:
                self.watch.observe(versions)
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive(), f"reader {self.watch.name} did not stop"


def wait_for(predicate: Callable[[], Any], timeout: float, interval: float = 0.05) -> Any:
    """Like ``wait_until`` but tolerant of exceptions while polling (a server coming back)."""

    def safe() -> Any:
        try:
            return predicate()
        except Exception:
            return None

    return wait_until(safe, timeout, interval)


def elapsed(started: float) -> float:
    return round(time.monotonic() - started, 2)
