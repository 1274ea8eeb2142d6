"""Versions, diffs and rollbacks of flags and segments; audit entries they leave."""

from __future__ import annotations

import sqlalchemy as sa
from cp_helpers import Api, auth, rows
from fastapi.testclient import TestClient

F = "/api/v1/projects/shop/flags/checkout"
S = "/api/v1/projects/shop/segments/beta"


def _three_versions(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    assert client.post(f"{F}/environments/prod/toggle", json={"enabled": True}).status_code == 200
    r = client.patch(f"{F}/environments/prod", json={"default_variant": "on"}, headers={"If-Match": '"2"'})
    assert r.status_code == 200


def test_versions_list__three_changes__newest_first_with_actions(client: TestClient, api: Api) -> None:
    _three_versions(client, api)
    items = client.get(f"{F}/versions").json()["items"]
    assert [(v["version"], v["action"]) for v in items] == [(3, "updated"), (2, "toggled"), (1, "created")]
    assert all(v["author_key_id"] == 1 for v in items)


def test_versions_list__paginated__cursor_continues(client: TestClient, api: Api) -> None:
    _three_versions(client, api)
    page = client.get(f"{F}/versions", params={"limit": 2}).json()
    assert [v["version"] for v in page["items"]] == [3, 2]
    rest = client.get(f"{F}/versions", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [v["version"] for v in rest["items"]] == [1]


def test_version_get__snapshot__full_flag_at_that_time(client: TestClient, api: Api) -> None:
    _three_versions(client, api)
    snap = client.get(f"{F}/versions/2").json()["snapshot"]
    assert snap["environments"]["prod"]["enabled"] is True
    assert snap["environments"]["prod"]["default_variant"] is None
    assert snap["variants"] == {"on": True, "off": False}
    assert client.get(f"{F}/versions/9").status_code == 404


def test_diff__two_versions__changes_with_pointers(client: TestClient, api: Api) -> None:
    _three_versions(client, api)
    r = client.get(f"{F}/diff", params={"from": 1, "to": 3})
    assert r.status_code == 200
    assert r.json()["changes"] == [
        {"op": "replace", "path": "/environments/prod/enabled", "old": False, "value": True},
        {"op": "replace", "path": "/environments/prod/default_variant", "old": None, "value": "on"},
    ]


def test_diff__to_omitted__against_latest(client: TestClient, api: Api) -> None:
    _three_versions(client, api)
    body = client.get(f"{F}/diff", params={"from": 2}).json()
    assert body["to_version"] == 3
    assert len(body["changes"]) == 1


def test_diff__missing_from__422(client: TestClient, api: Api) -> None:
    _three_versions(client, api)
    r = client.get(f"{F}/diff")
    assert r.status_code == 422
    assert r.json()["details"][0]["path"] == "/query/from"


def test_rollback__to_version_1__new_version_4_with_old_content(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    _three_versions(client, api)
    r = client.post(f"{F}/rollback", json={"version": 1})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 4
    assert r.json()["environments"]["prod"]["enabled"] is False
    assert r.json()["environments"]["prod"]["default_variant"] is None
    latest = client.get(f"{F}/versions/4").json()
    assert latest["action"] == "rolled_back"
    assert latest["comment"] == "rollback to version 1"
    assert latest["snapshot"] == client.get(f"{F}/versions/1").json()["snapshot"]
    # only prod's configuration changes (dev was never changed): only prod moves and is told
    assert rows(engine, "SELECT count(*) FROM outbox WHERE version = 4")[0][0] == 1
    assert sorted(rows(engine, "SELECT version FROM flag_environments")) == [(1,), (4,)]


def test_rollback__to_current_content__409(client: TestClient, api: Api) -> None:
    _three_versions(client, api)
    r = client.post(f"{F}/rollback", json={"version": 3})
    assert r.status_code == 409


def test_rollback__stale_if_match__412(client: TestClient, api: Api) -> None:
    _three_versions(client, api)
    r = client.post(f"{F}/rollback", json={"version": 1}, headers={"If-Match": '"2"'})
    assert r.status_code == 412


def test_rollback__version_refers_to_deleted_segment__422_nothing_changed(
    client: TestClient, api: Api
) -> None:
    api.project()
    api.segment()
    rule = {"id": "r", "clauses": [{"operator": "segment_match", "values": ["beta"]}], "variant": "on"}
    api.flag(environments={"prod": {"rules": [rule]}})
    assert (
        client.patch(f"{F}/environments/prod", json={"rules": []}, headers={"If-Match": '"1"'}).status_code
        == 200
    )
    assert client.delete(S, headers={"If-Match": '"1"'}).status_code == 204
    r = client.post(f"{F}/rollback", json={"version": 1})
    assert r.status_code == 422
    assert r.json()["details"][0]["path"] == "/environments/prod/rules/0/clauses/0/values/0"
    assert client.get(F).json()["version"] == 2


def test_audit__flag_changes__entries_with_actor_diff_and_comment(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    client.post(f"{F}/environments/prod/toggle", json={"enabled": True, "comment": "go live"})
    items = client.get("/api/v1/projects/shop/audit", params={"resource_type": "flag"}).json()["items"]
    assert [(e["action"], e["version"]) for e in items] == [("toggled", 2), ("created", 1)]
    toggled = items[0]
    assert toggled["actor_key_id"] == 1
    assert toggled["actor_key_prefix"].startswith("fy_admin_")
    assert toggled["environment"] == "prod"
    assert toggled["comment"] == "go live"
    assert toggled["diff"] == [
        {"op": "replace", "path": "/environments/prod/enabled", "old": False, "value": True}
    ]


def test_audit__request_id_header__recorded(client: TestClient, api: Api) -> None:
    api.project(envs=())
    r = client.patch(
        "/api/v1/projects/shop", json={"name": "X"}, headers={"If-Match": '"1"', "X-Request-ID": "req-42"}
    )
    assert r.headers["x-request-id"] == "req-42"
    entry = client.get("/api/v1/projects/shop/audit", params={"action": "updated"}).json()["items"][0]
    assert entry["request_id"] == "req-42"


def test_audit__filters_and_cursor__pages_newest_first(client: TestClient, api: Api) -> None:
    api.project()
    for key in ("a", "b", "c"):
        api.flag(key=key)
    page = client.get("/api/v1/projects/shop/audit", params={"resource_type": "flag", "limit": 2}).json()
    assert [e["resource_key"] for e in page["items"]] == ["c", "b"]
    rest = client.get(
        "/api/v1/projects/shop/audit",
        params={"resource_type": "flag", "limit": 2, "cursor": page["next_cursor"]},
    ).json()
    assert [e["resource_key"] for e in rest["items"]] == ["a"]
    only_b = client.get("/api/v1/projects/shop/audit", params={"resource_key": "b"}).json()["items"]
    assert [e["resource_key"] for e in only_b] == ["b"]
    assert (
        client.get("/api/v1/projects/shop/audit", params={"since": "2999-01-01T00:00:00Z"}).json()["items"]
        == []
    )


def test_audit__global_log__includes_api_key_creation(client: TestClient, api: Api) -> None:
    api.key("reader")
    items = client.get("/api/v1/audit", params={"resource_type": "api_key"}).json()["items"]
    assert [e["action"] for e in items] == ["created"]


def test_segment_versions__update_and_rollback__versions_and_diff(client: TestClient, api: Api) -> None:
    api.project()
    api.segment()
    r = client.patch(S, json={"included": ["u1", "u2"]}, headers={"If-Match": '"1"'})
    assert r.status_code == 200
    assert r.json()["version"] == 2
    diff = client.get(f"{S}/diff", params={"from": 1}).json()["changes"]
    assert diff == [{"op": "add", "path": "/included/1", "old": None, "value": "u2"}]
    r = client.post(f"{S}/rollback", json={"version": 1, "comment": "undo"})
    assert r.status_code == 200
    assert r.json()["included"] == ["u1"]
    assert r.json()["version"] == 3
    versions = client.get(f"{S}/versions").json()["items"]
    assert [(v["version"], v["action"]) for v in versions] == [
        (3, "rolled_back"),
        (2, "updated"),
        (1, "created"),
    ]
    assert client.get(f"{S}/versions/3").json()["comment"] == "undo"


def test_segment_versions__paginated__cursor_continues_to_the_end(client: TestClient, api: Api) -> None:
    api.project()
    api.segment()
    for n in (1, 2):
        r = client.patch(S, json={"included": [f"u{n + 1}"]}, headers={"If-Match": f'"{n}"'})
        assert r.status_code == 200, r.text
    page = client.get(f"{S}/versions", params={"limit": 2}).json()
    assert [v["version"] for v in page["items"]] == [3, 2]
    assert page["next_cursor"] == "2"
    rest = client.get(f"{S}/versions", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [v["version"] for v in rest["items"]] == [1]
    assert rest["next_cursor"] is None


def test_versions__deleted_or_other_projects_resource__404_or_403(client: TestClient, api: Api) -> None:
    """Versions are read only for a live flag or segment of a project the key may see."""
    api.project()
    api.flag()
    api.segment()
    api.project("other", envs=())
    elsewhere = auth(api.key("reader", "other"))
    for path in (F, S):
        assert client.get(f"{path}/versions", headers=elsewhere).status_code == 403
        assert client.get(f"{path}/versions/1", headers=elsewhere).status_code == 403
        assert client.delete(path, headers={"If-Match": '"1"'}).status_code == 204
        for read in (f"{path}/versions", f"{path}/versions/1", f"{path}/diff?from=1"):
            r = client.get(read)
            assert r.status_code == 404, read
            assert "does not exist" in r.json()["message"], read
