"""flagd flag definitions (schema v0): validation, compilation to a :class:`FlagSet`, and export.

Evaluation follows flagd (https://flagd.dev/reference/flag-definitions/ and flagd-testbed's evaluator
suite):

* a flag's type is inferred from its variants: boolean, string, integer (all integers), float (any
  other numbers) or object;
* ``state: DISABLED`` serves the caller's default with reason DISABLED and no error
  (flagd ADR "disabled-flag-evaluation");
* no ``targeting`` (or ``{}``) serves ``defaultVariant`` with reason STATIC; targeting that returns
  ``null`` serves ``defaultVariant`` with reason DEFAULT; without a ``defaultVariant`` (null or absent)
  both serve the caller's default with reason DEFAULT (flagd ADR "support-code-default");
* targeting that returns a variant key serves it with reason TARGETING_MATCH, ``fractional`` included;
  booleans become the keys ``"true"``/``"false"``, numbers their JSON text; anything else, or a key
  that is not a variant, is an error with code GENERAL;
* a failing flagd operator (``sem_ver`` given no version, ``starts_with`` given no string,
  ``fractional`` with no weight, ...) evaluates to null where it stands, as in flagd's Go evaluator
  and the JS core (flagd issue #1874, flagd-testbed ``@operator-errors``); a rule that cannot be
  applied at all is an error with code PARSE_ERROR;
* the JsonLogic data is the context plus ``targetingKey`` (the context's ``targeting_key``) and
  ``$flagd`` = ``{"flagKey": ..., "timestamp": <Unix seconds, read when used>}``.

``$ref`` to ``$evaluators`` is resolved when the document is loaded, and every targeting rule is
compiled once. Unlike flagd, which reports unknown operators and dangling ``$ref`` only when a flag is
evaluated (PARSE_ERROR), they are rejected here, with every other problem, when the document is loaded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from . import limits
from .compiler import CompiledFlag, Context, FlagEvaluator, Store, copy_json
from .documents import parse_json
from .exceptions import DefinitionError, Issue
from .flagset import FlagSet
from .jsonlogic import JsonLogicCompiler, Rule, js_str
from .model import Clause, Document, Flag, Operator, Split
from .operators import parse_timestamp
from .result import ErrorCode, EvaluationResult, FlagType, Reason
from .targeting import referenced_segments, targeting_evaluator
from .validation import encode, encoded_size, pointer, validate_document, value_issues

STATES = ("ENABLED", "DISABLED")
MAX_SAFE_INTEGER = 2**53 - 1
"""flagd's schema rejects integer variants that a JSON double cannot hold exactly."""

_SCALARS = (str, int, float, bool)


@dataclass(frozen=True, slots=True)
class _ParsedFlag:
    key: str
    type: FlagType
    enabled: bool
    variants: dict[str, Any]
    default_variant: str | None
    rule: Rule | None
    metadata: dict[str, Any]
    source: Mapping[str, Any]
    text: str | None = None
    """``source`` as compact JSON, which the compiled flag keeps instead (``None``: not encodable)."""
    evaluators: Mapping[str, Any] | None = None
    """The document's ``$evaluators``, for the fast path's ``$ref`` (see :mod:`.fastlogic`)."""


@dataclass(frozen=True, slots=True)
class _BrokenFlag:
    key: str
    source: Any
    issues: list[Issue]


def validate_flagd(data: Any) -> None:
    """Check a flagd document; raise :class:`DefinitionError` listing every problem with its JSON pointer."""
    _parse(data)


def load_flagd(data: str | bytes | Mapping[str, Any], *, warnings: list[Issue] | None = None) -> FlagSet:
    """Validate and compile a flagd document, parsed or JSON text (``$ref`` resolved, rules compiled once).

    Strict unless ``warnings`` is given. Then the document loads the way flagd loads files: a broken
    flag does not refuse the others but evaluates to ERROR with code PARSE_ERROR (or DISABLED, when its
    state says so); ``sem_ver``, ``starts_with`` and ``ends_with`` with the wrong number of arguments
    (or an invalid literal operand) evaluate to null and a negative ``fractional`` weight counts as 0.
    Every such problem is appended to ``warnings`` with its pointer. Only a document that is not a flagd
    document at all (or exceeds the per-document bounds) still raises :class:`DefinitionError`.
    """
    if isinstance(data, str | bytes):
        data = parse_json(data)
    if warnings is None:
        flags, metadata = _parse(data)
        return FlagSet((_compile(flag) for flag in flags), (), metadata)
    flags, metadata, broken, found = _parse_lenient(data)
    warnings += found
    compiled = [_compile(flag) for flag in flags] + [_broken(flag, metadata) for flag in broken]
    return FlagSet(compiled, (), metadata)


def _broken(flag: _BrokenFlag, set_metadata: dict[str, Any]) -> CompiledFlag:
    """A flag flagd would load but not evaluate: DISABLED if its state says so, else PARSE_ERROR."""
    source = flag.source if isinstance(flag.source, Mapping) else {}
    variants = source.get("variants")
    flag_type = None
    if isinstance(variants, Mapping) and variants:
        flag_type = _variant_type(variants, "", [])
    raw_metadata = source.get("metadata")
    metadata = {**set_metadata, **(dict(raw_metadata) if isinstance(raw_metadata, Mapping) else {})}
    if source.get("state") == "DISABLED":
        result = EvaluationResult(None, None, Reason.DISABLED, None, None, None, metadata, 0)
    else:
        problem = flag.issues[0] if flag.issues else Issue("", "invalid")
        message = f"flag '{flag.key}' is invalid: {problem}"
        result = EvaluationResult(None, None, Reason.ERROR, ErrorCode.PARSE_ERROR, message, None, metadata, 0)
    text = encode(flag.source)
    return CompiledFlag(
        flag.key,
        flag_type or FlagType.OBJECT,
        0,
        True,
        lambda ctx, store: result,
        metadata,
        flag.source if text is None else text,
    )


def _parse_lenient(
    data: Any,
) -> tuple[list[_ParsedFlag], dict[str, Any], list[_BrokenFlag], list[Issue]]:
    issues: list[Issue] = []
    parsed: list[_ParsedFlag] = []
    broken: list[_BrokenFlag] = []
    warnings: list[Issue] = []
    metadata = _parse_into(data, issues, parsed, broken, warnings, lenient=True)
    return parsed, metadata, broken, warnings


def _parse(data: Any) -> tuple[list[_ParsedFlag], dict[str, Any]]:
    issues: list[Issue] = []
    parsed: list[_ParsedFlag] = []
    metadata = _parse_into(data, issues, parsed, [], [], lenient=False)
    if issues:
        raise DefinitionError(issues)
    return parsed, metadata


def _parse_into(
    data: Any,
    issues: list[Issue],
    parsed: list[_ParsedFlag],
    broken: list[_BrokenFlag],
    warnings: list[Issue],
    *,
    lenient: bool,
) -> dict[str, Any]:
    """Parse ``data`` into ``parsed`` (and, ``lenient``, broken flags into ``broken`` with every problem
    but the document's own in ``warnings``); raises for problems of the document as a whole."""
    if not isinstance(data, Mapping):
        raise DefinitionError([Issue("", "a flagd document is a JSON object")])
    flags = data.get("flags")
    if not isinstance(flags, Mapping):
        issues.append(Issue("/flags", "'flags' is required: an object of flags keyed by flag key"))
        flags = {}
    set_metadata = _metadata(data.get("metadata"), "/metadata", issues)
    evaluators = data.get("$evaluators", {})
    if not isinstance(evaluators, Mapping):
        issues.append(Issue("/$evaluators", "'$evaluators' is an object of named targeting rules"))
        evaluators = {}
    bounds: list[Issue] = []
    _bound(flags, limits.MAX_FLAGS_PER_ENVIRONMENT, "flags (MAX_FLAGS_PER_ENVIRONMENT)", "/flags", bounds)
    _bound(
        evaluators,
        limits.MAX_SEGMENTS_PER_ENVIRONMENT,
        "evaluators (MAX_SEGMENTS_PER_ENVIRONMENT)",
        "/$evaluators",
        bounds,
    )
    for name, body in evaluators.items():
        bounds += _size_issues(
            body,
            "/$evaluators" + pointer(name),
            limits.MAX_SEGMENT_BYTES,
            "MAX_SEGMENT_BYTES",
            "the evaluator",
        )
    if bounds:  # refused before any expression is compiled
        raise DefinitionError(issues + bounds)
    fatal = [i for i in issues if i.path in ("/flags", "/$evaluators")]
    if lenient and fatal:  # not a flagd document: nothing to load
        raise DefinitionError(fatal)
    compiler = JsonLogicCompiler(evaluators, "/$evaluators", lenient=lenient)
    for name, body in evaluators.items():
        if not isinstance(body, Mapping):
            issues.append(Issue("/$evaluators" + pointer(name), "an evaluator is a JsonLogic rule object"))
        else:
            compiler.compile_evaluator(name)
    if lenient:  # an evaluator's problems break the flags that use it
        warnings += issues + compiler.issues
        issues.clear()
        compiler.issues.clear()
    for key, flag in flags.items():
        start, before = len(issues), len(compiler.issues)
        result = _parse_flag(key, flag, "/flags" + pointer(key), compiler, set_metadata, issues)
        if not lenient:
            if result is not None:
                parsed.append(result)
            continue
        problems = issues[start:] + compiler.issues[before:]
        if result is not None and not problems:
            parsed.append(result)
        else:
            broken.append(_BrokenFlag(str(key), flag, problems))
            warnings += problems
    if lenient:
        warnings += compiler.warnings
        issues.clear()
    else:
        issues += compiler.issues
    return set_metadata


def _bound(items: Mapping[Any, Any], limit: int, name: str, path: str, issues: list[Issue]) -> None:
    if len(items) > limit:
        issues.append(Issue(path, f"{len(items)} {name}; the limit is {limit}"))


def _size_issues(value: Any, path: str, limit: int, name: str, what: str) -> list[Issue]:
    return _text_size_issues(encode(value), path, limit, name, what)


def _text_size_issues(text: str | None, path: str, limit: int, name: str, what: str) -> list[Issue]:
    size = 0 if text is None else encoded_size(text)  # too deep to encode: the depth checks say where
    if size > limit:
        return [Issue(path, f"{what} is {size} bytes encoded; the limit is {limit} ({name})")]
    return []


def _metadata(raw: Any, path: str, issues: list[Issue]) -> dict[str, Any]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        issues.append(Issue(path, "metadata is an object of strings, numbers and booleans"))
        return {}
    _bound(raw, limits.MAX_METADATA_ENTRIES, "metadata entries (MAX_METADATA_ENTRIES)", path, issues)
    for name, value in raw.items():
        if not isinstance(value, _SCALARS) or (type(value) is float and not math.isfinite(value)):
            message = f"metadata values are strings, numbers or booleans, not {value!r}"
            issues.append(Issue(path + pointer(name), message))
    return dict(raw)


def _parse_flag(
    key: Any,
    flag: Any,
    path: str,
    compiler: JsonLogicCompiler,
    set_metadata: dict[str, Any],
    issues: list[Issue],
) -> _ParsedFlag | None:
    start = len(issues)
    if type(key) is not str or not key:
        issues.append(Issue(path, "a flag key is a non-empty string"))
    if not isinstance(flag, Mapping):
        issues.append(Issue(path, "a flag is an object"))
        return None
    text = encode(flag)
    bounds = _text_size_issues(text, path, limits.MAX_FLAG_BYTES, "MAX_FLAG_BYTES", "the flag")
    variants = flag.get("variants")
    if isinstance(variants, Mapping) and not bounds:
        _bound(variants, limits.MAX_VARIANTS, "variants (MAX_VARIANTS)", path + "/variants", bounds)
        for name, value in variants.items():
            bounds += value_issues(value, path + "/variants" + pointer(name), "a variant value")
    if bounds:  # refused before its targeting is compiled
        issues += bounds
        return None
    state = flag.get("state")
    if "state" not in flag:
        issues.append(Issue(path + "/state", "'state' is required: ENABLED or DISABLED"))
    elif state not in STATES:
        issues.append(Issue(path + "/state", f"state is ENABLED or DISABLED, not {state!r}"))
    flag_type: FlagType | None = None
    if "variants" not in flag:
        issues.append(Issue(path + "/variants", "'variants' is required: an object of variant values"))
    elif not isinstance(variants, Mapping) or not variants:
        issues.append(Issue(path + "/variants", "variants is a non-empty object of variant values"))
    else:
        flag_type = _variant_type(variants, path + "/variants", issues)
    default = flag.get("defaultVariant")
    if default is not None:
        if type(default) is not str:
            issues.append(Issue(path + "/defaultVariant", "defaultVariant is a variant key or null"))
        elif isinstance(variants, Mapping) and default not in variants:
            issues.append(Issue(path + "/defaultVariant", f"variant '{default}' is not declared in variants"))
    rule: Rule | None = None
    targeting = flag.get("targeting")
    if targeting is not None:
        if not isinstance(targeting, Mapping):
            issues.append(Issue(path + "/targeting", "targeting is a JsonLogic rule object"))
        elif targeting:
            before = len(compiler.issues)
            rule = compiler.compile(targeting, path + "/targeting")
            if len(compiler.issues) > before:
                rule = None
    flag_metadata = _metadata(flag.get("metadata"), path + "/metadata", issues)
    if len(issues) > start or flag_type is None:
        return None
    assert isinstance(variants, Mapping)
    return _ParsedFlag(
        key=key,
        type=flag_type,
        enabled=state == "ENABLED",
        variants=dict(variants),
        default_variant=default,
        rule=rule,
        metadata={**set_metadata, **flag_metadata},
        source=flag,
        text=text,
        evaluators=compiler.evaluators,
    )


def _value_kind(value: Any) -> str | None:
    t = type(value)
    if t is bool:
        return "boolean"
    if t is str:
        return "string"
    if t is int:
        return "integer"
    if t is float:
        return "float" if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return "object"
    return None


def _variant_type(variants: Mapping[str, Any], path: str, issues: list[Issue]) -> FlagType | None:
    kinds: dict[str, str] = {}
    valid = True
    for name, value in variants.items():
        at = path + pointer(name)
        if type(name) is not str or not name:
            issues.append(Issue(at, "a variant key is a non-empty string"))
            valid = False
        kind = _value_kind(value)
        if kind is None:
            issues.append(Issue(at, f"a variant is a boolean, string, number or object, not {value!r}"))
            valid = False
        elif kind == "integer" and abs(value) > MAX_SAFE_INTEGER:
            issues.append(Issue(at, f"{value} is outside the safe integer range (±2^53-1)"))
            valid = False
        if kind is not None:
            kinds[name] = kind
    found = set(kinds.values())
    if found and found <= {"integer", "float"}:
        flag_type = FlagType.FLOAT if "float" in found else FlagType.INTEGER
    elif len(found) == 1:
        flag_type = FlagType(found.pop())
    else:
        if found:
            listed = ", ".join(f"{name}: {kind}" for name, kind in kinds.items())
            issues.append(Issue(path, f"variants must all be of one type, got {listed}"))
        return None
    return flag_type if valid else None


def _compile(flag: _ParsedFlag) -> CompiledFlag:
    metadata = flag.metadata
    key = flag.key

    def result(variant: str | None, reason: Reason) -> EvaluationResult:
        value = flag.variants[variant] if variant is not None else None
        if flag.type is FlagType.FLOAT and value is not None:
            value = float(value)
        return EvaluationResult(value, variant, reason, None, None, None, metadata, 0)

    if not flag.enabled:
        disabled = result(None, Reason.DISABLED)
        return _finish(flag, lambda ctx, store: disabled)
    default = flag.default_variant
    if flag.rule is None:
        static = result(default, Reason.STATIC if default is not None else Reason.DEFAULT)
        return _finish(flag, lambda ctx, store: static)

    evaluate = targeting_evaluator(
        key,
        flag.rule,
        {name: result(name, Reason.TARGETING_MATCH) for name in flag.variants},
        result(default, Reason.DEFAULT),
        metadata,
        0,
        with_segments=False,
        expr=flag.source.get("targeting"),
        evaluators=flag.evaluators,
    )
    return _finish(flag, evaluate)


def _finish(flag: _ParsedFlag, evaluate: FlagEvaluator) -> CompiledFlag:
    if flag.type is FlagType.OBJECT:
        inner = evaluate

        def evaluate(ctx: Context, store: Store) -> EvaluationResult:
            r = inner(ctx, store)
            return r if r.variant is None else replace(r, value=copy_json(r.value))

    # The flag object is kept as its JSON text (a tenth of the parsed object's memory).
    source = flag.source if flag.text is None else flag.text
    return CompiledFlag(flag.key, flag.type, 0, flag.enabled, evaluate, flag.metadata, source)


# --- export ---------------------------------------------------------------------------------------------

SPLIT_VALUE_MISSING = "#split-value-missing"
"""What exported targeting returns where the native split answers ERROR (its bucket-by value is missing
or neither a string nor an integer): not a variant key (those start with a letter or digit), so flagd
answers an ERROR (GENERAL) and the caller's default, as the native engine does."""
PREREQUISITE_FAILED = "#prerequisite-failed"
"""Returned where a prerequisite fails and the flag has no ``off_variant``: the caller's default."""
NOT_EXPRESSIBLE = "#not-expressible-in-flagd"
"""Returned where the outcome hangs on a clause JsonLogic cannot evaluate (``matches``, ``before`` or
``after`` on a date string): an ERROR and the caller's default rather than a guess."""

_FALSE: Any = {"!": [True]}

Cond = tuple[Any, Any]
"""A condition in three values: ``(certain, unknown)``. ``certain`` is JsonLogic true where the native
condition holds; ``unknown`` (``None`` when it never is) is true where the outcome hangs on what
JsonLogic cannot evaluate, and is only meaningful where ``certain`` is false."""


def _var(attribute: str) -> dict[str, Any]:
    return {"var": "targetingKey" if attribute == "targeting_key" else attribute}


def _is_string(x: Any) -> dict[str, Any]:
    """True only for strings: ``cat`` of anything else differs from the value itself."""
    return {"===": [{"cat": [x]}, x]}


def _is_number(x: Any) -> dict[str, Any]:
    """True only for numbers, without arithmetic (json-logic-engine, the JS core's evaluator, throws on
    arithmetic giving NaN and on loose comparisons of arrays): not a string, boolean or null, not an
    array (``merge`` spreads one) and not an object."""
    return {
        "and": [
            {"!==": [{"cat": [x]}, x]},
            {"!": [{"in": [x, [True, False, None]]}]},
            {"in": [x, {"merge": [x]}]},
            {"!==": [{"cat": [x]}, "[object Object]"]},
        ]
    }


def _is_integer(x: Any) -> dict[str, Any]:
    return {"and": [_is_number(x), {"===": [{"%": [x, 1]}, 0]}]}


def _bucketable(x: Any) -> dict[str, Any]:
    """What the native split hashes: a string, or an integer (in decimal)."""
    return {"or": [_is_string(x), _is_integer(x)]}


def _short_string(x: Any) -> dict[str, Any]:
    """A string a ``matches`` pattern is tried on (at most ``MAX_SUBJECT_LENGTH`` characters)."""
    return {"and": [_is_string(x), {"!": [{"substr": [x, limits.MAX_SUBJECT_LENGTH]}]}]}


def _any_of(rules: list[Any]) -> Any:
    if not rules:
        return _FALSE
    return rules[0] if len(rules) == 1 else {"or": rules}


def _all_of(rules: list[Any]) -> Any:
    if not rules:
        return True
    return rules[0] if len(rules) == 1 else {"and": rules}


def _not(rule: Any) -> Any:
    return {"!": [rule]}


def _number(value: float) -> int | float:
    return int(value) if value.is_integer() and abs(value) <= MAX_SAFE_INTEGER else value


def _variant_number(variant: str) -> int | float | None:
    """The number a targeting result may be to name ``variant`` (its JavaScript text), if any."""
    try:
        number = float(variant)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    value = _number(number)
    return value if js_str(value) == variant else None


_SEMVER_OPS = {
    Operator.SEMVER_EQ: "=",
    Operator.SEMVER_LT: "<",
    Operator.SEMVER_LTE: "<=",
    Operator.SEMVER_GT: ">",
    Operator.SEMVER_GTE: ">=",
}
_NUMERIC_OPS = {Operator.LT: "<", Operator.LTE: "<=", Operator.GT: ">", Operator.GTE: ">="}
_NEGATED = {Operator.NEQ: Operator.EQ, Operator.NOT_IN: Operator.IN}


class _Exporter:
    def __init__(self, document: Document) -> None:
        self.segments = {s.key: s for s in document.segments}
        self.flags = {f.key: f for f in document.flags}
        self.segment_rules: dict[str, Any] = {}
        """The ``$evaluators``: each segment's certain condition, self-contained."""
        self._conditions: dict[str, Cond] = {}
        self._targeting: dict[str, Any] = {}

    def predicate(self, clause: Clause) -> Cond:
        """A condition over ``{"var": ""}`` (one value of the attribute, inside a loop) where the native
        predicate is. No flagd operator stands in a loop's rule: the JS core's custom operators fail
        there (they look for their logger in the data, which a loop replaces by the item)."""
        x = {"var": ""}
        op = clause.operator
        values = clause.values
        if op is Operator.EQ:
            return {"===": [x, values[0]]}, None
        if op is Operator.IN:
            return {"in": [x, list(values)]}, None
        if op is Operator.CONTAINS:
            if "" in values:
                return _is_string(x), None
            return {"and": [_is_string(x), _any_of([{"in": [v, x]} for v in values])]}, None
        if op in (Operator.STARTS_WITH, Operator.ENDS_WITH):
            if "" in values:
                return _is_string(x), None
            tests = []
            for v in values:
                units = len(v.encode("utf-16-le")) // 2  # JavaScript's substr counts UTF-16 code units
                part = [x, 0, units] if op is Operator.STARTS_WITH else [x, -units]
                tests.append({"===": [{"substr": part}, v]})
            return {"and": [_is_string(x), _any_of(tests)]}, None
        if op in _NUMERIC_OPS:
            return {"and": [_is_number(x), {_NUMERIC_OPS[op]: [x, values[0]]}]}, None
        if op in _SEMVER_OPS:
            return _FALSE, _is_string(x)
        if op in (Operator.BEFORE, Operator.AFTER):
            bound = parse_timestamp(values[0])
            assert bound is not None
            compare = "<" if op is Operator.BEFORE else ">"
            return {"and": [_is_number(x), {compare: [x, _number(bound)]}]}, _is_string(x)
        assert op is Operator.MATCHES
        return _FALSE, _short_string(x)

    def direct(self, clause: Clause, x: Any) -> Any:
        """For the operators needing flagd's own (``starts_with``, ``ends_with``, ``sem_ver``): the
        condition on a string attribute ``x`` itself, outside any loop; ``None`` for the others."""
        op = clause.operator
        if op in (Operator.STARTS_WITH, Operator.ENDS_WITH):
            return _any_of([{op.value: [x, v]} for v in clause.values])
        if op in _SEMVER_OPS:
            return {"sem_ver": [x, _SEMVER_OPS[op], clause.values[0]]}
        return None

    def clause(self, clause: Clause) -> Cond:
        op = clause.operator
        negate = clause.negate
        if op is Operator.SEGMENT_MATCH:
            conds = [self.segment_ref(v) for v in clause.values if v in self.segments]
            return self.negated(self.matched(conds), negate, True)
        assert clause.attribute is not None
        attribute = _var(clause.attribute)
        if op in (Operator.EXISTS, Operator.NOT_EXISTS):
            present = (op is Operator.EXISTS) != negate
            return {"!==" if present else "===": [attribute, None]}, None
        if op in _NEGATED:
            op, negate = _NEGATED[op], not negate
            clause = clause.model_copy(update={"operator": op})
        each = {"merge": [attribute]}
        predicate, maybe = self.predicate(clause)
        certain: Any = {"some": [each, predicate]}
        unknown: Any = None if maybe is None else {"some": [each, maybe]}
        direct = self.direct(clause, attribute)
        if direct is not None:
            # A string attribute is tested directly; a list's strings in the loop (sem_ver: unknown).
            certain = {"if": [_is_string(attribute), direct, certain]}
            if unknown is not None:
                unknown = {"and": [_not(_is_string(attribute)), unknown]}
        return self.negated((certain, unknown), negate, {"!==": [attribute, None]})

    @staticmethod
    def matched(conds: list[Cond]) -> Cond:
        """Any of ``conds`` (the segments of one ``segment_match``)."""
        certain = _any_of([c for c, _ in conds])
        unknowns = [u for _, u in conds if u is not None]
        return certain, _any_of(unknowns) if unknowns else None

    @staticmethod
    def negated(cond: Cond, negate: bool, present: Any) -> Cond:
        """``cond``, or its negation where ``present`` holds (a missing attribute never matches)."""
        if not negate:
            return cond
        certain, unknown = cond
        guard = [] if present is True else [present]
        if unknown is None:
            return _all_of([*guard, _not(certain)]), None
        return _all_of([*guard, _not(certain), _not(unknown)]), _all_of([*guard, _not(certain), unknown])

    def clauses(self, clauses: list[Clause], inline: bool = False) -> Cond:
        """All of a rule's clauses. ``inline``: a segment's rule, whose ``segment_match`` clauses are
        inlined (flagd resolves ``$ref`` inside ``$evaluators`` unreliably) rather than referred to."""
        conds: list[Cond] = []
        for c in clauses:
            if inline and c.operator is Operator.SEGMENT_MATCH:
                inner = [self.segment(v) for v in c.values if v in self.segments]
                conds.append(self.negated(self.matched(inner), c.negate, True))
            else:
                conds.append(self.clause(c))
        certain = _all_of([x for x, _ in conds])
        if all(u is None for _, u in conds):
            return certain, None
        # Unknown: no clause is certainly false and some clause is unknown.
        unknown = _all_of(
            [
                _any_of([u for _, u in conds if u is not None]),
                *(x if u is None else {"or": [x, u]} for x, u in conds),
            ]
        )
        return certain, unknown

    def segment_ref(self, key: str) -> Cond:
        """A segment from a flag: its certain condition through ``$ref``, its unknown one inlined."""
        return {"$ref": key}, self.segment(key)[1]

    def segment(self, key: str) -> Cond:
        """The segment as self-contained conditions: flagd resolves ``$ref`` inside ``$evaluators``
        unreliably, so segments referring to segments are inlined there. Validation refused cycles."""
        done = self._conditions.get(key)
        if done is not None:
            return done
        segment = self.segments[key]
        conds = [self.clauses(r.clauses, inline=True) for r in segment.rules]
        certain = _any_of([c for c, _ in conds])
        unknowns = [u for _, u in conds if u is not None]
        unknown = _any_of(unknowns) if unknowns else None
        targeting_key = {"var": "targetingKey"}
        if segment.included:
            certain = {"if": [{"in": [targeting_key, list(segment.included)]}, True, certain]}
            if unknown is not None:
                unknown = {"if": [{"in": [targeting_key, list(segment.included)]}, False, unknown]}
        if segment.excluded:
            certain = {"if": [{"in": [targeting_key, list(segment.excluded)]}, False, certain]}
            if unknown is not None:
                unknown = {"if": [{"in": [targeting_key, list(segment.excluded)]}, False, unknown]}
        self.segment_rules[key] = certain
        self._conditions[key] = (certain, unknown)
        return certain, unknown

    def split(self, flag: Flag, split: Split) -> Any:
        """``fractional`` over the string the native split hashes, where the native split buckets at all;
        elsewhere :data:`SPLIT_VALUE_MISSING`. Validation holds the weights' sum to ``MAX_WEIGHT_SUM``."""
        value = _var(split.bucket_by)
        bucket_by = {"cat": [f"{flag.salt}:{flag.key}:", value]}
        fractional = {"fractional": [bucket_by, *([v.variant, v.weight] for v in split.variations)]}
        return {"if": [_bucketable(value), fractional, SPLIT_VALUE_MISSING]}

    def variants(self, flag: Flag) -> dict[str, Any]:
        if flag.type is FlagType.FLOAT:
            return {name: float(value) for name, value in flag.variants.items()}
        return dict(flag.variants)

    def rules(self, flag: Flag) -> Any:
        """The native rules as one JsonLogic ``if`` chain (three operands per ``if``, or five where a
        rule's outcome can hang on a clause JsonLogic cannot evaluate), the default split last."""
        targeting: Any = None
        if flag.default_split is not None:
            targeting = self.split(flag, flag.default_split)
        for rule in reversed(flag.rules):
            outcome = rule.variant if rule.split is None else self.split(flag, rule.split)
            certain, unknown = self.clauses(rule.clauses)
            if unknown is None:
                targeting = {"if": [certain, outcome, targeting]}
            else:
                targeting = {"if": [certain, outcome, unknown, NOT_EXPRESSIBLE, targeting]}
        return targeting

    def targeting(self, flag: Flag) -> Any:
        """The enabled flag's targeting, its prerequisites included (``None``: none)."""
        if flag.key in self._targeting:
            return self._targeting[flag.key]
        targeting = flag.targeting if flag.targeting is not None else self.rules(flag)
        if flag.prerequisites:
            passed = _all_of([self.prerequisite(p.flag, p.variant) for p in flag.prerequisites])
            failed = flag.off_variant if flag.off_variant is not None else PREREQUISITE_FAILED
            targeting = {"if": [passed, targeting, failed]}
        self._targeting[flag.key] = targeting
        return targeting

    def prerequisite(self, key: str, variant: str) -> Any:
        """True where flag ``key`` serves ``variant``: its own targeting inlined (flagd has no
        prerequisites). A prerequisite that is disabled or missing fails, as natively."""
        other = self.flags.get(key)
        if other is None or not other.enabled:
            return False
        targeting = self.targeting(other)
        if targeting is None:
            return other.default_variant == variant
        served: list[Any] = [variant]
        if variant in ("true", "false"):
            served.append(variant == "true")
        else:
            number = _variant_number(variant)
            if number is not None:
                served.append(number)
        if other.default_variant == variant:
            served.append(None)
        return {"in": [targeting, served]}

    def flag(self, flag: Flag) -> dict[str, Any]:
        out: dict[str, Any] = {"state": "ENABLED", "variants": self.variants(flag)}
        if not flag.enabled:
            if flag.off_variant is None:
                # flagd ignores a disabled flag's targeting; kept, so that re-importing loses nothing.
                out["state"] = "DISABLED"
                out["defaultVariant"] = flag.default_variant
                targeting = self.targeting(flag)
                if targeting is not None:
                    out["targeting"] = targeting
            else:
                out["defaultVariant"] = flag.off_variant
        else:
            out["defaultVariant"] = flag.default_variant
            targeting = self.targeting(flag)
            if targeting is not None:
                out["targeting"] = targeting
        if flag.metadata:
            out["metadata"] = dict(flag.metadata)
        return out

    def referenced(self, flag: Flag) -> None:
        """Every segment a flag's own targeting names with ``$ref`` gets its ``$evaluators`` entry."""
        if flag.targeting is not None:
            for key in sorted(referenced_segments(flag.targeting)):
                if key in self.segments:
                    self.segment(key)


def inline_evaluators(targeting: Any, evaluators: Mapping[str, Any]) -> Any:
    """``targeting`` with every ``{"$ref": name}`` naming one of ``evaluators`` replaced by that
    evaluator (itself inlined), as flagd resolves them; the document was validated (no cycles)."""
    done: dict[str, Any] = {}

    def walk(node: Any, depth: int) -> Any:
        if depth > limits.MAX_JSON_DEPTH:
            return node  # the native validation that follows refuses it, with its pointer
        if isinstance(node, Mapping):
            if len(node) == 1 and "$ref" in node and type(node["$ref"]) is str and node["$ref"] in evaluators:
                name = node["$ref"]
                if name not in done:
                    done[name] = walk(evaluators[name], depth + 1)
                return copy_json(done[name])
            return {k: walk(v, depth + 1) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v, depth + 1) for v in node]
        return node

    return walk(targeting, 0)


def export_flagd(document: Document) -> dict[str, Any]:
    """Convert a valid native document to flagd's format: every flag, with the native engine's values.

    * Rules become a JsonLogic ``if`` chain, clause operators JsonLogic or flagd operators guarded to
      match exactly where the native ones do, segments ``$evaluators`` referred to with ``$ref`` (a
      flag's own ``targeting`` is written as it is: its ``$ref`` nodes name those evaluators).
    * A split becomes ``fractional`` bucketing by ``cat("<salt>:<flag key>:", <bucket_by>)``, the string
      the native split hashes, with flagd's high-precision bucketing (flagd's Go evaluator and the JS
      ``@openfeature/flagd-core``); where the native split answers ERROR (bucket-by value missing, or
      neither a string nor an integer) the targeting returns :data:`SPLIT_VALUE_MISSING`, which flagd
      answers with ERROR and the caller's default too. The reason is TARGETING_MATCH, not SPLIT.
    * A disabled flag with an ``off_variant`` (a kill switch) is ENABLED with that variant as its
      default and no targeting: flagd serves it with reason STATIC rather than DISABLED. A disabled flag
      without one is DISABLED (the caller's default, as natively).
    * Prerequisites are inlined: a prerequisite's own targeting (and its prerequisites') stands in an
      ``in`` test of the variants it must serve, failing to the ``off_variant`` (else
      :data:`PREREQUISITE_FAILED`, the caller's default). A disabled or missing prerequisite fails.
    * ``matches``, and ``before``/``after`` on a date string, have no JsonLogic equivalent: ``before``
      and ``after`` on Unix seconds are exported; where a rule's outcome hangs on the rest the targeting
      returns :data:`NOT_EXPRESSIBLE` (ERROR, the caller's default) instead of guessing. A segment
      with such clauses counts as not matched inside a flag's own JsonLogic ``targeting``, and so does a
      prerequisite whose outcome hangs on them.

    Remaining differences: reasons (STATIC and DEFAULT where natively there are DISABLED, SPLIT and
    PREREQUISITE_FAILED; error codes GENERAL), version strings that node's or Go's semver parse and
    Python's does not (``=1.2.3``, ``1.2-rc.1``) or the other way round, a float with no fractional part
    (``2.0``) buckets like the integer in flagd, integers beyond ±2^53 lose precision in flagd, and
    object flags with array values are not valid flagd (providers may refuse those flags).
    """
    document = validate_document(document)
    exporter = _Exporter(document)
    flags = {}
    for f in document.flags:
        flags[f.key] = exporter.flag(f)
        exporter.referenced(f)
    out: dict[str, Any] = {"flags": flags}
    if exporter.segment_rules:
        out["$evaluators"] = dict(sorted(exporter.segment_rules.items()))
    if document.metadata:
        out["metadata"] = dict(document.metadata)
    return out
