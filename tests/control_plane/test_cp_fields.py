"""Every field list of the write path equals the one declaration (``db/fields.py``): the
ORM columns, the API schemas, what the API reads and stores, and what a rollback of an old snapshot
fills in."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from cp_helpers import Api
from fastapi.testclient import TestClient
from pydantic import BaseModel

from flagyard.control_plane import schemas
from flagyard.db import fields
from flagyard.db.models import Flag, FlagEnvironment, FlagVersion, Segment

ROW_BOOKKEEPING = {"id", "project_id", "version", "created_at", "updated_at", "deleted_at"}


def _columns(model: Any, bookkeeping: set[str]) -> set[str]:
    return {c.name for c in model.__table__.columns} - bookkeeping


def _schema_fields(model: type[BaseModel]) -> set[str]:
    return set(model.model_fields)


def test_declaration__equals_the_orm_columns() -> None:
    assert _columns(Flag, ROW_BOOKKEEPING) == set(fields.DEFINITION_FIELDS)
    assert _columns(FlagEnvironment, {"flag_id", "environment_id", "version"}) == set(
        fields.ENV_CONFIG_FIELDS
    )
    assert _columns(Segment, ROW_BOOKKEEPING) == set(fields.SEGMENT_FIELDS)
    # The flag repository relies on it: a new configuration under the same definition is served.
    assert all(f.served for f in fields.FLAG_ENV_CONFIG)
    table = FlagEnvironment.__table__
    assert {f.name: f.nullable for f in fields.FLAG_ENV_CONFIG} == {
        name: table.c[name].nullable for name in fields.ENV_CONFIG_FIELDS
    }


def test_declaration__equals_the_api_schemas() -> None:
    definition = set(fields.DEFINITION_FIELDS)
    config = set(fields.ENV_CONFIG_FIELDS)
    assert _schema_fields(schemas.FlagCreate) == set(fields.BODY_DEFINITION_FIELDS) | {
        "environments",
        "comment",
    }
    assert _schema_fields(schemas.FlagUpdate) == set(fields.UPDATABLE_DEFINITION_FIELDS) | {"comment"}
    assert set(fields.BODY_DEFINITION_FIELDS) == definition - {"salt", "archived"}
    assert _schema_fields(schemas.FlagOut) == definition | {
        "version",
        "created_at",
        "updated_at",
        "environments",
    }
    assert _schema_fields(schemas.FlagSummary) == set(fields.LISTED_FIELDS) | {
        "version",
        "updated_at",
        "enabled",
    }
    assert _schema_fields(schemas.EnvConfigIn) == config
    assert _schema_fields(schemas.EnvConfigPatch) == config | {"comment"}
    assert _schema_fields(schemas.EnvConfigOut) == config
    assert _schema_fields(schemas.SegmentCreate) == set(fields.SEGMENT_FIELDS) | {"comment"}
    assert _schema_fields(schemas.SegmentUpdate) == set(fields.EDITABLE_SEGMENT_FIELDS) | {"comment"}
    assert _schema_fields(schemas.SegmentOut) == set(fields.SEGMENT_FIELDS) | {
        "version",
        "created_at",
        "updated_at",
    }


def test_declared_defaults__equal_the_schemas_defaults() -> None:
    assert schemas.EnvConfigIn().model_dump(mode="json") == fields.default_env_config()
    for declared, model in (
        (fields.FLAG_DEFINITION, schemas.FlagCreate),
        (fields.SEGMENT, schemas.SegmentCreate),
    ):
        for field in declared:
            info = model.model_fields.get(field.name)
            if info is None or field.default is fields.REQUIRED:
                continue
            assert info.get_default(call_default_factory=True) == field.default, field.name


def test_complete__old_snapshot__missing_fields_read_as_declared_defaults() -> None:
    old = {"key": "a", "name": "A", "type": "boolean", "variants": {"on": True}, "salt": "s"}
    assert fields.complete(fields.FLAG_DEFINITION, old) == {
        **old,
        "description": "",
        "tags": [],
        "owner": "",
        "kind": "temporary",
        "removal_date": None,
        "archived": False,
    }
    assert fields.complete(fields.FLAG_ENV_CONFIG, {"enabled": True}) == {
        **fields.default_env_config(),
        "enabled": True,
    }
    with pytest.raises(KeyError, match="name"):
        fields.complete(fields.FLAG_DEFINITION, {"key": "a"})


def test_api__reads_and_snapshots__carry_exactly_the_declared_fields(client: TestClient, api: Api) -> None:
    api.project()
    api.flag(description="d", tags=["t"])
    base = "/api/v1/projects/shop/flags/checkout"

    flag = client.get(base).json()
    config = client.get(f"{base}/environments/prod").json()
    item = client.get("/api/v1/projects/shop/flags").json()["items"][0]
    snapshot = client.get(f"{base}/versions/1").json()["snapshot"]

    assert set(flag) == set(fields.DEFINITION_FIELDS) | {
        "version",
        "created_at",
        "updated_at",
        "environments",
    }
    assert set(flag["environments"]["prod"]) == set(fields.ENV_CONFIG_FIELDS)
    assert set(config) == set(fields.ENV_CONFIG_FIELDS) | {"flag", "environment", "version"}
    assert set(item) == set(fields.LISTED_FIELDS) | {"version", "updated_at", "enabled"}
    assert list(snapshot) == [*fields.DEFINITION_FIELDS, "environments"]
    assert list(snapshot["environments"]["prod"]) == list(fields.ENV_CONFIG_FIELDS)


@pytest.mark.parametrize(
    ("path", "body", "status"),
    [
        ("", {"description": None}, 422),
        ("", {"tags": None}, 422),
        ("/environments/prod", {"enabled": None}, 422),
        ("/environments/prod", {"off_variant": None, "enabled": True}, 200),
    ],
)
def test_patch__explicit_null__refused_only_for_non_nullable_fields(
    client: TestClient, api: Api, path: str, body: dict[str, Any], status: int
) -> None:
    api.project()
    api.flag()

    r = client.patch(f"/api/v1/projects/shop/flags/checkout{path}", json=body, headers={"If-Match": '"1"'})

    assert r.status_code == status, r.text
    if status == 422:
        assert [d["path"] for d in r.json()["details"]] == ["/" + next(iter(body))]


def test_rollback__snapshot_recorded_before_fields_existed__fills_the_declared_defaults(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    """A version stored before ``description``, ``tags``, ``default_split`` and ``prerequisites`` were
    fields (their keys removed from the stored snapshot) still rolls back, to the declared defaults."""
    api.project()
    api.flag(description="first", tags=["a"])
    base = "/api/v1/projects/shop/flags/checkout"
    r = client.patch(base, json={"description": "second", "tags": ["b"]}, headers={"If-Match": '"1"'})
    assert r.status_code == 200, r.text
    with engine.begin() as conn:
        snapshot = conn.scalar(sa.select(FlagVersion.snapshot).where(FlagVersion.version == 1))
        for name in ("description", "tags"):
            del snapshot[name]
        for config in snapshot["environments"].values():
            del config["default_split"], config["prerequisites"]
        conn.execute(sa.update(FlagVersion).where(FlagVersion.version == 1).values(snapshot=snapshot))

    r = client.post(f"{base}/rollback", json={"version": 1})

    assert r.status_code == 200, r.text
    assert (r.json()["description"], r.json()["tags"], r.json()["version"]) == ("", [], 3)
    assert r.json()["environments"]["prod"] == fields.default_env_config()
