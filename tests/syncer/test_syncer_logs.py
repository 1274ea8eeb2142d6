"""The syncer writes the shared log format (``flagyard.contracts.logs``): JSON lines on stdout, also from a
worker process it spawns."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import orjson
import pytest


@pytest.mark.parametrize("processes", ["1", "2"])
def test_worker__logs_json_lines_on_stdout(processes: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGYARD_")}
    env["FLAGYARD_REDIS_URL"] = os.environ.get("FLAGYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
    env["FLAGYARD_SYNC_QUEUE"] = f"fylogs-{uuid.uuid4().hex[:8]}"
    env["FLAGYARD_SYNCER_METRICS_PORT"] = "0"
    proc = subprocess.run(
        [sys.executable, "-m", "flagyard.syncer", "worker", "--burst", "--processes", processes],
        env=env,
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    lines = [orjson.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert {line["event"] for line in lines} >= {"worker.started"}
    assert sum(line["event"] == "worker.started" for line in lines) == int(processes)
    assert all({"event", "level", "timestamp"} <= set(line) for line in lines)
