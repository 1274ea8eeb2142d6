"""Control-plane benchmark: flag updates (version + audit + outbox) and reads, over HTTP, one uvicorn worker.

It creates a scratch PostgreSQL database (Alembic ``upgrade head``), starts uvicorn with one worker
on a free port, seeds a project with three environments and ``--flags`` flags, then drives keep-alive
connections from a small asyncio HTTP/1.1 client (cheap, so the client steals little CPU from the
server on a small machine) and prints throughput and latency percentiles. Goals: updates >= 300/s with
p99 <= 50 ms; reads >= 1000/s.

Each update PATCHes one flag's ``prod`` configuration (a rule that changes every time) with If-Match:
rule-engine validation, a new version with a full snapshot, an audit entry with a diff, an outbox row
and its RQ job. Every connection owns its own flags, so no update fails on a stale ETag.

Run: ``.venv/bin/python -m benchmarks.control_plane_bench`` (PostgreSQL and Redis on localhost).
``--json-out PATH`` also writes the rows as JSON (``benchmarks/results.py``), each beside the
``GET /healthz`` baseline; ``--sweep 1,2,4,8,16`` then runs the ``--sweep-only`` scenarios and the baseline
again at each of those concurrencies (throughput vs concurrency), on the same server.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
import redis
from alembic import command
from alembic.config import Config
from rq import Queue

from benchmarks.results import Op, add_json_argument, parse_levels, row, write_json
from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("FLAGYARD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FLAGYARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
KEY = DEV_BOOTSTRAP_ADMIN_KEY


class Connection:
    """One keep-alive HTTP/1.1 connection; just enough HTTP for JSON requests and responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader, self.writer, self.host = reader, writer, host

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer, host)

    async def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, dict[str, str], bytes]:
        payload = b"" if body is None else json.dumps(body).encode()
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", f"Authorization: Bearer {KEY}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + payload)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status_line, *header_lines = head.decode("latin-1").split("\r\n")
        response_headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                response_headers[name.strip().lower()] = value.strip()
        length = int(response_headers.get("content-length", "0"))
        content = await self.reader.readexactly(length) if length else b""
        return int(status_line.split()[1]), response_headers, content

    def close(self) -> None:
        self.writer.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def drive(
    port: int, concurrency: int, seconds: float, make: Callable[[int, int], Any]
) -> tuple[int, list[float], int]:
    """Run ``make(worker, i)`` coroutines factories on ``concurrency`` connections for ``seconds``."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(w: int) -> None:
        nonlocal errors
        conn = await Connection.open("127.0.0.1", port)
        i = 0
        try:
            while time.perf_counter() < deadline:
                start = time.perf_counter()
                ok = await make(w, i)(conn)
                latencies.append(time.perf_counter() - start)
                errors += not ok
                i += 1
        finally:
            conn.close()

    await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return len(latencies), latencies, errors


def process_cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU time of a process so far (Linux ``/proc``), or None where that cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def report(
    name: str,
    count: int,
    latencies: list[float],
    errors: int,
    seconds: float,
    goal: str,
    server_cpu: float | None = None,
) -> dict[str, Any]:
    rate = count / seconds
    cpu_us = round(server_cpu / count * 1e6) if server_cpu is not None and count else None
    figures = {
        "scenario": name,
        "requests": count,
        "errors": errors,
        "per_second": round(rate, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "max_ms": round(max(latencies) * 1000, 2),
        "server_cpu_us": cpu_us,
        "goal": goal,
    }
    cpu = f"  server CPU {cpu_us:5d} us/req" if cpu_us is not None else ""
    print(
        f"{name:<28} {rate:8.1f}/s  p50 {figures['p50_ms']:6.2f} ms  p99 {figures['p99_ms']:6.2f} ms"
        f"{cpu}  errors {errors}  (goal: {goal})"
    )
    return figures


async def seed(port: int, flags: int) -> None:
    conn = await Connection.open("127.0.0.1", port)
    try:
        status, _, body = await conn.request("POST", "/api/v1/projects", {"key": "bench", "name": "Bench"})
        assert status == 201, body
        for env in ("dev", "staging", "prod"):
            status, _, body = await conn.request(
                "POST", "/api/v1/projects/bench/environments", {"key": env, "name": env}
            )
            assert status == 201, body
        for i in range(flags):
            status, _, body = await conn.request(
                "POST",
                "/api/v1/projects/bench/flags",
                {
                    "key": f"flag-{i:04d}",
                    "name": f"Flag {i}",
                    "type": "string",
                    "variants": {"a": "A", "b": "B", "c": "C"},
                    "tags": ["bench"],
                },
            )
            assert status == 201, body
    finally:
        conn.close()


async def run_scenarios(port: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    await seed(port, args.flags)
    per_worker = max(1, args.flags // max([args.concurrency, *(args.sweep or [])]))
    etags: dict[str, str] = {}

    def update(w: int, i: int) -> Callable[[Connection], Any]:
        key = f"flag-{(w * per_worker + i % per_worker) % args.flags:04d}"

        async def call(conn: Connection) -> bool:
            if key not in etags:
                _, headers, _ = await conn.request("GET", f"/api/v1/projects/bench/flags/{key}")
                etags[key] = headers["etag"]
            rule = {
                "id": "r1",
                "clauses": [{"attribute": "user.plan", "operator": "in", "values": [f"plan-{i}", "gold"]}],
                "variant": "b" if i % 2 else "c",
            }
            status, headers, _ = await conn.request(
                "PATCH",
                f"/api/v1/projects/bench/flags/{key}/environments/prod",
                {"rules": [rule], "enabled": True, "comment": "bench"},
                {"If-Match": etags[key]},
            )
            if status == 200:
                etags[key] = headers["etag"]
            else:
                etags.pop(key, None)
            return status == 200

        return call

    def read(w: int, i: int) -> Callable[[Connection], Any]:
        key = f"flag-{(w * 7 + i) % args.flags:04d}"

        async def call(conn: Connection) -> bool:
            status, _, _ = await conn.request("GET", f"/api/v1/projects/bench/flags/{key}")
            return status == 200

        return call

    def list_(w: int, i: int) -> Callable[[Connection], Any]:
        async def call(conn: Connection) -> bool:
            status, _, _ = await conn.request("GET", "/api/v1/projects/bench/flags?limit=20")
            return status == 200

        return call

    def healthz(w: int, i: int) -> Callable[[Connection], Any]:
        async def call(conn: Connection) -> bool:
            status, _, _ = await conn.request("GET", "/healthz")
            return status == 200

        return call

    scenarios = {
        "healthz": ("baseline: GET /healthz", healthz, "framework ceiling, no database"),
        "update": ("update flag env config", update, ">= 300/s, p99 <= 50 ms"),
        "read": ("read one flag", read, ">= 1000/s"),
        "list": ("list flags (20 per page)", list_, ">= 1000/s"),
    }
    results = []
    for name, make, goal in (scenarios[s] for s in args.only.split(",")):
        await drive(port, args.concurrency, args.warmup, make)  # warm-up
        cpu_before = process_cpu_seconds(args.server_pid)
        count, latencies, errors = await drive(port, args.concurrency, args.seconds, make)
        cpu_after = process_cpu_seconds(args.server_pid)
        server_cpu = cpu_after - cpu_before if cpu_before is not None and cpu_after is not None else None
        results.append(report(name, count, latencies, errors, args.seconds, goal, server_cpu))
    if args.sweep:
        print(f"\nthroughput vs concurrency ({args.seconds:.0f} s per point)")
        swept = ["healthz", *(s for s in args.sweep_only.split(",") if s != "healthz")]
        for concurrency in args.sweep:
            for key in swept:
                name, make, goal = scenarios[key]
                await drive(port, concurrency, args.warmup, make)  # warm-up
                count, latencies, errors = await drive(port, concurrency, args.seconds, make)
                figures = report(f"{name}, {concurrency} conn", count, latencies, errors, args.seconds, goal)
                results.append({**figures, "sweep": key, "sweep_scenario": name, "concurrency": concurrency})
    return results


FLOOR_NAME = "GET /healthz, same client and connections"
GOALS: dict[str, tuple[Op, float]] = {"update": (">=", 300.0), "read": (">=", 1000.0), "list": (">=", 1000.0)}


def result_rows(results: list[dict[str, Any]], concurrency: int) -> list[dict[str, Any]]:
    """The rows of ``benchmarks/results.py``: each scenario beside the ``/healthz`` baseline run by the same
    client at the same concurrency; the update scenario also gives its p99 (goal <= 50 ms)."""
    keys = {
        "baseline: GET /healthz": "healthz",
        "update flag env config": "update",
        "read one flag": "read",
        "list flags (20 per page)": "list",
    }
    main = {keys[r["scenario"]]: r for r in results if "sweep" not in r}
    rows = []
    for key, figures in main.items():
        if key == "healthz":
            continue
        floor = main.get("healthz")
        op, goal = GOALS[key]
        note = (
            f"{concurrency} connections; p50 {figures['p50_ms']} ms, p99 {figures['p99_ms']} ms, "
            f"{figures['errors']} errors"
        )
        if figures.get("server_cpu_us") is not None and floor and floor.get("server_cpu_us") is not None:
            note += (
                f"; server CPU {figures['server_cpu_us']} us per request "
                f"(/healthz {floor['server_cpu_us']} us)"
            )
        rows.append(
            row(
                f"control plane: {figures['scenario']}",
                figures["per_second"],
                "requests/s",
                floor["per_second"] if floor else None,
                FLOOR_NAME,
                goal_op=op,
                goal_value=goal,
                note=note,
            )
        )
        if key == "update":
            rows.append(
                row(
                    f"control plane: {figures['scenario']}, p99",
                    figures["p99_ms"],
                    "ms",
                    floor["p99_ms"] if floor else None,
                    FLOOR_NAME,
                    goal_op="<=",
                    goal_value=50.0,
                    note=note,
                )
            )
    swept = [r for r in results if "sweep" in r]
    floors = {r["concurrency"]: r for r in swept if r["sweep"] == "healthz"}
    for r in swept:
        if r["sweep"] != "healthz":
            floor = floors.get(r["concurrency"])
            rows.append(
                row(
                    f"control plane: {r['scenario']}",
                    r["per_second"],
                    "requests/s",
                    floor["per_second"] if floor else None,
                    FLOOR_NAME,
                    note=f"p99 {r['p99_ms']} ms, {r['errors']} errors",
                    series=f"control plane: {r['sweep_scenario']} (HTTP)",
                    concurrency=r["concurrency"],
                )
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--flags", type=int, default=64)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument("--only", default="healthz,update,read,list", help="scenarios, comma-separated")
    parser.add_argument(
        "--sweep", type=parse_levels, metavar="1,2,4,...", help="also run --sweep-only at these concurrencies"
    )
    parser.add_argument("--sweep-only", default="read", help="scenarios of the sweep (beside healthz)")
    add_json_argument(parser)
    args = parser.parse_args()

    db = f"flagyard_bench_{uuid.uuid4().hex[:8]}"
    sync_queue = db  # the run's own RQ queue, deleted with its jobs at the end
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{db}"
    server = None
    try:
        config = Config(str(ROOT / "alembic.ini"))
        config.set_main_option("sqlalchemy.url", url)
        config.attributes["configure_logging"] = False
        command.upgrade(config, "head")
        port = free_port()
        env = {
            **os.environ,
            "FLAGYARD_DATABASE_URL": url,
            "FLAGYARD_REDIS_URL": REDIS_URL,
            "FLAGYARD_SYNC_QUEUE": sync_queue,
            "FLAGYARD_RATE_LIMIT_REQUESTS": "0",
            "FLAGYARD_OUTBOX_RELAY_INTERVAL_SECONDS": "5",
            "FLAGYARD_DB_POOL_SIZE": "10",
        }
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "flagyard.control_plane.main:app_from_env",
                "--port",
                str(port),
                "--workers",
                "1",
                "--no-access-log",
                "--log-level",
                "warning",
                "--loop",
                "uvloop",
                "--http",
                "httptools",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError as exc:
                if server.poll() is not None or time.monotonic() > deadline:
                    output = server.stderr.read().decode() if server.stderr else ""
                    raise SystemExit("uvicorn did not start: " + output) from exc
                time.sleep(0.1)
        print(
            f"control plane: 1 uvicorn worker, {args.concurrency} connections, "
            f"{args.seconds:.0f} s per scenario, {os.cpu_count()} CPUs"
        )
        args.server_pid = server.pid
        results = asyncio.run(run_scenarios(port, args))
        if args.json:
            print(json.dumps(results, indent=2))
        write_json(args.json_out, result_rows(results, args.concurrency))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        with redis.Redis.from_url(REDIS_URL) as connection:
            Queue(sync_queue, connection=connection).delete(delete_jobs=True)


if __name__ == "__main__":
    main()
