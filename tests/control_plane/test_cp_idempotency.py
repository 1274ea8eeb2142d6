"""Idempotency-Key on POST (replay, never a duplicate) and optimistic concurrency under races."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa
from cp_helpers import Api, rows
from fastapi.testclient import TestClient

F = "/api/v1/projects/shop/flags"
BODY = {"key": "f", "name": "F", "type": "boolean", "variants": {"on": True}}


def test_post__same_idempotency_key_twice__same_response_one_flag(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    first = client.post(F, json=BODY, headers={"Idempotency-Key": "abc-1"})
    again = client.post(F, json=BODY, headers={"Idempotency-Key": "abc-1"})
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again.headers["etag"] == first.headers["etag"]
    assert again.headers["idempotent-replayed"] == "true"
    assert rows(engine, "SELECT count(*) FROM flags")[0][0] == 1
    assert rows(engine, "SELECT count(*) FROM audit_log WHERE resource_type = 'flag'")[0][0] == 1


def test_post__same_key_different_body__422_reused(client: TestClient, api: Api) -> None:
    api.project()
    assert client.post(F, json=BODY, headers={"Idempotency-Key": "k"}).status_code == 201
    r = client.post(F, json={**BODY, "key": "g"}, headers={"Idempotency-Key": "k"})
    assert r.status_code == 422
    assert r.json()["code"] == "idempotency_key_reused"


def test_post__without_key__second_create_conflicts(client: TestClient, api: Api) -> None:
    api.project()
    assert client.post(F, json=BODY).status_code == 201
    assert client.post(F, json=BODY).status_code == 409


def test_post__failed_first_attempt__retry_runs_again(client: TestClient, api: Api) -> None:
    api.project()
    bad = client.post(F, json={**BODY, "variants": {"on": "yes"}}, headers={"Idempotency-Key": "k2"})
    assert bad.status_code == 422
    assert (
        client.post(
            F, json={**BODY, "variants": {"on": "yes"}}, headers={"Idempotency-Key": "k2"}
        ).status_code
        == 422
    )


def test_toggle__replayed_with_key__no_second_version(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    for _ in range(3):
        r = client.post(
            f"{F}/checkout/environments/prod/toggle", json={"enabled": True}, headers={"Idempotency-Key": "t"}
        )
        assert r.status_code == 200
    assert rows(engine, "SELECT max(version) FROM flag_versions")[0][0] == 2


def test_post__concurrent_retries_same_key__exactly_one_created(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()

    def attempt(_: int) -> tuple[int, str]:
        r = client.post(F, json=BODY, headers={"Idempotency-Key": "race"})
        return r.status_code, r.text

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(attempt, range(4)))
    assert {status for status, _ in results} == {201}
    assert len({text for _, text in results}) == 1
    assert rows(engine, "SELECT count(*) FROM flags")[0][0] == 1


def test_patch__concurrent_same_if_match__one_wins_rest_412(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()

    def attempt(i: int) -> int:
        r = client.patch(f"{F}/checkout", json={"description": f"writer {i}"}, headers={"If-Match": '"1"'})
        return r.status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(attempt, range(4)))
    assert statuses == [200, 412, 412, 412]
    assert rows(engine, "SELECT max(version) FROM flag_versions")[0][0] == 2


def test_if_match__weak_and_list_forms__accepted(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    assert (
        client.patch(f"{F}/checkout", json={"description": "a"}, headers={"If-Match": 'W/"1"'}).status_code
        == 200
    )
    assert (
        client.patch(f"{F}/checkout", json={"description": "b"}, headers={"If-Match": '"7", "2"'}).status_code
        == 200
    )
    assert (
        client.patch(f"{F}/checkout", json={"description": "c"}, headers={"If-Match": "*"}).status_code == 200
    )
