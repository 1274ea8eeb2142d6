"""Crashes under a real ``flagyard up``: a syncer killed with SIGKILL is restarted (its port is free again)
and the change made meanwhile is served within seconds; a supervisor killed with SIGKILL takes every
process it started with it, and frees every port.

Before: the syncer's forked RQ scheduler outlived it holding the metrics port, every restart failed with
"Address already in use" and the supervisor stopped the platform; a killed supervisor left its children
running (each in its own session) with the ports bound."""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))  # up_stack

from stack_processes import alive, descendants
from up_stack import Isolation, running_up, wait_until

from flagyard import FlagyardClient

pytestmark = [pytest.mark.faults, pytest.mark.timeout(400)]

FLAG = "payments-enabled"
CONTEXT = {"targeting_key": "u-1"}


@pytest.fixture
def isolation() -> Iterator[Isolation]:
    iso = Isolation()
    try:
        yield iso
    finally:
        iso.cleanup()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def test_syncer_killed_under_up__restarted_on_its_port_and_the_change_made_meanwhile_is_served(
    isolation: Isolation, tmp_path: Path
) -> None:
    with running_up(isolation, tmp_path) as up:
        banner = up.wait_ready()
        assert banner.admin_key is not None
        target = f"127.0.0.1:{isolation.grpc_port}"
        client = FlagyardClient(
            target=target, sdk_key=banner.sdk_keys["production"], mode="remote", timeout=2
        )
        try:
            assert client.boolean(FLAG, False, CONTEXT) is True
            mark = len(up.lines)
            os.kill(banner.pids["syncer-1"], signal.SIGKILL)
            killed = time.monotonic()
            reply = httpx.post(
                f"http://127.0.0.1:{isolation.http_port}/api/v1/projects/demo/flags/{FLAG}"
                "/environments/production/toggle",
                json={"enabled": False},
                headers={"Authorization": f"Bearer {banner.admin_key}"},
                timeout=10,
            )
            assert reply.status_code == 200, reply.text
            up.wait_for(r"syncer-1 exited unexpectedly \(by SIGKILL\); restarting", 30, after=mark)
            _, started = up.wait_for(r"syncer-1 started \(pid (\d+)\)", 30, after=mark)
            wait_until(lambda: client.boolean(FLAG, True, CONTEXT) is False, 60)
            served_after = time.monotonic() - killed
        finally:
            client.close()
        metrics = wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{isolation.syncer_metrics_port}/metrics", timeout=2).text, 30
        )
        assert "flagyard_syncer_reconcile_last_success_timestamp_seconds" in metrics
        assert up.proc.poll() is None  # the platform stayed up
        restarted = int(started.group(1))
        up.stop()
    assert "Address already in use" not in up.output
    assert "keeps crashing" not in up.output
    assert restarted != banner.pids["syncer-1"]
    print(f"change served {served_after:.2f} s after the syncer's SIGKILL")


def test_supervisor_killed_under_up__every_process_it_started_exits_and_every_port_is_freed(
    isolation: Isolation, tmp_path: Path
) -> None:
    ports = [isolation.http_port, isolation.grpc_port, isolation.metrics_port, isolation.syncer_metrics_port]
    with running_up(isolation, tmp_path, "--syncer-workers", "2", "--data-plane-processes", "2") as up:
        banner = up.wait_ready()
        below = descendants(up.proc.pid)
        assert set(banner.pids.values()) <= below
        assert len(below) > len(banner.pids)  # the data plane's workers and the watchdog
        assert not any(_bindable(port) for port in ports)

        up.proc.kill()
        up.proc.wait(10)
        killed = time.monotonic()
        try:
            # before: every one of them kept running, and kept the ports
            wait_until(lambda: not any(alive(pid) for pid in below), 20)
            wait_until(lambda: all(_bindable(port) for port in ports), 20)
            gone_after = time.monotonic() - killed
        finally:
            for pid in below:  # orphans are no longer below the dead supervisor: end them here
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
    print(f"{len(below)} processes gone, ports free {gone_after:.2f} s after the supervisor's SIGKILL")
