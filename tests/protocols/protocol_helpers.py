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
        wait_until(lambda: self.plane is not None and self.plane.l1.ready, 15)
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
