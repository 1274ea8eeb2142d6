"""GET .../environments/{env}/propagation: PostgreSQL's committed state against what Redis and the data
planes hold (the syncer runs in process over the same database and Redis; data-plane reports are written
with the contract's own writer, as a data plane writes them)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest
import redis
import redis.asyncio
import sqlalchemy as sa
from cp_helpers import REDIS_URL, Api, auth
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from flagyard.contracts.redis import EnvKeys, report_served
from flagyard.control_plane.settings import Settings
from flagyard.syncer.core import Syncer

P = "/api/v1/projects"
PROD = f"{P}/shop/environments/prod/propagation"


@pytest.fixture
def syncer(engine: sa.Engine, redis_conn: redis.Redis, settings: Settings) -> Syncer:
    return Syncer(sessionmaker(engine), redis_conn, settings.redis_prefix)


def env_id(engine: sa.Engine, key: str = "prod") -> str:
    with engine.connect() as conn:
        return str(
            conn.execute(sa.text("SELECT id FROM environments WHERE key = :k"), {"k": key}).scalar_one()
        )


def report(settings: Settings, instance: str, revisions: Mapping[str, int], *, age: float = 0.0) -> None:
    async def write() -> None:
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            now_ms = int((time.time() - age) * 1000)
            await report_served(client, settings.redis_prefix, instance, revisions, now_ms=now_ms)
        finally:
            await client.aclose()

    asyncio.run(write())


def propagation(client: TestClient, path: str = PROD, **kwargs: Any) -> dict[str, Any]:
    r = client.get(path, **kwargs)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_propagation__before_and_after_the_syncer__stored_revision_catches_up(
    client: TestClient, api: Api, syncer: Syncer
) -> None:
    api.project(envs=("prod",))
    api.flag(key="checkout")
    api.segment(key="beta")
    before = propagation(client)
    assert before == {
        "environment": "prod",
        "revision": 2,  # one flag and one segment for the syncer to write
        "stored_revision": None,
        "data_planes": [],
        "in_sync": False,
    }
    syncer.reconcile()
    after = propagation(client)
    assert (after["revision"], after["stored_revision"], after["in_sync"]) == (2, 2, True)

    r = client.post(f"{P}/shop/flags/checkout/environments/prod/toggle", json={"enabled": True})
    assert r.status_code == 200, r.text
    pending = propagation(client)
    assert (pending["revision"], pending["stored_revision"], pending["in_sync"]) == (3, 2, False)
    syncer.reconcile()
    synced = propagation(client)
    assert (synced["revision"], synced["stored_revision"], synced["in_sync"]) == (3, 3, True)


def test_propagation__deleted_flag_still_in_redis__is_pending(
    client: TestClient, api: Api, syncer: Syncer
) -> None:
    api.project(envs=("prod",))
    api.flag(key="checkout")
    syncer.reconcile()
    r = client.delete(f"{P}/shop/flags/checkout", headers={"If-Match": api.etag(f"{P}/shop/flags/checkout")})
    assert r.status_code == 204, r.text
    assert propagation(client)["revision"] == 2
    syncer.reconcile()
    synced = propagation(client)
    assert (synced["revision"], synced["stored_revision"], synced["in_sync"]) == (2, 2, True)


def test_propagation__empty_environment__in_sync_with_nothing_stored(client: TestClient, api: Api) -> None:
    api.project(envs=("prod",))
    body = propagation(client)
    assert (body["revision"], body["stored_revision"], body["in_sync"]) == (0, None, True)


def test_propagation__data_planes__listed_and_lagging_one_breaks_the_sync(
    client: TestClient, api: Api, syncer: Syncer, engine: sa.Engine, settings: Settings
) -> None:
    api.project(envs=("prod",))
    api.flag(key="checkout")
    syncer.reconcile()
    prod = env_id(engine)
    report(settings, "dp-b", {prod: 1})
    report(settings, "dp-a", {prod: 0})
    body = propagation(client)
    assert [(d["id"], d["revision"]) for d in body["data_planes"]] == [("dp-a", 0), ("dp-b", 1)]
    assert body["in_sync"] is False
    report(settings, "dp-a", {prod: 1})
    body = propagation(client)
    assert body["in_sync"] is True
    assert all(abs(time.time() - _stamp(d["reported_at"])) < 10 for d in body["data_planes"])


def test_propagation__stale_and_malformed_reports__ignored(
    client: TestClient,
    api: Api,
    syncer: Syncer,
    engine: sa.Engine,
    settings: Settings,
    redis_conn: redis.Redis,
) -> None:
    api.project(envs=("prod",))
    api.flag(key="checkout")
    syncer.reconcile()
    prod = env_id(engine)
    report(settings, "dp-old", {prod: 0}, age=31)
    redis_conn.hset(EnvKeys(settings.redis_prefix, prod).served, "dp-garbage", "not-a-report")
    report(settings, "dp-live", {prod: 1})
    body = propagation(client)
    assert [d["id"] for d in body["data_planes"]] == ["dp-live"]
    assert body["in_sync"] is True


def test_propagation__more_than_100_data_planes__lists_100_but_counts_every_one(
    client: TestClient, api: Api, syncer: Syncer, engine: sa.Engine, settings: Settings
) -> None:
    api.project(envs=("prod",))
    api.flag(key="checkout")
    syncer.reconcile()
    prod = env_id(engine)
    for i in range(100):
        report(settings, f"dp-{i:03}", {prod: 1})
    report(settings, "dp-zzz", {prod: 0})  # sorts last: not listed, yet it lags
    body = propagation(client)
    assert len(body["data_planes"]) == 100
    assert "dp-zzz" not in {d["id"] for d in body["data_planes"]}
    assert body["in_sync"] is False


def test_propagation__unknown_environment_or_project__404(client: TestClient, api: Api) -> None:
    api.project(envs=("prod",))
    r = client.get(f"{P}/shop/environments/nope/propagation")
    assert r.status_code == 404
    assert "nope" in r.json()["message"]
    assert client.get(f"{P}/nope/environments/prod/propagation").status_code == 404


def test_propagation__reader_allowed__key_of_another_project_refused(client: TestClient, api: Api) -> None:
    api.project(envs=("prod",))
    api.project("blog", envs=("prod",))
    reader = api.key("reader")
    assert propagation(client, headers=auth(reader))["environment"] == "prod"
    scoped = api.key("reader", project="blog")
    assert client.get(PROD, headers=auth(scoped)).status_code == 403
    assert propagation(client, f"{P}/blog/environments/prod/propagation", headers=auth(scoped))["in_sync"]


def _stamp(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()
