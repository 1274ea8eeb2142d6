"""Prometheus metrics, all prefixed ``flagyard_``, in a registry of their own per app."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Mapping

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flagyard.control_plane.db.reads import ReadPool

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "flagyard_http_requests",
            "Admin API requests by method, route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "flagyard_http_request_duration_seconds",
            "Admin API request latency by method and route template.",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.outbox_enqueued = Counter(
            "flagyard_outbox_enqueued",
            "Outbox rows enqueued as sync jobs, directly after commit or by the relay.",
            ["path"],
            registry=self.registry,
        )
        self.outbox_enqueue_failures = Counter(
            "flagyard_outbox_enqueue_failures",
            "Outbox rows whose enqueue after commit failed (the relay retries them).",
            registry=self.registry,
        )
        self.scheduled_applied = Counter(
            "flagyard_scheduled_changes_applied",
            "Scheduled changes the scheduler finished, by outcome (applied or failed).",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("applied", "failed"):
            self.scheduled_applied.labels(outcome=outcome)
        self.webhook_deliveries = Counter(
            "flagyard_webhook_deliveries",
            "Webhook delivery attempts by what became of the delivery: delivered, retrying or failed.",
            ["outcome"],
            registry=self.registry,
        )
        for outcome in ("delivered", "retrying", "failed"):
            self.webhook_deliveries.labels(outcome=outcome)
        self.webhook_latency = Histogram(
            "flagyard_webhook_delivery_duration_seconds",
            "Duration of webhook delivery attempts (DNS, connect, send, answer), cut at the timeout.",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "flagyard_rate_limited_requests", "Requests refused by the rate limiter.", registry=self.registry
        )

    def watch_pool(self, engine: sa.Engine, reads: ReadPool) -> None:
        self.registry.register(_PoolCollector(engine, reads))

    def watch_webhooks(self, pending: Callable[[], int]) -> None:
        self.registry.register(_WebhookCollector(pending))

    def watch_outbox(self, backlog: Callable[[], tuple[int, float]]) -> None:
        self.registry.register(_OutboxCollector(backlog))

    def watch_schedules(self, backlog: Callable[[], tuple[int, int]]) -> None:
        self.registry.register(_ScheduleCollector(backlog))

    def watch_change_requests(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self.registry.register(_ChangeRequestCollector(counts))

    def watch_stale_flags(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self.registry.register(_StaleCollector(counts))


STALE_GAUGE_MAX_AGE_SECONDS = 60.0
"""How long one computation of ``flagyard_stale_flags`` is served: a scrape computes it at most this often
per process (one statement over every served temporary flag configuration and one Redis read per
environment), however often Prometheus scrapes; stale flags change over days, not seconds."""


class _StaleCollector(Collector):
    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts
        self._lock = threading.Lock()
        self._cached: tuple[float, Mapping[str, int]] | None = None

    def collect(self) -> Iterator[Metric]:
        with self._lock:  # concurrent scrapes compute once
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] >= STALE_GAUGE_MAX_AGE_SECONDS:
                try:
                    self._cached = (now, dict(self._counts()))
                except Exception:
                    return  # the store is down: no sample rather than a wrong one (readyz reports it)
            counts = self._cached[1]
        gauge = GaugeMetricFamily(
            "flagyard_stale_flags",
            "Stale temporary flags, counted once per environment, by reason, with the stale report's default "
            "thresholds (30 days without evaluation and without change; or past the removal date).",
            labels=["reason"],
        )
        for reason, value in sorted(counts.items()):
            gauge.add_metric([reason], float(value))
        yield gauge


class _PoolCollector(Collector):
    def __init__(self, engine: sa.Engine, reads: ReadPool) -> None:
        self._engine = engine
        self._reads = reads

    def collect(self) -> Iterator[Metric]:
        pool = self._engine.pool
        gauge = GaugeMetricFamily(
            "flagyard_db_pool_connections", "Database pool connections by state.", labels=["state"]
        )
        for state, name in (("checked_out", "checkedout"), ("idle", "checkedin"), ("overflow", "overflow")):
            value = getattr(pool, name, None)
            if callable(value):
                gauge.add_metric([state], float(value()))
        size = getattr(pool, "size", None)
        if callable(size):
            gauge.add_metric(["size"], float(size()))
        yield gauge
        reads = GaugeMetricFamily(
            "flagyard_db_read_pool_connections",
            "Connections of the event loop's read pool by state.",
            labels=["state"],
        )
        reads.add_metric(["in_use"], float(self._reads.in_use))
        reads.add_metric(["idle"], float(self._reads.idle))
        reads.add_metric(["size"], float(self._reads.size))
        yield reads


class _OutboxCollector(Collector):
    def __init__(self, backlog: Callable[[], tuple[int, float]]) -> None:
        self._backlog = backlog

    def collect(self) -> Iterator[Metric]:
        try:
            count, age = self._backlog()
        except Exception:
            return
        yield GaugeMetricFamily(
            "flagyard_outbox_backlog",
            "Outbox rows not yet marked enqueued (a row's job is queued up to 0.2 s before its mark).",
            value=count,
        )
        yield GaugeMetricFamily(
            "flagyard_outbox_oldest_pending_seconds",
            "Age of the oldest outbox row not yet enqueued.",
            value=age,
        )


class _ScheduleCollector(Collector):
    def __init__(self, backlog: Callable[[], tuple[int, int]]) -> None:
        self._backlog = backlog

    def collect(self) -> Iterator[Metric]:
        try:
            pending, overdue = self._backlog()
        except Exception:
            return
        gauge = GaugeMetricFamily(
            "flagyard_scheduled_changes",
            "Scheduled changes waiting: pending (all), overdue (due, not yet applied; stays near 0).",
            labels=["state"],
        )
        gauge.add_metric(["pending"], float(pending))
        gauge.add_metric(["overdue"], float(overdue))
        yield gauge


class _WebhookCollector(Collector):
    def __init__(self, pending: Callable[[], int]) -> None:
        self._pending = pending

    def collect(self) -> Iterator[Metric]:
        try:
            count = self._pending()
        except Exception:
            return
        yield GaugeMetricFamily(
            "flagyard_webhook_deliveries_pending", "Webhook deliveries waiting for an attempt.", value=count
        )


CHANGE_REQUEST_STATUSES = ("open", "approved", "scheduled", "applied", "rejected", "withdrawn", "failed")


class _ChangeRequestCollector(Collector):
    """Change requests by status (a fixed label set: the table's check constraint), one grouped count per
    scrape over an indexed table that holds about what people review."""

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        try:
            counts = self._counts()
        except Exception:
            return
        gauge = GaugeMetricFamily(
            "flagyard_change_requests",
            "Change requests by status (open and approved ones wait for review or apply).",
            labels=["status"],
        )
        for status in CHANGE_REQUEST_STATUSES:
            gauge.add_metric([status], float(counts.get(status, 0)))
        yield gauge
