"""One bad definition, environment or change never stops the syncer: the reconcile and a batch job write
everything else, count the failure, and the periodic reconcile thread keeps running.

Poison is written straight into PostgreSQL, past the API's validation, as a broken migration, a manual
fix-up or a bug would. Real PostgreSQL (a fresh database) and Redis (db 4, a fresh prefix and queue)."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient
from polling_helpers import wait_until
from sqlalchemy.orm import sessionmaker
from stack_helpers import migrate, stack_settings

from flagyard.contracts.redis import load_environment_sync, parse_stored
from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY
from flagyard.syncer import jobs, metrics
from flagyard.syncer.core import Syncer
from flagyard.syncer.exceptions import ChangeFailedError
from flagyard.syncer.settings import SyncerSettings
from flagyard.syncer.worker import reconcile_loop

PG_ADMIN_URL = os.environ.get("FLAGYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FLAGYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/4")
FLAGS = ("alpha", "beta", "poison")


@dataclass
class World:
    db_url: str
    prefix: str
    queue: str
    api: TestClient
    rds: redis.Redis
    syncer: Syncer

    def env_ids(self) -> dict[str, int]:
        with psycopg.connect(_libpq(self.db_url)) as conn:
            return {key: id_ for id_, key in conn.execute("SELECT id, key FROM environments").fetchall()}

    def held(self, env: str) -> dict[str, int]:
        """Flag key → version Redis holds for environment ``env``."""
        data = load_environment_sync(self.rds, self.prefix, str(self.env_ids()[env]))
        return {key: parse_stored(raw).version for key, raw in data.flags.items()}

    def version(self, flag: str) -> int:
        return int(self.api.get(f"/api/v1/projects/shop/flags/{flag}").json()["version"])

    def patch(self, flag: str, env: str, **config: Any) -> None:
        path = f"/api/v1/projects/shop/flags/{flag}/environments/{env}"
        etag = self.api.get(path).headers["etag"]
        response = self.api.patch(path, json=config, headers={"If-Match": etag})
        assert response.status_code == 200, response.text

    def poison(self, flag: str, env: str) -> None:
        """A stored configuration the mapping cannot read (``rules`` is not a list), with a new version in
        every environment so the reconcile wants to write it everywhere."""
        with psycopg.connect(_libpq(self.db_url)) as conn:
            conn.execute(
                "UPDATE flag_environments SET rules = '\"not a list\"'::json WHERE environment_id = "
                "(SELECT id FROM environments WHERE key = %s) AND flag_id = (SELECT id FROM flags WHERE key = %s)",
                (env, flag),
            )
            conn.execute("UPDATE flags SET version = version + 1 WHERE key = %s", (flag,))
            # As a definition change would: every environment serves the new version.
            conn.execute(
                "UPDATE flag_environments SET version = (SELECT version FROM flags WHERE key = %s) "
                "WHERE flag_id = (SELECT id FROM flags WHERE key = %s)",
                (flag, flag),
            )


def _libpq(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _failures(stage: str) -> float:
    return metrics.REGISTRY.get_sample_value("flagyard_syncer_failures_total", {"stage": stage}) or 0.0


def _ok_runs() -> float:
    return metrics.REGISTRY.get_sample_value("flagyard_syncer_reconcile_runs_total", {"outcome": "ok"}) or 0.0


@pytest.fixture
def world() -> Iterator[World]:
    name = f"flagyard_iso_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    migrate(db_url)
    prefix, queue = f"fyiso-{uuid.uuid4().hex[:8]}", f"flagyard-sync-iso-{uuid.uuid4().hex[:8]}"
    settings = stack_settings(db_url, REDIS_URL, prefix=prefix, queue=queue)
    rds = redis.Redis.from_url(REDIS_URL)
    engine = sa.create_engine(db_url, pool_size=2)
    syncer = Syncer(sessionmaker(engine), rds, prefix)
    jobs.configure(syncer)
    try:
        with TestClient(
            create_app(settings), headers={"Authorization": f"Bearer {DEV_BOOTSTRAP_ADMIN_KEY}"}
        ) as api:
            world = World(db_url, prefix, queue, api, rds, syncer)
            assert api.post("/api/v1/projects", json={"key": "shop", "name": "Shop"}).status_code == 201
            for env in ("dev", "prod"):
                r = api.post("/api/v1/projects/shop/environments", json={"key": env, "name": env})
                assert r.status_code == 201
            for flag in FLAGS:
                body = {"key": flag, "name": flag, "type": "boolean", "variants": {"on": True, "off": False}}
                assert api.post("/api/v1/projects/shop/flags", json=body).status_code == 201
            syncer.reconcile()
            yield world
    finally:
        jobs.configure(None)
        engine.dispose()
        for key in [*rds.scan_iter(f"{prefix}:*"), *rds.scan_iter(f"rq:*{queue}*")]:
            rds.delete(key)
        rds.close()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_reconcile__poison_definition__writes_every_other_flag_and_environment_and_counts_it(
    world: World,
) -> None:
    served = world.held("prod")["poison"]
    world.patch("alpha", "prod", enabled=True)
    world.patch("beta", "dev", enabled=True)
    world.poison("poison", "prod")
    before = _failures("reconcile_definition")

    world.syncer.reconcile()  # before: pydantic's ValidationError for the whole pass

    assert world.held("prod")["alpha"] == world.version("alpha")
    assert world.held("dev")["beta"] == world.version("beta")
    assert world.held("dev")["poison"] == world.version("poison")  # readable in dev: written
    assert world.held("prod")["poison"] == served  # unreadable in prod: the last good one stays
    assert _failures("reconcile_definition") == before + 1


def test_sync_job__poison_beside_good_changes__applies_the_others(world: World) -> None:
    ids = world.env_ids()
    world.patch("alpha", "prod", enabled=True)
    world.patch("beta", "dev", enabled=True)
    world.poison("poison", "prod")
    changes = [
        {
            "outbox_id": None,
            "environment_id": ids["prod"],
            "entity_type": "flag",
            "entity_key": key,
            "version": 1,
        }
        for key in ("poison", "alpha")
    ]
    changes.append(
        {
            "outbox_id": None,
            "environment_id": ids["dev"],
            "entity_type": "flag",
            "entity_key": "beta",
            "version": 1,
        }
    )

    outcomes = jobs.sync_changes(changes)  # before: ValidationError, nothing after the poison written

    assert outcomes == {"invalid": 1, "applied": 2}
    assert world.held("prod")["alpha"] == world.version("alpha")
    assert world.held("dev")["beta"] == world.version("beta")


def test_sync_job__one_change_raises_unexpectedly__others_applied_then_the_job_fails_for_a_retry(
    world: World,
) -> None:
    ids = world.env_ids()
    world.patch("alpha", "prod", enabled=True)
    before = _failures("change")
    changes = [
        {
            "outbox_id": None,
            "environment_id": ids["prod"],
            "entity_type": "sdk_key",
            "entity_key": "x",
            "version": 1,
        },
        {
            "outbox_id": None,
            "environment_id": ids["prod"],
            "entity_type": "flag",
            "entity_key": "alpha",
            "version": 1,
        },
    ]

    with pytest.raises(ChangeFailedError, match="1 of 2 changes failed"):
        jobs.sync_changes(changes)  # before: a ValueError from the first change, alpha never written

    assert world.held("prod")["alpha"] == world.version("alpha")
    assert _failures("change") == before + 1


def test_reconcile_loop__poison_present__keeps_running_and_reports_its_last_success(world: World) -> None:
    world.poison("poison", "prod")
    settings = SyncerSettings(
        database_url=world.db_url,  # type: ignore[arg-type]
        redis_url=REDIS_URL,  # type: ignore[arg-type]
        redis_prefix=world.prefix,
        sync_queue=world.queue,
        reconcile_interval_seconds=0.1,
    )
    runs, started = _ok_runs(), time.time()
    stop = threading.Event()
    thread = threading.Thread(target=reconcile_loop, args=(settings, world.rds, stop), daemon=True)
    thread.start()
    try:
        wait_until(lambda: _ok_runs() >= runs + 2 or not thread.is_alive(), 30)
        assert thread.is_alive()  # before: the thread died on the first pass's ValidationError
        world.patch("alpha", "prod", enabled=True)
        wait_until(lambda: world.held("prod")["alpha"] == world.version("alpha"), 30)
    finally:
        stop.set()
        thread.join(10)
    assert _ok_runs() >= runs + 2
    last = metrics.REGISTRY.get_sample_value("flagyard_syncer_reconcile_last_success_timestamp_seconds")
    assert last is not None
    assert last >= started
