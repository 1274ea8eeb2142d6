"""The ``stack`` fixture of the protocol suites (see protocol_helpers.py): one real stack per module with
the matrix environment of protocol_helpers, made over REST, synced by the syncer, served by the data plane."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis
from contract_helpers import CheckedClient
from polling_helpers import wait_until
from protocol_helpers import PG_ADMIN_URL, REDIS_URL, Plane, Stack, create_environment
from stack_helpers import migrate, stack_settings

from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY
from flagyard.data_plane.settings import DataPlaneSettings


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    name = f"flagyard_proto_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    prefix = f"fyproto-{uuid.uuid4().hex[:8]}"
    queue = f"flagyard-sync-{uuid.uuid4().hex[:8]}"
    migrate(db_url)
    settings = stack_settings(db_url, REDIS_URL, prefix=prefix, queue=queue)
    env = {
        **os.environ,
        "FLAGYARD_DATABASE_URL": db_url,
        "FLAGYARD_REDIS_URL": REDIS_URL,
        "FLAGYARD_REDIS_PREFIX": prefix,
        "FLAGYARD_SYNC_QUEUE": queue,
        "FLAGYARD_SYNCER_METRICS_PORT": "0",
        "FLAGYARD_RECONCILE_INTERVAL_SECONDS": "2",
        "FLAGYARD_LOG_LEVEL": "WARNING",
    }
    logs: Path = tmp_path_factory.mktemp("stack-logs")
    with CheckedClient(
        create_app(settings), headers={"Authorization": f"Bearer {DEV_BOOTSTRAP_ADMIN_KEY}"}
    ) as api:
        stack = Stack(api, env, prefix, logs)
        try:
            stack.sdk_key = create_environment(api)
            stack.start("syncer", "flagyard.syncer", "worker")
            plane_settings = DataPlaneSettings(
                redis_url=REDIS_URL,
                redis_prefix=prefix,
                grpc_host="127.0.0.1",
                grpc_port=0,
                flagd_rpc_port=0,
                flagd_sync_port=0,
                flagd_keep_alive_seconds=0.3,
                sdk_key_cache_seconds=0.3,
                sdk_key_negative_cache_seconds=0.1,
                metrics_port=0,
                stream_block_ms=200,
                env_refresh_seconds=0.2,
                log_json=False,
                log_level="warning",
            )
            rds = redis.Redis.from_url(REDIS_URL)
            wait_until(lambda: rds.scard(f"{prefix}:envs") == 1, 30)
            stack.plane = Plane(plane_settings).start()
            rds.close()
            yield stack
        finally:
            stack.stop_all()
    client = redis.Redis.from_url(REDIS_URL)
    for key in client.scan_iter(f"{prefix}:*"):
        client.delete(key)
    client.close()
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
