"""JsonLogic targeting (flagd's dialect), as a native flag's rule form and as a flagd flag's.

A native flag's configuration in an environment carries either structured ``rules`` or one JsonLogic
``targeting`` expression, evaluated as flagd evaluates it:

* the data is the context plus ``targetingKey`` (the context's ``targeting_key``) and
  ``$flagd`` = ``{"flagKey": ..., "timestamp": <Unix seconds, read when used>}``;
* a result that is a variant key serves it with reason TARGETING_MATCH (booleans are the keys
  ``"true"``/``"false"``, numbers their JSON text); ``null`` serves the fallthrough (``default_variant``,
  else the caller's default) with reason DEFAULT; anything else is an ERROR with code GENERAL, and a
  rule that cannot be applied at all an ERROR with code PARSE_ERROR;
* ``{"$ref": "<segment key>"}`` is true when the context is in that native segment (looked up when
  evaluated, like a ``segment_match`` clause: a segment that does not exist matches nobody). It is
  matched against the whole context, so it may not stand inside a loop's rule (``map``, ``some``, ...).
  In a flagd export the same node refers to the segment's ``$evaluators`` entry.

Prerequisites and ``enabled``/``off_variant`` apply around targeting as around rules.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from . import limits
from .exceptions import EvaluationChainError, Issue
from .fastlogic import compile_fast
from .jsonlogic import Fn, JsonLogicCompiler, Rule, js_str
from .result import ErrorCode, EvaluationResult, Reason

if TYPE_CHECKING:
    from .compiler import Context, FlagEvaluator, Store


class _Environment:
    """The key under which the targeting data carries ``(context, store)`` for ``$ref`` to segments:
    not a string, so no ``var`` path reaches it."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<environment>"


ENVIRONMENT: Any = _Environment()


class FlagdProperties(Mapping[str, Any]):
    """The ``$flagd`` object of one flag; ``timestamp`` is the current Unix time whenever it is read."""

    __slots__ = ("_key",)

    def __init__(self, flag_key: str) -> None:
        self._key = flag_key

    def __getitem__(self, name: str) -> Any:
        if name == "flagKey":
            return self._key
        if name == "timestamp":
            return int(time.time())
        raise KeyError(name)

    def __iter__(self) -> Iterator[str]:
        return iter(("flagKey", "timestamp"))

    def __len__(self) -> int:
        return 2


def flagd_data(ctx: Context, properties: FlagdProperties) -> dict[str, Any]:
    """The JsonLogic data of an evaluation: the context, ``targetingKey`` and ``$flagd``."""
    targeting_key = ctx.get("targeting_key")
    if targeting_key is None:
        return {**ctx, "$flagd": properties}
    return {**ctx, "targetingKey": targeting_key, "$flagd": properties}


def variant_key(value: Any) -> str | None:
    """The variant key a targeting result names (flagd: booleans and numbers as their JSON text)."""
    t = type(value)
    if t is str:
        return value  # type: ignore[no-any-return]
    if t is bool:
        return "true" if value else "false"
    if t is int or t is float:
        return js_str(value)
    return None


def _segment_ref(key: str) -> Fn:
    def in_segment(data: Any) -> bool:
        env = data.get(ENVIRONMENT) if type(data) is dict else None
        if env is None:
            return False
        ctx, store = env
        segment = store.segments.get(key)
        return segment is not None and segment.matches(ctx, store)

    return in_segment


def targeting_compiler(segments: Collection[str] | None = None) -> JsonLogicCompiler:
    """A compiler for native targeting: ``$ref`` names segments (checked against ``segments`` when
    given) and the node and loop bounds of :mod:`.limits` apply."""
    return JsonLogicCompiler(
        segment_ref=_segment_ref,
        segments=segments,
        max_nodes=limits.MAX_JSONLOGIC_NODES,
        max_loop_nesting=limits.MAX_JSONLOGIC_LOOP_NESTING,
    )


def targeting_issues(expr: Any, path: str, segments: Collection[str] | None) -> list[Issue]:
    """Problems of a native targeting expression found at JSON pointer ``path``."""
    if not isinstance(expr, Mapping) or len(expr) != 1:
        return [Issue(path, "targeting is a JsonLogic rule: an object with exactly one operator")]
    compiler = targeting_compiler(segments)
    compiler.compile(expr, path)
    return compiler.issues


def compile_targeting(expr: Any) -> Rule:
    """Compile validated native targeting."""
    return targeting_compiler().compile(expr)


def referenced_segments(expr: Any) -> set[str]:
    """The segment keys a native targeting expression refers to with ``$ref`` (a walk, no compile)."""
    found: set[str] = set()
    stack = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, Mapping):
            ref = node.get("$ref") if len(node) == 1 else None
            if type(ref) is str:
                found.add(ref)
            else:
                stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return found


def targeting_evaluator(
    key: str,
    rule: Rule,
    matches: Mapping[str, EvaluationResult],
    fallback: EvaluationResult,
    metadata: Mapping[str, Any],
    version: int,
    *,
    with_segments: bool,
    expr: Any = None,
    evaluators: Mapping[str, Any] | None = None,
) -> FlagEvaluator:
    """Evaluate ``rule`` the flagd way: a variant key serves ``matches[key]``, ``null`` serves
    ``fallback``. ``with_segments``: the data carries the context and store for ``$ref`` to segments.

    ``expr``, the expression ``rule`` was compiled from (``$ref`` resolved or native), lets the shapes
    of :mod:`.fastlogic` evaluate as cheaply as native rules: same results, no data object per call.
    Left out (``None``), the generic path is used, as it always is for other shapes. ``evaluators``:
    flagd's ``$evaluators``, which ``{"$ref": name}`` in ``expr`` names."""
    properties = FlagdProperties(key)
    meta = dict(metadata)

    def failure(code: ErrorCode, message: str) -> EvaluationResult:
        return EvaluationResult(None, None, Reason.ERROR, code, message, None, meta, version)

    def result_for(outcome: Any) -> EvaluationResult:
        """What ``evaluate`` below serves for a targeting value, decided once for a constant one."""
        if outcome is None:
            return fallback
        name = outcome if type(outcome) is str else variant_key(outcome)
        found = matches.get(name) if name is not None else None
        if found is not None:
            return found
        return failure(
            ErrorCode.GENERAL, f"flag '{key}': targeting returned {outcome!r}, which is not a variant"
        )

    def on_error(exc: Exception) -> EvaluationResult:
        """A rule that cannot be applied is flagd's PARSE_ERROR."""
        return failure(ErrorCode.PARSE_ERROR, f"flag '{key}': targeting failed: {type(exc).__name__}: {exc}")

    if expr is not None:
        fast = compile_fast(
            expr, key, result_for, on_error, with_segments=with_segments, evaluators=evaluators
        )
        if fast is not None:
            return fast

    def evaluate(ctx: Context, store: Store) -> EvaluationResult:
        data = flagd_data(ctx, properties)
        if with_segments:
            data[ENVIRONMENT] = (ctx, store)
        try:
            outcome = rule(data)
        except EvaluationChainError:
            raise
        except Exception as exc:
            return on_error(exc)
        return result_for(outcome)

    return evaluate
