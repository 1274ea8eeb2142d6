"""The syncer's Prometheus metrics (prefix ``flagyard_syncer_``, bounded labels)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

CHANGES = Counter(
    "flagyard_syncer_changes_total",
    "Changes handled, by outcome: applied (Redis changed), ignored (Redis already as new), invalid.",
    ["kind", "outcome"],
    registry=REGISTRY,
)
JOB_SECONDS = Histogram(
    "flagyard_syncer_job_duration_seconds",
    "Time to handle one job (read PostgreSQL, validate, write Redis).",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
    registry=REGISTRY,
)
PROPAGATION_SECONDS = Histogram(
    "flagyard_syncer_propagation_seconds",
    "From the outbox row's commit to the change being in Redis.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
FAILED_JOBS = Gauge(
    "flagyard_syncer_failed_jobs",
    "Jobs in RQ's failed registry (retries exhausted); `python -m flagyard.syncer failed requeue`.",
    registry=REGISTRY,
)
RECONCILE_REPAIRS = Counter(
    "flagyard_syncer_reconcile_repairs_total",
    "Differences between PostgreSQL and Redis repaired by the periodic reconcile.",
    ["kind"],
    registry=REGISTRY,
)
RECONCILE_RUNS = Counter(
    "flagyard_syncer_reconcile_runs_total", "Reconcile passes, by outcome.", ["outcome"], registry=REGISTRY
)
