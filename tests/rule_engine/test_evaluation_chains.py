"""Prerequisite and segment chains a data plane may hold past validation: cycles and over-deep chains
answer ERROR naming the flags or segments, found by the explicit chain (never by Python's recursion
limit)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from flagyard.rule_engine import (
    ErrorCode,
    Flag,
    FlagSet,
    Reason,
    Segment,
    compile_flag,
    compile_segment,
    limits,
)

BOOL = {"on": True, "off": False}


def flag(key: str, *prerequisites: str, type_: str = "boolean", **fields: Any) -> dict[str, Any]:
    variants: dict[str, Any] = BOOL if type_ == "boolean" else {"on": {"x": 1}, "off": {"x": 0}}
    return {
        "key": key,
        "type": type_,
        "variants": variants,
        "default_variant": "on",
        "off_variant": "off",
        "version": 7,
        "prerequisites": [{"flag": p, "variant": "on"} for p in prerequisites],
        **fields,
    }


def flagset(*flags: dict[str, Any]) -> FlagSet:
    """Flags parsed but not validated, so the set may hold what validation refuses (as definitions
    written past the API, or the flags of a change arriving one by one, can)."""
    return FlagSet(compile_flag(Flag.model_validate(f)) for f in flags)


def chain(n: int, *, loop_to: int | None = None) -> FlagSet:
    """f0 -> f1 -> … -> f(n-1), and f(n-1) -> f(loop_to) when given."""
    flags = [flag(f"f{i}", f"f{i + 1}") for i in range(n - 1)]
    flags.append(flag(f"f{n - 1}") if loop_to is None else flag(f"f{n - 1}", f"f{loop_to}"))
    return flagset(*flags)


def test_two_flag_cycle__answers_error_naming_the_cycle() -> None:
    flags = flagset(flag("a", "b"), flag("b", "a"))
    for key, cycle in (("a", "a -> b -> a"), ("b", "b -> a -> b")):
        result = flags.evaluate(key, "default", {})
        assert (result.value, result.variant, result.reason, result.error_code) == (
            "default",
            None,
            Reason.ERROR,
            ErrorCode.GENERAL,
        )
        assert result.error_message == f"flag '{key}': prerequisite cycle: {cycle}"
        assert result.version == 7


def test_self_prerequisite__answers_error() -> None:
    result = flagset(flag("a", "a")).evaluate("a", None, {})
    assert (result.reason, result.error_message) == (Reason.ERROR, "flag 'a': prerequisite cycle: a -> a")


def test_flag_leading_into_a_cycle__names_only_the_cycle() -> None:
    flags = flagset(flag("top", "a"), flag("a", "b"), flag("b", "c"), flag("c", "a"))
    result = flags.evaluate("top", None, {})
    assert result.error_message == "flag 'top': prerequisite cycle: a -> b -> c -> a"


def test_object_flag_in_a_cycle__answers_error() -> None:
    flags = flagset(flag("a", "b", type_="object"), flag("b", "a", type_="object"))
    result = flags.evaluate("a", {"d": 1}, {})
    assert (result.value, result.error_message) == ({"d": 1}, "flag 'a': prerequisite cycle: a -> b -> a")


@pytest.mark.parametrize("n", [2, limits.MAX_PREREQUISITE_DEPTH - 1, limits.MAX_PREREQUISITE_DEPTH])
def test_cycle_through_a_long_chain__is_named_whole(n: int) -> None:
    result = chain(n, loop_to=0).evaluate("f0", None, {})
    names = " -> ".join(f"f{i}" for i in [*range(n), 0])
    assert (result.reason, result.error_message) == (Reason.ERROR, f"flag 'f0': prerequisite cycle: {names}")


def test_cycle_past_the_depth_bound__answers_error_without_recursing_deeper() -> None:
    n = limits.MAX_PREREQUISITE_DEPTH + 10
    limit = sys.getrecursionlimit()
    # Far above what MAX_PREREQUISITE_DEPTH flags need, far below what n nested evaluations would.
    sys.setrecursionlimit(limits.MAX_PREREQUISITE_DEPTH * 4 + 100)
    try:
        result = chain(n, loop_to=0).evaluate("f0", None, {})
    finally:
        sys.setrecursionlimit(limit)
    assert result.reason is Reason.ERROR
    assert result.error_message is not None
    assert "MAX_PREREQUISITE_DEPTH" in result.error_message
    assert result.error_message.endswith(
        f"f{limits.MAX_PREREQUISITE_DEPTH - 1} -> f{limits.MAX_PREREQUISITE_DEPTH}"
    )


def test_chain_of_exactly_the_bound__evaluates() -> None:
    result = chain(limits.MAX_PREREQUISITE_DEPTH).evaluate("f0", None, {})
    assert (result.variant, result.reason) == ("on", Reason.STATIC)


def test_chain_one_past_the_bound__answers_error_naming_the_bound() -> None:
    result = chain(limits.MAX_PREREQUISITE_DEPTH + 1).evaluate("f0", "d", {})
    assert (result.value, result.reason, result.error_code) == ("d", Reason.ERROR, ErrorCode.GENERAL)
    assert result.error_message is not None
    assert result.error_message.startswith(
        f"flag 'f0': prerequisite chain deeper than {limits.MAX_PREREQUISITE_DEPTH} flags"
    )
    # The flags further down still evaluate: their own chains fit.
    assert chain(limits.MAX_PREREQUISITE_DEPTH + 1).evaluate("f1", None, {}).variant == "on"


def test_prerequisite_that_fails__still_serves_off_variant() -> None:
    flags = flagset(flag("a", "b"), flag("b", "c"), flag("c", enabled=False))
    result = flags.evaluate("a", None, {})
    assert (result.variant, result.reason) == ("off", Reason.PREREQUISITE_FAILED)


# --- segments referring to segments ------------------------------------------------------------------


def segment(key: str, *refers_to: str, included: tuple[str, ...] = ()) -> dict[str, Any]:
    rules = [{"clauses": [{"operator": "segment_match", "values": [r]}]} for r in refers_to]
    return {"key": key, "included": list(included), "rules": rules}


def with_segments(*segments: dict[str, Any]) -> FlagSet:
    """Segments parsed but not validated; flag ``f`` serves ``on`` to members of segment ``s0``."""
    f = flag(
        "f",
        rules=[{"id": "r", "clauses": [{"operator": "segment_match", "values": ["s0"]}], "variant": "on"}],
    )
    return FlagSet(
        [compile_flag(Flag.model_validate({**f, "default_variant": "off"}))],
        [compile_segment(Segment.model_validate(s)) for s in segments],
    )


def segment_chain(n: int, *, loop_to: int | None = None) -> FlagSet:
    """s0 -> s1 -> … -> s(n-1), which includes user "u" (or refers back to s(loop_to))."""
    last = segment(f"s{n - 1}", included=("u",)) if loop_to is None else segment(f"s{n - 1}", f"s{loop_to}")
    return with_segments(*[segment(f"s{i}", f"s{i + 1}") for i in range(n - 1)], last)


def test_segment_cycle__answers_error_naming_the_cycle() -> None:
    result = with_segments(segment("s0", "s1"), segment("s1", "s0")).evaluate(
        "f", "d", {"targeting_key": "x"}
    )
    assert (result.value, result.reason, result.error_code) == ("d", Reason.ERROR, ErrorCode.GENERAL)
    assert result.error_message == "flag 'f': segment cycle: s0 -> s1 -> s0"
    assert result.version == 7


def test_segment_referring_to_itself__answers_error() -> None:
    result = with_segments(segment("s0", "s0")).evaluate("f", None, {})
    assert result.error_message == "flag 'f': segment cycle: s0 -> s0"


def test_segment_cycle_after_a_matching_rule__is_not_reached() -> None:
    flags = with_segments(segment("s0", "s1", included=("u",)), segment("s1", "s0"))
    assert flags.evaluate("f", None, {"targeting_key": "u"}).variant == "on"


@pytest.mark.parametrize("n", [limits.MAX_SEGMENT_DEPTH, limits.MAX_SEGMENT_DEPTH + 10])
def test_segment_cycle_through_a_long_chain__answers_error(n: int) -> None:
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limits.MAX_SEGMENT_DEPTH * 6 + 100)
    try:
        result = segment_chain(n, loop_to=0).evaluate("f", None, {})
    finally:
        sys.setrecursionlimit(limit)
    assert result.reason is Reason.ERROR
    if n == limits.MAX_SEGMENT_DEPTH:
        names = " -> ".join(f"s{i}" for i in [*range(n), 0])
        assert result.error_message == f"flag 'f': segment cycle: {names}"
    else:
        assert result.error_message is not None
        assert f"deeper than {limits.MAX_SEGMENT_DEPTH} segments (MAX_SEGMENT_DEPTH)" in result.error_message


def test_segment_chain_of_exactly_the_bound__matches() -> None:
    result = segment_chain(limits.MAX_SEGMENT_DEPTH).evaluate("f", None, {"targeting_key": "u"})
    assert (result.variant, result.reason) == ("on", Reason.TARGETING_MATCH)


def test_segment_chain_one_past_the_bound__answers_error() -> None:
    result = segment_chain(limits.MAX_SEGMENT_DEPTH + 1).evaluate("f", None, {"targeting_key": "u"})
    assert result.reason is Reason.ERROR
    assert result.error_message is not None
    assert result.error_message.startswith(f"flag 'f': segment chain deeper than {limits.MAX_SEGMENT_DEPTH}")


def test_segment_cycle_under_a_prerequisite__answers_error_for_the_flag_asked() -> None:
    flags = with_segments(segment("s0", "s1"), segment("s1", "s0"))
    flags.put_flag(compile_flag(Flag.model_validate(flag("top", "f"))))
    result = flags.evaluate("top", None, {})
    assert result.error_message == "flag 'top': segment cycle: s0 -> s1 -> s0"
