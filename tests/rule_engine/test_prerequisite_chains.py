"""Prerequisite chains a data plane may hold past validation: cycles and over-deep chains answer ERROR
naming the flags, found by the explicit chain (never by Python's recursion limit)."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from flagyard.rule_engine import ErrorCode, Flag, FlagSet, Reason, compile_flag, limits

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
