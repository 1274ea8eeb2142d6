"""flagd documents: validation, evaluation semantics (reasons, errors, context injection, metadata, $ref)
and export of native documents.

Expected fractional assignments in ``testbed_vectors.flagd.json`` come from flagd-testbed's
``@fractional-v2`` scenarios (flagd's own cross-implementation vectors), not from this code.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import pytest

from flagyard.rule_engine import (
    DefinitionError,
    Document,
    ErrorCode,
    EvaluationResult,
    FlagSet,
    FlagType,
    Reason,
    load_flagset,
    validate_document,
)
from flagyard.rule_engine.flagd import SPLIT_VALUE_MISSING, export_flagd, load_flagd, validate_flagd

DATA = Path(__file__).parent / "data" / "flagd"


def _json(name: str) -> Any:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def testbed() -> FlagSet:
    return load_flagset((DATA / "testbed_vectors.flagd.json").read_bytes())


def _flagd(flags: dict[str, Any], **top: Any) -> FlagSet:
    return load_flagd({"flags": flags, **top})


# --- loading --------------------------------------------------------------------------------------------


def test_load_flagset__flagd_document__is_detected_and_loaded(testbed: FlagSet) -> None:
    assert "fractional-flag" in testbed.flags
    assert testbed.metadata == {"flagSetId": "testbed-vectors"}


def test_load_flagd__json_text__is_parsed() -> None:
    text = '{"flags": {"f": {"state": "ENABLED", "variants": {"on": true}, "defaultVariant": "on"}}}'
    assert load_flagd(text).evaluate("f", False, {}).value is True


@pytest.mark.parametrize(
    ("variants", "flag_type"),
    [
        ({"on": True, "off": False}, FlagType.BOOLEAN),
        ({"a": "x", "b": ""}, FlagType.STRING),
        ({"small": 1, "big": 1000}, FlagType.INTEGER),
        ({"tenth": 0.1, "one": 1}, FlagType.FLOAT),
        ({"integral": 10.0}, FlagType.FLOAT),
        ({"empty": {}, "full": {"a": [1]}}, FlagType.OBJECT),
    ],
)
def test_flag_type__variant_values__are_inferred(variants: dict[str, Any], flag_type: FlagType) -> None:
    flags = _flagd({"f": {"state": "ENABLED", "variants": variants}})
    assert flags.flags["f"].type is flag_type


def test_float_flag__integer_variant__is_served_as_float() -> None:
    flags = _flagd({"f": {"state": "ENABLED", "variants": {"one": 1, "half": 0.5}, "defaultVariant": "one"}})
    result = flags.evaluate("f", 0.0, {}, FlagType.FLOAT)
    assert result.value == 1.0
    assert type(result.value) is float


def test_integer_flag__read_as_float__is_allowed_and_converted() -> None:
    flags = _flagd({"f": {"state": "ENABLED", "variants": {"ten": 10}, "defaultVariant": "ten"}})
    result = flags.evaluate("f", 0.5, {}, FlagType.FLOAT)
    assert (result.value, type(result.value), result.error_code) == (10.0, float, None)


# --- validation -----------------------------------------------------------------------------------------


def test_validate_flagd__broken_document__lists_every_problem_with_its_pointer() -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_flagd(_json("invalid.flagd.json"))
    issues = {(i.path, i.message) for i in caught.value.issues}
    expected_fragments = {
        "/metadata/owners": "metadata values are strings, numbers or booleans",
        "/flags/no-state/state": "'state' is required",
        "/flags/bad-state/state": "state is ENABLED or DISABLED, not 'ON'",
        "/flags/no-variants/variants": "'variants' is required",
        "/flags/empty-variants/variants": "non-empty object",
        "/flags/unknown-default/defaultVariant": "variant 'maybe' is not declared",
        "/flags/mixed-types/variants": "variants must all be of one type",
        "/flags/null-variant/variants/nothing": "boolean, string, number or object, not None",
        "/flags/unsafe-integer/variants/huge": "outside the safe integer range",
        "/flags/array-targeting/targeting": "targeting is a JsonLogic rule object",
        "/flags/unknown-operator/targeting/if/0/and/0": "unknown operator 'regex_match'",
        "/flags/dangling-ref/targeting/if/0/$ref": "no evaluator 'no_such_rule'",
        "/flags/bad-flag-metadata/metadata/tags": "metadata values are strings, numbers or booleans",
        "/flags/bad-sem-ver/targeting/if/0/sem_ver/1": "unknown sem_ver operator '==='",
        "/flags/bad-fractional/targeting/fractional/1/1": "non-negative integer, got 50.5",
        "/flags/bad-fractional/targeting/fractional/2/1": "non-negative integer, got -1",
        "/flags/bad-fractional/targeting/fractional/3": "a bucket is [variant] or [variant, weight]",
        "/flags/not-an-object": "a flag is an object",
        "/$evaluators/loop_b/!/0/$ref": "$ref cycle: loop_a -> loop_b -> loop_a",
        "/$evaluators/not_a_rule": "an evaluator is a JsonLogic rule object",
    }
    for path, fragment in expected_fragments.items():
        assert any(p == path and fragment in m for p, m in issues), (path, sorted(issues))
    assert len(issues) == len(expected_fragments)


@pytest.mark.parametrize(
    ("document", "path"),
    [
        ([], ""),
        ({"flags": []}, "/flags"),
        ({"flags": {}, "$evaluators": []}, "/$evaluators"),
        ({"flags": {}, "metadata": "v1"}, "/metadata"),
        (
            {"flags": {"f": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": 1}}},
            "/flags/f/defaultVariant",
        ),
        ({"flags": {"a/b": {"state": "ENABLED", "variants": {"x": [1]}}}}, "/flags/a~1b/variants/x"),
        ({"flags": {"f": {"state": "ENABLED", "variants": {"": True}}}}, "/flags/f/variants/"),
    ],
)
def test_validate_flagd__malformed_structure__is_reported_at_its_pointer(document: Any, path: str) -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_flagd(document)
    assert path in [i.path for i in caught.value.issues]


def test_validate_flagd__valid_fixtures__pass() -> None:
    for name in ("testbed_vectors.flagd.json", "metadata.flagd.json", "evaluators.flagd.json"):
        validate_flagd(_json(name))


# --- reasons and errors ---------------------------------------------------------------------------------


def _check(result: EvaluationResult, value: Any, variant: str | None, reason: Reason) -> None:
    assert (result.value, result.variant, result.reason, result.error_code) == (value, variant, reason, None)


def test_no_targeting__default_variant__is_static(testbed: FlagSet) -> None:
    _check(testbed.evaluate("empty-targeting-flag", 0, {}), 1, "false", Reason.STATIC)


def test_disabled_flag__any_context__serves_caller_default_with_reason_disabled(testbed: FlagSet) -> None:
    result = testbed.evaluate("disabled-string-flag", "bye", {"targeting_key": "u"}, FlagType.STRING)
    _check(result, "bye", None, Reason.DISABLED)
    assert testbed.flags["disabled-string-flag"].enabled is False


# A table, one case a line read across under the header; formatted, each cell would take a line.
@pytest.mark.parametrize(
    ("key", "context", "default", "value", "variant", "reason"),
    [
        ("null-default-flag", {}, True, True, None, Reason.DEFAULT),
        ("null-default-flag", {}, False, False, None, Reason.DEFAULT),
        ("undefined-default-flag", {}, 100, 100, None, Reason.DEFAULT),
        ("no-default-flag-null-targeting-variant", {"email": "wozniak@orange.com"}, "Inventor", "Inventor", None, Reason.DEFAULT),
        ("no-default-flag-null-targeting-variant", {"email": "jobs@orange.com"}, "x", "CEO", "special", Reason.TARGETING_MATCH),
        ("no-default-flag-undefined-targeting-variant", {"email": "wozniak@orange.com"}, "Retired", "Retired", None, Reason.DEFAULT),
        ("targeting-null-variant-flag", {}, 3, 2, "two", Reason.DEFAULT),
        ("targeting-key-flag", {"targeting_key": "5c3d8535-f81a-4478-a6d3-afaa4d51199e"}, "x", "hit", "hit", Reason.TARGETING_MATCH),
        ("targeting-key-flag", {"targeting_key": "f20bd32d-703b-48b6-bc8e-79d53c85134a"}, "x", "miss", "miss", Reason.DEFAULT),
        ("non-string-variant-targeting-flag", {}, 3, 2, "true", Reason.TARGETING_MATCH),
    ],
)  # fmt: skip
def test_targeting__outcomes__give_flagd_reasons(
    testbed: FlagSet,
    key: str,
    context: dict[str, Any],
    default: Any,
    value: Any,
    variant: str | None,
    reason: Reason,
) -> None:
    _check(testbed.evaluate(key, default, context), value, variant, reason)


def test_targeting__unknown_variant__is_general_error_with_caller_default(testbed: FlagSet) -> None:
    result = testbed.evaluate("missing-variant-targeting-flag", 3, {})
    assert (result.value, result.variant, result.reason) == (3, None, Reason.ERROR)
    assert result.error_code is ErrorCode.GENERAL
    assert result.error_message is not None
    assert "'three'" in result.error_message


@pytest.mark.parametrize(
    ("outcome", "variant"),
    [(True, "true"), (False, "false"), (2, "2"), (2.0, "2"), (2.5, "2.5"), ("2", "2")],
)
def test_targeting__scalar_outcome__is_looked_up_as_its_json_text(outcome: Any, variant: str) -> None:
    variants = {"true": "T", "false": "F", "2": "two", "2.5": "two and a half"}
    flags = _flagd({"f": {"state": "ENABLED", "variants": variants, "targeting": {"var": "out"}}})
    result = flags.evaluate("f", "default", {"out": outcome})
    _check(result, variants[variant], variant, Reason.TARGETING_MATCH)


@pytest.mark.parametrize("outcome", [["on"], {"variant": "on"}, ""])
def test_targeting__non_variant_outcome__is_general_error(outcome: Any) -> None:
    flags = _flagd({"f": {"state": "ENABLED", "variants": {"on": True}, "targeting": {"var": "out"}}})
    result = flags.evaluate("f", False, {"out": outcome})
    assert (result.value, result.reason, result.error_code) == (False, Reason.ERROR, ErrorCode.GENERAL)


def test_targeting__failing_rule__is_parse_error_with_caller_default() -> None:
    flags = _flagd({"f": {"state": "ENABLED", "variants": {"on": True}, "targeting": {"var": "a.b"}}})

    class Exploding(dict[str, Any]):
        def get(self, key: str, default: Any = None) -> Any:
            raise RuntimeError("boom")

    result = flags.evaluate("f", False, {"a": Exploding()})
    assert (result.value, result.reason, result.error_code) == (False, Reason.ERROR, ErrorCode.PARSE_ERROR)


@pytest.mark.parametrize(
    ("key", "context"),
    [
        ("semver-invalid-version-flag", {"version": "not-a-version"}),
        ("starts-with-non-string-flag", {"num": 123}),
        ("fractional-null-bucket-key-flag", {}),
        ("fractional-zero-weights-flag", {"targeting_key": "any-user"}),
    ],
)
def test_operator_error__operator_is_null__serves_default_variant(
    testbed: FlagSet, key: str, context: dict[str, Any]
) -> None:
    _check(testbed.evaluate(key, "wrong", context), "fallback", "fallback", Reason.DEFAULT)


def test_operator_error__inside_if__null_is_false_and_the_else_branch_serves() -> None:
    flags = load_flagd(
        {
            "flags": {
                "f": {
                    "state": "ENABLED",
                    "variants": {"true": "true", "false": "false", "fallback": "fallback"},
                    "defaultVariant": "fallback",
                    "targeting": {"if": [{"sem_ver": [{"var": "version"}, "=", "1.0.0"]}, "true", "false"]},
                }
            }
        }
    )
    _check(
        flags.evaluate("f", "wrong", {"version": "not-a-version"}), "false", "false", Reason.TARGETING_MATCH
    )


def test_unknown_flag__any_context__is_flag_not_found(testbed: FlagSet) -> None:
    result = testbed.evaluate("missing-flag", "uh-oh", {})
    assert (result.value, result.error_code) == ("uh-oh", ErrorCode.FLAG_NOT_FOUND)


@pytest.mark.parametrize(
    ("key", "flag_type"),
    [("empty-targeting-flag", FlagType.BOOLEAN), ("disabled-string-flag", FlagType.INTEGER)],
)
def test_type_mismatch__wrong_requested_type__is_reported(
    testbed: FlagSet, key: str, flag_type: FlagType
) -> None:
    result = testbed.evaluate(key, "fallback", {}, flag_type)
    assert (result.value, result.error_code) == ("fallback", ErrorCode.TYPE_MISMATCH)


def test_object_flag__served_value__is_a_private_copy() -> None:
    variants = {"cfg": {"limits": [1, 2], "nested": {"on": True}}}
    flags = _flagd({"f": {"state": "ENABLED", "variants": variants, "defaultVariant": "cfg"}})
    first = flags.evaluate("f", {}, {})
    first.value["limits"].append(3)
    first.value["nested"]["on"] = False
    assert flags.evaluate("f", {}, {}).value == {"limits": [1, 2], "nested": {"on": True}}


def test_static_results__repeated_evaluations__share_one_prebuilt_result(testbed: FlagSet) -> None:
    assert testbed.evaluate("empty-targeting-flag", 0, {}) is testbed.evaluate("empty-targeting-flag", 0, {})
    first = testbed.evaluate(
        "targeting-key-flag", "x", {"targeting_key": "5c3d8535-f81a-4478-a6d3-afaa4d51199e"}
    )
    again = testbed.evaluate(
        "targeting-key-flag", "x", {"targeting_key": "5c3d8535-f81a-4478-a6d3-afaa4d51199e"}
    )
    assert first is again


# --- custom operators through flags (flagd-testbed vectors) ---------------------------------------------


@pytest.mark.parametrize(
    ("key", "name", "value"),
    [
        ("fractional-flag", "jack", "hearts"),
        ("fractional-flag", "queen", "spades"),
        ("fractional-flag", "ten", "clubs"),
        ("fractional-flag", "nine", "diamonds"),
        ("fractional-flag", "3", "clubs"),
        ("fractional-flag-A-shared-seed", "seven", "hearts"),
        ("fractional-flag-A-shared-seed", "eight", "diamonds"),
        ("fractional-flag-A-shared-seed", "nine", "clubs"),
        ("fractional-flag-A-shared-seed", "two", "spades"),
    ],
)
def test_fractional__testbed_v2_vectors__assign_the_published_variant(
    testbed: FlagSet, key: str, name: str, value: str
) -> None:
    _check(testbed.evaluate(key, "fallback", {"user": {"name": name}}), value, value, Reason.TARGETING_MATCH)


@pytest.mark.parametrize(
    ("key", "targeting_key", "value"),
    [
        ("fractional-flag-shorthand", "jon@company.com", "heads"),
        ("fractional-flag-shorthand", "jane@company.com", "tails"),
        ("fractional-hash-edge-flag", "ejOoVL", "lower"),
        ("fractional-hash-edge-flag", "bY9fO-", "lower"),
        ("fractional-hash-edge-flag", "SI7p-", "lower"),
        ("fractional-hash-edge-flag", "6LvT0", "upper"),
        ("fractional-hash-edge-flag", "ceQdGm", "upper"),
        ("fractional-single-entry-flag", None, "single"),
    ],
)
def test_fractional__testbed_targeting_key_vectors__assign_the_published_variant(
    testbed: FlagSet, key: str, targeting_key: str | None, value: str
) -> None:
    context = {} if targeting_key is None else {"targeting_key": targeting_key}
    assert testbed.evaluate(key, "fallback", context).value == value


@pytest.mark.parametrize(
    ("key", "context", "value"),
    [
        ("fractional-nested-var-flag", {"targeting_key": "jon@company.com", "color": "red"}, "red"),
        ("fractional-nested-var-flag", {"targeting_key": "jon@company.com", "color": "green"}, "green"),
        ("fractional-nested-var-flag", {"targeting_key": "user1", "color": "red"}, "blue"),
        ("fractional-nested-var-flag", {"targeting_key": "jon@company.com", "color": "yellow"}, "fallback"),
        ("fractional-nested-weight-flag", {"targeting_key": "jon@company.com", "tier": "premium"}, "red"),
        ("fractional-nested-weight-flag", {"targeting_key": "jon@company.com", "tier": "basic"}, "blue"),
        ("fractional-nested-weight-flag", {"targeting_key": "user1", "tier": "premium"}, "red"),
        ("fractional-as-condition-flag", {"targeting_key": "some-targeting-key"}, "hundreds"),
        ("starts-ends-flag", {"id": "abcdef"}, "prefix"),
        ("starts-ends-flag", {"id": "uvwxyz"}, "postfix"),
        ("starts-ends-flag", {"id": "abcxyz"}, "prefix"),
        ("starts-ends-flag", {"id": "lmnopq"}, "none"),
        ("equal-greater-lesser-version-flag", {"version": "2.0.0"}, "equal"),
        ("equal-greater-lesser-version-flag", {"version": "2.1.0"}, "greater"),
        ("equal-greater-lesser-version-flag", {"version": "1.9.0"}, "lesser"),
        ("equal-greater-lesser-version-flag", {"version": "2.0.0-alpha"}, "lesser"),
        ("equal-greater-lesser-version-flag", {"version": "2.0.0.0"}, "none"),
        ("major-minor-version-flag", {"version": "3.0.1"}, "minor"),
        ("major-minor-version-flag", {"version": "3.1.0"}, "major"),
        ("major-minor-version-flag", {"version": "4.0.0"}, "none"),
        ("semver-v-prefix-flag", {"version": "v1.0.0"}, "match"),
        ("semver-v-prefix-flag", {"version": "V1.0.0"}, "match"),
        ("semver-v-prefix-flag", {"version": "2.0.0"}, "no-match"),
        ("semver-partial-version-flag", {"version": "1.0"}, "match"),
        ("semver-partial-version-flag", {"version": 1}, "match"),
        ("semver-partial-version-flag", {"version": "2.0.0"}, "no-match"),
        ("semver-build-metadata-flag", {"version": "1.0.0+other"}, "match"),
        ("some-email-targeted-flag", {"email": "ballmer@macrosoft.com"}, "hi"),
        ("some-email-targeted-flag", {"email": "someone@else.com"}, "bye"),
    ],
)
def test_custom_operators__testbed_scenarios__resolve_the_published_value(
    testbed: FlagSet, key: str, context: dict[str, Any], value: str
) -> None:
    assert testbed.evaluate(key, "fallback", context).value == value


@pytest.mark.parametrize(
    ("weights", "tolerance"),
    [pytest.param([25, 75], 0.01, id="25-75"), pytest.param([50, 30, 20], 0.01, id="3-way")],
)
def test_fractional_flag__100k_targeting_keys__split_within_one_percent(
    weights: list[int], tolerance: float
) -> None:
    names = [f"v{i}" for i in range(len(weights))]
    targeting = {"fractional": [[n, w] for n, w in zip(names, weights, strict=True)]}
    flags = _flagd({"split": {"state": "ENABLED", "variants": {n: n for n in names}, "targeting": targeting}})
    counts = dict.fromkeys(names, 0)
    for i in range(100_000):
        result = flags.evaluate("split", None, {"targeting_key": f"{i:06d}-{i * 7919 % 100_003}"})
        counts[result.variant] += 1  # type: ignore[index]
    for name, weight in zip(names, weights, strict=True):
        assert abs(counts[name] / 100_000 - weight / sum(weights)) <= tolerance, counts


# --- context injection ----------------------------------------------------------------------------------


def test_context__flagd_flag_key__is_injected() -> None:
    variants = {"checkout": "c", "search": "s"}
    rule = {"var": "$flagd.flagKey"}
    flags = _flagd({k: {"state": "ENABLED", "variants": variants, "targeting": rule} for k in variants})
    assert flags.evaluate("checkout", "-", {}).variant == "checkout"
    assert flags.evaluate("search", "-", {"$flagd": {"flagKey": "spoofed"}}).variant == "search"


def test_context__flagd_timestamp__is_current_unix_seconds() -> None:
    between = {"<=": [{"var": "lo"}, {"var": "$flagd.timestamp"}, {"var": "hi"}]}
    targeting = {"if": [between, "now", "other"]}
    flags = _flagd({"t": {"state": "ENABLED", "variants": {"now": 1, "other": 0}, "targeting": targeting}})
    now = time.time()
    assert flags.evaluate("t", -1, {"lo": int(now), "hi": int(now) + 5}).variant == "now"
    assert flags.evaluate("t", -1, {"lo": 0, "hi": 1_000_000_000}).variant == "other"
    assert flags.evaluate("t", -1, {"lo": int(now) + 3600, "hi": int(now) + 7200}).variant == "other"


def test_context__timestamp_window__switches_with_time() -> None:
    now = int(time.time())
    targeting = {"if": [{">": [{"var": "$flagd.timestamp"}, {"var": "launch"}]}, "live", "teaser"]}
    flags = _flagd({"l": {"state": "ENABLED", "variants": {"live": 1, "teaser": 0}, "targeting": targeting}})
    assert flags.evaluate("l", -1, {"launch": now - 3600}).variant == "live"
    assert flags.evaluate("l", -1, {"launch": now + 3600}).variant == "teaser"


def test_context__targeting_key__is_exposed_as_targetingKey() -> None:
    targeting = {"if": [{"==": [{"var": "targetingKey"}, "user-1"]}, "hit", "miss"]}
    flags = _flagd(
        {"k": {"state": "ENABLED", "variants": {"hit": True, "miss": False}, "targeting": targeting}}
    )
    assert flags.evaluate("k", None, {"targeting_key": "user-1"}).variant == "hit"
    assert flags.evaluate("k", None, {"targetingKey": "user-1"}).variant == "hit"
    assert flags.evaluate("k", None, {"targeting_key": "user-2", "targetingKey": "user-1"}).variant == "miss"
    assert flags.evaluate("k", None, {}).variant == "miss"


def test_context__caller_mapping__is_not_modified() -> None:
    flags = _flagd({"k": {"state": "ENABLED", "variants": {"a": 1}, "targeting": {"if": [True, "a", None]}}})
    context = {"targeting_key": "u"}
    flags.evaluate("k", 0, context)
    assert context == {"targeting_key": "u"}


# --- $ref -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("email", "banner", "dark"),
    [
        ("ann@flagyard.dev", "internal", True),
        ("ann@example.com", "beta", False),
        ("zed@example.com", "public", False),
    ],
)
def test_refs__nested_evaluators__resolve_at_load(email: str, banner: str, dark: bool) -> None:
    flags = load_flagset(_json("evaluators.flagd.json"))
    assert flags.evaluate("banner", "?", {"email": email}).variant == banner
    assert flags.evaluate("dark-mode", None, {"email": email}).value is dark


def test_refs__rule_after_load__holds_no_ref_lookups() -> None:
    document = _json("evaluators.flagd.json")
    flags = load_flagd(document)
    document["$evaluators"]["is_staff"] = {"==": [1, 2]}
    assert flags.evaluate("dark-mode", None, {"email": "ann@flagyard.dev"}).value is True


# --- metadata -------------------------------------------------------------------------------------------


def test_metadata__flag_level__overrides_and_extends_set_level() -> None:
    flags = load_flagd(_json("metadata.flagd.json"))
    assert flags.metadata == {"flagSetId": "payment-service", "team": "payments", "version": "v1.2.0"}
    standard = flags.evaluate("standard-feature", False, {})
    assert standard.flag_metadata == {"flagSetId": "payment-service", "team": "payments", "version": "v1.2.0"}
    experimental = flags.evaluate("experimental-feature", False, {"beta": True})
    assert experimental.flag_metadata == {
        "flagSetId": "experiments",
        "team": "payments",
        "version": "v1.2.0",
        "owner": "research-team",
        "experimental": True,
        "weight": 0.5,
    }
    assert flags.flags["experimental-feature"].metadata == experimental.flag_metadata


@pytest.mark.parametrize(("key", "context"), [("experimental-feature", {}), ("retired-feature", {})])
def test_metadata__default_and_disabled_results__still_carry_metadata(
    key: str, context: dict[str, Any]
) -> None:
    result = load_flagd(_json("metadata.flagd.json")).evaluate(key, None, context)
    assert result.flag_metadata["team"] == "payments"
    assert result.reason in (Reason.DEFAULT, Reason.DISABLED)


# --- export ---------------------------------------------------------------------------------------------

_NATIVE = validate_document(_json("native_document.json"))

_ATTRIBUTES: dict[str, list[Any]] = {
    "targeting_key": [None, "u-included", "u-excluded", "u1", "u2"],
    "email": [
        None,
        "x@beta.io",
        "a@corp.com",
        "b@corp.org",
        "admin@flagyard.dev",
        "joe@flagyard.dev",
        42,
        ["a@corp.com"],
        "",
    ],
    "plan": [None, "free", "pro", ["pro", "free"], 3],
    "country": [None, "NL", "DE", "US", ["US", "NL"], [], 1],
    "age": [None, 17, 18, 30, 65.5, 100, "40", True, [20, 70], 29.9],
    "app_version": [None, "2.1.0", "v1.4", "1.9.9", "2", 2, "V2.0"],
    "tags": [None, ["vip"], ["goldfish"], "vip-list", [], [1], "gold"],
    "role": [None, "admin", "user"],
    "user": [None, {"tier": "gold"}, {"tier": "silver"}, "gold"],
    "score": [None, 5, 50, "5", False],
}


def _contexts(count: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    contexts = [{}, {"targeting_key": "u-included"}, {"targeting_key": "u-excluded", "email": "x@beta.io"}]
    for _ in range(count):
        context = {}
        for name, values in _ATTRIBUTES.items():
            value = rng.choice(values)
            if value is not None or rng.random() < 0.3:
                context[name] = value
        contexts.append(context)
    return contexts


def test_export__native_document__is_a_valid_json_flagd_document() -> None:
    exported = export_flagd(_NATIVE)
    text = json.dumps(exported)
    validate_flagd(json.loads(text))
    assert exported["metadata"] == {"environment": "staging", "revision": 7}
    assert set(exported["$evaluators"]) == {"beta", "nobody", "staff"}
    assert exported["flags"]["kill-switch"]["state"] == "DISABLED"
    assert exported["flags"]["static"] == {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "on",
        "metadata": {"ticket": "FY-1", "rollout": 1.0, "public": True},
    }
    assert "$ref" not in json.dumps(exported["$evaluators"])


def test_export__rules__become_nested_three_operand_ifs() -> None:
    targeting = export_flagd(_NATIVE)["flags"]["limits"]["targeting"]
    depth = 0
    while targeting is not None:
        assert set(targeting) == {"if"}
        assert len(targeting["if"]) == 3
        targeting = targeting["if"][2]
        depth += 1
    assert depth == 3


def test_export_round_trip__non_split_rules__evaluate_like_the_native_flagset() -> None:
    native = FlagSet.from_document(_NATIVE)
    flagd = load_flagd(json.loads(json.dumps(export_flagd(_NATIVE))))
    compared = 0
    reasons: set[Reason] = set()
    for context in _contexts(1500, seed=20240611):
        for key in native.flags:
            want = native.evaluate(key, "<default>", context)
            got = flagd.evaluate(key, "<default>", context)
            assert (got.value, got.variant, got.reason, got.error_code) == (
                want.value,
                want.variant,
                want.reason,
                want.error_code,
            ), (key, context)
            reasons.add(want.reason)
            compared += 1
    assert compared > 10_000
    assert reasons == {Reason.STATIC, Reason.DEFAULT, Reason.TARGETING_MATCH, Reason.DISABLED}


def test_export_round_trip__every_rule__is_reached_by_some_context() -> None:
    native = FlagSet.from_document(_NATIVE)
    variants_seen: dict[str, set[str | None]] = {key: set() for key in native.flags}
    for context in _contexts(1500, seed=20240611):
        for key in native.flags:
            variants_seen[key].add(native.evaluate(key, None, context).variant)
    assert variants_seen["checkout"] >= {"eu", "corp", "beta", "adult", "new", "vip", "standard"}
    assert variants_seen["limits"] == {"low", "high", "none"}
    assert variants_seen["negations"] == {"on", "off"}
    assert variants_seen["theme"] == {"light", "dark"}
    assert variants_seen["ratio"] == {"half", "one"}


def test_export__invalid_version_string__serves_default_variant_in_flagd() -> None:
    flagd = load_flagd(export_flagd(_NATIVE))
    native = FlagSet.from_document(_NATIVE)
    context = {"app_version": "not-a-version", "plan": "pro"}
    assert native.evaluate("ratio", None, context).reason is Reason.DEFAULT
    result = flagd.evaluate("checkout", None, context)
    assert (result.variant, result.reason) == ("standard", Reason.DEFAULT)
    assert native.evaluate("checkout", None, context).variant == "standard"


def _split_document(weight_unit: str, weights: list[int]) -> Document:
    variants = {f"v{i}": i for i in range(len(weights))}
    split = {
        "variations": [{"variant": f"v{i}", "weight": w} for i, w in enumerate(weights)],
        "weight_unit": weight_unit,
        "bucket_by": "account.id",
    }
    flag = {
        "key": "experiment",
        "type": "integer",
        "variants": variants,
        "salt": "s3",
        "rules": [
            {
                "id": "nl",
                "clauses": [{"attribute": "country", "operator": "eq", "values": ["NL"]}],
                "split": split,
            }
        ],
        "default_split": {**split, "bucket_by": "targeting_key"},
    }
    return validate_document({"flags": [flag]})


def test_export__split__becomes_guarded_fractional_over_the_native_hash_input() -> None:
    exported = export_flagd(_split_document("basis_points", [2500, 7500]))
    targeting = exported["flags"]["experiment"]["targeting"]
    guarded = targeting["if"][1]["if"]
    assert guarded[1]["fractional"] == [
        {"cat": ["s3:experiment:", {"var": "account.id"}]},
        ["v0", 2500],
        ["v1", 7500],
    ]
    assert guarded[2] == SPLIT_VALUE_MISSING
    default = targeting["if"][2]["if"][1]["fractional"]
    assert default[0] == {"cat": ["s3:experiment:", {"var": "targetingKey"}]}


@pytest.mark.parametrize(
    ("unit", "weights"),
    [("basis_points", [2500, 7500]), ("relative", [1, 2, 0, 3]), ("basis_points", [0, 10000])],
)
def test_export__split_with_string_or_integer_values__assigns_like_the_native_split(
    unit: str, weights: list[int]
) -> None:
    document = _split_document(unit, weights)
    native = FlagSet.from_document(document)
    flagd = load_flagd(export_flagd(document))
    for i in range(2000):
        ids: list[Any] = [f"acct-{i}", i]
        for account in ids:
            context = {"country": "NL", "account": {"id": account}, "targeting_key": f"tk-{i}"}
            want, got = native.evaluate("experiment", -1, context), flagd.evaluate("experiment", -1, context)
            assert (got.variant, got.reason) == (want.variant, Reason.TARGETING_MATCH)
            assert want.reason is Reason.SPLIT
        context = {"country": "DE", "targeting_key": f"tk-{i}"}
        assert (
            flagd.evaluate("experiment", -1, context).variant
            == native.evaluate("experiment", -1, context).variant
        )


@pytest.mark.parametrize("account", [None, 1.5, True, ["a"], {"x": 1}])
def test_export__split_on_unbucketable_value__an_error_with_the_callers_default_in_both(
    account: Any,
) -> None:
    document = _split_document("basis_points", [5000, 5000])
    context: dict[str, Any] = (
        {"country": "NL"} if account is None else {"country": "NL", "account": {"id": account}}
    )
    native = FlagSet.from_document(document).evaluate("experiment", -1, context)
    flagd = load_flagd(export_flagd(document)).evaluate("experiment", -1, context)
    assert native.error_code is ErrorCode.INVALID_CONTEXT
    assert (flagd.value, flagd.variant, flagd.error_code) == (-1, None, ErrorCode.GENERAL)


def _with_flag(**changes: Any) -> dict[str, Any]:
    flag: dict[str, Any] = {
        "key": "f",
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "default_variant": "off",
    }
    flag.update(changes)
    return {"flags": [{"key": "other", "type": "boolean", "variants": {"on": True}}, flag]}


def _rule(operator: str, value: Any, negate: bool = False) -> dict[str, Any]:
    clause = {"attribute": "a", "operator": operator, "values": [value], "negate": negate}
    return _with_flag(rules=[{"id": "r", "clauses": [clause], "variant": "on"}])


@pytest.mark.parametrize(
    ("document", "context", "variant"),
    [
        (_rule("matches", "^x"), {}, "off"),
        (_rule("matches", "^x"), {"a": 5}, "off"),
        (_rule("matches", "^x"), {"a": "xyz"}, None),
        (_rule("matches", "^x", negate=True), {"a": 5}, "on"),
        (_rule("matches", "^x", negate=True), {"a": "abc"}, None),
        (_rule("before", 1700000000), {"a": 1600000000}, "on"),
        (_rule("before", 1700000000), {"a": 1800000000.5}, "off"),
        (_rule("before", 1700000000), {"a": "2001-01-01"}, None),
        (_rule("after", "2024-01-01"), {"a": 1800000000}, "on"),
        (_rule("after", "2024-01-01", negate=True), {"a": 1800000000}, "off"),
        (_rule("after", "2024-01-01"), {"a": True}, "off"),
    ],
)
def test_export__matches_and_dates__exact_where_expressible_else_an_error(
    document: Any, context: dict[str, Any], variant: str | None
) -> None:
    native = FlagSet.from_document(validate_document(document))
    flagd = load_flagd(export_flagd(validate_document(document)))
    got = flagd.evaluate("f", None, context)
    assert got.variant == variant
    if variant is not None:
        assert native.evaluate("f", None, context).variant == variant
    else:
        assert got.error_code is ErrorCode.GENERAL


def test_export__kill_switch__enabled_serving_the_off_variant() -> None:
    document = validate_document(_with_flag(enabled=False, off_variant="off", default_variant="on"))
    exported = export_flagd(document)["flags"]["f"]
    assert exported == {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"}
    assert load_flagd(export_flagd(document)).evaluate("f", None, {}).value is False


@pytest.mark.parametrize(("gate", "variant"), [(True, "on"), (False, "off"), (None, "off")])
def test_export__prerequisite__inlined_like_the_native_check(gate: bool | None, variant: str) -> None:
    gate_flag = {
        "key": "gate",
        "type": "boolean",
        "variants": {"yes": True, "no": False},
        "default_variant": "no",
        "rules": [
            {
                "id": "r",
                "clauses": [{"attribute": "ok", "operator": "eq", "values": [True]}],
                "variant": "yes",
            }
        ],
    }
    flag = {
        "key": "f",
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "default_variant": "on",
        "off_variant": "off",
        "prerequisites": [{"flag": "gate", "variant": "yes"}],
    }
    document = validate_document({"flags": [gate_flag, flag]})
    context = {} if gate is None else {"ok": gate}
    assert FlagSet.from_document(document).evaluate("f", None, context).variant == variant
    assert load_flagd(export_flagd(document)).evaluate("f", None, context).variant == variant


def test_export__unusual_values__exported_rather_than_refused() -> None:
    document = validate_document(
        {
            "flags": [
                {"key": "o", "type": "object", "variants": {"list": [1, 2]}},
                {"key": "i", "type": "integer", "variants": {"huge": 2**60}},
            ]
        }
    )
    flags = export_flagd(document)["flags"]
    assert flags["o"]["variants"] == {"list": [1, 2]}
    assert flags["i"]["variants"] == {"huge": 2**60}


def test_export__invalid_native_document__is_rejected_by_native_validation() -> None:
    broken = Document.model_validate(
        {"flags": [{"key": "f", "type": "boolean", "variants": {"on": True}, "default_variant": "nope"}]}
    )
    with pytest.raises(DefinitionError) as caught:
        export_flagd(broken)
    assert caught.value.issues[0].path == "/flags/0/default_variant"
