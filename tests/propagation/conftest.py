"""The ``stack`` fixture: a fresh database, Redis prefix and queue per test (see e2e_stack.py); ``rds``, a
client of its Redis; ``syncer``, a Syncer over both that RQ jobs run in process."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
import sqlalchemy as sa
from contract_helpers import CheckedClient
from e2e_stack import PG_ADMIN_URL, REDIS_DB, Stack, free_port
from sqlalchemy.orm import sessionmaker
from stack_helpers import migrate, stack_settings

from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY
from flagyard.syncer import jobs
from flagyard.syncer.core import Syncer


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Stack]:
    name = f"flagyard_e2e_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    redis_url = f"redis://127.0.0.1:6379/{REDIS_DB}"
    prefix = f"fye2e-{uuid.uuid4().hex[:8]}"
    queue = f"flagyard-sync-{uuid.uuid4().hex[:8]}"
    migrate(db_url)
    settings = stack_settings(db_url, redis_url, prefix=prefix, queue=queue)
    env = {
        **os.environ,
        "FLAGYARD_DATABASE_URL": db_url,
        "FLAGYARD_REDIS_URL": redis_url,
        "FLAGYARD_REDIS_PREFIX": prefix,
        "FLAGYARD_SYNC_QUEUE": queue,
        "FLAGYARD_SYNCER_METRICS_PORT": "0",
        "FLAGYARD_METRICS_PORT": "0",
        "FLAGYARD_RECONCILE_INTERVAL_SECONDS": "2",
        "FLAGYARD_LOG_LEVEL": "WARNING",
        "FLAGYARD_ENV_REFRESH_SECONDS": "0.2",
        "FLAGYARD_STREAM_BLOCK_MS": "200",
    }
    with CheckedClient(
        create_app(settings), headers={"Authorization": f"Bearer {DEV_BOOTSTRAP_ADMIN_KEY}"}
    ) as api:
        stack = Stack(db_url, redis_url, prefix, queue, api, env, tmp_path, grpc_port=free_port())
        try:
            yield stack
        finally:
            stack.stop_all()
    client = redis.Redis.from_url(redis_url)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    for key in client.scan_iter(f"rq:*{queue}*"):
        client.delete(key)
    client.close()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def rds(stack: Stack) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack.redis_url)
    yield client
    client.close()


@pytest.fixture
def syncer(stack: Stack, rds: redis.Redis) -> Iterator[Syncer]:
    engine = sa.create_engine(stack.db_url, pool_size=2)
    instance = Syncer(sessionmaker(engine), rds, stack.prefix)
    jobs.configure(instance)
    yield instance
    jobs.configure(None)
    engine.dispose()
