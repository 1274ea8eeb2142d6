"""Fixtures of the operations tests: the three planes running for real, to read what they export.

PostgreSQL: a fresh database with Alembic migrations; Redis: DB index 10 with a key prefix and queue of
their own (removed afterwards); the control plane in process (TestClient), the syncer and the data plane
as subprocesses started with ``python -m`` as the Dockerfile's commands do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psycopg
import pytest
import redis
from alembic import command
from alembic.config import Config
from contract_helpers import CheckedClient
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2
from ops_helpers import ROOT, Backing, Running, free_port, grpc_health, wait_until

from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY, Settings

PG_ADMIN_URL = os.environ.get("FLAGYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FLAGYARD_TEST_OPS_REDIS_URL", "redis://127.0.0.1:6379/10")


@pytest.fixture(scope="module")
def backing() -> Iterator[Backing]:
    name = f"flagyard_ops_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    db_url = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"
    suffix = uuid.uuid4().hex[:8]
    prefix, queue = f"fyops-{suffix}", f"flagyard-sync-ops-{suffix}"
    try:
        config = Config(str(ROOT / "alembic.ini"))
        config.set_main_option("sqlalchemy.url", db_url)
        config.attributes["configure_logging"] = False
        command.upgrade(config, "head")
        yield Backing(db_url, REDIS_URL, prefix, queue)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        for pattern in (f"{prefix}:*", f"rq:*{queue}*"):
            for key in client.scan_iter(pattern):
                client.delete(key)
        client.close()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _env(backing: Backing, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "FLAGYARD_DATABASE_URL": backing.db_url,
        "FLAGYARD_REDIS_URL": backing.redis_url,
        "FLAGYARD_REDIS_PREFIX": backing.prefix,
        "FLAGYARD_SYNC_QUEUE": backing.queue,
        "FLAGYARD_LOG_LEVEL": "WARNING",
        **extra,
    }


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _metrics_answer(running: Running) -> bool:
    assert running.proc.poll() is None, running.log_text()
    try:
        return bool(running.metrics())
    except OSError:
        return False


@pytest.fixture(scope="module")
def control_plane(backing: Backing) -> Iterator[TestClient]:
    settings = Settings(
        database_url=backing.db_url,  # type: ignore[arg-type]
        redis_url=backing.redis_url,  # type: ignore[arg-type]
        redis_prefix=backing.prefix,
        sync_queue=backing.queue,
        outbox_dispatch="inline",
        outbox_relay_interval_seconds=0,
        access_log=False,
        log_level="WARNING",
    )
    with CheckedClient(
        create_app(settings), headers={"Authorization": f"Bearer {DEV_BOOTSTRAP_ADMIN_KEY}"}
    ) as client:
        yield client


@pytest.fixture(scope="module")
def syncer(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """``python -m flagyard.syncer worker`` with its metrics server on a free port."""
    log = tmp_path_factory.mktemp("syncer") / "syncer.log"
    port = free_port()
    env = _env(backing, FLAGYARD_SYNCER_METRICS_PORT=str(port), FLAGYARD_RECONCILE_INTERVAL_SECONDS="0")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flagyard.syncer", "worker"], env=env, stdout=out, stderr=out
        )
    running = Running(proc, log, port)
    try:
        wait_until(lambda: _metrics_answer(running))
        yield running
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def data_plane(backing: Backing, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """``python -m flagyard.data_plane`` on free ports (gRPC, flagd's two, OFREP, metrics: the defaults may be
    taken by another run), SERVING before it is yielded."""
    log = tmp_path_factory.mktemp("data_plane") / "data_plane.log"
    ports: set[int] = set()
    while len(ports) < 5:
        ports.add(free_port())
    grpc_port, rpc_port, sync_port, ofrep_port, metrics_port = sorted(ports)
    env = _env(
        backing,
        FLAGYARD_GRPC_PORT=str(grpc_port),
        FLAGYARD_FLAGD_RPC_PORT=str(rpc_port),
        FLAGYARD_FLAGD_SYNC_PORT=str(sync_port),
        FLAGYARD_OFREP_PORT=str(ofrep_port),
        FLAGYARD_METRICS_PORT=str(metrics_port),
    )
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flagyard.data_plane"], env=env, stdout=out, stderr=out
        )
    running = Running(proc, log, metrics_port, grpc_port, rpc_port, sync_port, ofrep_port)
    try:
        wait_until(lambda: _metrics_answer(running))
        wait_until(lambda: grpc_health(grpc_port, "") == health_pb2.HealthCheckResponse.SERVING)
        yield running
    finally:
        _stop(proc)
