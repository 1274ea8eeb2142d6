"""Redis going away while serving, and several processes on one port: real processes, real sockets."""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import redis
from dp_helpers import ENV, FLAGS, REDIS_DB, SDK_KEY, Client, Plane, seed, settings_for, wait_until
from grpc_health.v1 import health_pb2, health_pb2_grpc
from polling_helpers import free_port
from prometheus_client.mmap_dict import MmapedDict

from flagyard.contracts.redis import SdkKeyRecord, apply_change, hash_sdk_key, put_sdk_key
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]


class RedisServer:
    """A redis-server of our own (AOF on, so a restart keeps the data) on a free port."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        wait_until(lambda: _ping(client), timeout=10)
        client.close()

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.exceptions.ConnectionError:
        return False


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.kill()


def test_redis_restart__while_serving__serves_from_l1_then_catches_up(
    own_redis: RedisServer, planes: list[Plane]
) -> None:
    prefix = "fy-restart"
    rds = own_redis.client()
    seed(rds, prefix)
    plane = Plane(settings_for(prefix, redis_url=f"redis://127.0.0.1:{own_redis.port}/0")).start()
    planes.append(plane)
    client = Client(plane.port, SDK_KEY)
    health = health_pb2_grpc.HealthStub(client.channel)
    registry = plane.plane.metrics.registry  # type: ignore[union-attr]

    def redis_health() -> int:
        request = health_pb2.HealthCheckRequest(service="flagyard.data_plane.Redis")
        return int(health.Check(request, timeout=5).status)

    def overall_health() -> int:
        return int(health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5).status)

    try:
        assert client.resolve("ResolveString", "banner").value == "Welcome"

        own_redis.kill()
        wait_until(lambda: registry.get_sample_value("flagyard_data_plane_degraded") == 1, timeout=10)

        assert redis_health() == health_pb2.HealthCheckResponse.NOT_SERVING
        assert overall_health() == health_pb2.HealthCheckResponse.SERVING
        for _ in range(20):  # served from L1, with the cached key, while Redis is down
            response = client.resolve("ResolveString", "banner")
            assert (response.value, response.error_code) == ("Welcome", pb.ERROR_CODE_UNSPECIFIED)
        assert client.resolve_all({}).flags["rate-limit"].integer_value == 100
        unverifiable = Client(plane.port, "never-seen-key")
        with pytest.raises(grpc.RpcError) as caught:
            unverifiable.resolve("ResolveString", "banner")
        unverifiable.close()
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

        own_redis.start()
        rds = own_redis.client()
        apply_change(rds, prefix, ENV, "flag", "banner", 2, {**FLAGS["banner"], "default_variant": "b"})

        wait_until(lambda: client.resolve("ResolveString", "banner").value == "Hi", timeout=10)
        wait_until(lambda: registry.get_sample_value("flagyard_data_plane_degraded") == 0, timeout=5)
        assert redis_health() == health_pb2.HealthCheckResponse.SERVING
        assert registry.get_sample_value("flagyard_data_plane_stream_reconnects_total") == 1
    finally:
        client.close()
        rds.close()


def test_processes__two_on_one_port__both_serve(rds: redis.Redis, seeded: str, tmp_path: Path) -> None:
    """Both workers serve the gRPC port and the flagd RPC port (every port serves every service): each
    worker's own counter counts calls through each port (ResolveBoolean through one, ResolveString the
    other)."""
    port, flagd_port, metrics_port = free_port(), free_port(), free_port()
    env = dict(
        os.environ,
        FLAGYARD_REDIS_URL=f"redis://127.0.0.1:6379/{REDIS_DB}",
        FLAGYARD_REDIS_PREFIX=seeded,
        FLAGYARD_GRPC_HOST="127.0.0.1",
        FLAGYARD_FLAGD_RPC_PORT=str(flagd_port),
        FLAGYARD_FLAGD_SYNC_PORT=str(free_port()),
        FLAGYARD_OFREP_HOST="127.0.0.1",
        FLAGYARD_OFREP_PORT=str(free_port()),
        FLAGYARD_METRICS_PORT=str(metrics_port),
        FLAGYARD_LOG_LEVEL="warning",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "flagyard.data_plane", "--processes", "2", "--port", str(port)],
        env=env,
        cwd=ROOT,
    )
    try:

        def serving() -> bool:
            c = Client(port, SDK_KEY)
            try:
                return bool(c.resolve("ResolveString", "banner").value == "Welcome")
            except grpc.RpcError:
                return False
            finally:
                c.close()

        wait_until(serving, timeout=60, interval=0.2)

        def served_by(method: str) -> dict[str, float]:
            counts: dict[str, float] = {}
            for path in glob.glob(str(tmp_path / "counter_*.db")):
                for _key, metric, labels, _lbl, value in _values(path):
                    if metric == "flagyard_data_plane_requests_total" and labels.get("method") == method:
                        counts[path] = counts.get(path, 0) + value
            return counts

        strings_before = served_by("ResolveString")  # the readiness calls above

        def both_served() -> bool:
            for _ in range(10):  # fresh connections: the kernel spreads them over the processes
                for target, method, flag, context, expected in (
                    (port, "ResolveBoolean", "new-checkout", {"targeting_key": "u-vip"}, True),
                    (flagd_port, "ResolveString", "banner", None, "Welcome"),
                ):
                    c = Client(target, SDK_KEY)
                    failure: grpc.RpcError | None = None
                    try:
                        value = c.resolve(method, flag, context).value
                    except grpc.RpcError as exc:
                        failure = exc
                    finally:
                        c.close()
                    if failure is not None:
                        # The other worker may still be loading: readiness is per process, and the call
                        # above that found the port ready reached one of them. Nothing else is tolerated.
                        assert failure.code() is grpc.StatusCode.UNAVAILABLE, failure
                        assert "not ready" in (failure.details() or ""), failure
                        return False
                    assert value == expected
            strings = served_by("ResolveString")
            through_flagd = [path for path, n in strings.items() if n > strings_before.get(path, 0)]
            return len(served_by("ResolveBoolean")) == 2 and len(through_flagd) == 2

        wait_until(both_served, timeout=30, interval=0.1)
        assert len(served_by("ResolveBoolean")) == 2
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0


def _values(path: str) -> list[tuple[str, str, dict[str, str], str, float]]:
    import json

    out = []
    for key, value, _ts, _pos in MmapedDict.read_all_values_from_file(path):
        metric, name, labels, _help = json.loads(key)
        out.append((key, name, labels, metric, value))
    return out


def test_redis_restarts_empty__environment_first_used_before_redis_held_it__still_served(
    own_redis: RedisServer, planes: list[Plane]
) -> None:
    """An environment first asked for before the syncer wrote it is loaded empty and filled by the stream.
    When Redis then restarts empty, the reload after reconnecting must not take Redis's nothing for the
    environment's state: it held flags, so Redis lost them and L1 keeps serving until they are restored."""
    prefix = "fy-first-empty"
    rds = own_redis.client()
    put_sdk_key(rds, prefix, hash_sdk_key(SDK_KEY), SdkKeyRecord(ENV, "shop", "production", None))
    plane = Plane(settings_for(prefix, redis_url=f"redis://127.0.0.1:{own_redis.port}/0")).start()
    planes.append(plane)
    client = Client(plane.port, SDK_KEY)
    registry = plane.plane.metrics.registry  # type: ignore[union-attr]
    try:
        assert client.resolve("ResolveString", "banner").error_code == pb.ERROR_CODE_FLAG_NOT_FOUND
        seed(rds, prefix)
        # Every seeded flag, not only the first one to arrive: the stream may still be delivering the rest.
        wait_until(lambda: sorted(client.resolve_all({}).flags) == sorted(FLAGS), timeout=10)
        assert client.resolve("ResolveString", "banner").value == "Welcome"
        rds.close()

        own_redis.kill()
        for leftover in own_redis.directory.glob("appendonly*"):
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        own_redis.start()
        rds = own_redis.client()
        assert rds.dbsize() == 0
        put_sdk_key(rds, prefix, hash_sdk_key(SDK_KEY), SdkKeyRecord(ENV, "shop", "production", None))
        wait_until(
            lambda: registry.get_sample_value("flagyard_data_plane_stream_reconnects_total") == 1, timeout=10
        )

        assert client.resolve("ResolveString", "banner").value == "Welcome"
        assert sorted(client.resolve_all({}).flags) == sorted(FLAGS)
    finally:
        client.close()
        rds.close()
