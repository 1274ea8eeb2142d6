"""Explain and impact preview over the admin API (real PostgreSQL and Redis): explain answers what the rule
engine answers for the environment as exported; preview's counts equal a brute-force evaluation of the
same contexts before and after the very PATCH it previews, over supplied contexts and over the stored
sample; both refuse bad input with pointers and write nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from typing import Any

import httpx
import pytest
import redis.asyncio
import sqlalchemy as sa
from contract_helpers import CheckedClient, ResponseContract
from cp_helpers import ADMIN_KEY, REDIS_URL, Api, rows
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flagyard import rule_engine
from flagyard.contracts.sampling import policy_key, store_samples
from flagyard.control_plane import schemas
from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import Settings
from flagyard.rule_engine import limits
from flagyard.rule_engine.explain import (
    BucketRange,
    ClauseTrace,
    Explanation,
    FlagTrace,
    PrerequisiteTrace,
    RuleTrace,
    SegmentTrace,
    SplitTrace,
    TargetingTrace,
)

P = "/api/v1/projects/shop"
F = f"{P}/flags/checkout"
EXPLAIN = f"{F}/environments/prod/explain"
PREVIEW = f"{F}/environments/prod/preview"

PROD = {
    "enabled": True,
    "prerequisites": [{"flag": "auth", "variant": "on"}],
    "rules": [
        {
            "id": "europe",
            "clauses": [{"attribute": "country", "operator": "in", "values": ["de", "fr"]}],
            "variant": "b",
        },
        {"id": "beta", "clauses": [{"operator": "segment_match", "values": ["beta"]}], "variant": "c"},
    ],
    "default_split": {"variations": [{"variant": "a", "weight": 5000}, {"variant": "b", "weight": 5000}]},
}
PROPOSED = {
    "rules": [
        {
            "id": "germany",
            "clauses": [{"attribute": "country", "operator": "eq", "values": ["de"]}],
            "variant": "b",
        },
        {"id": "beta", "clauses": [{"operator": "segment_match", "values": ["beta"]}], "variant": "c"},
        {
            "id": "pro",
            "clauses": [{"attribute": "plan", "operator": "eq", "values": ["pro"]}],
            "split": {
                "variations": [{"variant": "c", "weight": 1}, {"variant": "a", "weight": 1}],
                "weight_unit": "relative",
            },
        },
    ],
    "default_split": {"variations": [{"variant": "a", "weight": 3000}, {"variant": "b", "weight": 7000}]},
}


def _world(client: TestClient, api: Api) -> None:
    """shop (dev, prod): segment beta (u1, or plan enterprise), flag auth (off for blocked contexts) and
    flag checkout (a/b/c) in prod behind auth, with a rule, a segment rule and a default split."""
    api.project()
    api.segment(
        rules=[{"clauses": [{"attribute": "plan", "operator": "eq", "values": ["enterprise"]}]}],
    )
    api.flag(
        key="auth",
        environments={
            "prod": {
                "enabled": True,
                "default_variant": "on",
                "rules": [
                    {
                        "id": "blocked",
                        "clauses": [{"attribute": "blocked", "operator": "eq", "values": [True]}],
                        "variant": "off",
                    }
                ],
            }
        },
    )
    api.flag(type="string", variants={"a": "A", "b": "B", "c": "C"}, environments={"prod": PROD})


def _contexts(n: int = 300) -> list[dict[str, Any]]:
    """Varied contexts: countries, plans, segment members, blocked ones (prerequisite fails) and some
    without a targeting key (the split cannot bucket them: an error)."""
    countries = ["de", "fr", "us", "jp", None]
    plans = ["free", "pro", "enterprise"]
    contexts = []
    for i in range(n):
        context: dict[str, Any] = {"plan": plans[i % 3]}
        if i % 17 != 0:
            context["targeting_key"] = f"user-{i}"
        if countries[i % 5] is not None:
            context["country"] = countries[i % 5]
        if i % 23 == 0:
            context["blocked"] = True
        if i == 1:
            context["targeting_key"] = "u1"
        contexts.append(context)
    return contexts


def _flagset(client: TestClient) -> rule_engine.FlagSet:
    """The environment as exported (what full sync serves), compiled by the rule engine."""
    r = client.get(f"{P}/environments/prod/export")
    assert r.status_code == 200, r.text
    return rule_engine.load_flagset(r.json())


def _brute_force(
    before: rule_engine.FlagSet, after: rule_engine.FlagSet, contexts: list[dict[str, Any]]
) -> dict[str, Any]:
    transitions: Counter[tuple[str | None, str | None]] = Counter()
    errors = [0, 0]
    for context in contexts:
        was = before.evaluate("checkout", None, context)
        will = after.evaluate("checkout", None, context)
        errors[0] += was.error_code is not None
        errors[1] += will.error_code is not None
        if was.variant != will.variant:
            transitions[was.variant, will.variant] += 1
    return {
        "changed": sum(transitions.values()),
        "transitions": {(t["from"], t["to"]): t["count"] for t in _as_list(transitions)},
        "errors": errors,
    }


def _as_list(transitions: Counter[tuple[str | None, str | None]]) -> list[dict[str, Any]]:
    return [{"from": a, "to": b, "count": n} for (a, b), n in transitions.items()]


def _state(client: TestClient, engine: sa.Engine) -> tuple[int, int, int]:
    """The flag's version, and how many audit entries and outbox rows exist."""
    version = client.get(F).json()["version"]
    audit = rows(engine, "SELECT count(*) FROM audit_log")[0][0]
    outbox = rows(engine, "SELECT count(*) FROM outbox")[0][0]
    return version, audit, outbox


def _check_preview(
    answer: dict[str, Any], expected: dict[str, Any], contexts: list[dict[str, Any]], source: str
) -> None:
    assert answer["source"] == source
    assert answer["contexts"] == len(contexts)
    assert answer["changed"] == expected["changed"]
    assert answer["unchanged"] == len(contexts) - expected["changed"]
    assert {(t["from"], t["to"]): t["count"] for t in answer["transitions"]} == expected["transitions"]
    assert [answer["errors_before"], answer["errors_after"]] == expected["errors"]
    counts = [t["count"] for t in answer["transitions"]]
    assert counts == sorted(counts, reverse=True)
    assert all(t["from"] != t["to"] for t in answer["transitions"])
    assert answer["note"] is None


# --- explain -------------------------------------------------------------------------------------


@pytest.mark.parametrize("i", [0, 1, 2, 3, 4, 5, 23, 46])
def test_explain__any_context__the_rule_engines_result_for_the_environment(
    client: TestClient, api: Api, i: int
) -> None:
    _world(client, api)
    context = _contexts()[i]
    expected = _flagset(client).evaluate("checkout", "fallback", context)

    r = client.post(EXPLAIN, json={"context": context, "default": "fallback"})

    assert r.status_code == 200, r.text
    result = r.json()["result"]
    assert result == {
        "value": expected.value,
        "variant": expected.variant,
        "reason": str(expected.reason),
        "error_code": None if expected.error_code is None else str(expected.error_code),
        "error_message": expected.error_message,
        "rule_id": expected.rule_id,
        "version": expected.version,
    }
    trace = r.json()["trace"]
    assert trace == rule_engine.explain(_flagset(client), "checkout", context, "fallback").to_dict()["trace"]
    assert trace["flag"] == "checkout"


def test_explain__the_cases_the_world_was_built_for(client: TestClient, api: Api) -> None:
    """Guards the parametrized test above against a world that serves one answer to everyone."""
    _world(client, api)

    def result(context: dict[str, Any]) -> dict[str, Any]:
        r = client.post(EXPLAIN, json={"context": context})
        assert r.status_code == 200, r.text
        return dict(r.json()["result"])

    assert result({"targeting_key": "x", "country": "de"})["rule_id"] == "europe"
    assert result({"targeting_key": "u1"})["variant"] == "c"
    assert result({"targeting_key": "x", "blocked": True})["reason"] == "PREREQUISITE_FAILED"
    assert result({"targeting_key": "x"})["reason"] == "SPLIT"
    assert result({"country": "us"})["error_code"] is not None


def test_explain__archived_flag__flag_not_found_as_sdks_see_it(client: TestClient, api: Api) -> None:
    _world(client, api)
    api.flag(key="old")
    assert client.post(f"{P}/flags/old/archive", json={}).status_code == 200

    r = client.post(f"{P}/flags/old/environments/prod/explain", json={"context": {}, "default": 7})

    assert r.status_code == 200, r.text
    assert r.json()["result"]["error_code"] == "FLAG_NOT_FOUND"
    assert r.json()["result"]["value"] == 7
    assert r.json()["trace"] is None


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/projects/nope/flags/checkout/environments/prod",
        f"{P}/flags/nope/environments/prod",
        f"{F}/environments/nope",
    ],
    ids=["project", "flag", "environment"],
)
@pytest.mark.parametrize("action", ["explain", "preview"])
def test_explain_preview__unknown_resource__404(client: TestClient, api: Api, path: str, action: str) -> None:
    _world(client, api)
    body = {"context": {}} if action == "explain" else {"config": {}, "contexts": []}

    r = client.post(f"{path}/{action}", json=body)

    assert r.status_code == 404, r.text
    assert r.json()["code"] == "not_found"


@pytest.mark.parametrize(
    "context",
    [[1], "user", None, {"blob": "x" * limits.MAX_CONTEXT_BYTES}],
    ids=["array", "string", "null", "oversize"],
)
def test_explain__not_a_bounded_object__422_at_context(client: TestClient, api: Api, context: Any) -> None:
    _world(client, api)

    r = client.post(EXPLAIN, json={"context": context})

    assert r.status_code == 422, r.text
    assert [d["path"] for d in r.json()["details"]] == ["/context"]


def test_explain_preview__reader_key__allowed(client: TestClient, api: Api) -> None:
    _world(client, api)
    reader = {"Authorization": f"Bearer {api.key('reader')}"}

    explained = client.post(EXPLAIN, json={"context": {"targeting_key": "u1"}}, headers=reader)
    previewed = client.post(PREVIEW, json={"config": PROPOSED, "contexts": [{}]}, headers=reader)

    assert explained.status_code == 200, explained.text
    assert explained.json()["result"]["variant"] == "c"
    assert previewed.status_code == 200, previewed.text


def test_explain__full_trace__matches_the_published_schema(app: FastAPI) -> None:
    """The trace's models mirror the rule engine's dataclasses: a trace with every part filled in passes
    the response contract (the tracer is what fills it in for real)."""
    clause = ClauseTrace("in", "country", ["de"], False, "de", True)
    segment = SegmentTrace("beta", True, "rule", 0, [RuleTrace(0, None, True, [clause])])
    matching = ClauseTrace("segment_match", None, ["beta"], False, None, True, [segment])
    split = SplitTrace("targeting_key", "u1", 4211, 10000, "a", [BucketRange("a", 0, 5000)])
    prereq = FlagTrace("auth", 1, True, "fallthrough", "on", "DEFAULT")
    trace = FlagTrace(
        "checkout",
        3,
        True,
        "rule",
        "a",
        "SPLIT",
        [PrerequisiteTrace("auth", "on", "evaluated", True, prereq)],
        [RuleTrace(0, "r", True, [clause, matching])],
        TargetingTrace({"x": [1]}, [segment]),
        split,
    )
    result = rule_engine.EvaluationResult("A", "a", rule_engine.Reason.SPLIT, rule_id="r", version=3)
    body = Explanation(result, trace).to_dict()
    request = httpx.Request("POST", "http://testserver" + EXPLAIN)

    ResponseContract(app).check(httpx.Response(200, json=body, request=request))
    assert schemas.ExplainOut.model_validate(body).model_dump(mode="json", by_alias=True) == body
    for dataclass, model in [
        (FlagTrace, schemas.FlagTraceOut),
        (PrerequisiteTrace, schemas.PrerequisiteTraceOut),
        (RuleTrace, schemas.RuleTraceOut),
        (ClauseTrace, schemas.ClauseTraceOut),
        (SegmentTrace, schemas.SegmentTraceOut),
        (SplitTrace, schemas.SplitTraceOut),
        (BucketRange, schemas.BucketRangeOut),
        (TargetingTrace, schemas.TargetingTraceOut),
    ]:
        assert [f.name for f in dataclasses.fields(dataclass)] == list(model.model_fields), dataclass


# --- preview -------------------------------------------------------------------------------------


def test_preview__supplied_contexts__counts_equal_brute_force_of_the_real_patch(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    _world(client, api)
    contexts = _contexts()
    before = _flagset(client)
    state = _state(client, engine)

    r = client.post(PREVIEW, json={"config": PROPOSED, "contexts": contexts})

    assert r.status_code == 200, r.text
    assert _state(client, engine) == state  # nothing written
    patched = client.patch(f"{F}/environments/prod", json=PROPOSED, headers={"If-Match": f'"{state[0]}"'})
    assert patched.status_code == 200, patched.text
    expected = _brute_force(before, _flagset(client), contexts)
    assert expected["changed"] > 50  # the world changes a lot
    assert len(expected["transitions"]) >= 4
    assert expected["errors"][0] > 0
    _check_preview(r.json(), expected, contexts, "supplied")


def test_preview__stored_sample__counts_equal_brute_force_over_it(
    client: TestClient, api: Api, app: FastAPI, engine: sa.Engine
) -> None:
    _world(client, api)
    contexts = _contexts(200)
    env_id = rows(engine, "SELECT id FROM environments WHERE key = 'prod'")[0][0]
    prefix = app.state.flagyard.settings.redis_prefix

    async def store() -> int:
        conn = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            # a sample is only ever written while the environment's policy exists (the syncer's job)
            await conn.set(policy_key(prefix, str(env_id)), b"{}")
            return await store_samples(conn, prefix, str(env_id), contexts, int(time.time() * 1000))
        finally:
            await conn.aclose()

    assert asyncio.run(store()) == len(contexts)
    before = _flagset(client)
    state = _state(client, engine)

    r = client.post(PREVIEW, json={"config": PROPOSED})

    assert r.status_code == 200, r.text
    assert _state(client, engine) == state
    patched = client.patch(f"{F}/environments/prod", json=PROPOSED, headers={"If-Match": f'"{state[0]}"'})
    assert patched.status_code == 200, patched.text
    expected = _brute_force(before, _flagset(client), contexts)
    assert expected["changed"] > 0
    _check_preview(r.json(), expected, contexts, "sample")


def test_preview__no_sample_and_no_contexts__zero_with_a_note(client: TestClient, api: Api) -> None:
    _world(client, api)

    r = client.post(PREVIEW, json={"config": PROPOSED})

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["source"], body["contexts"], body["changed"], body["transitions"]) == ("sample", 0, 0, [])
    assert "no sample" in body["note"]


def test_preview__unchanged_config__nothing_changes(client: TestClient, api: Api) -> None:
    _world(client, api)
    contexts = _contexts(60)

    r = client.post(PREVIEW, json={"config": {"enabled": True}, "contexts": contexts})

    assert r.status_code == 200, r.text
    assert (r.json()["changed"], r.json()["unchanged"], r.json()["transitions"]) == (0, 60, [])
    assert r.json()["errors_before"] == r.json()["errors_after"] > 0


def test_preview__turned_off__every_served_context_moves_to_no_variant(client: TestClient, api: Api) -> None:
    _world(client, api)

    r = client.post(
        PREVIEW,
        json={"config": {"enabled": False}, "contexts": [{"targeting_key": "u1"}, {"targeting_key": "u1"}]},
    )

    assert r.status_code == 200, r.text
    assert r.json()["transitions"] == [{"from": "c", "to": None, "count": 2}]


def test_preview__too_many_contexts__422_at_contexts(client: TestClient, api: Api) -> None:
    _world(client, api)
    contexts = [{}] * (limits.MAX_PREVIEW_CONTEXTS + 1)

    r = client.post(PREVIEW, json={"config": PROPOSED, "contexts": contexts})

    assert r.status_code == 422, r.text
    assert [d["path"] for d in r.json()["details"]] == ["/contexts"]


def test_preview__oversize_context__422_at_its_index(client: TestClient, api: Api) -> None:
    _world(client, api)
    contexts = [{}, {"blob": "x" * limits.MAX_CONTEXT_BYTES}]

    r = client.post(PREVIEW, json={"config": PROPOSED, "contexts": contexts})

    assert r.status_code == 422, r.text
    assert [d["path"] for d in r.json()["details"]] == ["/contexts/1"]


@pytest.mark.parametrize(
    ("config", "pointer"),
    [
        ({"enabled": "maybe"}, "/config/enabled"),
        ({"rules": None}, "/config/rules"),
        ({"color": "red"}, "/config/color"),
        (
            {"rules": [{"id": "r", "clauses": [{"attribute": "x", "operator": "eq"}], "variant": "nope"}]},
            "/config/rules/0/variant",
        ),
        ({"prerequisites": [{"flag": "missing", "variant": "on"}]}, "/config/prerequisites/0/flag"),
    ],
    ids=["type", "explicit-null", "unknown-field", "unknown-variant", "unknown-prerequisite"],
)
def test_preview__invalid_config__422_with_the_patchs_pointer_under_config(
    client: TestClient, api: Api, engine: sa.Engine, config: dict[str, Any], pointer: str
) -> None:
    _world(client, api)
    state = _state(client, engine)

    r = client.post(PREVIEW, json={"config": config, "contexts": [{}]})
    patched = client.patch(f"{F}/environments/prod", json=config, headers={"If-Match": f'"{state[0]}"'})

    assert r.status_code == 422, r.text
    assert pointer in [d["path"] for d in r.json()["details"]]
    assert patched.status_code == 422  # the PATCH refuses it too, at the same place
    assert [f"/config{d['path']}" for d in patched.json()["details"]] == [
        d["path"] for d in r.json()["details"]
    ]
    assert _state(client, engine) == state


def test_preview__archived_flag__409_as_its_patch(client: TestClient, api: Api) -> None:
    _world(client, api)
    api.flag(key="old")
    assert client.post(f"{P}/flags/old/archive", json={}).status_code == 200

    r = client.post(f"{P}/flags/old/environments/prod/preview", json={"config": {}, "contexts": []})

    assert r.status_code == 409, r.text
    assert r.json()["code"] == "flag_archived"


def test_preview__redis_down__503_for_the_sample_but_supplied_contexts_work(
    client: TestClient, api: Api, settings: Settings
) -> None:
    _world(client, api)
    down = settings.model_copy(
        update={
            "redis_url": settings.redis_url.__class__("redis://127.0.0.1:1/0"),
            "redis_timeout_seconds": 0.2,
        }
    )
    with CheckedClient(create_app(down), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as without_redis:
        sampled = without_redis.post(PREVIEW, json={"config": PROPOSED})
        supplied = without_redis.post(
            PREVIEW, json={"config": PROPOSED, "contexts": [{"targeting_key": "u1"}]}
        )

    assert sampled.status_code == 503, sampled.text
    assert sampled.json()["code"] == "service_unavailable"
    assert "sample" in sampled.json()["message"]
    assert supplied.status_code == 200, supplied.text
    assert supplied.json()["contexts"] == 1
