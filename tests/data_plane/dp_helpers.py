"""Data-plane test helpers and fixtures (re-exported by conftest.py): a real Redis (db 14, or
``FLAGYARD_TEST_REDIS_DB``; a fresh key prefix per test), real grpc.aio data planes run in a thread each,
real gRPC clients."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import pytest
import redis
from google.protobuf import struct_pb2
from polling_helpers import wait_until as wait_until

from flagyard.contracts.redis import SdkKeyRecord, apply_change, hash_sdk_key, put_sdk_key
from flagyard.data_plane.server import DataPlane
from flagyard.data_plane.settings import DataPlaneSettings
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc

REDIS_DB = int(os.environ.get("FLAGYARD_TEST_REDIS_DB", "14"))
ENV = "env-1"
SDK_KEY = "sdk-test-key-1"
META = {"project": "shop", "environment": "production"}

FLAGS: dict[str, dict[str, Any]] = {
    "new-checkout": {
        "key": "new-checkout",
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "off_variant": "off",
        "default_variant": "off",
        "rules": [
            {"id": "beta", "clauses": [{"operator": "segment_match", "values": ["beta"]}], "variant": "on"},
        ],
        "metadata": {"owner": "checkout"},
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
                "clauses": [{"attribute": "plan", "operator": "eq", "values": ["ent"]}],
                "variant": "raised",
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
        "variants": {"dark": {"bg": "#000", "sizes": [1, 2]}, "list": [1, "x"]},
        "default_variant": "dark",
    },
    "no-default": {"key": "no-default", "type": "boolean", "variants": {"on": True}, "enabled": False},
}
SEGMENTS: dict[str, dict[str, Any]] = {
    "beta": {
        "key": "beta",
        "included": ["u-vip"],
        "rules": [{"clauses": [{"attribute": "country", "operator": "in", "values": ["DE", "AT"]}]}],
    }
}


def struct(context: dict[str, Any] | None) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    if context:
        s.update(context)
    return s


class Client:
    """Real gRPC stubs bound to one data plane and one SDK key."""

    def __init__(self, port: int, sdk_key: str | None = SDK_KEY) -> None:
        self.port = port
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{port}",
            # a connection of its own (gRPC shares connections between channels by default)
            options=[("grpc.max_receive_message_length", 64 << 20), ("grpc.use_local_subchannel_pool", 1)],
        )
        self.evaluation = pb_grpc.EvaluationServiceStub(self.channel)
        self.sync = pb_grpc.SyncServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {sdk_key}"),) if sdk_key else ()

    def resolve(self, method: str, flag_key: str, context: dict[str, Any] | None = None) -> Any:
        call = getattr(self.evaluation, method)
        return call(
            pb.ResolveRequest(flag_key=flag_key, context=struct(context)), metadata=self.metadata, timeout=5
        )

    def resolve_all(self, context: dict[str, Any] | None = None, keys: list[str] | None = None) -> Any:
        return self.evaluation.ResolveAll(
            pb.ResolveAllRequest(context=struct(context), flag_keys=keys or []),
            metadata=self.metadata,
            timeout=5,
        )

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Plane:
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

    def _main(self) -> None:
        async def run() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.plane = DataPlane(self.settings)
            self.port = await self.plane.start()
            self._started.set()
            await self._stop.wait()
            await self.plane.stop(grace=0.5)

        try:
            asyncio.run(run())
        except BaseException as exc:
            self._error = exc
            self._started.set()

    def start(self, wait_ready: bool = True) -> Plane:
        self._thread.start()
        assert self._started.wait(10), "data plane did not start"
        if self._error:
            raise self._error
        if wait_ready:
            wait_until(lambda: self.plane is not None and self.plane.follower.ready, 10)
        return self

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` in the plane's event loop thread (to read its state) and return its result."""
        assert self._loop is not None
        result: list[Any] = []
        done = threading.Event()

        def run() -> None:
            result.append(fn())
            done.set()

        self._loop.call_soon_threadsafe(run)
        assert done.wait(5)
        return result[0]

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(15)


@pytest.fixture
def rds() -> Iterator[redis.Redis]:
    client = redis.Redis(db=REDIS_DB)
    yield client
    client.close()


@pytest.fixture
def prefix(rds: redis.Redis) -> Iterator[str]:
    p = f"fytest-{uuid.uuid4().hex[:12]}"
    yield p
    keys = list(rds.scan_iter(f"{p}:*", count=1000))
    if keys:
        rds.delete(*keys)


def settings_for(prefix: str, redis_url: str | None = None, **overrides: Any) -> DataPlaneSettings:
    values: dict[str, Any] = {
        "redis_url": redis_url or f"redis://127.0.0.1:6379/{REDIS_DB}",
        "redis_prefix": prefix,
        "grpc_host": "127.0.0.1",
        "grpc_port": 0,
        "flagd_rpc_port": 0,
        "flagd_sync_port": 0,
        "metrics_port": 0,
        "ofrep_port": 0,
        "stream_block_ms": 200,
        "env_refresh_seconds": 0.3,
        "sync_heartbeat_seconds": 5,
        "log_json": False,
        "log_level": "warning",
    } | overrides
    return DataPlaneSettings(**values)


def seed(client: redis.Redis, prefix: str, env: str = ENV, sdk_key: str = SDK_KEY, version: int = 1) -> None:
    """Write the test environment through the syncer's writer, plus its SDK key."""
    for key, segment in SEGMENTS.items():
        apply_change(client, prefix, env, "segment", key, version, segment, META)
    for key, flag in FLAGS.items():
        apply_change(client, prefix, env, "flag", key, version, flag, META)
    put_sdk_key(client, prefix, hash_sdk_key(sdk_key), SdkKeyRecord(env, "shop", "production", None))


@pytest.fixture
def seeded(rds: redis.Redis, prefix: str) -> str:
    seed(rds, prefix)
    return prefix


@pytest.fixture
def planes() -> Iterator[list[Plane]]:
    started: list[Plane] = []
    yield started
    for plane in started:
        plane.stop()


@pytest.fixture
def plane(seeded: str, planes: list[Plane]) -> Plane:
    p = Plane(settings_for(seeded)).start()
    planes.append(p)
    return p


@pytest.fixture
def client(plane: Plane) -> Iterator[Client]:
    with Client(plane.port) as c:
        yield c
