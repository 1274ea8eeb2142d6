"""The supervisor of ``flagyard up`` with small real child processes: restart policy, start-up failures,
ordered shutdown and the SIGKILL of stragglers."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

from stack_processes import alive
from up_stack import free_port, wait_until

from flagyard.cli.supervisor import ChildSpec, Output, Supervisor

PY = sys.executable
SLEEP = "import time; print('up', flush=True); time.sleep(60)"
STUBBORN = (
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); "
    "print('grandchild', child.pid, flush=True); time.sleep(60)"
)


CRASH_LOOPING = (
    r"crasher exited \d+ times within 60 s \(last: code 3\); it keeps crashing: restarting in ([\d.]+) s, "
    r"the others keep running"
)


def spec(name: str, code: str, **kw: object) -> ChildSpec:
    return ChildSpec(name, [PY, "-c", code], {}, **kw)  # type: ignore[arg-type]


def supervise(specs: list[ChildSpec], **kw: object) -> tuple[Supervisor, io.StringIO]:
    out = io.StringIO()
    return Supervisor(specs, Output(out, [s.name for s in specs]), **kw), out  # type: ignore[arg-type]


def test_supervisor__child_keeps_crashing_after_ready__only_it_is_restarted_the_others_keep_running() -> None:
    sup, out = supervise(
        [spec("crasher", "import time; time.sleep(0.3); raise SystemExit(3)"), spec("steady", SLEEP)],
        max_restarts=2,
        restart_window=60,
        ready_timeout=30,
    )
    seen: dict[str, object] = {}

    def watch_the_crash_loop() -> None:
        try:
            steady = sup.pids()["steady"]
            # before: the third exit within the window stopped everything and run() returned 1
            wait_until(lambda: out.getvalue().count("crasher exited") >= 5, 60)
            seen.update(steady_before=steady, steady_after=sup.pids().get("steady"), stopping=sup.stopping)
            seen.update(steady_alive=alive(steady))
        finally:
            sup.request_stop()

    timer = threading.Timer(90, sup.request_stop)  # a bound: the test never hangs
    timer.start()
    try:
        code = sup.run(on_ready=lambda: threading.Thread(target=watch_the_crash_loop, daemon=True).start())
    finally:
        timer.cancel()
    text = out.getvalue()
    assert code == 0, text
    assert seen["steady_alive"] is True, text
    assert seen["steady_after"] == seen["steady_before"], text  # never restarted
    assert seen["stopping"] is False, text
    assert "stopping everything" not in text
    assert text.count("crasher exited unexpectedly (code 3); restarting in") == 2
    delays = [float(d) for d in re.findall(CRASH_LOOPING, text)]
    assert len(delays) >= 3, text
    assert delays == sorted(delays)  # backing off
    assert delays[-1] > delays[0]
    assert len(re.findall(r"crasher started \(pid \d+\)", text)) >= 5
    assert "steady stopped" in text


def test_supervisor__child_exits_before_ready__returns_1_without_calling_on_ready() -> None:
    sup, out = supervise(
        [spec("broken", "raise SystemExit(2)", ready=lambda pid: False), spec("steady", SLEEP)],
        ready_timeout=30,
    )
    called = threading.Event()
    code = sup.run(on_ready=called.set)
    assert code == 1
    assert not called.is_set()
    assert "broken exited (code 2) before it was ready; stopping" in out.getvalue()


def test_supervisor__stop_requested__stops_in_order_and_kills_stragglers_with_their_children() -> None:
    sup, out = supervise(
        [spec("first", SLEEP), spec("stubborn", STUBBORN, stop_timeout=1.0), spec("last", SLEEP)],
        stop_order=["stubborn", "first", "last"],
        ready_timeout=30,
    )
    pids: dict[str, int] = {}

    def stop_once_the_grandchild_runs() -> None:
        try:
            wait_until(lambda: "grandchild" in out.getvalue(), 30)
        finally:
            sup.request_stop()

    def on_ready() -> None:
        pids.update(sup.pids())
        threading.Thread(target=stop_once_the_grandchild_runs, daemon=True).start()

    code = sup.run(on_ready=on_ready)
    text = out.getvalue()
    assert code == 0
    grandchild = int(re.search(r"grandchild (\d+)", text).group(1))  # type: ignore[union-attr]
    assert "stubborn did not stop within 1 s; killing it" in text
    assert re.findall(r"(\w+) stopped \(", text) == ["stubborn", "first", "last"]
    wait_until(lambda: not any(alive(pid) for pid in [*pids.values(), grandchild]), 10)


HOLDER = (
    "import os, socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', {port})); s.listen(); "
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    import signal; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60); os._exit(0)\n"
    "print('bound', os.getpid(), 'helper', pid, flush=True); time.sleep(60)"
)
"""A child that listens on a port and forks a helper holding the same socket (as RQ's scheduler fork
held the syncer's metrics port), which even ignores SIGTERM."""


def test_supervisor__child_killed_with_a_helper_holding_its_port__helper_killed_and_restart_binds_again() -> (
    None
):
    port = free_port()
    sup, out = supervise(
        [spec("holder", HOLDER.format(port=port)), spec("steady", SLEEP)], max_restarts=3, ready_timeout=30
    )
    first: dict[str, int] = {}

    def kill_then_wait_for_the_restart() -> None:
        try:
            match = wait_until(lambda: re.search(r"bound (\d+) helper (\d+)", out.getvalue()), 30)
            first.update(child=int(match.group(1)), helper=int(match.group(2)))
            os.kill(first["child"], signal.SIGKILL)
            wait_until(lambda: len(re.findall(r"bound \d+ helper", out.getvalue())) >= 2, 30)
        finally:
            sup.request_stop()

    code = sup.run(
        on_ready=lambda: threading.Thread(target=kill_then_wait_for_the_restart, daemon=True).start()
    )
    text = out.getvalue()
    _kill_leftovers({int(pid) for pid in re.findall(r"helper (\d+)", text)})
    assert code == 0, text
    assert "holder exited unexpectedly (by SIGKILL); restarting" in text
    assert "Address already in use" not in text  # before: the helper kept the port, every restart failed
    assert len(re.findall(r"bound \d+ helper", text)) == 2
    assert not alive(first["helper"])


SUPERVISED = """
import json, sys
from flagyard.cli.supervisor import ChildSpec, Output, Supervisor
specs = [ChildSpec(name, [sys.executable, "-c", code], {{}}) for name, code in json.loads(sys.argv[1]).items()]
sup = Supervisor(specs, Output(sys.stdout, [s.name for s in specs]), ready_timeout=30)
sup.run(on_ready=lambda: print("READY", json.dumps(sup.pids()), flush=True))
"""


def test_supervisor__killed_with_sigkill__children_and_their_children_die_and_free_the_port() -> None:
    port = free_port()
    children = {"holder": HOLDER.format(port=port), "steady": SLEEP, "stubborn": STUBBORN}
    proc = subprocess.Popen(
        [PY, "-c", SUPERVISED.format(), json.dumps(children)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    pids: set[int] = set()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the ready line and both helpers' pids, in whatever order
            lines.append(line)
            text = "".join(lines)
            if all(word in text for word in ("READY", "grandchild", "bound")):
                break
        text = "".join(lines)
        pids.update(json.loads(text.split("READY ", 1)[1].splitlines()[0]).values())
        pids |= {int(m) for m in re.findall(r"(?:helper|grandchild) (\d+)", text)}
        assert len(pids) == 5
        assert all(alive(pid) for pid in pids)

        proc.kill()
        proc.wait(10)
        killed = time.monotonic()

        # before: all five lived on (each in its own session), and the port stayed taken
        wait_until(lambda: not any(alive(pid) for pid in pids), 15)
        wait_until(lambda: _bindable(port), 15)
        print(f"children gone {time.monotonic() - killed:.2f} s after the supervisor's SIGKILL")
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        _kill_leftovers(pids)


def _kill_leftovers(pids: set[int]) -> None:
    """After a failure: nothing this test started may outlive it."""
    for pid in pids:
        if alive(pid):
            os.kill(pid, signal.SIGKILL)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True
