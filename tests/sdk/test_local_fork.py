"""Fork safety with a real ``os.fork``: a child process gets its own channel and stream (local mode) and
its own channel (remote mode), and both processes see a change made after the fork."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
from sdk_helpers import ROOT, SDK_KEY, Env, ThreadPlane, seeded_env, stopping_planes, wait_until

CHILD_SCRIPT = """
import os, sys, time
from flagyard import FlagyardClient

def say(*words):  # one write per line: the two processes share the pipe
    os.write(1, (" ".join(map(str, words)) + "\\n").encode())

target, key = sys.argv[1], sys.argv[2]
local = FlagyardClient(target=target, sdk_key=key, mode="local", ready_timeout=10)
remote = FlagyardClient(target=target, sdk_key=key, mode="remote", ready_timeout=10)
assert local.string("banner", "x") == "Welcome" and remote.string("banner", "x") == "Welcome"
pid = os.fork()
role = "child" if pid == 0 else "parent"
say(role, "forked")
deadline = time.monotonic() + 20
while time.monotonic() < deadline:
    if local.string("banner", "x") == "Hi" and remote.string("banner", "x") == "Hi":
        say(role, "ok")
        break
    time.sleep(0.02)
else:
    say(role, "timeout")
if pid == 0:
    os._exit(0)
_, status = os.waitpid(pid, 0)
say("child exit", os.waitstatus_to_exitcode(status))
local.close()
remote.close()
"""


@pytest.fixture
def env() -> Iterator[Env]:
    yield from seeded_env()


@pytest.fixture
def planes() -> Iterator[list[ThreadPlane]]:
    yield from stopping_planes()


def test_forked_client__change_after_the_fork__seen_by_parent_and_child(
    env: Env, planes: list[ThreadPlane]
) -> None:
    plane = ThreadPlane(env.settings()).start()
    planes.append(plane)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD_SCRIPT, plane.target, SDK_KEY],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        forked = {proc.stdout.readline().split()[0] for _ in range(2)}
        assert forked == {"parent", "child"}
        # The child's stream is its own: the data plane sees two.
        wait_until(lambda: plane.sample("flagyard_data_plane_sync_streams") == 2, timeout=15)

        env.put_flag("banner", default_variant="b")
        out, err = proc.communicate(timeout=40)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)

    lines = set(out.splitlines())
    assert {"parent ok", "child ok", "child exit 0"} <= lines, (out, err)
    assert proc.returncode == 0, err
