"""The provider status machine: every pair of statuses is either an allowed transition, announced by exactly
one event, or refused, leaving the status as it was and announcing nothing."""

from __future__ import annotations

import itertools

import pytest

from flagyard import ProviderEvent, ProviderStatus
from flagyard.sdk._status import EVENTS, TRANSITIONS, StatusMachine, allowed

S = ProviderStatus
# One row per source status: the table reads like the one in ARCHITECTURE.md.
ALLOWED = {
    (S.NOT_READY, S.READY), (S.NOT_READY, S.ERROR), (S.NOT_READY, S.FATAL),
    (S.READY, S.STALE), (S.READY, S.ERROR), (S.READY, S.FATAL),
    (S.STALE, S.READY), (S.STALE, S.ERROR), (S.STALE, S.FATAL),
    (S.ERROR, S.READY), (S.ERROR, S.FATAL),
    (S.FATAL, S.READY),
}  # fmt: skip
"""Written out by hand, not derived from the table under test."""
PAIRS = list(itertools.product(ProviderStatus, repeat=2))
ANNOUNCED = {
    S.READY: ProviderEvent.READY,
    S.STALE: ProviderEvent.STALE,
    S.ERROR: ProviderEvent.ERROR,
    S.FATAL: ProviderEvent.ERROR,
}


class Recorder:
    def __init__(self, machine: StatusMachine) -> None:
        self.machine = machine
        self.seen: list[tuple[ProviderEvent, list[str], str | None, ProviderStatus]] = []

    def __call__(self, event: ProviderEvent, flags: list[str], message: str | None) -> None:
        self.seen.append((event, flags, message, self.machine.status))


def machine_in(status: ProviderStatus) -> tuple[StatusMachine, Recorder]:
    """A machine brought to ``status`` through allowed moves, with a listener subscribed after."""
    machine = StatusMachine()
    path = {
        S.NOT_READY: [],
        S.READY: [S.READY],
        S.STALE: [S.READY, S.STALE],
        S.ERROR: [S.ERROR],
        S.FATAL: [S.FATAL],
    }[status]
    for step in path:
        assert machine.move(step)
    recorder = Recorder(machine)
    machine.add_listener(recorder)
    recorder.seen.clear()  # what subscribing tells is tested on its own
    return machine, recorder


def test_table__is_the_documented_one_and_covers_every_status() -> None:
    assert set(TRANSITIONS) == set(ProviderStatus)
    assert {(a, b) for a, targets in TRANSITIONS.items() for b in targets} == ALLOWED
    assert set(EVENTS) == set(ProviderStatus) - {S.NOT_READY}


@pytest.mark.parametrize(("source", "target"), sorted(ALLOWED))
def test_allowed_transition__moves_and_emits_exactly_one_event(
    source: ProviderStatus, target: ProviderStatus
) -> None:
    machine, recorder = machine_in(source)

    assert allowed(source, target)
    assert machine.move(target, "why") is True

    assert machine.status is target
    assert recorder.seen == [(ANNOUNCED[target], [], "why", target)]


@pytest.mark.parametrize(("source", "target"), sorted(set(PAIRS) - ALLOWED))
def test_refused_pair__status_unchanged_and_nothing_emitted(
    source: ProviderStatus, target: ProviderStatus
) -> None:
    machine, recorder = machine_in(source)

    assert not allowed(source, target)
    assert machine.move(target, "why") is False

    assert machine.status is source
    assert recorder.seen == []


def test_move__guard_saying_no__refuses_an_allowed_transition() -> None:
    machine, recorder = machine_in(S.READY)

    assert machine.move(S.STALE, when=lambda: False) is False
    assert machine.move(S.STALE, when=lambda: True) is True
    assert [e[0] for e in recorder.seen] == [ProviderEvent.STALE]


def test_repeated_failures_and_recoveries__one_event_per_change_in_order() -> None:
    machine, recorder = machine_in(S.NOT_READY)
    for status in [S.ERROR, S.ERROR, S.READY, S.READY, S.STALE, S.STALE, S.READY, S.FATAL, S.STALE, S.READY]:
        machine.move(status)
    assert [(e[0], e[3]) for e in recorder.seen] == [
        (ProviderEvent.ERROR, S.ERROR),
        (ProviderEvent.READY, S.READY),
        (ProviderEvent.STALE, S.STALE),
        (ProviderEvent.READY, S.READY),
        (ProviderEvent.ERROR, S.FATAL),
        (ProviderEvent.READY, S.READY),
    ]


def test_changed__announces_keys_without_a_transition_and_nothing_for_no_keys() -> None:
    machine, recorder = machine_in(S.READY)
    machine.changed([])
    machine.changed(["a", "b"], "note")
    assert recorder.seen == [(ProviderEvent.CONFIGURATION_CHANGED, ["a", "b"], "note", S.READY)]
    assert machine.status is S.READY


@pytest.mark.parametrize("status", list(ProviderStatus))
def test_add_listener__told_the_current_status_once_unless_not_ready(status: ProviderStatus) -> None:
    machine, _ = machine_in(status)
    late = Recorder(machine)
    machine.add_listener(late)
    expected = [] if status is S.NOT_READY else [(ANNOUNCED[status], [], None, status)]
    assert late.seen == expected


def test_failing_listener__others_still_told_and_status_moves() -> None:
    machine = StatusMachine()

    def broken(event: ProviderEvent, flags: list[str], message: str | None) -> None:
        raise RuntimeError("app bug")

    recorder = Recorder(machine)
    machine.add_listener(broken)
    machine.add_listener(recorder)
    assert machine.move(S.READY)
    assert machine.status is S.READY
    assert [e[0] for e in recorder.seen] == [ProviderEvent.READY]
