"""Helpers and fixtures of the SDK's remote/local/async tests: a real Redis (db 11, a fresh key prefix per
test, removed after), real data planes (in a thread, or a process that can be killed), written through the
syncer's Redis writer. Test modules define their fixtures with :func:`seeded_env` and
:func:`stopping_planes`."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import redis
from polling_helpers import free_port as free_port
from polling_helpers import wait_until as wait_until

from flagyard import ProviderEvent
from flagyard.contracts.redis import SdkKeyRecord, apply_change, hash_sdk_key, put_sdk_key
from flagyard.data_plane.server import DataPlane
from flagyard.data_plane.settings import DataPlaneSettings
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
REDIS_DB = int(os.environ.get("FLAGYARD_TEST_REDIS_DB", "11"))
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
ENV_ID = "env-sdk"
SDK_KEY = "sdk-key-remote-local"
META = {"project": "shop", "environment": "production"}

FLAGS: dict[str, dict[str, Any]] = {
    "new-checkout": {
        "key": "new-checkout",
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "off_variant": "off",
        "default_variant": "off",
        "metadata": {"owner": "checkout"},
        "rules": [
            {"id": "beta", "variant": "on", "clauses": [{"operator": "segment_match", "values": ["beta"]}]}
        ],
    },
    "banner": {
        "key": "banner",
        "type": "string",
        "variants": {"a": "Welcome", "b": "Hi"},
        "default_variant": "a",
    },
    "rate-limit": {
        "key": "rate-limit",
        "type": "integer",
        "variants": {"normal": 100, "raised": 500},
        "default_variant": "normal",
        "rules": [
            {
                "id": "big",
                "variant": "raised",
                "clauses": [{"attribute": "plan", "operator": "eq", "values": ["ent"]}],
            }
        ],
    },
    "ratio": {
        "key": "ratio",
        "type": "float",
        "variants": {"low": 0.25, "high": 0.75},
        "default_variant": "high",
    },
    "theme": {
        "key": "theme",
        "type": "object",
        "variants": {"dark": {"bg": "#000", "sizes": [1, 2]}},
        "default_variant": "dark",
    },
    "gated": {
        "key": "gated",
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "off_variant": "off",
        "default_variant": "on",
        "prerequisites": [{"flag": "new-checkout", "variant": "on"}],
    },
}
SEGMENTS: dict[str, dict[str, Any]] = {
    "beta": {
        "key": "beta",
        "included": ["u-vip"],
        "rules": [{"clauses": [{"attribute": "country", "operator": "in", "values": ["DE", "AT"]}]}],
    }
}
BETA_USER = {"targeting_key": "u-1", "country": "DE"}


class Env:
    """One environment under a fresh prefix, written through the syncer's writer."""

    def __init__(self, rds: redis.Redis, prefix: str) -> None:
        self.rds = rds
        self.prefix = prefix
        self.versions: dict[tuple[str, str], int] = {}

    def seed(self) -> None:
        for key, segment in SEGMENTS.items():
            self.put("segment", key, segment)
        for key, flag in FLAGS.items():
            self.put("flag", key, flag)
        put_sdk_key(
            self.rds, self.prefix, hash_sdk_key(SDK_KEY), SdkKeyRecord(ENV_ID, "shop", "production", None)
        )

    def put(self, kind: str, key: str, definition: dict[str, Any] | None) -> int:
        """Write (or with ``None`` delete) a definition at the next version; the new revision."""
        version = self.versions.get((kind, key), 0) + 1
        self.versions[kind, key] = version
        return apply_change(self.rds, self.prefix, ENV_ID, kind, key, version, definition, META).revision  # type: ignore[arg-type]

    def put_flag(self, key: str, **changes: Any) -> int:
        return self.put("flag", key, {**copy.deepcopy(FLAGS[key]), **changes})

    def settings(self, port: int = 0, **overrides: Any) -> DataPlaneSettings:
        values: dict[str, Any] = {
            "redis_url": REDIS_URL,
            "redis_prefix": self.prefix,
            "grpc_host": "127.0.0.1",
            "grpc_port": port,
            "flagd_rpc_port": 0,  # not flagd's well-known ports: several planes run at once
            "flagd_sync_port": 0,
            "ofrep_port": 0,
            "metrics_port": 0,
            "stream_block_ms": 100,
            "env_refresh_seconds": 0.3,
            "sync_heartbeat_seconds": 5,
            "sync_resume_wait_seconds": 0.2,
            "sdk_key_negative_cache_seconds": 0.5,
            "log_json": False,
            "log_level": "error",
        } | overrides
        return DataPlaneSettings(**values)

    def process_env(self) -> dict[str, str]:
        return dict(
            os.environ,
            FLAGYARD_REDIS_URL=REDIS_URL,
            FLAGYARD_REDIS_PREFIX=self.prefix,
            FLAGYARD_GRPC_HOST="127.0.0.1",
            FLAGYARD_METRICS_PORT="0",
            FLAGYARD_LOG_LEVEL="error",
            FLAGYARD_LOG_JSON="false",
            FLAGYARD_STREAM_BLOCK_MS="100",
            FLAGYARD_LAZY_COMPILE="false",
        )


class ThreadPlane:
    """A DataPlane serving in its own thread and event loop."""

    def __init__(self, settings: DataPlaneSettings) -> None:
        self.settings = settings
        self.port = 0
        self.plane: DataPlane | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.plane = DataPlane(self.settings)
            self.port = await self.plane.start()
            self._started.set()
            await self._stop.wait()
            await self.plane.stop(grace=0)

        try:
            asyncio.run(run())
        except BaseException as exc:
            self._error = exc
            self._started.set()

    def start(self) -> ThreadPlane:
        self._thread.start()
        assert self._started.wait(10), "data plane did not start"
        if self._error:
            raise self._error
        wait_until(lambda: self.plane is not None and self.plane.follower.ready, 10)
        return self

    def sample(self, name: str, labels: dict[str, str] | None = None) -> float:
        assert self.plane is not None
        return self.plane.metrics.registry.get_sample_value(name, labels or {}) or 0.0

    def requests(self, method: str, code: str) -> float:
        return self.sample(
            "flagyard_data_plane_requests_total", {"protocol": "flagyard", "method": method, "code": code}
        )

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)


class ProcessPlane:
    """``python -m flagyard.data_plane`` in a process of its own, on a fixed port: kill -9 and restart."""

    def __init__(self, env: Env, port: int) -> None:
        self.env = env
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> ProcessPlane:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "flagyard.data_plane", "--port", str(self.port)],
            env=self.env.process_env(),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
        )
        channel = grpc.insecure_channel(self.target)
        stub = pb_grpc.EvaluationServiceStub(channel)
        metadata = (("authorization", f"Bearer {SDK_KEY}"),)

        def serving() -> bool:
            try:
                stub.ResolveAll(pb.ResolveAllRequest(flag_keys=["banner"]), metadata=metadata, timeout=1)
            except grpc.RpcError:
                return False
            return True

        try:
            wait_until(serving, timeout=30, interval=0.1)
        finally:
            channel.close()
        return self

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)


class Events:
    """A listener recording provider events, with waits that poll."""

    def __init__(self) -> None:
        self.seen: list[tuple[ProviderEvent, list[str], str | None]] = []
        self._lock = threading.Lock()

    def __call__(self, event: ProviderEvent, flags: list[str], message: str | None) -> None:
        with self._lock:
            self.seen.append((event, list(flags), message))

    def of(self, event: ProviderEvent) -> list[tuple[ProviderEvent, list[str], str | None]]:
        with self._lock:
            return [e for e in self.seen if e[0] is event]

    def wait(self, event: ProviderEvent, count: int = 1, timeout: float = 10.0) -> list[Any]:
        return wait_until(lambda: len(self.of(event)) >= count and self.of(event), timeout)  # type: ignore[no-any-return]


def seeded_env() -> Iterator[Env]:
    """A seeded environment under a fresh prefix, removed after (for a module's ``env`` fixture)."""
    rds = redis.Redis(db=REDIS_DB)
    environment = Env(rds, f"fysdk-{uuid.uuid4().hex[:12]}")
    environment.seed()
    yield environment
    keys = list(rds.scan_iter(f"{environment.prefix}:*", count=1000))
    if keys:
        rds.delete(*keys)
    rds.close()


def stopping_planes() -> Iterator[list[ThreadPlane]]:
    """A list to append started planes to; all stopped after (for a module's ``planes`` fixture)."""
    started: list[ThreadPlane] = []
    yield started
    for plane in started:
        plane.stop()


def unused_target() -> str:
    """An address nothing listens on (connection refused)."""
    return f"127.0.0.1:{free_port()}"
