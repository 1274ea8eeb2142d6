"""Every per-definition limit: a definition at the bound is accepted, one past it is refused with the
JSON pointer of the place and a message naming the limit and the actual size."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from flagyard.rule_engine import (
    DefinitionError,
    limits,
    validate_document,
    validate_flag,
    validate_flagd,
    validate_segment,
)


def base_flag() -> dict[str, Any]:
    return {
        "key": "f",
        "type": "object",
        "variants": {"v": {}},
        "default_variant": "v",
        "rules": [
            {"id": "r", "clauses": [{"attribute": "a", "operator": "in", "values": ["x"]}], "variant": "v"}
        ],
    }


def size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def nested(depth: int) -> Any:
    """``depth`` arrays nested inside one another, built without recursion."""
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def sized_object(total: int) -> dict[str, str]:
    """An object whose compact encoding is exactly ``total`` bytes."""
    return {"s": "x" * (total - size({"s": ""}))}


def padded_flag(total: int) -> dict[str, Any]:
    flag = base_flag()
    flag["rules"][0]["description"] = ""
    flag["rules"][0]["description"] = "x" * (total - size(flag))
    assert size(flag) == total
    return flag


def variants(n: int) -> Callable[[dict[str, Any]], None]:
    return lambda f: f.update(variants={"v": {}, **{f"v{i}": {} for i in range(n - 1)}})


def rules(n: int) -> Callable[[dict[str, Any]], None]:
    return lambda f: f.update(rules=[{**f["rules"][0], "id": f"r{i}"} for i in range(n)])


def clauses(n: int) -> Callable[[dict[str, Any]], None]:
    return lambda f: f["rules"][0].update(clauses=f["rules"][0]["clauses"] * n)


def clause_values(n: int) -> Callable[[dict[str, Any]], None]:
    return lambda f: f["rules"][0]["clauses"][0].update(values=[f"k{i}" for i in range(n)])


def prerequisites(n: int) -> Callable[[dict[str, Any]], None]:
    return lambda f: f.update(prerequisites=[{"flag": f"p{i}", "variant": "on"} for i in range(n)])


def metadata(n: int) -> Callable[[dict[str, Any]], None]:
    return lambda f: f.update(metadata={f"m{i}": i for i in range(n)})


def variant_bytes(n: int) -> Callable[[dict[str, Any]], None]:
    return lambda f: f["variants"].update(v=sized_object(n))


def variant_depth(n: int) -> Callable[[dict[str, Any]], None]:
    return lambda f: f["variants"].update(v=nested(n))


def operand_bytes(n: int) -> Callable[[dict[str, Any]], None]:
    return lambda f: f["rules"][0]["clauses"][0].update(values=["x" * (n - 2)])


def metadata_bytes(n: int) -> Callable[[dict[str, Any]], None]:
    return lambda f: f.update(metadata={"note": "é" + "x" * (n - 4)})


def weight_sum(n: int) -> Callable[[dict[str, Any]], None]:
    def mutate(f: dict[str, Any]) -> None:
        f["variants"]["w"] = {}
        f.pop("default_variant")
        variations = [{"variant": "v", "weight": n - 1}, {"variant": "w", "weight": 1}]
        f["default_split"] = {"variations": variations, "weight_unit": "relative"}

    return mutate


FLAG_LIMITS = [
    ("MAX_VARIANTS", limits.MAX_VARIANTS, variants, "/variants"),
    ("MAX_RULES", limits.MAX_RULES, rules, "/rules"),
    ("MAX_CLAUSES", limits.MAX_CLAUSES, clauses, "/rules/0/clauses"),
    ("MAX_CLAUSE_VALUES", limits.MAX_CLAUSE_VALUES, clause_values, "/rules/0/clauses/0/values"),
    ("MAX_PREREQUISITES", limits.MAX_PREREQUISITES, prerequisites, "/prerequisites"),
    ("MAX_METADATA_ENTRIES", limits.MAX_METADATA_ENTRIES, metadata, "/metadata"),
    ("MAX_VALUE_BYTES", limits.MAX_VALUE_BYTES, variant_bytes, "/variants/v"),
    ("MAX_VALUE_BYTES", limits.MAX_VALUE_BYTES, operand_bytes, "/rules/0/clauses/0/values/0"),
    ("MAX_VALUE_BYTES", limits.MAX_VALUE_BYTES, metadata_bytes, "/metadata/note"),
    ("MAX_VALUE_DEPTH", limits.MAX_VALUE_DEPTH, variant_depth, "/variants/v" + "/0" * limits.MAX_VALUE_DEPTH),
    ("MAX_WEIGHT_SUM", limits.MAX_WEIGHT_SUM, weight_sum, "/default_split/variations"),
]


@pytest.mark.parametrize(("name", "bound", "make", "where"), FLAG_LIMITS, ids=lambda v: str(v)[:40])
def test_flag_limit__at_bound_accepted__one_past_refused_with_pointer(
    name: str, bound: int, make: Callable[[int], Callable[[dict[str, Any]], None]], where: str
) -> None:
    at_bound = base_flag()
    make(bound)(at_bound)
    validate_flag(at_bound)
    past = base_flag()
    make(bound + 1)(past)
    with pytest.raises(DefinitionError) as caught:
        validate_flag(past, path="/flags/3")
    (issue,) = caught.value.issues
    assert issue.path == "/flags/3" + where
    assert name in issue.message


def test_flag_bytes__at_bound_accepted__one_past_refused_naming_the_size() -> None:
    validate_flag(padded_flag(limits.MAX_FLAG_BYTES))
    with pytest.raises(DefinitionError) as caught:
        validate_flag(padded_flag(limits.MAX_FLAG_BYTES + 1))
    (issue,) = caught.value.issues
    assert issue.path == ""
    assert issue.message == (
        f"the flag is {limits.MAX_FLAG_BYTES + 1} bytes encoded; "
        f"the limit is {limits.MAX_FLAG_BYTES} (MAX_FLAG_BYTES)"
    )


@pytest.mark.parametrize("depth", [300, 5_000, 200_000])
def test_deep_variant_value__refused_with_pointer_never_recursion_error(depth: int) -> None:
    flag = base_flag()
    flag["variants"]["v"] = {"a": nested(depth)}
    with pytest.raises(DefinitionError) as caught:
        validate_flag(flag)
    (issue,) = caught.value.issues
    assert issue.path == "/variants/v/a" + "/0" * (limits.MAX_VALUE_DEPTH - 1)
    assert "MAX_VALUE_DEPTH" in issue.message


def test_deep_clause_value__in_a_document__refused_with_pointer() -> None:
    flag = base_flag()
    flag["rules"][0]["clauses"][0]["values"] = ["x", nested(1_000)]
    with pytest.raises(DefinitionError) as caught:
        validate_document({"flags": [base_flag() | {"key": "g"}, flag]})
    (issue,) = caught.value.issues
    assert issue.path.startswith("/flags/1/rules/0/clauses/0/values/1/0/0")


def test_twenty_mib_variant__refused_cheaply_with_its_size() -> None:
    flag = base_flag()
    flag["variants"]["v"] = {"blob": "x" * (20 * limits.MiB)}
    with pytest.raises(DefinitionError) as caught:
        validate_flag(flag)
    (issue,) = caught.value.issues
    assert issue.path == ""
    assert f"the limit is {limits.MAX_FLAG_BYTES} (MAX_FLAG_BYTES)" in issue.message


def segment(**fields: Any) -> dict[str, Any]:
    return {"key": "s", **fields}


def segment_rule() -> dict[str, Any]:
    return {"clauses": [{"attribute": "a", "operator": "eq", "values": ["x"]}]}


SEGMENT_LIMITS: list[tuple[str, int, Callable[[int], dict[str, Any]], str]] = [
    (
        "MAX_SEGMENT_TARGETS",
        limits.MAX_SEGMENT_TARGETS,
        lambda n: segment(included=[f"u{i}" for i in range(n)]),
        "/included",
    ),
    (
        "MAX_SEGMENT_TARGETS",
        limits.MAX_SEGMENT_TARGETS,
        lambda n: segment(excluded=[f"u{i}" for i in range(n)]),
        "/excluded",
    ),
    ("MAX_SEGMENT_RULES", limits.MAX_SEGMENT_RULES, lambda n: segment(rules=[segment_rule()] * n), "/rules"),
    (
        "MAX_CLAUSES",
        limits.MAX_CLAUSES,
        lambda n: segment(rules=[{"clauses": segment_rule()["clauses"] * n}]),
        "/rules/0/clauses",
    ),
]


@pytest.mark.parametrize(("name", "bound", "make", "where"), SEGMENT_LIMITS, ids=lambda v: str(v)[:30])
def test_segment_limit__at_bound_accepted__one_past_refused_with_pointer(
    name: str, bound: int, make: Callable[[int], dict[str, Any]], where: str
) -> None:
    validate_segment(make(bound))
    with pytest.raises(DefinitionError) as caught:
        validate_segment(make(bound + 1))
    (issue,) = caught.value.issues
    assert issue.path == where
    assert name in issue.message


def test_segment_bytes__at_bound_accepted__one_past_refused() -> None:
    def padded(total: int) -> dict[str, Any]:
        keys = ["k" * 1000 + str(i) for i in range(limits.MAX_SEGMENT_BYTES // 1100)]
        data = segment(included=keys)
        data["included"][-1] += "x" * (total - size(data))
        assert size(data) == total
        return data

    validate_segment(padded(limits.MAX_SEGMENT_BYTES))
    with pytest.raises(DefinitionError) as caught:
        validate_segment(padded(limits.MAX_SEGMENT_BYTES + 1))
    assert [(i.path, "MAX_SEGMENT_BYTES" in i.message) for i in caught.value.issues] == [("", True)]


@pytest.mark.parametrize(
    ("field", "bound", "make"),
    [
        ("flags", limits.MAX_FLAGS_PER_ENVIRONMENT, lambda i: base_flag() | {"key": f"f{i}"}),
        ("segments", limits.MAX_SEGMENTS_PER_ENVIRONMENT, lambda i: segment(key=f"s{i}")),
    ],
)
def test_document_counts__at_bound_accepted__one_past_refused(
    field: str, bound: int, make: Callable[[int], dict[str, Any]]
) -> None:
    items = [make(i) for i in range(bound)]
    assert len(getattr(validate_document({field: items}), field)) == bound
    with pytest.raises(DefinitionError) as caught:
        validate_document({field: [*items, make(bound)]})
    (issue,) = caught.value.issues
    assert issue.path == f"/{field}"
    assert f"{bound + 1} {field}" in issue.message


# --- flagd ---------------------------------------------------------------------------------------------


def flagd_doc(**flag_fields: Any) -> dict[str, Any]:
    flag = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on", **flag_fields}
    return {"flags": {"f": flag}}


@pytest.mark.parametrize(
    ("document", "where", "name"),
    [
        (
            flagd_doc(variants={"v": nested(limits.MAX_VALUE_DEPTH + 1)}, defaultVariant="v"),
            "/flags/f/variants/v" + "/0" * limits.MAX_VALUE_DEPTH,
            "MAX_VALUE_DEPTH",
        ),
        (
            flagd_doc(variants={"v": {"a": nested(5_000)}}, defaultVariant="v"),
            "/flags/f/variants/v/a" + "/0" * (limits.MAX_VALUE_DEPTH - 1),
            "MAX_VALUE_DEPTH",
        ),
        (
            flagd_doc(variants={f"v{i}": i for i in range(limits.MAX_VARIANTS + 1)}, defaultVariant="v0"),
            "/flags/f/variants",
            "MAX_VARIANTS",
        ),
        (
            flagd_doc(variants={"v": sized_object(limits.MAX_VALUE_BYTES + 1)}, defaultVariant="v"),
            "/flags/f/variants/v",
            "MAX_VALUE_BYTES",
        ),
        (
            flagd_doc(variants={"v": "x" * limits.MAX_FLAG_BYTES}, defaultVariant="v"),
            "/flags/f",
            "MAX_FLAG_BYTES",
        ),
        (
            flagd_doc(metadata={f"m{i}": i for i in range(limits.MAX_METADATA_ENTRIES + 1)}),
            "/flags/f/metadata",
            "MAX_METADATA_ENTRIES",
        ),
        (
            {
                "flags": {
                    f"f{i}": flagd_doc()["flags"]["f"] for i in range(limits.MAX_FLAGS_PER_ENVIRONMENT + 1)
                }
            },
            "/flags",
            "MAX_FLAGS_PER_ENVIRONMENT",
        ),
        (
            flagd_doc(targeting={"fractional": [["on", limits.MAX_WEIGHT_SUM], ["off", 1]]}),
            "/flags/f/targeting/fractional",
            "MAX_WEIGHT_SUM",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_flagd_limit__refused_with_pointer(document: dict[str, Any], where: str, name: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_flagd(document)
    assert [(i.path, name in i.message) for i in caught.value.issues] == [(where, True)]


def test_flagd_limits__at_bound__accepted() -> None:
    validate_flagd(flagd_doc(variants={"v": {"a": nested(limits.MAX_VALUE_DEPTH - 1)}}, defaultVariant="v"))
    validate_flagd(flagd_doc(variants={"v": sized_object(limits.MAX_VALUE_BYTES)}, defaultVariant="v"))
    validate_flagd(flagd_doc(variants={f"v{i}": i for i in range(limits.MAX_VARIANTS)}, defaultVariant="v0"))
    validate_flagd(flagd_doc(targeting={"fractional": [["on", limits.MAX_WEIGHT_SUM - 1], ["off", 1]]}))
