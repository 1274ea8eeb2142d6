"""``client.explain``: why a flag served what it served, from the flags the SDK holds (offline and local
modes; the local-mode tests run against a real data plane and Redis). Remote mode, and local mode before
any flags, answer the default with an error and no trace; nothing raises into the app."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sdk_helpers import (
    BETA_USER,
    SDK_KEY,
    Env,
    ThreadPlane,
    seeded_env,
    stopping_planes,
    unused_target,
    wait_until,
)

from flagyard import (
    AsyncFlagyardClient,
    ErrorCode,
    EvaluationResult,
    Explanation,
    FlagType,
    FlagyardClient,
    Reason,
)
from flagyard.rule_engine.bucketing import bucket

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flags.json"
HOLIDAY_USER = {"targeting_key": "u-1", "country": "DE", "now": "2026-12-24"}


def clause(operator: str, attribute: str | None, values: list[Any], value: Any) -> dict[str, Any]:
    return {
        "operator": operator,
        "attribute": attribute,
        "values": values,
        "negate": False,
        "value": value,
        "matched": True,
        "segments": [],
    }


# The README's example: `client.explain("banner-text", HOLIDAY_USER).to_dict()` over examples/flags.json.
README_EXPLANATION: dict[str, Any] = {
    "result": {
        "value": "Happy holidays!",
        "variant": "festive",
        "reason": "TARGETING_MATCH",
        "error_code": None,
        "error_message": None,
        "rule_id": "season",
        "version": 0,
    },
    "trace": {
        "flag": "banner-text",
        "version": 0,
        "enabled": True,
        "served_by": "rule",
        "variant": "festive",
        "reason": "TARGETING_MATCH",
        "prerequisites": [
            {
                "flag": "new-checkout",
                "variant": "on",
                "state": "evaluated",
                "met": True,
                "trace": {
                    "flag": "new-checkout",
                    "version": 0,
                    "enabled": True,
                    "served_by": "rule",
                    "variant": "on",
                    "reason": "TARGETING_MATCH",
                    "prerequisites": [],
                    "rules": [
                        {
                            "index": 0,
                            "id": "beta",
                            "matched": True,
                            "clauses": [
                                {
                                    **clause("segment_match", None, ["beta-testers"], None),
                                    "segments": [
                                        {
                                            "key": "beta-testers",
                                            "matched": True,
                                            "decision": "rule",
                                            "rule": 0,
                                            "rules": [
                                                {
                                                    "index": 0,
                                                    "id": None,
                                                    "matched": True,
                                                    "clauses": [
                                                        clause("in", "country", ["DE", "AT", "CH"], "DE")
                                                    ],
                                                }
                                            ],
                                        }
                                    ],
                                }
                            ],
                        }
                    ],
                    "targeting": None,
                    "split": None,
                },
            }
        ],
        "rules": [
            {
                "index": 0,
                "id": "season",
                "matched": True,
                "clauses": [clause("after", "now", ["2026-12-01"], "2026-12-24")],
            }
        ],
        "targeting": None,
        "split": None,
    },
}


def test_offline__explain__is_the_readme_example() -> None:
    with FlagyardClient.offline(EXAMPLE) as client:
        explanation = client.explain("banner-text", HOLIDAY_USER)
        assert isinstance(explanation, Explanation)
        assert explanation.result == client.details("banner-text", "x", HOLIDAY_USER)
        assert json.loads(json.dumps(explanation.to_dict())) == README_EXPLANATION


def test_offline__explain_a_split__bucket_and_owner() -> None:
    context = {"targeting_key": "u-2", "country": "FR"}
    with FlagyardClient.offline(EXAMPLE) as client:
        explanation = client.explain("new-checkout", context, False)
        assert explanation.result == client.details("new-checkout", False, context)
        trace = explanation.trace
        assert trace is not None
        assert [(r.id, r.matched) for r in trace.rules] == [("beta", False), ("staff", False)]
        assert trace.rules[0].clauses[0].segments[0].decision == "no_rule"
        assert trace.split is not None
        assert trace.split.bucket == bucket("c0ffee", "new-checkout", "u-2", 10000)
        assert (trace.served_by, trace.split.variant) == ("fallthrough", explanation.result.variant)
        assert explanation.result.reason is Reason.SPLIT


@pytest.mark.parametrize(
    ("key", "flag_type", "code"),
    [("missing", None, ErrorCode.FLAG_NOT_FOUND), ("rate-limit", FlagType.STRING, ErrorCode.TYPE_MISMATCH)],
)
def test_offline__flag_not_evaluated__error_without_trace(
    key: str, flag_type: FlagType | None, code: ErrorCode
) -> None:
    with FlagyardClient.offline(EXAMPLE) as client:
        explanation = client.explain(key, {}, "d", flag_type)
        assert (explanation.result.value, explanation.result.error_code, explanation.trace) == (
            "d",
            code,
            None,
        )


def test_offline__reloaded_file__explains_the_new_flags(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    flag = {"key": "f", "type": "boolean", "variants": {"on": True, "off": False}, "default_variant": "off"}
    path.write_text(json.dumps({"flags": [flag]}))
    with FlagyardClient.offline(path) as client:
        assert client.explain("f").result.variant == "off"
        rule = {
            "id": "de",
            "clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}],
            "variant": "on",
        }
        path.write_text(json.dumps({"flags": [{**flag, "rules": [rule]}]}))
        assert client.resolver.reload()  # type: ignore[attr-defined]
        trace = client.explain("f", {"country": "DE"}).trace
        assert trace is not None
        assert (trace.served_by, trace.variant, trace.rules[0].id) == ("rule", "on", "de")


def test_offline__flagd_file__explains_with_the_result_alone(tmp_path: Path) -> None:
    path = tmp_path / "flags.flagd.json"
    flagd = {
        "flags": {"f": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}}
    }
    path.write_text(json.dumps(flagd))
    with FlagyardClient.offline(path) as client:
        explanation = client.explain("f", {}, False)
        assert (explanation.result.value, explanation.result.variant, explanation.trace) == (True, "on", None)


def test_remote_mode__explain__default_with_general_error() -> None:
    with FlagyardClient(
        target=unused_target(), sdk_key=SDK_KEY, mode="remote", ready_timeout=0, report_interval=0
    ) as client:
        explanation = client.explain("banner", BETA_USER, "d")
    assert (explanation.result.value, explanation.result.reason, explanation.trace) == (
        "d",
        Reason.ERROR,
        None,
    )
    assert explanation.result.error_code is ErrorCode.GENERAL
    assert explanation.result.error_message == "explain needs local or offline mode"


def test_local_mode__before_any_flags__provider_not_ready() -> None:
    with FlagyardClient(
        target=unused_target(), sdk_key=SDK_KEY, mode="local", ready_timeout=0, report_interval=0
    ) as client:
        explanation = client.explain("banner", BETA_USER, "d")
    assert (explanation.result.value, explanation.result.error_code, explanation.trace) == (
        "d",
        ErrorCode.PROVIDER_NOT_READY,
        None,
    )


def test_local_mode__before_any_flags__explains_the_bootstrap_file() -> None:
    with FlagyardClient(
        target=unused_target(),
        sdk_key=SDK_KEY,
        mode="local",
        bootstrap_file=EXAMPLE,
        ready_timeout=0,
        report_interval=0,
    ) as client:
        explanation = client.explain("banner-text", HOLIDAY_USER)
    assert explanation.to_dict() == README_EXPLANATION


class BrokenResolver:
    """A resolver (the app may pass its own) whose explain fails."""

    def explain(self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType | None) -> Any:
        raise RuntimeError("boom")

    def resolve(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType
    ) -> EvaluationResult:
        raise RuntimeError("boom")


def test_explain__resolver_fails__default_with_general_error() -> None:
    client = FlagyardClient(BrokenResolver())  # type: ignore[arg-type]
    explanation = client.explain("f", {}, "d")
    assert (explanation.result.value, explanation.result.error_code, explanation.trace) == (
        "d",
        ErrorCode.GENERAL,
        None,
    )
    assert explanation.result.error_message == "RuntimeError: boom"


# --- local mode against a data plane, and the async client ---


@pytest.fixture
def env() -> Iterator[Env]:
    yield from seeded_env()


@pytest.fixture
def planes() -> Iterator[list[ThreadPlane]]:
    yield from stopping_planes()


@pytest.fixture
def plane(env: Env, planes: list[ThreadPlane]) -> ThreadPlane:
    planes.append(ThreadPlane(env.settings()).start())
    return planes[-1]


def test_local_mode__explains_the_streamed_flags_and_their_changes(env: Env, plane: ThreadPlane) -> None:
    with FlagyardClient(target=plane.target, sdk_key=SDK_KEY, mode="local", report_interval=0) as client:
        explanation = client.explain("gated", BETA_USER, False)
        assert explanation.result == client.details("gated", False, BETA_USER)
        trace = explanation.trace
        assert trace is not None
        (prerequisite,) = trace.prerequisites
        assert (prerequisite.flag, prerequisite.state, prerequisite.met) == (
            "new-checkout",
            "evaluated",
            True,
        )
        assert prerequisite.trace is not None
        assert prerequisite.trace.rules[0].clauses[0].segments[0].decision == "rule"
        assert (trace.served_by, trace.variant) == ("fallthrough", "on")

        env.put_flag("new-checkout", enabled=False)
        wait_until(lambda: client.details("gated", True, BETA_USER).reason is Reason.PREREQUISITE_FAILED)
        explanation = client.explain("gated", BETA_USER, True)
        assert explanation.trace is not None
        assert explanation.trace.prerequisites[0].state == "disabled"
        assert explanation.trace.served_by == "prerequisite"


def test_async_client__explain_in_each_mode(plane: ThreadPlane) -> None:
    async def main() -> list[Explanation]:
        async with AsyncFlagyardClient.offline(EXAMPLE) as offline:
            first = await offline.explain("banner-text", HOLIDAY_USER)
        async with AsyncFlagyardClient(
            target=plane.target, sdk_key=SDK_KEY, mode="local", report_interval=0
        ) as local:
            assert await local.wait_ready(10)
            second = await local.explain("new-checkout", BETA_USER, False)
        async with AsyncFlagyardClient(
            target=plane.target, sdk_key=SDK_KEY, mode="remote", report_interval=0
        ) as remote:
            third = await remote.explain("new-checkout", BETA_USER, False)
        return [first, second, third]

    offline, local, remote = asyncio.run(main())
    assert offline.to_dict() == README_EXPLANATION
    assert local.trace is not None
    assert (local.result.value, local.trace.served_by, local.result.rule_id) == (True, "rule", "beta")
    assert (remote.result.value, remote.result.error_code, remote.trace) == (False, ErrorCode.GENERAL, None)
