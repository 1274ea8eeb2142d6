"""The SDK's evaluation counts survive a data plane that cannot be reached, and fit the report bounds."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from sdk_helpers import ENV_ID, SDK_KEY, Env, ThreadPlane, seeded_env, stopping_planes

from flagyard.contracts.redis import read_evaluations
from flagyard.rule_engine import EvaluationResult, Reason, limits
from flagyard.sdk._report import EvaluationReporter


@pytest.fixture
def env() -> Iterator[Env]:
    yield from seeded_env()


@pytest.fixture
def planes() -> Iterator[list[ThreadPlane]]:
    yield from stopping_planes()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_reporter__data_plane_unreachable__keeps_counts_for_the_next_flush() -> None:
    reporter = EvaluationReporter(f"127.0.0.1:{closed_port()}", "fy_sdk_x", interval=3600, timeout=0.5)
    try:
        on = EvaluationResult(True, "on", Reason.TARGETING_MATCH)
        failed = EvaluationResult(False, None, Reason.ERROR)
        for _ in range(3):
            reporter.record("f", on)
        reporter.record("f", failed)
        assert reporter.flush() is False
        reporter.record("f", on)
        assert reporter.pending() == {("f", "on", Reason.TARGETING_MATCH): 4, ("f", "", Reason.ERROR): 1}
    finally:
        reporter.close()


def test_reporter__more_entries_than_a_report_holds__sent_in_parts_all_stored_nothing_left(
    env: Env, planes: list[ThreadPlane]
) -> None:
    plane = ThreadPlane(env.settings()).start()
    planes.append(plane)
    reporter = EvaluationReporter(plane.target, SDK_KEY, interval=3600)
    try:
        entries = limits.MAX_REPORT_ENTRIES + 10
        for i in range(entries):
            reporter.record("banner", EvaluationResult("x", f"v{i}", Reason.STATIC))

        assert reporter.flush() is True

        assert reporter.pending() == {}
        usage = read_evaluations(env.rds, env.prefix, ENV_ID)["banner"]
        assert (usage.evaluations, len(usage.variants)) == (entries, entries)
        assert plane.requests("ReportEvaluations", "OK") == 2
    finally:
        reporter.close()


def test_reporter__report_the_data_plane_refuses__dropped_not_resent_forever(
    env: Env, planes: list[ThreadPlane]
) -> None:
    """A variant that is no key (a bootstrap file's flagd flag, say) makes the report invalid: it is dropped,
    and the next report goes through."""
    plane = ThreadPlane(env.settings()).start()
    planes.append(plane)
    reporter = EvaluationReporter(plane.target, SDK_KEY, interval=3600)
    try:
        reporter.record("banner", EvaluationResult("x", "not a key", Reason.STATIC))
        assert reporter.flush() is True
        assert reporter.pending() == {}
        reporter.record("banner", EvaluationResult("Welcome", "a", Reason.STATIC))
        assert reporter.flush() is True
        assert read_evaluations(env.rds, env.prefix, ENV_ID)["banner"].variants == {"a": 1}
        assert plane.requests("ReportEvaluations", "INVALID_ARGUMENT") == 1
    finally:
        reporter.close()
