"""Validation of native definitions, with a JSON-pointer path and a message for every problem.

Shape comes from the pydantic models; meaning is checked here. Everything that :mod:`.compiler`
assumes (declared variants, parseable operands, RE2 patterns, weights, acyclic references) is checked,
so a definition that passes compiles and evaluates without surprises.
"""

from __future__ import annotations

import json
import math
from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypeVar

import pydantic

from . import limits
from .exceptions import DefinitionError, Issue, PatternError
from .jsontext import nesting
from .jsontext import pointer as pointer  # re-exported: the planes import it from here
from .model import Clause, Document, Flag, Operator, Segment, Split
from .operators import parse_semver, parse_timestamp
from .regex import pattern_size
from .result import FlagType
from .targeting import targeting_issues

M = TypeVar("M", bound=pydantic.BaseModel)

_ONE_VALUE = {
    Operator.EQ,
    Operator.NEQ,
    Operator.LT,
    Operator.LTE,
    Operator.GT,
    Operator.GTE,
    Operator.SEMVER_EQ,
    Operator.SEMVER_LT,
    Operator.SEMVER_LTE,
    Operator.SEMVER_GT,
    Operator.SEMVER_GTE,
    Operator.BEFORE,
    Operator.AFTER,
}
_STRING_VALUES = {Operator.CONTAINS, Operator.STARTS_WITH, Operator.ENDS_WITH, Operator.MATCHES}
_NUMERIC = {Operator.LT, Operator.LTE, Operator.GT, Operator.GTE}
_SEMVER = {
    Operator.SEMVER_EQ,
    Operator.SEMVER_LT,
    Operator.SEMVER_LTE,
    Operator.SEMVER_GT,
    Operator.SEMVER_GTE,
}
_NO_VALUES = {Operator.EXISTS, Operator.NOT_EXISTS}
_SCALARS = (str, int, float, bool)


def parse_model(model: type[M], data: Any, path: str = "") -> M:
    """Parse ``data`` into ``model``, raising :class:`DefinitionError` with one issue per problem."""
    if isinstance(data, model):
        return data
    try:
        return model.model_validate(data)
    except pydantic.ValidationError as exc:
        raise DefinitionError(_pydantic_issues(exc, path)) from exc
    except RecursionError:
        message = f"nested deeper than {limits.MAX_JSON_DEPTH} arrays and objects (MAX_JSON_DEPTH)"
        raise DefinitionError([Issue(path, message)]) from None


def _pydantic_issues(exc: pydantic.ValidationError, base: str) -> list[Issue]:
    issues = []
    for error in exc.errors(include_url=False):
        loc = [p for p in error["loc"] if p != "[key]"]
        message = error["msg"]
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "field required"
        elif "[key]" in error["loc"]:
            message = f"invalid key: {message}"
        issues.append(Issue(base + pointer(*loc), message))
    return issues


# --- limits ----------------------------------------------------------------------------------------------
# Checked on the raw input before pydantic sees it: counts are lengths, the whole definition's size is one
# C-speed encoding, and each value is measured on its own only when it is a large string or a container
# (scalars, the common case, cost a type check). Nothing here recurses in Python.


def encode(value: Any) -> str | None:
    """Compact JSON of ``value``, or ``None`` when it nests too deeply for any JSON writer."""
    try:
        return _ENCODER.encode(value)
    except (RecursionError, ValueError):
        return None


def _unencodable(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json")
    raise ValueError(f"{type(value).__name__} is not a JSON value")


_ENCODER = json.JSONEncoder(
    separators=(",", ":"), ensure_ascii=False, check_circular=False, default=_unencodable
)
_SCALARS_OR_NULL = frozenset({bool, int, float, type(None)})
_SHORT_STRING = (limits.MAX_VALUE_BYTES - 2) // 6
"""A string this long cannot exceed ``MAX_VALUE_BYTES`` encoded (a character takes at most 6 bytes)."""


def encoded_size(text: str) -> int:
    """Bytes of ``text`` in UTF-8."""
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _measure(items: Any, path: str, what: str, issues: list[Issue]) -> None:
    """Size and depth of each value of ``items`` (``(key, value)`` pairs) at ``path``/key; scalars and
    short strings, nearly every value, are passed over with a type check."""
    scalars, short = _SCALARS_OR_NULL, _SHORT_STRING
    for key, value in items:
        t = type(value)
        if t in scalars or (t is str and len(value) <= short):
            continue
        issues += value_issues(value, path + pointer(key), what)


def _deep_place(value: Any, limit: int) -> str:
    """The pointer (relative) of the first array or object nested deeper than ``limit``."""
    stack: list[tuple[Any, tuple[Any, ...], int]] = [(value, (), 1)]
    while stack:
        node, where, depth = stack.pop()
        if type(node) is dict or type(node) is list:
            if depth > limit:
                return pointer(*where)
            items = node.items() if type(node) is dict else enumerate(node)
            stack += [(item, (*where, key), depth + 1) for key, item in reversed(list(items))]
    return ""


def value_issues(value: Any, path: str, what: str) -> list[Issue]:
    """Size and depth of one value (a variant value, a clause operand, a metadata value)."""
    t = type(value)
    if t in _SCALARS_OR_NULL or (t is str and len(value) <= _SHORT_STRING):
        return []
    text = encode(value)
    depth = limits.MAX_VALUE_DEPTH + 1 if text is None else nesting(text)
    if depth > limits.MAX_VALUE_DEPTH:
        where = path + _deep_place(value, limits.MAX_VALUE_DEPTH)
        return [
            Issue(
                where,
                f"{what} nests deeper than {limits.MAX_VALUE_DEPTH} arrays and objects (MAX_VALUE_DEPTH)",
            )
        ]
    assert text is not None
    size = encoded_size(text)
    if size > limits.MAX_VALUE_BYTES:
        return [
            Issue(
                path,
                f"{what} is {size} bytes encoded; the limit is {limits.MAX_VALUE_BYTES} (MAX_VALUE_BYTES)",
            )
        ]
    return []


def _count(items: Any, limit: int, name: str, path: str, issues: list[Issue]) -> None:
    if isinstance(items, list | dict) and len(items) > limit:
        issues.append(Issue(path, f"{len(items)} {name}; the limit is {limit}"))


def _as_list(raw: Any) -> list[Any]:
    return raw if isinstance(raw, list) else []


def _as_dict(raw: Any) -> dict[Any, Any]:
    return raw if isinstance(raw, dict) else {}


def _clause_bounds(clauses: Any, path: str, issues: list[Issue]) -> None:
    _count(clauses, limits.MAX_CLAUSES, "clauses (MAX_CLAUSES)", path, issues)
    for c, clause in enumerate(_as_list(clauses)):
        values = _as_dict(clause).get("values")
        at = f"{path}/{c}/values"
        _count(values, limits.MAX_CLAUSE_VALUES, "values (MAX_CLAUSE_VALUES)", at, issues)
        _measure(enumerate(_as_list(values)), at, "a clause value", issues)


def _metadata_bounds(metadata: Any, path: str, issues: list[Issue]) -> None:
    _count(metadata, limits.MAX_METADATA_ENTRIES, "metadata entries (MAX_METADATA_ENTRIES)", path, issues)
    _measure(_as_dict(metadata).items(), path, "a metadata value", issues)


def _whole(data: Any, path: str, limit: int, name: str, what: str) -> list[Issue]:
    """The size of a whole definition. One too deep to encode has a value too deep, which the value
    checks point at (pydantic sees nesting only where the shape allows any value)."""
    text = encode(data)
    size = 0 if text is None else encoded_size(text)
    if size > limit:
        return [Issue(path, f"{what} is {size} bytes encoded; the limit is {limit} ({name})")]
    return []


def flag_bound_issues(data: Any, path: str = "") -> list[Issue]:
    """The limits of one raw flag (sizes, depths, counts), checked before its shape."""
    if not isinstance(data, dict):
        return []
    issues = _whole(data, path, limits.MAX_FLAG_BYTES, "MAX_FLAG_BYTES", "the flag")
    if issues:
        return issues
    variants = data.get("variants")
    _count(variants, limits.MAX_VARIANTS, "variants (MAX_VARIANTS)", f"{path}/variants", issues)
    _measure(_as_dict(variants).items(), f"{path}/variants", "a variant value", issues)
    rules = data.get("rules")
    _count(rules, limits.MAX_RULES, "rules (MAX_RULES)", f"{path}/rules", issues)
    for r, rule in enumerate(_as_list(rules)):
        _clause_bounds(_as_dict(rule).get("clauses"), f"{path}/rules/{r}/clauses", issues)
    prerequisites = data.get("prerequisites")
    _count(
        prerequisites,
        limits.MAX_PREREQUISITES,
        "prerequisites (MAX_PREREQUISITES)",
        f"{path}/prerequisites",
        issues,
    )
    _metadata_bounds(data.get("metadata"), f"{path}/metadata", issues)
    return issues


def segment_bound_issues(data: Any, path: str = "") -> list[Issue]:
    """The limits of one raw segment, checked before its shape."""
    if not isinstance(data, dict):
        return []
    issues = _whole(data, path, limits.MAX_SEGMENT_BYTES, "MAX_SEGMENT_BYTES", "the segment")
    if issues:
        return issues
    for side in ("included", "excluded"):
        _count(
            data.get(side),
            limits.MAX_SEGMENT_TARGETS,
            f"{side} keys (MAX_SEGMENT_TARGETS)",
            f"{path}/{side}",
            issues,
        )
    rules = data.get("rules")
    _count(rules, limits.MAX_SEGMENT_RULES, "rules (MAX_SEGMENT_RULES)", f"{path}/rules", issues)
    for r, rule in enumerate(_as_list(rules)):
        _clause_bounds(_as_dict(rule).get("clauses"), f"{path}/rules/{r}/clauses", issues)
    return issues


def document_bound_issues(data: Any, path: str = "") -> list[Issue]:
    """The limits of a raw native document: counts per environment, then each flag and segment."""
    if not isinstance(data, dict):
        return []
    issues: list[Issue] = []
    flags, segments = data.get("flags"), data.get("segments")
    _count(
        flags, limits.MAX_FLAGS_PER_ENVIRONMENT, "flags (MAX_FLAGS_PER_ENVIRONMENT)", f"{path}/flags", issues
    )
    _count(
        segments,
        limits.MAX_SEGMENTS_PER_ENVIRONMENT,
        "segments (MAX_SEGMENTS_PER_ENVIRONMENT)",
        f"{path}/segments",
        issues,
    )
    metadata = data.get("metadata")
    _metadata_bounds(metadata, f"{path}/metadata", issues)
    if issues:
        return issues
    for i, flag in enumerate(_as_list(flags)):
        issues += flag_bound_issues(flag, f"{path}/flags/{i}")
    for i, segment in enumerate(_as_list(segments)):
        issues += segment_bound_issues(segment, f"{path}/segments/{i}")
    return issues


def _refuse(issues: list[Issue]) -> None:
    if issues:
        raise DefinitionError(issues)


def validate_document(data: Any, path: str = "") -> Document:
    """Parse and check a whole native document; raise :class:`DefinitionError` listing every problem."""
    _refuse(document_bound_issues(data, path))
    document = parse_model(Document, data, path)
    issues: list[Issue] = []
    segment_keys = _unique_keys([s.key for s in document.segments], path + "/segments", issues)
    flags = {f.key: f for f in document.flags}
    _unique_keys([f.key for f in document.flags], path + "/flags", issues)
    for i, segment in enumerate(document.segments):
        issues += segment_issues(segment, path + pointer("segments", i), segment_keys)
    for i, flag in enumerate(document.flags):
        issues += flag_issues(flag, path + pointer("flags", i), segment_keys, flags)
    issues += _segment_cycles(document.segments, path)
    issues += _prerequisite_cycles(document.flags, path)
    if issues:
        raise DefinitionError(issues)
    return document


def validate_flag(
    data: Any,
    *,
    segments: Collection[str] | None = None,
    flags: Mapping[str, Flag] | None = None,
    path: str = "",
) -> Flag:
    """Parse and check one flag.

    ``segments`` are the segment keys that exist and ``flags`` the other flags of the environment; when
    given, references to them are checked, including prerequisite cycles through ``flags``.
    """
    _refuse(flag_bound_issues(data, path))
    flag = parse_model(Flag, data, path)
    others = dict(flags or {})
    others[flag.key] = flag
    issues = flag_issues(flag, path, segments, others if flags is not None else None)
    if flags is not None:
        edges = _prerequisite_edges(others.values())
        cycles = _cycles(edges)
        issues += [
            Issue(f"{path}/prerequisites", "prerequisite cycle: " + " -> ".join(cycle))
            for cycle in cycles
            if flag.key in cycle
        ]
        if not cycles:
            issues += _chain_through(
                edges,
                flag.key,
                f"{path}/prerequisites",
                limits.MAX_PREREQUISITE_DEPTH,
                "MAX_PREREQUISITE_DEPTH",
                "prerequisite",
                "flags",
            )
    if issues:
        raise DefinitionError(issues)
    return flag


def validate_segment(
    data: Any,
    *,
    segments: Collection[str] | None = None,
    references: Mapping[str, list[str]] | None = None,
    path: str = "",
) -> Segment:
    """Parse and check one segment; ``segments`` are the keys of the other segments, if known.

    ``references`` maps the other segments to the segment keys their rules match, if known: then a
    chain of segments through this one longer than MAX_SEGMENT_DEPTH is refused (a cycle is left to
    the caller's cycle check, which names it).
    """
    _refuse(segment_bound_issues(data, path))
    segment = parse_model(Segment, data, path)
    known = None if segments is None else {*segments, segment.key}
    issues = segment_issues(segment, path, known)
    if references is not None:
        edges = {**references, segment.key: _segment_references(segment)}
        if not _cycles(edges):
            issues += _chain_through(
                edges,
                segment.key,
                f"{path}/rules",
                limits.MAX_SEGMENT_DEPTH,
                "MAX_SEGMENT_DEPTH",
                "segment",
                "segments",
            )
    if issues:
        raise DefinitionError(issues)
    return segment


def _unique_keys(keys: list[str], path: str, issues: list[Issue]) -> set[str]:
    seen: set[str] = set()
    for i, key in enumerate(keys):
        if key in seen:
            issues.append(Issue(f"{path}/{i}/key", f"duplicate key '{key}'"))
        seen.add(key)
    return seen


def segment_issues(segment: Segment, path: str, segments: Collection[str] | None) -> list[Issue]:
    issues: list[Issue] = []
    patterns: list[tuple[int, str]] = []
    for r, rule in enumerate(segment.rules):
        for c, clause in enumerate(rule.clauses):
            issues += clause_issues(clause, f"{path}/rules/{r}/clauses/{c}", segments, patterns)
    issues += _pattern_budget(patterns, "segment")
    overlap = set(segment.included) & set(segment.excluded)
    if overlap:
        issues.append(Issue(f"{path}/excluded", f"keys both included and excluded: {sorted(overlap)}"))
    return issues


def flag_issues(
    flag: Flag, path: str, segments: Collection[str] | None, flags: Mapping[str, Flag] | None
) -> list[Issue]:
    """Every semantic problem of one flag (shape is already checked by the model)."""
    issues: list[Issue] = []
    for name, value in flag.variants.items():
        problem = _variant_type_problem(flag.type, value)
        if problem:
            issues.append(Issue(f"{path}/variants/{pointer(name)[1:]}", problem))

    def declared(variant: str | None, at: str) -> None:
        if variant is not None and variant not in flag.variants:
            issues.append(Issue(at, f"variant '{variant}' is not declared in variants"))

    declared(flag.off_variant, f"{path}/off_variant")
    declared(flag.default_variant, f"{path}/default_variant")
    if flag.default_variant is not None and flag.default_split is not None:
        issues.append(Issue(f"{path}/default_split", "set default_variant or default_split, not both"))
    if flag.default_split is not None:
        issues += _split_issues(flag.default_split, f"{path}/default_split", flag)
    rule_ids: set[str] = set()
    patterns: list[tuple[int, str]] = []
    for r, rule in enumerate(flag.rules):
        at = f"{path}/rules/{r}"
        if rule.id in rule_ids:
            issues.append(Issue(f"{at}/id", f"duplicate rule id '{rule.id}'"))
        rule_ids.add(rule.id)
        if (rule.variant is None) == (rule.split is None):
            issues.append(Issue(at, "a rule serves exactly one of variant or split"))
        declared(rule.variant, f"{at}/variant")
        if rule.split is not None:
            issues += _split_issues(rule.split, f"{at}/split", flag)
        for c, clause in enumerate(rule.clauses):
            issues += clause_issues(clause, f"{at}/clauses/{c}", segments, patterns)
    issues += _pattern_budget(patterns, "flag")
    if flag.targeting is not None:
        if flag.rules:
            issues.append(Issue(f"{path}/targeting", "set rules or targeting, not both"))
        if flag.default_split is not None:
            issues.append(Issue(f"{path}/targeting", "set default_split or targeting, not both"))
        issues += targeting_issues(flag.targeting, f"{path}/targeting", segments)
    seen_prerequisites: set[str] = set()
    for p, prerequisite in enumerate(flag.prerequisites):
        at = f"{path}/prerequisites/{p}"
        if prerequisite.flag == flag.key:
            issues.append(Issue(f"{at}/flag", "a flag cannot be its own prerequisite"))
        elif prerequisite.flag in seen_prerequisites:
            issues.append(Issue(f"{at}/flag", f"duplicate prerequisite '{prerequisite.flag}'"))
        elif flags is not None:
            other = flags.get(prerequisite.flag)
            if other is None:
                issues.append(Issue(f"{at}/flag", f"prerequisite flag '{prerequisite.flag}' does not exist"))
            elif prerequisite.variant not in other.variants:
                issues.append(
                    Issue(f"{at}/variant", f"flag '{other.key}' has no variant '{prerequisite.variant}'")
                )
        seen_prerequisites.add(prerequisite.flag)
    return issues


def _pattern_budget(patterns: list[tuple[int, str]], what: str) -> list[Issue]:
    """All ``matches`` patterns of one definition together stay within ``MAX_PATTERN_PROGRAM_TOTAL``;
    the pointer is the pattern that crosses it."""
    total = 0
    limit = limits.MAX_PATTERN_PROGRAM_TOTAL
    for size, where in patterns:
        total += size
        if total > limit:
            every = sum(s for s, _ in patterns)
            message = (
                f"the {what}'s matches patterns compile to {every} RE2 instructions in all; the limit is "
                f"{limit} (MAX_PATTERN_PROGRAM_TOTAL), crossed here"
            )
            return [Issue(where, message)]
    return []


def _variant_type_problem(flag_type: FlagType, value: Any) -> str | None:
    t = type(value)
    ok = {
        FlagType.BOOLEAN: t is bool,
        FlagType.STRING: t is str,
        FlagType.INTEGER: t is int,
        FlagType.FLOAT: (t is int or t is float) and math.isfinite(value),
        FlagType.OBJECT: t is dict or t is list,
    }[flag_type]
    return None if ok else f"value {value!r} is not of the flag's type {flag_type}"


def _split_issues(split: Split, path: str, flag: Flag) -> list[Issue]:
    issues: list[Issue] = []
    seen: set[str] = set()
    for i, v in enumerate(split.variations):
        if v.variant not in flag.variants:
            issues.append(Issue(f"{path}/variations/{i}/variant", f"variant '{v.variant}' is not declared"))
        if v.variant in seen:
            issues.append(Issue(f"{path}/variations/{i}/variant", f"variant '{v.variant}' appears twice"))
        seen.add(v.variant)
    total = sum(v.weight for v in split.variations)
    if split.weight_unit == "basis_points" and total != 10000:
        issues.append(Issue(f"{path}/variations", f"weights sum to {total}; basis points must sum to 10000"))
    elif total <= 0:
        issues.append(Issue(f"{path}/variations", "weights sum to 0; at least one must be positive"))
    elif total > limits.MAX_WEIGHT_SUM:
        issues.append(
            Issue(
                f"{path}/variations",
                f"weights sum to {total}; the limit is {limits.MAX_WEIGHT_SUM} (MAX_WEIGHT_SUM)",
            )
        )
    if not all(split.bucket_by.split(".")):
        issues.append(Issue(f"{path}/bucket_by", f"'{split.bucket_by}' is not a dotted attribute path"))
    return issues


def clause_issues(
    clause: Clause,
    path: str,
    segments: Collection[str] | None,
    patterns: list[tuple[int, str]] | None = None,
) -> list[Issue]:
    """Problems of one clause: its attribute path and the number and type of its values. The program
    size and pointer of each valid ``matches`` pattern are added to ``patterns``."""
    op = clause.operator
    values = clause.values
    issues: list[Issue] = []

    def bad(message: str, index: int | None = None) -> None:
        issues.append(Issue(f"{path}/values" + (f"/{index}" if index is not None else ""), message))

    if op is Operator.SEGMENT_MATCH:
        if not values:
            bad("segment_match needs at least one segment key")
        for i, v in enumerate(values):
            if type(v) is not str:
                bad("segment keys are strings", i)
            elif segments is not None and v not in segments:
                bad(f"segment '{v}' does not exist", i)
        return issues
    if clause.attribute is None:
        issues.append(Issue(f"{path}/attribute", f"operator {op} needs an attribute"))
    elif not all(clause.attribute.split(".")):
        issues.append(Issue(f"{path}/attribute", f"'{clause.attribute}' is not a dotted attribute path"))
    if op in _NO_VALUES:
        if values:
            bad(f"operator {op} takes no values")
        return issues
    if op in _ONE_VALUE and len(values) != 1:
        bad(f"operator {op} takes exactly one value, got {len(values)}")
        return issues
    if not values:
        bad(f"operator {op} needs at least one value")
        return issues
    for i, v in enumerate(values):
        if op in _STRING_VALUES and type(v) is not str:
            bad(f"operator {op} compares strings; {v!r} is not one", i)
        elif op is Operator.MATCHES:
            try:
                size = pattern_size(v)
            except PatternError as exc:
                bad(str(exc), i)
            else:
                if patterns is not None:
                    patterns.append((size, f"{path}/values/{i}"))
        elif op in _NUMERIC and (type(v) not in (int, float) or not math.isfinite(v)):
            bad(f"operator {op} compares numbers; {v!r} is not one", i)
        elif op in _SEMVER and (type(v) is not str or parse_semver(v) is None):
            bad(f"{v!r} is not a semantic version", i)
        elif op in (Operator.BEFORE, Operator.AFTER) and (type(v) is bool or parse_timestamp(v) is None):
            bad(f"{v!r} is neither Unix seconds nor an ISO 8601 date or date-time", i)
        elif op in (Operator.EQ, Operator.NEQ, Operator.IN, Operator.NOT_IN) and type(v) not in _SCALARS:
            bad(f"operator {op} compares strings, numbers and booleans; {v!r} is none of them", i)
    return issues


def _cycles(edges: Mapping[str, list[str]]) -> list[list[str]]:
    """Every cycle reachable in a directed graph, each once, as the list of its nodes. Iterative: a
    chain of thousands of flags must not meet Python's recursion limit."""
    state: dict[str, int] = {}
    found: list[list[str]] = []
    for root in edges:
        if root in state:
            continue
        state[root] = 1
        path = [root]
        pending = [iter(edges[root])]
        while pending:
            for nxt in pending[-1]:
                if state.get(nxt) == 1:
                    found.append([*path[path.index(nxt) :], nxt])
                elif nxt not in state and nxt in edges:
                    state[nxt] = 1
                    path.append(nxt)
                    pending.append(iter(edges[nxt]))
                    break
            else:
                pending.pop()
                state[path.pop()] = 2
    return found


def _longest(edges: Mapping[str, list[str]], starts: Iterable[str]) -> dict[str, tuple[int, str | None]]:
    """For every node reachable from ``starts`` in an acyclic graph: the number of nodes of the longest
    path starting there, and the next node of that path. Memoised and iterative, so linear in the graph
    however deep it is; targets missing from ``edges`` are not nodes."""
    longest: dict[str, tuple[int, str | None]] = {}
    for start in starts:
        if start in longest or start not in edges:
            continue
        path = [start]
        on_path = {start}
        pending = [iter(edges[start])]
        while pending:
            for nxt in pending[-1]:
                if nxt in edges and nxt not in longest and nxt not in on_path:
                    path.append(nxt)
                    on_path.add(nxt)
                    pending.append(iter(edges[nxt]))
                    break
            else:
                pending.pop()
                node = path.pop()
                on_path.discard(node)
                best, via = 0, None
                for nxt in edges[node]:
                    n = longest.get(nxt, (0, None))[0]
                    if n > best:
                        best, via = n, nxt
                longest[node] = (best + 1, via)
    return longest


def _path(longest: Mapping[str, tuple[int, str | None]], start: str) -> list[str]:
    path: list[str] = []
    node: str | None = start
    while node is not None:
        path.append(node)
        node = longest[node][1]
    return path


def _named(chain: list[str]) -> str:
    """A chain as its first three and last two keys (a chain can hold thousands)."""
    shown = chain if len(chain) <= 6 else [*chain[:3], "…", *chain[-2:]]
    return " -> ".join(shown)


def _too_deep(
    edges: Mapping[str, list[str]], limit: int, name: str, what: str, unit: str
) -> list[tuple[str, str]]:
    """(head, message) for each chain of an acyclic graph over ``limit`` nodes, reported once at its head
    (a node nothing refers to) rather than again at every node after it, which fails with it."""
    longest = _longest(edges, edges)
    referred = {nxt for targets in edges.values() for nxt in targets}
    return [
        (
            node,
            f"{what} chain of {length} {unit} is longer than the limit of {limit} ({name}): "
            + _named(_path(longest, node)),
        )
        for node, (length, _) in longest.items()
        if length > limit and node not in referred
    ]


def _prerequisite_edges(flags: Iterable[Flag]) -> dict[str, list[str]]:
    return {f.key: [p.flag for p in f.prerequisites] for f in flags}


def _chain_through(
    edges: Mapping[str, list[str]], key: str, at: str, limit: int, name: str, what: str, unit: str
) -> list[Issue]:
    """The longest chain through ``key``: what refers to it (transitively), it, and what it refers to;
    an issue if it has more than ``limit`` nodes. The rest of the graph was checked when it was written,
    so only chains through this definition can have grown."""
    referrers: dict[str, list[str]] = {k: [] for k in edges}
    for k, targets in edges.items():
        for target in targets:
            if target in referrers:
                referrers[target].append(k)
    below = _longest(edges, [key])
    above = _longest(referrers, [key])
    chain = [*reversed(_path(above, key)[1:]), *_path(below, key)]
    if len(chain) <= limit:
        return []
    message = (
        f"{what} chain of {len(chain)} {unit} through '{key}' is longer than the limit of {limit} "
        f"({name}): {_named(chain)}"
    )
    return [Issue(at, message)]


def _prerequisite_cycles(flags: list[Flag], base: str) -> list[Issue]:
    """Prerequisite cycles, or (the graph being acyclic) chains longer than MAX_PREREQUISITE_DEPTH."""
    index = {f.key: i for i, f in enumerate(flags)}
    edges = _prerequisite_edges(flags)
    cycles = _cycles(edges)
    if cycles:
        return [
            Issue(
                f"{base}/flags/{index[cycle[0]]}/prerequisites", "prerequisite cycle: " + " -> ".join(cycle)
            )
            for cycle in cycles
        ]
    return [
        Issue(f"{base}/flags/{index[head]}/prerequisites", message)
        for head, message in _too_deep(
            edges, limits.MAX_PREREQUISITE_DEPTH, "MAX_PREREQUISITE_DEPTH", "prerequisite", "flags"
        )
    ]


def _segment_cycles(segments: list[Segment], base: str) -> list[Issue]:
    """Segment reference cycles, or (the graph being acyclic) chains longer than MAX_SEGMENT_DEPTH."""
    index = {s.key: i for i, s in enumerate(segments)}
    edges = {s.key: _segment_references(s) for s in segments}
    cycles = _cycles(edges)
    if cycles:
        return [
            Issue(f"{base}/segments/{index[cycle[0]]}/rules", "segment cycle: " + " -> ".join(cycle))
            for cycle in cycles
        ]
    return [
        Issue(f"{base}/segments/{index[head]}/rules", message)
        for head, message in _too_deep(
            edges, limits.MAX_SEGMENT_DEPTH, "MAX_SEGMENT_DEPTH", "segment", "segments"
        )
    ]


def _segment_references(segment: Segment) -> list[str]:
    """The segment keys a segment's rules match."""
    return [
        v
        for rule in segment.rules
        for clause in rule.clauses
        if clause.operator is Operator.SEGMENT_MATCH
        for v in clause.values
        if type(v) is str
    ]
