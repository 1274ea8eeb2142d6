"""Flag evaluation: reasons, error codes, defaults, prerequisites, types and live updates."""

from __future__ import annotations

from typing import Any

import pytest

from flagyard.rule_engine import (
    ErrorCode,
    FlagSet,
    FlagType,
    Reason,
    compile_flag,
    compile_segment,
    load_flagset,
    validate_flag,
    validate_segment,
)

BOOL = {"on": True, "off": False}


def flag(key: str = "f", **fields: Any) -> dict[str, Any]:
    return {"key": key, "type": "boolean", "variants": BOOL, **fields}


def build(*flags: dict[str, Any], segments: list[dict[str, Any]] | None = None) -> FlagSet:
    return load_flagset({"flags": list(flags), "segments": segments or []})


DE_RULE = {
    "id": "de",
    "clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}],
    "variant": "on",
}


def test_flag__no_rules_and_a_default_variant__is_static() -> None:
    result = build(flag(default_variant="on")).evaluate("f", False, {})
    assert (result.value, result.variant, result.reason) == (True, "on", Reason.STATIC)


def test_flag__rule_matches__serves_its_variant_with_rule_id() -> None:
    result = build(flag(default_variant="off", rules=[DE_RULE])).evaluate("f", False, {"country": "DE"})
    assert (result.value, result.variant, result.reason, result.rule_id) == (
        True,
        "on",
        Reason.TARGETING_MATCH,
        "de",
    )


def test_flag__no_rule_matches__serves_default_variant() -> None:
    result = build(flag(default_variant="off", rules=[DE_RULE])).evaluate("f", True, {"country": "FR"})
    assert (result.value, result.variant, result.reason, result.rule_id) == (
        False,
        "off",
        Reason.DEFAULT,
        None,
    )


def test_flag__rules_in_order__first_match_wins() -> None:
    second = {
        "id": "all-de",
        "clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}],
        "variant": "off",
    }
    result = build(flag(default_variant="off", rules=[DE_RULE, second])).evaluate(
        "f", False, {"country": "DE"}
    )
    assert result.rule_id == "de"


def test_flag__all_clauses_of_a_rule__must_match() -> None:
    rule = {
        "id": "both",
        "clauses": [
            {"attribute": "country", "operator": "eq", "values": ["DE"]},
            {"attribute": "age", "operator": "gte", "values": [18]},
        ],
        "variant": "on",
    }
    flagset = build(flag(default_variant="off", rules=[rule]))
    assert flagset.evaluate("f", False, {"country": "DE", "age": 20}).variant == "on"
    assert flagset.evaluate("f", False, {"country": "DE", "age": 17}).variant == "off"
    assert flagset.evaluate("f", False, {"age": 20}).variant == "off"


def test_flag__no_default_variant__serves_callers_default_with_reason_default() -> None:
    result = build(flag(rules=[DE_RULE])).evaluate("f", "caller", {"country": "FR"})
    assert (result.value, result.variant, result.reason, result.error_code) == (
        "caller",
        None,
        Reason.DEFAULT,
        None,
    )


def test_flag__disabled__serves_off_variant_with_reason_disabled() -> None:
    result = build(flag(enabled=False, off_variant="off", default_variant="on", rules=[DE_RULE])).evaluate(
        "f", True, {"country": "DE"}
    )
    assert (result.value, result.variant, result.reason) == (False, "off", Reason.DISABLED)


def test_flag__disabled_without_off_variant__serves_callers_default() -> None:
    result = build(flag(enabled=False, default_variant="on")).evaluate("f", "caller", {})
    assert (result.value, result.variant, result.reason) == ("caller", None, Reason.DISABLED)


def test_flag__unknown_key__returns_default_with_flag_not_found() -> None:
    result = build(flag(default_variant="on")).evaluate("nope", "d", {})
    assert (result.value, result.reason, result.error_code) == ("d", Reason.ERROR, ErrorCode.FLAG_NOT_FOUND)
    assert "nope" in (result.error_message or "")


def test_flag__wrong_type_requested__returns_default_with_type_mismatch() -> None:
    result = build(flag(default_variant="on")).evaluate("f", "d", {}, FlagType.STRING)
    assert (result.value, result.reason, result.error_code) == ("d", Reason.ERROR, ErrorCode.TYPE_MISMATCH)


def test_flag__integer_read_as_float__is_converted() -> None:
    flagset = build({"key": "n", "type": "integer", "variants": {"a": 3}, "default_variant": "a"})
    result = flagset.evaluate("n", 0.5, {}, FlagType.FLOAT)
    assert result.value == 3.0
    assert type(result.value) is float
    assert result.error_code is None
    assert flagset.evaluate("n", 0, {}, FlagType.INTEGER).value == 3


def test_flag__float_variants_written_as_integers__serve_floats() -> None:
    flagset = build({"key": "x", "type": "float", "variants": {"a": 2}, "default_variant": "a"})
    assert type(flagset.evaluate("x", 0.0, {}, FlagType.FLOAT).value) is float


def test_flag__context_not_a_mapping__returns_invalid_context() -> None:
    result = build(flag(default_variant="on")).evaluate("f", False, ["not", "a", "mapping"])  # type: ignore[arg-type]
    assert (result.value, result.error_code) == (False, ErrorCode.INVALID_CONTEXT)


def test_object_flag__value_mutated_by_caller__does_not_change_the_flag() -> None:
    flagset = build(
        {"key": "o", "type": "object", "variants": {"a": {"limits": [1, 2]}}, "default_variant": "a"}
    )
    first = flagset.evaluate("o", {}, {}, FlagType.OBJECT)
    first.value["limits"].append(3)
    assert flagset.evaluate("o", {}, {}, FlagType.OBJECT).value == {"limits": [1, 2]}


def test_flag__metadata_and_version__are_on_every_result() -> None:
    flagset = build(flag(default_variant="on", version=7, metadata={"owner": "team-a", "ticket": 12}))
    result = flagset.evaluate("f", False, {})
    assert result.flag_metadata == {"owner": "team-a", "ticket": 12}
    assert result.version == 7


def test_prerequisite__served_variant_matches__evaluates_normally() -> None:
    flagset = build(
        flag("parent", default_variant="on"),
        flag(
            "child",
            default_variant="on",
            off_variant="off",
            prerequisites=[{"flag": "parent", "variant": "on"}],
        ),
    )
    assert flagset.evaluate("child", False, {}).reason is Reason.STATIC


@pytest.mark.parametrize(
    "parent",
    [
        flag("parent", default_variant="off"),
        flag("parent", enabled=False, off_variant="on", default_variant="on"),
    ],
    ids=["parent serves another variant", "parent disabled"],
)
def test_prerequisite__not_met__serves_off_variant_with_prerequisite_failed(parent: dict[str, Any]) -> None:
    flagset = build(
        parent,
        flag(
            "child",
            default_variant="on",
            off_variant="off",
            prerequisites=[{"flag": "parent", "variant": "on"}],
        ),
    )
    result = flagset.evaluate("child", True, {})
    assert (result.value, result.variant, result.reason) == (False, "off", Reason.PREREQUISITE_FAILED)


def test_prerequisite__chain__is_followed_with_the_same_context() -> None:
    flagset = build(
        flag("a", default_variant="off", rules=[DE_RULE]),
        flag("b", default_variant="on", off_variant="off", prerequisites=[{"flag": "a", "variant": "on"}]),
        flag("c", default_variant="on", off_variant="off", prerequisites=[{"flag": "b", "variant": "on"}]),
    )
    assert flagset.evaluate("c", None, {"country": "DE"}).variant == "on"
    assert flagset.evaluate("c", None, {"country": "FR"}).reason is Reason.PREREQUISITE_FAILED


def test_prerequisite__removed_from_store__fails_closed() -> None:
    flagset = build(
        flag("parent", default_variant="on"),
        flag(
            "child",
            default_variant="on",
            off_variant="off",
            prerequisites=[{"flag": "parent", "variant": "on"}],
        ),
    )
    flagset.remove_flag("parent")
    assert flagset.evaluate("child", None, {}).reason is Reason.PREREQUISITE_FAILED


def test_prerequisite__cycle_introduced_by_live_updates__returns_error_not_exception() -> None:
    flagset = build(flag("a", default_variant="on"), flag("b", default_variant="on"))
    flagset.put_flag(
        compile_flag(
            validate_flag(flag("a", default_variant="on", prerequisites=[{"flag": "b", "variant": "on"}]))
        )
    )
    flagset.put_flag(
        compile_flag(
            validate_flag(flag("b", default_variant="on", prerequisites=[{"flag": "a", "variant": "on"}]))
        )
    )
    result = flagset.evaluate("a", "d", {})
    assert (result.value, result.reason, result.error_code) == ("d", Reason.ERROR, ErrorCode.GENERAL)


def test_flagset__put_flag__replaces_one_flag_in_place() -> None:
    flagset = build(flag("f", default_variant="off"))
    flagset.put_flag(compile_flag(validate_flag(flag("f", default_variant="on", version=2))))
    result = flagset.evaluate("f", None, {})
    assert (result.variant, result.version) == ("on", 2)


def test_flagset__put_segment__changes_flags_that_use_it_without_recompiling() -> None:
    rule = {"id": "r", "clauses": [{"operator": "segment_match", "values": ["s"]}], "variant": "on"}
    flagset = build(flag(default_variant="off", rules=[rule]), segments=[{"key": "s", "included": ["u-1"]}])
    assert flagset.evaluate("f", None, {"targeting_key": "u-2"}).variant == "off"
    flagset.put_segment(compile_segment(validate_segment({"key": "s", "included": ["u-1", "u-2"]})))
    assert flagset.evaluate("f", None, {"targeting_key": "u-2"}).variant == "on"
    flagset.remove_segment("s")
    assert flagset.evaluate("f", None, {"targeting_key": "u-1"}).variant == "off"


def test_flagset__evaluate_all__returns_every_flag() -> None:
    flagset = build(
        flag("a", default_variant="on"),
        {"key": "s", "type": "string", "variants": {"x": "X"}, "default_variant": "x"},
    )
    results = flagset.evaluate_all({})
    assert {k: r.value for k, r in results.items()} == {"a": True, "s": "X"}


def test_split_rule__matching_context__reports_split_and_rule_id() -> None:
    rule = {
        "id": "half",
        "clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}],
        "split": {"variations": [{"variant": "on", "weight": 5000}, {"variant": "off", "weight": 5000}]},
    }
    result = build(flag(default_variant="off", rules=[rule])).evaluate(
        "f", None, {"targeting_key": "k", "country": "DE"}
    )
    assert (result.reason, result.rule_id) == (Reason.SPLIT, "half")
    assert result.variant in ("on", "off")
