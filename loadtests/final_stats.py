"""Locust rewrites ``<prefix>_stats.csv`` (and the failures and exceptions files) once a second, so the
last second of a run can be missing from them; at quitting — every user stopped, the statistics final —
this writes them once more, exactly. Registered by each locustfile (once per process)."""

from __future__ import annotations

import csv
from typing import Any

from locust import events
from locust.env import Environment
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

_registered = False


def write_final_csv(environment: Environment, **_kwargs: Any) -> None:
    prefix = getattr(environment.parsed_options, "csv_prefix", None)
    if not prefix:
        return
    writer = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, write in (
        ("_stats.csv", writer.requests_csv),
        ("_failures.csv", writer.failures_csv),
        ("_exceptions.csv", writer.exceptions_csv),
    ):
        with open(f"{prefix}{suffix}", "w", newline="", encoding="utf-8") as f:
            write(csv.writer(f))


def register() -> None:
    global _registered
    if not _registered:
        events.quitting.add_listener(write_final_csv)  # type: ignore[no-untyped-call]
        _registered = True
