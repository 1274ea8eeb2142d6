"""Prometheus metrics (``flagyard_`` prefix, bounded label sets).

Each :class:`Metrics` has its own registry, so several data planes can live in one process (tests). With
several processes (:mod:`.supervisor`) prometheus-client's multiprocess mode aggregates them: the
supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` and serves the sum.

Evaluations are counted per (flag, variant, reason) in a plain dict on the hot path and folded into the
counter by :meth:`Metrics.flush` about once a second. Only the first ``flag_label_cap`` flag keys seen get a
label of their own; the others (and their variants) are counted as ``other``.
"""

from __future__ import annotations

from collections import defaultdict

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

OTHER = "other"
PROTOCOLS = ("flagyard", "flagd-rpc", "flagd-sync", "ofrep")
"""Values of the ``protocol`` label: the protocol a call came in by."""
METHODS = (
    "ResolveBoolean",
    "ResolveString",
    "ResolveInteger",
    "ResolveFloat",
    "ResolveObject",
    "ResolveAll",
    "SyncFlags",
)
SAMPLE_OUTCOMES = ("stored", "rate_limited", "dropped", "empty")
"""Values of ``flagyard_context_samples``' ``outcome`` label."""
_LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
    5.0,
)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None, flag_label_cap: int = 200) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "flagyard_data_plane_requests",
            "Calls by protocol (PROTOCOLS), method and status code (OFREP: its operation and HTTP status).",
            ["protocol", "method", "code"],
            registry=r,
        )
        self.latency = Histogram(
            "flagyard_data_plane_request_duration_seconds",
            "Time to answer a unary call (SyncFlags: time to the first message), by protocol and method.",
            ["protocol", "method"],
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.evaluations = Counter(
            "flagyard_data_plane_evaluations",
            "Flag evaluations by flag, variant and reason (flags beyond the label cap count as 'other').",
            ["flag", "variant", "reason"],
            registry=r,
        )
        self.l1_flags = Gauge(
            "flagyard_data_plane_l1_flags",
            "Flags held in L1, all environments.",
            registry=r,
            multiprocess_mode="max",
        )
        self.l1_environments = Gauge(
            "flagyard_data_plane_l1_environments",
            "Environments held in L1.",
            registry=r,
            multiprocess_mode="max",
        )
        self.revision_lag = Gauge(
            "flagyard_data_plane_revision_lag",
            "Largest revision gap between Redis and L1 over all environments (measured periodically).",
            registry=r,
            multiprocess_mode="max",
        )
        self.degraded = Gauge(
            "flagyard_data_plane_degraded",
            "1 while Redis is unreachable and evaluations are served from L1 as last known.",
            registry=r,
            multiprocess_mode="max",
        )
        self.stream_reconnects = Counter(
            "flagyard_data_plane_stream_reconnects",
            "Times the Redis stream follower reconnected after losing Redis.",
            registry=r,
        )
        self.reloads = Counter(
            "flagyard_data_plane_environment_reloads",
            "Whole-environment reloads from Redis by cause (start, new, gap, reconnect, refresh).",
            ["cause"],
            registry=r,
        )
        self.invalid_definitions = Counter(
            "flagyard_data_plane_invalid_definitions",
            "Definitions or events in Redis that could not be decoded or compiled (skipped).",
            ["kind"],
            registry=r,
        )
        self.report_entries_dropped = Counter(
            "flagyard_data_plane_report_entries_dropped",
            "ReportEvaluations entries not stored, by cause: unknown_flag (names no flag of the "
            "environment), usage_cap (the environment already holds MAX_USAGE_FIELDS counters).",
            ["cause"],
            registry=r,
        )
        self.sync_streams_revoked = Counter(
            "flagyard_data_plane_sync_streams_revoked",
            "SyncFlags streams ended with UNAUTHENTICATED because their SDK key was revoked or expired.",
            registry=r,
        )
        self.sync_streams = Gauge(
            "flagyard_data_plane_sync_streams",
            "Open SyncFlags streams.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.protocol_streams = Gauge(
            "flagyard_data_plane_protocol_streams",
            "Open event streams of the open protocols, by protocol.",
            ["protocol"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.streams_open = Gauge(
            "flagyard_data_plane_streams_open",
            "Open streams by protocol (flagyard: SyncFlags, flagd-rpc: EventStream, flagd-sync: SyncFlags, "
            "ofrep: SSE), counted against max_streams.",
            ["protocol"],
            registry=r,
            multiprocess_mode="livesum",
        )
        self.stream_lag = Gauge(
            "flagyard_data_plane_stream_lag",
            "Largest lag of an open stream, by protocol: revisions its environment is ahead of the last "
            "message the stream handed to its transport (measured every stream_check_seconds).",
            ["protocol"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.streams_ended_slow = Counter(
            "flagyard_data_plane_streams_ended_slow",
            "Streams ended with UNAVAILABLE because their client stopped reading past stream_max_pending.",
            ["protocol"],
            registry=r,
        )
        self.streams_refused = Counter(
            "flagyard_data_plane_streams_refused",
            "Streams refused at a cap, by protocol and limit (process: max_streams, key: per SDK key).",
            ["protocol", "limit"],
            registry=r,
        )
        self.context_samples = Counter(
            "flagyard_context_samples",
            "Contexts offered to the context sampler (resolved or reported), by outcome (SAMPLE_OUTCOMES): "
            "stored (written to the environment's sample), rate_limited (over the environment's budget), "
            "dropped (buffer full, flush failed, or the policy changed before the flush), empty (the policy "
            "keeps none of its attributes).",
            ["outcome"],
            registry=r,
        )
        self.context_sampling_errors = Counter(
            "flagyard_context_sampling_errors",
            "Redis errors of the context sampler by operation: policy (re-reading a policy; the last known "
            "is kept) or store (a flush; its samples are dropped).",
            ["operation"],
            registry=r,
        )
        self._cap = flag_label_cap
        self._labelled: set[str] = set()
        self.pending: defaultdict[tuple[str, str | None, str], int] = defaultdict(int)
        """(flag, variant, reason) → evaluations not yet flushed; the hot path increments it."""

    def flush(self) -> None:
        """Fold the pending evaluation counts into the counter."""
        pending, self.pending = self.pending, defaultdict(int)
        folded: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        for (flag, variant, reason), n in pending.items():
            if flag not in self._labelled:
                if len(self._labelled) < self._cap:
                    self._labelled.add(flag)
                else:
                    folded[OTHER, OTHER, reason] += n
                    continue
            folded[flag, variant or "", reason] += n
        for (flag, variant, reason), n in folded.items():
            self.evaluations.labels(flag, variant, reason).inc(n)
