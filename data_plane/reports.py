"""What an SDK may report through ``ReportEvaluations``, checked before anything reaches Redis.

A report is refused whole (INVALID_ARGUMENT naming the entry and field) when it breaks a bound no honest SDK
breaks: more than ``MAX_REPORT_ENTRIES`` entries, a count outside ``1..MAX_REPORTED_COUNT``, a reason that is
not one of the engine's, a variant that is not a key, a ``last_evaluated_at`` before 1970 or more than
``REPORT_CLOCK_SKEW_SECONDS`` ahead, more than ``MAX_REPORT_CONTEXTS`` sampled contexts or one over
``MAX_CONTEXT_BYTES`` (what the policy keeps of the contexts is decided later, by :mod:`.sampling`).
An entry naming a flag the environment does not hold (a typo in an app, a flag deleted since, or anything
forged, such as a key with the field separator) is dropped and counted, not refused: an app evaluating an
unknown key must not lose the rest of its report. So only counters of flags that exist, under keys of the
engine's key pattern, are ever stored.
"""

from __future__ import annotations

import re
from collections.abc import Container
from dataclasses import dataclass

from flagyard.contracts.redis import EvaluationCount
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.rule_engine import Reason, limits
from flagyard.rule_engine.model import KEY_PATTERN

from .exceptions import InvalidRequestError

_KEY = re.compile(KEY_PATTERN)
REASONS: dict[int, str] = {getattr(pb, f"REASON_{reason.value}"): reason.value for reason in Reason}
"""Reasons an SDK may report (the proto's, without UNSPECIFIED), as stored."""


@dataclass(frozen=True, slots=True)
class Report:
    counts: list[EvaluationCount]
    """Entries of flags the environment holds."""
    unknown: int
    """Entries dropped because they name no flag of the environment."""
    last_evaluated_at: int
    """Unix seconds, at most now."""


def validate_report(request: pb.ReportEvaluationsRequest, flags: Container[str], now: float) -> Report:
    """The entries of ``request`` to store; InvalidRequestError (naming the field) if it breaks a bound."""
    entries = request.counts
    if len(entries) > limits.MAX_REPORT_ENTRIES:
        raise InvalidRequestError(
            f"counts: {len(entries)} entries, at most {limits.MAX_REPORT_ENTRIES} per report"
        )
    contexts = request.contexts
    if len(contexts) > limits.MAX_REPORT_CONTEXTS:
        raise InvalidRequestError(
            f"contexts: {len(contexts)} contexts, at most {limits.MAX_REPORT_CONTEXTS} per report"
        )
    for i, context in enumerate(contexts):
        size = context.ByteSize()
        if size > limits.MAX_CONTEXT_BYTES:
            raise InvalidRequestError(
                f"contexts[{i}]: {size} bytes encoded, at most {limits.MAX_CONTEXT_BYTES} (MAX_CONTEXT_BYTES)"
            )
    last = request.last_evaluated_at
    latest = int(now)
    if last < 0 or last > latest + limits.REPORT_CLOCK_SKEW_SECONDS:
        raise InvalidRequestError(
            f"last_evaluated_at: {last} is not Unix seconds between 0 and now "
            f"+ {limits.REPORT_CLOCK_SKEW_SECONDS}"
        )
    counts: list[EvaluationCount] = []
    unknown = 0
    match = _KEY.fullmatch
    for i, entry in enumerate(entries):
        count = entry.count
        if not 0 < count <= limits.MAX_REPORTED_COUNT:
            raise InvalidRequestError(f"counts[{i}].count: {count} is not in 1..{limits.MAX_REPORTED_COUNT}")
        reason = REASONS.get(entry.reason)
        if reason is None:
            raise InvalidRequestError(f"counts[{i}].reason: {entry.reason} is not a known reason")
        variant = entry.variant
        if variant and match(variant) is None:
            raise InvalidRequestError(f"counts[{i}].variant: not a variant key ({KEY_PATTERN}) or empty")
        key = entry.flag_key
        if key not in flags or match(key) is None:
            unknown += 1
            continue
        counts.append(EvaluationCount(key, variant, reason, count))
    return Report(counts, unknown, min(last, latest) if last else latest)
