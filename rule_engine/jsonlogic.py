"""A JsonLogic compiler: each expression becomes a Python closure once, then evaluates without re-parsing.

Semantics follow the JsonLogic reference implementation (json-logic-js): JavaScript truthiness, loose
(``==``) and strict (``===``) equality, JavaScript number and string coercions. Numeric results that
JavaScript could not tell from integers come back as ``int``; ``NaN`` and infinities come back as ``None``.
``<``, ``<=``, ``>`` and ``>=`` all take an optional third operand (``a < b < c``). ``log`` returns its
argument and writes nothing.

flagd's custom operators are included: ``fractional``, ``sem_ver``, ``starts_with`` and ``ends_with``
(https://flagd.dev/reference/custom-operations/). When one of them fails (bad arguments, an unparsable
version, no targeting key to bucket by, ...) that operator evaluates to ``None`` and the expression
around it goes on, as in flagd's Go evaluator and the JS ``@openfeature/flagd-core`` (flagd issue #1874
and the ``@operator-errors`` scenarios of flagd-testbed, whose flags have the operator at the top, so
the flag serves its default variant). ``{"$ref": name}`` nodes are resolved against flagd's
``$evaluators`` when those are given to the compiler.
"""

from __future__ import annotations

import math
import re
from bisect import bisect_right
from collections.abc import Callable, Collection, Mapping
from typing import Any

import mmh3
import semver

from .exceptions import DefinitionError, Issue
from .jsontext import pointer
from .limits import MAX_JSONLOGIC_DEPTH, MAX_WEIGHT_SUM
from .operators import parse_semver

Fn = Callable[[Any], Any]
Rule = Callable[[Any], Any]

SEMVER_OPERATORS = frozenset({"=", "!=", "<", "<=", ">", ">=", "^", "~"})

_MISSING: Any = object()


class OperatorError(Exception):
    """Raised by a flagd operator that cannot produce a value; the enclosing rule evaluates to ``None``."""


# --- JavaScript value semantics -------------------------------------------------------------------------


def truthy(value: Any) -> bool:
    """JsonLogic truthiness: ``false``, ``null``, ``0``, ``NaN``, ``""`` and ``[]`` are false."""
    if value is True:
        return True
    if value is False or value is None:
        return False
    t = type(value)
    if t is str or t is list:
        return len(value) > 0
    if t is int:
        return value != 0  # type: ignore[no-any-return]
    if t is float:
        return value == value and value != 0.0  # type: ignore[no-any-return]
    return True


def js_str(value: Any) -> str:
    """JavaScript's ``String(value)`` for JSON values."""
    t = type(value)
    if t is str:
        return value  # type: ignore[no-any-return]
    if value is None:
        return "null"
    if t is bool:
        return "true" if value else "false"
    if t is int:
        return str(value)
    if t is float:
        if value != value:
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value)
    if t is list:
        return ",".join("" if v is None else js_str(v) for v in value)
    if isinstance(value, Mapping):
        return "[object Object]"
    return str(value)


_JS_NUMBER = re.compile(
    r"[+-]?(?:Infinity|(?P<int>\d+)|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)|0[xX][0-9a-fA-F]+|0[oO][0-7]+|0[bB][01]+"
)
_JS_FLOAT_PREFIX = re.compile(r"[+-]?(?:Infinity|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)")
_JS_SPACE = " \t\n\r\v\f\u00a0\ufeff\u2028\u2029"


def _parse_js_number(text: str) -> int | float:
    text = text.strip(_JS_SPACE)
    if not text:
        return 0
    match = _JS_NUMBER.fullmatch(text)
    if match is None:
        return math.nan
    if match.group("int") is not None and len(text) <= 300:
        return int(text)
    if text[:2].lower() in ("0x", "0o", "0b"):
        return int(text, 0)
    return float(text.replace("Infinity", "inf"))


def to_number(value: Any) -> int | float:
    """JavaScript's ``Number(value)``; ``NaN`` when the value is no number."""
    t = type(value)
    if t is int or t is float:
        return value  # type: ignore[no-any-return]
    if value is None:
        return 0
    if t is bool:
        return 1 if value else 0
    if t is str:
        return _parse_js_number(value)
    if t is list:
        return _parse_js_number(js_str(value))
    return math.nan


def _parse_float(value: Any) -> int | float:
    """JavaScript's ``parseFloat(value)``: the longest numeric prefix of the value as a string."""
    t = type(value)
    if t is int or t is float:
        return value  # type: ignore[no-any-return]
    match = _JS_FLOAT_PREFIX.match(js_str(value).lstrip(_JS_SPACE))
    if match is None:
        return math.nan
    text = match.group()
    if "Infinity" in text:
        return float(text.replace("Infinity", "inf"))
    return int(text) if text.lstrip("+-").isdigit() and len(text) <= 300 else float(text)


def _number_out(value: int | float) -> int | float | None:
    if isinstance(value, int):
        return value
    if value != value or math.isinf(value):
        return None
    if value.is_integer() and abs(value) <= 2**53:
        return int(value)
    return value


def _kind(value: Any) -> int:
    t = type(value)
    if value is None:
        return 0
    if t is bool:
        return 1
    if t is int or t is float:
        return 2
    if t is str:
        return 3
    return 4


def strict_equals(a: Any, b: Any) -> bool:
    """JavaScript ``===``: same type and value; arrays and objects only equal themselves."""
    ka = _kind(a)
    if ka != _kind(b):
        return False
    if ka == 4:
        return a is b
    return a == b  # type: ignore[no-any-return]


def _to_primitive(value: Any) -> Any:
    return js_str(value) if _kind(value) == 4 else value


def loose_equals(a: Any, b: Any) -> bool:
    """JavaScript ``==`` (abstract equality) over JSON values."""
    ka, kb = _kind(a), _kind(b)
    if ka == kb:
        return a is b if ka == 4 else a == b
    if ka == 0 or kb == 0:
        return False
    if ka == 1:
        return loose_equals(1 if a else 0, b)
    if kb == 1:
        return loose_equals(a, 1 if b else 0)
    if ka == 2 and kb == 3:
        return a == to_number(b)  # type: ignore[no-any-return]
    if ka == 3 and kb == 2:
        return to_number(a) == b  # type: ignore[no-any-return]
    if ka == 4:
        return loose_equals(_to_primitive(a), b)
    return loose_equals(a, _to_primitive(b))


def _compare(a: Any, b: Any, strict: bool) -> bool:
    """JavaScript ``a < b`` (``strict``) or ``a <= b``; false whenever a side is ``NaN``."""
    pa, pb = _to_primitive(a), _to_primitive(b)
    if type(pa) is str and type(pb) is str:
        return pa < pb if strict else pa <= pb
    na, nb = to_number(pa), to_number(pb)
    return na < nb if strict else na <= nb


def _lt(a: Any, b: Any) -> bool:
    if (type(a) is int or type(a) is float) and (type(b) is int or type(b) is float):
        return a < b
    return _compare(a, b, True)


def _le(a: Any, b: Any) -> bool:
    if (type(a) is int or type(a) is float) and (type(b) is int or type(b) is float):
        return a <= b
    return _compare(a, b, False)


def _to_integer(value: Any) -> int:
    n = to_number(value)
    if n != n:
        return 0
    if math.isinf(n):
        return 2**53 if n > 0 else -(2**53)
    return int(n)


# --- data access ----------------------------------------------------------------------------------------


def _index(part: str) -> int | None:
    if part.isdigit() and (part == "0" or part[0] != "0"):
        return int(part)
    return None


def _lookup(data: Any, parts: tuple[str, ...]) -> Any:
    """The value at ``parts`` inside ``data``, or ``_MISSING``."""
    value = data
    for part in parts:
        t = type(value)
        if t is dict:
            value = value.get(part, _MISSING)
        elif t is list:
            i = _index(part)
            value = value[i] if i is not None and i < len(value) else _MISSING
        elif value is None or t is str or t is bool or t is int or t is float:
            return _MISSING
        elif isinstance(value, Mapping):
            value = value.get(part, _MISSING)
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def _path_parts(key: Any) -> tuple[str, ...] | None:
    """Dotted path parts of a ``var`` key; ``None`` means the whole data."""
    if key is None or key == "":
        return None
    return tuple(js_str(key).split("."))


def _var(data: Any, key: Any, default: Any) -> Any:
    parts = _path_parts(key)
    if parts is None:
        return data
    value = _lookup(data, parts)
    return default if value is _MISSING else value


# --- flagd custom operators -----------------------------------------------------------------------------


def _starts_with(args: list[Any]) -> bool:
    if len(args) != 2 or type(args[0]) is not str or type(args[1]) is not str:
        raise OperatorError("starts_with takes two strings")
    return args[0].startswith(args[1])


def _ends_with(args: list[Any]) -> bool:
    if len(args) != 2 or type(args[0]) is not str or type(args[1]) is not str:
        raise OperatorError("ends_with takes two strings")
    return args[0].endswith(args[1])


def parse_flagd_version(value: Any) -> semver.Version | None:
    """A ``sem_ver`` operand as flagd reads it: a string or number, ``v`` prefix and short forms allowed."""
    t = type(value)
    if t is str:
        return parse_semver(value)
    if t is int or t is float:
        return parse_semver(js_str(value))
    return None


def _semver_test(op: str, target: semver.Version) -> Callable[[semver.Version], bool]:
    """The ``sem_ver`` comparison ``version <op> target``; ``^``/``~`` match the major/minor like flagd."""
    if op == "^":
        return lambda v: v.major == target.major
    if op == "~":
        return lambda v: v.major == target.major and v.minor == target.minor
    check: Callable[[int], bool] = {
        "=": lambda c: c == 0,
        "!=": lambda c: c != 0,
        "<": lambda c: c < 0,
        "<=": lambda c: c <= 0,
        ">": lambda c: c > 0,
        ">=": lambda c: c >= 0,
    }[op]
    return lambda v: check(v.compare(target))


def _sem_ver(args: list[Any]) -> bool:
    if len(args) != 3:
        raise OperatorError("sem_ver takes a version, an operator and a version")
    left, op, right = args
    a = parse_flagd_version(left)
    b = parse_flagd_version(right)
    if a is None or b is None or type(op) is not str or op not in SEMVER_OPERATORS:
        raise OperatorError("sem_ver: invalid version or operator")
    return _semver_test(op, b)(a)


def _weight(raw: Any) -> int:
    t = type(raw)
    if t is int:
        return max(raw, 0)  # type: ignore[no-any-return]
    if t is float and math.isfinite(raw):
        return max(int(raw), 0)
    raise OperatorError("fractional: a weight is a number")


def fractional_bucket(bucket_by: str, total_weight: int) -> int:
    """flagd's bucket in ``[0, total_weight)``: ``(murmur3_32(utf8(bucket_by), seed 0) * total) >> 32``."""
    return (mmh3.hash(bucket_by, 0, False) * total_weight) >> 32


def _bucketing_value(data: Any) -> str:
    """flagd's default bucketing value: ``$flagd.flagKey`` then ``targetingKey`` ("" when absent)."""
    key = _lookup(data, ("targetingKey",))
    flag_key = _lookup(data, ("$flagd", "flagKey"))
    return (flag_key if type(flag_key) is str else "") + (key if type(key) is str else "")


def _prepare_buckets(buckets: list[Any]) -> tuple[list[Any], list[int], int]:
    """The variants, their cumulative upper bounds and the total weight of ``fractional`` buckets."""
    variants: list[Any] = []
    bounds: list[int] = []
    total = 0
    for bucket in buckets:
        if type(bucket) is not list:
            raise OperatorError("fractional: a bucket is [variant] or [variant, weight]")
        if not bucket:
            continue
        variant = bucket[0]
        if _kind(variant) == 4:
            raise OperatorError("fractional: a bucket's variant is a string, boolean, number or null")
        total += _weight(bucket[1]) if len(bucket) > 1 else 1
        if total > MAX_WEIGHT_SUM:
            raise OperatorError("fractional: weights sum past 2^31-1")
        variants.append(variant)
        bounds.append(total)
    if total == 0:
        raise OperatorError("fractional: no bucket has weight")
    return variants, bounds, total


def _fractional(data: Any, args: list[Any], seeded: bool) -> Any:
    """flagd's ``fractional`` with its current (high-precision, integer) bucketing.

    ``seeded``: the first argument is a bucketing expression, which must give a string. Otherwise every
    argument is a bucket and the bucketing value is ``$flagd.flagKey`` followed by ``targetingKey`` (an
    empty string when the context has none, as flagd's evaluator does).
    """
    if seeded:
        bucket_by = args[0]
        if type(bucket_by) is not str:
            raise OperatorError("fractional: the bucketing value is not a string")
        buckets = args[1:]
    else:
        bucket_by = _bucketing_value(data)
        buckets = args
    variants, bounds, total = _prepare_buckets(buckets)
    return variants[bisect_right(bounds, fractional_bucket(bucket_by, total))]


# --- the compiler ---------------------------------------------------------------------------------------

Compiled = tuple[Fn, bool, Any]
"""A compiled node: its function, whether it is a constant, and the constant's value."""


OpCompiler = Callable[[list[Any], list[str], str, int], Compiled]
"""Compiles one operator from its raw arguments, their JSON pointers, its own pointer and the depth."""


def _null_on_error(compile_op: OpCompiler) -> OpCompiler:
    """A flagd operator that fails evaluates to ``null`` (flagd's Go evaluator and the JS core alike);
    the expression around it goes on with that value."""

    def compile_null(args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        fn, const, value = compile_op(args, paths, at, depth)
        if const:
            return fn, const, value

        def guarded(data: Any) -> Any:
            try:
                return fn(data)
            except OperatorError:
                return None

        return guarded, False, None

    return compile_null


def _const(value: Any) -> Compiled:
    return (lambda data: value), True, value


class JsonLogicCompiler:
    """Compiles expressions, collecting every problem as an :class:`Issue` instead of stopping at the first.

    ``evaluators`` are flagd's ``$evaluators`` (found at ``evaluators_path``); when given, a
    ``{"$ref": name}`` node stands for the named expression, compiled once and shared.
    """

    def __init__(
        self,
        evaluators: Mapping[str, Any] | None = None,
        evaluators_path: str = "/$evaluators",
        *,
        segment_ref: Callable[[str], Fn] | None = None,
        segments: Collection[str] | None = None,
        max_nodes: int | None = None,
        max_loop_nesting: int | None = None,
        lenient: bool = False,
    ) -> None:
        self.issues: list[Issue] = []
        self.warnings: list[Issue] = []
        """With ``lenient``: what flagd accepts and evaluates its own way (``sem_ver``, ``starts_with`` or
        ``ends_with`` with the wrong number of arguments or an invalid literal operand are null, a
        negative ``fractional`` weight counts as 0), where a strict compile reports an issue."""
        self._lenient = lenient
        self._broken_refs: set[str] = set()
        self._evaluators = evaluators
        self._evaluators_path = evaluators_path
        self._refs: dict[str, Compiled] = {}
        self._resolving: list[str] = []
        self._segment_ref = segment_ref
        self._segments = segments
        self._max_nodes = max_nodes
        self._max_loops = max_loop_nesting
        self._nodes = 0
        self._loops = 0
        self.referenced_segments: set[str] = set()
        """The segment keys ``{"$ref": key}`` nodes named (with ``segment_ref``)."""
        self._ops: dict[str, OpCompiler] = {
            "var": self._op_var,
            "missing": self._op_missing,
            "missing_some": self._op_missing_some,
            "if": self._op_if,
            "?:": self._op_if,
            "and": self._op_and,
            "or": self._op_or,
            "!": self._op_not,
            "!!": self._op_truthy,
            "==": self._binary(loose_equals),
            "!=": self._binary(lambda a, b: not loose_equals(a, b)),
            "===": self._binary(strict_equals),
            "!==": self._binary(lambda a, b: not strict_equals(a, b)),
            "<": self._chain(_lt),
            "<=": self._chain(_le),
            ">": self._chain(lambda a, b: _lt(b, a)),
            ">=": self._chain(lambda a, b: _le(b, a)),
            "max": self._values(_max),
            "min": self._values(_min),
            "+": self._values(_add),
            "*": self._values(_multiply),
            "-": self._values(_subtract),
            "/": self._values(_divide),
            "%": self._values(_modulo),
            "map": self._op_map,
            "filter": self._op_filter,
            "reduce": self._op_reduce,
            "all": self._op_all,
            "none": self._op_none,
            "some": self._op_some,
            "merge": self._values(_merge),
            "in": self._op_in,
            "cat": self._values(lambda vs: "".join(map(js_str, vs))),
            "substr": self._values(_substr),
            "log": self._values(lambda vs: vs[0] if vs else None),
            "starts_with": _null_on_error(self._custom(_starts_with, 2)),
            "ends_with": _null_on_error(self._custom(_ends_with, 2)),
            "sem_ver": _null_on_error(self._op_sem_ver),
            "fractional": _null_on_error(self._op_fractional),
        }

    @property
    def evaluators(self) -> Mapping[str, Any] | None:
        """flagd's ``$evaluators`` the compiler resolves ``$ref`` against (``None``: none given)."""
        return self._evaluators

    def compile(self, expr: Any, path: str = "") -> Rule:
        """Compile ``expr`` (found at JSON pointer ``path``); problems are added to :attr:`issues`."""
        fn = self._node(expr, path, 0)[0]

        def rule(data: Any) -> Any:
            try:
                return fn(data)
            except OperatorError:
                return None

        return rule

    def compile_evaluator(self, name: str) -> None:
        """Check the ``$evaluators`` entry ``name`` even if no rule refers to it."""
        self._ref(name, self._evaluators_path + pointer(name), 0)

    def _issue(self, path: str, message: str) -> Compiled:
        self.issues.append(Issue(path, message))
        return _const(None)

    def _tolerated(self, path: str, message: str) -> Compiled:
        """An issue, or with ``lenient`` a warning (the node then evaluates as flagd does: to null)."""
        if self._lenient:
            self.warnings.append(Issue(path, message))
            return _const(None)
        return self._issue(path, message)

    def _node(self, expr: Any, path: str, depth: int) -> Compiled:
        if depth > MAX_JSONLOGIC_DEPTH:
            return self._issue(path, f"expression nested deeper than {MAX_JSONLOGIC_DEPTH} levels")
        self._nodes += 1
        if self._max_nodes is not None and self._nodes > self._max_nodes:
            if self._nodes == self._max_nodes + 1:
                self._issue(
                    path,
                    f"expression has more than {self._max_nodes} nodes (MAX_JSONLOGIC_NODES); "
                    "this one is past the limit",
                )
            return _const(None)
        t = type(expr)
        if expr is None or t is str or t is bool or t is int:
            return _const(expr)
        if t is float:
            if not math.isfinite(expr):
                return self._issue(path, "numbers must be finite")
            return _const(expr)
        if t is list:
            return self._list(expr, path, depth)
        if isinstance(expr, Mapping):
            if not expr:
                return _const({})
            if len(expr) != 1:
                return self._issue(path, f"a rule is an object with one operator, got keys {sorted(expr)}")
            ((op, raw),) = expr.items()
            if op == "$ref" and self._segment_ref is not None:
                return self._segment(raw, path + "/$ref")
            if op == "$ref" and self._evaluators is not None:
                if type(raw) is not str:
                    return self._issue(path + "/$ref", "$ref names an evaluator (a string)")
                return self._ref(raw, path + "/$ref", depth)
            compile_op = self._ops.get(op)
            if compile_op is None:
                return self._issue(path, f"unknown operator '{op}'")
            at = path + pointer(op)
            if type(raw) is list:
                return compile_op(raw, [f"{at}/{i}" for i in range(len(raw))], at, depth + 1)
            return compile_op([raw], [at], at, depth + 1)
        return self._issue(path, f"{type(expr).__name__} is not a JSON value")

    def _segment(self, name: Any, at: str) -> Compiled:
        """``{"$ref": key}`` in native targeting: whether the context is in segment ``key``."""
        assert self._segment_ref is not None
        if type(name) is not str:
            return self._issue(at, "$ref names a segment (a string)")
        if self._segments is not None and name not in self._segments:
            return self._issue(at, f"segment '{name}' does not exist")
        if self._loops:
            return self._issue(at, "a segment is matched against the whole context, not inside a loop's rule")
        self.referenced_segments.add(name)
        return self._segment_ref(name), False, None

    def _loop_body(self, arg: Any, path: str, depth: int) -> Compiled:
        """The rule of ``map``/``filter``/``reduce``/``all``/``some``/``none``, run once per item."""
        self._loops += 1
        try:
            if self._max_loops is not None and self._loops > self._max_loops:
                return self._issue(
                    path,
                    f"loops nest deeper than {self._max_loops} (MAX_JSONLOGIC_LOOP_NESTING): "
                    "a loop's rule may not hold another loop",
                )
            return self._node(arg, path, depth)
        finally:
            self._loops -= 1

    def _ref(self, name: str, at: str, depth: int) -> Compiled:
        assert self._evaluators is not None
        done = self._refs.get(name)
        if done is not None:
            if self._lenient and name in self._broken_refs:  # so that each flag using it is broken too
                self._issue(at, f"evaluator '{name}' is invalid")
            return done
        if name not in self._evaluators:
            return self._issue(at, f"no evaluator '{name}' in $evaluators")
        if name in self._resolving:
            cycle = " -> ".join([*self._resolving[self._resolving.index(name) :], name])
            return self._issue(at, f"$ref cycle: {cycle}")
        self._resolving.append(name)
        before = len(self.issues)
        try:
            body_path = self._evaluators_path + pointer(name)
            compiled = self._node(self._evaluators[name], body_path, depth + 1)
        finally:
            self._resolving.pop()
        if len(self.issues) > before:
            self._broken_refs.add(name)
        self._refs[name] = compiled
        return compiled

    def _list(self, items: list[Any], path: str, depth: int) -> Compiled:
        nodes = [self._node(item, f"{path}/{i}", depth + 1) for i, item in enumerate(items)]
        if all(const for _, const, _ in nodes):
            return _const([value for _, _, value in nodes])
        fns = tuple(fn for fn, _, _ in nodes)
        return (lambda data: [fn(data) for fn in fns]), False, None

    def _args(self, args: list[Any], paths: list[str], depth: int) -> list[Compiled]:
        return [self._node(arg, p, depth) for arg, p in zip(args, paths, strict=True)]

    def _values(self, op: Callable[[list[Any]], Any]) -> OpCompiler:
        """An eager operator: every argument is evaluated, then ``op`` gets their values."""

        def compile_op(args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
            fns = tuple(fn for fn, _, _ in self._args(args, paths, depth))
            if len(fns) == 1:
                (only,) = fns
                return (lambda data: op([only(data)])), False, None
            if len(fns) == 2:
                first, second = fns
                return (lambda data: op([first(data), second(data)])), False, None
            return (lambda data: op([fn(data) for fn in fns])), False, None

        return compile_op

    def _binary(self, test: Callable[[Any, Any], bool]) -> OpCompiler:
        def compile_op(args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
            nodes = self._args(args, paths, depth)
            while len(nodes) < 2:
                nodes.append(_const(None))
            left, right = nodes[0][0], nodes[1][0]
            return (lambda data: test(left(data), right(data))), False, None

        return compile_op

    def _chain(self, test: Callable[[Any, Any], bool]) -> OpCompiler:
        """``<``-style comparisons: two operands, or three for ``a op b op c`` (between)."""

        def compile_op(args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
            nodes = self._args(args, paths, depth)
            if len(nodes) < 2:
                return (lambda data: False), False, None
            first, second = nodes[0][0], nodes[1][0]
            if len(nodes) == 2:
                return (lambda data: test(first(data), second(data))), False, None
            third = nodes[2][0]

            def between(data: Any) -> bool:
                middle = second(data)
                return test(first(data), middle) and test(middle, third(data))

            return between, False, None

        return compile_op

    def _custom(self, op: Callable[[list[Any]], Any], arity: int) -> OpCompiler:
        values = self._values(op)

        def compile_op(args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
            if len(args) != arity:
                return self._tolerated(at, f"takes {arity} arguments, got {len(args)}")
            return values(args, paths, at, depth)

        return compile_op

    def _op_var(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        if len(args) > 2:
            return self._issue(at, "var takes a path and an optional default")
        nodes = self._args(args, paths, depth)
        default_fn, default_const, default_value = nodes[1] if len(nodes) > 1 else _const(None)
        if not nodes:
            return (lambda data: data), False, None
        key_fn, key_const, key = nodes[0]
        if not key_const:
            if default_const:
                return (lambda data: _var(data, key_fn(data), default_value)), False, None
            return (lambda data: _var(data, key_fn(data), default_fn(data))), False, None
        if _kind(key) == 4:
            return self._issue(paths[0], "a var path is a string or a number")
        parts = _path_parts(key)
        if parts is None:
            return (lambda data: data), False, None
        if len(parts) == 1 and default_const:
            (name,) = parts

            def flat(data: Any) -> Any:
                if type(data) is dict:
                    return data.get(name, default_value)
                value = _lookup(data, parts)
                return default_value if value is _MISSING else value

            return flat, False, None

        def nested(data: Any) -> Any:
            value = _lookup(data, parts)
            if value is _MISSING:
                return default_fn(data)
            return value

        return nested, False, None

    def _op_missing(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        fns = tuple(fn for fn, _, _ in self._args(args, paths, depth))

        def missing(data: Any) -> list[Any]:
            values = [fn(data) for fn in fns]
            keys = values[0] if values and type(values[0]) is list else values
            return _missing_keys(data, keys)

        return missing, False, None

    def _op_missing_some(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        if len(args) != 2:
            return self._issue(at, "missing_some takes a count and a list of keys")
        need_fn, keys_fn = (fn for fn, _, _ in self._args(args, paths, depth))

        def missing_some(data: Any) -> list[Any]:
            keys = keys_fn(data)
            if type(keys) is not list:
                keys = [keys]
            absent = _missing_keys(data, keys)
            return [] if len(keys) - len(absent) >= to_number(need_fn(data)) else absent

        return missing_some, False, None

    def _op_if(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        nodes = self._args(args, paths, depth)
        if not nodes:
            return _const(None)
        if len(nodes) == 1:
            return nodes[0]
        fns = [fn for fn, _, _ in nodes]
        if len(fns) == 2:
            fns.append(lambda data: None)
        if len(fns) == 3:
            cond, then, otherwise = fns
            return (lambda data: then(data) if truthy(cond(data)) else otherwise(data)), False, None
        pairs = tuple((fns[i], fns[i + 1]) for i in range(0, len(fns) - 1, 2))
        last = fns[-1] if len(fns) % 2 else (lambda data: None)

        def chain(data: Any) -> Any:
            for cond, then in pairs:
                if truthy(cond(data)):
                    return then(data)
            return last(data)

        return chain, False, None

    def _op_and(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        fns = tuple(fn for fn, _, _ in self._args(args, paths, depth))

        def all_of(data: Any) -> Any:
            value = None
            for fn in fns:
                value = fn(data)
                if not truthy(value):
                    return value
            return value

        return all_of, False, None

    def _op_or(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        fns = tuple(fn for fn, _, _ in self._args(args, paths, depth))

        def any_of(data: Any) -> Any:
            value = None
            for fn in fns:
                value = fn(data)
                if truthy(value):
                    return value
            return value

        return any_of, False, None

    def _op_not(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        nodes = self._args(args, paths, depth)
        if not nodes:
            return _const(True)
        fn = nodes[0][0]
        return (lambda data: not truthy(fn(data))), False, None

    def _op_truthy(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        nodes = self._args(args, paths, depth)
        if not nodes:
            return _const(False)
        fn = nodes[0][0]
        return (lambda data: truthy(fn(data))), False, None

    def _scoped(
        self, args: list[Any], paths: list[str], at: str, depth: int, name: str
    ) -> tuple[Fn, Fn] | None:
        if len(args) != 2:
            self._issue(at, f"{name} takes an array and a rule")
            return None
        items = self._node(args[0], paths[0], depth)[0]
        logic = self._loop_body(args[1], paths[1], depth)[0]
        return items, logic

    def _op_map(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        scoped = self._scoped(args, paths, at, depth, "map")
        if scoped is None:
            return _const([])
        items, logic = scoped

        def map_(data: Any) -> list[Any]:
            values = items(data)
            return [logic(v) for v in values] if type(values) is list else []

        return map_, False, None

    def _op_filter(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        scoped = self._scoped(args, paths, at, depth, "filter")
        if scoped is None:
            return _const([])
        items, logic = scoped

        def filter_(data: Any) -> list[Any]:
            values = items(data)
            return [v for v in values if truthy(logic(v))] if type(values) is list else []

        return filter_, False, None

    def _op_all(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        scoped = self._scoped(args, paths, at, depth, "all")
        if scoped is None:
            return _const(False)
        items, logic = scoped

        def all_(data: Any) -> bool:
            values = items(data)
            if type(values) is not list or not values:
                return False
            return all(truthy(logic(v)) for v in values)

        return all_, False, None

    def _op_none(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        scoped = self._scoped(args, paths, at, depth, "none")
        if scoped is None:
            return _const(True)
        items, logic = scoped

        def none_(data: Any) -> bool:
            values = items(data)
            return type(values) is not list or not any(truthy(logic(v)) for v in values)

        return none_, False, None

    def _op_some(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        scoped = self._scoped(args, paths, at, depth, "some")
        if scoped is None:
            return _const(False)
        items, logic = scoped

        def some_(data: Any) -> bool:
            values = items(data)
            return type(values) is list and any(truthy(logic(v)) for v in values)

        return some_, False, None

    def _op_reduce(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        if len(args) not in (2, 3):
            return self._issue(at, "reduce takes an array, a rule and an optional initial value")
        items = self._node(args[0], paths[0], depth)[0]
        logic = self._loop_body(args[1], paths[1], depth)[0]
        initial = self._node(args[2], paths[2], depth)[0] if len(args) == 3 else (lambda data: None)

        def reduce_(data: Any) -> Any:
            accumulator = initial(data)
            values = items(data)
            if type(values) is not list:
                return accumulator
            for current in values:
                accumulator = logic({"current": current, "accumulator": accumulator})
            return accumulator

        return reduce_, False, None

    def _op_in(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        nodes = self._args(args, paths, depth)
        while len(nodes) < 2:
            nodes.append(_const(None))
        needle, (haystack, const, values) = nodes[0][0], nodes[1]
        if const and type(values) is list and values and all(type(v) is str for v in values):
            strings = frozenset(values)

            def in_strings(data: Any) -> bool:
                value = needle(data)
                return type(value) is str and value in strings

            return in_strings, False, None
        return (lambda data: _in(needle(data), haystack(data))), False, None

    def _op_sem_ver(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        if len(args) != 3:
            return self._tolerated(
                at, f"sem_ver takes a version, an operator and a version, got {len(args)} values"
            )
        op = args[1]
        if (type(op) is str and op not in SEMVER_OPERATORS) or _kind(op) in (0, 1, 2):
            self._tolerated(paths[1], f"unknown sem_ver operator {op!r}; one of {sorted(SEMVER_OPERATORS)}")
        for i in (0, 2):
            literal = args[i]
            if _kind(literal) != 4 and parse_flagd_version(literal) is None:
                self._tolerated(paths[i], f"{literal!r} is not a semantic version")
        nodes = self._args(args, paths, depth)
        (left, _, _), (_, op_const, op_value), (_, right_const, right_value) = nodes
        target = parse_flagd_version(right_value) if right_const else None
        if not (op_const and type(op_value) is str and op_value in SEMVER_OPERATORS and target is not None):
            fns = tuple(fn for fn, _, _ in nodes)
            return (lambda data: _sem_ver([fn(data) for fn in fns])), False, None
        test = _semver_test(op_value, target)

        def sem_ver(data: Any) -> bool:
            version = parse_flagd_version(left(data))
            if version is None:
                raise OperatorError("sem_ver: invalid version")
            return test(version)

        return sem_ver, False, None

    def _op_fractional(self, args: list[Any], paths: list[str], at: str, depth: int) -> Compiled:
        if not args:
            return self._issue(at, "fractional needs at least one bucket")
        first = args[0]
        buckets = args if type(first) is list else args[1:]
        offset = 0 if type(first) is list else 1
        if type(first) is not list and _kind(first) in (0, 1, 2):
            self._issue(paths[0], "the bucketing value is a string or an expression")
        if not buckets:
            self._issue(at, "fractional needs at least one bucket")
        total = 0
        for i, bucket in enumerate(buckets):
            where = paths[i + offset]
            if isinstance(bucket, Mapping):
                continue
            if type(bucket) is not list or not 1 <= len(bucket) <= 2:
                self._issue(where, "a bucket is [variant] or [variant, weight]")
            elif len(bucket) == 2 and _kind(bucket[1]) != 4:
                weight = bucket[1]
                valid = type(weight) is int or (type(weight) is float and weight.is_integer())
                if not valid:
                    self._issue(f"{where}/1", f"a weight is a non-negative integer, got {weight!r}")
                elif weight < 0:
                    self._tolerated(
                        f"{where}/1", f"a weight is a non-negative integer, got {weight!r} (counts as 0)"
                    )
                else:
                    total += int(weight)
            else:
                total += 1
        if total > MAX_WEIGHT_SUM:
            self._issue(at, f"weights sum to {total}; the limit is {MAX_WEIGHT_SUM} (MAX_WEIGHT_SUM)")
        seeded = type(first) is not list
        nodes = self._args(args, paths, depth)
        bucket_nodes = nodes[1:] if seeded else nodes
        if bucket_nodes and all(const for _, const, _ in bucket_nodes):
            return self._fixed_fractional(nodes[0][0] if seeded else None, [v for _, _, v in bucket_nodes])
        fns = tuple(fn for fn, _, _ in nodes)
        return (lambda data: _fractional(data, [fn(data) for fn in fns], seeded)), False, None

    @staticmethod
    def _fixed_fractional(seed: Fn | None, buckets: list[Any]) -> Compiled:
        """``fractional`` whose buckets are constants: weights are summed once, here."""
        try:
            variants, bounds, total = _prepare_buckets(buckets)
        except OperatorError as exc:
            error = exc

            def failing(data: Any) -> Any:
                raise error

            return failing, False, None
        hash32 = mmh3.hash

        def choose(data: Any) -> Any:
            if seed is None:
                bucket_by = _bucketing_value(data)
            else:
                bucket_by = seed(data)
                if type(bucket_by) is not str:
                    raise OperatorError("fractional: the bucketing value is not a string")
            return variants[bisect_right(bounds, (hash32(bucket_by, 0, False) * total) >> 32)]

        return choose, False, None


def _missing_keys(data: Any, keys: list[Any]) -> list[Any]:
    absent = []
    for key in keys:
        value = _var(data, key, None)
        if value is None or value == "":
            absent.append(key)
    return absent


def _in(needle: Any, haystack: Any) -> bool:
    if type(haystack) is str:
        return bool(haystack) and js_str(needle) in haystack
    if type(haystack) is list:
        return any(strict_equals(needle, v) for v in haystack)
    return False


def _max(values: list[Any]) -> Any:
    numbers = [to_number(v) for v in values]
    if not numbers or any(n != n for n in numbers):
        return None
    return _number_out(max(numbers))


def _min(values: list[Any]) -> Any:
    numbers = [to_number(v) for v in values]
    if not numbers or any(n != n for n in numbers):
        return None
    return _number_out(min(numbers))


def _add(values: list[Any]) -> Any:
    total: int | float = 0
    for v in values:
        total += _parse_float(v)
    return _number_out(total)


def _multiply(values: list[Any]) -> Any:
    if not values:
        return None
    product: int | float = 1
    for v in values:
        product *= _parse_float(v)
    return _number_out(product)


def _subtract(values: list[Any]) -> Any:
    if not values:
        return None
    if len(values) == 1:
        return _number_out(-to_number(values[0]))
    return _number_out(to_number(values[0]) - to_number(values[1]))


def _divide(values: list[Any]) -> Any:
    if len(values) < 2:
        return None
    a, b = to_number(values[0]), to_number(values[1])
    if b == 0 or a != a or b != b:
        return None
    return _number_out(a / b)


def _modulo(values: list[Any]) -> Any:
    if len(values) < 2:
        return None
    a, b = to_number(values[0]), to_number(values[1])
    if b == 0 or a != a or b != b or math.isinf(a):
        return None
    if type(a) is int and type(b) is int:
        remainder = abs(a) % abs(b)
        return -remainder if a < 0 else remainder
    return _number_out(math.fmod(a, b))


def _merge(values: list[Any]) -> list[Any]:
    merged: list[Any] = []
    for v in values:
        if type(v) is list:
            merged.extend(v)
        else:
            merged.append(v)
    return merged


def _substr(values: list[Any]) -> str:
    text = js_str(values[0] if values else None)
    start = _to_integer(values[1]) if len(values) > 1 else 0
    if start < 0:
        start = max(len(text) + start, 0)
    rest = text[start:]
    if len(values) < 3:
        return rest
    length = _to_integer(values[2])
    if length < 0:
        return rest[: max(len(rest) + length, 0)]
    return rest[:length]


def compile_jsonlogic(expr: Any, path: str = "", *, evaluators: Mapping[str, Any] | None = None) -> Rule:
    """Compile a JsonLogic expression into a function of the data; raises :class:`DefinitionError`.

    Issues carry JSON pointers below ``path``. With ``evaluators`` (flagd's ``$evaluators``),
    ``{"$ref": name}`` nodes are resolved.
    """
    compiler = JsonLogicCompiler(evaluators)
    rule = compiler.compile(expr, path)
    if compiler.issues:
        raise DefinitionError(compiler.issues)
    return rule


def apply_jsonlogic(expr: Any, data: Any = None) -> Any:
    """Compile and evaluate once: for tests and one-off checks, not for hot paths."""
    return compile_jsonlogic(expr)(data)
