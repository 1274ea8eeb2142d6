"""Propagation benchmark: from an admin write's 2xx to the data plane serving the new value.

Starts a whole stack from real processes on loopback — the control plane (uvicorn, one worker), one
syncer worker and one data plane — over a scratch PostgreSQL database and a fresh Redis prefix, then
makes ``--changes`` sequential changes to one flag. After each PATCH returns 2xx it polls the data plane
over gRPC until the new version is served. Goal: p50 ≤ 20 ms, p99 ≤ 100 ms. The control plane runs with
its default (background) outbox dispatch, so the 2xx comes before the RQ job is queued and the figure
includes that hop.

Floor, same run: the Redis hop every change must make at least once — XADD on one connection seen by a
blocked XREAD on another (the data plane's follower reads exactly like that).

Run: ``.venv/bin/python -m benchmarks.propagation_bench``; ``--json-out PATH`` also writes the rows as JSON
(``benchmarks/results.py``), ``--samples-out PATH`` every latency in ms (``{"propagation_ms": [...],
"floor_ms": [...]}``).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import psycopg
import redis
from alembic import command
from alembic.config import Config
from google.protobuf import struct_pb2

from benchmarks.results import add_json_argument, row, write_json
from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("FLAGYARD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FLAGYARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise SystemExit(f"timed out waiting for {what}")


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def redis_hop_floor(samples: int) -> list[float]:
    """Milliseconds from XADD on one connection to a blocked XREAD on another seeing it."""
    stream = f"flagyard-bench-floor-{uuid.uuid4().hex[:8]}"
    writer, reader = redis.Redis.from_url(REDIS_URL), redis.Redis.from_url(REDIS_URL)
    results: list[float] = []
    last_id = "0-0"

    def read(after: str, seen: threading.Event, box: dict[str, float]) -> None:
        reader.xread({stream: after}, block=2000, count=1)
        box["t"] = time.perf_counter()
        seen.set()

    try:
        for _ in range(samples):
            seen, box = threading.Event(), {}
            thread = threading.Thread(target=read, args=(last_id, seen, box))
            thread.start()
            time.sleep(0.002)
            start = time.perf_counter()
            last_id = writer.xadd(stream, {"n": "1"}).decode()
            seen.wait(3)
            thread.join()
            results.append((box["t"] - start) * 1000)
    finally:
        writer.delete(stream)
        writer.close()
        reader.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=200)
    add_json_argument(parser)
    parser.add_argument("--samples-out", type=Path, metavar="PATH", help="write every latency (ms) as JSON")
    args = parser.parse_args()

    db = f"flagyard_bench_prop_{uuid.uuid4().hex[:8]}"
    prefix = f"fybench-{uuid.uuid4().hex[:8]}"
    queue = f"flagyard-sync-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    db_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{db}"
    processes: list[subprocess.Popen[bytes]] = []
    logs = Path(tempfile.mkdtemp(prefix="flagyard-prop-bench-"))
    try:
        config = Config(str(ROOT / "alembic.ini"))
        config.set_main_option("sqlalchemy.url", db_url)
        config.attributes["configure_logging"] = False
        command.upgrade(config, "head")
        http_port, grpc_port = free_port(), free_port()
        env = {
            **os.environ,
            "FLAGYARD_DATABASE_URL": db_url,
            "FLAGYARD_REDIS_URL": REDIS_URL,
            "FLAGYARD_REDIS_PREFIX": prefix,
            "FLAGYARD_SYNC_QUEUE": queue,
            "FLAGYARD_RATE_LIMIT_REQUESTS": "0",
            "FLAGYARD_ACCESS_LOG": "false",
            "FLAGYARD_LOG_LEVEL": "WARNING",
            "FLAGYARD_SYNCER_METRICS_PORT": "0",
            "FLAGYARD_METRICS_PORT": "0",
            "FLAGYARD_RECONCILE_INTERVAL_SECONDS": "1",
            "FLAGYARD_STREAM_BLOCK_MS": "1000",
        }

        def start(name: str, *cmd: str) -> None:
            log = (logs / f"{name}.log").open("ab")
            processes.append(subprocess.Popen([sys.executable, "-m", *cmd], env=env, stdout=log, stderr=log))

        app = "flagyard.control_plane.main:app_from_env"
        start(
            "control_plane",
            "uvicorn",
            "--factory",
            app,
            "--port",
            str(http_port),
            "--workers",
            "1",
            "--no-access-log",
            "--log-level",
            "warning",
        )
        start("syncer", "flagyard.syncer", "worker")
        start("data_plane", "flagyard.data_plane", "--port", str(grpc_port))
        api = httpx.Client(
            base_url=f"http://127.0.0.1:{http_port}",
            headers={"Authorization": f"Bearer {DEV_BOOTSTRAP_ADMIN_KEY}"},
            timeout=10,
        )
        wait_until(lambda: _get_ok(api, "/healthz"), 30, "the control plane")
        api.post("/api/v1/projects", json={"key": "bench", "name": "Bench"}).raise_for_status()
        api.post(
            "/api/v1/projects/bench/environments", json={"key": "prod", "name": "Prod"}
        ).raise_for_status()
        body = {"key": "f", "name": "F", "type": "boolean", "variants": {"on": True, "off": False}}
        api.post("/api/v1/projects/bench/flags", json=body).raise_for_status()
        sdk_key = api.post("/api/v1/projects/bench/environments/prod/sdk-keys", json={"name": "b"}).json()[
            "key"
        ]
        channel = grpc.insecure_channel(f"127.0.0.1:{grpc_port}")
        stub = pb_grpc.EvaluationServiceStub(channel)
        request = pb.ResolveRequest(flag_key="f", context=struct_pb2.Struct())
        metadata = (("authorization", f"Bearer {sdk_key}"),)

        def served_version() -> int:
            try:
                reply = stub.ResolveBoolean(request, metadata=metadata, timeout=2)
            except grpc.RpcError:
                return -1
            return int(reply.version) if reply.HasField("version") else -1

        wait_until(lambda: served_version() > 0, 60, "the data plane to serve the flag")
        path = "/api/v1/projects/bench/flags/f/environments/prod"
        etag = api.get(path).headers["etag"]
        latencies: list[float] = []
        for i in range(args.changes):
            response = api.patch(
                path,
                json={"enabled": True, "default_variant": "on" if i % 2 else "off"},
                headers={"If-Match": etag},
            )
            response.raise_for_status()
            committed = time.perf_counter()
            etag = response.headers["etag"]
            version = int(etag.strip('W/"'))
            while served_version() < version:
                if time.perf_counter() - committed > 10:
                    raise SystemExit(f"change {i} (version {version}) not served within 10 s")
            latencies.append((time.perf_counter() - committed) * 1000)
        channel.close()
        api.close()
        floor = redis_hop_floor(200)
        print(f"propagation of {args.changes} sequential changes: REST 2xx -> the data plane serves it")
        print(f"{'':<34} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'goal':>22}")
        for name, samples, goal in (
            ("propagation", latencies, "p50 <= 20, p99 <= 100"),
            ("floor: Redis XADD -> XREAD BLOCK", floor, ""),
        ):
            print(
                f"{name:<34} {statistics.median(samples):>8.2f} {percentile(samples, 0.99):>8.2f} "
                f"{max(samples):>8.2f} {goal:>22}"
            )
        floor_name = "Redis XADD -> blocked XREAD on another connection"
        note = f"{args.changes} sequential changes, REST 2xx -> served over gRPC; max {max(latencies):.2f} ms"
        p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
        write_json(
            args.json_out,
            [
                row(
                    "propagation p50",
                    p50,
                    "ms",
                    statistics.median(floor),
                    floor_name,
                    goal_op="<=",
                    goal_value=20.0,
                    note=note,
                ),
                row(
                    "propagation p99",
                    p99,
                    "ms",
                    percentile(floor, 0.99),
                    floor_name,
                    goal_op="<=",
                    goal_value=100.0,
                    note=note,
                ),
            ],
        )
        if args.samples_out:
            args.samples_out.parent.mkdir(parents=True, exist_ok=True)
            args.samples_out.write_text(json.dumps({"propagation_ms": latencies, "floor_ms": floor}))
    finally:
        for proc in processes:
            proc.terminate()
        for proc in processes:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        for key in client.scan_iter(f"rq:*{queue}*"):
            client.delete(key)
        client.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def _get_ok(api: httpx.Client, path: str) -> bool:
    try:
        return api.get(path).status_code == 200
    except httpx.HTTPError:
        return False


if __name__ == "__main__":
    main()
