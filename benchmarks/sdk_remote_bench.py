"""SDK remote mode: ``client.boolean`` of the reference flag against a real data plane, beside floors.

Floors, measured in the same run against the same data plane with the same loop:
- the generated stub's ``ResolveBoolean`` with a request built once (transport + data plane only);
- the generated stub with the request built from the context dict on every call (what any caller pays).

Reports calls/s of one thread calling in a loop and the p50/p99 latency of those calls; then calls/s of
4 threads sharing the client (and the stub). The data plane runs in its own process (uvloop); nothing is
asserted: these are figures. Local mode is benchmarked in ``benchmarks/sdk_bench.py``.

Run: ``.venv/bin/python -m benchmarks.sdk_remote_bench`` (``-n`` calls per case). Needs the Redis of
``FLAGYARD_BENCH_REDIS`` (default redis://127.0.0.1:6379/11); keys live under a fresh prefix, removed after.
``--json-out PATH`` also writes the rows as JSON (``benchmarks/results.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import grpc
import redis

from benchmarks.data_plane_bench import (
    BETA,
    CONTEXT,
    ENV,
    SDK_KEY,
    free_port,
    reference_flag,
    start_data_plane,
    struct,
    wait_serving,
)
from benchmarks.results import add_json_argument, row, write_json
from flagyard import FlagyardClient
from flagyard.contracts.redis import Change, SdkKeyRecord, apply_changes, hash_sdk_key, put_sdk_key
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc

REDIS_URL = os.environ.get("FLAGYARD_BENCH_REDIS", "redis://127.0.0.1:6379/11")
METADATA = (("authorization", f"Bearer {SDK_KEY}"),)
THREADS = 4


def measure(call: Callable[[], Any], n: int) -> tuple[float, float, float]:
    """(calls/s, p50 µs, p99 µs) of ``n`` sequential calls, after a warm-up."""
    for _ in range(min(500, n)):
        call()
    perf = time.perf_counter_ns
    samples = []
    append = samples.append
    started = perf()
    for _ in range(n):
        t0 = perf()
        call()
        append(perf() - t0)
    elapsed = (perf() - started) / 1e9
    quantiles = statistics.quantiles(samples, n=100)
    return n / elapsed, quantiles[49] / 1000, quantiles[98] / 1000


def threaded(call: Callable[[], Any], n: int, threads: int = THREADS) -> float:
    """Calls/s of ``threads`` threads making ``n`` calls each."""
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        barrier.wait()
        for _ in range(n):
            call()

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    started = time.perf_counter()
    for w in workers:
        w.join()
    return n * threads / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=5_000, help="calls per case")
    add_json_argument(parser)
    args = parser.parse_args()

    rds = redis.Redis.from_url(REDIS_URL)
    prefix = f"fybench-sdk-{uuid.uuid4().hex[:8]}"
    apply_changes(
        rds,
        prefix,
        ENV,
        [Change("segment", "beta", 1, BETA), Change("flag", "reference", 1, reference_flag("reference"))],
    )
    put_sdk_key(rds, prefix, hash_sdk_key(SDK_KEY), SdkKeyRecord(ENV, "bench", "bench", None))
    port = free_port()
    server = start_data_plane_with(prefix, port)
    try:
        wait_serving(port)
        target = f"127.0.0.1:{port}"
        channel = grpc.insecure_channel(target)
        stub = pb_grpc.EvaluationServiceStub(channel)
        prebuilt = pb.ResolveRequest(flag_key="reference", context=struct(CONTEXT))
        client = FlagyardClient(target=target, sdk_key=SDK_KEY, mode="remote")
        assert client.details("reference", False, CONTEXT).error_code is None

        cases: dict[str, Callable[[], Any]] = {
            "floor: stub, request built once": lambda: stub.ResolveBoolean(
                prebuilt, metadata=METADATA, timeout=0.5
            ),
            "floor: stub, request built per call": lambda: stub.ResolveBoolean(
                pb.ResolveRequest(flag_key="reference", context=struct(CONTEXT)),
                metadata=METADATA,
                timeout=0.5,
            ),
            "client.boolean (remote)": lambda: client.boolean("reference", False, CONTEXT),
        }
        print(f"data plane pid {server.pid} on {target}; {args.n} calls per case, one thread")
        print(f"{'case':<40} {'calls/s':>9} {'p50 µs':>8} {'p99 µs':>8} {f'{THREADS} threads calls/s':>20}")
        figures = {}
        for name, call in cases.items():
            rate, p50, p99 = measure(call, args.n)
            parallel = threaded(call, args.n // THREADS)
            print(f"{name:<40} {rate:>9.0f} {p50:>8.0f} {p99:>8.0f} {parallel:>20.0f}")
            figures[name] = (rate, p50, p99, parallel)
        write_json(args.json_out, remote_rows(figures, args.n))
        client.close()
        channel.close()
    finally:
        server.terminate()
        server.wait(10)
        keys = list(rds.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            rds.delete(*keys)
        rds.close()


def remote_rows(figures: dict[str, tuple[float, float, float, float]], n: int) -> list[dict[str, Any]]:
    """``client.boolean`` beside the stub with the request built per call (what any caller pays), and that
    stub's calls/s beside the stub with a prebuilt request (transport + data plane only). No goals."""
    floor_name = "stub, request built per call"
    (rate, p50, p99, parallel), (f_rate, f_p50, f_p99, f_parallel) = (
        figures["client.boolean (remote)"],
        figures[f"floor: {floor_name}"],
    )
    note = f"{n} sequential calls, one thread; data plane in its own process"
    return [
        row("SDK remote: client.boolean, 1 thread", rate, "calls/s", f_rate, floor_name, note=note),
        row("SDK remote: client.boolean, p50", p50, "µs", f_p50, floor_name, note=note),
        row("SDK remote: client.boolean, p99", p99, "µs", f_p99, floor_name, note=note),
        row(
            f"SDK remote: client.boolean, {THREADS} threads",
            parallel,
            "calls/s",
            f_parallel,
            floor_name,
            note=f"{THREADS} threads sharing the client (and the stub)",
        ),
        row(
            f"SDK remote: {floor_name}, 1 thread",
            f_rate,
            "calls/s",
            figures["floor: stub, request built once"][0],
            "stub, request built once",
            note=note,
        ),
    ]


def start_data_plane_with(prefix: str, port: int) -> Any:
    """The data-plane bench's server launcher, pointed at this bench's Redis."""
    import benchmarks.data_plane_bench as dp_bench

    dp_bench.REDIS_URL = REDIS_URL
    return start_data_plane(prefix, port)


if __name__ == "__main__":
    main()
