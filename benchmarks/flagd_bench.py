"""flagd protocol benchmark: the data plane's ``flagd.evaluation.v2.Service/ResolveBoolean`` beside its floor.

Figure: peak calls/s of ResolveBoolean of the reference flag (a segment, a regex, a comparison, a split; the
data-plane bench's) on the data plane's flagd RPC port, authenticated with ``authorization: Bearer``, the
context carrying ``targetingKey`` as flagd providers send it. Floor: a constant-answer grpc.aio server of the
same proto (parses the request with the same generated classes, answers a prebuilt response), measured by
the same multi-connection grpc.aio load loop in the same run. Then p50/p99 of both in an open loop at half
their peak.

Servers run in their own processes; the load generator runs here. Nothing is asserted: these are figures.
Run: ``.venv/bin/python -m benchmarks.flagd_bench`` (``--quick`` for a short run; ``--json-out PATH`` also
writes the rows as JSON). Needs the Redis of ``FLAGYARD_BENCH_REDIS`` (default redis://127.0.0.1:6379/15);
keys live under a fresh prefix, removed after.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
import uuid
from typing import Any

import grpc
import grpc.aio
import redis

from benchmarks.data_plane_bench import (
    BETA,
    CONTEXT,
    GOAL_UNARY_RATIO,
    REDIS_URL,
    ROOT,
    SDK_KEY,
    _run,
    clean,
    closed_loop,
    free_port,
    open_loop,
    reference_flag,
)
from benchmarks.results import add_json_argument, write_json
from benchmarks.results import row as result
from flagyard.contracts.redis import Change, SdkKeyRecord, apply_changes, hash_sdk_key, put_sdk_key
from flagyard.proto.gen.flagd.evaluation.v2 import evaluation_pb2 as ev2

ENV = "bench-flagd-env"
METHOD = "/flagd.evaluation.v2.Service/ResolveBoolean"
FLOOR_NAME = "constant-answer grpc.aio server, same flagd proto"


def request_bytes() -> bytes:
    context = {("targetingKey" if k == "targeting_key" else k): v for k, v in CONTEXT.items()}
    request = ev2.ResolveBooleanRequest(flag_key="flag-000")
    request.context.update(context)
    return bytes(request.SerializeToString())


def constant_server(port: int) -> None:
    """flagd.evaluation.v2.Service answering every ResolveBoolean with one prebuilt response."""
    response = ev2.ResolveBooleanResponse(value=False, variant="off", reason="SPLIT")
    response.metadata.update({"owner": "bench"})
    answer = response.SerializeToString()

    async def resolve(data: bytes, _context: Any) -> bytes:
        ev2.ResolveBooleanRequest.FromString(data)
        return answer

    def ident(b: bytes) -> bytes:
        return b

    async def main() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        handlers = {"ResolveBoolean": grpc.unary_unary_rpc_method_handler(resolve, ident, ident)}
        server.add_generic_rpc_handlers(
            [grpc.method_handlers_generic_handler("flagd.evaluation.v2.Service", handlers)]
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    _run(main())


def start_data_plane(prefix: str, rpc_port: int) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        FLAGYARD_REDIS_URL=REDIS_URL,
        FLAGYARD_REDIS_PREFIX=prefix,
        FLAGYARD_GRPC_HOST="127.0.0.1",
        FLAGYARD_GRPC_PORT=str(free_port()),
        FLAGYARD_FLAGD_RPC_PORT=str(rpc_port),
        FLAGYARD_FLAGD_SYNC_PORT=str(free_port()),
        FLAGYARD_METRICS_PORT="0",
        FLAGYARD_LOG_LEVEL="warning",
        FLAGYARD_DATA_PLANE_PROCESSES="1",
    )
    return subprocess.Popen([sys.executable, "-m", "flagyard.data_plane"], env=env, cwd=ROOT)


def start_floor(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "benchmarks.flagd_bench", "--constant-server", str(port)], cwd=ROOT
    )


def wait_serving(port: int, request: bytes, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            try:
                channel.unary_unary(METHOD)(request, metadata=_metadata(), timeout=2)
                return
            except grpc.RpcError:
                time.sleep(0.2)
    raise RuntimeError(f"server on {port} not serving after {timeout}s")


def _metadata() -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {SDK_KEY}"),)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs (noisier)")
    parser.add_argument("--constant-server", type=int, help=argparse.SUPPRESS)
    add_json_argument(parser)
    args = parser.parse_args()
    if args.constant_server:
        constant_server(args.constant_server)
        return
    seconds = 2.0 if args.quick else 5.0
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"fybench-{uuid.uuid4().hex[:8]}"
    procs: list[subprocess.Popen[bytes]] = []
    request = request_bytes()
    try:
        apply_changes(
            client,
            prefix,
            ENV,
            [Change("segment", "beta", 1, BETA), Change("flag", "flag-000", 1, reference_flag("flag-000"))],
        )
        put_sdk_key(client, prefix, hash_sdk_key(SDK_KEY), SdkKeyRecord(ENV, "bench", "bench", None))
        dp_port, floor_port = free_port(), free_port()
        procs += [start_data_plane(prefix, dp_port), start_floor(floor_port)]
        wait_serving(dp_port, request)
        wait_serving(floor_port, request)

        async def network() -> dict[str, float]:
            out: dict[str, float] = {}
            for name, port in (("floor", floor_port), ("dp", dp_port)):
                out[f"{name}_peak"] = await closed_loop(port, METHOD, request, seconds)
            for name, port in (("floor", floor_port), ("dp", dp_port)):
                out[f"{name}_p50"], out[f"{name}_p99"] = await open_loop(
                    port, METHOD, request, out[f"{name}_peak"] / 2, seconds
                )
            return out

        net: dict[str, float] = {}

        async def collect() -> None:
            net.update(await network())

        _run(collect())
        dp, floor = net["dp_peak"], net["floor_peak"]
        print(
            f"flagd ResolveBoolean (v2): {dp:,.0f} calls/s vs {floor:,.0f} calls/s floor ({dp / floor:.0%})"
        )
        print(
            f"  p50/p99 at half peak: {net['dp_p50']:.2f}/{net['dp_p99']:.2f} ms vs "
            f"{net['floor_p50']:.2f}/{net['floor_p99']:.2f} ms floor"
        )
        rows = [
            result(
                "flagd ResolveBoolean (v2), peak",
                dp,
                "calls/s",
                floor,
                FLOOR_NAME,
                goal_op=">=",
                goal_value=GOAL_UNARY_RATIO,
                goal_on="ratio",
            ),
            result(
                "flagd ResolveBoolean (v2), p50 at half peak",
                net["dp_p50"],
                "ms",
                net["floor_p50"],
                FLOOR_NAME,
            ),
            result(
                "flagd ResolveBoolean (v2), p99 at half peak",
                net["dp_p99"],
                "ms",
                net["floor_p99"],
                FLOOR_NAME,
            ),
        ]
        write_json(args.json_out, rows)
    finally:
        for proc in procs:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        clean(client, prefix)
        client.close()


if __name__ == "__main__":
    main()
