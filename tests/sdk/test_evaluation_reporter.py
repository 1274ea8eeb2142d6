"""The SDK's evaluation counts survive a data plane that cannot be reached."""

from __future__ import annotations

import socket

from flagyard.rule_engine import EvaluationResult, Reason
from flagyard.sdk._report import EvaluationReporter


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
