"""Fan-out benchmark (issue 19): N SyncFlags streams on one data-plane process, from several client processes.

Figures, for each stream count N of ``--streams``: how long until every stream held its snapshot (the
connection storm of a fleet restarting), the share of streams that got every change, and the p50/p99 time
from a change entering Redis to each stream receiving it. The time is measured against the change's Redis
stream id (the millisecond Redis stamped it with, same host), so it includes the follower reading it.

Floor: a bare grpc.aio server of the same proto (with the data plane's bound on pending calls, without which
gRPC stalls a fleet's streams past 1000 arriving at once) that sends a prebuilt snapshot, then a prebuilt
change to every stream on a timer (one serialization per change, as the data plane does; no Redis, no
authentication), measured by the same client processes in the same run.

Servers and clients run in their own processes (clients niced, ``--clients`` of them, each holding its
streams on ``STREAMS_PER_CONNECTION``-stream connections, as app instances would). Nothing is asserted:
these are figures. Run: ``.venv/bin/python -m benchmarks.fanout_bench --streams 1000,5000`` (``--quick``:
200 streams, 3 changes). Needs the Redis of ``FLAGYARD_BENCH_REDIS`` (default redis://127.0.0.1:6379/15);
keys live under a fresh prefix, removed after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import grpc
import grpc.aio
import orjson
import redis

from benchmarks.data_plane_bench import (
    REDIS_URL,
    ROOT,
    SDK_KEY,
    _run,
    child_pids,
    clean,
    free_port,
    reference_flag,
)
from benchmarks.results import add_json_argument, write_json
from benchmarks.results import row as result
from flagyard.contracts.redis import SdkKeyRecord, apply_change, hash_sdk_key, put_sdk_key
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb

ENV = "bench-fanout-env"
FLAGS = 20
STREAMS_PER_CONNECTION = 100
METHOD = "/flagyard.v1.SyncService/SyncFlags"
FLOOR_NAME = "bare grpc.aio server pushing one prebuilt change to every stream"


# --- the client processes ------------------------------------------------------------------------------


async def client(port: int, streams: int, changes: int, seconds: float) -> None:
    """Open ``streams`` streams; print ``ready <seconds to every snapshot>``, then, once every stream got
    ``changes`` changes or failed (or after ``seconds``), one JSON line: every change latency in ms and how
    many streams got all ``changes``. The streams stay open until stdin is closed, so the server's CPU
    per change is measured without the streams' teardown in it."""
    metadata = (("authorization", f"Bearer {SDK_KEY}"),)
    channels = [
        grpc.aio.insecure_channel(
            f"127.0.0.1:{port}",
            options=[("grpc.use_local_subchannel_pool", 1), ("grpc.max_receive_message_length", 64 << 20)],
        )
        for _ in range((streams + STREAMS_PER_CONNECTION - 1) // STREAMS_PER_CONNECTION)
    ]
    started = time.perf_counter()
    ready = 0
    all_ready = asyncio.Event()
    latencies: list[float] = []
    complete = finished = 0
    all_finished = asyncio.Event()
    errors: dict[str, int] = {}

    def finish() -> None:
        nonlocal finished
        finished += 1
        if finished == streams:
            all_finished.set()

    async def one(i: int) -> None:
        nonlocal ready, complete
        call = channels[i // STREAMS_PER_CONNECTION].unary_stream(METHOD)(
            pb.SyncFlagsRequest().SerializeToString(), metadata=metadata
        )
        got = 0
        try:
            async for data in call:
                message = pb.SyncFlagsResponse.FromString(data)
                kind = message.WhichOneof("payload")
                if kind == "snapshot" and not message.snapshot.more:
                    ready += 1
                    if ready == streams:
                        all_ready.set()
                elif kind == "change" and got < changes:
                    latencies.append(time.time() * 1000 - int(message.event_id.split("-")[0]))
                    got += 1
                    if got == changes:
                        complete += 1
                        finish()
        except grpc.aio.AioRpcError as exc:
            errors[exc.code().name] = errors.get(exc.code().name, 0) + 1
            finish()
        finally:
            call.cancel()

    def report() -> None:
        line = {"latencies": latencies, "complete": complete, "errors": errors}
        print(orjson.dumps(line).decode(), flush=True)

    tasks = [asyncio.create_task(one(i)) for i in range(streams)]
    try:
        await asyncio.wait_for(all_ready.wait(), seconds)
        print(f"ready {time.perf_counter() - started:.3f}", flush=True)
    except TimeoutError:
        print(f"ready -{ready}", flush=True)
    if changes:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(all_finished.wait(), seconds)
        report()
    # Held open until the driver closes our stdin (idle streams for --memory; teardown after the changes).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for task in tasks:
        task.cancel()
    if not changes:
        report()


# --- the floor server ----------------------------------------------------------------------------------


async def floor_server(port: int, interval: float) -> None:
    snapshot = pb.SyncFlagsResponse(revision=1, event_id="0-0")
    snapshot.snapshot.SetInParent()
    for i in range(FLAGS):
        snapshot.snapshot.definitions.add(
            kind=pb.DEFINITION_KIND_FLAG,
            key=f"flag-{i:03d}",
            version=1,
            json=orjson.dumps(reference_flag(f"flag-{i:03d}")).decode(),
        )
    first = snapshot.SerializeToString()
    state: dict[str, Any] = {"changed": asyncio.Event(), "message": b"", "revision": 1}

    async def tick() -> None:
        while True:
            await asyncio.sleep(interval)
            state["revision"] += 1
            message = pb.SyncFlagsResponse(
                revision=state["revision"], event_id=f"{int(time.time() * 1000)}-0"
            )
            message.change.operation = pb.OPERATION_PUT
            # The same definition the data plane sends, so both servers write messages of the same size.
            message.change.definition.kind = pb.DEFINITION_KIND_FLAG
            message.change.definition.key = "flag-000"
            message.change.definition.version = state["revision"]
            message.change.definition.json = orjson.dumps(reference_flag("flag-000")).decode()
            state["message"] = message.SerializeToString()
            changed, state["changed"] = state["changed"], asyncio.Event()
            changed.set()

    async def handle(data: bytes, context: Any) -> Any:
        yield first
        while True:
            await state["changed"].wait()
            yield state["message"]

    # The data plane's bound on calls not yet picked up (gRPC's default of 1000 stalls a fleet's streams).
    pending = [
        ("grpc.server.max_pending_requests", 100_000),
        ("grpc.server.max_pending_requests_hard_limit", 100_000),
    ]
    server = grpc.aio.server(options=[*pending, ("grpc.so_reuseport", 1)])
    handler = grpc.unary_stream_rpc_method_handler(handle)
    server.add_generic_rpc_handlers(
        [grpc.method_handlers_generic_handler("flagyard.v1.SyncService", {"SyncFlags": handler})]
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    ticker = asyncio.create_task(tick())
    await server.wait_for_termination()
    ticker.cancel()


# --- the driver ----------------------------------------------------------------------------------------


def start_data_plane(prefix: str, port: int, processes: int = 1) -> subprocess.Popen[bytes]:
    env = dict(
        os.environ,
        FLAGYARD_REDIS_URL=REDIS_URL,
        FLAGYARD_REDIS_PREFIX=prefix,
        FLAGYARD_GRPC_HOST="127.0.0.1",
        FLAGYARD_GRPC_PORT=str(port),
        FLAGYARD_METRICS_PORT="0",
        FLAGYARD_OFREP_ENABLED="false",
        FLAGYARD_FLAGD_ENABLED="false",
        FLAGYARD_LOG_LEVEL="warning",
        FLAGYARD_DATA_PLANE_PROCESSES=str(processes),
        FLAGYARD_MAX_STREAMS="100000",
    )
    proc = subprocess.Popen([sys.executable, "-m", "flagyard.data_plane"], env=env, cwd=ROOT)
    print(f"data plane: pid {proc.pid}, port {port}", file=sys.stderr, flush=True)
    return proc


def start_floor_server(port: int, interval: float, processes: int = 1) -> subprocess.Popen[bytes]:
    """The floor server in its own process, one change every ``interval`` seconds; with ``processes`` > 1
    that many sharing the port (SO_REUSEPORT, as the data plane's do), children of the first."""
    command = [sys.executable, "-m", "benchmarks.fanout_bench", "--floor-server", str(port), str(interval)]
    return subprocess.Popen([*command, str(processes)], cwd=ROOT)


def start_clients(
    port: int, streams: int, clients: int, changes: int, seconds: float
) -> tuple[list[subprocess.Popen[str]], list[float]]:
    """Start ``clients`` niced client processes holding ``streams`` streams on the server at ``port``
    between them, and wait until each holds every snapshot: the processes, and each one's seconds until
    then (negative: it gave up after ``seconds`` with that many ready). They print their JSON line once
    they got ``changes`` changes, or with ``changes`` 0 (idle streams) once their stdin is closed."""
    per = [streams // clients + (1 if i < streams % clients else 0) for i in range(clients)]
    procs = [
        subprocess.Popen(
            [
                "nice",
                "-n",
                "5",
                sys.executable,
                "-m",
                "benchmarks.fanout_bench",
                "--client",
                str(port),
                str(n),
                str(changes),
                str(seconds),
            ],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for n in per
        if n
    ]
    ready = []
    for proc in procs:
        assert proc.stdout is not None
        ready.append(float(proc.stdout.readline().split()[1]))
    return procs, ready


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds process ``pid`` and its live children used so far, every thread (Linux
    /proc): with several data-plane processes, the supervisor and its workers."""
    total = 0.0
    for one in (pid, *child_pids(pid)):
        with open(f"/proc/{one}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def run_clients(
    port: int,
    streams: int,
    clients: int,
    changes: int,
    seconds: float,
    change: Any,
    *,
    stalled: bool = False,
    pid: int | None = None,
) -> dict[str, Any]:
    """Start the client processes, wait for their snapshots, make ``changes`` changes with ``change(i)``,
    gather what they measured. ``stalled``: one more stream, opened here and never read (BDP off, so its
    window stays at 64 KiB and large changes fill it), to see whether it slows the others."""
    staller: Any = None
    if stalled:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.http2.bdp_probe", 0)])
        staller = (
            channel,
            channel.unary_stream(METHOD)(
                pb.SyncFlagsRequest().SerializeToString(), metadata=(("authorization", f"Bearer {SDK_KEY}"),)
            ),
        )
    procs, ready = start_clients(port, streams, clients, changes, seconds)
    # For a profiler attached from outside (py-spy record --pid): when the changes start.
    print(f"changes start: port {port}, {streams} streams", file=sys.stderr, flush=True)
    cpu = cpu_seconds(pid) if pid else 0.0
    for i in range(changes):
        change(i)
    latencies: list[float] = []
    complete = 0
    errors: dict[str, int] = {}
    for proc in procs:
        assert proc.stdout is not None
        data = orjson.loads(proc.stdout.readline())
        latencies += data["latencies"]
        complete += data["complete"]
        for code, n in data["errors"].items():
            errors[code] = errors.get(code, 0) + n
    # CPU the server spent from the first change until every client had every change (or gave up), the
    # streams still open: the per-change work of the fan-out, less sensitive than latency to other load on
    # a shared machine. (Closing the streams comes after, and is not in it.)
    cpu = (cpu_seconds(pid) - cpu) * 1000 / changes if pid and changes else float("nan")
    for proc in procs:
        proc.communicate(timeout=60)  # closes stdin: the client closes its streams and exits
    latencies.sort()
    if staller is not None:
        staller[1].cancel()
        staller[0].close()

    def q(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else float("nan")

    return {
        "snapshot_seconds": max(ready) if all(r >= 0 for r in ready) else float("nan"),
        "complete": complete / streams,
        "p50": q(0.50),
        "p99": q(0.99),
        "errors": errors,
        "cpu_ms_per_change": cpu,
    }


def rss_kib(pid: int) -> int:
    """Resident set size of process ``pid`` in KiB (Linux /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def idle_rss(pid: int, port: int, streams: int, clients: int, seconds: float) -> tuple[int, float]:
    """Open ``streams`` idle streams on the server ``pid`` listens for at ``port`` (from ``clients``
    client processes), wait until every one holds its snapshot and a little more, and return the server's
    RSS in KiB while they are open, and the seconds until every snapshot was held; then close them."""
    procs, ready = start_clients(port, streams, clients, 0, seconds)
    time.sleep(3)  # let the server settle (first heartbeat timers armed, allocations done)
    rss = rss_kib(pid)
    for proc in procs:
        proc.communicate(timeout=60)  # closes stdin: the client closes its streams and exits
    return rss, max(ready)


def memory(counts: list[int], clients: int, seconds: float, redis_prefix: str) -> list[dict[str, Any]]:
    """RSS per idle stream, data plane vs the bare floor server: for each N a fresh pair of servers,
    warmed up by 100 streams opened and closed, RSS with 0 streams, then with N idle streams."""
    rows = []
    for n in counts:
        dp_port, floor_port = free_port(), free_port()
        servers = [start_data_plane(redis_prefix, dp_port), start_floor_server(floor_port, 3600)]
        try:
            time.sleep(3)
            per_stream = []
            for proc, port in zip(servers, (dp_port, floor_port), strict=True):
                idle_rss(proc.pid, port, 100, clients, seconds)  # warm-up
                time.sleep(2)
                base = rss_kib(proc.pid)
                held, ready = idle_rss(proc.pid, port, n, clients, seconds)
                kib = (held - base) / n
                per_stream.append(kib)
                print(
                    f"{n} idle streams, pid {proc.pid} port {port}: RSS {base} KiB -> {held} KiB, "
                    f"{kib:.1f} KiB per stream (snapshots held in {ready:.2f} s)",
                    file=sys.stderr,
                    flush=True,
                )
        finally:
            for proc in servers:
                proc.terminate()
            for proc in servers:
                proc.wait(10)
        rows.append(
            result(
                f"fanout {n} idle streams: memory per stream (RSS delta / N)",
                per_stream[0],
                "KiB",
                per_stream[1],
                FLOOR_NAME,
                goal_op="<=",
                goal_value=20.0,
                note=f"VmRSS after warm-up with 0 streams vs with {n} open; {clients} client processes",
            )
        )
    return rows


# --- the wait between changes, in process ---------------------------------------------------------------


def stream_waits(streams: int, rounds: int) -> dict[str, float]:
    """CPU µs per stream to wake ``streams`` waiting streams for a change and have them wait again (min of
    ``rounds``), for: the data plane's wait (a change or the stream's deadline, shared alarms), a timer per
    wait (``asyncio.timeout``, what it did before), and a bare ``Event.wait`` without any deadline (floor).
    In-process under uvloop, no transport: the part of a change's cost that is the waiting alone."""
    import uvloop

    from flagyard.data_plane.l1 import CachedEnvironment
    from flagyard.data_plane.metrics import Metrics
    from flagyard.data_plane.settings import DataPlaneSettings
    from flagyard.data_plane.streams import Streams

    async def measure(mode: str) -> float:
        env = CachedEnvironment("bench")
        events = [asyncio.Event()]
        registry = Streams(DataPlaneSettings(redis_url=REDIS_URL), Metrics())
        woke = [0]
        everyone = asyncio.Event()

        async def stream() -> None:
            opened = registry.open("flagyard", "bench", env)
            seen = env.revision
            while True:
                changed, event = env.changed, events[-1]
                if env.revision != seen:
                    seen = env.revision
                    woke[0] += 1
                    if woke[0] == streams:
                        everyone.set()
                    continue
                if mode == "floor":
                    await event.wait()
                elif mode == "timer":
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(15):
                            await event.wait()
                else:
                    with contextlib.suppress(TimeoutError):
                        await registry.wait_changed(opened, changed, time.monotonic() + 15)

        tasks = [asyncio.create_task(stream()) for _ in range(streams)]
        await asyncio.sleep(0.2)
        best = float("inf")
        for _ in range(rounds):
            woke[0] = 0
            everyone.clear()
            started = time.process_time()
            env.revision += 1
            events.append(asyncio.Event())
            events[-2].set()
            env._notify()
            await everyone.wait()
            await asyncio.sleep(0)  # each woken stream is waiting again
            best = min(best, time.process_time() - started)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return best * 1e6 / streams

    return {mode: uvloop.run(measure(mode)) for mode in ("alarms", "timer", "floor")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", default="1000,2000,5000", help="stream counts, comma-separated")
    parser.add_argument("--clients", type=int, default=4, help="client processes")
    parser.add_argument("--changes", type=int, default=5)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between changes")
    parser.add_argument("--seconds", type=float, default=120, help="per-run bound of the clients")
    parser.add_argument("--change-kib", type=int, default=0, help="pad each change by this many KiB")
    parser.add_argument(
        "--stalled",
        action="store_true",
        help="also measure with one stream that never reads (use --change-kib)",
    )
    parser.add_argument(
        "--memory",
        default="",
        help="instead of latency: RSS per idle stream at these stream counts, comma-separated (1000,5000)",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--client", nargs=4, metavar=("PORT", "STREAMS", "CHANGES", "SECONDS"))
    parser.add_argument("--floor-server", nargs="+", metavar="PORT INTERVAL [PROCESSES]")
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        help="data-plane processes on the port (FLAGYARD_DATA_PLANE_PROCESSES), and as many floor servers",
    )
    add_json_argument(parser)
    args = parser.parse_args()
    if args.client:
        port, streams, changes, seconds = args.client
        _run(client(int(port), int(streams), int(changes), float(seconds)))
        return
    if args.floor_server:
        port, interval, *more = args.floor_server
        command = [sys.executable, "-m", "benchmarks.fanout_bench", "--floor-server", port, interval]
        siblings = [subprocess.Popen(command) for _ in range(int(more[0]) - 1 if more else 0)]
        # SIGTERM from the driver must reach the finally below, or the siblings outlive this process.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            _run(floor_server(int(port), float(interval)))
        finally:
            for sibling in siblings:
                sibling.terminate()
        return
    counts = [200] if args.quick else [int(n) for n in args.streams.split(",")]
    changes = 3 if args.quick else args.changes

    rds = redis.Redis.from_url(REDIS_URL)
    prefix = f"bench-fanout-{uuid.uuid4().hex[:8]}"
    rows: list[dict[str, Any]] = []
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for i in range(FLAGS):
            apply_change(rds, prefix, ENV, "flag", f"flag-{i:03d}", 1, reference_flag(f"flag-{i:03d}"))
        put_sdk_key(rds, prefix, hash_sdk_key(SDK_KEY), SdkKeyRecord(ENV, "bench", "bench", None))
        if args.memory:
            rows = memory([int(n) for n in args.memory.split(",")], args.clients, args.seconds, prefix)
            counts = []
        dp_port, floor_port = free_port(), free_port()
        if counts:  # not in --memory runs, which start their own servers
            procs.append(start_data_plane(prefix, dp_port, args.processes))
            procs.append(start_floor_server(floor_port, args.interval, args.processes))
            time.sleep(3)
        version = [1]

        def change(_: int) -> None:
            time.sleep(args.interval)
            version[0] += 1
            flag = {**reference_flag("flag-000"), "default_variant": "on" if version[0] % 2 else "off"}
            if args.change_kib:
                flag["metadata"] = {"padding": f"{version[0]}" + "x" * (args.change_kib * 1024)}
            apply_change(rds, prefix, ENV, "flag", "flag-000", version[0], flag)

        if not args.memory:
            waiting = 2000 if args.quick else 10_000
            waits = stream_waits(waiting, 10 if args.quick else 30)
            rows += [
                result(
                    f"stream wait, {waiting} streams: CPU per stream per change",
                    waits["alarms"],
                    "µs",
                    waits["floor"],
                    "asyncio.Event.wait without any deadline",
                    note="in process, no transport; the data plane's wait: a change or its deadline",
                ),
                result(
                    f"stream wait, {waiting} streams, a timer per wait: CPU per stream per change",
                    waits["timer"],
                    "µs",
                    waits["floor"],
                    "asyncio.Event.wait without any deadline",
                    note="asyncio.timeout around each wait: what the data plane did before shared alarms",
                ),
            ]
        for n in counts:
            dp = run_clients(dp_port, n, args.clients, changes, args.seconds, change, pid=procs[0].pid)
            floor = run_clients(
                floor_port, n, args.clients, changes, args.seconds, lambda _: None, pid=procs[1].pid
            )
            if args.stalled:
                with_stalled = run_clients(
                    dp_port, n, args.clients, changes, args.seconds, change, stalled=True
                )
                print(f"{n} streams + 1 stalled: data plane {with_stalled}", file=sys.stderr, flush=True)
                rows.append(
                    result(
                        f"fanout {n} streams + 1 that never reads: change to stream p99",
                        with_stalled["p99"],
                        "ms",
                        dp["p99"],
                        "the same without the stalled stream",
                        note=f"{args.change_kib} KiB changes; errors {with_stalled['errors'] or 'none'}",
                    )
                )
            print(f"{n} streams: data plane {dp}, floor {floor}", file=sys.stderr, flush=True)
            note = f"{args.clients} client processes; errors {dp['errors'] or 'none'}"
            if args.processes > 1:
                note += f"; {args.processes} data-plane processes (and floor servers) on the port"
            rows += [
                result(
                    f"fanout {n} streams: every snapshot held",
                    dp["snapshot_seconds"],
                    "s",
                    floor["snapshot_seconds"],
                    FLOOR_NAME,
                    note=note,
                ),
                result(
                    f"fanout {n} streams: streams that got every change",
                    dp["complete"] * 100,
                    "%",
                    floor["complete"] * 100,
                    FLOOR_NAME,
                    goal_op=">=",
                    goal_value=100.0,
                    note=note,
                ),
                result(
                    f"fanout {n} streams: change to stream p50",
                    dp["p50"],
                    "ms",
                    floor["p50"],
                    FLOOR_NAME,
                    note=note,
                ),
                result(
                    f"fanout {n} streams: change to stream p99",
                    dp["p99"],
                    "ms",
                    floor["p99"],
                    FLOOR_NAME,
                    note=note,
                ),
                result(
                    f"fanout {n} streams: server CPU per change",
                    dp["cpu_ms_per_change"],
                    "ms",
                    floor["cpu_ms_per_change"],
                    FLOOR_NAME,
                    note=note + "; every thread, first change until the clients had every change",
                ),
            ]
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(10)
        clean(rds, prefix)
    for r in rows:
        print(orjson.dumps(r).decode())
    write_json(args.json_out, rows)


if __name__ == "__main__":
    main()
