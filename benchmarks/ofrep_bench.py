"""OFREP benchmark: the data plane's HTTP side, each figure beside a floor measured in the same run.

1. Single evaluation (``POST /ofrep/v1/evaluate/flags/flag-000``, the data-plane bench's reference flag: a
   segment, a regex, a comparison, a split): requests/s of the data plane vs a constant-answer server on the
   same HTTP stack (uvicorn, httptools, uvloop, the data plane's own bounded protocol class) that reads the
   request body and answers the data plane's own response bytes.
2. Bulk evaluation (``POST /ofrep/v1/evaluate/flags``, 100 reference flags): requests/s and flag
   evaluations/s vs the same constant-answer server answering the data plane's bulk body (with an ETag).

Both servers run in processes of their own, one process each (``FLAGYARD_DATA_PLANE_PROCESSES=1``); the data
plane serves OFREP in the event loop of its gRPC server, from its L1. The load generator is one process:
``--connections`` keep-alive HTTP/1.1 connections, one request in flight on each (closed loop), the same
generator for figure and floor. Nothing is asserted: these are figures.

Run: ``.venv/bin/python -m benchmarks.ofrep_bench`` (``--quick`` for a short run; ``--json-out PATH`` also
writes the rows as JSON, see ``benchmarks/results.py``). Needs the Redis of ``FLAGYARD_BENCH_REDIS`` (default
redis://127.0.0.1:6379/15); keys live under a fresh prefix, removed after.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import orjson
import redis

from benchmarks.data_plane_bench import BETA, CONTEXT, free_port, reference_flag
from benchmarks.results import add_json_argument, write_json
from benchmarks.results import row as result
from flagyard.contracts.redis import Change, SdkKeyRecord, apply_changes, hash_sdk_key, put_sdk_key

ROOT = Path(__file__).resolve().parents[1]
REDIS_URL = os.environ.get("FLAGYARD_BENCH_REDIS", "redis://127.0.0.1:6379/15")
SDK_KEY = "bench-ofrep-key"
ENV = "bench-ofrep-env"
BULK_FLAGS = 100
SINGLE_PATH = "/ofrep/v1/evaluate/flags/flag-000"
BULK_PATH = "/ofrep/v1/evaluate/flags"


def request_bytes(path: str, body: bytes) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: bench\r\ncontent-type: application/json\r\n"
        f"x-api-key: {SDK_KEY}\r\ncontent-length: {len(body)}\r\n\r\n"
    ).encode() + body


# --- the floor: a constant answer on the same HTTP stack ---------------------------------------------------


def floor_server(port: int, single_file: str, bulk_file: str) -> None:
    """Serve prebuilt answers: the bulk body (with an ETag) on the bulk path, the single one elsewhere."""
    import uvicorn

    from flagyard.data_plane.ofrep import BoundedHttpToolsProtocol

    single = Path(single_file).read_bytes()
    bulk = Path(bulk_file).read_bytes()
    headers = {
        False: [(b"content-type", b"application/json"), (b"content-length", str(len(single)).encode())],
        True: [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(bulk)).encode()),
            (b"etag", b'"0123456789abcdef0123456789abcdef"'),
        ],
    }

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        is_bulk = scope["path"] == BULK_PATH
        await send({"type": "http.response.start", "status": 200, "headers": headers[is_bulk]})
        await send({"type": "http.response.body", "body": bulk if is_bulk else single})

    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        access_log=False,
        http=BoundedHttpToolsProtocol,
        ws="none",
        server_header=False,
        loop="uvloop",
    )
    uvicorn.Server(config).run()


# --- load generator ----------------------------------------------------------------------------------------


async def closed_loop(port: int, request: bytes, seconds: float, connections: int) -> float:
    """Responses per second with ``connections`` keep-alive connections, one request in flight on each."""
    done = 0
    stop_at = 0.0

    async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"unexpected answer: {head[:200]!r}")
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        if length:
            await reader.readexactly(length)

    async def worker(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal done
        while time.perf_counter() < stop_at:
            await exchange(reader, writer)
            done += 1

    streams = [await asyncio.open_connection("127.0.0.1", port, limit=1 << 20) for _ in range(connections)]
    for reader, writer in streams:  # warm up each connection
        await exchange(reader, writer)
    stop_at = time.perf_counter() + seconds
    started = time.perf_counter()
    await asyncio.gather(*(worker(r, w) for r, w in streams))
    elapsed = time.perf_counter() - started
    for _, writer in streams:
        writer.close()
    return done / elapsed


def measure(port: int, request: bytes, seconds: float, connections: int) -> float:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a server extra
        return asyncio.run(closed_loop(port, request, seconds, connections))
    return uvloop.run(closed_loop(port, request, seconds, connections))


# --- orchestration -----------------------------------------------------------------------------------------


def seed(client: redis.Redis, prefix: str) -> None:
    flags = [reference_flag(f"flag-{i:03d}") for i in range(BULK_FLAGS)]
    changes = [Change("segment", "beta", 1, BETA)]
    changes += [Change("flag", f["key"], 1, f) for f in flags]
    apply_changes(client, prefix, ENV, changes, {"project": "bench", "environment": "prod"})
    put_sdk_key(client, prefix, hash_sdk_key(SDK_KEY), SdkKeyRecord(ENV, "bench", "prod", None))


def post(port: int, path: str, body: bytes) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=body,
        headers={"x-api-key": SDK_KEY, "content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=5) as answer:
        return int(answer.status), bytes(answer.read())


def wait_answering(port: int, path: str, body: bytes, timeout: float = 60) -> bytes:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            status, data = post(port, path, body)
            if status == 200:
                return data
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"nothing answers {path} on port {port} after {timeout}s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="short runs (noisier)")
    parser.add_argument("--seconds", type=float, default=None, help="length of each measurement")
    parser.add_argument("--connections", type=int, default=16, help="keep-alive connections of the load")
    parser.add_argument("--floor-server", nargs=3, metavar=("PORT", "SINGLE", "BULK"), help=argparse.SUPPRESS)
    add_json_argument(parser)
    args = parser.parse_args()
    if args.floor_server:
        floor_server(int(args.floor_server[0]), args.floor_server[1], args.floor_server[2])
        return
    seconds = args.seconds or (2.0 if args.quick else 8.0)
    rounds = 1 if args.quick else 2
    client = redis.Redis.from_url(REDIS_URL)
    prefix = f"fybench-ofrep-{uuid.uuid4().hex[:8]}"
    ofrep_port, floor_port = free_port(), free_port()
    files = [Path(f"/tmp/fybench-ofrep-{os.getpid()}-{name}.json") for name in ("single", "bulk")]
    procs: list[subprocess.Popen[bytes]] = []
    try:
        seed(client, prefix)
        env = dict(
            os.environ,
            FLAGYARD_REDIS_URL=REDIS_URL,
            FLAGYARD_REDIS_PREFIX=prefix,
            FLAGYARD_GRPC_HOST="127.0.0.1",
            FLAGYARD_GRPC_PORT=str(free_port()),
            FLAGYARD_OFREP_HOST="127.0.0.1",
            FLAGYARD_OFREP_PORT=str(ofrep_port),
            FLAGYARD_METRICS_PORT="0",
            FLAGYARD_LOG_LEVEL="warning",
            FLAGYARD_DATA_PLANE_PROCESSES="1",
        )
        procs.append(subprocess.Popen([sys.executable, "-m", "flagyard.data_plane"], env=env, cwd=ROOT))
        attributes = {k: v for k, v in CONTEXT.items() if k != "targeting_key"}
        body = orjson.dumps({"context": {"targetingKey": CONTEXT["targeting_key"], **attributes}})
        single = wait_answering(ofrep_port, SINGLE_PATH, body)
        bulk = wait_answering(ofrep_port, BULK_PATH, body)
        evaluated = len(orjson.loads(bulk)["flags"])
        files[0].write_bytes(single)
        files[1].write_bytes(bulk)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "benchmarks.ofrep_bench", "--floor-server", str(floor_port)]
                + [str(f) for f in files],
                cwd=ROOT,
            )
        )
        wait_answering(floor_port, SINGLE_PATH, body)
        print(f"single answer ({len(single)} bytes): {single.decode()}")
        print(f"bulk answer: {len(bulk)} bytes, {evaluated} flags")
        figures: dict[str, list[float]] = {}
        for _ in range(rounds):  # alternate figure and floor, keep the best of each
            for name, port, path in (
                ("single", ofrep_port, SINGLE_PATH),
                ("single floor", floor_port, SINGLE_PATH),
                ("bulk", ofrep_port, BULK_PATH),
                ("bulk floor", floor_port, BULK_PATH),
            ):
                rate = measure(port, request_bytes(path, body), seconds, args.connections)
                figures.setdefault(name, []).append(rate)
                print(f"{name:>12}: {rate:10,.0f} requests/s")
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()
        for f in files:
            f.unlink(missing_ok=True)
    best = {name: max(values) for name, values in figures.items()}
    floor_name = "uvicorn (same protocol class, uvloop) answering the same bytes"
    note = f"{args.connections} keep-alive connections, 1 request in flight each; best of {rounds}"
    rows = [
        result(
            "OFREP single evaluation (reference flag)",
            best["single"],
            "requests/s",
            best["single floor"],
            floor_name,
            note=note,
        ),
        result(
            f"OFREP bulk evaluation ({evaluated} flags)",
            best["bulk"],
            "requests/s",
            best["bulk floor"],
            floor_name,
            note=note,
        ),
        result(
            "OFREP bulk: flag evaluations",
            best["bulk"] * evaluated,
            "evaluations/s",
            best["bulk floor"] * evaluated,
            floor_name,
            note=f"{evaluated} flags per request; " + note,
        ),
    ]
    for r in rows:
        figure, floor, ratio = r["figure"], r["floor"], r["ratio"]
        print(f"{r['name']}: {figure:,.0f} {r['unit']} (floor {floor:,.0f}, ratio {ratio:.2f})")
    write_json(args.json_out, rows)


if __name__ == "__main__":
    main()
