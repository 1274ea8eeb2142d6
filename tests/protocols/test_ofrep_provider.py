"""The unmodified PyPI ``openfeature-provider-ofrep`` against a real stack answers as ``FlagyardClient`` does.

For a matrix of flags (five types, rules, segments, splits, prerequisites, disabled with and without an off
variant, no default, a missing flag, type mismatches) and contexts, the stock OFREP provider and Flagyard's
own OpenFeature provider (remote mode, gRPC) return the same value, variant, error code and reason family
through the OpenFeature SDK. Where the stock Python provider 0.3.0 itself differs, the test says so:

- a result without a variant (OFREP's ``codeDefaultFlag``: disabled without an off variant, no default) —
  the provider reads ``variant`` unconditionally (``data["variant"]``), so the SDK reports ERROR/GENERAL;
  the value (the caller's default) is the same;
- PREREQUISITE_FAILED is sent as DISABLED (OpenFeature's reasons have no prerequisite reason);
- an integer flag read as float is TYPE_MISMATCH in the provider (Flagyard serves it as a float);
- a call of the wrong type whose evaluation also fails (a split without a targeting key): OFREP sends no
  type (ADR-0003), so the server's error (TARGETING_KEY_MISSING) comes first, where Flagyard checks the
  type first (TYPE_MISMATCH). Both serve the caller's default.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from ofrep_stack import ENVIRONMENT, OfrepStack, ofrep_stack_fixture
from openfeature import api
from openfeature.client import OpenFeatureClient
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.evaluation_context import EvaluationContext
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagEvaluationDetails
from polling_helpers import wait_until

from flagyard.sdk.provider import FlagyardProvider

pytestmark = pytest.mark.timeout(300)

SPLIT = {"variations": [{"variant": "a", "weight": 5000}, {"variant": "b", "weight": 5000}]}
DOCUMENT: dict[str, Any] = {
    "flags": [
        {
            "key": "kill",
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "enabled": True,
            "off_variant": "off",
            "default_variant": "on",
            "rules": [
                {
                    "id": "de",
                    "clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}],
                    "variant": "off",
                }
            ],
            "metadata": {"team": "payments", "tier": 1},
        },
        {
            "key": "beta-access",
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "enabled": True,
            "default_variant": "off",
            "rules": [
                {
                    "id": "beta",
                    "clauses": [{"operator": "segment_match", "values": ["beta"]}],
                    "variant": "on",
                }
            ],
        },
        {
            "key": "layout",
            "type": "string",
            "variants": {"a": "grid", "b": "list"},
            "enabled": True,
            "default_split": SPLIT,
        },
        {
            "key": "limit",
            "type": "integer",
            "variants": {"low": 10, "high": 1000},
            "enabled": True,
            "default_variant": "low",
            "rules": [
                {
                    "id": "ent",
                    "clauses": [{"attribute": "plan", "operator": "eq", "values": ["ent"]}],
                    "variant": "high",
                }
            ],
        },
        {
            "key": "ratio",
            "type": "float",
            "variants": {"small": 0.1, "big": 2.5},
            "enabled": True,
            "default_variant": "small",
        },
        {
            "key": "config",
            "type": "object",
            "variants": {"v1": {"color": "red", "sizes": [1, 2]}, "v2": {"color": "blue"}},
            "enabled": True,
            "default_variant": "v1",
            "rules": [
                {
                    "id": "at",
                    "clauses": [{"attribute": "country", "operator": "eq", "values": ["AT"]}],
                    "variant": "v2",
                }
            ],
        },
        {
            "key": "off-with-variant",
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "enabled": False,
            "off_variant": "off",
            "default_variant": "on",
        },
        {"key": "off-no-variant", "type": "string", "variants": {"x": "X"}, "enabled": False},
        {
            "key": "needs-kill",
            "type": "string",
            "variants": {"yes": "Y", "no": "N"},
            "enabled": True,
            "off_variant": "no",
            "default_variant": "yes",
            "prerequisites": [{"flag": "kill", "variant": "on"}],
        },
        {
            "key": "no-default",
            "type": "integer",
            "variants": {"one": 1},
            "enabled": True,
            "rules": [
                {
                    "id": "ent",
                    "clauses": [{"attribute": "plan", "operator": "eq", "values": ["ent"]}],
                    "variant": "one",
                }
            ],
        },
    ],
    "segments": [
        {
            "key": "beta",
            "included": ["vip-1"],
            "rules": [{"clauses": [{"attribute": "country", "operator": "in", "values": ["AT"]}]}],
        }
    ],
}
CONTEXTS = [
    EvaluationContext(),
    EvaluationContext("u1", {"country": "DE"}),
    EvaluationContext("vip-1", {"plan": "ent"}),
    EvaluationContext("u7", {"country": "AT", "plan": "free"}),
    EvaluationContext(None, {"country": "FR"}),
    *(EvaluationContext(f"user-{i}") for i in range(12)),
]
Getter = Callable[[OpenFeatureClient], Callable[..., FlagEvaluationDetails[Any]]]
CALLS: list[tuple[str, Getter, Any]] = [
    ("kill", lambda c: c.get_boolean_details, True),
    ("beta-access", lambda c: c.get_boolean_details, False),
    ("layout", lambda c: c.get_string_details, "default"),
    ("limit", lambda c: c.get_integer_details, -1),
    ("ratio", lambda c: c.get_float_details, -1.0),
    ("config", lambda c: c.get_object_details, {"fallback": True}),
    ("off-with-variant", lambda c: c.get_boolean_details, True),
    ("off-no-variant", lambda c: c.get_string_details, "code default"),
    ("needs-kill", lambda c: c.get_string_details, "code default"),
    ("no-default", lambda c: c.get_integer_details, 42),
    ("missing", lambda c: c.get_boolean_details, True),
    ("layout", lambda c: c.get_boolean_details, False),  # type mismatch: a string flag read as boolean
    ("kill", lambda c: c.get_string_details, "s"),  # type mismatch
    ("ratio", lambda c: c.get_integer_details, 0),  # type mismatch: a float flag read as integer
]
FAMILY = {"PREREQUISITE_FAILED": "DISABLED"}
SERVER_ERRORS = {ErrorCode.TARGETING_KEY_MISSING, ErrorCode.INVALID_CONTEXT, ErrorCode.PARSE_ERROR}

stack = ofrep_stack_fixture(DOCUMENT)


@pytest.fixture(scope="module")
def clients(stack: OfrepStack) -> Iterator[tuple[OpenFeatureClient, OpenFeatureClient, str]]:
    _, sdk_key = stack.sdk_key("matrix")
    wait_until(lambda: stack.serves(sdk_key, "kill"), 30)
    ofrep = OFREPProvider(stack.ofrep_url, headers_factory=lambda: {"X-API-Key": sdk_key})
    flagyard = FlagyardProvider(target=f"127.0.0.1:{stack.grpc_port}", sdk_key=sdk_key, ready_timeout=30)
    api.set_provider(ofrep, domain="ofrep-stock")
    api.set_provider(flagyard, domain="flagyard")
    try:
        own = api.get_client("flagyard")
        wait_until(lambda: own.get_boolean_details("kill", False).error_code is None, 30)
        yield api.get_client("ofrep-stock"), own, sdk_key
    finally:
        api.clear_providers()


def _reason(details: FlagEvaluationDetails[Any]) -> str:
    reason = str(getattr(details.reason, "value", details.reason))
    return FAMILY.get(reason, reason)


def test_ofrep_provider__flag_and_context_matrix__same_answers_as_flagyard_client(
    clients: tuple[OpenFeatureClient, OpenFeatureClient, str],
) -> None:
    stock, own, _ = clients
    compared = code_defaults = 0
    for key, getter, default in CALLS:
        for context in CONTEXTS:
            theirs = getter(stock)(key, default, context)
            ours = getter(own)(key, default, context)
            where = f"{key} as {type(default).__name__} for {context}: stock {theirs}, flagyard {ours}"
            assert theirs.value == ours.value, where
            assert type(theirs.value) is type(ours.value), where
            if ours.error_code is None and ours.variant is None:
                # codeDefaultFlag: the stock provider 0.3.0 reads data["variant"], absent here
                assert (theirs.error_code, theirs.reason) == (ErrorCode.GENERAL, "ERROR"), where
                code_defaults += 1
                continue
            if ours.error_code is ErrorCode.TYPE_MISMATCH and theirs.error_code in SERVER_ERRORS:
                # OFREP evaluates without a type (ADR-0003): an evaluation error comes before the
                # provider's type check, where Flagyard checks the type first
                assert theirs.reason == "ERROR", where
                continue
            assert theirs.error_code == ours.error_code, where
            assert _reason(theirs) == _reason(ours), where
            if ours.error_code is None:
                assert theirs.variant == ours.variant, where
                assert dict(theirs.flag_metadata) == dict(ours.flag_metadata), where
            compared += 1
    assert code_defaults > 0
    assert compared > 150
    # the matrix reaches every outcome it is meant to
    seen = {
        (_reason(d := getter(own)(key, default, context)), d.error_code)
        for key, getter, default in CALLS
        for context in CONTEXTS
    }
    for outcome in [
        ("STATIC", None),
        ("TARGETING_MATCH", None),
        ("SPLIT", None),
        ("DEFAULT", None),
        ("DISABLED", None),
        ("ERROR", ErrorCode.FLAG_NOT_FOUND),
        ("ERROR", ErrorCode.TYPE_MISMATCH),
        ("ERROR", ErrorCode.TARGETING_KEY_MISSING),
    ]:
        assert outcome in seen, outcome


def test_ofrep_provider__split__same_variant_as_flagyard_for_many_users(
    clients: tuple[OpenFeatureClient, OpenFeatureClient, str],
) -> None:
    stock, own, _ = clients
    variants = []
    for i in range(200):
        context = EvaluationContext(f"split-user-{i}")
        theirs = stock.get_string_details("layout", "", context)
        assert theirs.variant == own.get_string_details("layout", "", context).variant
        variants.append(theirs.variant)
    assert set(variants) == {"a", "b"}


def test_ofrep_provider__change_over_rest__reaches_the_provider(
    stack: OfrepStack, clients: tuple[OpenFeatureClient, OpenFeatureClient, str]
) -> None:
    stock, _, _ = clients
    assert stock.get_float_value("ratio", -1.0) == 0.1
    stack.configure("ratio", default_variant="big")
    assert wait_until(lambda: stock.get_float_value("ratio", -1.0) == 2.5, 10, interval=0.05)
    stack.configure("ratio", default_variant="small")
    assert wait_until(lambda: stock.get_float_value("ratio", -1.0) == 0.1, 10, interval=0.05)


def test_ofrep_provider__bulk_etag__304_until_a_change_over_rest(
    stack: OfrepStack, clients: tuple[OpenFeatureClient, OpenFeatureClient, str]
) -> None:
    _, _, sdk_key = clients
    url = f"{stack.ofrep_url}/ofrep/v1/evaluate/flags"
    headers = {"X-API-Key": sdk_key}
    body = {"context": {"targetingKey": "u1", "country": "DE"}}
    first = httpx.post(url, json=body, headers=headers)
    etag = first.headers["etag"]
    assert httpx.post(url, json=body, headers={**headers, "If-None-Match": etag}).status_code == 304
    stack.configure("limit", default_variant="high")
    try:
        changed = wait_until(
            lambda: (
                (r := httpx.post(url, json=body, headers={**headers, "If-None-Match": etag})).status_code
                == 200
                and r
            ),
            10,
        )
        assert {f["key"]: f for f in changed.json()["flags"]}["limit"]["value"] == 1000
    finally:
        stack.configure("limit", default_variant="low")


def test_ofrep_provider__missing_or_revoked_key__unauthorized(stack: OfrepStack) -> None:
    key_id, sdk_key = stack.sdk_key("to-revoke")
    wait_until(lambda: stack.serves(sdk_key, "kill"), 30)
    api.set_provider(
        OFREPProvider(stack.ofrep_url, headers_factory=lambda: {"X-API-Key": sdk_key}), "revoked"
    )
    api.set_provider(OFREPProvider(stack.ofrep_url), "keyless")
    try:
        client = api.get_client("revoked")
        assert client.get_boolean_details("kill", False).value is True
        keyless = api.get_client("keyless").get_boolean_details("kill", False)
        assert (keyless.value, keyless.error_code, keyless.error_message) == (
            False,
            ErrorCode.GENERAL,
            "unauthorized",
        )
        r = stack.api.delete(f"{ENVIRONMENT}/sdk-keys/{key_id}")
        assert r.status_code in (200, 204), r.text
        revoked = wait_until(
            lambda: (d := client.get_boolean_details("kill", False)).error_code is not None and d, 15
        )
        assert (revoked.value, revoked.error_code, revoked.error_message) == (
            False,
            ErrorCode.GENERAL,
            "unauthorized",
        )
    finally:
        api.clear_providers()
