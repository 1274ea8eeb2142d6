"""Evaluation counts: aggregated in memory, reported to the data plane periodically.

Admins see from them which flags are evaluated and which are stale. Reporting never blocks or fails an
evaluation: counting is one dict update, without a lock (under heavy concurrency an increment racing
another, or a flush, may be lost: these are usage statistics, not billing); a report that cannot be
sent is merged back and tried again at the next flush.

Context samples (local mode only, ``sample_contexts=True``; in remote mode the data plane samples the
contexts it receives): while the last report's answer said the environment samples, the reporter keeps at
most ``MAX_REPORT_CONTEXTS`` of the contexts it sees, at most ``SAMPLE_RATE_PER_SECOND`` a second, and sends
them with the next report. They are sent as evaluated: the data plane keeps only what the environment's
policy allows. While the environment does not sample, the evaluation path pays one attribute check.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf.struct_pb2 import Struct

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc
from flagyard.rule_engine import EvaluationResult, Reason, limits

from ._grpc import status_of

_REASONS = {reason: getattr(pb, f"REASON_{reason.value}") for reason in Reason}

Key = tuple[str, str | None, Reason]
_MAX_SAMPLE_BYTES = min(
    limits.MAX_CONTEXT_BYTES, limits.MAX_GRPC_MESSAGE_BYTES // (4 * limits.MAX_REPORT_CONTEXTS)
)
"""A context larger than this is not sampled, so a report's samples stay well within one message."""


class EvaluationReporter:
    """Counts evaluations per (flag, variant, reason) and sends them every ``interval`` seconds."""

    def __init__(
        self,
        target: str,
        sdk_key: str,
        *,
        interval: float = 30.0,
        timeout: float = 5.0,
        credentials: grpc.ChannelCredentials | None = None,
        options: Mapping[str, Any] | None = None,
        sample_contexts: bool = False,
    ) -> None:
        self._target = target
        self._may_sample = sample_contexts
        self._sampling = False
        """Whether the last report's answer asked for contexts (only if ``sample_contexts``)."""
        self._contexts: list[Struct] = []
        self._window = -1
        self._taken = 0
        self._metadata = (("authorization", f"Bearer {sdk_key}"),)
        self._interval = interval
        self._timeout = timeout
        self._credentials = credentials
        self._options = list((options or {}).items())
        self._counts: dict[Key, int] = {}
        self._channel: grpc.Channel | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._start()
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (r := ref()) and r._after_fork())  # type: ignore[func-returns-value]

    def record(self, key: str, result: EvaluationResult, context: Mapping[str, Any] | None = None) -> None:
        """Count one evaluation (called on every evaluation, so as cheap as it can be), and sample its
        context while the environment asks for samples."""
        counted = (key, result.variant, result.reason)
        counts = self._counts
        counts[counted] = counts.get(counted, 0) + 1
        if self._sampling and context:
            self._sample(context)

    @property
    def sampling(self) -> bool:
        """Whether contexts are being sampled (the last report's answer asked for them)."""
        return self._sampling

    def pending_contexts(self) -> int:
        """Contexts kept for the next report."""
        return len(self._contexts)

    def _sample(self, context: Mapping[str, Any]) -> None:
        window = int(time.monotonic())
        if window != self._window:
            self._window, self._taken = window, 0
        if self._taken >= limits.SAMPLE_RATE_PER_SECOND or len(self._contexts) >= limits.MAX_REPORT_CONTEXTS:
            return
        self._taken += 1
        sample = Struct()
        try:  # copied now: the app may change its mapping later
            sample.update(context)
        except (TypeError, ValueError, AttributeError):
            return
        if sample.ByteSize() <= _MAX_SAMPLE_BYTES:
            self._contexts.append(sample)

    def pending(self) -> dict[tuple[str, str, Reason], int]:
        """Counts not reported yet; the variant is "" where the caller's default was served."""
        return {(flag, variant or "", reason): n for (flag, variant, reason), n in dict(self._counts).items()}

    def flush(self) -> bool:
        """Send what was counted; on failure keep it for the next flush. True if nothing is left.

        Reports go in parts of at most ``MAX_REPORT_ENTRIES`` entries, counts capped at
        ``MAX_REPORTED_COUNT``, so the data plane accepts them; a part it refuses as invalid is dropped
        (sending it again would fail again), one it could not receive is kept.
        """
        counts, self._counts = self._counts, {}
        contexts, self._contexts = self._contexts, []
        if not counts:
            return True
        items = list(counts.items())
        kept: list[tuple[Key, int]] = []
        now = int(time.time())
        stub = pb_grpc.EvaluationServiceStub(self._connect())
        for start in range(0, len(items), limits.MAX_REPORT_ENTRIES):
            part = items[start : start + limits.MAX_REPORT_ENTRIES]
            request = pb.ReportEvaluationsRequest(
                counts=[
                    pb.EvaluationCount(
                        flag_key=flag,
                        variant=variant or "",
                        reason=_REASONS[reason],
                        count=min(n, limits.MAX_REPORTED_COUNT),
                    )
                    for (flag, variant, reason), n in part
                ],
                last_evaluated_at=now,
                contexts=contexts if start == 0 else (),
            )
            try:
                answer = stub.ReportEvaluations(request, metadata=self._metadata, timeout=self._timeout)
            except grpc.RpcError as exc:  # samples are not sent again: a later one will do
                if status_of(exc) is not grpc.StatusCode.INVALID_ARGUMENT:
                    kept += part
            else:
                self._sampling = self._may_sample and answer.sample_contexts
                if not self._sampling:
                    self._contexts = []
        current = self._counts
        for counted, n in kept:
            current[counted] = current.get(counted, 0) + n
        return not kept

    def close(self) -> None:
        """Stop the timer and send what is left (once, best effort)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self._timeout + 1)
        self.flush()
        if self._channel is not None:
            self._channel.close()
            self._channel = None

    def _connect(self) -> grpc.Channel:
        if self._channel is None:
            if self._credentials is None:
                self._channel = grpc.insecure_channel(self._target, options=self._options)
            else:
                self._channel = grpc.secure_channel(self._target, self._credentials, options=self._options)
        return self._channel

    def _start(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="flagyard-report", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def _after_fork(self) -> None:
        self._counts = {}
        self._contexts = []
        self._channel = None
        if not self._stop.is_set():
            self._start()
