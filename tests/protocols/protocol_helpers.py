"""A whole Flagyard stack for the protocol suites (a uniquely named module, importable next to conftest).

PostgreSQL: a fresh database with Alembic migrations; Redis: the test DB of ``FLAGYARD_TEST_REDIS_URL`` with
a key prefix of its own; the control plane in process (FastAPI TestClient, inline outbox dispatch); the
syncer as a subprocess started with ``python -m`` as an operator would; the data plane (grpc.aio, with
flagd's ports on free ports) in a thread of this process, so a test reads its metrics.

The clients are the ones nobody here wrote: ``openfeature-provider-flagd`` as published on PyPI (RPC and
in-process resolvers, and its generated stubs for raw calls), next to Flagyard's own ``FlagyardClient``.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from fastapi.testclient import TestClient
from polling_helpers import wait_until

from flagyard.data_plane.server import DataPlane
from flagyard.data_plane.settings import DataPlaneSettings

PG_ADMIN_URL = os.environ.get("FLAGYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FLAGYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/12")
PROJECT, ENV = "shop", "prod"


class Plane:
    """A DataPlane serving in its own thread and event loop."""

    def __init__(self, settings: DataPlaneSettings) -> None:
        self.settings = settings
        self.plane: DataPlane | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.plane = DataPlane(self.settings)
            await self.plane.start()
            self._started.set()
            await self._stop.wait()
            await self.plane.stop(grace=0.5)

        try:
            asyncio.run(run())
        except BaseException as exc:
            self._error = exc
            self._started.set()

    def start(self) -> Plane:
        self._thread.start()
        assert self._started.wait(15), "data plane did not start"
        if self._error:
            raise self._error
        wait_until(lambda: self.plane is not None and self.plane.follower.ready, 15)
        return self

    @property
    def dp(self) -> DataPlane:
        assert self.plane is not None
        return self.plane

    @property
    def rpc_port(self) -> int:
        return self.dp.flagd_ports["rpc"]

    @property
    def sync_port(self) -> int:
        return self.dp.flagd_ports["sync"]

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)


@dataclass
class Stack:
    api: TestClient
    env: dict[str, str]
    prefix: str
    logs: Path
    sdk_key: str = ""
    plane: Plane | None = None
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", *args], env=self.env, stdout=log, stderr=log
        )

    def stop_all(self) -> None:
        if self.plane is not None:
            self.plane.stop()
        for proc in self.processes.values():
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    @property
    def dp(self) -> Plane:
        assert self.plane is not None
        return self.plane

    def configure(self, flag: str, **config: Any) -> None:
        """PATCH the flag's configuration in the environment (a change made over REST)."""
        path = f"/api/v1/projects/{PROJECT}/flags/{flag}/environments/{ENV}"
        etag = self.api.get(path).headers["etag"]
        r = self.api.patch(path, json=config, headers={"If-Match": etag})
        assert r.status_code == 200, r.text

    def new_sdk_key(self, name: str) -> tuple[str, int]:
        r = self.api.post(f"/api/v1/projects/{PROJECT}/environments/{ENV}/sdk-keys", json={"name": name})
        assert r.status_code == 201, r.text
        return str(r.json()["key"]), int(r.json()["id"])


BOOL = {"on": True, "off": False}
SEGMENTS: list[dict[str, Any]] = [
    {
        "key": "beta",
        "name": "Beta",
        "included": ["u-vip"],
        "excluded": ["u-banned"],
        "rules": [{"clauses": [{"attribute": "country", "operator": "in", "values": ["AT"]}]}],
    }
]


def _flag(key: str, type_: str, variants: dict[str, Any], **config: Any) -> dict[str, Any]:
    return {
        "key": key,
        "name": key,
        "type": type_,
        "variants": variants,
        "environments": {ENV: {"enabled": True, **config}},
    }


FLAGS: list[dict[str, Any]] = [
    _flag(
        "bool-rule",
        "boolean",
        BOOL,
        off_variant="off",
        default_variant="off",
        rules=[
            {
                "id": "de",
                "clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}],
                "variant": "on",
            }
        ],
    ),
    _flag(
        "str-segment",
        "string",
        {"a": "Welcome", "b": "Hi there"},
        default_variant="a",
        rules=[
            {"id": "beta", "clauses": [{"operator": "segment_match", "values": ["beta"]}], "variant": "b"}
        ],
    ),
    _flag("int-static", "integer", {"normal": 100, "raised": 500}, default_variant="normal"),
    _flag(
        "float-rule",
        "float",
        {"low": 0.25, "high": 0.75},
        default_variant="low",
        rules=[
            {
                "id": "ent",
                "clauses": [{"attribute": "plan", "operator": "in", "values": ["ent", "pro"]}],
                "variant": "high",
            }
        ],
    ),
    _flag(
        "obj-static",
        "object",
        {"dark": {"bg": "#000", "sizes": [1, 2]}, "light": {"bg": "#fff"}},
        default_variant="dark",
    ),
    _flag(
        "split",
        "string",
        {"x": "X", "y": "Y"},
        default_split={"variations": [{"variant": "x", "weight": 5000}, {"variant": "y", "weight": 5000}]},
    ),
    {**_flag("disabled-off", "boolean", BOOL, off_variant="off", default_variant="on"), "environments": {}},
    _flag("disabled-none", "boolean", BOOL, default_variant="on"),
    _flag("switch", "boolean", BOOL, off_variant="off", default_variant="off"),
    _flag("obj-array", "object", {"list": [1, "x"], "map": {"a": 1}}, default_variant="list"),
    _flag(
        "prereq",
        "string",
        {"new": "new flow", "old": "old flow"},
        off_variant="old",
        default_variant="new",
        prerequisites=[{"flag": "bool-rule", "variant": "on"}],
    ),
]
# disabled-off: configured below (disabled, with an off variant); disabled-none: disabled, no off variant.
CONTEXTS: list[dict[str, Any]] = [
    {},
    {"targeting_key": "u1"},
    {"targeting_key": "u-vip"},
    {"targeting_key": "u2", "country": "DE", "plan": "ent"},
    {"targeting_key": "u3", "country": "AT"},
    {"targeting_key": "u-banned", "country": "AT", "plan": "pro"},
]


def create_environment(api: TestClient) -> str:
    """The matrix environment; returns an SDK key of it."""
    assert api.post("/api/v1/projects", json={"key": PROJECT, "name": "Shop"}).status_code == 201
    r = api.post(f"/api/v1/projects/{PROJECT}/environments", json={"key": ENV, "name": "Prod"})
    assert r.status_code == 201, r.text
    for segment in SEGMENTS:
        r = api.post(f"/api/v1/projects/{PROJECT}/segments", json=segment)
        assert r.status_code == 201, r.text
    for flag in FLAGS:
        r = api.post(f"/api/v1/projects/{PROJECT}/flags", json=flag)
        assert r.status_code == 201, r.text
    for key, config in (
        ("disabled-off", {"enabled": False, "off_variant": "off", "default_variant": "on"}),
        ("disabled-none", {"enabled": False, "off_variant": None}),
    ):
        path = f"/api/v1/projects/{PROJECT}/flags/{key}/environments/{ENV}"
        r = api.patch(path, json=config, headers={"If-Match": api.get(path).headers["etag"]})
        assert r.status_code == 200, r.text
    r = api.post(f"/api/v1/projects/{PROJECT}/environments/{ENV}/sdk-keys", json={"name": "backend"})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def family(reason: Any, error_code: Any) -> tuple[str, str]:
    """(reason, error code) as comparable names; flagd's provider answers a cached STATIC result as CACHED."""
    name = str(getattr(reason, "value", reason))
    code = str(getattr(error_code, "value", error_code) or "")
    if code:
        return "ERROR", code
    return ("STATIC" if name == "CACHED" else name), ""


def call_status(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    """The status code and details of a call expected to fail."""
    try:
        fn()
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or ""
    raise AssertionError("the call succeeded")
