"""The fast path for JsonLogic targeting (rule_engine/fastlogic.py) against the generic path it stands in
for: the same result, error messages included, on random contexts, for every shape it compiles."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from flagyard.rule_engine import FlagType, export_flagd, load_flagd
from flagyard.rule_engine.compiler import CompiledFlag, CompiledSegment, compile_segment
from flagyard.rule_engine.fastlogic import compile_fast
from flagyard.rule_engine.jsonlogic import compile_jsonlogic
from flagyard.rule_engine.model import Segment
from flagyard.rule_engine.result import EvaluationResult, Reason
from flagyard.rule_engine.targeting import compile_targeting, targeting_evaluator

VARIANTS = {"on": "on", "off": "off", "true": "T", "false": "F", "1": "one", "2.5": "x"}
VAR = {"var": "a"}

SHAPES: dict[str, Any] = {
    "reference": {
        "if": [
            {
                "or": [
                    {"in": [{"var": "targetingKey"}, ["u-vip"]]},
                    {"in": [{"var": "country"}, ["DE", "AT"]]},
                ]
            },
            "on",
            {"ends_with": [{"var": "email"}, "@example.com"]},
            "on",
            {">=": [{"var": "age"}, 65]},
            "off",
            {"fractional": [{"cat": ["s:k:", {"var": "targetingKey"}]}, ["on", 2500], ["off", 7500]]},
        ]
    },
    **{
        f"compare {op} {const!r}": {"if": [{op: [VAR, const]}, "on", "off"]}
        for op in ("==", "!=", "===", "!==", "<", "<=", ">", ">=")
        for const in (1, 2.5, "1", "b", True, None)
    },
    **{
        f"compare {op} const first": {"if": [{op: [2, {"var": "a"}]}, "on", {op: ["b", VAR]}, "1", "off"]}
        for op in ("==", "!==", "<", ">=")
    },
    "in mixed list": {"if": [{"in": [VAR, [1, "a", True, None, 2.5]]}, "on", "off"]},
    "in empty list": {"if": [{"in": [VAR, []]}, "on", "off"]},
    "in string": {"if": [{"in": [VAR, "abc1"]}, "on", {"in": ["b", {"var": "b"}]}, "true", "off"]},
    "string tests": {
        "if": [
            {"starts_with": [VAR, "a"]},
            "on",
            {"ends_with": [{"var": "b"}, "1"]},
            "1",
            {"starts_with": [{"var": "user.plan"}, "p"]},
            "true",
            None,
        ]
    },
    **{
        f"sem_ver {op}": {"if": [{"sem_ver": [VAR, op, "1.2.3"]}, "on", "off"]}
        for op in ("=", "!=", "<", "<=", ">", ">=", "^", "~")
    },
    "logic": {
        "if": [
            {"and": [VAR, {"!": {"var": "b"}}]},
            "on",
            {"or": [{"!!": [{"var": "user.plan"}]}, {"!": [{"in": [{"var": "b"}, ["x"]]}]}]},
            "off",
            {"and": [{"var": "targetingKey"}]},
            "true",
        ]
    },
    "truthy constants": {"if": [0, "on", "", "off", "1", "true", "off"]},
    "outcomes that are no variant": {"if": [VAR, "nope", {"var": "b"}, 3, {"var": "c"}, True, 2.5]},
    "boolean outcomes": {"if": [VAR, False, 1]},
    "nested if": {"if": [VAR, {"if": [{"var": "b"}, "on", {"?:": [{"var": "c"}, "off", None]}]}, "1"]},
    "export_flagd's number and string tests": {
        "if": [
            {
                "and": [
                    {"!==": [{"cat": [VAR]}, VAR]},
                    {"!": [{"in": [VAR, [True, False, None]]}]},
                    {"in": [VAR, {"merge": [VAR]}]},
                    {"!==": [{"cat": [VAR]}, "[object Object]"]},
                ]
            },
            "on",
            {"===": [{"cat": [{"var": "b"}]}, {"var": "b"}]},
            "1",
            {"!": {"substr": [{"var": "c"}, 3]}},
            "true",
            "off",
        ]
    },
    "fractional unseeded": {"fractional": [["on", 1], ["off", 1], ["1", 2]]},
    "fractional by a var": {"fractional": [{"var": "a"}, ["on", 50], ["off", 50]]},
    "fractional by cat": {"fractional": [{"cat": [1, "-", {"var": "a"}, {"var": "b"}]}, ["on"], ["nope"]]},
    "fractional with no variant": {"if": [VAR, {"fractional": [["on", 1], [None, 1], [True, 1]]}, "off"]},
}

SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(
        ["", "a", "b", "1", "2.5", "abc1", "DE", "FR", "u-vip", "x@example.com", "1.2.3", "v1.3"]
    ),
    st.sampled_from(["1.2.4-rc.1", "2", "1.2", "true", "[object Object]", "pa", "65", "AT", "u-vip"]),
    st.text(max_size=4),
)
VALUES = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=3),
    st.dictionaries(st.sampled_from(["plan", "x"]), SCALARS, max_size=2),
)
KEYS = ("a", "b", "c", "country", "email", "age", "user", "targeting_key", "targetingKey")
# (country and email hold the scalars and lists above too: "DE", "x@example.com", ...)
CONTEXTS = st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=6)


def evaluators(expr: Any, *, with_segments: bool = False) -> tuple[Any, Any]:
    """The flag's evaluation through the fast path and through the generic one, built alike."""
    rule = compile_targeting(expr)

    def result(name: str | None, reason: Reason) -> EvaluationResult:
        value = VARIANTS[name] if name is not None else None
        return EvaluationResult(value, name, reason, None, None, None, {"m": 1}, 3)

    matches = {name: result(name, Reason.TARGETING_MATCH) for name in VARIANTS}
    args = ("flag", rule, matches, result("off", Reason.DEFAULT), {"m": 1}, 3)
    fast = targeting_evaluator(*args, with_segments=with_segments, expr=expr)
    generic = targeting_evaluator(*args, with_segments=with_segments)
    assert fast is not generic
    return fast, generic


def clause(attribute: str, operator: str, values: list[Any], negate: bool = False) -> dict[str, Any]:
    return {"attribute": attribute, "operator": operator, "values": values, "negate": negate}


NATIVE_RULES: list[list[dict[str, Any]]] = [
    [clause("a", "in", ["a", "b", 1, True])],
    [clause("a", "not_in", ["a", "1"])],
    [clause("a", "eq", [1]), clause("b", "neq", ["x"])],
    [clause("a", "contains", ["b"])],
    [clause("a", "starts_with", ["a", "1."])],
    [clause("email", "ends_with", ["@example.com"], negate=True)],
    [clause("age", "gte", [65])],
    [clause("age", "lt", [2.5])],
    [clause("a", "semver_gte", ["1.2.3"])],
    [clause("a", "exists", [])],
    [clause("user.plan", "eq", ["pa"])],
    [{"operator": "segment_match", "values": ["beta"]}],
    [{"operator": "segment_match", "values": ["beta"], "negate": True}, clause("c", "gt", [0])],
]
EXPORTED = export_flagd(
    {
        "flags": [
            {
                "key": f"f{i}",
                "type": "string",
                "variants": {"on": "on", "off": "off"},
                "salt": "s",
                "rules": [{"id": "r", "clauses": clauses, "variant": "on"}],
                "default_split": {
                    "variations": [{"variant": "on", "weight": 2500}, {"variant": "off", "weight": 7500}]
                },
            }
            for i, clauses in enumerate(NATIVE_RULES)
        ],
        "segments": [
            {
                "key": "beta",
                "included": ["u-vip"],
                "excluded": ["b"],
                "rules": [{"clauses": [clause("country", "in", ["DE", "AT"])]}],
            }
        ],
    }
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(context=CONTEXTS)
@example({"age": 10**5000, "email": 10**5000, "a": float("nan"), "targeting_key": 10**5000})
@example({"age": float("nan"), "a": [1, [2]], "user": {"plan": ["pa"]}, "targeting_key": 3})
def test_fastlogic__export_flagd_shapes__agree_with_the_generic_path(context: dict[str, Any]) -> None:
    """What export_flagd writes for each native operator (guards, ``some`` over ``merge``, ``$ref`` to
    ``$evaluators``, the split's bucketable test) takes the fast path and answers as the generic one."""
    evaluators = EXPORTED["$evaluators"]
    for key, flag in EXPORTED["flags"].items():
        expr = flag["targeting"]

        def result(name: str | None, reason: Reason) -> EvaluationResult:
            return EvaluationResult(name, name, reason, None, None, None, {}, 0)

        matches = {"on": result("on", Reason.TARGETING_MATCH), "off": result("off", Reason.TARGETING_MATCH)}
        args = (
            key,
            compile_jsonlogic(expr, evaluators=evaluators),
            matches,
            result("off", Reason.DEFAULT),
            {},
            0,
        )
        fast = targeting_evaluator(*args, with_segments=False, expr=expr, evaluators=evaluators)
        generic = targeting_evaluator(*args, with_segments=False)
        assert compile_fast(expr, key, lambda v: v, lambda e: e, with_segments=False, evaluators=evaluators)
        assert fast(context, STORE) == generic(context, STORE), key


@dataclass
class Store:
    flags: dict[str, CompiledFlag] = field(default_factory=dict)
    segments: dict[str, CompiledSegment] = field(default_factory=dict)


STORE = Store()


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_fastlogic__each_shape__is_compiled_by_the_fast_path(name: str) -> None:
    assert compile_fast(SHAPES[name], "flag", lambda v: v, lambda e: e, with_segments=False) is not None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(context=CONTEXTS)
@example({"a": float("nan"), "b": float("inf")})
@example({"a": [1, "a"], "b": {"plan": "x"}, "c": [], "targeting_key": 7})
@example({"a": True, "b": "1", "c": "abcd", "targetingKey": "u-vip"})
@example({"a": 2.0, "b": None, "user": {"plan": "pa"}, "targeting_key": None, "targetingKey": 1.5})
@example({"a": 10**5000, "b": [10**5000], "c": 10**5000})  # past Python's digit limit: str() fails
@example({"b": 10**5000, "c": 10**5000})
def test_fastlogic__random_contexts__fast_and_generic_paths_agree(context: dict[str, Any]) -> None:
    for name, expr in SHAPES.items():
        fast, generic = evaluators(expr)
        assert fast(context, STORE) == generic(context, STORE), name


@settings(max_examples=200, deadline=None)
@given(context=CONTEXTS)
def test_fastlogic__segment_refs__match_as_the_generic_path_does(context: dict[str, Any]) -> None:
    """Native targeting's ``{"$ref": segment}``: the store's segment, or nobody when it is missing."""
    segment = Segment.model_validate(
        {
            "key": "beta",
            "included": ["u-vip"],
            "rules": [{"clauses": [{"attribute": "a", "operator": "in", "values": ["a", "b"]}]}],
        }
    )
    store = Store(segments={"beta": compile_segment(segment)})
    expr = {"if": [{"$ref": "beta"}, "on", {"!": {"$ref": "gone"}}, "1", "off"]}
    fast, generic = evaluators(expr, with_segments=True)
    assert fast(context, store) == generic(context, store)


@pytest.mark.parametrize(
    "expr",
    [
        {"if": [{"some": [{"var": "a"}, {"==": [{"var": ""}, 1]}]}, "on", "off"]},
        {"if": [{">": [{"var": "$flagd.timestamp"}, 0]}, "on", "off"]},
        {"if": [{"==": [{"var": ["a", 1]}, 1]}, "on", "off"]},
        {"if": [{"missing": ["a"]}, "on", "off"]},
        {"if": [{"<": [0, {"var": "a"}, 5]}, "on", "off"]},
        {"var": "a"},
        {"if": [{"$ref": "beta"}, "on", "off"]},  # flagd: an evaluator reference
    ],
)
def test_fastlogic__other_shapes__stay_on_the_generic_path(expr: Any) -> None:
    assert compile_fast(expr, "flag", lambda v: v, lambda e: e, with_segments=False) is None


def test_fastlogic__flagd_flag__serves_what_its_targeting_says() -> None:
    """Through load_flagd: the reference flag's targeting takes the fast path and serves flagd's
    results (TARGETING_MATCH from fractional, DEFAULT for null, PARSE_ERROR-free)."""
    flagset = load_flagd(
        {
            "flags": {
                "f": {
                    "state": "ENABLED",
                    "variants": VARIANTS,
                    "defaultVariant": "off",
                    "targeting": SHAPES["reference"],
                },
                "g": {
                    "state": "ENABLED",
                    "variants": VARIANTS,
                    "defaultVariant": "1",
                    "targeting": SHAPES["logic"],
                },
            }
        }
    )
    hit = flagset.evaluate("f", "d", {"country": "DE"}, FlagType.STRING)
    assert (hit.value, hit.variant, hit.reason) == ("on", "on", Reason.TARGETING_MATCH)
    split = {
        flagset.evaluate("f", "d", {"targeting_key": f"u{i}"}, FlagType.STRING).variant for i in range(64)
    }
    assert split == {"on", "off"}
    missed = flagset.evaluate("g", "d", {"b": "x"}, FlagType.STRING)
    assert (missed.value, missed.reason) == ("one", Reason.DEFAULT)
