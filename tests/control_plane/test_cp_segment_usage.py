"""GET .../segments/{segment}/flags: where a segment is used, by the query that keeps a used segment from
being deleted (rules' segment_match clauses and JsonLogic ``$ref`` in targeting)."""

from __future__ import annotations

from typing import Any

from cp_helpers import Api, auth
from fastapi.testclient import TestClient

S = "/api/v1/projects/shop/segments"


def rule(segment: str) -> dict[str, Any]:
    return {"id": "r", "clauses": [{"operator": "segment_match", "values": [segment]}], "variant": "on"}


def test_segment_usage__rules_and_targeting__every_flag_by_key_with_its_environments(
    client: TestClient, api: Api
) -> None:
    api.project()
    api.segment(key="beta")
    api.segment(key="other")
    api.flag(key="zeta", environments={"dev": {"rules": [rule("beta")]}, "prod": {"rules": [rule("beta")]}})
    api.flag(key="alpha", environments={"prod": {"targeting": {"if": [{"$ref": "beta"}, "on", None]}}})
    api.flag(key="unrelated", environments={"prod": {"rules": [rule("other")]}})
    api.segment(key="nested", rules=[{"clauses": [{"operator": "segment_match", "values": ["beta"]}]}])
    r = client.get(f"{S}/beta/flags")
    assert r.status_code == 200, r.text
    assert r.json() == {
        "items": [
            {"flag": "alpha", "environments": ["prod"]},
            {"flag": "zeta", "environments": ["dev", "prod"]},
        ],
        "segments": ["nested"],
    }


def test_segment_usage__unused__empty_and_deleted_flags_not_listed(client: TestClient, api: Api) -> None:
    api.project()
    api.segment(key="beta")
    assert client.get(f"{S}/beta/flags").json() == {"items": [], "segments": []}
    api.flag(key="gone", environments={"prod": {"rules": [rule("beta")]}})
    etag = api.etag("/api/v1/projects/shop/flags/gone")
    assert client.delete("/api/v1/projects/shop/flags/gone", headers={"If-Match": etag}).status_code == 204
    assert client.get(f"{S}/beta/flags").json() == {"items": [], "segments": []}


def test_segment_usage__unknown_segment_404__reader_allowed__other_project_key_403(
    client: TestClient, api: Api
) -> None:
    api.project()
    api.project("blog")
    api.segment(key="beta")
    r = client.get(f"{S}/nope/flags")
    assert r.status_code == 404
    assert "nope" in r.json()["message"]
    assert client.get(f"{S}/beta/flags", headers=auth(api.key("reader"))).status_code == 200
    assert client.get(f"{S}/beta/flags", headers=auth(api.key("reader", project="blog"))).status_code == 403
