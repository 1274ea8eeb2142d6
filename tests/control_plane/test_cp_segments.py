"""Segments: CRUD, validation, references and propagation to every environment."""

from __future__ import annotations

import sqlalchemy as sa
from cp_helpers import Api, rows
from fastapi.testclient import TestClient

S = "/api/v1/projects/shop/segments"


def test_segment_create__valid__201_version_1_outbox_per_env(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    rule = {"clauses": [{"attribute": "plan", "operator": "eq", "values": ["gold"]}]}
    r = client.post(S, json={"key": "gold", "name": "Gold", "rules": [rule], "excluded": ["u9"]})
    assert r.status_code == 201, r.text
    assert r.json()["version"] == 1
    assert r.headers["location"] == f"{S}/gold"
    assert (
        len(rows(engine, "SELECT 1 FROM outbox WHERE entity_type = 'segment' AND entity_key = 'gold'")) == 2
    )


def test_segment_create__included_and_excluded_overlap__422(client: TestClient, api: Api) -> None:
    api.project()
    r = client.post(S, json={"key": "x", "name": "X", "included": ["u1"], "excluded": ["u1"]})
    assert r.status_code == 422
    assert r.json()["details"][0]["path"] == "/excluded"


def test_segment_create__bad_regex__422_pointer(client: TestClient, api: Api) -> None:
    api.project()
    rule = {"clauses": [{"attribute": "email", "operator": "matches", "values": ["u-(?=42)"]}]}
    r = client.post(S, json={"key": "x", "name": "X", "rules": [rule]})
    assert r.status_code == 422
    assert r.json()["details"][0]["path"] == "/rules/0/clauses/0/values/0"


def test_segment_update__creates_reference_cycle__422(client: TestClient, api: Api) -> None:
    api.project()
    api.segment(key="a")
    ref_a = {"clauses": [{"operator": "segment_match", "values": ["a"]}]}
    api.segment(key="b", rules=[ref_a])
    ref_b = {"clauses": [{"operator": "segment_match", "values": ["b"]}]}
    r = client.patch(f"{S}/a", json={"rules": [ref_b]}, headers={"If-Match": '"1"'})
    assert r.status_code == 422
    assert r.json()["details"][0]["message"] == "segment cycle: a -> b -> a"


def test_segment_list_get__two_segments__sorted(client: TestClient, api: Api) -> None:
    api.project()
    api.segment(key="zeta")
    api.segment(key="alpha")
    assert [s["key"] for s in client.get(S).json()["items"]] == ["alpha", "zeta"]
    r = client.get(f"{S}/alpha")
    assert r.status_code == 200
    assert r.headers["etag"] == '"1"'


def test_segment_delete__used_by_flag_rule__409_with_reference(client: TestClient, api: Api) -> None:
    api.project()
    api.segment()
    rule = {"id": "r", "clauses": [{"operator": "segment_match", "values": ["beta"]}], "variant": "on"}
    api.flag(environments={"prod": {"rules": [rule]}})
    r = client.delete(f"{S}/beta", headers={"If-Match": '"1"'})
    assert r.status_code == 409
    assert r.json()["details"] == [
        {"path": "/flags/checkout/environments/prod", "message": "its rules use this segment"}
    ]


def test_segment_delete__unused__204_marker_then_key_reusable(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.segment()
    assert client.delete(f"{S}/beta", headers={"If-Match": '"1"'}).status_code == 204
    assert client.get(f"{S}/beta").status_code == 404
    assert rows(engine, "SELECT DISTINCT version FROM outbox WHERE entity_key = 'beta' AND deleted") == [(2,)]
    assert api.segment()["version"] == 3


def test_segment_patch__without_if_match__428(client: TestClient, api: Api) -> None:
    api.project()
    api.segment()
    assert client.patch(f"{S}/beta", json={"name": "B"}).status_code == 428
