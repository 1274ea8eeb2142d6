"""A small process supervisor: one group of child processes with prefixed logs, readiness checks, bounded
restarts and an ordered, graceful shutdown. ``flagyard up`` runs the three planes with it.

Policy:

* Every child runs in its own session (``start_new_session``), so a terminal's Ctrl-C reaches only the
  supervisor, which then stops the children in the order it was given. The supervisor owns each child's
  whole process group: whatever the child started (a forked helper, worker processes) is stopped with it,
  also when the child crashes — its group gets SIGTERM and, after ``GROUP_GRACE`` seconds, SIGKILL before
  the child is started again, so nothing of the dead child still holds its ports.
* Children never outlive the supervisor, even when it is killed with SIGKILL: on Linux each child asks the
  kernel for SIGTERM when the supervisor dies (``PR_SET_PDEATHSIG``), and a small watchdog process, which
  learns every child's process group through a pipe, sees the pipe close when the supervisor dies and
  stops those groups (SIGTERM, then SIGKILL after ``WATCHDOG_GRACE`` seconds). Children also find the
  supervisor's pid in ``FLAGYARD_SUPERVISOR_PID``.
* Each child's stdout and stderr are read line by line and written as ``name | line`` (the prefix
  coloured on a terminal unless ``NO_COLOR`` is set).
* Start-up: a child that exits before every child is ready, or a group not ready within
  ``ready_timeout`` seconds, is fatal: everything is stopped and :meth:`Supervisor.run` returns 1 (a
  platform that never came up is a configuration error to fix, not an outage to ride out).
* After start-up a child that exits is restarted after a backoff (0.5 s, doubling with each exit in a row,
  at most ``BACKOFF_MAX`` = 30 s; the streak ends once the child has run ``restart_window`` seconds). A
  child that exits more than ``max_restarts`` times within ``restart_window`` seconds is crash-looping:
  every exit says so loudly, but only that child is affected — it keeps being restarted and the others keep
  running, as supervisord marks one program FATAL and leaves the rest alone. One plane's crash loop (a
  syncer while Redis is away) must not stop the others: the data plane keeps serving from memory
  while Redis is down, and the control plane keeps committing changes to PostgreSQL.
* SIGINT, SIGTERM or SIGHUP: each child in ``stop_order`` gets SIGTERM and up to its ``stop_timeout``
  seconds to exit, then its whole process group gets SIGKILL; :meth:`Supervisor.run` returns 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TextIO

BACKOFF_INITIAL = 0.5
BACKOFF_MAX = 30.0
"""Seconds at most between two restarts of a child that keeps exiting."""
GROUP_GRACE = 2.0
"""Seconds a stopped child's own children get to follow it before its process group is killed."""
WATCHDOG_GRACE = 3.0
"""Seconds the children of a supervisor that died get between SIGTERM and SIGKILL."""
PR_SET_PDEATHSIG = 1
SUPERVISOR_PID_ENV = "FLAGYARD_SUPERVISOR_PID"

_WATCHDOG = """
import os, signal, sys, time
groups = set()
for line in sys.stdin:
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))

def send(group, sig):
    try:
        os.killpg(group, sig)
        return True
    except OSError:
        return False

groups = {group for group in groups if send(group, signal.SIGTERM)}
deadline = time.monotonic() + float(sys.argv[1])
while groups and time.monotonic() < deadline:
    time.sleep(0.05)
    groups = {group for group in groups if send(group, 0)}
for group in groups:
    send(group, signal.SIGKILL)
"""
"""The watchdog: reads ``+pgid``/``-pgid`` lines until the supervisor's end of the pipe closes (it exited or
was killed), then stops every group still listed."""

ReadyCheck = Callable[[int], bool]
"""Called with the child's pid; True once the child serves. Must return within about a second."""


@dataclass(frozen=True)
class ChildSpec:
    """One child process of the group."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    ready: ReadyCheck | None = None
    stop_timeout: float = 15.0


class Output:
    """Writes whole lines from several threads to one stream: ``name | text``, prefixes padded alike."""

    COLORS = ("36", "33", "35", "32", "34", "91", "96", "93")
    SELF = "flagyard"

    def __init__(self, stream: TextIO, names: Sequence[str], *, color: bool | None = None) -> None:
        self._stream = stream
        self._lock = threading.RLock()  # re-entrant: a signal handler may write while a line is written
        self._width = max(len(n) for n in [*names, self.SELF])
        if color is None:
            color = bool(getattr(stream, "isatty", lambda: False)()) and "NO_COLOR" not in os.environ
        self._color = color
        self._colors = {name: self.COLORS[i % len(self.COLORS)] for i, name in enumerate(names)}
        self._colors[self.SELF] = "1"
        self._broken = False

    def line(self, name: str, text: str) -> None:
        """One line of ``name`` (a child, or :attr:`SELF` for the supervisor's own messages)."""
        prefix = f"{name:<{self._width}} |"
        if self._color:
            prefix = f"\x1b[{self._colors.get(name, '0')}m{prefix}\x1b[0m"
        self.raw(f"{prefix} {text}")

    def say(self, text: str) -> None:
        self.line(self.SELF, text)

    def raw(self, text: str) -> None:
        """Lines without a prefix (the ready banner)."""
        with self._lock:
            if self._broken:
                return
            try:
                self._stream.write(text + "\n")
                self._stream.flush()
            except (BrokenPipeError, OSError, ValueError):
                self._broken = True  # nobody reads our output any more; keep supervising


@dataclass
class _Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    ready: bool = False
    restart_at: float | None = None
    started_at: float = 0.0
    streak: int = 0
    """Exits in a row, each after less than ``restart_window`` seconds of running: the backoff's exponent."""
    deaths: deque[float] = field(default_factory=deque)


class Supervisor:
    """Runs ``specs`` as one group until a signal or a fatal start-up failure."""

    def __init__(
        self,
        specs: Sequence[ChildSpec],
        output: Output,
        *,
        stop_order: Sequence[str] | None = None,
        ready_timeout: float = 60.0,
        max_restarts: int = 5,
        restart_window: float = 60.0,
    ) -> None:
        names = [s.name for s in specs]
        if len(set(names)) != len(names):
            raise ValueError("child names must be unique")
        order = list(stop_order) if stop_order is not None else names
        if sorted(order) != sorted(names):
            raise ValueError("stop_order must name every child once")
        self._children = {s.name: _Child(s) for s in specs}
        self._stop_order = order
        self._out = output
        self._ready_timeout = ready_timeout
        self._max_restarts = max_restarts
        self._restart_window = restart_window
        self._stop = threading.Event()
        self._watchdog: subprocess.Popen[bytes] | None = None

    def request_stop(self) -> None:
        """Stop everything (what SIGINT/SIGTERM/SIGHUP do); safe from any thread."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def pids(self) -> dict[str, int]:
        """The pid of every running child."""
        return {
            name: c.proc.pid
            for name, c in self._children.items()
            if c.proc is not None and c.proc.poll() is None
        }

    def run(
        self,
        *,
        group_ready: Callable[[], bool] | None = None,
        on_ready: Callable[[], None] | None = None,
    ) -> int:
        """Start the children, wait until each is ready and then ``group_ready()`` is true, call
        ``on_ready()`` once, and supervise until stopped. 0 after a signal, 1 after a fatal failure."""
        previous = {
            sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        }
        self._start_watchdog()
        try:
            code = self._supervise(group_ready, on_ready)
        finally:
            # A second Ctrl-C during the shutdown must not interrupt it half-way.
            for sig in previous:
                signal.signal(sig, signal.SIG_IGN)
            self._shutdown()
            self._stop_watchdog()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    def _start_watchdog(self) -> None:
        """The process that stops every child's group if this one dies without doing it (SIGKILL)."""
        try:
            self._watchdog = subprocess.Popen(  # noqa: S603 - our own code, no shell
                [sys.executable, "-c", _WATCHDOG, str(WATCHDOG_GRACE)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,  # a terminal's Ctrl-C must not end it before it is needed
            )
        except OSError as exc:
            self._out.say(f"no watchdog ({exc}): children may outlive a killed supervisor")

    def _tell_watchdog(self, line: str) -> None:
        watchdog = self._watchdog
        if watchdog is None or watchdog.stdin is None:
            return
        try:
            watchdog.stdin.write(line.encode() + b"\n")
            watchdog.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            self._watchdog = None

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is None:
            return
        with contextlib.suppress(OSError, ValueError):
            if watchdog.stdin is not None:
                watchdog.stdin.close()  # every group is gone: it finds nothing to stop and exits
        try:
            watchdog.wait(WATCHDOG_GRACE + 2)
        except subprocess.TimeoutExpired:
            watchdog.kill()
            watchdog.wait()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        if not self._stop.is_set():
            self._out.say(f"{signal.Signals(signum).name}: stopping")
        self._stop.set()

    def _supervise(self, group_ready: Callable[[], bool] | None, on_ready: Callable[[], None] | None) -> int:
        for child in self._children.values():
            self._spawn(child)
        deadline = time.monotonic() + self._ready_timeout
        all_ready = False
        while not self._stop.wait(0.1):
            now = time.monotonic()
            for child in self._children.values():
                if child.proc is None:
                    if child.restart_at is not None and now >= child.restart_at:
                        self._spawn(child)
                    continue
                code = child.proc.poll()
                if code is None:
                    continue
                if child.reader is not None:
                    child.reader.join(1.0)  # its last lines first
                # Whatever it started dies with it, before anything is started again: a survivor would
                # still hold the ports (RQ's forked scheduler did, and every restart failed).
                _reap_group(child.proc.pid, terminate=True)
                self._tell_watchdog(f"-{child.proc.pid}")
                child.proc = None
                if not all_ready:
                    self._out.say(
                        f"{child.spec.name} exited ({_describe(code)}) before it was ready; stopping"
                    )
                    return 1
                self._schedule_restart(child, code, now)
            if all_ready:
                continue
            for child in self._children.values():
                if not child.ready and child.proc is not None:
                    child.ready = child.spec.ready is None or _check(child.spec.ready, child.proc.pid)
            if all(c.ready for c in self._children.values()) and (group_ready is None or _check(group_ready)):
                all_ready = True
                if on_ready is not None:
                    on_ready()
            elif now > deadline:
                waiting = [c.spec.name for c in self._children.values() if not c.ready] or ["the group check"]
                self._out.say(
                    f"not ready within {self._ready_timeout:g} s (waiting for {', '.join(waiting)}); stopping"
                )
                return 1
        return 0

    def _schedule_restart(self, child: _Child, code: int, now: float) -> None:
        """Plan a restart with backoff. A crash-looping child is restarted too (less and less often): a
        child's crash loop never stops the others."""
        child.deaths.append(now)
        while child.deaths and child.deaths[0] < now - self._restart_window:
            child.deaths.popleft()
        child.streak = child.streak + 1 if now - child.started_at < self._restart_window else 1
        delay = min(BACKOFF_INITIAL * 2 ** (child.streak - 1), BACKOFF_MAX)
        child.restart_at = now + delay
        name = child.spec.name
        if len(child.deaths) > self._max_restarts:
            self._out.say(
                f"{name} exited {len(child.deaths)} times within {self._restart_window:g} s "
                f"(last: {_describe(code)}); it keeps crashing: restarting in {delay:g} s, "
                "the others keep running"
            )
            return
        self._out.say(f"{name} exited unexpectedly ({_describe(code)}); restarting in {delay:g} s")

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        proc = subprocess.Popen(  # noqa: S603 - the argv is ours (ChildSpec), no shell
            list(spec.argv),
            env={**spec.env, SUPERVISOR_PID_ENV: str(os.getpid())},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent_hook(),
        )
        self._tell_watchdog(f"+{proc.pid}")
        child.proc = proc
        child.restart_at = None
        child.started_at = time.monotonic()
        child.reader = threading.Thread(
            target=self._pump, args=(spec.name, proc), name=f"flagyard-log-{spec.name}", daemon=True
        )
        child.reader.start()
        self._out.say(f"{spec.name} started (pid {proc.pid})")

    def _pump(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        stream = proc.stdout
        if stream is None:
            return
        with stream:
            for raw in iter(stream.readline, b""):
                self._out.line(name, raw.decode("utf-8", "replace").rstrip("\r\n"))

    def _shutdown(self) -> None:
        for name in self._stop_order:
            child = self._children[name]
            proc = child.proc
            if proc is None:
                continue
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(child.spec.stop_timeout)
                except subprocess.TimeoutExpired:
                    self._out.say(f"{name} did not stop within {child.spec.stop_timeout:g} s; killing it")
                    _kill_group(proc.pid)
                    proc.wait()
            _reap_group(proc.pid)
            self._tell_watchdog(f"-{proc.pid}")
            if child.reader is not None:
                child.reader.join(2.0)
            self._out.say(f"{name} stopped ({_describe(proc.returncode)})")
            child.proc = None


def _describe(code: int | None) -> str:
    if code is not None and code < 0:
        with contextlib.suppress(ValueError):
            return f"by {signal.Signals(-code).name}"
    return f"code {code}"


def _check(check: Callable[..., bool], *args: int) -> bool:
    try:
        return bool(check(*args))
    except Exception:  # a readiness probe that fails means "not yet"
        return False


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _reap_group(pgid: int, *, terminate: bool = False) -> None:
    """Give what the child started (its workers) a moment to follow it (after SIGTERM with ``terminate``),
    then kill what is left."""
    if terminate:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + GROUP_GRACE
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.05)
    _kill_group(pgid)


def _die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel send the child SIGTERM when this process dies (Linux's
    ``PR_SET_PDEATHSIG``; the signal follows the *thread* that forked, so children are started from the
    supervising thread, which outlives them). None where prctl is unavailable."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    parent = os.getpid()
    term = int(signal.SIGTERM)

    def hook() -> None:
        prctl(PR_SET_PDEATHSIG, term, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before the request: no signal will come
            os.kill(os.getpid(), term)

    return hook
