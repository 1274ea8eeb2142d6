"""Lenient flagd loading (offline SDK, ``flagyard eval``): one broken flag does not refuse the file."""

from __future__ import annotations

from typing import Any

import pytest

from flagyard.rule_engine import DefinitionError, ErrorCode, Issue, Reason, load_flagset
from flagyard.rule_engine.flagd import load_flagd

OK = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}
COLORS = {"red": "red", "blue": "blue", "fallback": "fallback"}


def _flag(targeting: Any, **extra: Any) -> dict[str, Any]:
    return {
        "state": "ENABLED",
        "variants": COLORS,
        "defaultVariant": "fallback",
        "targeting": targeting,
        **extra,
    }


DOCUMENT: dict[str, Any] = {
    "flags": {
        "ok": OK,
        "unknown-op": _flag({"if": [{"bogus": [1]}, "red", "blue"]}),
        "bad-ref": _flag({"if": [{"$ref": "missing"}, "red", "blue"]}),
        "uses-broken-evaluator": _flag({"if": [{"$ref": "broken"}, "red", "blue"]}),
        "no-variants": {"state": "ENABLED", "defaultVariant": "x"},
        "disabled-broken": _flag({"nope": []}, state="DISABLED"),
        "negative-weight": _flag({"fractional": [{"var": "k"}, ["red", -5], ["blue", 10]]}),
        "semver-args": _flag({"if": [{"sem_ver": [{"var": "v"}, "="]}, "red", "blue"]}),
        "starts-args": _flag({"if": [{"starts_with": [{"var": "s"}]}, "red", "blue"]}),
        "ends-args": _flag({"ends_with": [{"var": "s"}, "a", "b"]}),
    },
    "$evaluators": {"broken": {"bogus": []}},
}


def _load() -> tuple[Any, list[Issue]]:
    warnings: list[Issue] = []
    return load_flagset(DOCUMENT, warnings=warnings), warnings


def test_strict_load__broken_document__refused_with_every_pointer() -> None:
    with pytest.raises(DefinitionError) as caught:
        load_flagd(DOCUMENT)
    paths = {i.path for i in caught.value.issues}
    assert {"/flags/unknown-op/targeting/if/0", "/flags/bad-ref/targeting/if/0/$ref"} <= paths
    assert "/flags/negative-weight/targeting/fractional/1/1" in paths


def test_lenient_load__healthy_flag__serves() -> None:
    flags, _ = _load()
    assert flags.evaluate("ok", False, {}).value is True


@pytest.mark.parametrize("key", ["unknown-op", "bad-ref", "uses-broken-evaluator", "no-variants"])
def test_lenient_load__broken_flag__parse_error_and_the_callers_default(key: str) -> None:
    flags, _ = _load()
    result = flags.evaluate(key, "dflt", {})
    assert (result.value, result.reason, result.error_code) == ("dflt", Reason.ERROR, ErrorCode.PARSE_ERROR)
    assert key in (result.error_message or "")


def test_lenient_load__disabled_broken_flag__disabled() -> None:
    flags, _ = _load()
    result = flags.evaluate("disabled-broken", "dflt", {})
    assert (result.value, result.reason, result.error_code) == ("dflt", Reason.DISABLED, None)


def test_lenient_load__negative_weight__counts_as_zero() -> None:
    flags, _ = _load()
    assert {flags.evaluate("negative-weight", "x", {"k": f"user-{i}"}).variant for i in range(200)} == {
        "blue"
    }


@pytest.mark.parametrize(
    ("key", "context", "variant"),
    [
        ("semver-args", {"v": "1.0.0"}, "blue"),
        ("starts-args", {"s": "abc"}, "blue"),
        ("ends-args", {"s": "abc"}, "fallback"),
    ],
)
def test_lenient_load__wrong_argument_count__operator_is_null(
    key: str, context: dict[str, Any], variant: str
) -> None:
    flags, _ = _load()
    assert flags.evaluate(key, "x", context).variant == variant


def test_lenient_load__warnings__one_per_problem_with_pointers() -> None:
    _, warnings = _load()
    paths = {w.path for w in warnings}
    assert {
        "/flags/unknown-op/targeting/if/0",
        "/flags/bad-ref/targeting/if/0/$ref",
        "/flags/uses-broken-evaluator/targeting/if/0/$ref",
        "/$evaluators/broken",
        "/flags/no-variants/variants",
        "/flags/negative-weight/targeting/fractional/1/1",
        "/flags/semver-args/targeting/if/0/sem_ver",
        "/flags/starts-args/targeting/if/0/starts_with",
        "/flags/ends-args/targeting/ends_with",
    } <= paths


def test_lenient_load__not_a_flagd_document__still_refused() -> None:
    with pytest.raises(DefinitionError):
        load_flagd({"flags": {"a": OK}, "$evaluators": []}, warnings=[])
