"""Explain one evaluation: the result and the whole decision that led to it.

An explanation runs the flag's own compiled code: :func:`explain` compiles the flag (and, as they are
looked up, its prerequisite flags and its segments) again from their definitions with a :class:`Tracer`
threaded through the compiler, which wraps each compiled clause, rule, segment and split in a recorder.
The matchers inside the recorders are the ones evaluation uses, so the trace cannot drift from the
result; normal compilation passes no tracer and pays nothing.

The recorders build the trace tree on a stack (each pops in ``finally``, so a chain error raised deep in
a segment leaves it consistent). What the compiled code does not report is read off what ran:

* a prerequisite's state comes from the lookups the flag's own prerequisite loop made through the
  tracing store, in order (not found: ``missing``; found disabled: ``disabled``; evaluated: its trace;
  found but not evaluated, the chain being too deep: ``not_evaluated``); those after the first that was
  not met were never looked at (``not_evaluated``);
* a segment's decision comes from which of its rules ran: some did, so ``rule`` (the last, which
  matched) or ``no_rule``; none did, so the targeting key was in ``included`` (matched) or ``excluded``
  (not matched), except for a segment without rules, where not matching means ``excluded`` only if the
  key is listed there (else ``no_rule``); a segment that does not exist is ``missing``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal, TypeVar, cast

from .bucketing import bucket, bucket_value
from .compiler import (
    ChainEvaluator,
    ChainMatcher,
    CompiledFlag,
    CompiledSegment,
    Store,
    compile_flag,
    compile_segment,
    path_getter,
)
from .flagset import FlagSet
from .jsonlogic import Rule as JsonLogicRule
from .model import Clause, Flag, Operator, Segment, Split
from .result import EvaluationResult, FlagType, Reason

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
    *,
    definitions: Definitions | None = None,
) -> Explanation:
    """Evaluate ``key`` for ``context`` as :meth:`FlagSet.evaluate` does, recording the decision. Never
    raises.

    The evaluation is :meth:`FlagSet.evaluate` itself, run over a tracing view of ``flagset`` that hands
    out the flags and segments it is asked for recompiled from their definitions with a :class:`Tracer`
    (once per call), so the top-level checks and the error handling are the ordinary ones and the
    result is the one evaluation gives. ``trace`` is ``None`` when the flag was not evaluated (not found,
    type mismatch, context not a mapping) and for flags compiled without a native definition: flagd-format
    flags and the data plane's L1 copies (no native ``source``), which are explained
    by their result alone. A prerequisite flag or segment without a native definition is evaluated as
    compiled: a prerequisite's trace then has no rules, and such a segment is absent from the trace.

    ``definitions(kind, key)`` (kind ``"flag"`` or ``"segment"``) supplies the native definition of an
    entry compiled without one (the data plane keeps its definitions as raw bytes beside an L1 that drops
    ``source`` to halve its memory); it must return the very definition the entry was compiled from
    (version included), or ``None``. It is asked only for the entries the evaluation looks up.
    """
    compiled = flagset.flags.get(key)
    source = None if compiled is None else _native(compiled, "flag", Flag, definitions)
    if compiled is None or source is None:
        return Explanation(flagset.evaluate(key, default, context, flag_type), None)
    try:
        tracer = Tracer()
        tracing = _TracingFlagSet(flagset, tracer, definitions, (compiled, source))
        result = tracing.evaluate(key, default, context, flag_type)
        trace = tracer.root
    except Exception:  # a fault in the tracing itself: still the result, as evaluation gives it
        return Explanation(flagset.evaluate(key, default, context, flag_type), None)
    if trace is not None:  # what the caller gets, after FlagSet.evaluate handled any exception
        trace.variant, trace.reason = result.variant, str(result.reason)
        trace.served_by = _served_by(result, source)
    return Explanation(result, trace)


Definitions = Callable[[str, str], "Flag | Segment | None"]
"""``(kind, key) -> definition``: the native definition of a flag (kind ``"flag"``) or segment."""

D = TypeVar("D", Flag, Segment)


def _native(
    compiled: CompiledFlag | CompiledSegment, kind: str, model: type[D], definitions: Definitions | None
) -> D | None:
    """The native definition ``compiled`` was compiled from: rebuilt from its ``source``, else what
    ``definitions`` gives for it."""
    source = compiled.definition()
    if isinstance(source, model):
        return source
    if definitions is not None:
        found = definitions(kind, compiled.key)
        if isinstance(found, model):
            return found
    return None


M = TypeVar("M", bound=Callable[..., bool])
E = TypeVar("E", bound=Callable[..., EvaluationResult])


@dataclass(slots=True)
class _Lookup:
    """One prerequisite lookup made by a flag's prerequisite loop, and the evaluation it led to."""

    key: str
    found: CompiledFlag | None
    trace: FlagTrace | None = None


@dataclass(slots=True)
class _FlagFrame:
    trace: FlagTrace
    lookups: list[_Lookup] = field(default_factory=list)


_Node = _FlagFrame | RuleTrace | ClauseTrace | SegmentTrace | TargetingTrace


def _nested(
    stack: list[_Node],
    node: ClauseTrace | RuleTrace,
    matcher: Callable[..., bool],
    ctx: Mapping[str, Any],
    store: Store,
    chain: tuple[Any, ...],
) -> bool:
    """Run ``matcher`` with ``node`` on top of the stack, so what it evaluates nests under it, and note
    its outcome (the stack is popped even when a chain error propagates)."""
    stack.append(node)
    try:
        node.matched = matcher(ctx, store, *chain)
    finally:
        stack.pop()
    return node.matched


class Tracer:
    """Records one explanation. The compiler calls its wrapping methods at compile time when given one
    (``compile_flag(flag, tracer)``); each returns a recorder around the compiled closure that calls
    it unchanged and notes what it saw. One tracer per explanation; not thread-safe."""

    __slots__ = ("_stack", "root")

    def __init__(self) -> None:
        self._stack: list[_Node] = []
        self.root: FlagTrace | None = None
        """The trace of the first flag evaluated with an empty stack: the one asked for."""

    def _top(self) -> _Node | None:
        return self._stack[-1] if self._stack else None

    # --- recorders, built by the compiler ---

    def clause(self, clause: Clause, matcher: M) -> M:
        operator, attribute, values = str(clause.operator), clause.attribute, clause.values
        negate = clause.negate
        getter = (
            None if attribute is None or clause.operator is Operator.SEGMENT_MATCH else path_getter(attribute)
        )
        stack = self._stack

        def traced_clause(ctx: Mapping[str, Any], store: Store, *chain: Any) -> bool:
            node = ClauseTrace(
                operator, attribute, list(values), negate, None if getter is None else getter(ctx), False
            )
            parent = stack[-1] if stack else None
            if type(parent) is RuleTrace:
                parent.clauses.append(node)
            return _nested(stack, node, matcher, ctx, store, chain)

        return cast(M, traced_clause)

    def rule(self, index: int, rule_id: str | None, matcher: M) -> M:
        stack = self._stack

        def traced_rule(ctx: Mapping[str, Any], store: Store, *chain: Any) -> bool:
            node = RuleTrace(index, rule_id, False)
            parent = stack[-1] if stack else None
            if type(parent) is _FlagFrame:
                parent.trace.rules.append(node)
            elif type(parent) is SegmentTrace:
                parent.rules.append(node)
            return _nested(stack, node, matcher, ctx, store, chain)

        return cast(M, traced_rule)

    def segment(self, segment: Segment, compiled: CompiledSegment) -> CompiledSegment:
        stack = self._stack
        excluded = frozenset(segment.excluded)
        has_rules = bool(segment.rules)

        def record(matcher: M) -> M:
            def traced_segment(ctx: Mapping[str, Any], store: Store, *chain: Any) -> bool:
                node = SegmentTrace(segment.key, False, "no_rule")
                self._attach_segment(node)
                stack.append(node)
                try:
                    node.matched = matcher(ctx, store, *chain)
                finally:
                    stack.pop()
                    if node.rules:
                        node.decision = "rule" if node.matched else "no_rule"
                        node.rule = node.rules[-1].index if node.matched else None
                    elif node.matched:
                        node.decision = "included"
                    elif has_rules or ctx.get("targeting_key") in excluded:
                        node.decision = "excluded"
                return node.matched

            return cast(M, traced_segment)

        matches = record(compiled.matches)
        nested = compiled.matches_in_chain
        if nested is not None:
            nested = cast("ChainMatcher", matches) if nested is compiled.matches else record(nested)
        return replace(compiled, matches=matches, matches_in_chain=nested)

    def split(
        self, flag: Flag, split: Split, total: int, choose: Callable[[Mapping[str, Any]], EvaluationResult]
    ) -> Callable[[Mapping[str, Any]], EvaluationResult]:
        getter = path_getter(split.bucket_by)
        ranges: list[BucketRange] = []
        start = 0
        for v in split.variations:
            ranges.append(BucketRange(v.variant, start, start + v.weight))
            start += v.weight
        stack = self._stack

        def traced_split(ctx: Mapping[str, Any]) -> EvaluationResult:
            result = choose(ctx)
            value = bucket_value(getter(ctx))
            node = SplitTrace(
                split.bucket_by,
                value,
                None if value is None else bucket(flag.salt, flag.key, value, total),
                total,
                result.variant,
                [replace(r) for r in ranges],
            )
            parent = stack[-1] if stack else None
            if type(parent) is _FlagFrame:
                parent.trace.split = node
            return result

        return traced_split

    def targeting(self, rule: JsonLogicRule) -> JsonLogicRule:
        stack = self._stack

        def traced_targeting(data: Any) -> Any:
            node = TargetingTrace(None)
            parent = stack[-1] if stack else None
            if type(parent) is _FlagFrame:
                parent.trace.targeting = node
            stack.append(node)
            try:
                outcome = rule(data)
            finally:
                stack.pop()
            node.result = _plain(outcome)
            return outcome

        return traced_targeting

    def flag(self, source: Flag | None, compiled: CompiledFlag) -> CompiledFlag:
        """``compiled`` with its evaluation recorded (``source``: its definition, if native)."""
        stack = self._stack
        prerequisites = source.prerequisites if source is not None else []

        def record(evaluate: E) -> E:
            def traced_flag(ctx: Mapping[str, Any], store: Store, *chain: Any) -> EvaluationResult:
                trace = FlagTrace(compiled.key, compiled.version, compiled.enabled, "error", None, "ERROR")
                parent = stack[-1] if stack else None
                if parent is None:
                    if self.root is None:
                        self.root = trace
                elif type(parent) is _FlagFrame and parent.lookups:
                    parent.lookups[-1].trace = trace
                frame = _FlagFrame(trace)
                stack.append(frame)
                result: EvaluationResult | None = None
                try:
                    result = evaluate(ctx, store, *chain)
                finally:
                    stack.pop()
                    trace.prerequisites = _prerequisite_traces(prerequisites, frame.lookups)
                    if result is not None:
                        trace.variant, trace.reason = result.variant, str(result.reason)
                        trace.served_by = _served_by(result, source)
                return result

            return cast(E, traced_flag)

        evaluate = record(compiled.evaluate)
        nested = compiled.evaluate_in_chain
        if nested is not None:
            nested = cast("ChainEvaluator", evaluate) if nested is compiled.evaluate else record(nested)
        return replace(compiled, evaluate=evaluate, evaluate_in_chain=nested)

    # --- what the tracing store reports ---

    def flag_looked_up(self, key: str, found: CompiledFlag | None) -> None:
        parent = self._top()
        if type(parent) is _FlagFrame:
            parent.lookups.append(_Lookup(key, found))

    def segment_missing(self, key: str) -> None:
        self._attach_segment(SegmentTrace(key, False, "missing"))

    def _attach_segment(self, node: SegmentTrace) -> None:
        parent = self._top()
        if type(parent) is ClauseTrace or type(parent) is TargetingTrace:
            parent.segments.append(node)


def _prerequisite_traces(prerequisites: list[Any], lookups: list[_Lookup]) -> list[PrerequisiteTrace]:
    """The prerequisites' states, read off the lookups the flag's prerequisite loop made, in order."""
    traces: list[PrerequisiteTrace] = []
    going = True
    for i, p in enumerate(prerequisites):
        lookup = lookups[i] if going and i < len(lookups) and lookups[i].key == p.flag else None
        if lookup is None:
            traces.append(PrerequisiteTrace(p.flag, p.variant, "not_evaluated", False))
            going = False
        elif lookup.found is None:
            traces.append(PrerequisiteTrace(p.flag, p.variant, "missing", False))
            going = False
        elif not lookup.found.enabled:
            traces.append(PrerequisiteTrace(p.flag, p.variant, "disabled", False))
            going = False
        elif lookup.trace is None:  # found, but the chain was too deep to evaluate it
            traces.append(PrerequisiteTrace(p.flag, p.variant, "not_evaluated", False))
            going = False
        else:
            met = lookup.trace.variant == p.variant
            traces.append(PrerequisiteTrace(p.flag, p.variant, "evaluated", met, lookup.trace))
            going = met
    return traces


def _served_by(result: EvaluationResult, source: Flag | None) -> ServedBy:
    reason = result.reason
    if reason is Reason.ERROR:
        return "error"
    if reason is Reason.DISABLED:
        return "off"
    if reason is Reason.PREREQUISITE_FAILED:
        return "prerequisite"
    if source is not None and source.targeting is not None:
        return "targeting"
    if source is None and reason is Reason.TARGETING_MATCH and result.rule_id is None:
        return "targeting"
    if result.rule_id is not None:
        return "rule"
    return "fallthrough"


def _plain(value: Any) -> Any:
    """A JsonLogic result as plain JSON data (``$flagd`` is a read-only mapping)."""
    if isinstance(value, Mapping) and type(value) is not dict:
        return {k: _plain(value[k]) for k in value}
    return value


class _Recompiled(Mapping[str, Any]):
    """The flags (or segments) of a live flag set, each recompiled with the tracer when first asked
    for in this explanation; every lookup is reported to the tracer."""

    __slots__ = ("_cache", "_live", "_on_lookup", "_trace")

    def __init__(
        self,
        live: Mapping[str, Any],
        trace: Callable[[Any], Any],
        on_lookup: Callable[[str, Any], None],
    ) -> None:
        self._live = live
        self._trace = trace
        self._on_lookup = on_lookup
        self._cache: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self._cache:
            found = self._cache[key]
        else:
            live = self._live.get(key)
            found = self._cache[key] = None if live is None else self._trace(live)
        self._on_lookup(key, found)
        if found is None:
            raise KeyError(key)
        return found

    def __iter__(self) -> Iterator[str]:
        return iter(self._live)

    def __len__(self) -> int:
        return len(self._live)


class _TracingFlagSet(FlagSet):
    """A view of a live flag set for one explanation: :meth:`FlagSet.evaluate` runs over it unchanged."""

    __slots__ = ()

    def __init__(
        self,
        live: FlagSet,
        tracer: Tracer,
        definitions: Definitions | None,
        known: tuple[CompiledFlag, Flag] | None = None,
    ) -> None:
        """``known``: a compiled flag and its definition already rebuilt (the one asked for)."""
        super().__init__(metadata=live.metadata)

        def trace_flag(compiled: CompiledFlag) -> CompiledFlag:
            if known is not None and compiled is known[0]:
                source: Flag | None = known[1]
            else:
                source = _native(compiled, "flag", Flag, definitions)
            return tracer.flag(None, compiled) if source is None else compile_flag(source, tracer)

        def trace_segment(compiled: CompiledSegment) -> CompiledSegment:
            source = _native(compiled, "segment", Segment, definitions)
            return compiled if source is None else compile_segment(source, tracer)

        def segment_looked_up(key: str, found: CompiledSegment | None) -> None:
            if found is None:
                tracer.segment_missing(key)

        # FlagSet.evaluate and compiled code only ever call .get on these.
        flags = _Recompiled(live.flags, trace_flag, tracer.flag_looked_up)
        self.flags = cast("dict[str, CompiledFlag]", flags)
        self.segments = cast(
            "dict[str, CompiledSegment]", _Recompiled(live.segments, trace_segment, segment_looked_up)
        )
