"""``python -m loadtests.run`` (``task loadtest``): the load test scenarios against a stack of their own.

1. ``flagyard up`` on free loopback ports with a fresh database, its own Redis key prefix and sync queue
   (:mod:`loadtests.stack`); wait for its banner.
2. Seed ``--flags`` flags of every type into the demo project over the REST API, on in ``production``,
   and wait until the data plane serves every one of them.
3. Each scenario (``admin``, ``grpc``, ``mixed``) runs as ``locust --headless`` for ``--duration`` with
   ``--users`` users: CSV and HTML in ``--results`` (``<scenario>_stats.csv``, ``<scenario>.html``, …),
   locust's output in ``<scenario>.log``, the mixed scenario's version summary in ``mixed_versions.json``.
4. Always: SIGTERM to ``flagyard up`` (it stops its processes in order), bounded; the database dropped and
   the Redis keys removed. ``summary.json`` and a table sum it up.

Exit 0 when every scenario ran without a failure and the mixed scenario saw no version regression; 1
otherwise; 2 for bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import grpc
import httpx
from google.protobuf import struct_pb2

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc

from . import common
from .settings import FlagTypeName
from .stack import Stack, StackError, StackOptions, Target

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent
SCENARIOS = {
    "admin": HERE / "locustfile_admin.py",
    "grpc": HERE / "locustfile_grpc.py",
    "mixed": HERE / "locustfile_mixed.py",
}
PROJECT = "demo"
ENVIRONMENT = "production"
MAX_USERS = 20
LOCUST_GRACE = 90.0
"""Beyond the scenario's duration: locust's start, spawning, stop and reports."""
SERVE_TIMEOUT = 60.0


def log(message: str) -> None:
    print(f"loadtest: {message}", flush=True)


# --- arguments -----------------------------------------------------------------------------------------


def duration_seconds(text: str) -> int:
    """Locust's ``-t`` syntax: ``30``, ``30s``, ``2m``, ``1h30m``."""
    text = text.strip().lower()
    if text.isdigit():
        seconds = int(text)
    else:
        parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", text)
        if not parts or not any(parts.groups()):
            raise argparse.ArgumentTypeError(f"not a duration: {text!r} (e.g. 30s, 2m, 1h30m)")
        h, m, s = (int(g or 0) for g in parts.groups())
        seconds = h * 3600 + m * 60 + s
    if seconds < 1:
        raise argparse.ArgumentTypeError("the duration must be at least 1s")
    return seconds


def _bounded(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loadtests.run",
        description="Run Flagyard's locust scenarios against a stack started for the purpose.",
    )
    parser.add_argument(
        "--scenarios",
        default="admin,grpc,mixed",
        help="comma-separated, from: admin, grpc, mixed (default: all, in that order)",
    )
    parser.add_argument(
        "-u",
        "--users",
        type=_bounded(1, MAX_USERS),
        default=10,
        help=f"users (default 10, at most {MAX_USERS})",
    )
    parser.add_argument(
        "-r", "--spawn-rate", type=float, default=5.0, help="users started per second (default 5)"
    )
    parser.add_argument(
        "-t", "--duration", type=duration_seconds, default=30, help="per scenario (default 30s)"
    )
    parser.add_argument("--flags", type=_bounded(1, 2000), default=50, help="flags seeded (default 50)")
    parser.add_argument(
        "--results", type=Path, default=ROOT / "loadtest-results", help="folder (default loadtest-results/)"
    )
    parser.add_argument(
        "--mixed-admin-users", type=int, default=None, help="admin users of mixed (default: users/5, ≥ 1)"
    )
    parser.add_argument(
        "--admin-wait",
        type=float,
        default=0.1,
        help="an admin user waits up to this long between tasks (default 0.1)",
    )
    parser.add_argument(
        "--eval-wait",
        type=float,
        default=0.01,
        help="an evaluation user waits up to this long between calls (default 0.01)",
    )
    parser.add_argument(
        "--syncer-workers", type=_bounded(1, 16), default=1, help="flagyard up --syncer-workers (default 1)"
    )
    parser.add_argument(
        "--data-plane-processes",
        type=_bounded(1, 16),
        default=1,
        help="flagyard up --data-plane-processes (default 1)",
    )
    parser.add_argument("--access-log", action="store_true", help="let the control plane log every request")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("FLAGYARD_LOADTEST_POSTGRES", StackOptions.postgres_url),
        help="PostgreSQL server (a URL; the load test creates and drops its own database on it)",
    )
    parser.add_argument(
        "--redis",
        default=os.environ.get("FLAGYARD_LOADTEST_REDIS", StackOptions.redis_url),
        help="Redis (a URL with a DB index; the load test uses its own key prefix and removes it)",
    )
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = [s for s in names if s not in SCENARIOS]
    if not names or unknown:
        parser.error(f"unknown scenario(s) {unknown}; choose from {', '.join(SCENARIOS)}")
    args.scenarios = names
    if args.spawn_rate <= 0:
        parser.error("--spawn-rate must be > 0")
    return args


# --- seeding -------------------------------------------------------------------------------------------


def seed(target: Target, count: int) -> dict[str, FlagTypeName]:
    """Create the load test's flags over the REST API (on in production, rules for a few countries)."""
    flags = common.seed_flags(count)
    headers = {"Authorization": f"Bearer {target.admin_key}"}
    with httpx.Client(base_url=target.rest + "/api/v1", headers=headers, timeout=30) as client:
        for key, flag_type in flags.items():
            body = common.flag_body(key, flag_type, ENVIRONMENT)
            try:
                resp = client.post(f"/projects/{PROJECT}/flags", json=body, headers={"Idempotency-Key": key})
            except httpx.HTTPError as exc:
                raise StackError(f"creating flag {key} failed: {exc}") from exc
            if resp.status_code != 201:
                raise StackError(f"creating flag {key} answered {resp.status_code}: {resp.text[:300]}")
    return flags


def wait_served(target: Target, flags: dict[str, FlagTypeName], timeout: float = SERVE_TIMEOUT) -> None:
    """Until the data plane serves every seeded flag without an error (bounded)."""
    metadata = (("authorization", f"Bearer {target.sdk_keys[ENVIRONMENT]}"),)
    context = struct_pb2.Struct()
    context.update({"targeting_key": "seed-check"})
    request = pb.ResolveAllRequest(context=context, flag_keys=list(flags))
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with grpc.insecure_channel(target.grpc) as channel:
        stub = pb_grpc.EvaluationServiceStub(channel)
        while time.monotonic() < deadline:
            try:
                response = stub.ResolveAll(request, metadata=metadata, timeout=5)
            except grpc.RpcError as exc:
                last = common.grpc_status(exc)
            else:
                served = response.flags
                ok = pb.ERROR_CODE_UNSPECIFIED
                waiting = [k for k in flags if k not in served or served[k].error_code != ok]
                if not waiting:
                    return
                last = f"{len(waiting)} flag(s) not served yet"
            time.sleep(0.2)
    raise StackError(f"the data plane did not serve the seeded flags within {timeout:.0f}s ({last})")


# --- locust --------------------------------------------------------------------------------------------


@dataclass
class Outcome:
    scenario: str
    exit_code: int | None
    requests: int = 0
    failures: int = 0
    requests_per_second: float = 0.0
    by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, Any] | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def read_stats(path: Path) -> dict[str, dict[str, Any]]:
    """Locust's ``<scenario>_stats.csv``: name → requests, failures, median, p95, p99, rps
    (``Aggregated`` is the total)."""
    rows: dict[str, dict[str, Any]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            rows[row["Name"]] = {
                "type": row["Type"],
                "requests": int(row["Request Count"]),
                "failures": int(row["Failure Count"]),
                "median_ms": _number(row.get("Median Response Time")),
                "p95_ms": _number(row.get("95%")),
                "p99_ms": _number(row.get("99%")),
                "rps": _number(row.get("Requests/s")),
            }
    return rows


def _number(text: str | None) -> float:
    try:
        return float(text or 0)
    except ValueError:
        return 0.0


def locust_env(target: Target, flags: dict[str, FlagTypeName], args: argparse.Namespace) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGYARD_")}
    mixed_admins = args.mixed_admin_users or max(1, args.users // 5)
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        PYTHONUNBUFFERED="1",
        FLAGYARD_LOADTEST_ADMIN_KEY=target.admin_key,
        FLAGYARD_LOADTEST_SDK_KEY=target.sdk_keys[ENVIRONMENT],
        FLAGYARD_LOADTEST_GRPC_TARGET=target.grpc,
        FLAGYARD_LOADTEST_PROJECT=PROJECT,
        FLAGYARD_LOADTEST_ENVIRONMENT=ENVIRONMENT,
        FLAGYARD_LOADTEST_FLAGS=json.dumps(flags),
        FLAGYARD_LOADTEST_ADMIN_WAIT_SECONDS=str(args.admin_wait),
        FLAGYARD_LOADTEST_EVAL_WAIT_SECONDS=str(args.eval_wait),
        FLAGYARD_LOADTEST_MIXED_ADMIN_USERS=str(min(mixed_admins, max(1, args.users - 1))),
        FLAGYARD_LOADTEST_SUMMARY_FILE=str(args.results / "mixed_versions.json"),
    )
    return env


def run_scenario(name: str, target: Target, env: dict[str, str], args: argparse.Namespace) -> Outcome:
    results: Path = args.results
    for stale in results.glob(f"{name}_*.csv"):
        stale.unlink()
    if name == "mixed":
        (results / "mixed_versions.json").unlink(missing_ok=True)
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(SCENARIOS[name]),
        "--headless",
        "-u",
        str(args.users),
        "-r",
        str(args.spawn_rate),
        "-t",
        f"{args.duration}s",
        "--host",
        target.rest,
        "--csv",
        str(results / name),
        "--html",
        str(results / f"{name}.html"),
        "--only-summary",
        "--stop-timeout",
        "5",
        "--exit-code-on-error",
        "1",
    ]
    log(f"scenario {name}: {args.users} user(s) for {args.duration}s")
    exit_code = _run_locust(command, env, results / f"{name}.log", args.duration + LOCUST_GRACE)
    outcome = Outcome(name, exit_code)
    stats_file = results / f"{name}_stats.csv"
    if not stats_file.is_file():
        outcome.problems.append(f"locust wrote no {stats_file.name} (exit {exit_code})")
        return outcome
    outcome.by_name = read_stats(stats_file)
    total = outcome.by_name.pop("Aggregated", {"requests": 0, "failures": 0, "rps": 0.0})
    outcome.requests, outcome.failures = total["requests"], total["failures"]
    outcome.requests_per_second = total["rps"]
    if outcome.requests == 0:
        outcome.problems.append("no requests were made")
    if outcome.failures:
        outcome.problems.append(f"{outcome.failures} failure(s) (see {name}_failures.csv)")
    if exit_code != 0:
        outcome.problems.append(f"locust exited with {exit_code}")
    if name == "mixed":
        _check_versions(outcome, results / "mixed_versions.json")
    return outcome


def _check_versions(outcome: Outcome, path: Path) -> None:
    try:
        outcome.versions = json.loads(path.read_text())
    except (OSError, ValueError):
        outcome.problems.append(f"no version summary ({path.name})")
        return
    versions = outcome.versions
    assert versions is not None
    if versions.get("regressions", 0):
        outcome.problems.append(f"{versions['regressions']} version regression(s)")
    if not versions.get("evaluations"):
        outcome.problems.append("no evaluations were checked for versions")


def _run_locust(command: list[str], env: dict[str, str], log_path: Path, timeout: float) -> int | None:
    """Locust with its output both shown and kept; stopped (SIGTERM, then SIGKILL) if it overruns."""
    with log_path.open("w", encoding="utf-8") as log_file:
        proc = subprocess.Popen(  # noqa: S603 - our own command line
            command,
            env=env,
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )

        def tee() -> None:
            assert proc.stdout is not None
            for raw in iter(proc.stdout.readline, b""):
                line = raw.decode("utf-8", "replace")
                log_file.write(line)
                sys.stdout.write(line)
            sys.stdout.flush()

        reader = threading.Thread(target=tee, daemon=True)
        reader.start()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log(f"locust overran its {timeout:.0f}s; stopping it")
            return None
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
            reader.join(10)


# --- report --------------------------------------------------------------------------------------------


def report(outcomes: list[Outcome], results: Path) -> None:
    (results / "summary.json").write_text(
        json.dumps({"ok": all(o.ok for o in outcomes), "scenarios": [asdict(o) for o in outcomes]}, indent=2)
        + "\n"
    )
    print()
    print(f"{'scenario':<10}{'requests':>10}{'failures':>10}{'req/s':>10}  result")
    for o in outcomes:
        result = "ok" if o.ok else "FAILED: " + "; ".join(o.problems)
        print(f"{o.scenario:<10}{o.requests:>10}{o.failures:>10}{o.requests_per_second:>10.1f}  {result}")
        if o.versions is not None:
            v = o.versions
            print(
                f"{'':<10}evaluations checked {v.get('evaluations')}, versions seen {v.get('versions_seen')},"
                f" version changes seen {v.get('version_changes')}, regressions {v.get('regressions')}"
            )
    print(f"results in {results}/ (summary.json, <scenario>_stats.csv, <scenario>.html, stack.log)")


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args.results = args.results.resolve()
    args.results.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _terminate)  # so that the stack is torn down below
    options = StackOptions(
        postgres_url=args.postgres,
        redis_url=args.redis,
        syncer_workers=args.syncer_workers,
        data_plane_processes=args.data_plane_processes,
        access_log=args.access_log,
    )
    stack = Stack(options, args.results / "stack.log")
    outcomes: list[Outcome] = []
    failed_early: str | None = None
    try:
        log(f"starting flagyard up (database {stack.database}, Redis prefix {stack.prefix})")
        target = stack.start()
        log(f"stack ready: REST {target.rest}, gRPC {target.grpc}; seeding {args.flags} flag(s)")
        flags = seed(target, args.flags)
        wait_served(target, flags)
        env = locust_env(target, flags, args)
        for name in args.scenarios:
            outcomes.append(run_scenario(name, target, env, args))  # noqa: PERF401 - kept if interrupted
    except StackError as exc:
        failed_early = str(exc)
        log(f"failed: {exc}\n--- last lines of {stack.log_path} ---\n{stack.tail()}")
    except KeyboardInterrupt:
        failed_early = "interrupted"
        log("interrupted; stopping the stack")
    finally:
        code = stack.stop()
        log(f"flagyard up stopped (exit {code})")
        try:
            stack.cleanup()
        except Exception as exc:  # reported; the result stands
            log(f"cleanup incomplete: {exc}")
    if outcomes:
        report(outcomes, args.results)
    if failed_early is not None:
        return 1
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
