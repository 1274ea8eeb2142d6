"""Compile validated definitions into closures: parse once, evaluate many times.

A compiled flag is a function of ``(context, store)``. Results for every (variant, reason, rule) a flag
can serve are built here, once, so a successful evaluation allocates nothing. Segments and prerequisite
flags are looked up in the store at evaluation time, so replacing one segment or flag never requires
recompiling the flags that refer to it.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from sys import intern
from typing import TYPE_CHECKING, Any, Protocol

import mmh3

from . import limits
from .exceptions import EvaluationChainError
from .model import Clause, Flag, Operator, Segment, Split
from .operators import PREDICATES, Fast, Predicate, plain
from .result import ErrorCode, EvaluationResult, FlagType, Reason
from .targeting import compile_targeting, referenced_segments, targeting_evaluator

if TYPE_CHECKING:
    from .explain import Tracer

Context = Mapping[str, Any]
Matcher = Callable[[Context, "Store"], bool]
FlagEvaluator = Callable[[Context, "Store"], EvaluationResult]
Chain = tuple[str, ...]
"""The keys of the flags whose prerequisites (or the segments whose references) are being evaluated,
outermost first."""


class ChainEvaluator(Protocol):
    """A flag evaluator that also takes the chain it is evaluated in; called without one (as a
    :data:`FlagEvaluator`), the chain is the flag alone."""

    def __call__(self, ctx: Context, store: Store, chain: Chain = ..., /) -> EvaluationResult: ...


class ChainMatcher(Protocol):
    """A segment (or rule, or clause) matcher that also takes the chain of segments it is matched in."""

    def __call__(self, ctx: Context, store: Store, chain: Chain = ..., /) -> bool: ...


_NEGATED = {Operator.NEQ: Operator.EQ, Operator.NOT_IN: Operator.IN}


class Store(Protocol):
    """What compiled flags look up while they evaluate: the other flags and the segments."""

    @property
    def flags(self) -> Mapping[str, CompiledFlag]: ...

    @property
    def segments(self) -> Mapping[str, CompiledSegment]: ...


@dataclass(frozen=True, slots=True)
class CompiledFlag:
    """A flag ready to evaluate. ``evaluate`` returns results whose ``variant`` is ``None`` when the
    caller's default is to be served; :class:`~.flagset.FlagSet` fills it in."""

    key: str
    type: FlagType
    version: int
    enabled: bool
    evaluate: FlagEvaluator
    metadata: Mapping[str, Any] = field(default_factory=dict)
    source: Any = None
    """The definition this was compiled from, held compactly (a pydantic model costs about 6 KB, more than
    the closures): a native flag as the compact JSON of its validated :class:`Flag` (``bytes``, defaults
    left out; :meth:`definition` rebuilds the model), or the :class:`Flag` itself when its JSON would not
    give it back exactly (see :func:`compact`); a flagd flag as the JSON text of its flag object
    (``str``). ``None`` when not kept (the data plane's L1 keeps its definitions as stored bytes). Equal
    definitions written alike have equal sources, which is what the SDK compares to see a change."""
    evaluate_in_chain: ChainEvaluator | None = None
    """For a flag with prerequisites: ``evaluate`` as a prerequisite of the flags in the chain, so a
    cycle or an over-deep chain is seen before it recurses. ``None`` for a flag without any."""
    segment_keys: tuple[str, ...] = ()
    """The segments a native flag's rules and targeting refer to, kept with ``source`` (to know which
    flags a segment's change affects without rebuilding the definition)."""
    prerequisite_keys: tuple[str, ...] = ()
    """The flags a native flag has as prerequisites, in order, kept with ``source``."""

    @property
    def native(self) -> bool:
        """Whether the native definition is known (:meth:`definition` gives it)."""
        return type(self.source) is bytes or isinstance(self.source, Flag)

    def definition(self) -> Flag | None:
        """The native definition this was compiled from, rebuilt from ``source`` (about 20 µs: for
        explanations and other rare readers, never evaluation); ``None`` if not native or not kept."""
        source = self.source
        if type(source) is bytes:
            return Flag.model_validate_json(source)
        return source if isinstance(source, Flag) else None


@dataclass(frozen=True, slots=True)
class CompiledSegment:
    key: str
    version: int
    matches: Matcher
    source: Any = None
    """The definition, held compactly as for :attr:`CompiledFlag.source`: the compact JSON of the
    :class:`Segment` (``bytes``), or the model, or ``None`` when not kept."""
    matches_in_chain: ChainMatcher | None = None
    """For a segment whose rules refer to other segments: ``matches`` inside the chain of segments that
    led here, so a cycle or an over-deep chain is seen before it recurses. ``None`` otherwise."""
    segment_keys: tuple[str, ...] = ()
    """The segments its rules refer to, kept with ``source``."""

    @property
    def native(self) -> bool:
        """Whether the definition is known (:meth:`definition` gives it)."""
        return type(self.source) is bytes or isinstance(self.source, Segment)

    def definition(self) -> Segment | None:
        """The definition this was compiled from, rebuilt from ``source``; ``None`` if not kept."""
        source = self.source
        if type(source) is bytes:
            return Segment.model_validate_json(source)
        return source if isinstance(source, Segment) else None


def compact(definition: Flag | Segment) -> bytes | Flag | Segment:
    """What a compiled flag or segment keeps of its definition: the model's compact JSON (defaults left
    out), about a tenth of the model's memory, from which ``model_validate_json`` rebuilds an equal model.
    pydantic writes a non-finite float as ``null``, so a definition whose JSON holds a ``null`` (rare: a
    null variant value, operand or JsonLogic constant) keeps its model, as does one that cannot be
    written (built in Python with values JSON cannot hold)."""
    try:
        data = type(definition).__pydantic_serializer__.to_json(definition, exclude_defaults=True)
    except Exception:
        return definition
    return definition if b"null" in data else data


def _segment_keys(clauses: Iterable[Clause], targeting: Any = None) -> tuple[str, ...]:
    keys = {str(v) for c in clauses if c.operator is Operator.SEGMENT_MATCH for v in c.values}
    if targeting is not None:
        keys |= referenced_segments(targeting)
    return tuple(sorted(keys))


def _shared(value: Any) -> Any:
    """``value``, interned if a short string: the strings a compiled flag keeps (rule ids, segment keys,
    metadata) recur across flags and across a process's environments, each parsed into its own copy."""
    return intern(value) if type(value) is str and len(value) <= 128 else value


def path_getter(path: str) -> Callable[[Context], Any]:
    """A function returning the value at a dotted ``path`` of the context, or ``None`` if absent."""
    parts = tuple(path.split("."))
    if len(parts) == 1:
        name = parts[0]
        return lambda ctx: ctx.get(name)

    def get(ctx: Context) -> Any:
        value: Any = ctx
        for part in parts:
            if not isinstance(value, Mapping):
                return None
            value = value.get(part)
        return value

    return get


def compile_clause(clause: Clause, tracer: Tracer | None = None) -> Matcher:
    """Compile one clause. With a ``tracer`` (explanations only), the very same matcher is wrapped in a
    recorder; without one nothing is added, so evaluation pays nothing for explanations."""
    matcher = _compile_clause(clause)
    return matcher if tracer is None else tracer.clause(clause, matcher)


def _compile_clause(clause: Clause) -> Matcher:
    op = clause.operator
    negate = clause.negate
    if op is Operator.SEGMENT_MATCH:
        return _segment_clause(tuple(_shared(v) for v in clause.values), negate)
    assert clause.attribute is not None
    if op in (Operator.EXISTS, Operator.NOT_EXISTS):
        getter = path_getter(clause.attribute)
        wanted = (op is Operator.EXISTS) != negate
        return lambda ctx, store: (getter(ctx) is not None) is wanted
    if op in _NEGATED:
        op, negate = _NEGATED[op], not negate
    made = PREDICATES[op](list(clause.values))
    fast, predicate = (made if isinstance(made, Fast) else None), plain(made)
    if "." in clause.attribute:
        return _nested_clause(path_getter(clause.attribute), predicate, negate)
    # Interned: the same attribute names recur across many flags, and each compiled clause holds its own.
    return _flat_clause(intern(clause.attribute), predicate, negate, fast)


def _flat_clause(name: str, predicate: Predicate, negate: bool, fast: Fast | None) -> Matcher:
    if negate:

        def negated(ctx: Context, store: Store) -> bool:
            v = ctx.get(name)
            if v is None:
                return False
            if type(v) is list:
                return not any(map(predicate, v))
            return not predicate(v)

        return negated
    if fast is not None:
        return _fast_flat_clause(name, fast)

    def matcher(ctx: Context, store: Store) -> bool:
        v = ctx.get(name)
        if v is None:
            return False
        if type(v) is list:
            return any(map(predicate, v))
        return predicate(v)

    return matcher


def _fast_flat_clause(name: str, fast: Fast) -> Matcher:
    """The hot operators with their test inlined, saving a call per clause."""
    predicate, kind, a, b = fast
    if kind == "strings":
        strs: frozenset[str] = a

        def member(ctx: Context, store: Store) -> bool:
            v = ctx.get(name)
            if type(v) is str:
                return v in strs
            return type(v) is list and any(map(predicate, v))

        return member
    if kind == "numeric":
        compare: Callable[[Any, Any], bool] = a
        bound = b

        def numeric(ctx: Context, store: Store) -> bool:
            v: Any = ctx.get(name)
            t = type(v)
            if t is int or t is float:
                return compare(v, bound)
            return t is list and any(map(predicate, v))

        return numeric
    search: Callable[[str], bool] = a
    limit: int = b

    def regex(ctx: Context, store: Store) -> bool:
        v = ctx.get(name)
        if type(v) is str:
            return len(v) <= limit and search(v)
        return type(v) is list and any(map(predicate, v))

    return regex


def _nested_clause(getter: Callable[[Context], Any], predicate: Predicate, negate: bool) -> Matcher:
    def matcher(ctx: Context, store: Store) -> bool:
        v = getter(ctx)
        if v is None:
            return False
        hit = any(map(predicate, v)) if type(v) is list else predicate(v)
        return hit != negate

    return matcher


def _segment_clause(keys: tuple[str, ...], negate: bool) -> Matcher:
    if len(keys) == 1 and not negate:
        only = keys[0]

        def single(ctx: Context, store: Store) -> bool:
            segment = store.segments.get(only)
            return segment is not None and segment.matches(ctx, store)

        return single

    def matcher(ctx: Context, store: Store) -> bool:
        segments = store.segments
        for key in keys:
            segment = segments.get(key)
            if segment is not None and segment.matches(ctx, store):
                return not negate
        return negate

    return matcher


def _all_of(matchers: list[Matcher]) -> Matcher:
    if len(matchers) == 1:
        return matchers[0]
    chain = tuple(matchers)

    def matcher(ctx: Context, store: Store) -> bool:
        for m in chain:
            if not m(ctx, store):
                return False
        return True

    return matcher


def compile_segment(
    segment: Segment, tracer: Tracer | None = None, *, keep_source: bool = True
) -> CompiledSegment:
    """Compile a validated segment; a ``tracer`` wraps its matcher, rules and clauses in recorders (see
    :func:`compile_clause`). ``keep_source=False``: ``source`` is ``None`` (the definition is kept
    elsewhere)."""
    compiled = _compile_segment(segment, tracer)
    if tracer is not None:
        return tracer.segment(segment, compiled)
    if not keep_source:  # nor what is read off it
        return replace(compiled, source=None)
    return replace(
        compiled,
        source=compact(segment),
        segment_keys=_segment_keys(c for rule in segment.rules for c in rule.clauses),
    )


def _compile_segment(segment: Segment, tracer: Tracer | None) -> CompiledSegment:
    included = frozenset(segment.included)
    excluded = frozenset(segment.excluded)
    if any(c.operator is Operator.SEGMENT_MATCH for rule in segment.rules for c in rule.clauses):
        return _nesting_segment(segment, included, excluded, tracer)
    rules = tuple(
        _traced_rule(tracer, i, None, _all_of([compile_clause(c, tracer) for c in rule.clauses]))
        for i, rule in enumerate(segment.rules)
    )
    if len(rules) == 1:
        only = rules[0]

        def matches_one(ctx: Context, store: Store) -> bool:
            key = ctx.get("targeting_key")
            if key is not None:
                if key in excluded:
                    return False
                if key in included:
                    return True
            return only(ctx, store)

        return CompiledSegment(segment.key, segment.version, matches_one, segment)

    def matches(ctx: Context, store: Store) -> bool:
        key = ctx.get("targeting_key")
        if key is not None:
            if key in excluded:
                return False
            if key in included:
                return True
        for rule in rules:
            if rule(ctx, store):
                return True
        return False

    return CompiledSegment(segment.key, segment.version, matches, segment)


def _traced_rule(tracer: Tracer | None, index: int, rule_id: str | None, matcher: Matcher) -> Matcher:
    return matcher if tracer is None else tracer.rule(index, rule_id, matcher)


def _nesting_segment(
    segment: Segment, included: frozenset[str], excluded: frozenset[str], tracer: Tracer | None
) -> CompiledSegment:
    """A segment referring to other segments carries the chain of segments being matched, like flags
    with prerequisites do, so a cycle (refused by validation, but possible in a data plane mid-change)
    or a chain deeper than MAX_SEGMENT_DEPTH ends the evaluation with ERROR naming the segments."""
    rules = tuple(_rule_in_chain(rule.clauses, i, tracer) for i, rule in enumerate(segment.rules))
    top: Chain = (segment.key,)

    def matches(ctx: Context, store: Store, chain: Chain = top, /) -> bool:
        key = ctx.get("targeting_key")
        if key is not None:
            if key in excluded:
                return False
            if key in included:
                return True
        for rule in rules:
            if rule(ctx, store, chain):
                return True
        return False

    return CompiledSegment(segment.key, segment.version, matches, segment, matches)


def _rule_in_chain(clauses: list[Clause], index: int, tracer: Tracer | None) -> ChainMatcher:
    """The plain clauses of a rule together (tested first: they are cheap), then its segment clauses."""
    plain = [compile_clause(c, tracer) for c in clauses if c.operator is not Operator.SEGMENT_MATCH]
    refs = tuple(
        _segment_clause_in_chain(c) if tracer is None else tracer.clause(c, _segment_clause_in_chain(c))
        for c in clauses
        if c.operator is Operator.SEGMENT_MATCH
    )
    if not plain and len(refs) == 1:
        return refs[0] if tracer is None else tracer.rule(index, None, refs[0])
    first = _all_of(plain) if plain else None

    def matcher(ctx: Context, store: Store, chain: Chain = (), /) -> bool:
        if first is not None and not first(ctx, store):
            return False
        for ref in refs:
            if not ref(ctx, store, chain):
                return False
        return True

    return matcher if tracer is None else tracer.rule(index, None, matcher)


def _segment_clause_in_chain(clause: Clause) -> ChainMatcher:
    keys = tuple(_shared(v) for v in clause.values)
    negate = clause.negate
    max_depth = limits.MAX_SEGMENT_DEPTH

    def matcher(ctx: Context, store: Store, chain: Chain = (), /) -> bool:
        segments = store.segments
        for key in keys:
            segment = segments.get(key)
            if segment is None:
                continue
            if len(chain) >= max_depth:
                cycle = _cycle((*chain, key))
                if cycle is not None:
                    raise EvaluationChainError("segment cycle: " + " -> ".join(cycle))
                raise EvaluationChainError(
                    f"segment chain deeper than {max_depth} segments (MAX_SEGMENT_DEPTH): "
                    f"{' -> '.join(chain[:3])} -> … -> {chain[-1]} -> {key}"
                )
            nested = segment.matches_in_chain
            hit = segment.matches(ctx, store) if nested is None else nested(ctx, store, (*chain, key))
            if hit:
                return not negate
        return negate

    return matcher


def compile_flag(flag: Flag, tracer: Tracer | None = None, *, keep_source: bool = True) -> CompiledFlag:
    """Compile a validated native flag.

    With a ``tracer`` (:func:`~.explain.explain` only) each compiled clause, rule, split, the targeting
    expression and the flag's own evaluation are wrapped in recorders around the very same closures, so
    an explanation cannot drift from evaluation. Without one (every other caller) nothing is wrapped and
    no closure tests for a tracer: evaluation pays nothing for explanations.

    The compiled flag keeps its definition as compact JSON (see :func:`compact`), or nothing with
    ``keep_source=False`` (the data plane keeps the stored bytes instead).
    """
    compiled = _compile_flag(flag, tracer)
    if tracer is not None:
        return tracer.flag(flag, compiled)
    if not keep_source:  # nor what is read off it
        return replace(compiled, source=None)
    return replace(
        compiled,
        source=compact(flag),
        segment_keys=_segment_keys((c for rule in flag.rules for c in rule.clauses), flag.targeting),
        prerequisite_keys=tuple(p.flag for p in flag.prerequisites),
    )


def _compile_flag(flag: Flag, tracer: Tracer | None) -> CompiledFlag:
    metadata = {intern(k): _shared(v) for k, v in flag.metadata.items()}
    version = flag.version

    def result(variant: str | None, reason: Reason, rule_id: str | None = None) -> EvaluationResult:
        value = flag.variants[variant] if variant is not None else None
        variant = intern(variant) if variant is not None else None  # "on", "off", "control", … recur
        if flag.type is FlagType.FLOAT and value is not None:
            value = float(value)
        return EvaluationResult(value, variant, reason, None, None, rule_id, metadata, version)

    def serve(variant: str | None, split: Split | None, reason: Reason, rule_id: str | None) -> Outcome:
        if split is not None:
            return _compile_split(flag, split, rule_id, lambda v: result(v, Reason.SPLIT, rule_id), tracer)
        return result(variant, reason, rule_id)

    if not flag.enabled:
        off = result(flag.off_variant, Reason.DISABLED)
        return _finish(flag, metadata, lambda ctx, store: off)

    if flag.targeting is not None:
        rule = compile_targeting(flag.targeting)
        evaluate = targeting_evaluator(
            flag.key,
            rule if tracer is None else tracer.targeting(rule),
            {name: result(name, Reason.TARGETING_MATCH) for name in flag.variants},
            result(flag.default_variant, Reason.DEFAULT),
            metadata,
            version,
            with_segments=True,
            expr=flag.targeting if tracer is None else None,  # explanations trace the generic nodes
        )
    else:
        rules = tuple(
            (
                _traced_rule(tracer, i, rule.id, _all_of([compile_clause(c, tracer) for c in rule.clauses])),
                serve(rule.variant, rule.split, Reason.TARGETING_MATCH, intern(rule.id)),
            )
            for i, rule in enumerate(flag.rules)
        )
        static = not flag.rules and flag.default_split is None and flag.default_variant is not None
        fallthrough = serve(
            flag.default_variant, flag.default_split, Reason.STATIC if static else Reason.DEFAULT, None
        )
        evaluate = _rules_evaluator(rules, fallthrough)
    if not flag.prerequisites:
        return _finish(flag, metadata, evaluate)
    failed = result(flag.off_variant, Reason.PREREQUISITE_FAILED)
    in_chain = _with_prerequisites(
        flag.key, tuple((p.flag, p.variant) for p in flag.prerequisites), failed, evaluate
    )
    if flag.type is FlagType.OBJECT:
        in_chain = _copying_in_chain(in_chain, (flag.key,))
    return CompiledFlag(flag.key, flag.type, flag.version, flag.enabled, in_chain, metadata, flag, in_chain)


Outcome = EvaluationResult | Callable[[Context], EvaluationResult]


def _rules_evaluator(rules: tuple[tuple[Matcher, Outcome], ...], fallthrough: Outcome) -> FlagEvaluator:
    if isinstance(fallthrough, EvaluationResult):
        fixed = fallthrough

        def evaluate(ctx: Context, store: Store) -> EvaluationResult:
            for matches, outcome in rules:
                if matches(ctx, store):
                    return outcome if type(outcome) is EvaluationResult else outcome(ctx)  # type: ignore[operator]
            return fixed

        return evaluate

    split = fallthrough

    def evaluate_split(ctx: Context, store: Store) -> EvaluationResult:
        for matches, outcome in rules:
            if matches(ctx, store):
                return outcome if type(outcome) is EvaluationResult else outcome(ctx)  # type: ignore[operator]
        return split(ctx)

    return evaluate_split


def _chain_error(store: Store, chain: Chain, message: str) -> EvaluationResult:
    """ERROR for the flag the caller asked for (the chain's first), passed up the chain unchanged."""
    asked = store.flags.get(chain[0])
    return EvaluationResult(
        None,
        None,
        Reason.ERROR,
        ErrorCode.GENERAL,
        f"flag '{chain[0]}': {message}",
        None,
        dict(asked.metadata) if asked is not None else {},
        asked.version if asked is not None else None,
    )


def _cycle(chain: Chain) -> Chain | None:
    """The first cycle in ``chain`` (its keys from the first repeated one to the repeat), if any."""
    seen: dict[str, int] = {}
    for i, key in enumerate(chain):
        if key in seen:
            return chain[seen[key] : i + 1]
        seen[key] = i
    return None


def _chain_too_long(store: Store, chain: Chain, key: str) -> EvaluationResult:
    """The chain reached MAX_PREREQUISITE_DEPTH: a cycle if it repeats a flag (every cycle gets here,
    after going round it), else a chain too deep."""
    cycle = _cycle((*chain, key))
    if cycle is not None:
        return _chain_error(store, chain, "prerequisite cycle: " + " -> ".join(cycle))
    return _chain_error(
        store,
        chain,
        f"prerequisite chain deeper than {limits.MAX_PREREQUISITE_DEPTH} flags (MAX_PREREQUISITE_DEPTH): "
        f"{' -> '.join(chain[:3])} -> … -> {chain[-1]} -> {key}",
    )


def _with_prerequisites(
    key: str, prerequisites: tuple[tuple[str, str], ...], failed: EvaluationResult, inner: FlagEvaluator
) -> ChainEvaluator:
    """The flag's evaluation behind its prerequisites, given the chain of flags that led here.

    The chain makes a cycle (which validation refuses, but a data plane can hold one while the flags of
    a change arrive one by one, or when definitions were written past the API) and an over-deep chain
    answer ERROR naming the flags, deterministically and before any recursion: evaluation never counts
    on Python's recursion limit. Within a chain only GENERAL errors come from here (compiled rules
    report other codes), so they are passed up unchanged to the flag the caller asked for. A cycle is
    recognised only once the chain reaches the bound (going round it until then), which keeps a check
    per prerequisite out of every healthy evaluation.
    """
    top: Chain = (key,)
    general = ErrorCode.GENERAL
    max_depth = limits.MAX_PREREQUISITE_DEPTH

    def evaluate(ctx: Context, store: Store, chain: Chain = top, /) -> EvaluationResult:
        flags = store.flags
        for prerequisite_key, variant in prerequisites:
            prerequisite = flags.get(prerequisite_key)
            if prerequisite is None or not prerequisite.enabled:
                return failed
            if len(chain) >= max_depth:
                return _chain_too_long(store, chain, prerequisite_key)
            nested = prerequisite.evaluate_in_chain
            if nested is None:
                # Also a stand-in that compiles the flag on first use (the data plane's lazy
                # placeholders), which starts a chain of its own: its chain errors pass up as well.
                r = prerequisite.evaluate(ctx, store)
            else:
                r = nested(ctx, store, (*chain, prerequisite_key))
            if r.error_code is general:
                return r
            if r.variant != variant:
                return failed
        return inner(ctx, store)

    return evaluate


def _compile_split(
    flag: Flag,
    split: Split,
    rule_id: str | None,
    result: Callable[[str], EvaluationResult],
    tracer: Tracer | None = None,
) -> Callable[[Context], EvaluationResult]:
    total = 10000 if split.weight_unit == "basis_points" else sum(v.weight for v in split.variations)
    bounds: list[int] = []
    results: list[EvaluationResult] = []
    upper = 0
    for v in split.variations:
        upper += v.weight
        bounds.append(upper)
        results.append(result(v.variant))
    prefix = f"{flag.salt}:{flag.key}:"
    getter = path_getter(split.bucket_by)
    flat = None if "." in split.bucket_by else split.bucket_by
    if split.bucket_by == "targeting_key":
        missing = EvaluationResult(
            None,
            None,
            Reason.ERROR,
            ErrorCode.TARGETING_KEY_MISSING,
            f"flag '{flag.key}' splits by targeting_key, which the context lacks",
            rule_id,
            flag.metadata,
            flag.version,
        )
    else:
        missing = EvaluationResult(
            None,
            None,
            Reason.ERROR,
            ErrorCode.INVALID_CONTEXT,
            f"flag '{flag.key}' splits by '{split.bucket_by}', which the context lacks "
            "or holds as neither a string nor an integer",
            rule_id,
            flag.metadata,
            flag.version,
        )
    hash32 = mmh3.hash

    def choose(ctx: Context) -> EvaluationResult:
        raw: Any = ctx.get(flat) if flat is not None else getter(ctx)
        t = type(raw)
        if t is str:
            value = raw
        elif t is int:
            value = str(raw)
        else:
            return missing
        return results[bisect_right(bounds, (hash32(prefix + value, 0, False) * total) >> 32)]

    return choose if tracer is None else tracer.split(flag, split, total, choose)


def _finish(flag: Flag, metadata: dict[str, Any], evaluate: FlagEvaluator) -> CompiledFlag:
    if flag.type is FlagType.OBJECT:
        evaluate = _copying(evaluate)
    return CompiledFlag(flag.key, flag.type, flag.version, flag.enabled, evaluate, metadata, flag)


def _copying(inner: FlagEvaluator) -> FlagEvaluator:
    """Object values are handed out as fresh copies, so an app mutating one cannot corrupt the flag."""

    def evaluate(ctx: Context, store: Store) -> EvaluationResult:
        r = inner(ctx, store)
        return r if r.variant is None else replace(r, value=copy_json(r.value))

    return evaluate


def _copying_in_chain(inner: ChainEvaluator, top: Chain) -> ChainEvaluator:
    def evaluate(ctx: Context, store: Store, chain: Chain = top, /) -> EvaluationResult:
        r = inner(ctx, store, chain)
        return r if r.variant is None else replace(r, value=copy_json(r.value))

    return evaluate


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON value (dicts, lists, scalars)."""
    if type(value) is dict:
        return {k: copy_json(v) for k, v in value.items()}
    if type(value) is list:
        return [copy_json(v) for v in value]
    return value
