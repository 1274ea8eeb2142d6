"""Durability: a schedule survives a control plane killed with SIGKILL before its time, and the next
control plane applies it once; the syncer (a real worker process) carries the change to Redis.

Everything is a real process (uvicorn running ``app_from_env``, ``python -m flagyard.syncer worker``) over
the test PostgreSQL and Redis DB of ``FLAGYARD_TEST_REDIS_URL``, with a prefix and queue of their own.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
from cp_helpers import ADMIN_KEY, REDIS_URL
from polling_helpers import free_port, wait_until
from stack_helpers import Children, fresh_database, stack_env

from flagyard.contracts.redis import EnvKeys, parse_stored


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, Any]]:
    tag = uuid.uuid4().hex[:8]
    with fresh_database("sched_restart") as db_url:
        env = stack_env(
            db_url,
            REDIS_URL,
            prefix=f"fysched-{tag}",
            queue=f"flagyard-sync-sched-{tag}",
            scheduler_interval_seconds=0.2,
            outbox_relay_interval_seconds=1,
            outbox_grace_seconds=1,
        )
        children = Children(tmp_path)
        engine = sa.create_engine(db_url)
        conn = redis.Redis.from_url(REDIS_URL)
        try:
            yield {
                "env": env,
                "children": children,
                "engine": engine,
                "redis": conn,
                "prefix": f"fysched-{tag}",
            }
        finally:
            children.stop_all()
            engine.dispose()
            for key in conn.scan_iter(f"fysched-{tag}:*"):
                conn.delete(key)
            conn.close()


def _start_control_plane(stack: dict[str, Any], name: str, port: int) -> httpx.Client:
    stack["children"].start(
        name,
        stack["env"],
        "uvicorn",
        "--factory",
        "flagyard.control_plane.main:app_from_env",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-level",
        "warning",
    )
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=10
    )

    def ready() -> bool:
        stack["children"].check_alive(name)
        try:
            return client.get("/readyz").status_code == 200
        except httpx.TransportError:
            return False

    wait_until(ready, timeout=60, interval=0.1)
    return client


def _status(engine: sa.Engine, change_id: int) -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(
                sa.text("SELECT status FROM scheduled_changes WHERE id = :id"), {"id": change_id}
            ).scalar()
        )


def test_schedule__control_plane_sigkilled_before_its_time__applied_once_after_restart(
    stack: dict[str, Any],
) -> None:
    engine: sa.Engine = stack["engine"]
    first = _start_control_plane(stack, "control_plane_1", free_port())
    assert first.post("/api/v1/projects", json={"key": "shop", "name": "Shop"}).status_code == 201
    r = first.post("/api/v1/projects/shop/environments", json={"key": "prod", "name": "Prod"})
    assert r.status_code == 201
    env_id = r.json().get("id")
    flag = {"key": "checkout", "name": "Checkout", "type": "boolean", "variants": {"on": True, "off": False}}
    assert first.post("/api/v1/projects/shop/flags", json=flag).status_code == 201
    apply_at = datetime.now(UTC) + timedelta(seconds=4)
    r = first.post(
        "/api/v1/projects/shop/environments/prod/scheduled-changes",
        json={
            "kind": "toggle",
            "target": "checkout",
            "body": {"enabled": True},
            "apply_at": apply_at.isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    change_id = r.json()["id"]

    stack["children"].processes["control_plane_1"].kill()  # SIGKILL, well before its time
    stack["children"].processes["control_plane_1"].wait(10)
    first.close()
    # Its time passes with no control plane running: nothing applies it, nothing forgets it.
    time.sleep(max(0.0, (apply_at - datetime.now(UTC)).total_seconds()) + 1.0)
    assert _status(engine, change_id) == "pending"

    stack["children"].start("syncer", stack["env"], "flagyard.syncer", "worker")
    second = _start_control_plane(stack, "control_plane_2", free_port())
    wait_until(lambda: _status(engine, change_id) == "applied", timeout=30, interval=0.1)
    shown = second.get(f"/api/v1/projects/shop/environments/prod/scheduled-changes/{change_id}").json()
    assert shown["applied_version"] == 2
    assert second.get("/api/v1/projects/shop/flags/checkout/environments/prod").json()["enabled"] is True
    with engine.connect() as conn:
        actions = conn.execute(
            sa.text("SELECT resource_type, action FROM audit_log WHERE action IN ('toggled', 'applied')")
        ).all()
        env_id = env_id or conn.execute(sa.text("SELECT id FROM environments WHERE key = 'prod'")).scalar()
    assert sorted(tuple(a) for a in actions) == [("flag", "toggled"), ("scheduled_change", "applied")]
    # The change reaches Redis through the outbox and the syncer.
    keys = EnvKeys(stack["prefix"], str(env_id))

    def stored() -> Any:
        raw = stack["redis"].hget(keys.flags, "checkout")
        return parse_stored(raw) if raw else None

    synced = wait_until(
        lambda: (s := stored()) is not None and s.version == 2 and s, timeout=30, interval=0.1
    )
    assert synced.definition.get("enabled") is True
    # Once: a third pass (the second control plane keeps running) changes nothing.
    time.sleep(0.6)
    assert second.get("/api/v1/projects/shop/flags/checkout").json()["version"] == 2
    second.close()
