"""Every clause operator, with negation, missing attributes, list attributes and type strictness."""

from __future__ import annotations

from typing import Any

import pytest

from flagyard.rule_engine import FlagSet, Reason, load_flagset


def single_clause_flag(
    operator: str, values: list[Any], attribute: str = "attr", negate: bool = False
) -> FlagSet:
    clause: dict[str, Any] = {"operator": operator, "values": values, "negate": negate}
    if operator != "segment_match":
        clause["attribute"] = attribute
    return load_flagset(
        {
            "flags": [
                {
                    "key": "f",
                    "type": "boolean",
                    "variants": {"yes": True, "no": False},
                    "default_variant": "no",
                    "rules": [{"id": "r", "clauses": [clause], "variant": "yes"}],
                }
            ],
            "segments": [
                {
                    "key": "de",
                    "rules": [{"clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}]}],
                },
                {"key": "vip", "included": ["u-1"], "excluded": ["u-2"]},
            ],
        }
    )


def matches(operator: str, values: list[Any], context: dict[str, Any], **kw: Any) -> bool:
    result = single_clause_flag(operator, values, **kw).evaluate("f", None, context)
    assert result.error_code is None, result
    return result.reason is Reason.TARGETING_MATCH


CASES: list[tuple[str, list[Any], Any, bool]] = [
    ("eq", ["DE"], "DE", True),
    ("eq", ["DE"], "de", False),
    ("eq", [1], 1.0, True),
    ("eq", [1], True, False),
    ("eq", [True], True, True),
    ("eq", ["1"], 1, False),
    ("neq", ["DE"], "FR", True),
    ("neq", ["DE"], "DE", False),
    ("in", ["DE", "AT"], "AT", True),
    ("in", ["DE", "AT"], "FR", False),
    ("in", [1, 2, "x"], 2, True),
    ("in", [False], 0, False),
    ("not_in", ["DE", "AT"], "FR", True),
    ("not_in", ["DE", "AT"], "DE", False),
    ("contains", ["@corp"], "bob@corp.io", True),
    ("contains", ["@corp"], "bob@home.io", False),
    ("contains", ["x", "corp"], "bob@corp.io", True),
    ("contains", ["1"], 123, False),
    ("starts_with", ["app-"], "app-ios", True),
    ("starts_with", ["app-"], "web-app-", False),
    ("ends_with", [".de"], "shop.de", True),
    ("ends_with", [".de"], "shop.de.com", False),
    ("matches", [r"^u-\d+$"], "u-42", True),
    ("matches", [r"^u-\d+$"], "u-x", False),
    ("matches", [r"^u-\d+$"], 42, False),
    ("lt", [10], 9.5, True),
    ("lt", [10], 10, False),
    ("lte", [10], 10, True),
    ("gt", [10], 11, True),
    ("gt", [10], "11", False),
    ("gte", [10], 10.0, True),
    ("gte", [10], True, False),
    ("semver_eq", ["1.2.3"], "1.2.3", True),
    ("semver_eq", ["1.2.3"], "v1.2.3", True),
    ("semver_eq", ["1.2"], "1.2.0", True),
    ("semver_lt", ["2.0.0"], "1.10.0", True),
    ("semver_lt", ["1.0.0"], "1.0.0-rc.1", True),
    ("semver_lte", ["1.0.0"], "1.0.0", True),
    ("semver_gt", ["1.9.0"], "1.10.0", True),
    ("semver_gt", ["1.9.0"], "not-a-version", False),
    ("semver_gte", ["1.0.0-rc.2"], "1.0.0-rc.10", True),
    ("before", ["2026-01-01T00:00:00Z"], "2025-12-31T23:59:59Z", True),
    ("before", ["2026-01-01"], "2026-01-01T00:00:01+00:00", False),
    ("before", [1767225600], 1767225599, True),
    ("after", ["2026-01-01"], "2026-01-01T01:00:00+02:00", False),
    ("after", ["2026-01-01"], "2026-01-02", True),
    ("after", ["2026-01-01T00:00:00Z"], 1767225601.5, True),
    ("after", ["2026-01-01"], "garbage", False),
]


@pytest.mark.parametrize(("operator", "values", "attr", "expected"), CASES)
def test_operator__value__matches_as_documented(
    operator: str, values: list[Any], attr: Any, expected: bool
) -> None:
    assert matches(operator, values, {"attr": attr}) is expected


@pytest.mark.parametrize(("operator", "values", "attr", "expected"), CASES)
def test_operator__negated__inverts_a_present_value(
    operator: str, values: list[Any], attr: Any, expected: bool
) -> None:
    assert matches(operator, values, {"attr": attr}, negate=True) is (not expected)


@pytest.mark.parametrize("operator", ["eq", "neq", "in", "not_in", "contains", "lt", "semver_gt", "before"])
@pytest.mark.parametrize("negate", [False, True])
def test_operator__attribute_missing_or_null__never_matches(operator: str, negate: bool) -> None:
    values = {"lt": [1], "semver_gt": ["1.0.0"], "before": ["2026-01-01"]}.get(operator, ["x"])
    assert matches(operator, values, {}, negate=negate) is False
    assert matches(operator, values, {"attr": None}, negate=negate) is False


def test_exists__present_or_absent__matches_presence() -> None:
    assert matches("exists", [], {"attr": 0}) is True
    assert matches("exists", [], {"attr": None}) is False
    assert matches("not_exists", [], {}) is True
    assert matches("not_exists", [], {"attr": "x"}) is False
    assert matches("exists", [], {}, negate=True) is True


def test_operator__list_attribute__matches_if_any_element_matches() -> None:
    assert matches("in", ["beta"], {"attr": ["alpha", "beta"]}) is True
    assert matches("in", ["beta"], {"attr": ["alpha"]}) is False
    assert matches("gt", [10], {"attr": [1, 20]}) is True
    assert matches("matches", ["^a"], {"attr": ["xa", "ab"]}) is True


def test_not_in__list_attribute__matches_only_if_no_element_is_listed() -> None:
    assert matches("not_in", ["beta"], {"attr": ["alpha", "beta"]}) is False
    assert matches("not_in", ["beta"], {"attr": ["alpha"]}) is True


def test_attribute__dotted_path__reads_nested_objects() -> None:
    ctx = {"account": {"plan": {"tier": "gold"}}}
    assert matches("eq", ["gold"], ctx, attribute="account.plan.tier") is True
    assert matches("eq", ["gold"], {"account": "gold"}, attribute="account.plan.tier") is False
    assert matches("exists", [], ctx, attribute="account.plan.missing") is False


def test_attribute__targeting_key__is_an_ordinary_attribute() -> None:
    assert matches("in", ["u-1", "u-9"], {"targeting_key": "u-9"}, attribute="targeting_key") is True


def test_matches__subject_longer_than_limit__does_not_match() -> None:
    assert matches("matches", ["a"], {"attr": "a" * 1024}) is True
    assert matches("matches", ["a"], {"attr": "a" * 1025}) is False


def test_segment_match__rules_included_and_excluded__decide_membership() -> None:
    assert matches("segment_match", ["de"], {"country": "DE"}) is True
    assert matches("segment_match", ["de"], {"country": "FR"}) is False
    assert matches("segment_match", ["vip"], {"targeting_key": "u-1"}) is True
    assert matches("segment_match", ["vip", "de"], {"targeting_key": "u-2", "country": "DE"}) is True
    assert matches("segment_match", ["vip"], {"targeting_key": "u-2"}) is False
    assert matches("segment_match", ["de"], {"country": "DE"}, negate=True) is False


def test_segment__excluded_key__wins_over_matching_rules() -> None:
    flagset = load_flagset(
        {
            "flags": [
                {
                    "key": "f",
                    "type": "boolean",
                    "variants": {"yes": True, "no": False},
                    "default_variant": "no",
                    "rules": [
                        {
                            "id": "r",
                            "clauses": [{"operator": "segment_match", "values": ["s"]}],
                            "variant": "yes",
                        }
                    ],
                }
            ],
            "segments": [
                {
                    "key": "s",
                    "excluded": ["u-x"],
                    "rules": [
                        {"clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}]},
                        {"clauses": [{"operator": "segment_match", "values": ["inner"]}]},
                    ],
                },
                {"key": "inner", "included": ["u-inner"]},
            ],
        }
    )
    assert flagset.evaluate("f", None, {"targeting_key": "u-x", "country": "DE"}).variant == "no"
    assert flagset.evaluate("f", None, {"targeting_key": "u-y", "country": "DE"}).variant == "yes"
    assert flagset.evaluate("f", None, {"targeting_key": "u-inner"}).variant == "yes"
