"""Targeting with the shapes rules are written in, compiled straight to closures over the context.

The generic path (:mod:`.targeting` over :mod:`.jsonlogic`) copies the context into flagd's data object
on every evaluation (context, ``targetingKey``, ``$flagd``), calls one closure per JsonLogic node, tests
each condition's JavaScript truthiness and maps the outcome to a variant afterwards. For the shapes native
rules have, that is most of the cost. This module compiles those shapes the way the native compiler
compiles clauses instead: each test reads the context itself with its ``var`` fused in (no data object),
conditions return Python booleans, and outcomes are the prebuilt results (a constant variant, or
``fractional``'s bucket mapped to its result at compile time).

Supported (anything else, anywhere in the expression, leaves the whole flag on the generic path):

* outcomes: ``if``/``?:`` chains, a constant (string, boolean, number, ``null``), ``fractional`` with
  constant buckets, bucketing by targeting key (unseeded), by a ``var`` or by ``cat`` of constants and
  ``var``\\ s;
* conditions: ``and``, ``or``, ``!``, ``!!``, a bare ``var``, an ``if`` (the branch taken); ``in``, ``==``,
  ``!=``, ``===``, ``!==``, ``<``, ``<=``, ``>``, ``>=`` between value expressions (constants, ``var``, and
  ``cat``, ``substr``, ``%``, ``merge`` of them), inlined where a ``var`` meets a constant;
  ``starts_with``/``ends_with`` of a ``var`` and a constant string; ``sem_ver`` of a ``var``, a constant
  operator and a constant version; ``some`` over ``merge([var])`` with its rule over the item
  (``{"var": ""}``); ``$ref`` to a native segment (native targeting) or to a flagd ``$evaluators`` entry
  (compiled once) -- so ``export_flagd``'s guarded form of native rules is covered too;
* ``var``: one name (``targetingKey`` included) or a dotted path, without a default; not ``$flagd``.

Each condition uses the generic path's own semantics functions (``loose_equals``, ``_in``, ``_lt``, ...)
whenever the value is not of the one type its inline test handles, so results are identical by
construction; ``tests/rule_engine/test_fastlogic.py`` checks the two paths agree on random contexts.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import mmh3

from .exceptions import EvaluationChainError
from .jsonlogic import (
    _MISSING,
    SEMVER_OPERATORS,
    OperatorError,
    _in,
    _le,
    _lookup,
    _lt,
    _merge,
    _modulo,
    _prepare_buckets,
    _semver_test,
    _substr,
    js_str,
    loose_equals,
    parse_flagd_version,
    strict_equals,
    truthy,
)
from .result import EvaluationResult

if TYPE_CHECKING:
    from .compiler import Context, Store

Getter = Callable[["Context"], Any]
Cond = Callable[["Context", "Store"], bool]
Decider = Callable[["Context", "Store"], EvaluationResult]
Outcome = EvaluationResult | Decider


class UnsupportedShapeError(Exception):
    """The expression has a shape this module does not compile; the generic path takes the flag."""


class FastCompiler:
    """Compiles one targeting expression; ``result_for`` maps a targeting value (a variant key, a
    boolean, a number or ``None``) to the result the generic evaluator would serve for it."""

    def __init__(
        self,
        flag_key: str,
        result_for: Callable[[Any], EvaluationResult],
        *,
        with_segments: bool,
        evaluators: Mapping[str, Any] | None = None,
        item: bool = False,
    ) -> None:
        self._flag_key = flag_key
        self._result_for = result_for
        self._with_segments = with_segments
        self._evaluators = evaluators
        self._item = item
        """A loop's rule (``some``): the closures get the item, and only ``{"var": ""}`` reads it."""
        self._refs: dict[str, Cond] = {}

    # --- outcomes ---------------------------------------------------------------------------------------

    def outcome(self, expr: Any) -> Outcome:
        t = type(expr)
        if expr is None or t is str or t is bool or t is int or (t is float and expr == expr):
            return self._result_for(expr)
        op, args = _operation(expr)
        if op in ("if", "?:"):
            return self._if(args)
        if op == "fractional":
            return self._fractional(args)
        raise UnsupportedShapeError(op)

    def _if(self, args: list[Any]) -> Outcome:
        if len(args) < 3:
            raise UnsupportedShapeError("if with fewer than three operands")
        pairs = tuple((self.cond(args[i]), self.outcome(args[i + 1])) for i in range(0, len(args) - 1, 2))
        last = self.outcome(args[-1]) if len(args) % 2 else self._result_for(None)
        if len(pairs) == 1:
            ((cond, then),) = pairs
            return _if_else(cond, then, last)
        return _chain(pairs, last)

    def _fractional(self, args: list[Any]) -> Outcome:
        if not args:
            raise UnsupportedShapeError("fractional without buckets")
        seeded = type(args[0]) is not list
        buckets = args[1:] if seeded else args
        if not buckets or not all(_constant_bucket(b) for b in buckets):
            raise UnsupportedShapeError("fractional with computed buckets")
        try:
            variants, bounds, total = _prepare_buckets(buckets)
        except OperatorError as exc:
            raise UnsupportedShapeError(str(exc)) from exc
        results = tuple(self._result_for(v) for v in variants)
        missing = self._result_for(None)  # a failing fractional is null where it stands
        hash32 = mmh3.hash
        if not seeded:
            flag_key = self._flag_key
            key = self.getter({"var": "targetingKey"})

            def unseeded(ctx: Context, store: Store) -> EvaluationResult:
                tk = key(ctx)
                bucket_by = flag_key + tk if type(tk) is str else flag_key
                return results[bisect_right(bounds, (hash32(bucket_by, 0, False) * total) >> 32)]

            return unseeded
        seed = self._seed(args[0])
        prefixed = self._prefixed(args[0])
        if prefixed is not None:
            prefix, get = prefixed
            if _is_targeting_key(args[0]["cat"][1]):

                def choose_by_key(ctx: Context, store: Store) -> EvaluationResult:
                    v = ctx.get("targeting_key")
                    if v is None:
                        v = ctx.get("targetingKey")
                    bucket_by = prefix + (v if type(v) is str else js_str(v))
                    return results[bisect_right(bounds, (hash32(bucket_by, 0, False) * total) >> 32)]

                return choose_by_key

            def choose_prefixed(ctx: Context, store: Store) -> EvaluationResult:
                v = get(ctx)
                bucket_by = prefix + (v if type(v) is str else js_str(v))
                return results[bisect_right(bounds, (hash32(bucket_by, 0, False) * total) >> 32)]

            return choose_prefixed

        def choose(ctx: Context, store: Store) -> EvaluationResult:
            bucket_by = seed(ctx)
            if type(bucket_by) is not str:
                return missing
            return results[bisect_right(bounds, (hash32(bucket_by, 0, False) * total) >> 32)]

        return choose

    def _prefixed(self, expr: Any) -> tuple[str, Getter] | None:
        """``cat`` of a constant string and a ``var`` (the usual seed: salt and flag key, then the
        targeting key), fused into the chooser: always a string, so never a failing operator."""
        op, args = _operation(expr)
        if op == "cat" and len(args) == 2 and type(args[0]) is str and _is_var(args[1]):
            return args[0], self.getter(args[1])
        return None

    def _seed(self, expr: Any) -> Getter:
        """The bucketing value: a ``var`` (any value; a non-string fails the operator) or ``cat`` of
        constants and ``var``\\ s (always a string, JavaScript's ``String`` of each part)."""
        op, args = _operation(expr)
        if op == "var":
            return self.getter(expr)
        if op != "cat" or not args:
            raise UnsupportedShapeError("fractional seed")
        parts: list[str | Getter] = []
        for part in args:
            t = type(part)
            if part is None or t is str or t is bool or t is int or t is float:
                parts.append(js_str(part))
            else:
                parts.append(self.getter(part))
        if len(parts) == 2 and type(parts[0]) is str and not isinstance(parts[1], str):
            prefix, get = parts[0], parts[1]

            def prefixed(ctx: Context) -> str:
                v = get(ctx)
                return prefix + (v if type(v) is str else js_str(v))

            return prefixed
        fixed = tuple(parts)

        def cat(ctx: Context) -> str:
            return "".join(p if type(p) is str else js_str(p(ctx)) for p in fixed)  # type: ignore[operator]

        return cat

    # --- conditions -------------------------------------------------------------------------------------

    def cond(self, expr: Any) -> Cond:
        """A condition's JavaScript truthiness, as a Python boolean."""
        t = type(expr)
        if expr is None or t is str or t is bool or t is int or t is float:
            value = truthy(expr)
            return lambda ctx, store: value
        op, args = _operation(expr)
        if op == "var":
            get = self.getter(expr)
            return lambda ctx, store: truthy(get(ctx))
        if op in ("and", "or"):
            if not args:
                raise UnsupportedShapeError(f"{op} without operands")
            conds = tuple(self.cond(a) for a in args)
            if op == "and" and _is_number_test(args):
                return self._number_test(args[0]["!=="][1], _all(conds))
            if len(conds) == 1:
                return conds[0]
            return _all(conds) if op == "and" else _any(conds)
        if op in ("!", "!!"):
            if len(args) != 1:
                raise UnsupportedShapeError(f"{op} takes one operand here")
            inner = self.cond(args[0])
            if op == "!!":
                return inner
            return lambda ctx, store: not inner(ctx, store)
        if op == "$ref":
            if self._with_segments:
                return self._segment(args)
            return self._evaluator(args)
        if op in ("if", "?:") and len(args) >= 3:
            return self._if_cond(args)
        if op == "some" and len(args) == 2:
            return self._some(args[0], args[1])
        if len(args) == 2:
            left, right = args
            if op == "in":
                return self._in(left, right)
            if op in _COMPARISONS:
                return self._compare(op, left, right)
            if op in ("starts_with", "ends_with"):
                return self._string_test(op, left, right)
        if op == "sem_ver" and len(args) == 3:
            return self._sem_ver(args)
        if op in _VALUE_OPS:
            compute = self.value(expr)
            return lambda ctx, store: truthy(compute(ctx))
        raise UnsupportedShapeError(op)

    def _number_test(self, x: Any, generic: Cond) -> Cond:
        """export_flagd's number test on ``x`` (see :func:`_is_number_test`): for an int or float it is
        ``x == x`` (not NaN), for a string, boolean or null false; any other value takes the four tests."""
        get = self.getter(x)

        def is_number(ctx: Context, store: Store) -> bool:
            v = get(ctx)
            t = type(v)
            if t is float:
                return bool(v == v)
            if t is int and v.bit_length() < _SAFE_INT_BITS:
                return True
            if t is str or t is bool or v is None:
                return False
            return generic(ctx, store)

        return is_number

    def _evaluator(self, args: list[Any]) -> Cond:
        """flagd's ``{"$ref": name}``: the ``$evaluators`` entry in its place, compiled once."""
        evaluators = self._evaluators
        if evaluators is None or self._item or len(args) != 1 or type(args[0]) is not str:
            raise UnsupportedShapeError("$ref")
        name = args[0]
        if name not in evaluators:
            raise UnsupportedShapeError("$ref to no evaluator")
        done = self._refs.get(name)
        if done is None:
            done = self._refs[name] = self.cond(evaluators[name])
        return done

    def _if_cond(self, args: list[Any]) -> Cond:
        """An ``if`` used as a condition: the truthiness of the branch it takes."""
        pairs = tuple((self.cond(args[i]), self.cond(args[i + 1])) for i in range(0, len(args) - 1, 2))
        last = self.cond(args[-1]) if len(args) % 2 else (lambda ctx, store: False)

        def if_cond(ctx: Context, store: Store) -> bool:
            for cond, then in pairs:
                if cond(ctx, store):
                    return then(ctx, store)
            return last(ctx, store)

        return if_cond

    def _some(self, items: Any, body: Any) -> Cond:
        """``some`` over ``merge([var])`` (the value, or each of its items if it is a list: how exported
        native clauses test list attributes), its rule compiled over the item."""
        op, args = _operation(items)
        if self._item or op != "merge" or len(args) != 1 or not _is_var(args[0]):
            raise UnsupportedShapeError("some")
        get = self.getter(args[0])
        inner = FastCompiler(self._flag_key, self._result_for, with_segments=False, item=True)
        test = inner.cond(body)

        def some(ctx: Context, store: Store) -> bool:
            v = get(ctx)
            if type(v) is list:
                for item in v:
                    if test(item, store):
                        return True
                return False
            return test(v, store)

        return some

    def value(self, expr: Any) -> Getter:
        """A value expression the conditions compare: a constant, a ``var``, or ``cat``, ``substr``,
        ``%`` or ``merge`` of value expressions (the generic path's own functions)."""
        if _is_scalar(expr):
            return lambda ctx: expr
        op, args = _operation(expr)
        if op == "var":
            return self.getter(expr)
        if op not in _VALUE_OPS:
            raise UnsupportedShapeError(op)
        parts = tuple(self.value(a) for a in args)
        compute = _VALUE_OPS[op]
        if len(parts) == 1:
            (only,) = parts
            if op == "cat":
                return lambda ctx: js_str(only(ctx))
            return lambda ctx: compute([only(ctx)])
        return lambda ctx: compute([p(ctx) for p in parts])

    def _segment(self, args: list[Any]) -> Cond:
        if not self._with_segments or len(args) != 1 or type(args[0]) is not str:
            raise UnsupportedShapeError("$ref")
        key = args[0]

        def in_segment(ctx: Context, store: Store) -> bool:
            segment = store.segments.get(key)
            return segment is not None and segment.matches(ctx, store)

        return in_segment

    def _in(self, left: Any, right: Any) -> Cond:
        if _is_var(left) and type(right) is list and all(_is_scalar(v) for v in right):
            get = self.getter(left)
            values = list(right)
            if values and all(type(v) is str for v in values):
                strings = frozenset(values)
                name = _flat_name(left)
                if name is not None:

                    def in_strings_flat(ctx: Context, store: Store) -> bool:
                        v = ctx.get(name)
                        return type(v) is str and v in strings

                    return in_strings_flat
                if _is_targeting_key(left):

                    def in_strings_key(ctx: Context, store: Store) -> bool:
                        v = ctx.get("targeting_key")
                        if v is None:
                            v = ctx.get("targetingKey")
                        return type(v) is str and v in strings

                    return in_strings_key

                def in_strings(ctx: Context, store: Store) -> bool:
                    v = get(ctx)
                    return type(v) is str and v in strings

                return in_strings
            return lambda ctx, store: _in(get(ctx), values)
        if _is_var(left) and type(right) is str:
            get, text = self.getter(left), right
            return lambda ctx, store: _in(get(ctx), text)
        if _is_scalar(left) and _is_var(right):
            needle, get = left, self.getter(right)
            return lambda ctx, store: _in(needle, get(ctx))
        a = self.value(left)
        if type(right) is list and all(_is_scalar(v) for v in right):
            fixed = list(right)
            return lambda ctx, store: _in(a(ctx), fixed)
        b = self.value(right)
        return lambda ctx, store: _in(a(ctx), b(ctx))

    def _compare(self, op: str, left: Any, right: Any) -> Cond:
        """``a op b`` with one side a ``var`` and the other a constant; the inline test covers the one
        type it is sure of, every other value goes through the generic function."""
        test = _COMPARISONS[op]
        if _is_var(left) and _is_scalar(right):
            get, c = self.getter(left), right
            inline = _inline(op, c)
            if inline is not None:
                kind, fast = inline
                if kind is str:

                    def str_left(ctx: Context, store: Store) -> bool:
                        v = get(ctx)
                        return fast(v, c) if type(v) is str else test(v, c)

                    return str_left

                name = _flat_name(left)
                if name is not None:

                    def num_left_flat(ctx: Context, store: Store) -> bool:
                        v = ctx.get(name)
                        t = type(v)
                        return fast(v, c) if t is int or t is float else test(v, c)

                    return num_left_flat

                def num_left(ctx: Context, store: Store) -> bool:
                    v = get(ctx)
                    t = type(v)
                    return fast(v, c) if t is int or t is float else test(v, c)

                return num_left
            return lambda ctx, store: test(get(ctx), c)
        if _is_scalar(left) and _is_var(right):
            c, get = left, self.getter(right)
            return lambda ctx, store: test(c, get(ctx))
        if op in ("===", "!==") and _is_string_test(left, right):
            # {"===": [{"cat": [x]}, x]}: String(x) is x exactly when x is a string
            get = self.getter(right)
            same = op == "==="

            def string_test(ctx: Context, store: Store) -> bool:
                v = get(ctx)
                t = type(v)
                if t is str:
                    return same
                if v is None or t is bool or t is float or (t is int and v.bit_length() < _SAFE_INT_BITS):
                    return not same
                return strict_equals(js_str(v), v) == same  # lists, objects, huge ints: as generically

            return string_test
        a, b = self.value(left), self.value(right)
        return lambda ctx, store: test(a(ctx), b(ctx))

    def _string_test(self, op: str, left: Any, right: Any) -> Cond:
        if not (_is_var(left) and type(right) is str):
            raise UnsupportedShapeError(op)
        get, needle = self.getter(left), right
        name = _flat_name(left)
        if name is not None:
            test = str.startswith if op == "starts_with" else str.endswith

            def string_test_flat(ctx: Context, store: Store) -> bool:
                v = ctx.get(name)
                return type(v) is str and test(v, needle)

            return string_test_flat
        if op == "starts_with":

            def starts(ctx: Context, store: Store) -> bool:
                v = get(ctx)
                return type(v) is str and v.startswith(needle)

            return starts

        def ends(ctx: Context, store: Store) -> bool:
            v = get(ctx)
            return type(v) is str and v.endswith(needle)

        return ends

    def _sem_ver(self, args: list[Any]) -> Cond:
        left, op, right = args
        target = parse_flagd_version(right) if _is_scalar(right) else None
        if not (_is_var(left) and type(op) is str and op in SEMVER_OPERATORS and target is not None):
            raise UnsupportedShapeError("sem_ver")
        get, test = self.getter(left), _semver_test(op, target)

        def sem_ver(ctx: Context, store: Store) -> bool:
            version = parse_flagd_version(get(ctx))
            return version is not None and test(version)

        return sem_ver

    # --- data access ------------------------------------------------------------------------------------

    def getter(self, expr: Any) -> Getter:
        """A ``var``'s value read from the context itself, as flagd's data object would give it."""
        op, args = _operation(expr)
        if op != "var" or len(args) != 1 or type(args[0]) is not str:
            raise UnsupportedShapeError("var")
        if self._item:
            if args[0] != "":
                raise UnsupportedShapeError("a var other than the item in a loop's rule")
            return lambda item: item
        if not args[0]:
            raise UnsupportedShapeError("the whole data")
        name: str = args[0]
        parts = tuple(name.split("."))
        if parts[0] == "$flagd":
            raise UnsupportedShapeError("$flagd")
        if parts[0] == "targetingKey":
            if len(parts) > 1:
                raise UnsupportedShapeError("a path below targetingKey")

            def targeting_key(ctx: Context) -> Any:
                key = ctx.get("targeting_key")
                return key if key is not None else ctx.get("targetingKey")

            return targeting_key
        if len(parts) == 1:
            return lambda ctx: ctx.get(name)

        def nested(ctx: Context) -> Any:
            value = _lookup(ctx, parts)
            return None if value is _MISSING else value

        return nested


def _operation(expr: Any) -> tuple[str, list[Any]]:
    """An operator node's name and operands (a single operand given bare counts as a list of one)."""
    if type(expr) is not dict or len(expr) != 1:
        raise UnsupportedShapeError("not an operator node")
    ((op, raw),) = expr.items()
    return op, raw if type(raw) is list else [raw]


def _flat_name(expr: Any) -> str | None:
    """The name of a ``var`` the context answers directly (``ctx.get(name)``), else ``None``."""
    args = expr["var"]
    name = args[0] if type(args) is list and len(args) == 1 else args
    if type(name) is not str or not name or "." in name or name in ("targetingKey", "$flagd"):
        return None
    return name


def _is_number_test(args: list[Any]) -> bool:
    """The operands of export_flagd's number test on one ``var`` ``x``: ``String(x) !== x``, ``x`` is no
    boolean or null, ``x`` is in ``merge([x])``, ``String(x) !== "[object Object]"``."""
    if len(args) != 4 or type(args[0]) is not dict or "!==" not in args[0]:
        return False
    pair = args[0]["!=="]
    if type(pair) is not list or len(pair) != 2 or not _is_string_test(pair[0], pair[1]):
        return False
    x = pair[1]
    return args == [
        {"!==": [{"cat": [x]}, x]},
        {"!": [{"in": [x, [True, False, None]]}]},
        {"in": [x, {"merge": [x]}]},
        {"!==": [{"cat": [x]}, "[object Object]"]},
    ]


def _is_string_test(left: Any, right: Any) -> bool:
    """``[{"cat": [x]}, x]`` with ``x`` one ``var``: the operands of export_flagd's string test."""
    if not _is_var(right) or type(left) is not dict or len(left) != 1 or "cat" not in left:
        return False
    parts = left["cat"]
    parts = parts if type(parts) is list else [parts]
    return len(parts) == 1 and parts[0] == right


def _is_targeting_key(expr: Any) -> bool:
    if not _is_var(expr):
        return False
    args = expr["var"]
    name: Any = args[0] if type(args) is list and len(args) == 1 else args
    return type(name) is str and name == "targetingKey"


def _is_var(expr: Any) -> bool:
    return type(expr) is dict and len(expr) == 1 and "var" in expr


def _is_scalar(value: Any) -> bool:
    t = type(value)
    return value is None or t is str or t is bool or t is int or (t is float and value == value)


def _constant_bucket(bucket: Any) -> bool:
    return type(bucket) is list and all(_is_scalar(v) for v in bucket)


_COMPARISONS: dict[str, Callable[[Any, Any], bool]] = {
    "==": loose_equals,
    "!=": lambda a, b: not loose_equals(a, b),
    "===": strict_equals,
    "!==": lambda a, b: not strict_equals(a, b),
    "<": _lt,
    "<=": _le,
    ">": lambda a, b: _lt(b, a),
    ">=": lambda a, b: _le(b, a),
}

_SAFE_INT_BITS = 14_000
"""Integers below this many bits have fewer than Python's 4,300 decimal digits, so ``js_str`` (which the
generic path calls on them) cannot fail; larger ones take the generic functions."""

_VALUE_OPS: dict[str, Callable[[list[Any]], Any]] = {
    "cat": lambda vs: "".join(map(js_str, vs)),
    "substr": _substr,
    "%": _modulo,
    "merge": _merge,
}

_NUMBER_TESTS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "===": lambda a, b: a == b,
    "!==": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def _inline(op: str, c: Any) -> tuple[type, Callable[[Any, Any], bool]] | None:
    """The Python test equal to ``op`` when the value has the constant's own type (string with a
    string for the equalities, number with a number for all), else ``None``."""
    t = type(c)
    if t is int or t is float:
        return int, _NUMBER_TESTS[op]
    if t is str and op in ("==", "!=", "===", "!=="):
        return str, _NUMBER_TESTS[op]
    return None


def _if_else(cond: Cond, then: Outcome, otherwise: Outcome) -> Decider:
    if type(then) is EvaluationResult and type(otherwise) is EvaluationResult:
        a, b = then, otherwise
        return lambda ctx, store: a if cond(ctx, store) else b
    return lambda ctx, store: _serve(then if cond(ctx, store) else otherwise, ctx, store)


def guarded_chain(
    pairs: tuple[tuple[Cond, Outcome], ...], last: Outcome, on_error: Callable[[Exception], EvaluationResult]
) -> Decider:
    """A top-level ``if`` chain with the evaluator's error handling in the same frame (one call less per
    evaluation): an exception is ``on_error``'s result, a segment chain error goes up."""

    def chain(ctx: Context, store: Store) -> EvaluationResult:
        try:
            for cond, then in pairs:
                if cond(ctx, store):
                    return then if type(then) is EvaluationResult else then(ctx, store)  # type: ignore[operator]
            return last if type(last) is EvaluationResult else last(ctx, store)  # type: ignore[operator]
        except EvaluationChainError:
            raise
        except Exception as exc:
            return on_error(exc)

    return chain


def _chain(pairs: tuple[tuple[Cond, Outcome], ...], last: Outcome) -> Decider:
    def chain(ctx: Context, store: Store) -> EvaluationResult:
        for cond, then in pairs:
            if cond(ctx, store):
                return then if type(then) is EvaluationResult else then(ctx, store)  # type: ignore[operator]
        return last if type(last) is EvaluationResult else last(ctx, store)  # type: ignore[operator]

    return chain


def _serve(outcome: Outcome, ctx: Context, store: Store) -> EvaluationResult:
    return outcome if type(outcome) is EvaluationResult else outcome(ctx, store)  # type: ignore[operator]


def _all(conds: tuple[Cond, ...]) -> Cond:
    if len(conds) == 2:
        a, b = conds
        return lambda ctx, store: a(ctx, store) and b(ctx, store)

    def all_of(ctx: Context, store: Store) -> bool:
        for cond in conds:
            if not cond(ctx, store):
                return False
        return True

    return all_of


def _any(conds: tuple[Cond, ...]) -> Cond:
    if len(conds) == 2:
        a, b = conds
        return lambda ctx, store: a(ctx, store) or b(ctx, store)

    def any_of(ctx: Context, store: Store) -> bool:
        for cond in conds:
            if cond(ctx, store):
                return True
        return False

    return any_of


def compile_fast(
    expr: Any,
    flag_key: str,
    result_for: Callable[[Any], EvaluationResult],
    on_error: Callable[[Exception], EvaluationResult],
    *,
    with_segments: bool,
    evaluators: Mapping[str, Any] | None = None,
) -> Decider | None:
    """``expr`` as a function of ``(context, store)`` giving the evaluation's result (an exception
    raised evaluating it gives ``on_error``'s, as on the generic path; a segment chain error goes up), or
    ``None`` when its shape is not one this module compiles (the generic path then takes it)."""
    if not isinstance(expr, Mapping):
        return None
    compiler = FastCompiler(flag_key, result_for, with_segments=with_segments, evaluators=evaluators)
    try:
        op, args = _operation(expr)
        if op in ("if", "?:") and len(args) >= 3:
            pairs = tuple(
                (compiler.cond(args[i]), compiler.outcome(args[i + 1])) for i in range(0, len(args) - 1, 2)
            )
            last = compiler.outcome(args[-1]) if len(args) % 2 else result_for(None)
            return guarded_chain(pairs, last, on_error)
        outcome = compiler.outcome(expr)
    except UnsupportedShapeError:
        return None
    if type(outcome) is EvaluationResult:
        fixed = outcome
        return lambda ctx, store: fixed
    decide: Decider = outcome  # type: ignore[assignment]

    def guarded(ctx: Context, store: Store) -> EvaluationResult:
        try:
            return decide(ctx, store)
        except EvaluationChainError:
            raise
        except Exception as exc:
            return on_error(exc)

    return guarded
