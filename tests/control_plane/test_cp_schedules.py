"""Scheduled changes on the real stack: REST resource, bounds, and the scheduler applying them once,
through the direct change's write path (version, audit naming the scheduling key, outbox), with the
three-way base check, failures recorded visibly, and several schedulers at once.

The scheduler is driven by :func:`run_once` with a chosen ``now`` (no sleeping); one test runs the real
thread.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from cp_helpers import REDIS_URL, Api, auth, rows
from fastapi import FastAPI
from fastapi.testclient import TestClient
from polling_helpers import wait_until
from pydantic import SecretStr
from rq import Queue
from stack_helpers import stack_env

from flagyard.control_plane import scheduler, schemas
from flagyard.control_plane.exceptions import InvalidRequestError
from flagyard.control_plane.scheduler import Outcome, Scheduler, run_once
from flagyard.control_plane.security import Role
from flagyard.control_plane.services import proposed, schedules
from flagyard.control_plane.services.common import Actor, Tx
from flagyard.db.engine import make_engine, make_sessionmaker

S = "/api/v1/projects/shop/environments/prod/scheduled-changes"
F = "/api/v1/projects/shop/flags/checkout"


def _at(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


def _later(seconds: float = 3600) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def _schedule(client: TestClient, **body: Any) -> dict[str, Any]:
    r = client.post(S, json={"apply_at": _at(60), **body})
    assert r.status_code == 201, r.text
    return dict(r.json())


def _run(app: FastAPI, now: datetime) -> list[Outcome]:
    state = app.state.flagyard
    return run_once(state.sessions, state.dispatcher, now=now, metrics=state.metrics)


def _applied_count(client: TestClient) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith('flagyard_scheduled_changes_applied_total{outcome="applied"}'):
            return float(line.split()[-1])
    raise AssertionError("no applied counter")


@pytest.fixture
def shop(api: Api) -> Api:
    api.project()
    api.flag()
    return api


# --- the resource ------------------------------------------------------------------------------


def test_create__toggle__pending_with_base_and_location(client: TestClient, shop: Api) -> None:
    r = client.post(
        S,
        json={"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "apply_at": _at(60)},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert r.headers["location"] == f"{S}/{body['id']}"
    assert body["status"] == "pending"
    assert body["base_version"] == 1
    assert body["body"] == {"enabled": True}
    assert body["failure"] is None
    assert body["applied_version"] is None
    # Nothing changed yet: the dry run was rolled back, no version, no outbox row.
    assert client.get(f"{F}/environments/prod").json()["enabled"] is False
    assert client.get(F).json()["version"] == 1


def test_list_show_cancel_reschedule(client: TestClient, shop: Api, engine: sa.Engine) -> None:
    a = _schedule(client, kind="toggle", target="checkout", body={"enabled": True})
    b = _schedule(client, kind="toggle", target="checkout", body={"enabled": False})
    listed = client.get(S).json()
    assert [x["id"] for x in listed["items"]] == [b["id"], a["id"]]
    assert client.get(f"{S}/{a['id']}").json() == a
    new_time = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    r = client.patch(f"{S}/{a['id']}", json={"apply_at": new_time.isoformat()})
    assert r.status_code == 200, r.text
    assert datetime.fromisoformat(r.json()["apply_at"]) == new_time
    r = client.post(f"{S}/{b['id']}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    assert [x["id"] for x in client.get(S, params={"status": "pending"}).json()["items"]] == [a["id"]]
    assert [x["id"] for x in client.get(S, params={"status": "cancelled"}).json()["items"]] == [b["id"]]
    # Only a pending change can move or be cancelled again.
    assert client.post(f"{S}/{b['id']}/cancel").status_code == 409
    assert client.patch(f"{S}/{b['id']}", json={"apply_at": _at(100)}).status_code == 409
    actions = rows(
        engine,
        "SELECT action FROM audit_log WHERE resource_type = 'scheduled_change' ORDER BY id",
    )
    assert [r.action for r in actions] == ["scheduled", "scheduled", "rescheduled", "cancelled"]
    # A cancelled change is never applied.
    assert _run(client.app, _later(3 * 86400))[0].id == a["id"]  # type: ignore[arg-type]
    assert client.get(f"{S}/{b['id']}").json()["status"] == "cancelled"


def test_list__pages(client: TestClient, shop: Api) -> None:
    ids = [
        _schedule(client, kind="toggle", target="checkout", body={"enabled": True})["id"] for _ in range(3)
    ]
    page = client.get(S, params={"limit": 2}).json()
    assert [x["id"] for x in page["items"]] == ids[:0:-1]
    rest = client.get(S, params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [x["id"] for x in rest["items"]] == [ids[0]]
    assert rest["next_cursor"] is None


def test_unknown_change_and_other_environment__404(client: TestClient, shop: Api) -> None:
    a = _schedule(client, kind="toggle", target="checkout", body={"enabled": True})
    assert client.get(f"{S}/999").status_code == 404
    other = S.replace("/prod/", "/dev/")
    assert client.get(f"{other}/{a['id']}").status_code == 404
    assert client.get(S.replace("/prod/", "/nope/")).status_code == 404


def test_create__idempotency_key_replays(client: TestClient, shop: Api) -> None:
    body = {"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "apply_at": _at(60)}
    first = client.post(S, json=body, headers={"Idempotency-Key": "sched-1"})
    again = client.post(S, json=body, headers={"Idempotency-Key": "sched-1"})
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert len(client.get(S).json()["items"]) == 1


# --- checked when made: bounds and the change's own validation ---------------------------------


@pytest.mark.parametrize(
    ("apply_at", "why"),
    [
        ("2026-12-07T12:00:00", "naive"),
        ("2000-01-01T00:00:00Z", "past"),
        ("2100-01-01T00:00:00Z", "far future"),
        ("not a time", "garbage"),
    ],
)
def test_create__bad_apply_at__422(client: TestClient, shop: Api, apply_at: str, why: str) -> None:
    r = client.post(
        S, json={"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "apply_at": apply_at}
    )
    assert r.status_code == 422, why
    assert [d["path"] for d in r.json()["details"]] == ["/apply_at"]


def test_create__at_the_lead_bound_accepted_just_beyond_refused(client: TestClient, shop: Api) -> None:
    base = {"kind": "toggle", "target": "checkout", "body": {"enabled": True}}
    ok = datetime.now(UTC) + schedules.MAX_LEAD - timedelta(minutes=1)
    assert client.post(S, json={**base, "apply_at": ok.isoformat()}).status_code == 201
    beyond = datetime.now(UTC) + schedules.MAX_LEAD + timedelta(minutes=1)
    assert client.post(S, json={**base, "apply_at": beyond.isoformat()}).status_code == 422


def test_create__invalid_body__422_pointer_under_body(client: TestClient, shop: Api) -> None:
    r = client.post(
        S,
        json={"kind": "toggle", "target": "checkout", "body": {"enabled": "maybe"}, "apply_at": _at(60)},
    )
    assert r.status_code == 422
    assert [d["path"] for d in r.json()["details"]] == ["/body/enabled"]
    r = client.post(
        S,
        json={"kind": "env_config", "target": "checkout", "body": {"nope": 1}, "apply_at": _at(60)},
    )
    assert r.status_code == 422
    assert [d["path"] for d in r.json()["details"]] == ["/body/nope"]


def test_create__semantically_invalid_change__422_from_the_write_path(client: TestClient, shop: Api) -> None:
    """The rule engine's validation (an undeclared variant) answers as for a direct PATCH, under /body."""
    r = client.post(
        S,
        json={
            "kind": "env_config",
            "target": "checkout",
            "body": {"default_variant": "purple"},
            "apply_at": _at(60),
        },
    )
    assert r.status_code == 422, r.text
    assert all(d["path"].startswith("/body/default_variant") for d in r.json()["details"])
    assert client.get(S).json()["items"] == []


def test_create__unknown_target_or_version__404(client: TestClient, shop: Api) -> None:
    base = {"apply_at": _at(60)}
    assert (
        client.post(
            S, json={**base, "kind": "toggle", "target": "ghost", "body": {"enabled": True}}
        ).status_code
        == 404
    )
    assert (
        client.post(
            S, json={**base, "kind": "rollback", "target": "checkout", "body": {"version": 9}}
        ).status_code
        == 404
    )
    assert (
        client.post(S, json={**base, "kind": "segment", "target": "ghost", "body": {"name": "x"}}).status_code
        == 404
    )


def test_create__reader_403_and_other_project_key_403(client: TestClient, shop: Api) -> None:
    body = {"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "apply_at": _at(60)}
    reader = shop.key("reader")
    assert client.post(S, json=body, headers=auth(reader)).status_code == 403
    shop.project("other", envs=("prod",))
    scoped = shop.key("writer", project="other")
    assert client.post(S, json=body, headers=auth(scoped)).status_code == 403
    assert client.get(S, headers=auth(reader)).status_code == 200


def test_create__huge_body__413(client: TestClient, shop: Api) -> None:
    body = {
        "kind": "segment",
        "target": "beta",
        "body": {"included": ["u" * 100] * 50_000},
        "apply_at": _at(60),
    }
    assert client.post(S, json=body).status_code == 413


def test_create__cap_of_pending_per_environment(client: TestClient, shop: Api, engine: sa.Engine) -> None:
    """The real bound: 999 pending rows (written directly, like ones scheduled earlier), one more through
    the API fits, the next is refused; other statuses and other environments do not count."""
    cap = schedules.MAX_PENDING_PER_ENVIRONMENT
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO scheduled_changes (project_id, environment_id, kind, target_key, payload, payload_bytes, apply_at,"
                " status, base_version, base, created_by_key_id, created_by_key_prefix)"
                " SELECT e.project_id, e.id, 'toggle', 'checkout', '{\"enabled\": true}', 16,"
                " now() + interval '1 day', CASE WHEN n <= :pending THEN 'pending' ELSE 'cancelled' END,"
                " 1, '{}', 1, 'fy_admin_x' FROM environments e, generate_series(1, :total) n WHERE e.key = 'prod'"
            ),
            {"pending": cap - 1, "total": cap + 50},
        )
    body = {"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "apply_at": _at(60)}
    assert client.post(S, json=body).status_code == 201
    r = client.post(S, json=body)
    assert r.status_code == 422
    assert "MAX_PENDING_PER_ENVIRONMENT" in r.json()["message"]
    assert client.post(S.replace("/prod/", "/dev/"), json=body).status_code == 201
    first = rows(engine, "SELECT min(id) AS id FROM scheduled_changes WHERE status = 'pending'")[0].id
    assert client.post(f"{S}/{first}/cancel").status_code == 200
    assert client.post(S, json=body).status_code == 201


def test_expired_key_without_successor__fails_unauthenticated(
    client: TestClient, shop: Api, engine: sa.Engine
) -> None:
    writer = shop.key("writer")
    change = client.post(
        S,
        json={"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "apply_at": _at(60)},
        headers=auth(writer),
    ).json()
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE api_keys SET expires_at = now() + interval '30 seconds' WHERE id = :id"),
            {"id": change["created_by_key_id"]},
        )
    [outcome] = _run(client.app, _later(61))  # type: ignore[arg-type]
    assert outcome.status == "failed"
    assert outcome.failure_code == "unauthenticated"
    assert "expired" in (outcome.failure_message or "")


# --- applied at T ------------------------------------------------------------------------------


def test_apply__toggle_at_time__version_audit_outbox_once(
    client: TestClient, shop: Api, engine: sa.Engine, redis_conn: redis.Redis
) -> None:
    writer = shop.key("writer", project="shop")
    applied_before = _applied_count(client)
    r = client.post(
        S,
        json={
            "kind": "toggle",
            "target": "checkout",
            "body": {"enabled": True},
            "apply_at": _at(60),
            "comment": "launch",
        },
        headers=auth(writer),
    )
    assert r.status_code == 201, r.text
    change = r.json()
    # Not yet due: nothing happens.
    assert _run(client.app, datetime.now(UTC)) == []  # type: ignore[arg-type]
    assert client.get(f"{F}/environments/prod").json()["enabled"] is False
    redis_conn.flushdb()
    outcomes = _run(client.app, _later(61))  # type: ignore[arg-type]
    assert [(o.id, o.status, o.version) for o in outcomes] == [(change["id"], "applied", 2)]
    assert client.get(f"{F}/environments/prod").json()["enabled"] is True
    shown = client.get(f"{S}/{change['id']}").json()
    assert shown["status"] == "applied"
    assert shown["applied_version"] == 2
    assert shown["applied_at"]
    # The version and the audit entry name the key that scheduled it.
    version = client.get(f"{F}/versions/2").json()
    assert version["author_key_id"] == change["created_by_key_id"]
    assert version["action"] == "toggled"
    assert version["comment"] == f"scheduled change #{change['id']}: launch"
    audit = rows(
        engine,
        "SELECT resource_type, action, actor_key_id, request_id, comment FROM audit_log "
        "WHERE version = 2 ORDER BY id",
    )
    assert sorted((a.resource_type, a.action, a.actor_key_id) for a in audit) == [
        ("flag", "toggled", change["created_by_key_id"]),
        ("scheduled_change", "applied", change["created_by_key_id"]),
    ]
    assert {a.request_id for a in audit} == {f"scheduled-change-{change['id']}"}
    # One outbox row for prod at version 2, queued as a sync job.
    outbox = rows(engine, "SELECT entity_key, version, enqueued_at FROM outbox WHERE version = 2")
    assert [(o.entity_key, o.version) for o in outbox] == [("checkout", 2)]
    assert outbox[0].enqueued_at is not None
    assert Queue("flagyard-sync", connection=redis_conn).count == 1
    # Once: later passes find nothing to do.
    assert _run(client.app, _later(3600)) == []  # type: ignore[arg-type]
    assert client.get(F).json()["version"] == 2
    assert _applied_count(client) == applied_before + 1


def test_apply__in_time_order(client: TestClient, shop: Api) -> None:
    late = client.post(
        S, json={"kind": "toggle", "target": "checkout", "body": {"enabled": False}, "apply_at": _at(120)}
    ).json()
    early = client.post(
        S, json={"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "apply_at": _at(60)}
    ).json()
    outcomes = _run(client.app, _later(200))  # type: ignore[arg-type]
    # The later one finds `enabled` changed (by the earlier one) since it was scheduled: a conflict.
    assert [(o.id, o.status) for o in outcomes] == [(early["id"], "applied"), (late["id"], "failed")]


def test_apply__env_config_segment_and_rollbacks(client: TestClient, shop: Api) -> None:
    shop.segment()
    assert client.post(f"{F}/environments/prod/toggle", json={"enabled": True}).status_code == 200  # v2
    _schedule(client, kind="env_config", target="checkout", body={"default_variant": "on"})
    _schedule(client, kind="segment", target="beta", body={"included": ["u1", "u2"]})
    outcomes = _run(client.app, _later(61))  # type: ignore[arg-type]
    assert [o.status for o in outcomes] == ["applied", "applied"]
    assert client.get(f"{F}/environments/prod").json()["default_variant"] == "on"
    assert client.get("/api/v1/projects/shop/segments/beta").json()["included"] == ["u1", "u2"]
    flag_version = client.get(F).json()["version"]
    _schedule(client, kind="rollback", target="checkout", body={"version": 1})
    _schedule(client, kind="segment_rollback", target="beta", body={"version": 1})
    outcomes = _run(client.app, _later(61))  # type: ignore[arg-type]
    assert [o.status for o in outcomes] == ["applied", "applied"]
    prod = client.get(f"{F}/environments/prod").json()
    assert prod["enabled"] is False
    assert prod["default_variant"] is None
    assert client.get(F).json()["version"] == flag_version + 1
    assert client.get("/api/v1/projects/shop/segments/beta").json()["included"] == ["u1"]


# --- the base moved ----------------------------------------------------------------------------


def test_base_moved__other_field__applies_cleanly(client: TestClient, shop: Api) -> None:
    change = _schedule(client, kind="toggle", target="checkout", body={"enabled": True})
    etag = shop.etag(f"{F}/environments/prod")
    r = client.patch(f"{F}/environments/prod", json={"default_variant": "off"}, headers={"If-Match": etag})
    assert r.status_code == 200
    [outcome] = _run(client.app, _later(61))  # type: ignore[arg-type]
    assert outcome.status == "applied"
    assert outcome.id == change["id"]
    prod = client.get(f"{F}/environments/prod").json()
    assert prod["enabled"] is True
    assert prod["default_variant"] == "off"


def test_base_moved__same_field__fails_with_conflict_never_overwrites(
    client: TestClient, shop: Api, engine: sa.Engine
) -> None:
    change = _schedule(client, kind="env_config", target="checkout", body={"default_variant": "on"})
    etag = shop.etag(f"{F}/environments/prod")
    r = client.patch(f"{F}/environments/prod", json={"default_variant": "off"}, headers={"If-Match": etag})
    assert r.status_code == 200
    version = client.get(F).json()["version"]
    [outcome] = _run(client.app, _later(61))  # type: ignore[arg-type]
    assert outcome.status == "failed"
    assert outcome.failure_code == "conflict"
    assert client.get(f"{F}/environments/prod").json()["default_variant"] == "off"
    assert client.get(F).json()["version"] == version
    shown = client.get(f"{S}/{change['id']}").json()
    assert shown["status"] == "failed"
    assert shown["failure"]["code"] == "conflict"
    assert [d["path"] for d in shown["failure"]["details"]] == ["/environments/prod/default_variant"]
    audit = rows(
        engine,
        "SELECT action, actor_key_id FROM audit_log WHERE resource_type = 'scheduled_change' "
        "AND resource_key = :id ORDER BY id",
        id=str(change["id"]),
    )
    assert [(a.action, a.actor_key_id) for a in audit] == [("scheduled", 1), ("failed", 1)]
    # No outbox row beyond the direct change's.
    assert rows(engine, "SELECT count(*) AS n FROM outbox WHERE version > :v", v=version)[0].n == 0


def test_base_moved__rollback_conflicts_when_any_field_it_writes_changed(
    client: TestClient, shop: Api
) -> None:
    assert client.post(f"{F}/environments/prod/toggle", json={"enabled": True}).status_code == 200  # v2
    _schedule(client, kind="rollback", target="checkout", body={"version": 1})
    assert client.post(f"{F}/environments/prod/toggle", json={"enabled": False}).status_code == 200
    assert client.post(f"{F}/environments/prod/toggle", json={"enabled": True}).status_code == 200
    # `enabled` is back to its value at the base: the rollback still applies cleanly.
    [outcome] = _run(client.app, _later(61))  # type: ignore[arg-type]
    assert outcome.status == "applied"
    assert client.get(f"{F}/environments/prod").json()["enabled"] is False
    assert client.post(f"{F}/environments/prod/toggle", json={"enabled": True}).status_code == 200
    change = _schedule(client, kind="rollback", target="checkout", body={"version": 1})
    etag = shop.etag(F)
    assert client.patch(F, json={"name": "Renamed"}, headers={"If-Match": etag}).status_code == 200
    # A rollback rewrites the whole flag, the name too: it would overwrite the rename, so it fails.
    [outcome] = _run(client.app, _later(61))  # type: ignore[arg-type]
    assert outcome.status == "failed"
    assert outcome.failure_code == "conflict"
    assert client.get(F).json()["name"] == "Renamed"
    assert client.get(f"{F}/environments/prod").json()["enabled"] is True
    failure = client.get(f"{S}/{change['id']}").json()["failure"]
    assert [d["path"] for d in failure["details"]] == ["/name"]


# --- failures at T -----------------------------------------------------------------------------


def test_validation_failure_at_time__failed_with_the_servers_issues(client: TestClient, shop: Api) -> None:
    shop.segment()
    change = _schedule(
        client,
        kind="env_config",
        target="checkout",
        body={
            "rules": [
                {"id": "r", "clauses": [{"operator": "segment_match", "values": ["beta"]}], "variant": "on"}
            ]
        },
    )
    etag = shop.etag("/api/v1/projects/shop/segments/beta")
    r = client.delete("/api/v1/projects/shop/segments/beta", headers={"If-Match": etag})
    assert r.status_code == 204, r.text
    [outcome] = _run(client.app, _later(61))  # type: ignore[arg-type]
    assert outcome.status == "failed"
    assert outcome.failure_code == "validation_error"
    failure = client.get(f"{S}/{change['id']}").json()["failure"]
    assert failure["details"]
    assert all(d["path"].startswith("/rules") for d in failure["details"])
    assert client.get(f"{F}/environments/prod").json()["rules"] == []


def test_revoked_key__fails_visibly(client: TestClient, shop: Api, engine: sa.Engine) -> None:
    writer = shop.key("writer")
    r = client.post(
        S,
        json={"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "apply_at": _at(60)},
        headers=auth(writer),
    )
    change = r.json()
    assert client.delete(f"/api/v1/api-keys/{change['created_by_key_id']}").status_code in (200, 204)
    [outcome] = _run(client.app, _later(61))  # type: ignore[arg-type]
    assert outcome.status == "failed"
    assert outcome.failure_code == "unauthenticated"
    assert client.get(f"{F}/environments/prod").json()["enabled"] is False
    audit = rows(
        engine,
        "SELECT action, actor_key_id FROM audit_log WHERE resource_type = 'scheduled_change' ORDER BY id",
    )
    assert [(a.action, a.actor_key_id) for a in audit] == [
        ("scheduled", change["created_by_key_id"]),
        ("failed", change["created_by_key_id"]),
    ]


def test_rotated_key__its_replacement_acts(client: TestClient, shop: Api, engine: sa.Engine) -> None:
    writer = shop.key("writer")
    change = client.post(
        S,
        json={"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "apply_at": _at(60)},
        headers=auth(writer),
    ).json()
    old = change["created_by_key_id"]
    r = client.post(f"/api/v1/api-keys/{old}/rotate", json={"overlap_seconds": 0})
    assert r.status_code == 201, r.text
    new = r.json()["id"]
    [outcome] = _run(client.app, _later(61))  # type: ignore[arg-type]
    assert outcome.status == "applied"
    assert client.get(f"{F}/versions/2").json()["author_key_id"] == new


# --- concurrency -------------------------------------------------------------------------------


def test_two_schedulers__each_change_applied_exactly_once(
    client: TestClient, shop: Api, engine: sa.Engine
) -> None:
    for n in range(6):
        shop.flag(key=f"f{n}")
        _schedule(client, kind="toggle", target=f"f{n}", body={"enabled": True})
    state = client.app.state.flagyard  # type: ignore[attr-defined]
    results: list[list[Outcome]] = []
    barrier = threading.Barrier(2)

    def work() -> None:
        barrier.wait()
        results.append(run_once(state.sessions, state.dispatcher, now=_later(61)))

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    applied = sorted(o.id for r in results for o in r)
    assert applied == list(range(1, 7))  # every change once, by one of the two
    assert all(o.status == "applied" for r in results for o in r)
    versions = rows(engine, "SELECT key, version FROM flags WHERE key LIKE 'f%' ORDER BY key")
    assert [v.version for v in versions] == [2] * 6
    audit = rows(engine, "SELECT count(*) AS n FROM audit_log WHERE action = 'toggled'")
    assert audit[0].n == 6


def test_reschedule_while_applying_waits_then_409(client: TestClient, shop: Api, engine: sa.Engine) -> None:
    change = _schedule(client, kind="toggle", target="checkout", body={"enabled": True})
    state = client.app.state.flagyard  # type: ignore[attr-defined]
    with state.sessions() as session:
        claimed = schedules.claim(session, _later(61))
        assert claimed is not None
        assert claimed.row.id == change["id"]
        # Another scheduler skips the locked row.
        assert run_once(state.sessions, state.dispatcher, now=_later(61)) == []
        session.rollback()
    [outcome] = _run(client.app, _later(61))  # type: ignore[arg-type]
    assert outcome.status == "applied"
    assert client.patch(f"{S}/{change['id']}", json={"apply_at": _at(300)}).status_code == 409


# --- the real thread ---------------------------------------------------------------------------


def test_scheduler_thread_applies_a_due_change(client: TestClient, shop: Api) -> None:
    change = _schedule(client, kind="toggle", target="checkout", body={"enabled": True})
    seen: list[Outcome] = []
    scheduler.OUTCOME_HOOKS.append(seen.append)
    state = client.app.state.flagyard  # type: ignore[attr-defined]
    # Due now (as if its time passed): the thread runs with the real clock.
    with state.sessions() as session, session.begin():
        session.execute(
            sa.text("UPDATE scheduled_changes SET apply_at = now() - interval '1 second' WHERE id = :id"),
            {"id": change["id"]},
        )
    thread = Scheduler(state.sessions, state.dispatcher, interval=0.05)
    thread.start()
    try:
        wait_until(lambda: client.get(f"{S}/{change['id']}").json()["status"] == "applied", timeout=10)
    finally:
        thread.stop()
        scheduler.OUTCOME_HOOKS.remove(seen.append)
    assert [(o.id, o.status) for o in seen] == [(change["id"], "applied")]
    assert client.get(f"{F}/environments/prod").json()["enabled"] is True


def test_metrics__pending_and_overdue_gauge(client: TestClient, shop: Api) -> None:
    _schedule(client, kind="toggle", target="checkout", body={"enabled": True})
    text = client.get("/metrics").text
    assert 'flagyard_scheduled_changes{state="pending"} 1.0' in text
    assert 'flagyard_scheduled_changes{state="overdue"} 0.0' in text


def test_audit__filter_by_scheduled_change(client: TestClient, shop: Api) -> None:
    change = _schedule(client, kind="toggle", target="checkout", body={"enabled": True}, comment="at launch")
    _run(client.app, _later(61))  # type: ignore[arg-type]
    r = client.get("/api/v1/projects/shop/audit", params={"resource_type": "scheduled_change"})
    assert r.status_code == 200, r.text
    entries = r.json()["items"]
    assert sorted(e["action"] for e in entries) == ["applied", "scheduled"]
    assert {e["resource_key"] for e in entries} == {str(change["id"])}
    assert {e["environment"] for e in entries} == {"prod"}


def test_standalone_scheduler_once__applies_what_is_due(
    client: TestClient, shop: Api, engine: sa.Engine, db_url: str
) -> None:
    """``python -m flagyard.control_plane.scheduler --once`` as its own process (as an operator runs it
    when the in-app thread is disabled)."""
    change = _schedule(client, kind="toggle", target="checkout", body={"enabled": True})
    assert client.patch(f"{S}/{change['id']}", json={"apply_at": "2000-01-01T00:00:00Z"}).status_code == 422
    with engine.begin() as conn:
        conn.execute(
            sa.text("UPDATE scheduled_changes SET apply_at = now() - interval '1 second' WHERE id = :id"),
            {"id": change["id"]},
        )
    env = stack_env(
        db_url, REDIS_URL, prefix="fysched-once", queue="flagyard-sync-sched-once", log_level="INFO"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "flagyard.control_plane.scheduler", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [
        (e["event"], e["id"], e["version"]) for e in events if e["event"].startswith("scheduled_change")
    ] == [("scheduled_change.applied", change["id"], 2)]
    assert client.get(f"{S}/{change['id']}").json()["status"] == "applied"
    assert client.get(f"{F}/environments/prod").json()["enabled"] is True


def test_create__concurrent_at_the_cap__only_one_passes(
    client: TestClient, shop: Api, engine: sa.Engine
) -> None:
    """The first creation holds its transaction open at 1,000 pending; a second one started meanwhile waits
    on the environment's lock and then counts it: refused (without the lock both would pass)."""
    cap = schedules.MAX_PENDING_PER_ENVIRONMENT
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO scheduled_changes (project_id, environment_id, kind, target_key, payload, payload_bytes, apply_at,"
                " status, base_version, base, created_by_key_id, created_by_key_prefix)"
                " SELECT e.project_id, e.id, 'toggle', 'checkout', '{}', 2, now() + interval '1 day', 'pending',"
                " 1, '{}', 1, 'fy_admin_x' FROM environments e, generate_series(1, :n) WHERE e.key = 'prod'"
            ),
            {"n": cap - 1},
        )
    state = client.app.state.flagyard  # type: ignore[attr-defined]
    actor = Actor(1, "fy_admin_dev", Role.ADMIN, None)
    body = schemas.ScheduledChangeCreate.model_validate(
        {"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "apply_at": _at(60)}
    )
    first_done, release = threading.Event(), threading.Event()
    errors: dict[str, BaseException | None] = {}

    def create(name: str, hold: bool) -> None:
        try:
            with state.sessions() as session:
                tx = Tx(session, actor)
                schedules.create_change(tx, "shop", "prod", body)
                if hold:
                    first_done.set()
                    release.wait(10)
                tx.run_deferred()
                session.commit()
            errors[name] = None
        except Exception as exc:
            errors[name] = exc

    first = threading.Thread(target=create, args=("first", True))
    first.start()
    assert first_done.wait(10)
    second = threading.Thread(target=create, args=("second", False))
    second.start()
    second.join(0.5)
    release.set()
    first.join(10)
    second.join(10)
    assert errors["first"] is None
    assert isinstance(errors["second"], InvalidRequestError)
    assert rows(engine, "SELECT count(*) AS n FROM scheduled_changes WHERE status = 'pending'")[0].n == cap


def test_flag_deleted_before_time__fails_not_found(client: TestClient, shop: Api) -> None:
    change = _schedule(client, kind="toggle", target="checkout", body={"enabled": True})
    assert client.delete(F, headers={"If-Match": shop.etag(F)}).status_code == 204
    [outcome] = _run(client.app, _later(61))  # type: ignore[arg-type]
    assert (outcome.id, outcome.status, outcome.failure_code) == (change["id"], "failed", "not_found")
    assert client.get(f"{S}/{change['id']}").json()["failure"]["code"] == "not_found"


def test_environment_deleted__its_schedules_go_with_it(
    client: TestClient, shop: Api, engine: sa.Engine
) -> None:
    _schedule(client, kind="toggle", target="checkout", body={"enabled": True})
    env = "/api/v1/projects/shop/environments/prod"
    assert client.delete(env, headers={"If-Match": shop.etag(env)}).status_code == 204
    assert rows(engine, "SELECT count(*) AS n FROM scheduled_changes")[0].n == 0
    assert _run(client.app, _later(61)) == []  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["env_config", "segment"])
def test_create__empty_body__422(client: TestClient, shop: Api, kind: str) -> None:
    shop.segment()
    target = "beta" if kind == "segment" else "checkout"
    r = client.post(S, json={"kind": kind, "target": target, "body": {"comment": "x"}, "apply_at": _at(60)})
    assert r.status_code == 422
    assert [d["path"] for d in r.json()["details"]] == ["/body"]


@pytest.mark.parametrize("fault", ["bug", "refused statement"])
def test_unexpected_error__fails_visibly_and_holds_up_nothing(
    client: TestClient, shop: Api, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    """A change that crashes (a bug, or a statement PostgreSQL refuses: division by zero) is failed with
    internal_error instead of being retried each pass ahead of every later change."""
    shop.flag(key="other")
    broken = _schedule(client, kind="toggle", target="checkout", body={"enabled": True})
    later = client.post(
        S, json={"kind": "toggle", "target": "other", "body": {"enabled": True}, "apply_at": _at(90)}
    ).json()
    real_run = proposed.run

    def crashing(tx: Any, project: str, env: str, kind: str, key: str, body: Any) -> Any:
        if key == "checkout":
            if fault == "bug":
                raise RuntimeError("boom")
            tx.session.execute(sa.text("SELECT 1 / 0"))
        return real_run(tx, project, env, kind, key, body)

    monkeypatch.setattr(proposed, "run", crashing)
    outcomes = _run(client.app, _later(120))  # type: ignore[arg-type]
    assert [(o.id, o.status, o.failure_code) for o in outcomes] == [
        (broken["id"], "failed", "internal_error"),
        (later["id"], "applied", None),
    ]
    assert client.get(f"{F}/environments/prod").json()["enabled"] is False
    assert client.get(F).json()["version"] == 1


def test_scheduler_thread__database_unreachable__keeps_running(settings: Any) -> None:
    """PostgreSQL down: each pass fails (logged), the thread goes on and stops on request."""
    down = settings.model_copy(
        update={
            "database_url": SecretStr("postgresql+psycopg://postgres@127.0.0.1:1/flagyard"),
            "db_connect_timeout_seconds": 1,
        }
    )
    engine = make_engine(down)
    sessions = make_sessionmaker(engine)
    with pytest.raises(sa.exc.OperationalError):
        run_once(sessions, None)
    thread = Scheduler(sessions, None, interval=0.05)
    thread.start()
    try:
        time.sleep(0.3)
        assert thread._thread.is_alive()
    finally:
        thread.stop()
        engine.dispose()
    assert not thread._thread.is_alive()


def test_create__pending_bytes_bound_per_environment(
    client: TestClient, shop: Api, engine: sa.Engine
) -> None:
    """Pending bodies that together reach MAX_PENDING_BYTES_PER_ENVIRONMENT (a row declaring its size, as
    a big segment body would) leave room only for what fits."""
    shop.segment()
    room = 100
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO scheduled_changes (project_id, environment_id, kind, target_key, payload, payload_bytes,"
                " apply_at, base_version, base, created_by_key_id, created_by_key_prefix)"
                " SELECT e.project_id, e.id, 'segment', 'beta', '{}', :size, now() + interval '1 day', 1, '{}', 1,"
                " 'fy_admin_x' FROM environments e WHERE e.key = 'prod'"
            ),
            {"size": schedules.MAX_PENDING_BYTES_PER_ENVIRONMENT - room},
        )
    small = {"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "apply_at": _at(60)}
    assert client.post(S, json=small).status_code == 201  # 16 bytes fit
    big = {"kind": "segment", "target": "beta", "body": {"included": ["u" * 200]}, "apply_at": _at(60)}
    r = client.post(S, json=big)
    assert r.status_code == 422
    assert "MAX_PENDING_BYTES_PER_ENVIRONMENT" in r.json()["message"]
    assert r.json()["details"][0]["path"] == "/body"
    assert client.post(S.replace("/prod/", "/dev/"), json=big).status_code == 201
    stored = rows(engine, "SELECT payload_bytes FROM scheduled_changes WHERE kind = 'toggle'")
    assert [r.payload_bytes for r in stored] == [len('{"enabled":true}')]
