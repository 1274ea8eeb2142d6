"""Bulk ResolveAll's cost above the wire, beside the in-process cost of the evaluations it answers.

Issue 18's goal: for ResolveAll over ~100 flags with a context that differs on every call, the server's
cost per call above a server that returns the same prebuilt response (the echo server of
``data_plane_bench``) is at most 1.5 × the in-process cost of evaluating those flags for that context.

Measured per call, for each server, in the same run, the servers alternating (best of ``ROUNDS``):

* server CPU µs per call: the server process's CPU time (``/proc/<pid>/stat`` utime + stime) over a
  closed-loop run divided by the calls answered. CPU time does not depend on whether the (Python) load
  generator or the other load on this shared 2-core machine is what limits the calls/s, so the difference
  data plane − echo is the server's own cost above the floor;
* calls/s (and flag evaluations/s) of the same runs, for the record: the load generator is Python, so these
  are lower than h2load's figures in ``data_plane_bench`` (h2load cannot vary the context per call);
* in process: the bare evaluation of the same flags for the same contexts (``flag.evaluate`` per flag, as
  the handler calls it), and the handler's work without the transport (context conversion + evaluation +
  encoding).

Two environments, ``FLAG_COUNTS`` flags each (reference flags), give the fixed cost per call and the cost
per flag, from which the 500 k evaluations/s question is answered with these figures.

Run: ``.venv/bin/python -m benchmarks.bulk_bench`` (``--quick``; ``--json-out PATH``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
import redis

from benchmarks.data_plane_bench import (
    BETA,
    CONTEXT,
    REDIS_URL,
    SDK_KEY,
    _path,
    free_port,
    reference_flag,
    start_data_plane,
    start_echo,
    struct,
    wait_serving,
)
from benchmarks.results import add_json_argument, write_json
from benchmarks.results import row as result
from flagyard.contracts.redis import Change, SdkKeyRecord, apply_changes, hash_sdk_key, put_sdk_key
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.rule_engine import Flag, FlagSet, Segment, compile_flag, compile_segment

FLAG_COUNTS = (100, 400)
GOAL_RATIO = 1.5
GOAL_EVALS = 500_000
CONTEXTS = 20_000
ROUNDS = 3
CLK_TCK = os.sysconf("SC_CLK_TCK")


def env_name(flags: int) -> str:
    return f"bulk-env-{flags}"


def sdk_key(flags: int) -> str:
    return f"bulk-sdk-key-{flags}"


def contexts(count: int) -> list[dict[str, Any]]:
    """Distinct contexts: a targeting key and email of their own; one in six in a beta country."""
    return [
        {
            **CONTEXT,
            "targeting_key": f"u-{i}",
            "email": f"user{i}@corp.io",
            "country": "DE" if i % 6 == 0 else "FR",
            "age": 20 + i % 60,
        }
        for i in range(count)
    ]


def handler_seconds(metrics_port: int) -> tuple[float, float]:
    """(sum, count) of the data plane's ResolveAll latency histogram: the handler's wall time inside."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).read().decode()
    total = count = 0.0
    for line in text.splitlines():
        if 'method="ResolveAll"' in line and not line.startswith("#"):
            name = line.split("{", 1)[0]
            if name.endswith("_sum"):
                total = float(line.split()[-1])
            elif name.endswith("_count"):
                count = float(line.split()[-1])
    return total, count


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def closed_loop(
    port: int, pid: int, key: str, requests: list[bytes], seconds: float, connections: int = 2
) -> tuple[float, float]:
    """(calls/s, server CPU µs per call) of a closed loop, a different request every call."""
    channels = [
        grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(connections)
    ]
    metadata = (("authorization", f"Bearer {key}"),)
    method = _path("ResolveAll")
    done = 0
    stop_at = 0.0
    count = len(requests)

    async def worker(channel: grpc.aio.Channel, offset: int) -> None:
        nonlocal done
        call = channel.unary_unary(method)
        i = offset
        while time.perf_counter() < stop_at:
            await call(requests[i % count], metadata=metadata)
            i += 97
            done += 1

    for channel in channels:  # warm up each connection
        for i in range(20):
            await channel.unary_unary(method)(requests[i], metadata=metadata)
    stop_at = time.perf_counter() + seconds
    cpu0, started = cpu_seconds(pid), time.perf_counter()
    await asyncio.gather(*(worker(c, k * 1009 + j) for k, c in enumerate(channels) for j in range(8)))
    elapsed, cpu = time.perf_counter() - started, cpu_seconds(pid) - cpu0
    for channel in channels:
        await channel.close()
    return done / elapsed, cpu / done * 1e6


def in_process(flags: int, ctxs: list[dict[str, Any]], seconds: float) -> tuple[float, float]:
    """(bare evaluation µs per call, handler work µs per call) for ``flags`` flags, contexts varying."""
    from flagyard.data_plane.convert import BulkEncoder, resolve_all
    from flagyard.proto.values import struct_to_dict

    flagset = FlagSet(
        [compile_flag(Flag.model_validate(reference_flag(f"flag-{i:03d}"))) for i in range(flags)],
        [compile_segment(Segment.model_validate(BETA))],
    )
    structs = [struct(c) for c in ctxs[:2000]]
    encoder = BulkEncoder()
    compiled = list(flagset.flags.values())

    def bare(i: int) -> None:
        ctx = ctxs[i % len(ctxs)]
        for flag in compiled:
            flag.evaluate(ctx, flagset)

    def handler(i: int) -> None:
        resolve_all(flagset, struct_to_dict(structs[i % len(structs)]), (), 101, encoder)

    def once(fn: Callable[[int], None], start: int) -> float:
        gc.collect()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / 6:
            for i in range(20):
                fn(start + n + i)
            n += 20
        return (time.perf_counter() - t0) / n * 1e6

    best_bare = best_handler = float("inf")
    for r in range(3):  # alternate, keep each one's best: other load on the machine comes and goes
        best_bare = min(best_bare, once(bare, r * 5000))
        best_handler = min(best_handler, once(handler, r * 5000))
    return best_bare, best_handler


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs (noisier)")
    parser.add_argument(
        "--baseline",
        metavar="DIR",
        help="also run the data plane of another checkout (its root, e.g. a worktree of main) in the same "
        "rounds: before/after figures from one run",
    )
    add_json_argument(parser)
    args = parser.parse_args()
    seconds = 2.0 if args.quick else 4.0
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"fybulk-{uuid.uuid4().hex[:8]}"
    ctxs = contexts(CONTEXTS)
    rows: list[dict[str, Any]] = []
    procs = []
    try:
        for flags in FLAG_COUNTS:
            apply_changes(
                client,
                prefix,
                env_name(flags),
                [Change("segment", "beta", 1, BETA)]
                + [Change("flag", f"flag-{i:03d}", 1, reference_flag(f"flag-{i:03d}")) for i in range(flags)],
            )
            record = SdkKeyRecord(env_name(flags), "bench", "bench", None)
            put_sdk_key(client, prefix, hash_sdk_key(sdk_key(flags)), record)
        record = SdkKeyRecord(env_name(FLAG_COUNTS[0]), "bench", "bench", None)
        put_sdk_key(client, prefix, hash_sdk_key(SDK_KEY), record)  # wait_serving's key
        requests = [pb.ResolveAllRequest(context=struct(c)).SerializeToString() for c in ctxs]
        dp_port, echo_port = free_port(), free_port()
        metrics_port = free_port()
        procs.append(dp := start_data_plane(prefix, dp_port, metrics_port=metrics_port))
        procs.append(echo := start_echo(echo_port))
        servers = [("dp", dp_port, dp.pid), ("echo", echo_port, echo.pid)]
        if args.baseline:
            base_port = free_port()
            # its own metrics server too, so the two processes carry the same threads
            base = start_data_plane(prefix, base_port, cwd=Path(args.baseline), metrics_port=free_port())
            procs.append(base)
            servers.append(("base", base_port, base.pid))
        for _name, port, _pid in servers:
            wait_serving(port)
        figures: dict[int, dict[str, float]] = {}
        for flags in FLAG_COUNTS:
            best: dict[str, tuple[float, float]] = {}
            wall = float("inf")
            for _ in range(ROUNDS):  # alternate the two servers, keep each one's lowest CPU per call
                for name, port, pid in servers:
                    if name == "dp":
                        before = handler_seconds(metrics_port)
                    calls, cpu_us = asyncio.run(closed_loop(port, pid, sdk_key(flags), requests, seconds))
                    if name == "dp":
                        after = handler_seconds(metrics_port)
                        in_server = (after[0] - before[0]) / max(1.0, after[1] - before[1]) * 1e6
                        wall = min(wall, in_server)
                    if name not in best or cpu_us < best[name][1]:
                        best[name] = (calls, cpu_us)
            bare_us, handler_us = in_process(flags, ctxs, seconds)
            figures[flags] = {
                "dp_calls": best["dp"][0],
                "dp_cpu": best["dp"][1],
                "echo_calls": best["echo"][0],
                "echo_cpu": best["echo"][1],
                "bare": bare_us,
                "handler": handler_us,
                "in_server": wall,
            }
            if "base" in best:
                figures[flags]["base_calls"], figures[flags]["base_cpu"] = best["base"]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        for k in client.scan_iter(f"{prefix}*"):
            client.delete(k)

    print("\nResolveAll, a different context every call (server CPU per call; the echo server answers 100")
    print("prebuilt flags whatever the flag count, so for 400 flags its figure is a floor of the transport)")
    for flags, f in figures.items():
        above = f["dp_cpu"] - f["echo_cpu"]
        ratio = above / f["bare"]
        print(
            f"{flags:>4} flags: data plane {f['dp_cpu']:7.0f} µs CPU/call ({f['dp_calls']:,.0f} calls/s, "
            f"{f['dp_calls'] * flags:,.0f} evals/s), "
            f"echo {f['echo_cpu']:5.0f} µs ({f['echo_calls']:,.0f} calls/s)"
        )
        print(
            f"            above echo {above:6.0f} µs; in-process evaluation {f['bare']:6.0f} µs, "
            f"handler work {f['handler']:6.0f} µs; ratio {ratio:.2f} (goal ≤ {GOAL_RATIO})"
        )
        print(
            f"            handler wall time inside the server {f['in_server']:.0f} µs/call "
            f"(its latency histogram) vs {f['handler']:.0f} µs in a tight in-process loop"
        )
        print(f"            evals per CPU-second of the data plane: {flags / f['dp_cpu'] * 1e6:,.0f}")
        if "base_cpu" in f:
            base_above = f["base_cpu"] - f["echo_cpu"]
            print(
                f"            baseline: {f['base_cpu']:.0f} µs CPU/call ({f['base_calls']:,.0f} calls/s), "
                f"above echo {base_above:.0f} µs, ratio {base_above / f['bare']:.2f}"
            )
        rows.append(
            result(
                f"bulk: ResolveAll ({flags} flags) server CPU above the prebuilt-response server",
                above,
                "µs",
                f["bare"],
                "in-process evaluation of the same flags, same contexts",
                goal_op="<=",
                goal_value=GOAL_RATIO,
                goal_on="ratio",
                note=(
                    f"server CPU/call {f['dp_cpu']:.0f} µs vs echo {f['echo_cpu']:.0f} µs; "
                    f"handler work in process {f['handler']:.0f} µs, in the server "
                    f"{f['in_server']:.0f} µs (wall); contexts vary per call"
                ),
            )
        )
        rows.append(
            result(
                f"bulk: ResolveAll ({flags} flags) evaluations per CPU-second",
                flags / f["dp_cpu"] * 1e6,
                "evals/s",
                flags / f["echo_cpu"] * 1e6,
                "echo server's flags per CPU-second (100 prebuilt flags)",
                goal_op=">=",
                goal_value=GOAL_EVALS,
                note=f"Python load loop: {f['dp_calls'] * flags:,.0f} evals/s delivered",
            )
        )
    if len(figures) == 2:
        (a, fa), (b, fb) = figures.items()
        per_flag = (fb["dp_cpu"] - fa["dp_cpu"]) / (b - a)
        fixed = fa["dp_cpu"] - per_flag * a
        print(f"\nfit: {fixed:.0f} µs fixed per call + {per_flag:.2f} µs per flag (server CPU)")
        for n in (100, 400, 1000, 5000):
            rate = n / (fixed + per_flag * n) * 1e6
            print(f"  {n:>5} flags per call: {rate:,.0f} evals per CPU-second")
        print(f"  ceiling (flags → ∞): {1e6 / per_flag:,.0f} evals per CPU-second")
        rows.append(
            result(
                "bulk: ResolveAll server CPU per flag (fit over flag counts)",
                per_flag,
                "µs",
                note=f"fixed per call {fixed:.0f} µs; ceiling {1e6 / per_flag:,.0f} evals per CPU-second",
            )
        )
    write_json(args.json_out, rows)


if __name__ == "__main__":
    main()
