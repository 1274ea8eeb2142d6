"""The resolver protocol every mode implements, and provider events."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any, Protocol

from flagyard.rule_engine import EvaluationResult, FlagSet, FlagType


class ProviderEvent(StrEnum):
    READY = "READY"
    CONFIGURATION_CHANGED = "CONFIGURATION_CHANGED"
    ERROR = "ERROR"
    STALE = "STALE"


Listener = Callable[[ProviderEvent, list[str], str | None], None]
"""Called with the event, the changed flag keys (for CONFIGURATION_CHANGED) and a message."""


class Resolver(Protocol):
    """Where flag values come from: a file (offline), the data plane (remote) or a streamed copy (local).

    ``resolve`` and ``resolve_all`` never raise. ``ready``: values come from the live source (or the file);
    ``fatal``: the source refused the SDK key, only defaults (or the bootstrap file) are served.
    """

    def resolve(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType
    ) -> EvaluationResult: ...

    def resolve_all(self, context: Mapping[str, Any]) -> dict[str, EvaluationResult]: ...

    @property
    def ready(self) -> bool: ...

    @property
    def fatal(self) -> bool: ...

    def wait_ready(self, timeout: float) -> bool: ...

    def add_listener(self, listener: Listener) -> None: ...

    def close(self) -> None: ...


class Listeners:
    """Fan-out of provider events; a failing listener never affects the others or the SDK."""

    def __init__(self) -> None:
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()

    def add(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def reset_after_fork(self) -> None:
        """A new lock: another thread may have held the old one when the process forked."""
        self._lock = threading.Lock()

    def emit(self, event: ProviderEvent, flags: list[str] | None = None, message: str | None = None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(event, flags or [], message)
            except Exception:  # noqa: S112 - an app's listener must not break the SDK
                continue


def notify(listener: Listener, event: ProviderEvent, message: str | None = None) -> None:
    """Tell one listener (a late subscriber) the current state; its failure is ignored."""
    with contextlib.suppress(Exception):  # an app's listener must not break the SDK
        listener(event, [], message)


def changed_flags(old: FlagSet, new: FlagSet) -> list[str]:
    """Keys of flags added, removed or changed between two flag sets (segments count for all flags)."""
    if {k: s.source for k, s in old.segments.items()} != {k: s.source for k, s in new.segments.items()}:
        return sorted(set(old.flags) | set(new.flags))
    keys = set(old.flags) | set(new.flags)
    return sorted(
        k
        for k in keys
        if k not in old.flags or k not in new.flags or old.flags[k].source != new.flags[k].source
    )
