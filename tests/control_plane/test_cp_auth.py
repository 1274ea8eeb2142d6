"""API keys, roles, project scoping, SDK keys, rotation, revocation, bootstrap and settings secrets."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from contract_helpers import CheckedClient
from cp_helpers import ADMIN_KEY, Api, auth, rows
from fastapi.testclient import TestClient
from pydantic import ValidationError

from flagyard.control_plane.main import create_app
from flagyard.control_plane.services.keys import ensure_bootstrap_key
from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY, Settings

P = "/api/v1/projects"


def test_request__no_authorization__401_with_www_authenticate(client: TestClient) -> None:
    r = client.get(P, headers={"Authorization": ""})
    assert r.status_code == 401
    assert r.headers["www-authenticate"] == "Bearer"
    assert r.json()["code"] == "unauthenticated"


@pytest.mark.parametrize("key", ["fy_admin_not-a-real-key-000000000000", "hello", "fy_boss_abcdef"])
def test_request__unknown_key__401(client: TestClient, key: str) -> None:
    assert client.get(P, headers=auth(key)).status_code == 401


def test_api_key_create__admin__key_shown_once_only_hash_stored(
    client: TestClient, engine: sa.Engine
) -> None:
    r = client.post("/api/v1/api-keys", json={"name": "ci", "role": "writer"})
    assert r.status_code == 201
    key = r.json()["key"]
    assert key.startswith("fy_writer_")
    assert len(key) == len("fy_writer_") + 43
    assert r.json()["prefix"] == key[: len("fy_writer_") + 6]
    stored = rows(engine, "SELECT key_hash, prefix, name FROM api_keys WHERE id = :i", i=r.json()["id"])[0]
    assert stored[0] == hashlib.sha256(key.encode()).hexdigest()
    assert key not in stored
    listed = client.get(f"/api/v1/api-keys/{r.json()['id']}").json()
    assert "key" not in listed
    assert listed["role"] == "writer"


def test_reader_key__get__200_but_write__403(client: TestClient, api: Api) -> None:
    api.project()
    reader = api.key("reader")
    assert client.get(f"{P}/shop", headers=auth(reader)).status_code == 200
    r = client.post(
        f"{P}/shop/flags",
        json={"key": "f", "name": "F", "type": "boolean", "variants": {"on": True}},
        headers=auth(reader),
    )
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"


def test_writer_key__flag_write__201_but_keys_and_environments__403(client: TestClient, api: Api) -> None:
    api.project()
    writer = api.key("writer")
    r = client.post(
        f"{P}/shop/flags",
        json={"key": "f", "name": "F", "type": "boolean", "variants": {"on": True}},
        headers=auth(writer),
    )
    assert r.status_code == 201
    assert (
        client.post(
            "/api/v1/api-keys", json={"name": "x", "role": "reader"}, headers=auth(writer)
        ).status_code
        == 403
    )
    assert (
        client.post(
            f"{P}/shop/environments", json={"key": "qa", "name": "QA"}, headers=auth(writer)
        ).status_code
        == 403
    )
    assert client.get(f"{P}/shop/environments/dev/sdk-keys", headers=auth(writer)).status_code == 403


def test_project_scoped_key__other_project__403_own_project__200(client: TestClient, api: Api) -> None:
    api.project("shop")
    api.project("blog")
    scoped = api.key("writer", project="shop")
    assert client.get(f"{P}/shop/flags", headers=auth(scoped)).status_code == 200
    assert client.get(f"{P}/blog/flags", headers=auth(scoped)).status_code == 403
    assert client.get(f"{P}/nonexistent", headers=auth(scoped)).status_code == 403
    listed = client.get(P, headers=auth(scoped)).json()["items"]
    assert [p["key"] for p in listed] == ["shop"]


def test_project_scoped_admin__create_project_or_global_key__403(client: TestClient, api: Api) -> None:
    api.project("shop")
    scoped_admin = api.key("admin", project="shop")
    assert client.post(P, json={"key": "new", "name": "N"}, headers=auth(scoped_admin)).status_code == 403
    r = client.post("/api/v1/api-keys", json={"name": "g", "role": "reader"}, headers=auth(scoped_admin))
    assert r.status_code == 403
    r = client.post(
        "/api/v1/api-keys",
        json={"name": "s", "role": "reader", "project": "shop"},
        headers=auth(scoped_admin),
    )
    assert r.status_code == 201
    assert client.get("/api/v1/audit", headers=auth(scoped_admin)).status_code == 403


def test_sdk_key__create_list__environment_scoped_and_refused_by_admin_api(
    client: TestClient, api: Api
) -> None:
    api.project()
    r = client.post(f"{P}/shop/environments/prod/sdk-keys", json={"name": "backend"})
    assert r.status_code == 201
    key = r.json()["key"]
    assert key.startswith("fy_sdk_")
    assert r.json()["environment"] == "prod"
    listed = client.get(f"{P}/shop/environments/prod/sdk-keys").json()["items"]
    assert [k["id"] for k in listed] == [r.json()["id"]]
    assert client.get(f"{P}/shop/environments/dev/sdk-keys").json()["items"] == []
    assert client.get(P, headers=auth(key)).status_code == 403
    assert client.get(f"/api/v1/api-keys/{r.json()['id']}").status_code == 404


def test_api_key_revoke__immediately__401(client: TestClient, api: Api) -> None:
    reader = api.key("reader")
    key_id = client.get("/api/v1/api-keys").json()["items"][-1]["id"]
    assert client.get(P, headers=auth(reader)).status_code == 200
    assert client.delete(f"/api/v1/api-keys/{key_id}").status_code == 204
    r = client.get(P, headers=auth(reader))
    assert r.status_code == 401
    assert "revoked" in r.json()["message"]


@pytest.mark.parametrize(("cache_seconds", "after_revocation"), [(0, 401), (3600, 200)])
def test_api_key_revoke__by_another_process__seen_within_the_auth_cache_window(
    client: TestClient, api: Api, settings: Settings, cache_seconds: float, after_revocation: int
) -> None:
    # Given a second control-plane process that has just authenticated a reader key
    reader = api.key("reader")
    key_id = client.get("/api/v1/api-keys").json()["items"][-1]["id"]
    other = create_app(settings.model_copy(update={"auth_cache_seconds": cache_seconds}))
    with CheckedClient(other) as other_client:
        assert other_client.get(P, headers=auth(reader)).status_code == 200
        # When the first process revokes it
        assert client.delete(f"/api/v1/api-keys/{key_id}").status_code == 204
        # Then the second refuses it at once without a cache, and only after its window with one
        assert other_client.get(P, headers=auth(reader)).status_code == after_revocation
    assert client.get(P, headers=auth(reader)).status_code == 401


def test_api_key_rotate__overlap__both_work_then_old_expires(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    old = api.key("reader")
    old_id = client.get("/api/v1/api-keys").json()["items"][-1]["id"]
    r = client.post(f"/api/v1/api-keys/{old_id}/rotate", json={"overlap_seconds": 3600})
    assert r.status_code == 201
    new = r.json()["key"]
    assert r.json()["replaces_key_id"] == old_id
    assert client.get(P, headers=auth(old)).status_code == 200
    assert client.get(P, headers=auth(new)).status_code == 200
    expires = datetime.fromisoformat(client.get(f"/api/v1/api-keys/{old_id}").json()["expires_at"])
    assert timedelta(minutes=59) < expires - datetime.now(UTC) <= timedelta(hours=1)
    with engine.begin() as conn:  # the overlap window ends
        conn.execute(
            sa.text("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = :i"),
            {"i": old_id},
        )
    client.app.state.flagyard.key_cache.clear()  # type: ignore[attr-defined]  # time travel: the cached entry aged out
    r = client.get(P, headers=auth(old))
    assert r.status_code == 401
    assert "expired" in r.json()["message"]
    assert client.get(P, headers=auth(new)).status_code == 200


def test_api_key_rotate__zero_overlap__old_key_refused_at_once(client: TestClient, api: Api) -> None:
    old = api.key("writer")
    old_id = client.get("/api/v1/api-keys").json()["items"][-1]["id"]
    new = client.post(f"/api/v1/api-keys/{old_id}/rotate", json={"overlap_seconds": 0}).json()["key"]
    assert client.get(P, headers=auth(old)).status_code == 401
    assert client.get(P, headers=auth(new)).status_code == 200


def test_sdk_key_rotate_and_revoke__lifecycle__audited(client: TestClient, api: Api) -> None:
    api.project()
    base = f"{P}/shop/environments/prod/sdk-keys"
    key_id = client.post(base, json={"name": "svc"}).json()["id"]
    rotated = client.post(f"{base}/{key_id}/rotate")
    assert rotated.status_code == 201
    assert rotated.json()["key"].startswith("fy_sdk_")
    assert client.delete(f"{base}/{rotated.json()['id']}").status_code == 204
    assert client.delete(f"{P}/shop/environments/dev/sdk-keys/{key_id}").status_code == 404
    actions = [
        e["action"]
        for e in client.get(f"{P}/shop/audit", params={"resource_type": "sdk_key"}).json()["items"]
    ]
    assert actions == ["revoked", "rotated", "created"]


def test_api_key_create__expiry_in_past__422(client: TestClient) -> None:
    r = client.post(
        "/api/v1/api-keys", json={"name": "x", "role": "reader", "expires_at": "2001-01-01T00:00:00Z"}
    )
    assert r.status_code == 422
    assert r.json()["details"] == [{"path": "/expires_at", "message": "must be in the future"}]


def test_bootstrap__table_not_empty__not_inserted_again(engine: sa.Engine, client: TestClient) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE api_keys SET revoked_at = now()"))
    with sa.orm.Session(engine) as session, session.begin():
        assert ensure_bootstrap_key(session, ADMIN_KEY) is False
    assert client.get(P).status_code == 401


def test_bootstrap__empty_table__inserted_once(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("DELETE FROM api_keys"))
    with sa.orm.Session(engine) as session, session.begin():
        assert ensure_bootstrap_key(session, ADMIN_KEY) is True
        assert ensure_bootstrap_key(session, ADMIN_KEY) is False
    assert rows(engine, "SELECT name, role FROM api_keys") == [("bootstrap", "admin")]


def test_settings__production_with_default_secrets__refused() -> None:
    with pytest.raises(ValidationError, match="refuses default secrets"):
        Settings(mode="production")
    with pytest.raises(ValidationError, match="BOOTSTRAP_ADMIN_KEY"):
        Settings(
            mode="production",
            database_url="postgresql://u:p@db/flagyard",
            bootstrap_admin_key="fy_admin_short",
        )  # type: ignore[arg-type]


def test_settings__production_with_real_secrets__accepted_and_not_in_repr() -> None:
    key = "fy_admin_" + secrets.token_urlsafe(32)
    s = Settings(
        mode="production",
        database_url="postgresql://u:hunter2@db/flagyard",
        bootstrap_admin_key=key,
        webhook_secret_key=secrets.token_urlsafe(32),
    )  # type: ignore[arg-type]
    assert key not in repr(s)
    assert "hunter2" not in repr(s)
    assert s.sqlalchemy_url.startswith("postgresql+psycopg://")


def test_settings__development__default_bootstrap_key_allowed() -> None:
    assert Settings().bootstrap_admin_key is not None
    assert Settings().bootstrap_admin_key.get_secret_value() == DEV_BOOTSTRAP_ADMIN_KEY  # type: ignore[union-attr]
