"""Explain one evaluation: the result and the whole decision that led to it.

An explanation runs the flag's own compiled code: :func:`explain` compiles the flag (and, as they are
looked up, its prerequisite flags and its segments) again from their definitions with a :class:`Tracer`
threaded through the compiler, which wraps each compiled clause, rule, segment and split in a recorder.
The matchers inside the recorders are the ones evaluation uses, so the trace cannot drift from the
result; normal compilation passes no tracer and pays nothing.

STUB: the shapes below are the contract other parts code against; the implementation is in progress.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from .flagset import FlagSet
from .result import EvaluationResult, FlagType

SegmentDecision = Literal["excluded", "included", "rule", "no_rule", "missing"]
"""How a segment decided: the context's targeting key is in ``excluded`` or ``included``, one of its rules
matched, none did, or the segment does not exist (matches nobody)."""

ServedBy = Literal["off", "prerequisite", "rule", "targeting", "fallthrough", "error"]


@dataclass(slots=True)
class SegmentTrace:
    key: str
    matched: bool
    decision: SegmentDecision
    rule: int | None = None
    """The index of the rule that matched (``decision == "rule"``)."""
    rules: list[RuleTrace] = field(default_factory=list)
    """The rules evaluated, in order (evaluation stops at the first that matches)."""


@dataclass(slots=True)
class ClauseTrace:
    operator: str
    attribute: str | None
    """``None`` for ``segment_match``."""
    values: list[Any]
    negate: bool
    value: Any
    """The context's value at ``attribute`` (``None`` when absent, or for ``segment_match``)."""
    matched: bool
    segments: list[SegmentTrace] = field(default_factory=list)
    """For ``segment_match``: each segment tested, in order, until one matched."""


@dataclass(slots=True)
class RuleTrace:
    index: int
    id: str | None
    """The flag rule's id (segment rules have none)."""
    matched: bool
    clauses: list[ClauseTrace] = field(default_factory=list)
    """The clauses evaluated, in order (a rule stops at the first that does not match)."""


@dataclass(slots=True)
class SplitTrace:
    bucket_by: str
    value: str | None
    """The bucket-by attribute's value as hashed (``None``: absent or neither string nor integer)."""
    bucket: int | None
    total: int
    """Buckets in all: 10000 for basis points, else the sum of the weights."""
    variant: str | None
    """The variant owning ``bucket``."""
    ranges: list[BucketRange] = field(default_factory=list)


@dataclass(slots=True)
class BucketRange:
    variant: str
    start: int
    """First bucket, inclusive."""
    end: int
    """Last bucket, exclusive."""


@dataclass(slots=True)
class TargetingTrace:
    """A JsonLogic ``targeting`` flag: what the expression returned and the ``$ref`` segments it tested."""

    result: Any
    segments: list[SegmentTrace] = field(default_factory=list)


@dataclass(slots=True)
class PrerequisiteTrace:
    flag: str
    variant: str
    """The variant the prerequisite must serve."""
    state: Literal["missing", "disabled", "evaluated", "not_evaluated"]
    met: bool
    trace: FlagTrace | None = None
    """The prerequisite's own evaluation (``state == "evaluated"``)."""


@dataclass(slots=True)
class FlagTrace:
    flag: str
    version: int
    enabled: bool
    served_by: ServedBy
    variant: str | None
    reason: str
    prerequisites: list[PrerequisiteTrace] = field(default_factory=list)
    rules: list[RuleTrace] = field(default_factory=list)
    """The rules evaluated, in order (evaluation stops at the first that matches)."""
    targeting: TargetingTrace | None = None
    split: SplitTrace | None = None
    """The split that chose the variant, if one did (a rule's or the fallthrough's)."""


@dataclass(frozen=True, slots=True)
class Explanation:
    result: EvaluationResult
    """Exactly what :meth:`FlagSet.evaluate` returns for the same arguments."""
    trace: FlagTrace | None
    """``None`` when the flag was not evaluated (not found, type mismatch, context not a mapping)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"result": {value, variant, reason, error_code, error_message, rule_id, version},
        "trace": {...the dataclasses above as dicts...} | null}``."""
        r = self.result
        return {
            "result": {
                "value": r.value,
                "variant": r.variant,
                "reason": str(r.reason),
                "error_code": None if r.error_code is None else str(r.error_code),
                "error_message": r.error_message,
                "rule_id": r.rule_id,
                "version": r.version,
            },
            "trace": None if self.trace is None else asdict(self.trace),
        }


def explain(
    flagset: FlagSet,
    key: str,
    context: Mapping[str, Any],
    default: Any = None,
    flag_type: FlagType | None = None,
) -> Explanation:
    """Evaluate ``key`` for ``context`` as :meth:`FlagSet.evaluate` does, recording the decision. Never
    raises. Flags compiled without their definition (``source is None``) explain with ``trace=None``."""
    return Explanation(flagset.evaluate(key, default, context, flag_type), None)
