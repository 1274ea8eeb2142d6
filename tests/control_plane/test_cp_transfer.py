"""Export and import of an environment (native and flagd): validate everything, then apply atomically."""

from __future__ import annotations

import sqlalchemy as sa
from cp_helpers import Api, rows
from fastapi.testclient import TestClient

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


def test_import_flagd__targeting__422_nothing_applied(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    doc = {
        "flags": {
            "ok": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "off"},
            "smart": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": {"if": [{"==": [{"var": "email"}, "a@b.c"]}, "on", "off"]},
            },
        }
    }
    r = client.post(f"{E}/import", params={"format": "flagd"}, json=doc)
    assert r.status_code == 422
    assert r.json()["details"][0]["path"] == "/flags/smart/targeting"
    assert rows(engine, "SELECT count(*) FROM flags")[0][0] == 0


def test_import__reader_key__403(client: TestClient, api: Api) -> None:
    api.project()
    reader = api.key("reader")
    r = client.post(f"{E}/import", json={"flags": []}, headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403
