"""The supervisor of ``flagyard up`` with small real child processes: restart policy, start-up failures,
ordered shutdown and the SIGKILL of stragglers."""

from __future__ import annotations

import io
import re
import sys
import threading

from up_stack import wait_until

from flagyard.cli.supervisor import ChildSpec, Output, Supervisor
from loadtests.stack import alive

PY = sys.executable
SLEEP = "import time; print('up', flush=True); time.sleep(60)"
STUBBORN = (
    "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); "
    "print('grandchild', child.pid, flush=True); time.sleep(60)"
)


def spec(name: str, code: str, **kw: object) -> ChildSpec:
    return ChildSpec(name, [PY, "-c", code], {}, **kw)  # type: ignore[arg-type]


def supervise(specs: list[ChildSpec], **kw: object) -> tuple[Supervisor, io.StringIO]:
    out = io.StringIO()
    return Supervisor(specs, Output(out, [s.name for s in specs]), **kw), out  # type: ignore[arg-type]


def test_supervisor__child_keeps_crashing_after_ready__stops_everything_and_returns_1() -> None:
    sup, out = supervise(
        [spec("crasher", "import time; time.sleep(0.2); raise SystemExit(3)"), spec("steady", SLEEP)],
        max_restarts=2,
        restart_window=60,
        ready_timeout=30,
    )
    ready = threading.Event()
    timer = threading.Timer(60, sup.request_stop)  # a bound: the test never hangs
    timer.start()
    try:
        code = sup.run(on_ready=ready.set)
    finally:
        timer.cancel()
    text = out.getvalue()
    assert ready.is_set()
    assert code == 1
    assert text.count("crasher exited unexpectedly (code 3); restarting") == 2
    assert "crasher exited 3 times within 60 s (last: code 3); it keeps crashing" in text
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
