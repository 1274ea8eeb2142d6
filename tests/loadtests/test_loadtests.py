"""The load tests themselves work: ``python -m loadtests.run`` brings up its own stack (``flagyard up`` with
its own database and Redis prefix), runs every scenario briefly and tears everything down; and the
evaluation user's version check catches a version that goes backwards.

Both run in subprocesses: locust monkey-patches the process with gevent, which must not happen to pytest's.
"""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
RUN_TIMEOUT = 150.0

# Request names every short run must have made (the names are part of the results' contract).
ADMIN_READS = ("GET /flags/{flag}", "GET /flags", "GET /flags/{flag}/environments/{env}")
ADMIN_WRITES = ("PATCH /flags/{flag}/environments/{env}", "POST /flags/{flag}/environments/{env}/toggle")
ROLLBACKS = ("POST /flags/{flag}/rollback", "POST /flags/{flag}/rollback [409 same state]")
GRPC = ("ResolveBoolean", "ResolveString", "ResolveInteger", "ResolveFloat", "ResolveObject", "ResolveAll")


def read_stats(path: Path) -> dict[str, tuple[int, int]]:
    """``<scenario>_stats.csv``: request name → (requests, failures)."""
    with path.open(newline="") as f:
        return {
            row["Name"]: (int(row["Request Count"]), int(row["Failure Count"])) for row in csv.DictReader(f)
        }


def failure_rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def database_exists(name: str) -> bool:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def run_runner(results: Path) -> subprocess.CompletedProcess[str]:
    """The runner, briefly; SIGTERM (its stack is then torn down) if it overruns."""
    command = [
        sys.executable,
        "-m",
        "loadtests.run",
        "--duration",
        "5s",
        "--users",
        "2",
        "--spawn-rate",
        "2",
        "--flags",
        "10",
        "--admin-wait",
        "0.02",
        "--results",
        str(results),
    ]
    proc = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=90)
        pytest.fail(f"the runner overran {RUN_TIMEOUT}s:\n{output[-5000:]}")
    finally:
        if proc.poll() is None:  # interrupted otherwise: the runner still tears its stack down
            proc.send_signal(signal.SIGTERM)
            proc.wait(90)
    return subprocess.CompletedProcess(command, proc.returncode, output, None)


@pytest.mark.timeout(300)
def test_runner__every_scenario_briefly__requests_made_no_failures_versions_only_rise(tmp_path: Path) -> None:
    results = tmp_path / "results"

    run = run_runner(results)

    assert run.returncode == 0, run.stdout[-8000:]
    for scenario in ("admin", "grpc", "mixed"):
        for suffix in ("_stats.csv", "_failures.csv", "_stats_history.csv", ".html", ".log"):
            assert (results / f"{scenario}{suffix}").is_file(), f"{scenario}{suffix}"
        assert failure_rows(results / f"{scenario}_failures.csv") == []
    admin = read_stats(results / "admin_stats.csv")
    grpc_stats = read_stats(results / "grpc_stats.csv")
    mixed = read_stats(results / "mixed_stats.csv")
    for name in (*ADMIN_READS, *ADMIN_WRITES):
        assert admin.get(name, (0, 0))[0] > 0, name
    assert sum(admin.get(name, (0, 0))[0] for name in ROLLBACKS) > 0
    for name in GRPC:
        assert grpc_stats.get(name, (0, 0))[0] > 0, name
    for name in ("ResolveAll", "ResolveBoolean", "GET /flags/{flag}"):
        assert mixed.get(name, (0, 0))[0] > 0, name
    assert sum(mixed.get(name, (0, 0))[0] for name in (*ADMIN_WRITES, *ROLLBACKS)) > 0
    for stats in (admin, grpc_stats, mixed):
        assert all(failures == 0 for _, failures in stats.values()), stats
    assert "version regression" not in mixed
    versions = json.loads((results / "mixed_versions.json").read_text())
    assert versions["regressions"] == 0
    assert versions["version_changes"] > 0
    assert versions["evaluations"] > 0
    summary = json.loads((results / "summary.json").read_text())
    assert summary["ok"] is True
    assert [s["scenario"] for s in summary["scenarios"]] == ["admin", "grpc", "mixed"]
    assert re.search(r"fy_(admin|sdk)_[\w-]{20}", (results / "stack.log").read_text()) is None  # keys masked
    database = re.search(r"\(database (flagyard_loadtest_\w+),", run.stdout)
    assert database is not None
    assert not database_exists(database.group(1))  # dropped after the run


REGRESSION_SCRIPT = textwrap.dedent(
    """
    import json
    from locust.env import Environment
    from loadtests import locustfile_grpc as g

    env = Environment(user_classes=[g.EvaluationUser])
    events = []
    env.events.request.add_listener(
        lambda name, exception=None, **kw: events.append([name, type(exception).__name__ if exception else None])
    )
    user = g.EvaluationUser(env)
    for version in (1, 3, 3, 2, 4):
        user._saw("flag-a", version)
    user._saw("flag-b", 5)
    user._saw_revision(7)
    user._saw_revision(6)
    print(json.dumps({"summary": g.TRACKER.summary(), "events": events}))
    """
)


def test_evaluation_user__version_goes_backwards__fires_a_failure_and_counts_it() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", REGRESSION_SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    summary = result["summary"]
    assert summary["regressions"] == 2  # flag-a 3 → 2, revision 7 → 6
    assert summary["version_changes"] == 2  # flag-a 1 → 3 → 4
    assert summary["versions_seen"] == 5  # (a,1) (a,2) (a,3) (a,4) (b,5)
    assert summary["highest_versions"] == {"flag-a": 4, "flag-b": 5}
    assert result["events"] == [["version regression", "VersionRegressionError"]] * 2
