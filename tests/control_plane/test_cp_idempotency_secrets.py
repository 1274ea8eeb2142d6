"""Idempotency records never hold a key's secret; a retry of a key creation names the key instead;
expired records are pruned; the migration scrubs rows written before."""

from __future__ import annotations

import json

import sqlalchemy as sa
from alembic import command
from contract_helpers import CheckedClient
from cp_helpers import ADMIN_KEY, Api, alembic_config, create_database, database_url, drop_database, rows
from fastapi.testclient import TestClient

from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import Settings

K = "/api/v1/api-keys"


def every_row_text(engine: sa.Engine) -> str:
    """Every row of every table, as text (what an attacker with a database dump reads)."""
    with engine.connect() as conn:
        tables = [
            t for (t,) in conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        ]
        return "\n".join(
            str(row[0]) for t in tables for row in conn.execute(sa.text(f'SELECT "{t}"::text FROM "{t}"'))
        )


def test_key_creations_with_idempotency_key__no_secret_in_any_table(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    issued = []
    r = client.post(K, json={"name": "ci", "role": "writer"}, headers={"Idempotency-Key": "a1"})
    assert r.status_code == 201
    issued.append(r.json())
    sdk = "/api/v1/projects/shop/environments/prod/sdk-keys"
    r = client.post(sdk, json={"name": "app"}, headers={"Idempotency-Key": "a2"})
    assert r.status_code == 201
    issued.append(r.json())
    r = client.post(f"{K}/{issued[0]['id']}/rotate", headers={"Idempotency-Key": "a3"})
    assert r.status_code == 201
    issued.append(r.json())
    r = client.post(f"{sdk}/{issued[1]['id']}/rotate", headers={"Idempotency-Key": "a4"})
    assert r.status_code == 201
    issued.append(r.json())
    dump = every_row_text(engine)
    assert rows(engine, "SELECT count(*) FROM idempotency_records")[0][0] == 4
    for created in issued:
        secret = created["key"].split("_", 2)[2]
        assert len(secret) == 43
        for i in range(len(secret) - 5):
            assert secret[i : i + 7] not in dump, created["key"][:12]


def test_key_creation_retried__409_names_the_key_no_second_key(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    body = {"name": "ci", "role": "reader"}
    first = client.post(K, json=body, headers={"Idempotency-Key": "retry-1"})
    again = client.post(K, json=body, headers={"Idempotency-Key": "retry-1"})
    assert first.status_code == 201
    key_id = first.json()["id"]
    assert again.status_code == 409
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == f"{K}/{key_id}"
    payload = again.json()
    assert payload["code"] == "secret_not_replayable"
    assert f"rotate key {key_id}" in payload["message"]
    assert payload["details"] == [{"path": "/key", "message": "a key's secret is never replayed"}]
    assert first.json()["key"] not in again.text
    assert rows(engine, "SELECT count(*) FROM api_keys WHERE name = 'ci'")[0][0] == 1
    different = client.post(K, json={**body, "role": "writer"}, headers={"Idempotency-Key": "retry-1"})
    assert different.json()["code"] == "idempotency_key_reused"


def test_other_creations__still_replayed_in_full(client: TestClient, api: Api) -> None:
    first = client.post("/api/v1/projects", json={"key": "p", "name": "P"}, headers={"Idempotency-Key": "p"})
    again = client.post("/api/v1/projects", json={"key": "p", "name": "P"}, headers={"Idempotency-Key": "p"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()


def test_expired_records__pruned_by_a_later_idempotent_write(settings: Settings, engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO idempotency_records (api_key_id, idempotency_key, fingerprint, status_code, body,"
                " headers, created_at) SELECT 1, 'old-' || n, '', 201, '{}', '{}', now() - interval '3 days'"
                " FROM generate_series(1, 30) n"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO idempotency_records (api_key_id, idempotency_key, fingerprint, status_code, body,"
                " headers, created_at) VALUES (1, 'recent', '', 201, '{}', '{}', now() - interval '1 hour')"
            )
        )
    with CheckedClient(create_app(settings), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        r = c.post("/api/v1/projects", json={"key": "q", "name": "Q"}, headers={"Idempotency-Key": "new"})
        assert r.status_code == 201
    keys = sorted(k for (k,) in rows(engine, "SELECT idempotency_key FROM idempotency_records"))
    assert keys == ["new", "recent"]


def test_migration__plaintext_rows_of_before__scrubbed_others_kept() -> None:
    name = create_database("flagyard_cp_idem_migration")
    url = database_url(name)
    secret = "fy_admin_" + "Q" * 10 + "w8Zr3Tk1Lp6Vn0Bx5Cj9Hm2Df7Gs4Ya"
    created = {"id": 7, "name": "ci", "role": "admin", "prefix": secret[:15], "key": secret}
    flag = {"key": "fy_looks_like_a_key", "name": "F", "type": "boolean"}
    try:
        config = alembic_config(url)
        command.upgrade(config, "0001")
        engine = sa.create_engine(url)
        insert = sa.text(
            "INSERT INTO idempotency_records (api_key_id, idempotency_key, fingerprint, status_code, body,"
            " headers) VALUES (1, :k, 'f', 201, CAST(:body AS json), CAST(:headers AS json))"
        )
        with engine.begin() as conn:
            conn.execute(
                insert,
                {"k": "key", "body": json.dumps(created), "headers": '{"Location": "/api/v1/api-keys/7"}'},
            )
            conn.execute(insert, {"k": "flag", "body": json.dumps(flag), "headers": '{"ETag": "\\"1\\""}'})
        command.upgrade(config, "head")
        with engine.connect() as conn:
            got = {
                k: (status, body, headers)
                for k, status, body, headers in conn.execute(
                    sa.text("SELECT idempotency_key, status_code, body, headers FROM idempotency_records")
                )
            }
        engine.dispose()
        status, body, headers = got["key"]
        assert status == 409
        assert body["code"] == "secret_not_replayable"
        assert "rotate key 7" in body["message"]
        assert headers == {"Location": "/api/v1/api-keys/7"}
        assert secret[9:] not in json.dumps(got)
        assert got["flag"] == (201, flag, {"ETag": '"1"'})
    finally:
        drop_database(name)
