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
  ``fractional`` with no weight, ...) makes the rule return null, so ``defaultVariant`` is served
  rather than the false branch (flagd issue #1874, flagd-testbed ``@operator-errors``); a rule that
  cannot be applied at all is an error with code PARSE_ERROR;
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
from .jsonlogic import JsonLogicCompiler, Rule
from .model import Clause, Document, Flag, Operator, Split
from .result import EvaluationResult, FlagType, Reason
from .targeting import targeting_evaluator
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


def validate_flagd(data: Any) -> None:
    """Check a flagd document; raise :class:`DefinitionError` listing every problem with its JSON pointer."""
    _parse(data)


def load_flagd(data: str | bytes | Mapping[str, Any]) -> FlagSet:
    """Validate and compile a flagd document, parsed or JSON text (``$ref`` resolved, rules compiled once)."""
    if isinstance(data, str | bytes):
        data = parse_json(data)
    flags, metadata = _parse(data)
    return FlagSet((_compile(flag) for flag in flags), (), metadata)


def _parse(data: Any) -> tuple[list[_ParsedFlag], dict[str, Any]]:
    issues: list[Issue] = []
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
    compiler = JsonLogicCompiler(evaluators, "/$evaluators")
    for name, body in evaluators.items():
        if not isinstance(body, Mapping):
            issues.append(Issue("/$evaluators" + pointer(name), "an evaluator is a JsonLogic rule object"))
        else:
            compiler.compile_evaluator(name)
    parsed = []
    for key, flag in flags.items():
        result = _parse_flag(key, flag, "/flags" + pointer(key), compiler, set_metadata, issues)
        if result is not None:
            parsed.append(result)
    issues += compiler.issues
    if issues:
        raise DefinitionError(issues)
    return parsed, set_metadata


def _bound(items: Mapping[Any, Any], limit: int, name: str, path: str, issues: list[Issue]) -> None:
    if len(items) > limit:
        issues.append(Issue(path, f"{len(items)} {name}; the limit is {limit}"))


def _size_issues(value: Any, path: str, limit: int, name: str, what: str) -> list[Issue]:
    text = encode(value)
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
    bounds = _size_issues(flag, path, limits.MAX_FLAG_BYTES, "MAX_FLAG_BYTES", "the flag")
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
    )
    return _finish(flag, evaluate)


def _finish(flag: _ParsedFlag, evaluate: FlagEvaluator) -> CompiledFlag:
    if flag.type is FlagType.OBJECT:
        inner = evaluate

        def evaluate(ctx: Context, store: Store) -> EvaluationResult:
            r = inner(ctx, store)
            return r if r.variant is None else replace(r, value=copy_json(r.value))

    return CompiledFlag(flag.key, flag.type, 0, flag.enabled, evaluate, flag.metadata, flag.source)


# --- export ---------------------------------------------------------------------------------------------


def _var(attribute: str) -> dict[str, Any]:
    return {"var": "targetingKey" if attribute == "targeting_key" else attribute}


def _is_string(x: Any) -> dict[str, Any]:
    """True only for strings: ``cat`` of anything else differs from the value itself."""
    return {"===": [{"cat": [x]}, x]}


def _is_number(x: Any) -> dict[str, Any]:
    """True only for numbers: ``x - 0`` of anything else is not the value itself."""
    return {"===": [{"-": [x, 0]}, x]}


def _any_of(rules: list[Any]) -> Any:
    return rules[0] if len(rules) == 1 else {"or": rules}


def _all_of(rules: list[Any]) -> Any:
    return rules[0] if len(rules) == 1 else {"and": rules}


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
        self.segments = {s.key: (i, s) for i, s in enumerate(document.segments)}
        self.segment_rules: dict[str, Any] = {}
        self._visiting: list[str] = []

    def predicate(self, clause: Clause, path: str) -> Any:
        """A rule over ``{"var": ""}`` (one value of the attribute), true where the native predicate is."""
        x = {"var": ""}
        op = clause.operator
        values = clause.values
        if op is Operator.EQ:
            return {"===": [x, values[0]]}
        if op is Operator.IN:
            return {"in": [x, list(values)]}
        if op is Operator.CONTAINS:
            if "" in values:
                return _is_string(x)
            return {"and": [_is_string(x), _any_of([{"in": [v, x]} for v in values])]}
        if op in (Operator.STARTS_WITH, Operator.ENDS_WITH):
            return {"and": [_is_string(x), _any_of([{op.value: [x, v]} for v in values])]}
        if op in _NUMERIC_OPS:
            return {"and": [_is_number(x), {_NUMERIC_OPS[op]: [x, values[0]]}]}
        if op in _SEMVER_OPS:
            return {"and": [_is_string(x), {"sem_ver": [x, _SEMVER_OPS[op], values[0]]}]}
        raise DefinitionError([Issue(path + "/operator", f"operator {op} has no flagd equivalent")])

    def clause(self, clause: Clause, path: str, inline: bool) -> Any:
        op = clause.operator
        negate = clause.negate
        if op is Operator.SEGMENT_MATCH:
            matched = _any_of(
                [self.segment(v, f"{path}/values/{i}", inline) for i, v in enumerate(clause.values)]
            )
            return {"!": [matched]} if negate else matched
        assert clause.attribute is not None
        attribute = _var(clause.attribute)
        if op in (Operator.EXISTS, Operator.NOT_EXISTS):
            present = (op is Operator.EXISTS) != negate
            return {"!=" if present else "==": [attribute, None]}
        if op in _NEGATED:
            op, negate = _NEGATED[op], not negate
            clause = clause.model_copy(update={"operator": op})
        each = [{"merge": [attribute]}, self.predicate(clause, path)]
        if negate:
            return {"and": [{"!=": [attribute, None]}, {"none": each}]}
        return {"some": each}

    def clauses(self, clauses: list[Clause], path: str, inline: bool) -> Any:
        return _all_of([self.clause(c, f"{path}/clauses/{i}", inline) for i, c in enumerate(clauses)])

    def segment(self, key: Any, path: str, inline: bool) -> Any:
        """A reference to a segment from a flag, or its rule inlined into another segment's rule."""
        if key not in self.segments:
            raise DefinitionError([Issue(path, f"segment '{key}' does not exist")])
        rule = self.segment_rule(key)
        return rule if inline else {"$ref": key}

    def segment_rule(self, key: str) -> Any:
        """The segment as a self-contained rule: flagd resolves ``$ref`` inside ``$evaluators`` unreliably."""
        if key in self.segment_rules:
            return self.segment_rules[key]
        index, segment = self.segments[key]
        path = pointer("segments", index)
        if key in self._visiting:
            raise DefinitionError([Issue(path, "segment cycle: " + " -> ".join([*self._visiting, key]))])
        self._visiting.append(key)
        try:
            rules = [self.clauses(r.clauses, f"{path}/rules/{i}", True) for i, r in enumerate(segment.rules)]
        finally:
            self._visiting.pop()
        rule: Any = _any_of(rules) if rules else {"!": [True]}
        targeting_key = {"var": "targetingKey"}
        if segment.included:
            rule = {"if": [{"in": [targeting_key, list(segment.included)]}, True, rule]}
        if segment.excluded:
            rule = {"if": [{"in": [targeting_key, list(segment.excluded)]}, False, rule]}
        self.segment_rules[key] = rule
        return rule

    def split(self, flag: Flag, split: Split, path: str) -> Any:
        """Validation already holds the weights' sum to ``MAX_WEIGHT_SUM``, flagd's own cap."""
        bucket_by = {"cat": [f"{flag.salt}:{flag.key}:", _var(split.bucket_by)]}
        return {"fractional": [bucket_by, *([v.variant, v.weight] for v in split.variations)]}

    def variants(self, flag: Flag, path: str) -> dict[str, Any]:
        variants: dict[str, Any] = {}
        for name, value in flag.variants.items():
            at = f"{path}/variants{pointer(name)}"
            if flag.type is FlagType.OBJECT and not isinstance(value, dict):
                raise DefinitionError([Issue(at, "flagd object variants are JSON objects, not arrays")])
            if flag.type is FlagType.INTEGER and abs(value) > MAX_SAFE_INTEGER:
                raise DefinitionError([Issue(at, "flagd integers stay within ±2^53-1")])
            variants[name] = float(value) if flag.type is FlagType.FLOAT else value
        return variants

    def flag(self, flag: Flag, path: str) -> dict[str, Any]:
        if flag.prerequisites:
            raise DefinitionError([Issue(path + "/prerequisites", "flagd has no prerequisites")])
        if not flag.enabled and flag.off_variant is not None:
            message = "flagd serves the caller's default for a disabled flag; remove off_variant"
            raise DefinitionError([Issue(path + "/off_variant", message)])
        out: dict[str, Any] = {
            "state": "ENABLED" if flag.enabled else "DISABLED",
            "variants": self.variants(flag, path),
            "defaultVariant": flag.default_variant,
        }
        targeting: Any = None
        if flag.default_split is not None:
            targeting = self.split(flag, flag.default_split, path + "/default_split")
        for r in range(len(flag.rules) - 1, -1, -1):
            rule = flag.rules[r]
            at = f"{path}/rules/{r}"
            outcome = rule.variant if rule.split is None else self.split(flag, rule.split, at + "/split")
            targeting = {"if": [self.clauses(rule.clauses, at, False), outcome, targeting]}
        if targeting is not None:
            out["targeting"] = targeting
        if flag.metadata:
            out["metadata"] = dict(flag.metadata)
        return out


def export_flagd(document: Document) -> dict[str, Any]:
    """Convert a native document to flagd's format; raise :class:`DefinitionError` where flagd falls short.

    Rules become a nested JsonLogic ``if`` chain (one ``if`` per rule, as flagd's schema allows three
    operands), clause operators become JsonLogic or flagd operators guarded so that they match exactly
    where the native ones do, and segments become ``$evaluators`` referenced with ``$ref``.

    A native split becomes ``fractional`` bucketing by ``cat("<salt>:<flag key>:", <bucket_by>)``, the
    string the native split hashes. flagd's fractional still hashes and buckets differently from the
    native split in places, so assignments can differ: flagd versions before its high-precision
    bucketing map the hash to a percentage, values that are neither strings nor integers (or missing)
    are bucketed by flagd instead of failing, and the reason is TARGETING_MATCH rather than SPLIT.

    An invalid version string in a ``semver_*`` clause makes flagd serve the default variant instead of
    trying the next rule. Not expressible, and rejected: ``matches``, ``before``, ``after``,
    prerequisites, an ``off_variant`` on a disabled flag and non-object values of object flags.
    """
    document = validate_document(document)
    exporter = _Exporter(document)
    flags = {f.key: exporter.flag(f, pointer("flags", i)) for i, f in enumerate(document.flags)}
    out: dict[str, Any] = {"flags": flags}
    if exporter.segment_rules:
        out["$evaluators"] = dict(sorted(exporter.segment_rules.items()))
    if document.metadata:
        out["metadata"] = dict(document.metadata)
    return out
