"""Native JsonLogic targeting: evaluation (flagd's semantics inside our engine), validation with
pointers and the bounds on an expression."""

from __future__ import annotations

from typing import Any

import pytest

from flagyard.rule_engine import DefinitionError, ErrorCode, FlagSet, Reason, load_flagset, validate_flag
from flagyard.rule_engine.limits import MAX_JSONLOGIC_NODES

COLORS = {"red": "R", "blue": "B", "green": "G"}


def flag(targeting: Any, **fields: Any) -> dict[str, Any]:
    return {"key": "f", "type": "string", "variants": COLORS, "targeting": targeting, **fields}


def build(*flags: dict[str, Any], segments: list[dict[str, Any]] | None = None) -> FlagSet:
    return load_flagset({"flags": list(flags), "segments": segments or []})


def test_targeting__variant_key__targeting_match() -> None:
    fs = build(flag({"if": [{"==": [{"var": "plan"}, "pro"]}, "blue", None]}, default_variant="red"))
    r = fs.evaluate("f", "x", {"plan": "pro"})
    assert (r.value, r.variant, r.reason) == ("B", "blue", Reason.TARGETING_MATCH)


def test_targeting__null__default_variant_with_reason_default() -> None:
    fs = build(flag({"if": [{"==": [{"var": "plan"}, "pro"]}, "blue", None]}, default_variant="red"))
    r = fs.evaluate("f", "x", {"plan": "free"})
    assert (r.value, r.variant, r.reason) == ("R", "red", Reason.DEFAULT)


def test_targeting__null_without_default_variant__callers_default() -> None:
    fs = build(flag({"var": "nothing"}))
    r = fs.evaluate("f", "x", {})
    assert (r.value, r.variant, r.reason, r.error_code) == ("x", None, Reason.DEFAULT, None)


def test_targeting__not_a_variant__error_general() -> None:
    fs = build(flag({"cat": ["pur", "ple"]}))
    r = fs.evaluate("f", "x", {})
    assert (r.value, r.reason, r.error_code) == ("x", Reason.ERROR, ErrorCode.GENERAL)


def test_targeting__boolean_result__names_variant_true() -> None:
    fs = build(
        {"key": "b", "type": "boolean", "variants": {"true": True, "false": False}, "targeting": {"var": "x"}}
    )
    assert fs.evaluate("b", None, {"x": False}).variant == "false"


def test_targeting__targeting_key_and_flagd_properties__visible_to_the_rule() -> None:
    rule = {"if": [{"==": [{"var": "targetingKey"}, "u1"]}, {"var": "$flagd.flagKey"}, None]}
    fs = build({"key": "blue", "type": "string", "variants": {"blue": "B"}, "targeting": rule})
    assert fs.evaluate("blue", "x", {"targeting_key": "u1"}).variant == "blue"


def test_targeting__fractional_seeded_like_native_split__same_bucket() -> None:
    split = {"variations": [{"variant": "red", "weight": 5000}, {"variant": "blue", "weight": 5000}]}
    native = build({"key": "f", "type": "string", "variants": COLORS, "default_split": split, "salt": "s"})
    seeded = {"fractional": [{"cat": ["s:f:", {"var": "targetingKey"}]}, ["red", 5000], ["blue", 5000]]}
    jl = build(flag(seeded, salt="s"))
    for i in range(200):
        ctx = {"targeting_key": f"user-{i}"}
        assert native.evaluate("f", "x", ctx).variant == jl.evaluate("f", "x", ctx).variant


def test_targeting__segment_ref__true_for_members_only() -> None:
    segments = [
        {
            "key": "beta",
            "included": ["u1"],
            "rules": [{"clauses": [{"attribute": "plan", "operator": "eq", "values": ["pro"]}]}],
        }
    ]
    fs = build(flag({"if": [{"$ref": "beta"}, "green", "red"]}), segments=segments)
    assert fs.evaluate("f", "x", {"targeting_key": "u1"}).variant == "green"
    assert fs.evaluate("f", "x", {"targeting_key": "u2", "plan": "pro"}).variant == "green"
    assert fs.evaluate("f", "x", {"targeting_key": "u2", "plan": "free"}).variant == "red"


def test_targeting__segment_removed_later__matches_nobody() -> None:
    fs = build(
        flag({"if": [{"$ref": "beta"}, "green", "red"]}), segments=[{"key": "beta", "included": ["u1"]}]
    )
    fs.remove_segment("beta")
    assert fs.evaluate("f", "x", {"targeting_key": "u1"}).variant == "red"


def test_targeting__operator_error__null_where_it_stands() -> None:
    fs = build(
        flag({"if": [{"sem_ver": [{"var": "v"}, ">", "1.0.0"]}, "blue", "green"]}, default_variant="red")
    )
    assert fs.evaluate("f", "x", {"v": "not-a-version"}).variant == "green"
    assert fs.evaluate("f", "x", {"v": "2.0.0"}).variant == "blue"
    top = build(flag({"sem_ver": [{"var": "v"}, ">", "1.0.0"]}, default_variant="red"))
    assert top.evaluate("f", "x", {"v": "not-a-version"}).variant == "red"


def test_targeting__disabled__off_variant_with_reason_disabled() -> None:
    fs = build(flag({"var": "x"}, enabled=False, off_variant="red"))
    r = fs.evaluate("f", "z", {"x": "blue"})
    assert (r.variant, r.reason) == ("red", Reason.DISABLED)


def test_targeting__prerequisite_failed__off_variant() -> None:
    gate = {
        "key": "gate",
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "targeting": {"if": [{"var": "ok"}, "on", "off"]},
    }
    fs = build(gate, flag({"var": "x"}, off_variant="red", prerequisites=[{"flag": "gate", "variant": "on"}]))
    assert fs.evaluate("f", "z", {"ok": True, "x": "blue"}).variant == "blue"
    r = fs.evaluate("f", "z", {"ok": False, "x": "blue"})
    assert (r.variant, r.reason) == ("red", Reason.PREREQUISITE_FAILED)


def _issues(data: dict[str, Any], **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as caught:
        validate_flag(data, **kwargs)
    return [(i.path, i.message) for i in caught.value.issues]


def test_validate__rules_and_targeting__issue_at_targeting() -> None:
    rule = {"id": "r", "clauses": [{"attribute": "a", "operator": "exists"}], "variant": "red"}
    assert [p for p, _ in _issues(flag({"var": "x"}, rules=[rule]))] == ["/targeting"]


def test_validate__default_split_and_targeting__issue_at_targeting() -> None:
    split = {"variations": [{"variant": "red", "weight": 10000}]}
    assert [p for p, _ in _issues(flag({"var": "x"}, default_split=split))] == ["/targeting"]


def test_validate__every_problem__pointer_each() -> None:
    bad = {"if": [{"$ref": "missing"}, {"sem_ver": [{"var": "v"}, "<>", "1"]}, {"bogus": []}]}
    paths = [p for p, _ in _issues(flag(bad), segments=["beta"])]
    assert paths == ["/targeting/if/0/$ref", "/targeting/if/1/sem_ver/1", "/targeting/if/2"]


def test_validate__empty_or_two_operators__issue_at_targeting() -> None:
    assert [p for p, _ in _issues(flag({}))] == ["/targeting"]
    assert [p for p, _ in _issues(flag({"var": "a", "cat": []}))] == ["/targeting"]


def test_validate__segment_ref_inside_loop__refused() -> None:
    bad = {"some": [{"var": "items"}, {"$ref": "beta"}]}
    assert [p for p, _ in _issues(flag(bad), segments=["beta"])] == ["/targeting/some/1/$ref"]


def test_bounds__nested_loops__refused_with_pointer() -> None:
    bad = {"some": [{"var": "a"}, {"some": [{"var": "b"}, {"var": ""}]}]}
    issues = _issues(flag(bad))
    assert [p for p, _ in issues] == ["/targeting/some/1/some/1"]
    assert "MAX_JSONLOGIC_LOOP_NESTING" in issues[0][1]


def test_bounds__node_count__at_the_limit_evaluates_past_it_refused() -> None:
    # {"in": [var, [v1, ..., vN]]}: 1 (in) + 1 (args list is the op's raw list) ... counted precisely:
    # the "in" object, the var object, its "x" operand, the haystack list and its N items.
    def expr(n: int) -> dict[str, Any]:
        return {"if": [{"in": [{"var": "x"}, [f"v{i}" for i in range(n)]]}, "blue", "red"]}

    fixed = 1 + 1 + 1 + 1 + 1 + 2  # if, in, var, "x", the list, "blue", "red"
    ok = flag(expr(MAX_JSONLOGIC_NODES - fixed))
    validate_flag(ok)
    fs = build(ok)
    assert fs.evaluate("f", "z", {"x": f"v{MAX_JSONLOGIC_NODES - fixed - 1}"}).variant == "blue"
    issues = _issues(flag(expr(MAX_JSONLOGIC_NODES - fixed + 1)))
    assert len(issues) == 1
    assert "MAX_JSONLOGIC_NODES" in issues[0][1]
