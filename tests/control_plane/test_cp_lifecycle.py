"""Flag lifecycle over the admin API (real PostgreSQL and Redis, every response held to the OpenAPI
document by CheckedClient): owner, kind and removal date with their bounds; archive and unarchive;
what an archived flag refuses; the stale report; the ``flagyard_stale_flags`` gauge."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from contract_helpers import CheckedClient
from cp_helpers import ADMIN_KEY, Api, auth
from fastapi.testclient import TestClient

from flagyard.contracts.redis import EnvKeys
from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import Settings
from flagyard.db.models import Environment, FlagVersion, OutboxEntry

BASE = "/api/v1/projects/shop/flags"
FLAG = f"{BASE}/checkout"


# --- fields --------------------------------------------------------------------------------------


def test_create__lifecycle_fields__stored_shown_and_listed(client: TestClient, api: Api) -> None:
    api.project()
    api.flag(owner="team-payments@example.com", kind="permanent", removal_date="2027-03-31")
    api.flag(key="plain")

    flag = client.get(FLAG).json()
    plain = client.get(f"{BASE}/plain").json()
    items = {i["key"]: i for i in client.get(BASE).json()["items"]}

    assert (flag["owner"], flag["kind"], flag["removal_date"], flag["archived"]) == (
        "team-payments@example.com",
        "permanent",
        "2027-03-31",
        False,
    )
    # A new flag is temporary unless told: the stale report then errs toward showing it.
    assert (plain["owner"], plain["kind"], plain["removal_date"], plain["archived"]) == (
        "",
        "temporary",
        None,
        False,
    )
    assert items["checkout"]["owner"] == "team-payments@example.com"
    assert items["checkout"]["removal_date"] == "2027-03-31"


def test_create__owner_at_its_bound__accepted(client: TestClient, api: Api) -> None:
    api.project()
    assert api.flag(owner="o" * 200)["owner"] == "o" * 200


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("owner", "o" * 201),
        ("owner", "a\x00b"),
        ("owner", None),
        ("kind", "forever"),
        ("kind", None),
        ("removal_date", "2027-02-30"),
        ("removal_date", "2027-1-1"),
        ("removal_date", "2027-01-01T00:00:00Z"),
        ("removal_date", 1798761600),
        ("archived", True),
    ],
)
def test_patch__bad_lifecycle_field__422_at_its_pointer_and_nothing_changes(
    client: TestClient, api: Api, field: str, value: Any
) -> None:
    api.project()
    api.flag()

    r = client.patch(FLAG, json={field: value}, headers={"If-Match": '"1"'})

    assert r.status_code == 422, r.text
    assert {d["path"] for d in r.json()["details"]} == {"/" + field}
    assert client.get(FLAG).json()["version"] == 1


@pytest.mark.parametrize(
    ("field", "value"), [("owner", "o" * 201), ("kind", "Temporary"), ("removal_date", "31.12.2027")]
)
def test_create__bad_lifecycle_field__422_at_its_pointer(
    client: TestClient, api: Api, field: str, value: Any
) -> None:
    api.project()
    body = {"key": "x", "name": "X", "type": "boolean", "variants": {"on": True}, field: value}

    r = client.post(BASE, json=body)

    assert r.status_code == 422, r.text
    assert {d["path"] for d in r.json()["details"]} == {"/" + field}


def test_patch__lifecycle_fields__new_version_that_moves_no_environment(client: TestClient, api: Api) -> None:
    api.project()
    api.flag(removal_date="2027-01-01")

    r = client.patch(
        FLAG,
        json={"owner": "ana", "kind": "permanent", "removal_date": None},
        headers={"If-Match": '"1"'},
    )

    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["owner"], body["kind"], body["removal_date"], body["version"]) == (
        "ana",
        "permanent",
        None,
        2,
    )
    assert client.get(f"{FLAG}/environments/prod").json()["version"] == 2  # the flag's ETag
    assert client.get(f"{FLAG}/versions/2").json()["snapshot"]["environments"]["prod"]["enabled"] is False


# --- archive and unarchive -------------------------------------------------------------------------


def _outbox(engine: sa.Engine, key: str) -> list[tuple[str, int, bool]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(Environment.key, OutboxEntry.version, OutboxEntry.deleted)
            .join(Environment, Environment.id == OutboxEntry.environment_id)
            .where(OutboxEntry.entity_type == "flag", OutboxEntry.entity_key == key)
            .order_by(OutboxEntry.id)
        )
        return [tuple(row) for row in rows]  # type: ignore[misc]


def test_archive__new_version__every_environment_queued_audited_hidden_from_list(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    api.flag(key="other")

    r = client.post(f"{FLAG}/archive", json={"comment": "released everywhere"})

    assert r.status_code == 200, r.text
    assert (r.json()["archived"], r.json()["version"], r.headers["etag"]) == (True, 2, '"2"')
    assert _outbox(engine, "checkout")[-2:] == [("dev", 2, False), ("prod", 2, False)]
    assert client.get(f"{FLAG}/environments/prod").json()["version"] == 2
    versions = client.get(f"{FLAG}/versions").json()["items"]
    newest = versions[0]
    assert (newest["version"], newest["action"], newest["comment"]) == (
        2,
        "archived",
        "released everywhere",
    )
    audit = client.get("/api/v1/projects/shop/audit").json()["items"]
    assert any(e["action"] == "archived" and e["resource_key"] == "checkout" for e in audit), audit
    assert [i["key"] for i in client.get(BASE).json()["items"]] == ["other"]
    assert [i["key"] for i in client.get(f"{BASE}?archived=true").json()["items"]] == ["checkout"]
    listed = {i["key"]: i["archived"] for i in client.get(f"{BASE}?archived=all").json()["items"]}
    assert listed == {"checkout": True, "other": False}
    assert client.get(FLAG).json()["archived"] is True  # a direct read still works
    assert client.get(f"{FLAG}/diff?from=1").json()["changes"] == [
        {"op": "replace", "path": "/archived", "old": False, "value": True}
    ]


def test_archive__twice__changes_nothing_the_second_time(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    assert client.post(f"{FLAG}/archive", json={}).status_code == 200

    again = client.post(f"{FLAG}/archive", json={})

    assert (again.status_code, again.json()["version"]) == (200, 2)


def test_archive__stale_if_match__412_and_still_live(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()

    r = client.post(f"{FLAG}/archive", json={}, headers={"If-Match": '"7"'})

    assert r.status_code == 412, r.text
    assert client.get(FLAG).json()["archived"] is False


def test_archive__reader__403(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    key = client.post("/api/v1/api-keys", json={"name": "r", "role": "reader"}).json()["key"]

    r = client.post(f"{FLAG}/archive", json={}, headers=auth(key))

    assert r.status_code == 403, r.text


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "", {"name": "New"}),
        ("PATCH", "/environments/prod", {"enabled": True}),
        ("POST", "/environments/prod/toggle", {"enabled": True}),
        ("POST", "/rollback", {"version": 1}),
    ],
)
def test_archived_flag__any_change__409_flag_archived(
    client: TestClient, api: Api, method: str, path: str, body: dict[str, Any]
) -> None:
    api.project()
    api.flag()
    assert client.post(f"{FLAG}/archive", json={}).status_code == 200

    r = client.request(method, FLAG + path, json=body, headers={"If-Match": '"2"'})

    assert r.status_code == 409, r.text
    assert r.json()["code"] == "flag_archived"
    assert client.get(FLAG).json()["version"] == 2


def test_archived_flag__its_key__cannot_be_taken_by_a_new_flag(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    assert client.post(f"{FLAG}/archive", json={}).status_code == 200

    r = client.post(BASE, json={"key": "checkout", "name": "C", "type": "boolean", "variants": {"on": True}})

    assert r.status_code == 409, r.text
    assert "archived" in r.json()["message"]


def test_archived_flag__delete__allowed(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    assert client.post(f"{FLAG}/archive", json={}).status_code == 200

    assert client.delete(FLAG, headers={"If-Match": '"2"'}).status_code == 204
    assert client.get(f"{BASE}?archived=all").json()["items"] == []


def test_unarchive__serves_its_old_configuration_at_a_higher_version(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag(environments={"prod": {"enabled": True, "default_variant": "on", "off_variant": "off"}})
    assert client.post(f"{FLAG}/archive", json={}).status_code == 200

    r = client.post(f"{FLAG}/unarchive", json={"comment": "needed again"})

    assert r.status_code == 200, r.text
    assert (r.json()["archived"], r.json()["version"]) == (False, 3)
    assert r.json()["environments"]["prod"]["enabled"] is True
    assert _outbox(engine, "checkout")[-2:] == [("dev", 3, False), ("prod", 3, False)]
    assert client.get(f"{FLAG}/versions").json()["items"][0]["action"] == "unarchived"
    assert [i["key"] for i in client.get(BASE).json()["items"]] == ["checkout"]


def test_rollback__to_a_version_recorded_while_archived__keeps_the_flag_live(
    client: TestClient, api: Api
) -> None:
    api.project()
    api.flag()
    assert client.patch(FLAG, json={"name": "Renamed"}, headers={"If-Match": '"1"'}).status_code == 200
    assert client.post(f"{FLAG}/archive", json={}).status_code == 200  # v3
    assert client.post(f"{FLAG}/unarchive", json={}).status_code == 200  # v4
    assert client.patch(FLAG, json={"name": "Third"}, headers={"If-Match": '"4"'}).status_code == 200

    r = client.post(f"{FLAG}/rollback", json={"version": 3})

    assert r.status_code == 200, r.text
    assert (r.json()["name"], r.json()["archived"]) == ("Renamed", False)


def _prerequisite(client: TestClient, child: str, parent: str, version: int) -> None:
    r = client.patch(
        f"{BASE}/{child}/environments/prod",
        json={"prerequisites": [{"flag": parent, "variant": "on"}]},
        headers={"If-Match": f'"{version}"'},
    )
    assert r.status_code == 200, r.text


def test_archive__prerequisite_of_a_live_flag__409_naming_it(client: TestClient, api: Api) -> None:
    api.project()
    api.flag(key="parent")
    api.flag(key="child")
    _prerequisite(client, "child", "parent", 1)

    r = client.post(f"{BASE}/parent/archive", json={})

    assert r.status_code == 409, r.text
    assert r.json()["details"] == [
        {"path": "/environments/prod", "message": "flag 'child' has it as prerequisite"}
    ]
    assert client.get(f"{BASE}/parent").json()["archived"] is False


def test_archive__prerequisite_only_of_archived_flags__allowed_and_unarchive_order_checked(
    client: TestClient, api: Api
) -> None:
    api.project()
    api.flag(key="parent")
    api.flag(key="child")
    _prerequisite(client, "child", "parent", 1)
    assert client.post(f"{BASE}/child/archive", json={}).status_code == 200

    assert client.post(f"{BASE}/parent/archive", json={}).status_code == 200
    # The archived child keeps its prerequisite, so the parent cannot be deleted under it ...
    deleted = client.delete(f"{BASE}/parent", headers={"If-Match": '"2"'})
    assert deleted.status_code == 409, deleted.text
    # ... and cannot come back before its parent: a missing prerequisite, named at its pointer.
    early = client.post(f"{BASE}/child/unarchive", json={})
    assert early.status_code == 422, early.text
    assert [d["path"] for d in early.json()["details"]] == ["/environments/prod/prerequisites/0/flag"]
    assert client.post(f"{BASE}/parent/unarchive", json={}).status_code == 200
    assert client.post(f"{BASE}/child/unarchive", json={}).status_code == 200


def test_prerequisite__on_an_archived_flag__422(client: TestClient, api: Api) -> None:
    api.project()
    api.flag(key="parent")
    api.flag(key="child")
    assert client.post(f"{BASE}/parent/archive", json={}).status_code == 200

    r = client.patch(
        f"{BASE}/child/environments/prod",
        json={"prerequisites": [{"flag": "parent", "variant": "on"}]},
        headers={"If-Match": '"1"'},
    )

    assert r.status_code == 422, r.text
    assert [d["path"] for d in r.json()["details"]] == ["/prerequisites/0/flag"]


def test_import__archived_key__422_and_export_leaves_it_out(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    api.flag(key="live")
    assert client.post(f"{FLAG}/archive", json={}).status_code == 200
    doc = {"flags": [{"key": "checkout", "type": "boolean", "variants": {"on": True, "off": False}}]}

    r = client.post("/api/v1/projects/shop/environments/prod/import", json=doc)
    exported = client.get("/api/v1/projects/shop/environments/prod/export").json()

    assert r.status_code == 422, r.text
    assert r.json()["details"] == [
        {"path": "/flags/0", "message": "flag 'checkout' is archived; unarchive it first"}
    ]
    assert [f["key"] for f in exported["flags"]] == ["live"]


# --- the stale report ------------------------------------------------------------------------------

DAY = 86400.0


def _age_versions(engine: sa.Engine, days: float) -> None:
    """Every recorded flag version as if written ``days`` ago (what the report reads as last change)."""
    with engine.begin() as conn:
        conn.execute(sa.update(FlagVersion).values(created_at=datetime.now(UTC) - timedelta(days=days)))


def _evaluated(engine: sa.Engine, rds: redis.Redis, prefix: str, env: str, stamps: dict[str, float]) -> None:
    """Stamp last evaluations as the data plane does (``P:env:{id}:evaluated_at``, Unix seconds)."""
    with engine.connect() as conn:
        env_id = conn.execute(sa.select(Environment.id).where(Environment.key == env)).scalar_one()
    rds.hset(EnvKeys(prefix, str(env_id)).evaluated_at, mapping={k: int(v) for k, v in stamps.items()})


def _stale(client: TestClient, env: str = "prod", **params: Any) -> dict[str, list[str]]:
    r = client.get(f"/api/v1/projects/shop/environments/{env}/flags/stale", params=params)
    assert r.status_code == 200, r.text
    return {i["key"]: i["reasons"] for i in r.json()["items"]}


@pytest.fixture
def stale_world(
    client: TestClient, api: Api, engine: sa.Engine, redis_conn: redis.Redis, settings: Settings
) -> None:
    """Flags of every kind the report tells apart, all last changed 40 days ago but for ``fresh``."""
    api.project()
    api.flag(key="unused")
    api.flag(key="old_eval")
    api.flag(key="recent_eval")
    api.flag(key="permanent", kind="permanent", removal_date="2020-01-01")
    api.flag(key="overdue", removal_date="2020-01-01")
    api.flag(key="later", removal_date="2999-12-31")
    api.flag(key="gone")
    assert client.post(f"{BASE}/gone/archive", json={}).status_code == 200
    _age_versions(engine, 40)
    api.flag(key="fresh")
    now = time.time()
    _evaluated(
        engine,
        redis_conn,
        settings.redis_prefix,
        "prod",
        {"old_eval": now - 35 * DAY, "recent_eval": now - DAY, "overdue": now - DAY, "later": now - DAY},
    )


@pytest.mark.usefixtures("stale_world")
def test_stale__defaults__unused_temporary_and_overdue_flags_with_reasons(client: TestClient) -> None:
    assert _stale(client) == {
        "old_eval": ["not_evaluated", "not_changed"],
        "overdue": ["past_removal_date"],  # evaluated yesterday, listed anyway
        "unused": ["not_evaluated", "not_changed"],  # never evaluated
    }  # never: fresh (changed now), recent_eval, later, permanent (never stale), gone (archived)


@pytest.mark.usefixtures("stale_world")
def test_stale__thresholds_per_request(client: TestClient) -> None:
    assert set(_stale(client, evaluated_days=36)) == {"unused", "overdue"}  # old_eval: 35 days
    assert set(_stale(client, changed_days=41)) == {"overdue"}  # nothing changed 41 days ago
    assert set(_stale(client, evaluated_days=2, changed_days=1)) == {"unused", "old_eval", "overdue"}


@pytest.mark.usefixtures("stale_world")
def test_stale__item__carries_owner_kind_dates(client: TestClient) -> None:
    r = client.get("/api/v1/projects/shop/environments/prod/flags/stale", params={"limit": 500})
    overdue = next(i for i in r.json()["items"] if i["key"] == "overdue")

    assert (overdue["kind"], overdue["removal_date"], overdue["owner"]) == ("temporary", "2020-01-01", "")
    assert overdue["last_evaluated_at"] is not None
    assert (r.json()["evaluated_days"], r.json()["changed_days"]) == (30, 30)


@pytest.mark.usefixtures("stale_world")
def test_stale__per_environment__a_change_in_dev_only_freshens_dev(client: TestClient) -> None:
    r = client.post(f"{BASE}/unused/environments/dev/toggle", json={"enabled": True})
    assert r.status_code == 200, r.text

    assert "unused" not in _stale(client, "dev")
    assert "unused" in _stale(client, "prod")


@pytest.mark.usefixtures("stale_world")
def test_stale__pages__follow_next_cursor(client: TestClient) -> None:
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/projects/shop/environments/prod/flags/stale", params=params).json()
        seen += [i["key"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["old_eval", "overdue", "unused"]


@pytest.mark.parametrize(
    ("name", "value", "status"),
    [
        ("evaluated_days", 0, 422),
        ("evaluated_days", 3651, 422),
        ("changed_days", 0, 422),
        ("changed_days", 3651, 422),
        ("evaluated_days", 3650, 200),
        ("changed_days", 1, 200),
        ("limit", 501, 422),
    ],
)
def test_stale__bounds__enforced(client: TestClient, api: Api, name: str, value: int, status: int) -> None:
    api.project()

    r = client.get("/api/v1/projects/shop/environments/prod/flags/stale", params={name: value})

    assert r.status_code == status, r.text
    if status == 422:
        assert r.json()["details"][0]["path"] == f"/query/{name}" or name in r.text


def test_stale__unknown_environment__404(client: TestClient, api: Api) -> None:
    api.project()
    assert client.get("/api/v1/projects/shop/environments/nope/flags/stale").status_code == 404


@pytest.mark.usefixtures("stale_world")
def test_stale_gauge__counts_pairs_by_reason(settings: Settings) -> None:
    """A fresh app (the gauge keeps one computation a minute per process)."""
    with CheckedClient(create_app(settings), headers=auth(ADMIN_KEY)) as fresh:
        text = fresh.get("/metrics").text

    # Unused: in prod unused and old_eval; in dev (nothing evaluated there) unused, old_eval, recent_eval,
    # overdue and later. Past the removal date: overdue in both. Never: fresh, permanent, gone.
    assert 'flagyard_stale_flags{reason="not_evaluated"} 7.0' in text, text
    assert 'flagyard_stale_flags{reason="not_changed"} 7.0' in text
    assert 'flagyard_stale_flags{reason="past_removal_date"} 2.0' in text
    assert "project" not in next(
        line for line in text.splitlines() if line.startswith("flagyard_stale_flags")
    )


def test_evaluations_page__archived_flag__left_out(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    api.flag(key="live")
    assert client.post(f"{FLAG}/archive", json={}).status_code == 200

    usage = client.get("/api/v1/projects/shop/environments/prod/evaluations").json()

    assert [f["key"] for f in usage["flags"]] == ["live"]
