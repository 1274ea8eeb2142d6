"""Fixtures of the fault-injection tests: our own PostgreSQL and Redis (fault_infra.py), and a Flagyard
stack over them (tests/propagation/e2e_stack.py) whose parts the tests kill and restart."""

from __future__ import annotations

import os
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "propagation"))  # e2e_stack

from contract_helpers import CheckedClient
from e2e_stack import Stack
from fault_infra import PostgresInstance, RedisInstance, SentinelSet, free_port
from stack_helpers import fresh_database, migrate, stack_settings

from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY


@pytest.fixture
def pg() -> Iterator[PostgresInstance]:
    instance = PostgresInstance()
    try:
        instance.start()
        yield instance
    finally:
        instance.destroy()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisInstance]:
    instance = RedisInstance(tmp_path)
    try:
        instance.start()
        yield instance
    finally:
        instance.kill()


@pytest.fixture
def fault_stack(pg: PostgresInstance, own_redis: RedisInstance, tmp_path: Path) -> Iterator[Stack]:
    """A migrated database on our PostgreSQL, our Redis, the control plane in process (inline outbox
    dispatch, relay every second), and the environment the syncer, data planes and uvicorn run with."""
    name = f"flagyard_faults_{uuid.uuid4().hex[:8]}"
    pg.create_database(name)
    db_url = pg.url(name)
    migrate(db_url)
    with stack_over(db_url, own_redis.url(), tmp_path) as stack:
        yield stack


@pytest.fixture
def sentinel_set(tmp_path: Path) -> Iterator[SentinelSet]:
    """A primary, a replica and three Sentinels of our own (fault_infra.SentinelSet), started."""
    instance = SentinelSet(tmp_path)
    try:
        instance.start()
        yield instance
    finally:
        instance.stop()


@pytest.fixture
def sentinel_stack(sentinel_set: SentinelSet, tmp_path: Path) -> Iterator[Stack]:
    """:func:`fault_stack` over the Sentinel set (every plane gets its ``redis+sentinel://`` URL) and a fresh
    database on the shared PostgreSQL (the scenario does not touch PostgreSQL)."""
    with (
        fresh_database("faults_sentinel") as db_url,
        stack_over(db_url, sentinel_set.url(), tmp_path) as stack,
    ):
        # No metrics port: the scenario does not scrape it, and a port picked free may be taken by the time
        # the syncer binds it (other suites run on this machine too), which ends the syncer at start.
        stack.env["FLAGYARD_SYNCER_METRICS_PORT"] = "0"
        yield stack


@contextmanager
def stack_over(db_url: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """The control plane in process over ``db_url`` and ``redis_url``, and the environment of the children."""
    prefix = f"fyfault-{uuid.uuid4().hex[:6]}"
    queue = f"flagyard-sync-{uuid.uuid4().hex[:6]}"
    settings = stack_settings(
        db_url,
        redis_url,
        prefix=prefix,
        queue=queue,
        outbox_relay_interval_seconds=1,
        outbox_grace_seconds=1,
        db_connect_timeout_seconds=1,
        db_pool_timeout_seconds=2,
    )
    env = {
        **os.environ,
        "FLAGYARD_DATABASE_URL": db_url,
        "FLAGYARD_REDIS_URL": redis_url,
        "FLAGYARD_REDIS_PREFIX": prefix,
        "FLAGYARD_SYNC_QUEUE": queue,
        # Metrics on, as in production: a syncer restarted after SIGKILL must get its port back at once.
        "FLAGYARD_SYNCER_METRICS_PORT": str(free_port()),
        "FLAGYARD_METRICS_PORT": "0",
        "FLAGYARD_RECONCILE_INTERVAL_SECONDS": "1",
        "FLAGYARD_LOG_LEVEL": "WARNING",
        "FLAGYARD_ENV_REFRESH_SECONDS": "0.2",
        "FLAGYARD_STREAM_BLOCK_MS": "200",
        "FLAGYARD_RATE_LIMIT_REQUESTS": "0",
        "FLAGYARD_OUTBOX_DISPATCH": "background",
        "FLAGYARD_OUTBOX_RELAY_INTERVAL_SECONDS": "1",
        "FLAGYARD_OUTBOX_GRACE_SECONDS": "1",
        "FLAGYARD_ACCESS_LOG": "false",
        "FLAGYARD_DB_CONNECT_TIMEOUT_SECONDS": "1",
    }
    with CheckedClient(
        create_app(settings), headers={"Authorization": f"Bearer {DEV_BOOTSTRAP_ADMIN_KEY}"}
    ) as api:
        stack = Stack(db_url, redis_url, prefix, queue, api, env, tmp_path, grpc_port=free_port())
        try:
            yield stack
        finally:
            stack.stop_all()
