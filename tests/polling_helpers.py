"""Helpers every suite's stack shares: a free local port, and polling until a condition holds.

Importable by name from any test directory (``tests/`` is on the import path through its conftest)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and this process never handed out before.

    The kernel may give a just-closed port again, so two calls for one stack (say the syncer's metrics and
    the gRPC port) could return the same number before either is bound; remembering what was handed out
    makes ports taken together distinct."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_until(predicate: Callable[[], Any], timeout: float = 30.0, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy (and return that); fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
