"""Validation: every problem is reported with a JSON-pointer path and a message."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from flagyard.rule_engine import (
    DefinitionError,
    DocumentFormatError,
    Issue,
    load_flagset,
    parse_json,
    validate_document,
    validate_flag,
    validate_segment,
)

VALID: dict[str, Any] = {
    "segments": [{"key": "beta", "included": ["u-1"]}],
    "flags": [
        {
            "key": "f",
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "off_variant": "off",
            "default_variant": "off",
            "rules": [
                {
                    "id": "r1",
                    "clauses": [{"attribute": "country", "operator": "in", "values": ["DE"]}],
                    "variant": "on",
                }
            ],
        },
        {"key": "g", "type": "string", "variants": {"a": "A"}, "default_variant": "a"},
    ],
}


def issues_of(mutate: Any) -> list[Issue]:
    document = copy.deepcopy(VALID)
    mutate(document)
    with pytest.raises(DefinitionError) as caught:
        validate_document(document)
    return caught.value.issues


def only_issue(mutate: Any) -> Issue:
    issues = issues_of(mutate)
    assert len(issues) == 1, issues
    return issues[0]


def rule(doc: dict[str, Any]) -> dict[str, Any]:
    return doc["flags"][0]["rules"][0]  # type: ignore[no-any-return]


def clause(doc: dict[str, Any]) -> dict[str, Any]:
    return rule(doc)["clauses"][0]  # type: ignore[no-any-return]


def test_valid_document__validates__and_compiles() -> None:
    assert len(validate_document(VALID).flags) == 2
    assert len(load_flagset(VALID)) == 2


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        (
            lambda d: clause(d).update(operator="is_like"),
            "/flags/0/rules/0/clauses/0/operator",
            "Input should be",
        ),
        (lambda d: clause(d).update(colour="red"), "/flags/0/rules/0/clauses/0/colour", "unknown field"),
        (lambda d: d["flags"][0].pop("type"), "/flags/0/type", "field required"),
        (lambda d: d["flags"][0].update(type="decimal"), "/flags/0/type", "Input should be"),
        (lambda d: d["flags"][0].update(key="bad key!"), "/flags/0/key", "pattern"),
        (
            lambda d: d["flags"][0]["variants"].update(on="yes"),
            "/flags/0/variants/on",
            "not of the flag's type boolean",
        ),
        (
            lambda d: d["flags"][0].update(off_variant="nope"),
            "/flags/0/off_variant",
            "'nope' is not declared",
        ),
        (lambda d: d["flags"][0].update(default_variant="nope"), "/flags/0/default_variant", "not declared"),
        (lambda d: rule(d).update(variant="nope"), "/flags/0/rules/0/variant", "not declared"),
        (lambda d: rule(d).update(clauses=[]), "/flags/0/rules/0/clauses", "at least 1"),
        (lambda d: clause(d).update(values=[]), "/flags/0/rules/0/clauses/0/values", "at least one value"),
        (
            lambda d: clause(d).update(operator="gt", values=["ten"]),
            "/flags/0/rules/0/clauses/0/values/0",
            "compares numbers",
        ),
        (
            lambda d: clause(d).update(operator="lt", values=[1, 2]),
            "/flags/0/rules/0/clauses/0/values",
            "exactly one value",
        ),
        (
            lambda d: clause(d).update(operator="starts_with", values=[3]),
            "/flags/0/rules/0/clauses/0/values/0",
            "compares strings",
        ),
        (
            lambda d: clause(d).update(operator="matches", values=["u-(?=42)"]),
            "/flags/0/rules/0/clauses/0/values/0",
            "lookahead is not supported",
        ),
        (
            lambda d: clause(d).update(operator="matches", values=["[unclosed"]),
            "/flags/0/rules/0/clauses/0/values/0",
            "invalid regular expression",
        ),
        (
            lambda d: clause(d).update(operator="semver_gt", values=["1.x"]),
            "/flags/0/rules/0/clauses/0/values/0",
            "not a semantic version",
        ),
        (
            lambda d: clause(d).update(operator="before", values=["next tuesday"]),
            "/flags/0/rules/0/clauses/0/values/0",
            "ISO 8601",
        ),
        (
            lambda d: clause(d).update(operator="exists", values=["x"]),
            "/flags/0/rules/0/clauses/0/values",
            "takes no values",
        ),
        (
            lambda d: clause(d).update(operator="in", values=[{"a": 1}]),
            "/flags/0/rules/0/clauses/0/values/0",
            "none of them",
        ),
        (lambda d: clause(d).pop("attribute"), "/flags/0/rules/0/clauses/0/attribute", "needs an attribute"),
        (
            lambda d: clause(d).update(attribute="a..b"),
            "/flags/0/rules/0/clauses/0/attribute",
            "dotted attribute path",
        ),
        (
            lambda d: rule(d).update(clauses=[{"operator": "segment_match", "values": ["ghost"]}]),
            "/flags/0/rules/0/clauses/0/values/0",
            "segment 'ghost' does not exist",
        ),
        (
            lambda d: rule(d).update(split={"variations": [{"variant": "on", "weight": 10000}]}),
            "/flags/0/rules/0",
            "exactly one of variant or split",
        ),
        (
            lambda d: d["flags"][0].update(
                default_split={
                    "variations": [{"variant": "on", "weight": 4000}, {"variant": "off", "weight": 5000}]
                },
                default_variant=None,
            ),
            "/flags/0/default_split/variations",
            "sum to 9000",
        ),
        (
            lambda d: d["flags"][0].update(
                default_split={"weight_unit": "relative", "variations": [{"variant": "on", "weight": 0}]},
                default_variant=None,
            ),
            "/flags/0/default_split/variations",
            "at least one must be positive",
        ),
        (
            lambda d: d["flags"][0].update(
                default_split={"variations": [{"variant": "on", "weight": -1}]}, default_variant=None
            ),
            "/flags/0/default_split/variations/0/weight",
            "greater than or equal to 0",
        ),
        (
            lambda d: d["flags"][0].update(
                default_split={"variations": [{"variant": "on", "weight": 10000}]}
            ),
            "/flags/0/default_split",
            "not both",
        ),
        (
            lambda d: d["flags"][0].update(
                default_split={
                    "variations": [{"variant": "on", "weight": 5000}, {"variant": "on", "weight": 5000}]
                },
                default_variant=None,
            ),
            "/flags/0/default_split/variations/1/variant",
            "appears twice",
        ),
        (
            lambda d: d["flags"][0]["rules"].append(copy.deepcopy(rule(d))),
            "/flags/0/rules/1/id",
            "duplicate rule id",
        ),
        (lambda d: d["flags"].append(copy.deepcopy(d["flags"][1])), "/flags/2/key", "duplicate key 'g'"),
        (lambda d: d["segments"].append({"key": "beta"}), "/segments/1/key", "duplicate key 'beta'"),
        (
            lambda d: d["segments"][0].update(excluded=["u-1"]),
            "/segments/0/excluded",
            "both included and excluded",
        ),
        (
            lambda d: d["flags"][0].update(prerequisites=[{"flag": "ghost", "variant": "on"}]),
            "/flags/0/prerequisites/0/flag",
            "does not exist",
        ),
        (
            lambda d: d["flags"][0].update(prerequisites=[{"flag": "g", "variant": "zz"}]),
            "/flags/0/prerequisites/0/variant",
            "has no variant 'zz'",
        ),
        (
            lambda d: d["flags"][0].update(prerequisites=[{"flag": "f", "variant": "on"}]),
            "/flags/0/prerequisites/0/flag",
            "its own prerequisite",
        ),
        (lambda d: d["flags"][0].update(metadata={"nested": {"no": 1}}), "/flags/0/metadata/nested", ""),
    ],
)
def test_validate_document__bad_field__reports_its_path_and_why(
    mutate: Any, path: str, fragment: str
) -> None:
    issues = issues_of(mutate)
    assert any(i.path.startswith(path) and fragment in i.message for i in issues), issues


def test_validate_document__prerequisite_cycle__is_reported_with_the_cycle() -> None:
    def cycle(d: dict[str, Any]) -> None:
        d["flags"][0]["prerequisites"] = [{"flag": "g", "variant": "a"}]
        d["flags"][1]["prerequisites"] = [{"flag": "f", "variant": "on"}]

    issue = only_issue(cycle)
    assert issue.path.endswith("/prerequisites")
    assert "f -> g -> f" in issue.message or "g -> f -> g" in issue.message


def test_validate_document__segment_cycle__is_reported() -> None:
    def cycle(d: dict[str, Any]) -> None:
        d["segments"] = [
            {"key": "a", "rules": [{"clauses": [{"operator": "segment_match", "values": ["b"]}]}]},
            {"key": "b", "rules": [{"clauses": [{"operator": "segment_match", "values": ["a"]}]}]},
        ]

    issue = only_issue(cycle)
    assert issue.path in ("/segments/0/rules", "/segments/1/rules")
    assert "segment cycle" in issue.message


def test_validate_document__many_problems__reports_all_of_them() -> None:
    def many(d: dict[str, Any]) -> None:
        d["flags"][0]["off_variant"] = "x"
        d["flags"][1]["default_variant"] = "y"
        clause(d)["operator"] = "lt"

    paths = {i.path for i in issues_of(many)}
    assert {
        "/flags/0/off_variant",
        "/flags/1/default_variant",
        "/flags/0/rules/0/clauses/0/values/0",
    } <= paths


def test_validate_flag__with_base_path__prefixes_every_issue() -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_flag({"key": "f", "type": "boolean", "variants": {"on": 1}}, path="/body")
    assert [i.path for i in caught.value.issues] == ["/body/variants/on"]


def test_validate_flag__prerequisite_cycle_through_known_flags__is_rejected() -> None:
    known = {
        "g": validate_flag(
            {
                "key": "g",
                "type": "boolean",
                "variants": {"on": True},
                "prerequisites": [{"flag": "f", "variant": "on"}],
            }
        )
    }
    with pytest.raises(DefinitionError) as caught:
        validate_flag(
            {
                "key": "f",
                "type": "boolean",
                "variants": {"on": True},
                "prerequisites": [{"flag": "g", "variant": "on"}],
            },
            flags=known,
        )
    assert any("prerequisite cycle" in i.message and i.path == "/prerequisites" for i in caught.value.issues)


def test_validate_segment__unknown_segment_reference__is_rejected_when_keys_known() -> None:
    data = {"key": "s", "rules": [{"clauses": [{"operator": "segment_match", "values": ["t"]}]}]}
    assert validate_segment(data).key == "s"
    with pytest.raises(DefinitionError, match="segment 't' does not exist"):
        validate_segment(data, segments=["u"])


def test_parse_json__duplicate_object_key__is_rejected() -> None:
    with pytest.raises(DocumentFormatError, match="duplicate key 'on'"):
        parse_json('{"flags": [{"variants": {"on": true, "on": false}}]}')


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"flags": 3}', "{}"])
def test_load_flagset__not_a_flag_document__raises_format_error(text: str) -> None:
    with pytest.raises(DocumentFormatError):
        load_flagset(text)


def test_definition_error__message__names_paths() -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_flag({"key": "f", "type": "boolean", "variants": {"on": True}, "off_variant": "x"})
    assert "/off_variant: variant 'x' is not declared in variants" in str(caught.value)
