"""Explanations: the result evaluation gives, with the trace of every clause, rule, segment, prerequisite
and split that decided it, recorded around the flag's own compiled code."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from types import FunctionType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flagyard.rule_engine import (
    ErrorCode,
    Flag,
    FlagSet,
    FlagType,
    Operator,
    Reason,
    Segment,
    compile_flag,
    compile_segment,
    explain,
    limits,
    load_flagset,
)
from flagyard.rule_engine.bucketing import bucket
from flagyard.rule_engine.explain import (
    BucketRange,
    ClauseTrace,
    Explanation,
    FlagTrace,
    PrerequisiteTrace,
    RuleTrace,
    SegmentDecision,
    SegmentTrace,
    SplitTrace,
    Tracer,
)

BOOL = {"on": True, "off": False}
NATIVE_DOCUMENT = Path(__file__).parent / "data" / "flagd" / "native_document.json"


def flag(key: str = "f", **fields: Any) -> dict[str, Any]:
    """A boolean flag; it serves "off" when no rule matches unless given a ``default_split``."""
    fallthrough = {} if "default_split" in fields else {"default_variant": "off"}
    return {"key": key, "type": "boolean", "variants": BOOL, **fallthrough, **fields}


def build(*flags: dict[str, Any], segments: list[dict[str, Any]] | None = None) -> FlagSet:
    """Validated, as the control plane and the SDK load them."""
    return load_flagset({"flags": list(flags), "segments": segments or []})


def unvalidated(*flags: dict[str, Any], segments: list[dict[str, Any]] | None = None) -> FlagSet:
    """Parsed but not validated: what a data plane may hold mid-change (missing references, cycles)."""
    return FlagSet(
        (compile_flag(Flag.model_validate(f)) for f in flags),
        (compile_segment(Segment.model_validate(s)) for s in segments or []),
    )


def explained(
    flagset: FlagSet, key: str, context: Any, default: Any = None, flag_type: FlagType | None = None
) -> Explanation:
    """The explanation, checked to carry exactly evaluation's result and to be JSON-ready."""
    explanation = explain(flagset, key, context, default, flag_type)
    assert explanation.result == flagset.evaluate(key, default, context, flag_type)
    json.dumps(explanation.to_dict())
    return explanation


def traced(flagset: FlagSet, key: str, context: Any, default: Any = None) -> FlagTrace:
    trace = explained(flagset, key, context, default).trace
    assert trace is not None
    return trace


def rule_flag(*clauses: dict[str, Any]) -> dict[str, Any]:
    return flag(rules=[{"id": "r", "clauses": list(clauses), "variant": "on"}])


# --- every operator ---

SEGMENTS = [
    {"key": "de", "rules": [{"clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}]}]}
]

OPERATOR_CASES: list[tuple[str, list[Any], dict[str, Any], Any, bool]] = [
    # operator, values, context, the value the trace shows, matched
    ("eq", ["DE"], {"a": "DE"}, "DE", True),
    ("eq", ["DE"], {"a": "FR"}, "FR", False),
    ("neq", ["DE"], {"a": "FR"}, "FR", True),
    ("neq", ["DE"], {"a": "DE"}, "DE", False),
    ("in", ["x", "y"], {"a": "y"}, "y", True),
    ("in", ["x", "y"], {"a": ["z", "x"]}, ["z", "x"], True),
    ("in", [1, 2], {"a": 3}, 3, False),
    ("not_in", ["x", "y"], {"a": "z"}, "z", True),
    ("not_in", ["x", "y"], {"a": ["z", "x"]}, ["z", "x"], False),
    ("contains", ["ell"], {"a": "hello"}, "hello", True),
    ("contains", ["ell"], {"a": "world"}, "world", False),
    ("starts_with", ["he"], {"a": "hello"}, "hello", True),
    ("starts_with", ["he"], {"a": "oh"}, "oh", False),
    ("ends_with", ["lo"], {"a": "hello"}, "hello", True),
    ("ends_with", ["lo"], {"a": ["x", "yo"]}, ["x", "yo"], False),
    ("matches", [r"^h.l+o$"], {"a": "hello"}, "hello", True),
    ("matches", [r"^h.l+o$"], {"a": "halo!"}, "halo!", False),
    ("lt", [10], {"a": 9.5}, 9.5, True),
    ("lt", [10], {"a": 10}, 10, False),
    ("lte", [10], {"a": 10}, 10, True),
    ("lte", [10], {"a": "9"}, "9", False),
    ("gt", [10], {"a": [1, 11]}, [1, 11], True),
    ("gt", [10], {"a": 10}, 10, False),
    ("gte", [10], {"a": 10}, 10, True),
    ("gte", [10], {"a": 9}, 9, False),
    ("semver_eq", ["1.2.3"], {"a": "v1.2.3"}, "v1.2.3", True),
    ("semver_eq", ["1.2.3"], {"a": "1.2.4"}, "1.2.4", False),
    ("semver_lt", ["2.0.0"], {"a": "1.9.9"}, "1.9.9", True),
    ("semver_lt", ["2.0.0"], {"a": "not a version"}, "not a version", False),
    ("semver_lte", ["1.2"], {"a": "1.2.0"}, "1.2.0", True),
    ("semver_lte", ["1.2"], {"a": "1.3"}, "1.3", False),
    ("semver_gt", ["1.0.0"], {"a": "1.0.1"}, "1.0.1", True),
    ("semver_gt", ["1.0.0"], {"a": "1.0.0-rc.1"}, "1.0.0-rc.1", False),
    ("semver_gte", ["2.0.0"], {"a": "2.0.0"}, "2.0.0", True),
    ("semver_gte", ["2.0.0"], {"a": "1.0.0"}, "1.0.0", False),
    ("before", ["2030-01-01T00:00:00Z"], {"a": "2026-12-07"}, "2026-12-07", True),
    ("before", ["2030-01-01T00:00:00Z"], {"a": 1_900_000_000}, 1_900_000_000, False),
    ("after", ["2020-01-01"], {"a": 1_800_000_000}, 1_800_000_000, True),
    ("after", ["2020-01-01"], {"a": "2019-06-01T12:00:00+02:00"}, "2019-06-01T12:00:00+02:00", False),
    ("exists", [], {"a": 0}, 0, True),
    ("exists", [], {}, None, False),
    ("not_exists", [], {}, None, True),
    ("not_exists", [], {"a": "x"}, "x", False),
]


def test_operator_cases__cover_every_operator() -> None:
    covered = {case[0] for case in OPERATOR_CASES} | {"segment_match"}  # segment_match: the tests below
    assert covered == {str(op) for op in Operator}
    matched = {(case[0], case[4]) for case in OPERATOR_CASES}
    assert all((op, True) in matched and (op, False) in matched for op in covered - {"segment_match"})


@pytest.mark.parametrize(("operator", "values", "context", "value", "matched"), OPERATOR_CASES)
def test_clause__each_operator__records_value_operator_and_outcome(
    operator: str, values: list[Any], context: dict[str, Any], value: Any, matched: bool
) -> None:
    flagset = build(rule_flag({"attribute": "a", "operator": operator, "values": values}))
    trace = traced(flagset, "f", context)
    assert trace.rules == [
        RuleTrace(0, "r", matched, [ClauseTrace(operator, "a", values, False, value, matched)])
    ]
    assert (trace.served_by, trace.variant) == (("rule", "on") if matched else ("fallthrough", "off"))


@pytest.mark.parametrize(
    ("operator", "values", "context", "matched"),
    [
        ("eq", ["DE"], {"a": "FR"}, True),
        ("eq", ["DE"], {"a": "DE"}, False),
        ("eq", ["DE"], {}, False),  # a missing attribute never matches, negated or not
        ("in", ["x"], {"a": ["y", "z"]}, True),
        ("in", ["x"], {"a": ["y", "x"]}, False),
        ("neq", ["DE"], {"a": "DE"}, True),
        ("not_in", ["x"], {"a": ["y", "x"]}, True),
        ("matches", ["^a"], {"a": "abc"}, False),
        ("gte", [10], {"a": 3}, True),
        ("exists", [], {}, True),
        ("not_exists", [], {}, False),
    ],
)
def test_clause__negated__records_the_declared_operator_and_the_negated_outcome(
    operator: str, values: list[Any], context: dict[str, Any], matched: bool
) -> None:
    clause = {"attribute": "a", "operator": operator, "values": values, "negate": True}
    trace = traced(build(rule_flag(clause)), "f", context)
    assert trace.rules[0].clauses == [ClauseTrace(operator, "a", values, True, context.get("a"), matched)]
    assert trace.rules[0].matched is matched


@pytest.mark.parametrize(
    ("context", "value", "matched"),
    [
        ({"account": {"plan": "pro"}}, "pro", True),
        ({"account": {"plan": ["free", "pro"]}}, ["free", "pro"], True),
        ({"account": {"plan": "free"}}, "free", False),
        ({"account": "pro"}, None, False),
        ({"account.plan": "pro"}, None, False),
        ({}, None, False),
    ],
)
def test_clause__dotted_attribute__records_the_nested_value(
    context: dict[str, Any], value: Any, matched: bool
) -> None:
    clause = {"attribute": "account.plan", "operator": "eq", "values": ["pro"]}
    trace = traced(build(rule_flag(clause)), "f", context)
    assert trace.rules[0].clauses == [ClauseTrace("eq", "account.plan", ["pro"], False, value, matched)]


def test_rule__stops_at_the_first_clause_that_does_not_match() -> None:
    flagset = build(
        rule_flag(
            {"attribute": "a", "operator": "eq", "values": [1]},
            {"attribute": "b", "operator": "eq", "values": [2]},
            {"attribute": "c", "operator": "eq", "values": [3]},
        )
    )
    trace = traced(flagset, "f", {"a": 1, "b": 0, "c": 3})
    assert [(c.attribute, c.value, c.matched) for c in trace.rules[0].clauses] == [
        ("a", 1, True),
        ("b", 0, False),
    ]


def test_rules__are_recorded_in_order_until_the_first_that_matches() -> None:
    rules = [
        {"id": f"r{i}", "clauses": [{"attribute": "n", "operator": "gte", "values": [i]}], "variant": "on"}
        for i in (5, 3, 1, 0)
    ]
    trace = traced(build(flag(rules=rules)), "f", {"n": 2})
    assert [(r.index, r.id, r.matched) for r in trace.rules] == [
        (0, "r5", False),
        (1, "r3", False),
        (2, "r1", True),
    ]
    assert (trace.served_by, trace.variant, trace.reason) == ("rule", "on", "TARGETING_MATCH")


# --- segments ---

COUNTRY_DE = {"attribute": "country", "operator": "eq", "values": ["DE"]}
PLAN_PRO = {"attribute": "plan", "operator": "eq", "values": ["pro"]}


def segment_flag(*keys: str, negate: bool = False) -> dict[str, Any]:
    return rule_flag({"operator": "segment_match", "values": list(keys), "negate": negate})


def only_segment(trace: FlagTrace) -> SegmentTrace:
    (clause,) = trace.rules[0].clauses
    assert (clause.operator, clause.attribute, clause.value) == ("segment_match", None, None)
    (segment,) = clause.segments
    return segment


SEGMENT_S = {
    "key": "s",
    "included": ["u-in"],
    "excluded": ["u-out"],
    "rules": [{"clauses": [COUNTRY_DE]}, {"clauses": [PLAN_PRO]}],
}


@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({"targeting_key": "u-out", "country": "DE"}, SegmentTrace("s", False, "excluded")),
        ({"targeting_key": "u-in", "country": "FR"}, SegmentTrace("s", True, "included")),
        (
            {"targeting_key": "u-1", "country": "DE"},
            SegmentTrace(
                "s",
                True,
                "rule",
                0,
                [RuleTrace(0, None, True, [ClauseTrace("eq", "country", ["DE"], False, "DE", True)])],
            ),
        ),
        (
            {"country": "FR", "plan": "pro"},
            SegmentTrace(
                "s",
                True,
                "rule",
                1,
                [
                    RuleTrace(0, None, False, [ClauseTrace("eq", "country", ["DE"], False, "FR", False)]),
                    RuleTrace(1, None, True, [ClauseTrace("eq", "plan", ["pro"], False, "pro", True)]),
                ],
            ),
        ),
        (
            {"targeting_key": "u-1"},
            SegmentTrace(
                "s",
                False,
                "no_rule",
                None,
                [
                    RuleTrace(0, None, False, [ClauseTrace("eq", "country", ["DE"], False, None, False)]),
                    RuleTrace(1, None, False, [ClauseTrace("eq", "plan", ["pro"], False, None, False)]),
                ],
            ),
        ),
    ],
)
def test_segment__each_decision__is_recorded(context: dict[str, Any], expected: SegmentTrace) -> None:
    trace = traced(build(segment_flag("s"), segments=[SEGMENT_S]), "f", context)
    assert only_segment(trace) == expected
    assert trace.rules[0].matched is expected.matched


@pytest.mark.parametrize(
    ("context", "decision"),
    [({"targeting_key": "u-out"}, "excluded"), ({"targeting_key": "u-2"}, "no_rule"), ({}, "no_rule")],
)
def test_segment_without_rules__not_matching__is_excluded_only_when_listed(
    context: dict[str, Any], decision: SegmentDecision
) -> None:
    flagset = build(
        segment_flag("lists"), segments=[{"key": "lists", "included": ["u-in"], "excluded": ["u-out"]}]
    )
    assert only_segment(traced(flagset, "f", context)) == SegmentTrace("lists", False, decision)


def test_segment__that_does_not_exist__is_missing() -> None:
    trace = traced(unvalidated(segment_flag("ghost")), "f", {"targeting_key": "u"})
    assert only_segment(trace) == SegmentTrace("ghost", False, "missing")
    assert trace.served_by == "fallthrough"


def test_segment_match__several_keys__records_each_tested_until_one_matches() -> None:
    segments = [
        {"key": "a", "included": ["x"]},
        {"key": "b", "included": ["u"]},
        {"key": "c", "included": ["u"]},
    ]
    trace = traced(
        unvalidated(segment_flag("ghost", "a", "b", "c"), segments=segments), "f", {"targeting_key": "u"}
    )
    assert [(s.key, s.matched, s.decision) for s in trace.rules[0].clauses[0].segments] == [
        ("ghost", False, "missing"),
        ("a", False, "no_rule"),
        ("b", True, "included"),
    ]


def test_segment_match__negated__records_the_segments_and_the_negated_outcome() -> None:
    flagset = build(segment_flag("s", negate=True), segments=[SEGMENT_S])
    trace = traced(flagset, "f", {"targeting_key": "u-in"})
    (clause,) = trace.rules[0].clauses
    assert (clause.negate, clause.matched, [s.decision for s in clause.segments]) == (
        True,
        False,
        ["included"],
    )
    assert trace.served_by == "fallthrough"


def test_nested_segment_match__nests_the_inner_segment_under_the_outer_rule() -> None:
    segments = [
        {"key": "inner", "rules": [{"clauses": [COUNTRY_DE]}]},
        # The segment clause comes first but plain clauses are tested first (they are cheap).
        {
            "key": "outer",
            "rules": [{"clauses": [{"operator": "segment_match", "values": ["inner"]}, PLAN_PRO]}],
        },
    ]
    trace = traced(build(segment_flag("outer"), segments=segments), "f", {"country": "DE", "plan": "pro"})
    outer = only_segment(trace)
    assert (outer.key, outer.matched, outer.decision, outer.rule) == ("outer", True, "rule", 0)
    (rule,) = outer.rules
    assert [(c.operator, c.matched) for c in rule.clauses] == [("eq", True), ("segment_match", True)]
    assert rule.clauses[1].segments == [
        SegmentTrace(
            "inner",
            True,
            "rule",
            0,
            [RuleTrace(0, None, True, [ClauseTrace("eq", "country", ["DE"], False, "DE", True)])],
        )
    ]


def test_segment_cycle__answers_the_error_and_keeps_what_ran() -> None:
    segments = [
        {"key": "s0", "rules": [{"clauses": [{"operator": "segment_match", "values": ["s1"]}]}]},
        {"key": "s1", "rules": [{"clauses": [{"operator": "segment_match", "values": ["s0"]}]}]},
    ]
    explanation = explained(unvalidated(segment_flag("s0"), segments=segments), "f", {"targeting_key": "x"})
    assert explanation.result.error_message == "flag 'f': segment cycle: s0 -> s1 -> s0"
    trace = explanation.trace
    assert trace is not None
    assert (trace.served_by, trace.variant, trace.reason) == ("error", None, "ERROR")
    depth, segment = 0, trace.rules[0].clauses[0].segments[0]
    while segment.rules:
        depth += 1
        assert (segment.matched, segment.rules[0].matched) == (False, False)
        nested = segment.rules[0].clauses[0].segments
        if not nested:
            break
        segment = nested[0]
    assert depth == limits.MAX_SEGMENT_DEPTH


# --- prerequisites ---


def prerequisite_flag(key: str, *prerequisites: tuple[str, str], **fields: Any) -> dict[str, Any]:
    return flag(
        key,
        off_variant="off",
        default_variant="on",
        prerequisites=[{"flag": f, "variant": v} for f, v in prerequisites],
        **fields,
    )


def test_prerequisite__met__nests_its_own_trace() -> None:
    flagset = build(
        prerequisite_flag("top", ("p", "on")),
        flag("p", rules=[{"id": "de", "clauses": [COUNTRY_DE], "variant": "on"}]),
    )
    trace = traced(flagset, "top", {"country": "DE"})
    (prerequisite,) = trace.prerequisites
    assert (prerequisite.flag, prerequisite.variant, prerequisite.state, prerequisite.met) == (
        "p",
        "on",
        "evaluated",
        True,
    )
    assert prerequisite.trace is not None
    assert (prerequisite.trace.flag, prerequisite.trace.served_by, prerequisite.trace.variant) == (
        "p",
        "rule",
        "on",
    )
    assert prerequisite.trace.rules[0].id == "de"
    assert (trace.served_by, trace.variant, trace.reason) == ("fallthrough", "on", "STATIC")


def test_prerequisite__unmet__fails_the_flag_and_the_rest_are_not_evaluated() -> None:
    flagset = build(
        prerequisite_flag("top", ("p", "on"), ("q", "on")),
        flag("p", rules=[{"id": "de", "clauses": [COUNTRY_DE], "variant": "on"}]),
        flag("q", default_variant="on"),
    )
    trace = traced(flagset, "top", {"country": "FR"})
    assert [(p.flag, p.state, p.met) for p in trace.prerequisites] == [
        ("p", "evaluated", False),
        ("q", "not_evaluated", False),
    ]
    first = trace.prerequisites[0].trace
    assert first is not None
    assert (first.served_by, first.variant) == ("fallthrough", "off")
    assert trace.prerequisites[1].trace is None
    assert (trace.served_by, trace.variant, trace.reason, trace.rules) == (
        "prerequisite",
        "off",
        "PREREQUISITE_FAILED",
        [],
    )


def test_prerequisite__missing_and_disabled__are_states() -> None:
    flagset = unvalidated(
        prerequisite_flag("top", ("ok", "on"), ("ghost", "on"), ("ok", "on")),
        prerequisite_flag("top2", ("ok", "on"), ("off", "on")),
        flag("ok", default_variant="on"),
        flag("off", enabled=False, off_variant="on"),
    )
    assert [(p.flag, p.state, p.met) for p in traced(flagset, "top", {}).prerequisites] == [
        ("ok", "evaluated", True),
        ("ghost", "missing", False),
        ("ok", "not_evaluated", False),
    ]
    trace = traced(flagset, "top2", {})
    assert [(p.flag, p.state, p.met, p.trace) for p in trace.prerequisites][1] == (
        "off",
        "disabled",
        False,
        None,
    )
    assert trace.served_by == "prerequisite"


def test_prerequisites__chain_of_two__nest() -> None:
    flagset = build(
        prerequisite_flag("top", ("mid", "on")),
        prerequisite_flag("mid", ("leaf", "on")),
        flag("leaf", default_variant="on"),
    )
    trace = traced(flagset, "top", {})
    mid = trace.prerequisites[0].trace
    assert mid is not None
    assert mid.flag == "mid"
    assert mid.served_by == "fallthrough"
    leaf = mid.prerequisites[0].trace
    assert leaf is not None
    assert (leaf.flag, leaf.variant, leaf.reason, leaf.prerequisites) == (
        "leaf",
        "on",
        "STATIC",
        [],
    )
    assert trace.prerequisites[0].met
    assert mid.prerequisites[0].met


def test_prerequisite_cycle__answers_the_error_with_the_chain_bounded() -> None:
    flagset = unvalidated(prerequisite_flag("a", ("b", "on")), prerequisite_flag("b", ("a", "on")))
    explanation = explained(flagset, "a", {}, "d")
    assert (explanation.result.value, explanation.result.error_message) == (
        "d",
        "flag 'a': prerequisite cycle: a -> b -> a",
    )
    trace, depth = explanation.trace, 0
    assert trace is not None
    assert trace.served_by == "error"
    while True:
        (prerequisite,) = trace.prerequisites
        assert prerequisite.met is False
        if prerequisite.trace is None:
            break
        assert (prerequisite.state, prerequisite.trace.served_by) == ("evaluated", "error")
        trace, depth = prerequisite.trace, depth + 1
    assert prerequisite.state == "not_evaluated"  # found, but the chain was at its bound
    assert depth == limits.MAX_PREREQUISITE_DEPTH - 1


# --- splits ---


def owner(split: SplitTrace) -> str | None:
    assert split.bucket is not None
    owners = [r.variant for r in split.ranges if r.start <= split.bucket < r.end]
    assert len(owners) == 1
    return owners[0]


@pytest.mark.parametrize("user", [f"user-{i}" for i in range(40)])
def test_split__basis_points__records_the_bucket_and_its_owner(user: str) -> None:
    split = {"variations": [{"variant": "on", "weight": 3000}, {"variant": "off", "weight": 7000}]}
    flagset = build(flag(salt="s4lt", default_split=split))
    explanation = explained(flagset, "f", {"targeting_key": user})
    trace = explanation.trace
    assert trace is not None
    assert trace.split is not None
    assert trace.split.ranges == [BucketRange("on", 0, 3000), BucketRange("off", 3000, 10000)]
    assert (trace.split.bucket_by, trace.split.value, trace.split.total) == ("targeting_key", user, 10000)
    assert trace.split.bucket == bucket("s4lt", "f", user, 10000)
    assert owner(trace.split) == trace.split.variant == explanation.result.variant
    assert (trace.served_by, explanation.result.reason) == ("fallthrough", Reason.SPLIT)


def test_splits__over_many_users__land_in_both_variants() -> None:
    split = {"variations": [{"variant": "on", "weight": 5000}, {"variant": "off", "weight": 5000}]}
    flagset = build(flag(default_split=split))
    seen = {traced(flagset, "f", {"targeting_key": f"u{i}"}).variant for i in range(50)}
    assert seen == {"on", "off"}


@pytest.mark.parametrize("account", [1, 42, 7777, "acme", "globex"])
def test_split__relative_weights_by_a_nested_attribute__in_a_rule(account: Any) -> None:
    split = {
        "variations": [
            {"variant": "a", "weight": 1},
            {"variant": "b", "weight": 0},
            {"variant": "c", "weight": 2},
        ],
        "bucket_by": "account.id",
        "weight_unit": "relative",
    }
    rule = {"id": "split", "clauses": [{"attribute": "account.id", "operator": "exists"}], "split": split}
    definition = {"key": "f", "type": "string", "variants": {"a": "A", "b": "B", "c": "C"}, "salt": "x"}
    flagset = build({**definition, "rules": [rule]})
    explanation = explained(flagset, "f", {"account": {"id": account}})
    trace = explanation.trace
    assert trace is not None
    assert trace.split is not None
    assert trace.split.ranges == [BucketRange("a", 0, 1), BucketRange("b", 1, 1), BucketRange("c", 1, 3)]
    assert (trace.split.bucket_by, trace.split.value, trace.split.total) == ("account.id", str(account), 3)
    assert trace.split.bucket == bucket("x", "f", str(account), 3)
    assert owner(trace.split) == trace.split.variant == explanation.result.variant != "b"
    assert (trace.served_by, explanation.result.rule_id) == ("rule", "split")


def test_split__relative_weights__serve_each_owner() -> None:
    split = {
        "variations": [{"variant": "on", "weight": 1}, {"variant": "off", "weight": 2}],
        "weight_unit": "relative",
    }
    flagset = build(flag(default_split=split))
    traces = [traced(flagset, "f", {"targeting_key": f"u{i}"}) for i in range(30)]
    assert {(t.split.bucket, t.variant) for t in traces if t.split is not None} == {
        (0, "on"),
        (1, "off"),
        (2, "off"),
    }


@pytest.mark.parametrize(
    ("bucket_by", "context", "code"),
    [
        ("targeting_key", {}, ErrorCode.TARGETING_KEY_MISSING),
        ("org", {"org": 1.5}, ErrorCode.INVALID_CONTEXT),
        ("org", {"org": True}, ErrorCode.INVALID_CONTEXT),
    ],
)
def test_split__without_a_bucket_by_value__records_no_bucket(
    bucket_by: str, context: dict[str, Any], code: ErrorCode
) -> None:
    split = {"variations": [{"variant": "on", "weight": 10000}], "bucket_by": bucket_by}
    explanation = explained(build(flag(default_split=split)), "f", context, "d")
    assert (explanation.result.value, explanation.result.error_code) == ("d", code)
    trace = explanation.trace
    assert trace is not None
    assert trace.split == SplitTrace(bucket_by, None, None, 10000, None, [BucketRange("on", 0, 10000)])
    assert trace.served_by == "error"


# --- JsonLogic targeting, disabled, errors before evaluation, foreign formats ---


def test_targeting__records_the_result_and_the_ref_segments() -> None:
    targeting = {
        "if": [
            {"and": [{"$ref": "s"}, {"$ref": "beta"}]},
            "on",
            {"==": [{"var": "plan"}, "pro"]},
            "off",
            None,
        ]
    }
    segments = [SEGMENT_S, {"key": "beta", "included": ["u-in"]}]
    flagset = build(flag(targeting=targeting), segments=segments)
    trace = traced(flagset, "f", {"targeting_key": "u-in"})
    assert trace.targeting is not None
    assert trace.targeting.result == "on"
    assert [(s.key, s.decision) for s in trace.targeting.segments] == [
        ("s", "included"),
        ("beta", "included"),
    ]
    assert (trace.served_by, trace.variant, trace.reason, trace.rules) == (
        "targeting",
        "on",
        "TARGETING_MATCH",
        [],
    )

    trace = traced(flagset, "f", {"targeting_key": "u-out"})
    assert trace.targeting is not None
    assert trace.targeting.result is None
    assert [(s.key, s.decision) for s in trace.targeting.segments] == [("s", "excluded")]
    assert (trace.served_by, trace.variant, trace.reason) == ("targeting", "off", "DEFAULT")


def test_targeting__result_that_is_no_variant__is_an_error() -> None:
    trace = traced(build(flag(targeting={"var": "v"})), "f", {"v": "nope"}, "d")
    assert trace.targeting is not None
    assert trace.targeting.result == "nope"
    assert (trace.served_by, trace.variant, trace.reason) == ("error", None, "ERROR")


def test_disabled_flag__is_served_off_without_looking_further() -> None:
    flagset = build(
        prerequisite_flag(
            "f", ("p", "on"), enabled=False, rules=[{"id": "r", "clauses": [COUNTRY_DE], "variant": "on"}]
        ),
        flag("p", default_variant="on"),
    )
    trace = traced(flagset, "f", {"country": "DE"})
    assert (trace.enabled, trace.served_by, trace.variant, trace.reason, trace.rules) == (
        False,
        "off",
        "off",
        "DISABLED",
        [],
    )
    assert trace.prerequisites == [PrerequisiteTrace("p", "on", "not_evaluated", False)]


def test_flag__version_is_recorded() -> None:
    assert traced(build(flag(version=12)), "f", {}).version == 12


@pytest.mark.parametrize(
    ("key", "context", "flag_type", "code"),
    [
        ("nope", {}, None, ErrorCode.FLAG_NOT_FOUND),
        ("f", {}, FlagType.STRING, ErrorCode.TYPE_MISMATCH),
        ("f", ["not", "a", "mapping"], None, ErrorCode.INVALID_CONTEXT),
    ],
)
def test_not_evaluated__has_no_trace(
    key: str, context: Any, flag_type: FlagType | None, code: ErrorCode
) -> None:
    explanation = explained(build(flag()), key, context, "d", flag_type)
    assert (explanation.result.value, explanation.result.error_code, explanation.trace) == ("d", code, None)
    assert explanation.to_dict()["trace"] is None


def test_flagd_flag__explains_with_its_result_alone() -> None:
    flagset = load_flagset(
        {"flags": {"f": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}}}
    )
    explanation = explained(flagset, "f", {})
    assert (explanation.result.value, explanation.trace) == (True, None)


def test_compiled_without_source__definitions_hook__supplies_them() -> None:
    """As the data plane's L1 holds them: compiled, ``source`` dropped, the definitions kept elsewhere."""
    definitions: dict[tuple[str, str], Flag | Segment] = {
        ("flag", "top"): Flag.model_validate(prerequisite_flag("top", ("p", "on"))),
        ("flag", "p"): Flag.model_validate({**segment_flag("s"), "key": "p"}),
        ("segment", "s"): Segment.model_validate(SEGMENT_S),
    }
    flagset = FlagSet(
        [replace(compile_flag(d), source=None) for d in definitions.values() if isinstance(d, Flag)],
        [replace(compile_segment(d), source=None) for d in definitions.values() if isinstance(d, Segment)],
    )
    context = {"targeting_key": "u-in"}
    assert explained(flagset, "top", context).trace is None  # no definitions: the result alone
    asked: list[tuple[str, str]] = []

    def lookup(kind: str, key: str) -> Flag | Segment | None:
        asked.append((kind, key))
        return definitions.get((kind, key))

    explanation = explain(flagset, "top", context, definitions=lookup)
    assert explanation.result == flagset.evaluate("top", None, context)
    trace = explanation.trace
    assert trace is not None
    assert trace.served_by == "fallthrough"
    prerequisite = trace.prerequisites[0].trace
    assert prerequisite is not None
    assert (prerequisite.served_by, only_segment(prerequisite).decision) == ("rule", "included")
    # The flag asked for is looked up once (its definition reused when it is recompiled with the tracer).
    assert sorted(asked) == [("flag", "p"), ("flag", "top"), ("segment", "s")]


def test_integer_flag_read_as_float__explains_the_float() -> None:
    flagset = build({"key": "n", "type": "integer", "variants": {"one": 1}, "default_variant": "one"})
    explanation = explained(flagset, "n", {}, 0.5, FlagType.FLOAT)
    assert explanation.result.value == 1.0
    assert type(explanation.result.value) is float


def test_to_dict__is_the_documented_json_shape() -> None:
    flagset = build(
        flag(rules=[{"id": "de", "clauses": [COUNTRY_DE], "variant": "on"}], metadata={"team": "x"})
    )
    assert explained(flagset, "f", {"country": "DE"}).to_dict() == {
        "result": {
            "value": True,
            "variant": "on",
            "reason": "TARGETING_MATCH",
            "error_code": None,
            "error_message": None,
            "rule_id": "de",
            "version": 0,
        },
        "trace": {
            "flag": "f",
            "version": 0,
            "enabled": True,
            "served_by": "rule",
            "variant": "on",
            "reason": "TARGETING_MATCH",
            "prerequisites": [],
            "rules": [
                {
                    "index": 0,
                    "id": "de",
                    "matched": True,
                    "clauses": [
                        {
                            "operator": "eq",
                            "attribute": "country",
                            "values": ["DE"],
                            "negate": False,
                            "value": "DE",
                            "matched": True,
                            "segments": [],
                        }
                    ],
                }
            ],
            "targeting": None,
            "split": None,
        },
    }


def test_object_flag__served_value_is_a_copy_as_in_evaluation() -> None:
    flagset = build({"key": "o", "type": "object", "variants": {"a": {"k": [1]}}, "default_variant": "a"})
    explanation = explained(flagset, "o", {})
    explanation.result.value["k"].append(2)
    assert flagset.evaluate("o", None, {}).value == {"k": [1]}


# --- normal evaluation pays nothing ---


def reachable(fn: Callable[..., Any]) -> Iterator[Any]:
    """Every object reachable from ``fn`` through closures and the containers they hold."""
    seen: set[int] = set()
    stack: list[Any] = [fn]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        yield obj
        if isinstance(obj, FunctionType):
            stack.extend(cell.cell_contents for cell in obj.__closure__ or ())
        elif isinstance(obj, tuple | list | frozenset | set):
            stack.extend(obj)
        elif isinstance(obj, Mapping):
            stack.extend(obj.values())


EVERYTHING = prerequisite_flag(
    "f",
    ("p", "on"),
    rules=[
        {"id": "seg", "clauses": [{"operator": "segment_match", "values": ["s"]}], "variant": "on"},
        {
            "id": "many",
            "clauses": [COUNTRY_DE, PLAN_PRO, {"attribute": "a.b", "operator": "matches", "values": ["x"]}],
            "variant": "on",
        },
        {
            "id": "neg",
            "clauses": [{"attribute": "n", "operator": "lt", "values": [3], "negate": True}],
            "variant": "on",
        },
        {
            "id": "split",
            "clauses": [{"attribute": "n", "operator": "exists"}],
            "split": {"variations": [{"variant": "on", "weight": 10000}]},
        },
    ],
    default_split={"variations": [{"variant": "on", "weight": 1}], "weight_unit": "relative"},
)
NESTING_SEGMENT = {
    "key": "n",
    "rules": [{"clauses": [{"operator": "segment_match", "values": ["s"]}, COUNTRY_DE]}],
}


def recorders(fn: Callable[..., Any]) -> list[Any]:
    return [
        obj
        for obj in reachable(fn)
        if isinstance(obj, Tracer)
        or (isinstance(obj, FunctionType) and obj.__qualname__.startswith("Tracer."))
    ]


def test_compiled_without_a_tracer__holds_no_recorder() -> None:
    compiled = compile_flag(Flag.model_validate(EVERYTHING))
    assert compiled.evaluate is compiled.evaluate_in_chain
    assert compiled.evaluate.__qualname__ == "_with_prerequisites.<locals>.evaluate"
    assert recorders(compiled.evaluate) == []
    segment = compile_segment(Segment.model_validate(NESTING_SEGMENT))
    assert segment.matches.__qualname__ == "_nesting_segment.<locals>.matches"
    assert recorders(segment.matches) == []
    targeting = compile_flag(Flag.model_validate(flag(targeting={"$ref": "s"})))
    assert targeting.evaluate.__qualname__ == "targeting_evaluator.<locals>.evaluate"
    assert recorders(targeting.evaluate) == []


def test_compiled_with_a_tracer__is_wrapped_in_recorders() -> None:
    """The check above can fail: the same walk finds the recorders of a traced compile."""
    tracer = Tracer()
    compiled = compile_flag(Flag.model_validate(EVERYTHING), tracer)
    names = {getattr(obj, "__name__", None) for obj in recorders(compiled.evaluate)}
    assert {"traced_flag", "traced_rule", "traced_clause", "traced_split"} <= names
    segment = compile_segment(Segment.model_validate(NESTING_SEGMENT), tracer)
    assert {"traced_segment", "traced_rule", "traced_clause"} <= {
        getattr(obj, "__name__", None) for obj in recorders(segment.matches)
    }


# --- property: explanations agree with evaluation ---


def property_flagset() -> FlagSet:
    """The reference document's flags (every operator family, negations, nested segments) and more:
    prerequisites (a chain), splits (basis points, relative, by a nested attribute), JsonLogic with $ref."""
    document = json.loads(NATIVE_DOCUMENT.read_text())
    document["segments"] += [
        {"key": "pro", "excluded": ["u-3"], "rules": [{"clauses": [PLAN_PRO]}]},
        {
            "key": "pro-staff",
            "rules": [{"clauses": [{"operator": "segment_match", "values": ["pro", "staff"]}]}],
        },
    ]
    document["flags"] += [
        flag(
            "base",
            salt="b",
            default_split={
                "variations": [{"variant": "on", "weight": 6000}, {"variant": "off", "weight": 4000}]
            },
        ),
        prerequisite_flag(
            "mid",
            ("base", "on"),
            rules=[
                {
                    "id": "old",
                    "clauses": [{"attribute": "app_version", "operator": "semver_lt", "values": ["1.0"]}],
                    "variant": "off",
                }
            ],
        ),
        {
            **prerequisite_flag("gated", ("mid", "on"), ("static", "on")),
            "type": "string",
            "variants": {"a": "A", "b": "B", "c": "C"},
            "off_variant": "c",
            "default_variant": None,
            "salt": "g",
            "rules": [
                {
                    "id": "pro",
                    "clauses": [{"operator": "segment_match", "values": ["pro-staff"]}],
                    "split": {
                        "variations": [{"variant": "a", "weight": 1}, {"variant": "b", "weight": 3}],
                        "weight_unit": "relative",
                        "bucket_by": "user.tier",
                    },
                },
                {
                    "id": "late",
                    "clauses": [{"attribute": "signup", "operator": "after", "values": ["2025-01-01"]}],
                    "variant": "b",
                },
                {
                    "id": "early",
                    "clauses": [
                        {"attribute": "signup", "operator": "before", "values": ["2020-01-01"]},
                        {"attribute": "email", "operator": "matches", "values": ["^[a-c]"]},
                    ],
                    "variant": "a",
                },
            ],
            "default_split": {
                "variations": [
                    {"variant": "a", "weight": 5000},
                    {"variant": "b", "weight": 2500},
                    {"variant": "c", "weight": 2500},
                ],
                "bucket_by": "org",
            },
        },
        flag(
            "json", targeting={"if": [{"$ref": "pro-staff"}, "on", {">": [{"var": "age"}, 40]}, "off", None]}
        ),
    ]
    return load_flagset(document)


PROPERTY_FLAGSET = property_flagset()
SALTS = {"base": "b", "gated": "g"}

texts = st.sampled_from(["", "admin", "bob@corp.com", "amy@beta.io", "cat@flagyard.dev", "x@corp.org", "u-3"])
versions = st.sampled_from(["0.9", "1.4.9", "1.5", "2.0.0", "v2.1.0", "3", "nope"])
times = st.sampled_from(["2019-05-01", "2022-02-02T10:00:00Z", "2026-01-01", 1_500_000_000, 1_800_000_000])
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-5, 120), st.floats(-5, 120, allow_nan=False), texts
)
contexts = st.fixed_dictionaries(
    {},
    optional={
        "targeting_key": st.one_of(
            st.sampled_from(["u-included", "u-excluded", "u-3", "u-4"]), st.text(max_size=6)
        ),
        "country": st.one_of(st.sampled_from(["NL", "BE", "DE", "FR"]), scalars),
        "email": st.one_of(texts, scalars),
        "plan": st.one_of(st.sampled_from(["free", "pro"]), scalars),
        "role": st.sampled_from(["admin", "user"]),
        "age": scalars,
        "score": scalars,
        "app_version": st.one_of(versions, scalars),
        "tags": st.one_of(st.lists(st.sampled_from(["vip", "gold", "new"]), max_size=3), scalars),
        "user": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={"tier": st.one_of(st.sampled_from(["gold", "silver"]), st.integers(0, 9), scalars)},
            ),
            scalars,
        ),
        "signup": st.one_of(times, scalars),
        "org": st.one_of(st.sampled_from(["acme", "globex"]), st.integers(0, 10**6), scalars),
    },
)


def check_rules(rules: list[RuleTrace]) -> None:
    """Rules in order until the first that matched; a rule matched iff all its clauses did, and stopped
    at the first that did not."""
    assert [r.index for r in rules] == sorted(r.index for r in rules)
    assert not any(r.matched for r in rules[:-1])
    for rule in rules:
        assert rule.clauses
        assert all(c.matched for c in rule.clauses[:-1])
        assert rule.matched is rule.clauses[-1].matched
        for clause in rule.clauses:
            for segment in clause.segments:
                check_segment(segment)
            if clause.operator == "segment_match":
                hits = [s.matched for s in clause.segments]
                assert not any(hits[:-1])
                assert clause.matched is (bool(hits and hits[-1]) != clause.negate)


def check_segment(segment: SegmentTrace) -> None:
    check_rules(segment.rules)
    if segment.decision == "rule":
        assert segment.matched
        assert segment.rules[-1].matched
        assert segment.rule == segment.rules[-1].index
    elif segment.decision == "no_rule":
        assert not segment.matched
        assert not any(r.matched for r in segment.rules)
    else:
        assert segment.rules == []
        assert segment.matched is (segment.decision == "included")


def check_flag(trace: FlagTrace, reason: str, variant: str | None, rule_id: str | None) -> None:
    assert (trace.reason, trace.variant) == (reason, variant)
    check_rules(trace.rules)
    states = [p.state for p in trace.prerequisites]
    met = [p.met for p in trace.prerequisites]
    first_unmet = met.index(False) if False in met else len(met)
    assert all(s == "evaluated" for s in states[:first_unmet])
    assert all(s == "not_evaluated" for s in states[first_unmet + 1 :])
    for p in trace.prerequisites:
        assert (p.trace is not None) is (p.state == "evaluated")
        if p.trace is not None:
            assert p.met is (p.trace.variant == p.variant)
            check_flag(p.trace, p.trace.reason, p.trace.variant, None)
    if trace.served_by == "prerequisite":
        assert first_unmet < len(met)
        assert trace.rules == []
        assert trace.split is None
    elif trace.served_by not in ("off", "error"):
        assert first_unmet == len(met)
    last_matched = trace.rules[-1] if trace.rules and trace.rules[-1].matched else None
    if trace.served_by == "rule":
        assert last_matched is not None
        assert reason in ("TARGETING_MATCH", "SPLIT")
    if trace.served_by == "fallthrough":
        assert last_matched is None
        assert reason in ("STATIC", "DEFAULT", "SPLIT")
    if last_matched is not None and rule_id is not None:
        assert rule_id == last_matched.id
    if trace.split is not None:
        split = trace.split
        assert (split.bucket is None) is (split.value is None)
        if reason == "SPLIT":
            assert split.variant == variant
            assert owner(split) == variant
        else:
            assert (reason, split.variant, split.bucket) == ("ERROR", None, None)


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(context=contexts)
def test_property__explanations_agree_with_evaluation(context: dict[str, Any]) -> None:
    for key in PROPERTY_FLAGSET.flags:
        expected = PROPERTY_FLAGSET.evaluate(key, "d", context)
        explanation = explain(PROPERTY_FLAGSET, key, context, "d")
        assert explanation.result == expected
        trace = explanation.trace
        assert trace is not None
        check_flag(trace, str(expected.reason), expected.variant, expected.rule_id)
        assert (trace.served_by == "rule") is (
            expected.reason is not Reason.ERROR and expected.rule_id is not None
        )
        if trace.split is not None and trace.split.bucket is not None and key in SALTS:
            assert trace.split.value is not None
            assert trace.split.bucket == bucket(SALTS[key], key, trace.split.value, trace.split.total)
        json.dumps(explanation.to_dict())
