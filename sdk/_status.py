"""The provider status every mode reports: one enum, the transitions allowed between its values, and the
sink that turns each transition into exactly one provider event.

The values are OpenFeature's provider statuses. A resolver never sets a flag of its own for "ready",
"stale" or "fatal": it asks :class:`StatusMachine` to move, and the machine refuses what the table does not
allow (STALE before the first READY, STALE after FATAL, any return to NOT_READY), so a late stale timer or
a repeated failure needs no guard of its own at the call site.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from enum import StrEnum

from ._resolver import Listener, ProviderEvent


class ProviderStatus(StrEnum):
    NOT_READY = "NOT_READY"
    """Nothing received from the source yet (defaults or the bootstrap file are served)."""
    READY = "READY"
    STALE = "STALE"
    """Disconnected for a while after READY: the last known flags are served."""
    ERROR = "ERROR"
    """The source fails (never reached yet, or a remote call failed); defaults or last known are served."""
    FATAL = "FATAL"
    """The source refused the SDK key: defaults (or the bootstrap file) are served until it accepts it."""


TRANSITIONS: dict[ProviderStatus, frozenset[ProviderStatus]] = {
    ProviderStatus.NOT_READY: frozenset({ProviderStatus.READY, ProviderStatus.ERROR, ProviderStatus.FATAL}),
    ProviderStatus.READY: frozenset({ProviderStatus.STALE, ProviderStatus.ERROR, ProviderStatus.FATAL}),
    ProviderStatus.STALE: frozenset({ProviderStatus.READY, ProviderStatus.ERROR, ProviderStatus.FATAL}),
    ProviderStatus.ERROR: frozenset({ProviderStatus.READY, ProviderStatus.FATAL}),
    ProviderStatus.FATAL: frozenset({ProviderStatus.READY}),
}
"""Every change of status allowed. STALE only follows READY (there must be something to be stale); ERROR and
FATAL never become STALE (what is served is already not live); FATAL ends only when the key is accepted
again; nothing returns to NOT_READY. Staying in a status is not a transition."""


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


SERVING = frozenset({ProviderStatus.READY, ProviderStatus.STALE})
"""Statuses in which values come from the live source (when STALE, its last known flags)."""

EVENTS: dict[ProviderStatus, ProviderEvent] = {
    ProviderStatus.READY: ProviderEvent.READY,
    ProviderStatus.STALE: ProviderEvent.STALE,
    ProviderStatus.ERROR: ProviderEvent.ERROR,
    ProviderStatus.FATAL: ProviderEvent.ERROR,
}
"""The event announcing arrival in a status. FATAL is announced as ERROR: a listener that must tell them
apart reads the status, which cannot change while it runs (see :meth:`StatusMachine.move`)."""


def allowed(source: ProviderStatus, target: ProviderStatus) -> bool:
    return target in TRANSITIONS[source]


class StatusMachine:
    """A resolver's status and its listeners.

    Moves are serialized with the events they emit, so listeners see the transitions in the order they
    happened and a listener reading :attr:`status` reads the status its event announced.
    """

    def __init__(self, initial: ProviderStatus = ProviderStatus.NOT_READY) -> None:
        self._status = initial
        self._message: str | None = None
        self._listeners = Listeners()
        self._lock = threading.RLock()

    @property
    def status(self) -> ProviderStatus:
        return self._status

    def move(
        self, target: ProviderStatus, message: str | None = None, *, when: Callable[[], bool] | None = None
    ) -> bool:
        """Move to ``target`` and emit its event once; False (nothing emitted) when already there, when the
        table refuses the transition, or when ``when`` (checked in turn with every other move) says no."""
        with self._lock:
            if not allowed(self._status, target) or (when is not None and not when()):
                return False
            self._status, self._message = target, message
            self._listeners.emit(EVENTS[target], message=message)
            return True

    def changed(self, keys: list[str], message: str | None = None) -> None:
        """Announce changed flags (not a transition: the status stays)."""
        if keys:
            with self._lock:
                self._listeners.emit(ProviderEvent.CONFIGURATION_CHANGED, keys, message)

    def add_listener(self, listener: Listener) -> None:
        """Subscribe, and tell the new listener the current status unless it is NOT_READY."""
        with self._lock:
            self._listeners.add(listener)
            if self._status is not ProviderStatus.NOT_READY:
                notify(listener, EVENTS[self._status], self._message)

    def reset_after_fork(self) -> None:
        """New locks: another thread may have held the old ones when the process forked."""
        self._lock = threading.RLock()
        self._listeners.reset_after_fork()
