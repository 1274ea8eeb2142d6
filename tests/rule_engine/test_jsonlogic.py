"""The JsonLogic compiler: every standard operator, truthiness, compile errors and flagd's custom operators.

Fractional bucketing is checked against an independent, from-scratch MurmurHash3 (x86, 32-bit) written
here from the published algorithm, itself checked against well-known reference hashes, so the expected
buckets never come from the code under test.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import pytest

from flagyard.rule_engine import DefinitionError
from flagyard.rule_engine.jsonlogic import (
    JsonLogicCompiler,
    apply_jsonlogic,
    compile_jsonlogic,
    js_str,
    loose_equals,
    parse_flagd_version,
    strict_equals,
    to_number,
    truthy,
)
from flagyard.rule_engine.operators import parse_semver

# --- an independent MurmurHash3_x86_32 ------------------------------------------------------------------


def _rotl32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & 0xFFFFFFFF


def _fmix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & 0xFFFFFFFF
    return h ^ (h >> 16)


def reference_murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 as Austin Appleby published it, unsigned."""
    c1, c2 = 0xCC9E2D51, 0x1B873593
    h = seed & 0xFFFFFFFF
    whole = len(data) - len(data) % 4
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = _rotl32((k * c1) & 0xFFFFFFFF, 15)
        h ^= (k * c2) & 0xFFFFFFFF
        h = (_rotl32(h, 13) * 5 + 0xE6546B64) & 0xFFFFFFFF
    tail = data[whole:]
    if tail:
        k = int.from_bytes(tail, "little")
        k = _rotl32((k * c1) & 0xFFFFFFFF, 15)
        h ^= (k * c2) & 0xFFFFFFFF
    return _fmix32(h ^ len(data))


def expected_bucket(bucket_by: str, weights: list[int]) -> int:
    """flagd's documented bucketing: ``(murmur3(utf8) * total) >> 32``, then cumulative weights."""
    point = (reference_murmur3_32(bucket_by.encode("utf-8")) * sum(weights)) >> 32
    upper = 0
    for index, weight in enumerate(weights):
        upper += weight
        if point < upper:
            return index
    raise AssertionError("point past the last bucket")


MURMUR3_REFERENCE = [
    (b"", 0, 0),
    (b"", 1, 0x514E28B7),
    (b"", 0xFFFFFFFF, 0x81F16F39),
    (b"\x00\x00\x00\x00", 0, 0x2362F9DE),
    (b"\xff\xff\xff\xff", 0, 0x76293B50),
    (b"!Ce\x87", 0, 0xF55B516B),
    (b"!Ce\x87", 0x5082EDEE, 0x2362F9DE),
    (b"a", 0x9747B28C, 0x7FA09EA6),
    (b"ab", 0x9747B28C, 0x74875592),
    (b"abc", 0x9747B28C, 0xC84A62DD),
    (b"abcd", 0x9747B28C, 0xF0478627),
    (b"aaaa", 0x9747B28C, 0x5A97808A),
    (b"Hello, world!", 0x9747B28C, 0x24884CBA),
    (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
    # flagd-testbed's hash edge keys: MurmurHash3 preimages of the bucketing boundaries
    (b"ejOoVL", 0, 0),
    (b"bY9fO-", 0, 1),
    (b"SI7p-", 0, 2**31 - 1),
    (b"6LvT0", 0, 2**31),
    (b"ceQdGm", 0, 2**32 - 1),
]


@pytest.mark.parametrize(("data", "seed", "expected"), MURMUR3_REFERENCE)
def test_reference_murmur3__published_vector__matches(data: bytes, seed: int, expected: int) -> None:
    assert reference_murmur3_32(data, seed) == expected


# --- data access ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "data", "expected"),
    [
        ({"var": "a"}, {"a": 1}, 1),
        ({"var": ["a"]}, {"a": 1}, 1),
        ({"var": "a.b.c"}, {"a": {"b": {"c": "deep"}}}, "deep"),
        ({"var": "a.1"}, {"a": [10, 20]}, 20),
        ({"var": 1}, ["x", "y"], "y"),
        ({"var": ["missing", "fallback"]}, {}, "fallback"),
        ({"var": ["a.b", 0]}, {"a": None}, 0),
        ({"var": ["a", "fallback"]}, {"a": None}, None),
        ({"var": "a.5"}, {"a": [1]}, None),
        ({"var": "a.b"}, {"a": "text"}, None),
        ({"var": ""}, {"whole": True}, {"whole": True}),
        ({"var": []}, [1, 2], [1, 2]),
        ({"var": None}, 7, 7),
        ({"var": {"cat": ["us", "er"]}}, {"user": "ann"}, "ann"),
        ({"var": [{"cat": ["no", "pe"]}, {"cat": ["de", "fault"]}]}, {}, "default"),
    ],
)
def test_var__path_forms__resolve_like_jsonlogic(rule: Any, data: Any, expected: Any) -> None:
    assert apply_jsonlogic(rule, data) == expected


def test_var__non_dict_mapping__is_traversed() -> None:
    from types import MappingProxyType

    assert apply_jsonlogic({"var": "a.b"}, MappingProxyType({"a": MappingProxyType({"b": 3})})) == 3


@pytest.mark.parametrize(
    ("rule", "data", "expected"),
    [
        ({"missing": ["a", "b"]}, {"a": 1}, ["b"]),
        ({"missing": ["a", "b"]}, {"a": "", "b": 0}, ["a"]),
        ({"missing": [["x.y", "z"]]}, {"x": {"y": 1}}, ["z"]),
        ({"missing": {"merge": [["a"], ["b"]]}}, {}, ["a", "b"]),
        ({"missing_some": [1, ["a", "b", "c"]]}, {"a": "apple"}, []),
        ({"missing_some": [2, ["a", "b", "c"]]}, {"a": "apple"}, ["b", "c"]),
    ],
)
def test_missing__keys_absent_or_empty__are_listed(rule: Any, data: Any, expected: Any) -> None:
    assert apply_jsonlogic(rule, data) == expected


# --- logic ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"if": []}, None),
        ({"if": ["only"]}, "only"),
        ({"if": [True, "yes"]}, "yes"),
        ({"if": [False, "yes"]}, None),
        ({"if": [True, "yes", "no"]}, "yes"),
        ({"if": [0, "yes", "no"]}, "no"),
        ({"if": [False, "a", True, "b", "c"]}, "b"),
        ({"if": [False, "a", False, "b", "c"]}, "c"),
        ({"if": [False, "a", False, "b"]}, None),
        ({"?:": [[], "yes", "no"]}, "no"),
        ({"or": [False, 0, "x", "y"]}, "x"),
        ({"or": [False, 0]}, 0),
        ({"or": []}, None),
        ({"and": [1, "x", 0, "y"]}, 0),
        ({"and": [1, "x"]}, "x"),
        ({"and": []}, None),
        ({"!": [[]]}, True),
        ({"!": "text"}, False),
        ({"!": []}, True),
        ({"!!": ["0"]}, True),
        ({"!!": [[]]}, False),
        ({"!!": []}, False),
    ],
)
def test_logic__operands__give_jsonlogic_results(rule: Any, expected: Any) -> None:
    assert apply_jsonlogic(rule) == expected


def test_if__untaken_branch__is_never_evaluated() -> None:
    calls: list[str] = []
    compiler = JsonLogicCompiler()
    rule = compiler.compile({"if": [{"var": "flag"}, {"var": "then"}, {"var": "else"}]})

    class Spy(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            calls.append(key)
            return super().get(key, default)

    assert rule(Spy({"flag": True, "then": 1, "else": 2})) == 1
    assert calls == ["flag", "then"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, False),
        (False, False),
        (True, True),
        (0, False),
        (0.0, False),
        (-0.0, False),
        (float("nan"), False),
        (1, True),
        (-1.5, True),
        ("", False),
        ("0", True),
        ("false", True),
        (" ", True),
        ([], False),
        ([0], True),
        ([[]], True),
        ({}, True),
        ({"a": 0}, True),
    ],
)
def test_truthy__json_value__follows_jsonlogic_rules(value: Any, expected: bool) -> None:
    assert truthy(value) is expected
    assert apply_jsonlogic({"!!": [{"var": "v"}]}, {"v": value}) is expected


# --- comparison -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "loose", "strict"),
    [
        (1, 1, True, True),
        (1, 1.0, True, True),
        (1, "1", True, False),
        (0, "", True, False),
        ("1", True, True, False),
        (1, True, True, False),
        (2, True, False, False),
        ("abc", "abc", True, True),
        (None, None, True, True),
        (None, 0, False, False),
        (None, False, False, False),
        (None, "", False, False),
        ([], 0, True, False),
        ([1], "1", True, False),
        ([1, 2], "1,2", True, False),
        ([], [], False, False),
        ({}, "[object Object]", True, False),
        ("0x10", 16, True, False),
        (" 12 ", 12, True, False),
        ("12px", 12, False, False),
        (float("nan"), float("nan"), False, False),
    ],
)
def test_equality__value_pairs__match_javascript(a: Any, b: Any, loose: bool, strict: bool) -> None:
    assert loose_equals(a, b) is loose
    assert loose_equals(b, a) is loose
    assert strict_equals(a, b) is strict
    data = {"a": a, "b": b}
    assert apply_jsonlogic({"==": [{"var": "a"}, {"var": "b"}]}, data) is loose
    assert apply_jsonlogic({"!=": [{"var": "a"}, {"var": "b"}]}, data) is not loose
    assert apply_jsonlogic({"===": [{"var": "a"}, {"var": "b"}]}, data) is strict
    assert apply_jsonlogic({"!==": [{"var": "a"}, {"var": "b"}]}, data) is not strict


def test_strict_equals__same_array_object__is_equal() -> None:
    shared = [1]
    assert strict_equals(shared, shared)
    assert loose_equals(shared, shared)


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"<": [1, 2]}, True),
        ({"<": [2, 2]}, False),
        ({"<=": [2, 2]}, True),
        ({">": [3, 2]}, True),
        ({">=": [2, 3]}, False),
        ({"<": [1, 5, 10]}, True),
        ({"<": [1, 10, 10]}, False),
        ({"<=": [1, 10, 10]}, True),
        ({"<=": [1, 11, 10]}, False),
        ({">": [10, 5, 1]}, True),
        ({">=": [10, 10, 11]}, False),
        ({"<": ["2", 10]}, True),
        ({"<": ["abc", "abd"]}, True),
        ({"<": ["10", "9"]}, True),
        ({"<": [None, 1]}, True),
        ({"<": ["x", 1]}, False),
        ({">=": ["x", 1]}, False),
        ({"<": [True, 2]}, True),
        ({"<": [[2], 3]}, True),
        ({"<": [1]}, False),
    ],
)
def test_comparison__operands__coerce_like_javascript(rule: Any, expected: bool) -> None:
    assert apply_jsonlogic(rule) is expected


# --- arithmetic -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"+": [1, 2, 3]}, 6),
        ({"+": [1, "2.5"]}, 3.5),
        ({"+": ["3"]}, 3),
        ({"+": ["12px", 1]}, 13),
        ({"+": []}, 0),
        ({"+": ["x"]}, None),
        ({"+": [None]}, None),
        ({"-": [5, 3]}, 2),
        ({"-": [2]}, -2),
        ({"-": ["5", "1"]}, 4),
        ({"-": ["x", 1]}, None),
        ({"*": [2, 3, 4]}, 24),
        ({"*": ["2", 1.5]}, 3),
        ({"*": []}, None),
        ({"/": [4, 2]}, 2),
        ({"/": [1, 4]}, 0.25),
        ({"/": [1, 0]}, None),
        ({"/": [1]}, None),
        ({"%": [7, 3]}, 1),
        ({"%": [-7, 3]}, -1),
        ({"%": [7, -3]}, 1),
        ({"%": [7.5, 2]}, 1.5),
        ({"%": [1, 0]}, None),
        ({"max": [1, 3, 2]}, 3),
        ({"max": ["4", 3]}, 4),
        ({"max": []}, None),
        ({"max": [1, "x"]}, None),
        ({"min": [1, 3, -2.5]}, -2.5),
        ({"min": []}, None),
    ],
)
def test_arithmetic__operands__give_javascript_numbers(rule: Any, expected: Any) -> None:
    result = apply_jsonlogic(rule)
    assert result == expected
    assert type(result) is type(expected)


def test_to_number__long_digit_string__does_not_raise() -> None:
    assert to_number("9" * 5000) == math.inf


# --- arrays ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "data", "expected"),
    [
        ({"map": [{"var": "xs"}, {"*": [{"var": ""}, 2]}]}, {"xs": [1, 2, 3]}, [2, 4, 6]),
        ({"map": [{"var": "nope"}, {"var": ""}]}, {}, []),
        ({"filter": [{"var": "xs"}, {">": [{"var": ""}, 1]}]}, {"xs": [1, 2, 3]}, [2, 3]),
        ({"filter": ["text", True]}, {}, []),
        (
            {"reduce": [{"var": "xs"}, {"+": [{"var": "current"}, {"var": "accumulator"}]}, 10]},
            {"xs": [1, 2, 3]},
            16,
        ),
        ({"reduce": [{"var": "nope"}, {"var": "current"}, "initial"]}, {}, "initial"),
        ({"reduce": [[1, 2], {"var": "current"}]}, {}, 2),
        ({"all": [[1, 2], {">": [{"var": ""}, 0]}]}, {}, True),
        ({"all": [[1, -2], {">": [{"var": ""}, 0]}]}, {}, False),
        ({"all": [[], True]}, {}, False),
        ({"none": [[1, 2], {"<": [{"var": ""}, 0]}]}, {}, True),
        ({"none": [[], True]}, {}, True),
        ({"none": [[1, -2], {"<": [{"var": ""}, 0]}]}, {}, False),
        ({"some": [[1, -2], {"<": [{"var": ""}, 0]}]}, {}, True),
        ({"some": [[], True]}, {}, False),
        ({"some": [{"var": "scalar"}, True]}, {"scalar": 1}, False),
        ({"merge": [[1, 2], 3, [[4]]]}, {}, [1, 2, 3, [4]]),
        ({"merge": []}, {}, []),
        ({"merge": [{"var": "a"}]}, {"a": None}, [None]),
        ({"in": ["b", ["a", "b"]]}, {}, True),
        ({"in": [1, ["1", 2]]}, {}, False),
        ({"in": [1, [1.0]]}, {}, True),
        ({"in": [True, [1]]}, {}, False),
        ({"in": [{"var": "x"}, ["a", "b"]]}, {"x": 5}, False),
        ({"in": ["Spring", "Springfield"]}, {}, True),
        ({"in": ["field", "Spring"]}, {}, False),
        ({"in": [1, "a1"]}, {}, True),
        ({"in": ["", ""]}, {}, False),
        ({"in": ["a", None]}, {}, False),
        ({"in": ["a", 5]}, {}, False),
    ],
)
def test_array_and_membership_ops__inputs__give_jsonlogic_results(
    rule: Any, data: Any, expected: Any
) -> None:
    assert apply_jsonlogic(rule, data) == expected


def test_map__inner_var__is_relative_to_the_element() -> None:
    rule = {"map": [{"var": "people"}, {"var": "name"}]}
    assert apply_jsonlogic(rule, {"people": [{"name": "ann"}, {"name": "bob"}], "name": "x"}) == [
        "ann",
        "bob",
    ]


# --- strings --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"cat": ["I love", " pie"]}, "I love pie"),
        ({"cat": ["a", 1, 2.5, 3.0, True, None, [1, [2, None]]]}, "a12.53truenull1,2,"),
        ({"cat": []}, ""),
        ({"cat": "solo"}, "solo"),
        ({"substr": ["jsonlogic", 4]}, "logic"),
        ({"substr": ["jsonlogic", -5]}, "logic"),
        ({"substr": ["jsonlogic", 1, 3]}, "son"),
        ({"substr": ["jsonlogic", 4, -2]}, "log"),
        ({"substr": ["jsonlogic", 0, -20]}, ""),
        ({"substr": ["jsonlogic", 20]}, ""),
        ({"substr": ["jsonlogic", -20, 2]}, "js"),
        ({"substr": [12345, 1, 2]}, "23"),
        ({"substr": ["abc", 1, None]}, ""),
        ({"log": ["passes through"]}, "passes through"),
        ({"log": {"cat": ["a", "b"]}}, "ab"),
    ],
)
def test_string_ops__inputs__give_jsonlogic_results(rule: Any, expected: Any) -> None:
    assert apply_jsonlogic(rule) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "null"),
        (True, "true"),
        (1.0, "1"),
        (0.5, "0.5"),
        (float("inf"), "Infinity"),
        ({}, "[object Object]"),
    ],
)
def test_js_str__value__renders_like_javascript_string(value: Any, expected: str) -> None:
    assert js_str(value) == expected


def test_literal_array__with_rules__evaluates_each_element() -> None:
    assert apply_jsonlogic([1, {"var": "a"}, [{"var": "b"}]], {"a": 2, "b": 3}) == [1, 2, [3]]


def test_literal_scalar_and_empty_object__are_returned_as_is() -> None:
    assert apply_jsonlogic("text") == "text"
    assert apply_jsonlogic({}) == {}


# --- compile errors -------------------------------------------------------------------------------------


def _issues(expr: Any, **kwargs: Any) -> list[tuple[str, str]]:
    with pytest.raises(DefinitionError) as caught:
        compile_jsonlogic(expr, **kwargs)
    return [(i.path, i.message) for i in caught.value.issues]


def test_compile__unknown_operator__reports_pointer_of_the_node() -> None:
    issues = _issues({"if": [{"and": [True, {"regex": ["a", "b"]}]}, "x", None]}, path="/flags/f/targeting")
    assert issues == [("/flags/f/targeting/if/0/and/1", "unknown operator 'regex'")]


def test_compile__several_problems__reports_every_one() -> None:
    issues = _issues({"or": [{"nope": 1}, {"starts_with": ["a"]}, {"a": 1, "b": 2}]})
    assert [path for path, _ in issues] == ["/or/0", "/or/1/starts_with", "/or/2"]
    assert "unknown operator 'nope'" in issues[0][1]
    assert "takes 2 arguments" in issues[1][1]
    assert "one operator" in issues[2][1]


def test_compile__operator_key_with_pointer_characters__is_escaped() -> None:
    issues = _issues({"and": [{"a/b~c": 1}]})
    assert issues[0][0] == "/and/0"
    issues = _issues({"map": [[1], {"x": 1}]})
    assert issues[0][0] == "/map/1"


@pytest.mark.parametrize(
    ("expr", "path", "fragment"),
    [
        ({"var": ["a", 1, 2]}, "/var", "optional default"),
        ({"var": [["a"]]}, "/var/0", "string or a number"),
        ({"map": [[1]]}, "/map", "array and a rule"),
        ({"reduce": [[1]]}, "/reduce", "initial value"),
        ({"missing_some": [1]}, "/missing_some", "count and a list"),
        ({"sem_ver": ["1.0.0", "="]}, "/sem_ver", "got 2"),
        ({"sem_ver": ["1.0.0", "~=", "1.0.0"]}, "/sem_ver/1", "unknown sem_ver operator"),
        ({"sem_ver": ["1.0.0.0", "=", "1.0.0"]}, "/sem_ver/0", "not a semantic version"),
        ({"ends_with": ["a", "b", "c"]}, "/ends_with", "takes 2 arguments"),
        ({"fractional": []}, "/fractional", "at least one bucket"),
        ({"fractional": [{"var": "k"}]}, "/fractional", "at least one bucket"),
        ({"fractional": [5, ["a", 1]]}, "/fractional/0", "bucketing value"),
        ({"fractional": [None, ["a", 1]]}, "/fractional/0", "bucketing value"),
        ({"fractional": [{"var": "k"}, ["a", None]]}, "/fractional/1/1", "non-negative integer"),
        ({"fractional": [["a", 1.5]]}, "/fractional/0/1", "non-negative integer"),
        ({"fractional": [["a", -1]]}, "/fractional/0/1", "non-negative integer"),
        ({"fractional": [{"var": "k"}, "a"]}, "/fractional/1", "[variant, weight]"),
        ({"fractional": [["a", 1, 2]]}, "/fractional/0", "[variant, weight]"),
        ({"+": [float("inf")]}, "/+/0", "finite"),
        ({"+": [{1, 2}]}, "/+/0", "not a JSON value"),
    ],
)
def test_compile__malformed_operands__are_rejected_with_pointer(expr: Any, path: str, fragment: str) -> None:
    issues = _issues(expr)
    assert any(p == path and fragment in m for p, m in issues), issues


def test_compile__deeply_nested_expression__is_rejected_not_crashing() -> None:
    expr: Any = True
    for _ in range(500):
        expr = {"!": [expr]}
    issues = _issues(expr)
    assert len(issues) == 1
    assert "nested deeper" in issues[0][1]


def test_compile__ref_without_evaluators__is_an_unknown_operator() -> None:
    assert _issues({"$ref": "x"}) == [("", "unknown operator '$ref'")]


def test_compile__refs__resolve_nested_and_share_one_compilation() -> None:
    evaluators = {
        "adult": {">=": [{"var": "age"}, 18]},
        "adult_nl": {"and": [{"$ref": "adult"}, {"$ref": "nl"}]},
    }
    evaluators["nl"] = {"==": [{"var": "country"}, "NL"]}
    rule = compile_jsonlogic({"if": [{"$ref": "adult_nl"}, "yes", "no"]}, evaluators=evaluators)
    assert rule({"age": 30, "country": "NL"}) == "yes"
    assert rule({"age": 12, "country": "NL"}) == "no"


def test_compile__ref_problems__are_reported_where_they_are() -> None:
    evaluators = {"a": {"!": [{"$ref": "b"}]}, "b": {"!": [{"$ref": "a"}]}, "bad": {"nope": []}}
    issues = _issues(
        {"or": [{"$ref": "a"}, {"$ref": "missing"}, {"$ref": 3}, {"$ref": "bad"}]}, evaluators=evaluators
    )
    assert ("/$evaluators/b/!/0/$ref", "$ref cycle: a -> b -> a") in issues
    assert ("/or/1/$ref", "no evaluator 'missing' in $evaluators") in issues
    assert ("/or/2/$ref", "$ref names an evaluator (a string)") in issues
    assert ("/$evaluators/bad", "unknown operator 'nope'") in issues
    assert len(issues) == 4


# --- flagd custom operators -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ({"starts_with": ["192.168.0.1", "192.168"]}, True),
        ({"starts_with": ["10.0.0.1", "192.168"]}, False),
        ({"ends_with": ["noreply@example.com", "@example.com"]}, True),
        ({"ends_with": ["noreply@example.com", "@test.com"]}, False),
        ({"starts_with": ["abc", ""]}, True),
    ],
)
def test_starts_ends_with__strings__compare_affixes(rule: Any, expected: bool) -> None:
    assert apply_jsonlogic(rule) is expected


@pytest.mark.parametrize("value", [123, None, True, ["abc"]])
def test_starts_with__non_string__is_null_where_it_stands(value: Any) -> None:
    assert compile_jsonlogic({"starts_with": [{"var": "v"}, "abc"]})({"v": value}) is None
    rule = compile_jsonlogic({"if": [{"starts_with": [{"var": "v"}, "abc"]}, "yes", "no"]})
    assert rule({"v": value}) == "no"
    assert rule({"v": "abcdef"}) == "yes"
    assert rule({"v": "xyz"}) == "no"


@pytest.mark.parametrize(
    ("version", "op", "target", "expected"),
    [
        ("1.0.0", "=", "1.0.0", True),
        ("1.0.0", "!=", "1.0.1", True),
        ("1.0.0", "!=", "1.0.0", False),
        ("1.0.0", "<", "1.0.1", True),
        ("2.0.0-alpha", "<", "2.0.0", True),
        ("1.0.1", "<=", "1.0.1", True),
        ("1.10.0", ">", "1.9.9", True),
        ("1.0.0", ">=", "1.0.1", False),
        ("3.0.1", "~", "3.0.0", True),
        ("3.1.0", "~", "3.0.0", False),
        ("3.1.0", "^", "3.0.0", True),
        ("4.0.0", "^", "3.0.0", False),
        ("v1.0.0", "=", "1.0.0", True),
        ("V1.0.0", "=", "v1.0.0", True),
        ("1.0", "=", "1.0.0", True),
        ("1", "^", "1.5.2", True),
        (1, "^", "1", True),
        (1.2, "~", "1.2.9", True),
        ("1.0.0+build", "=", "1.0.0+other", True),
    ],
)
def test_sem_ver__versions__compare_like_flagd(version: Any, op: str, target: str, expected: bool) -> None:
    rule = compile_jsonlogic({"sem_ver": [{"var": "v"}, {"var": "op"}, target]})
    assert rule({"v": version, "op": op}) is expected


@pytest.mark.parametrize(
    ("version", "op"),
    [("not-a-version", "="), ("2.0.0.0", "="), (None, "="), (True, "="), ("1.0.0", "==="), ("1.0.0", None)],
)
def test_sem_ver__invalid_operand__is_null_where_it_stands(version: Any, op: Any) -> None:
    assert (
        compile_jsonlogic({"sem_ver": [{"var": "v"}, {"var": "op"}, "1.0.0"]})({"v": version, "op": op})
        is None
    )
    rule = compile_jsonlogic({"if": [{"sem_ver": [{"var": "v"}, {"var": "op"}, "1.0.0"]}, "yes", "no"]})
    assert rule({"v": version, "op": op}) == "no"


@pytest.mark.parametrize("text", ["1.2.3", "v1.2.3-rc.1", "V2", "1.2", "not-a-version", "1.0.0.0", ""])
def test_parse_flagd_version__string__is_the_native_semver_parse_itself(text: str) -> None:
    assert parse_flagd_version(text) is parse_semver(text)  # one parser, one cache for both formats


def test_operator_error__inside_or__null_is_falsy_and_the_or_goes_on() -> None:
    rule = compile_jsonlogic({"or": [{"ends_with": [{"var": "n"}, "x"]}, "next"]})
    assert rule({"n": 5}) == "next"
    assert rule({"n": "ax"}) is True


def _flagd_data(targeting_key: Any, flag_key: str = "flag", **extra: Any) -> dict[str, Any]:
    return {"targetingKey": targeting_key, "$flagd": {"flagKey": flag_key, "timestamp": 0}, **extra}


def test_fractional__default_bucketing__hashes_flag_key_then_targeting_key() -> None:
    weights = [10, 20, 30, 40]
    rule = compile_jsonlogic({"fractional": [["a", 10], ["b", 20], ["c", 30], ["d", 40]]})
    for i in range(300):
        key = f"user-{i}@example.com"
        expected = "abcd"[expected_bucket("my-flag" + key, weights)]
        assert rule(_flagd_data(key, "my-flag")) == expected


def test_fractional__bucketing_expression__hashes_its_value() -> None:
    weights = [1, 1, 2]
    rule = compile_jsonlogic({"fractional": [{"var": "email"}, ["x", 1], ["y", 1], ["z", 2]]})
    for i in range(300):
        email = f"pérson{i}@exämple.com"
        assert rule({"email": email}) == "xyz"[expected_bucket(email, weights)]


@pytest.mark.parametrize("context", [{}, {"targetingKey": None}, {"targetingKey": 42}, {"targetingKey": ""}])
def test_fractional__no_string_targeting_key__buckets_by_flag_key_alone(context: dict[str, Any]) -> None:
    weights = [1, 1, 1, 1, 1, 1, 1, 1]
    rule = compile_jsonlogic({"fractional": [[str(i), w] for i, w in enumerate(weights)]})
    for flag_key in ("alpha", "beta", "gamma", "delta"):
        data = {**context, "$flagd": {"flagKey": flag_key}}
        assert rule(data) == str(expected_bucket(flag_key, weights))


@pytest.mark.parametrize(
    ("key", "expected"),
    [("ejOoVL", "lower"), ("bY9fO-", "lower"), ("SI7p-", "lower"), ("6LvT0", "upper"), ("ceQdGm", "upper")],
)
def test_fractional__hash_edge_values__land_on_the_right_side(key: str, expected: str) -> None:
    rule = compile_jsonlogic({"fractional": [{"var": "k"}, ["lower", 50], ["upper", 50]]})
    assert rule({"k": key}) == expected


def test_fractional__shorthand_entries__weigh_one_each() -> None:
    shorthand = compile_jsonlogic({"fractional": [{"var": "k"}, ["a"], ["b"], ["c", 2]]})
    longhand = compile_jsonlogic({"fractional": [{"var": "k"}, ["a", 1], ["b", 1], ["c", 2]]})
    for i in range(200):
        data = {"k": f"key-{i}"}
        assert shorthand(data) == longhand(data) == "abc"[expected_bucket(f"key-{i}", [1, 1, 2])]


def test_fractional__variants_and_weights_from_rules__are_evaluated() -> None:
    rule = compile_jsonlogic(
        {
            "fractional": [
                {"var": "k"},
                [{"if": [{"var": "premium"}, "gold", "silver"]}, {"var": "w"}],
                ["bronze", 1],
            ]
        }
    )
    assert rule({"k": "anyone", "premium": True, "w": 0}) == "bronze"
    assert rule({"k": "anyone", "premium": True, "w": 10**6}) in ("gold", "bronze")
    picks = {rule({"k": f"k{i}", "premium": False, "w": 1}) for i in range(50)}
    assert picks == {"silver", "bronze"}


def test_fractional__negative_runtime_weight__counts_as_zero() -> None:
    rule = compile_jsonlogic({"fractional": [{"var": "k"}, ["one", {"var": "w"}], ["two", 100]]})
    assert {rule({"k": f"k{i}", "w": -50}) for i in range(50)} == {"two"}


def test_fractional__boolean_and_number_variants__are_returned_as_values() -> None:
    rule = compile_jsonlogic(
        {"if": [{"fractional": [{"var": "k"}, [False, 0], [True, 100]]}, "big", "small"]}
    )
    assert rule({"k": "some-targeting-key"}) == "big"
    assert compile_jsonlogic({"fractional": [{"var": "k"}, [7, 1]]})({"k": "x"}) == 7


@pytest.mark.parametrize(
    ("rule", "data"),
    [
        ({"fractional": [{"var": "absent"}, ["a", 1]]}, _flagd_data("key")),
        ({"fractional": [{"var": "targetingKey"}, ["a", 1]]}, {}),
        ({"fractional": [{"var": "k"}, ["a", 0], ["b", 0]]}, {"k": "x"}),
        ({"fractional": [{"var": "k"}, ["a", 1]]}, {"k": 12}),
        ({"fractional": [{"var": "k"}, ["a", {"var": "w"}]]}, {"k": "x", "w": None}),
        ({"fractional": [{"var": "k"}, ["a", {"var": "w"}]]}, {"k": "x", "w": "1"}),
        ({"fractional": [{"var": "k"}, ["a", {"var": "w"}]]}, {"k": "x", "w": True}),
        ({"fractional": [{"var": "k"}, ["a", {"var": "w"}]]}, {"k": "x", "w": 2**31}),
        ({"fractional": [{"var": "k"}, [{"var": "v"}, 1]]}, {"k": "x", "v": ["list"]}),
        ({"fractional": [{"var": "k"}, {"var": "bucket"}]}, {"k": "x", "bucket": []}),
        ({"fractional": [{"var": "k"}, {"var": "bucket"}]}, {"k": "x", "bucket": "a"}),
    ],
)
def test_fractional__invalid_input__is_null_where_it_stands(rule: Any, data: Any) -> None:
    assert compile_jsonlogic(rule)(data) is None
    assert compile_jsonlogic({"if": [rule, "yes", "no"]})(data) == "no"


def test_fractional__constant_weights_past_max_weight_sum__refused_when_compiled() -> None:
    with pytest.raises(DefinitionError) as caught:
        compile_jsonlogic({"if": [{"fractional": [{"var": "k"}, ["a", 2**31 - 1], ["b", 1]]}, 1, 2]})
    (issue,) = caught.value.issues
    assert issue.path == "/if/0/fractional"
    assert "weights sum to 2147483648; the limit is 2147483647 (MAX_WEIGHT_SUM)" in issue.message
    at_limit = compile_jsonlogic({"fractional": [{"var": "k"}, ["a", 2**31 - 2], ["b", 1]]})
    assert at_limit({"k": "x"}) in ("a", "b")


def test_fractional__float_weights__are_truncated() -> None:
    rule = compile_jsonlogic({"fractional": [{"var": "k"}, ["a", 1.0], ["b", {"var": "w"}]]})
    assert {rule({"k": f"k{i}", "w": 0.9}) for i in range(30)} == {"a"}
    mixed = {rule({"k": f"k{i}", "w": 3.7}) for i in range(200)}
    assert mixed == {"a", "b"}
    for i in range(200):
        assert rule({"k": f"k{i}", "w": 3.7}) == "ab"[expected_bucket(f"k{i}", [1, 3])]


@pytest.mark.parametrize(
    "weights",
    [pytest.param([25, 75], id="25-75"), pytest.param([20, 30, 50], id="3-way")],
)
def test_fractional__100k_keys__land_within_one_percent_of_weights(weights: list[int]) -> None:
    names = [f"v{i}" for i in range(len(weights))]
    rule = compile_jsonlogic({"fractional": [[n, w] for n, w in zip(names, weights, strict=True)]})
    counts = dict.fromkeys(names, 0)
    total = 100_000
    data = _flagd_data(None, "distribution-flag")
    for i in range(total):
        data["targetingKey"] = f"user-{i}"
        counts[rule(data)] += 1
    for name, weight in zip(names, weights, strict=True):
        share = counts[name] / total
        assert abs(share - weight / sum(weights)) <= 0.01, counts
