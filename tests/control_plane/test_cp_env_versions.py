"""Each environment's version of a flag (``flag_environments.version``): the flag version at which what
that environment serves last changed, moved only for the environments a change reaches, with an outbox
row for exactly those."""

from __future__ import annotations

import sqlalchemy as sa
from cp_helpers import Api, rows
from fastapi.testclient import TestClient

F = "/api/v1/projects/shop/flags/checkout"


def env_versions(engine: sa.Engine, flag: str = "checkout") -> dict[str, int]:
    """Environment key → its version of the live flag."""
    found = rows(
        engine,
        "SELECT e.key, fe.version FROM flag_environments fe JOIN flags f ON f.id = fe.flag_id "
        "JOIN environments e ON e.id = fe.environment_id WHERE f.key = :k AND f.deleted_at IS NULL",
        k=flag,
    )
    return dict(found)  # type: ignore[arg-type]


def outbox_envs(engine: sa.Engine, version: int, flag: str = "checkout") -> list[str]:
    """Environment keys that got an outbox row for ``version`` of the flag."""
    found = rows(
        engine,
        "SELECT e.key FROM outbox o JOIN environments e ON e.id = o.environment_id "
        "WHERE o.entity_type = 'flag' AND o.entity_key = :k AND o.version = :v ORDER BY e.key",
        k=flag,
        v=version,
    )
    return [key for (key,) in found]


def patch(client: TestClient, path: str, body: dict[str, object]) -> dict[str, object]:
    r = client.patch(path, json=body, headers={"If-Match": client.get(path).headers["etag"]})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_env_config_change__only_that_environment_moves_and_gets_an_outbox_row(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    assert env_versions(engine) == {"dev": 1, "prod": 1}
    patch(client, f"{F}/environments/prod", {"enabled": True})
    assert client.post(f"{F}/environments/prod/toggle", json={"enabled": False}).status_code == 200
    assert env_versions(engine) == {"dev": 1, "prod": 3}
    assert outbox_envs(engine, 2) == ["prod"]
    assert outbox_envs(engine, 3) == ["prod"]


def test_env_etag__stays_the_flags_version__a_change_elsewhere_makes_it_stale(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    """The REST contract is kept: a flag's resources share one ETag (its version), so a PATCH of dev
    whose If-Match predates a change of prod is refused, while dev's own version does not move."""
    api.project()
    api.flag()
    stale = client.get(f"{F}/environments/dev").headers["etag"]
    patch(client, f"{F}/environments/prod", {"enabled": True})
    fresh = client.get(f"{F}/environments/dev")
    assert fresh.headers["etag"] == client.get(F).headers["etag"] == '"2"'
    assert fresh.json()["version"] == 2
    r = client.patch(f"{F}/environments/dev", json={"enabled": True}, headers={"If-Match": stale})
    assert r.status_code == 412
    assert env_versions(engine) == {"dev": 1, "prod": 2}


def test_definition_change__served_part_moves_every_environment__name_alone_moves_none(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    patch(client, f"{F}/environments/prod", {"enabled": True})
    # name, description and tags are not served: a new flag version, but no environment moves
    assert patch(client, F, {"name": "Renamed", "tags": ["t"]})["version"] == 3
    assert env_versions(engine) == {"dev": 1, "prod": 2}
    assert outbox_envs(engine, 3) == []
    # variants are served: every environment moves to the new version, above what each had
    assert patch(client, F, {"variants": {"on": True, "off": False, "maybe": True}})["version"] == 4
    assert env_versions(engine) == {"dev": 4, "prod": 4}
    assert outbox_envs(engine, 4) == ["dev", "prod"]


def test_rollback__moves_only_the_environments_whose_configuration_it_changes(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    patch(client, f"{F}/environments/prod", {"enabled": True})  # v2
    patch(client, f"{F}/environments/dev", {"enabled": True})  # v3
    r = client.post(f"{F}/rollback", json={"version": 2})  # dev back to off, prod as it is
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 4
    assert env_versions(engine) == {"dev": 4, "prod": 2}
    assert outbox_envs(engine, 4) == ["dev"]
    # a rollback to v1 moves prod (and not dev, already off): above prod's 2, at the flag's new 5
    assert client.post(f"{F}/rollback", json={"version": 1}).status_code == 200
    assert env_versions(engine) == {"dev": 4, "prod": 5}
    assert outbox_envs(engine, 5) == ["prod"]


def test_same_configuration_written_differently__no_new_version(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    rule = {"id": "r", "clauses": [{"attribute": "a", "operator": "eq", "values": ["x"]}], "variant": "on"}
    api.flag(environments={"prod": {"rules": [rule]}})
    # the stored rule has its defaults filled in; sending it without them changes nothing
    body = patch(client, f"{F}/environments/prod", {"rules": [rule]})
    assert body["version"] == 1
    assert env_versions(engine) == {"dev": 1, "prod": 1}
    assert rows(engine, "SELECT count(*) FROM flag_versions")[0][0] == 1


def test_delete_and_recreate__every_environment_starts_above_the_tombstone(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    patch(client, f"{F}/environments/prod", {"enabled": True})
    assert client.delete(F, headers={"If-Match": '"2"'}).status_code == 204
    assert outbox_envs(engine, 3) == ["dev", "prod"]  # the tombstone, for every environment
    api.flag()
    assert env_versions(engine) == {"dev": 4, "prod": 4}


def test_environment_created__its_rows_start_at_each_flags_version(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    patch(client, f"{F}/environments/prod", {"enabled": True})
    r = client.post("/api/v1/projects/shop/environments", json={"key": "qa", "name": "QA"})
    assert r.status_code == 201, r.text
    assert env_versions(engine) == {"dev": 1, "prod": 2, "qa": 2}


def test_import__moves_the_imported_environment__and_all_when_variants_change(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    flag = {"key": "checkout", "type": "boolean", "variants": {"on": True, "off": False}, "enabled": True}
    doc = {"flags": [flag]}
    r = client.post("/api/v1/projects/shop/environments/prod/import", json=doc)
    assert r.status_code == 200, r.text
    assert env_versions(engine) == {"dev": 1, "prod": 2}
    assert outbox_envs(engine, 2) == ["prod"]
    doc["flags"][0]["variants"] = {"on": True, "off": False, "maybe": True}
    r = client.post("/api/v1/projects/shop/environments/prod/import", json=doc)
    assert r.status_code == 200, r.text
    assert env_versions(engine) == {"dev": 3, "prod": 3}
    assert outbox_envs(engine, 3) == ["dev", "prod"]
    doc["flags"].append({"key": "fresh", "type": "boolean", "variants": {"on": True, "off": False}})
    assert client.post("/api/v1/projects/shop/environments/prod/import", json=doc).status_code == 200
    assert env_versions(engine, "fresh") == {"dev": 1, "prod": 1}
