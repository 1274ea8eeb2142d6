"""Projects and environments: CRUD, duplicates, preconditions, and what environments do to flags."""

from __future__ import annotations

import sqlalchemy as sa
from cp_helpers import Api, rows
from fastapi.testclient import TestClient

P = "/api/v1/projects"


def test_project_create__new_key__201_with_etag_and_location(client: TestClient) -> None:
    r = client.post(P, json={"key": "shop", "name": "Shop", "description": "the shop"})
    assert r.status_code == 201
    assert r.headers["etag"] == '"1"'
    assert r.headers["location"] == f"{P}/shop"
    assert r.json()["key"] == "shop"
    assert r.json()["revision"] == 1


def test_project_create__duplicate_key__409(client: TestClient, api: Api) -> None:
    api.project(envs=())
    r = client.post(P, json={"key": "shop", "name": "Again"})
    assert r.status_code == 409
    assert r.json()["code"] == "conflict"


def test_project_create__unknown_field__422_with_pointer(client: TestClient) -> None:
    r = client.post(P, json={"key": "shop", "name": "Shop", "colour": "red"})
    assert r.status_code == 422
    assert r.json()["details"] == [{"path": "/colour", "message": "unknown field"}]


def test_project_create__invalid_key__422(client: TestClient) -> None:
    r = client.post(P, json={"key": "-bad key", "name": "x"})
    assert r.status_code == 422
    assert r.json()["details"][0]["path"] == "/key"


def test_project_list__paginated__cursor_walks_all(client: TestClient) -> None:
    for key in ("a1", "b2", "c3"):
        assert client.post(P, json={"key": key, "name": key}).status_code == 201
    first = client.get(P, params={"limit": 2}).json()
    assert [p["key"] for p in first["items"]] == ["a1", "b2"]
    second = client.get(P, params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert [p["key"] for p in second["items"]] == ["c3"]
    assert second["next_cursor"] is None


def test_project_get__missing__404_error_body(client: TestClient) -> None:
    r = client.get(f"{P}/nope")
    assert r.status_code == 404
    assert set(r.json()) == {"code", "message", "details"}
    assert r.json()["code"] == "not_found"


def test_project_patch__without_if_match__428(client: TestClient, api: Api) -> None:
    api.project(envs=())
    r = client.patch(f"{P}/shop", json={"name": "New"})
    assert r.status_code == 428
    assert r.json()["code"] == "precondition_required"


def test_project_patch__stale_if_match__412_and_unchanged(client: TestClient, api: Api) -> None:
    api.project(envs=())
    r = client.patch(f"{P}/shop", json={"name": "New"}, headers={"If-Match": '"7"'})
    assert r.status_code == 412
    assert client.get(f"{P}/shop").json()["name"] == "Shop"


def test_project_patch__current_if_match__200_revision_bumped(client: TestClient, api: Api) -> None:
    api.project(envs=())
    r = client.patch(f"{P}/shop", json={"name": "New"}, headers={"If-Match": '"1"'})
    assert r.status_code == 200
    assert r.headers["etag"] == '"2"'
    assert client.get(f"{P}/shop").json()["name"] == "New"


def test_project_delete__with_environments__204_and_deletion_markers(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    env_ids = {r[0] for r in rows(engine, "SELECT id FROM environments")}
    r = client.delete(f"{P}/shop", headers={"If-Match": '"1"'})
    assert r.status_code == 204
    assert client.get(f"{P}/shop").status_code == 404
    markers = rows(engine, "SELECT environment_id FROM outbox WHERE entity_type = 'environment' AND deleted")
    assert {m[0] for m in markers} == env_ids
    assert rows(engine, "SELECT count(*) FROM flags")[0][0] == 0


def test_environment_create__existing_flags__configs_off_and_outbox_rows(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project(envs=("dev",))
    api.flag()
    api.segment()
    r = client.post(f"{P}/shop/environments", json={"key": "prod", "name": "Production"})
    assert r.status_code == 201
    env_id = rows(engine, "SELECT id FROM environments WHERE key = 'prod'")[0][0]
    cfg = client.get(f"{P}/shop/flags/checkout/environments/prod").json()
    assert cfg["enabled"] is False
    assert cfg["rules"] == []
    outbox = rows(
        engine, "SELECT entity_type, entity_key, version FROM outbox WHERE environment_id = :e", e=env_id
    )
    assert sorted(outbox) == [("flag", "checkout", 1), ("segment", "beta", 1)]


def test_environment_create__configs_stored_as_a_new_flags_defaults__deleted_flags_left_out(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    """The new environment's rows hold the declared defaults exactly as a flag created without a
    configuration stores them (JSON ``null`` and SQL NULL alike), and a deleted flag gets none."""
    api.project(envs=("dev",))
    api.flag()
    api.flag(key="gone")
    assert client.delete(f"{P}/shop/flags/gone", headers={"If-Match": '"1"'}).status_code == 204
    assert (
        client.post(f"{P}/shop/environments", json={"key": "prod", "name": "Production"}).status_code == 201
    )
    stored = rows(
        engine,
        "SELECT e.key, f.key, fe.enabled, fe.off_variant, fe.default_variant, fe.default_split::text, "
        "fe.rules::text, fe.prerequisites::text, fe.version FROM flag_environments fe "
        "JOIN flags f ON f.id = fe.flag_id JOIN environments e ON e.id = fe.environment_id ORDER BY e.key, f.key",
    )
    assert [row[:2] for row in stored] == [("dev", "checkout"), ("dev", "gone"), ("prod", "checkout")]
    assert stored[0][2:] == stored[2][2:]
    outbox = rows(
        engine,
        "SELECT entity_key FROM outbox o JOIN environments e ON e.id = o.environment_id WHERE e.key = 'prod'",
    )
    assert outbox == [("checkout",)]


def test_environment_create__duplicate__409(client: TestClient, api: Api) -> None:
    api.project(envs=("dev",))
    assert client.post(f"{P}/shop/environments", json={"key": "dev", "name": "x"}).status_code == 409


def test_environment_list_get_patch__lifecycle__revision_and_etag(client: TestClient, api: Api) -> None:
    api.project()
    assert [e["key"] for e in client.get(f"{P}/shop/environments").json()["items"]] == ["dev", "prod"]
    r = client.get(f"{P}/shop/environments/dev")
    assert r.headers["etag"] == '"1"'
    r = client.patch(f"{P}/shop/environments/dev", json={"description": "local"}, headers={"If-Match": '"1"'})
    assert r.status_code == 200
    assert r.json()["revision"] == 2
    assert r.json()["description"] == "local"
    r = client.patch(f"{P}/shop/environments/dev", json={"description": "x"}, headers={"If-Match": '"1"'})
    assert r.status_code == 412


def test_environment_delete__with_sdk_key__configs_keys_gone_and_marker(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    assert client.post(f"{P}/shop/environments/prod/sdk-keys", json={"name": "svc"}).status_code == 201
    env_id = rows(engine, "SELECT id FROM environments WHERE key = 'prod'")[0][0]
    assert client.delete(f"{P}/shop/environments/prod").status_code == 428
    assert client.delete(f"{P}/shop/environments/prod", headers={"If-Match": '"1"'}).status_code == 204
    assert (
        rows(engine, "SELECT count(*) FROM flag_environments WHERE environment_id = :e", e=env_id)[0][0] == 0
    )
    assert rows(engine, "SELECT count(*) FROM api_keys WHERE environment_id = :e", e=env_id)[0][0] == 0
    marker = rows(
        engine, "SELECT entity_type, entity_key, deleted FROM outbox WHERE environment_id = :e", e=env_id
    )
    assert ("environment", "prod", True) in marker
    assert list(client.get(f"{P}/shop/flags/checkout").json()["environments"]) == ["dev"]
