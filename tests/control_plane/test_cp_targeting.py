"""JsonLogic targeting as a flag's rule form over the admin API: written, refused with pointers,
versioned, diffed and rolled back like rules."""

from __future__ import annotations

from cp_helpers import Api
from fastapi.testclient import TestClient

F = "/api/v1/projects/shop/flags/checkout"
TARGETING = {"if": [{"$ref": "beta"}, "on", {"sem_ver": [{"var": "version"}, ">=", "2.0.0"]}, "on", None]}


def _with_targeting(client: TestClient, api: Api) -> None:
    api.project()
    api.segment()
    api.flag(environments={"prod": {"enabled": True, "default_variant": "off"}})
    r = client.patch(f"{F}/environments/prod", json={"targeting": TARGETING}, headers={"If-Match": '"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["targeting"] == TARGETING
    assert r.json()["version"] == 2


def test_patch__targeting__stored_read_back_and_versioned(client: TestClient, api: Api) -> None:
    _with_targeting(client, api)
    assert client.get(f"{F}/environments/prod").json()["targeting"] == TARGETING
    assert client.get(f"{F}/environments/dev").json()["targeting"] is None
    snapshot = client.get(f"{F}/versions/2").json()["snapshot"]
    assert snapshot["environments"]["prod"]["targeting"] == TARGETING
    changes = client.get(f"{F}/diff", params={"from": 1, "to": 2}).json()["changes"]
    assert any(c["path"].startswith("/environments/prod/targeting") for c in changes), changes


def test_patch__invalid_targeting__422_with_pointers(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    bad = {"if": [{"$ref": "nobody"}, "on", {"no_such_op": [1]}]}
    r = client.patch(f"{F}/environments/prod", json={"targeting": bad}, headers={"If-Match": '"1"'})
    assert r.status_code == 422, r.text
    paths = {d["path"] for d in r.json()["details"]}
    assert "/targeting/if/0/$ref" in paths
    assert "/targeting/if/2" in paths
    assert client.get(F).json()["version"] == 1


def test_patch__rules_and_targeting__422_pointing_at_targeting(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    rule = {
        "id": "r",
        "clauses": [{"attribute": "plan", "operator": "eq", "values": ["pro"]}],
        "variant": "on",
    }
    body = {"rules": [rule], "targeting": {"var": "x"}}
    r = client.patch(f"{F}/environments/prod", json=body, headers={"If-Match": '"1"'})
    assert r.status_code == 422, r.text
    assert [d["path"] for d in r.json()["details"]] == ["/targeting"]


def test_rollback__before_targeting__targeting_gone_and_back_again(client: TestClient, api: Api) -> None:
    _with_targeting(client, api)
    r = client.post(f"{F}/rollback", json={"version": 1})
    assert r.status_code == 200, r.text
    assert r.json()["environments"]["prod"]["targeting"] is None
    r = client.post(f"{F}/rollback", json={"version": 2})
    assert r.status_code == 200, r.text
    assert r.json()["environments"]["prod"]["targeting"] == TARGETING
    assert r.json()["version"] == 4


def test_delete_segment__referred_to_by_targeting__409_naming_the_flag(client: TestClient, api: Api) -> None:
    _with_targeting(client, api)
    r = client.delete("/api/v1/projects/shop/segments/beta", headers={"If-Match": '"1"'})
    assert r.status_code == 409, r.text
    assert "checkout" in r.text
    assert (
        client.patch(
            f"{F}/environments/prod", json={"targeting": None}, headers={"If-Match": '"2"'}
        ).status_code
        == 200
    )
    assert (
        client.delete("/api/v1/projects/shop/segments/beta", headers={"If-Match": '"1"'}).status_code == 204
    )
