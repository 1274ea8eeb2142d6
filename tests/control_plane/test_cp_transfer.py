"""Export and import of an environment (native and flagd): validate everything, then apply atomically."""

from __future__ import annotations

import random

import sqlalchemy as sa
from cp_helpers import Api, rows
from fastapi.testclient import TestClient

from flagyard.rule_engine import FlagSet, validate_document

E = "/api/v1/projects/shop/environments/prod"
RULE = {
    "id": "r1",
    "clauses": [{"attribute": "country", "operator": "eq", "values": ["NL"]}],
    "variant": "on",
}


def _flag(key: str, **extra: object) -> dict[str, object]:
    return {"key": key, "type": "boolean", "variants": {"on": True, "off": False}, **extra}


def test_export_native__flags_and_segments__rule_engine_document(client: TestClient, api: Api) -> None:
    api.project()
    api.segment()
    api.flag(environments={"prod": {"enabled": True, "rules": [RULE]}})
    doc = client.get(f"{E}/export").json()
    assert doc["metadata"] == {"project": "shop", "environment": "prod"}
    assert [f["key"] for f in doc["flags"]] == ["checkout"]
    assert doc["flags"][0]["enabled"] is True
    assert doc["flags"][0]["version"] == 1
    assert doc["flags"][0]["salt"]
    assert [s["key"] for s in doc["segments"]] == ["beta"]


def test_import_native__new_and_existing__created_updated_unchanged(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag(key="same")
    api.flag(key="changed")
    same = client.get(f"{E}/export").json()["flags"][1]
    doc = {
        "flags": [
            same,
            _flag("changed", enabled=True, rules=[RULE]),
            _flag("brand-new", default_variant="on"),
        ],
        "segments": [{"key": "vip", "included": ["u1"]}],
    }
    r = client.post(f"{E}/import", json=doc)
    assert r.status_code == 200, r.text
    assert r.json() == {
        "created": ["brand-new"],
        "updated": ["changed"],
        "unchanged": ["same"],
        "segments_created": ["vip"],
        "segments_updated": [],
        "segments_unchanged": [],
    }
    changed = client.get("/api/v1/projects/shop/flags/changed").json()
    assert changed["version"] == 2
    assert changed["environments"]["prod"]["enabled"] is True
    assert changed["environments"]["dev"]["enabled"] is False
    new = client.get("/api/v1/projects/shop/flags/brand-new").json()
    assert new["environments"]["prod"]["default_variant"] == "on"
    assert new["environments"]["dev"]["default_variant"] is None
    assert rows(
        engine,
        "SELECT action FROM flag_versions fv JOIN flags f ON f.id = fv.flag_id "
        "WHERE f.key = 'changed' AND fv.version = 2",
    ) == [("imported",)]


def test_import_native__one_invalid_flag__422_and_nothing_applied(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    before = rows(
        engine,
        "SELECT (SELECT count(*) FROM flags), (SELECT count(*) FROM outbox), (SELECT count(*) FROM segments)",
    )[0]
    doc = {
        "flags": [_flag("good"), _flag("bad", default_variant="missing"), _flag("also-good")],
        "segments": [{"key": "vip", "included": ["u1"]}],
    }
    r = client.post(f"{E}/import", json=doc)
    assert r.status_code == 422
    assert r.json()["details"] == [
        {"path": "/flags/1/default_variant", "message": "variant 'missing' is not declared in variants"}
    ]
    after = rows(
        engine,
        "SELECT (SELECT count(*) FROM flags), (SELECT count(*) FROM outbox), (SELECT count(*) FROM segments)",
    )[0]
    assert tuple(after) == tuple(before)


def test_import_native__breaks_other_environment__422_nothing_applied(client: TestClient, api: Api) -> None:
    api.project()
    api.flag(environments={"dev": {"rules": [RULE]}})
    r = client.post(
        f"{E}/import", json={"flags": [{"key": "checkout", "type": "boolean", "variants": {"off": False}}]}
    )
    assert r.status_code == 422
    assert r.json()["details"][0]["path"] == "/flags/0/environments/dev/rules/0/variant"
    assert client.get("/api/v1/projects/shop/flags/checkout").json()["version"] == 1


def test_import_native__references_existing_segment__accepted(client: TestClient, api: Api) -> None:
    api.project()
    api.segment()
    rule = {"id": "s", "clauses": [{"operator": "segment_match", "values": ["beta"]}], "variant": "on"}
    r = client.post(f"{E}/import", json={"flags": [_flag("f", rules=[rule])]})
    assert r.status_code == 200, r.text


def test_import_native__not_a_document__422(client: TestClient, api: Api) -> None:
    api.project()
    r = client.post(f"{E}/import", json={"flags": {"x": 1}})
    assert r.status_code == 422
    assert r.json()["details"][0]["path"].startswith("/flags")


def test_export_then_import__round_trip__all_unchanged(client: TestClient, api: Api) -> None:
    api.project()
    api.segment()
    api.flag(environments={"prod": {"enabled": True, "rules": [RULE]}})
    doc = client.get(f"{E}/export").json()
    r = client.post(f"{E}/import", json=doc)
    assert r.status_code == 200
    assert r.json()["unchanged"] == ["checkout"]
    assert r.json()["segments_unchanged"] == ["beta"]


def test_export_flagd__simple_flag__flagd_document(client: TestClient, api: Api) -> None:
    api.project()
    api.flag(environments={"prod": {"enabled": True, "default_variant": "on"}})
    r = client.get(f"{E}/export", params={"format": "flagd"})
    assert r.status_code == 200, r.text
    flag = r.json()["flags"]["checkout"]
    assert flag["state"] == "ENABLED"
    assert flag["variants"] == {"on": True, "off": False}
    assert flag["defaultVariant"] == "on"


def test_import_flagd__static_flags__imported(client: TestClient, api: Api) -> None:
    api.project()
    doc = {
        "flags": {
            "banner": {
                "state": "DISABLED",
                "variants": {"red": "#f00", "blue": "#00f"},
                "defaultVariant": "red",
            }
        }
    }
    r = client.post(f"{E}/import", params={"format": "flagd"}, json=doc)
    assert r.status_code == 200, r.text
    assert r.json()["created"] == ["banner"]
    flag = client.get("/api/v1/projects/shop/flags/banner").json()
    assert flag["type"] == "string"
    assert flag["environments"]["prod"]["enabled"] is False
    assert flag["environments"]["prod"]["default_variant"] == "red"


SMART = {
    "state": "ENABLED",
    "variants": {"on": True, "off": False},
    "defaultVariant": "off",
    "targeting": {
        "if": [
            {"$ref": "is_staff"},
            "on",
            {"fractional": [{"cat": ["x:", {"var": "targetingKey"}]}, ["on", 25], ["off", 75]]},
        ]
    },
}
EVALUATORS = {"is_staff": {"ends_with": [{"var": "email"}, "@flagyard.dev"]}}


def test_import_flagd__targeting__native_targeting_with_evaluators_inlined(
    client: TestClient, api: Api
) -> None:
    api.project()
    doc = {"flags": {"smart": SMART}, "$evaluators": EVALUATORS}
    r = client.post(f"{E}/import", params={"format": "flagd"}, json=doc)
    assert r.status_code == 200, r.text
    config = client.get("/api/v1/projects/shop/flags/smart/environments/prod").json()
    assert config["targeting"]["if"][0] == EVALUATORS["is_staff"]
    assert config["targeting"]["if"][2] == SMART["targeting"]["if"][2]


def test_import_flagd__then_export__the_same_document(client: TestClient, api: Api) -> None:
    api.project()
    doc = {
        "flags": {
            "smart": {**SMART, "targeting": {"if": [EVALUATORS["is_staff"], "on", None]}},
            "plain": {"state": "DISABLED", "variants": {"a": "A", "b": "B"}, "defaultVariant": "b"},
            "numbers": {
                "state": "ENABLED",
                "variants": {"low": 1.5, "high": 2.5},
                "defaultVariant": None,
                "targeting": {"if": [{"sem_ver": [{"var": "v"}, "^", "2.0.0"]}, "high", "low"]},
            },
        }
    }
    assert client.post(f"{E}/import", params={"format": "flagd"}, json=doc).status_code == 200
    exported = client.get(f"{E}/export", params={"format": "flagd"}).json()
    assert exported["flags"] == doc["flags"]


def test_import_flagd__invalid_targeting__422_every_pointer_nothing_applied(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    doc = {
        "flags": {
            "ok": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"},
            "bad1": {**SMART, "targeting": {"if": [{"nope": [1]}, "on", "off"]}},
            "bad2": {**SMART, "targeting": {"sem_ver": [{"var": "v"}, "=="]}},
        }
    }
    r = client.post(f"{E}/import", params={"format": "flagd"}, json=doc)
    assert r.status_code == 422
    assert [d["path"] for d in r.json()["details"]] == [
        "/flags/bad1/targeting/if/0",
        "/flags/bad2/targeting/sem_ver",
    ]
    assert rows(engine, "SELECT count(*) FROM flags")[0][0] == 0


def test_import_flagd__over_a_native_bound__422_pointing_into_the_flagd_document(
    client: TestClient, api: Api
) -> None:
    api.project()
    nested = {"some": [{"var": "a"}, {"some": [{"var": "b"}, True]}]}
    doc = {"flags": {"loops": {**SMART, "targeting": nested}}}
    r = client.post(f"{E}/import", params={"format": "flagd"}, json=doc)
    assert r.status_code == 422
    assert [d["path"] for d in r.json()["details"]] == ["/flags/loops/targeting/some/1/some/1"]


def test_export_flagd__kill_switch_and_prerequisite__exported_not_refused(
    client: TestClient, api: Api
) -> None:
    api.project()
    api.flag(key="gate", environments={"prod": {"enabled": True, "default_variant": "on"}})
    api.flag(environments={"prod": {"enabled": False, "off_variant": "off", "default_variant": "on"}})
    prereq = {"enabled": True, "default_variant": "on", "prerequisites": [{"flag": "gate", "variant": "on"}]}
    api.flag(key="gated", environments={"prod": prereq})
    r = client.get(f"{E}/export", params={"format": "flagd"})
    assert r.status_code == 200, r.text
    flags = r.json()["flags"]
    assert flags["checkout"] == {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "off",
    }
    assert flags["gated"]["targeting"]["if"][0] is True


def test_import__reader_key__403(client: TestClient, api: Api) -> None:
    api.project()
    reader = api.key("reader")
    r = client.post(f"{E}/import", json={"flags": []}, headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403


def test_export_flagd_then_import__native_rules_become_targeting_that_serves_the_same(
    client: TestClient, api: Api
) -> None:
    api.project()
    api.segment(rules=[{"clauses": [{"attribute": "plan", "operator": "eq", "values": ["pro"]}]}])
    split = {"variations": [{"variant": "on", "weight": 3000}, {"variant": "off", "weight": 7000}]}
    rules = [
        {
            "id": "nl",
            "clauses": [{"attribute": "country", "operator": "in", "values": ["NL", "BE"]}],
            "variant": "on",
        },
        {"id": "beta", "clauses": [{"operator": "segment_match", "values": ["beta"]}], "split": split},
        {
            "id": "old",
            "clauses": [{"attribute": "v", "operator": "semver_lt", "values": ["2.0.0"]}],
            "variant": "off",
        },
    ]
    api.flag(environments={"prod": {"enabled": True, "default_variant": "off", "rules": rules}})
    api.flag(
        key="gated",
        environments={
            "prod": {
                "enabled": True,
                "default_variant": "on",
                "off_variant": "off",
                "prerequisites": [{"flag": "checkout", "variant": "on"}],
            }
        },
    )
    exported = client.get(f"{E}/export", params={"format": "flagd"}).json()
    dev = "/api/v1/projects/shop/environments/dev"
    r = client.post(f"{dev}/import", params={"format": "flagd"}, json=exported)
    assert r.status_code == 200, r.text
    assert client.get("/api/v1/projects/shop/flags/checkout/environments/dev").json()["targeting"] is not None
    prod = FlagSet.from_document(validate_document(client.get(f"{E}/export").json()))
    imported = FlagSet.from_document(validate_document(client.get(f"{dev}/export").json()))
    rng = random.Random(7)
    for i in range(2000):
        context = {
            "targeting_key": rng.choice([None, f"u{i}", "u1"]),
            "country": rng.choice([None, "NL", "DE", ["BE"], 3]),
            "plan": rng.choice([None, "pro", "free"]),
            "v": rng.choice([None, "1.5.0", "2.1.0", "x", 2]),
        }
        context = {k: v for k, v in context.items() if v is not None}
        for key in ("checkout", "gated"):
            want, got = prod.evaluate(key, None, context), imported.evaluate(key, None, context)
            assert (got.value, got.variant) == (want.value, want.variant), (key, context)
