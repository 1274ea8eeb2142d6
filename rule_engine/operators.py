"""Clause operators: each turns validated clause values into a predicate over one present value.

Values are parsed once here (regexes compiled, versions and timestamps parsed); predicates do no
parsing of their own arguments. A predicate is only called with a value that is present and not null.
"""

from __future__ import annotations

import operator as op
from collections.abc import Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, NamedTuple

import semver

from .limits import MAX_SUBJECT_LENGTH
from .model import Operator
from .regex import compile_pattern

Predicate = Callable[[Any], bool]


class Fast(NamedTuple):
    """A predicate with what the compiler needs to inline its test into a clause (``kind``, operands ``a``
    and ``b``; see ``_fast_flat_clause``). Returned instead of tagging the function, whose attribute dict
    would cost every compiled clause a few hundred bytes."""

    predicate: Predicate
    kind: str
    a: Any
    b: Any


def _fast(predicate: Predicate, kind: str, a: Any, b: Any) -> Fast:
    return Fast(predicate, kind, a, b)


def plain(made: Predicate | Fast) -> Predicate:
    """The predicate itself, whether or not it came with its fast path."""
    return made.predicate if isinstance(made, Fast) else made


def _is_number(v: Any) -> bool:
    t = type(v)
    return t is int or t is float


@lru_cache(maxsize=4096)
def parse_semver(text: str) -> semver.Version | None:
    """Parse ``1.2.3``, ``v1.2.3-rc.1``, or a short ``1.2``/``1``; ``None`` if it is no version."""
    if text[:1] in ("v", "V"):
        text = text[1:]
    try:
        return semver.Version.parse(text, optional_minor_and_patch=True)
    except (ValueError, TypeError):
        return None


def parse_timestamp(raw: Any) -> float | None:
    """Seconds since the Unix epoch from a number (seconds) or an ISO 8601 date or date-time.

    A date-time without an offset is taken as UTC; a date alone means its midnight UTC.
    """
    t = type(raw)
    if t is int or t is float:
        return float(raw)
    if t is str:
        return _parse_iso(raw)
    return None


@lru_cache(maxsize=4096)
def _parse_iso(text: str) -> float | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


class _Membership:
    """Type-aware membership: ``True`` is not ``1`` and ``"1"`` is not ``1``, but ``1`` is ``1.0``."""

    __slots__ = ("bools", "nums", "others", "strs")

    def __init__(self, values: list[Any]) -> None:
        self.strs = frozenset(v for v in values if type(v) is str)
        self.bools = frozenset(v for v in values if type(v) is bool)
        self.nums = frozenset(v for v in values if _is_number(v))
        self.others = [v for v in values if type(v) not in (str, bool, int, float)]

    def __contains__(self, v: Any) -> bool:
        t = type(v)
        if t is str:
            return v in self.strs
        if t is bool:
            return v in self.bools
        if t is int or t is float:
            return v in self.nums
        return v in self.others


def _membership(values: list[Any]) -> Predicate | Fast:
    members = _Membership(values)
    if not members.bools and not members.nums and not members.others:
        strs = members.strs
        return _fast(lambda v: type(v) is str and v in strs, "strings", strs, None)
    return members.__contains__


def _string_op(values: list[Any], test: Callable[[str, str], bool]) -> Predicate:
    needles = tuple(values)
    if len(needles) == 1:
        only = needles[0]
        return lambda v: type(v) is str and test(v, only)
    return lambda v: type(v) is str and any(test(v, n) for n in needles)


def _matches(values: list[Any]) -> Predicate | Fast:
    """RE2 searches (linear time); an attribute over ``MAX_SUBJECT_LENGTH`` characters never matches."""
    searches = tuple(compile_pattern(p) for p in values)
    if len(searches) == 1:
        search = searches[0]
        return _fast(
            lambda v: type(v) is str and len(v) <= MAX_SUBJECT_LENGTH and search(v),
            "regex",
            search,
            MAX_SUBJECT_LENGTH,
        )
    return lambda v: type(v) is str and len(v) <= MAX_SUBJECT_LENGTH and any(s(v) for s in searches)


def _numeric(values: list[Any], test: Callable[[Any, Any], bool]) -> Fast:
    bound = values[0]
    return _fast(lambda v: (type(v) is int or type(v) is float) and test(v, bound), "numeric", test, bound)


def _semver(values: list[Any], test: Callable[[int], bool]) -> Predicate:
    bound = parse_semver(values[0])
    assert bound is not None

    def predicate(v: Any) -> bool:
        if type(v) is not str:
            return False
        version = parse_semver(v)
        return version is not None and test(version.compare(bound))

    return predicate


def _time(values: list[Any], before: bool) -> Predicate:
    bound = parse_timestamp(values[0])
    assert bound is not None

    def predicate(v: Any) -> bool:
        ts = parse_timestamp(v)
        if ts is None:
            return False
        return ts < bound if before else ts > bound

    return predicate


def _eq(values: list[Any]) -> Predicate | Fast:
    return _membership(values[:1])


def _neq(values: list[Any]) -> Predicate:
    members = plain(_eq(values))
    return lambda v: not members(v)


def _not_in(values: list[Any]) -> Predicate:
    members = plain(_membership(values))
    return lambda v: not members(v)


PREDICATES: dict[Operator, Callable[[list[Any]], Predicate | Fast]] = {
    Operator.EQ: _eq,
    Operator.NEQ: _neq,
    Operator.IN: _membership,
    Operator.NOT_IN: _not_in,
    Operator.CONTAINS: lambda vs: _string_op(vs, str.__contains__),
    Operator.STARTS_WITH: lambda vs: _string_op(vs, str.startswith),
    Operator.ENDS_WITH: lambda vs: _string_op(vs, str.endswith),
    Operator.MATCHES: _matches,
    Operator.LT: lambda vs: _numeric(vs, op.lt),
    Operator.LTE: lambda vs: _numeric(vs, op.le),
    Operator.GT: lambda vs: _numeric(vs, op.gt),
    Operator.GTE: lambda vs: _numeric(vs, op.ge),
    Operator.SEMVER_EQ: lambda vs: _semver(vs, lambda c: c == 0),
    Operator.SEMVER_LT: lambda vs: _semver(vs, lambda c: c < 0),
    Operator.SEMVER_LTE: lambda vs: _semver(vs, lambda c: c <= 0),
    Operator.SEMVER_GT: lambda vs: _semver(vs, lambda c: c > 0),
    Operator.SEMVER_GTE: lambda vs: _semver(vs, lambda c: c >= 0),
    Operator.BEFORE: lambda vs: _time(vs, before=True),
    Operator.AFTER: lambda vs: _time(vs, before=False),
}
"""Predicate factories for every operator that compares the attribute's value (a :class:`Fast` for the
hot ones)."""
