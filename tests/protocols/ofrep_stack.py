"""A whole Flagyard stack for the OFREP provider tests (a uniquely named module, imported by the tests).

PostgreSQL: a fresh database with Alembic migrations; Redis: the test DB of ``FLAGYARD_TEST_REDIS_URL`` and
a key prefix of its own; the control plane in process (FastAPI TestClient, inline outbox dispatch); the
syncer and the data plane as subprocesses started with ``python -m`` as an operator would, the data plane
serving OFREP on a free port. One stack per test module: its tests use keys and flags of their own.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import redis
from contract_helpers import CheckedClient
from polling_helpers import free_port, wait_until
from stack_helpers import migrate, stack_settings

from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY

PG_ADMIN_URL = os.environ.get("FLAGYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FLAGYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
ENVIRONMENT = "/api/v1/projects/shop/environments/prod"


@dataclass
class OfrepStack:
    api: CheckedClient
    env: dict[str, str]
    logs: Path
    prefix: str
    grpc_port: int = field(default_factory=free_port)
    ofrep_port: int = field(default_factory=free_port)
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def ofrep_url(self) -> str:
        return f"http://127.0.0.1:{self.ofrep_port}"

    def start(self, name: str, *args: str) -> None:
        log = (self.logs / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", *args], env=self.env, stdout=log, stderr=log
        )

    def stop_all(self) -> None:
        for proc in self.processes.values():
            proc.terminate()
        for proc in self.processes.values():
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self.processes.clear()

    def sdk_key(self, name: str) -> tuple[str, str]:
        """A new SDK key of shop/prod: (id, secret)."""
        r = self.api.post(f"{ENVIRONMENT}/sdk-keys", json={"name": name})
        assert r.status_code == 201, r.text
        return str(r.json()["id"]), str(r.json()["key"])

    def configure(self, flag: str, **config: Any) -> None:
        path = f"/api/v1/projects/shop/flags/{flag}/environments/prod"
        etag = self.api.get(path).headers["etag"]
        r = self.api.patch(path, json=config, headers={"If-Match": etag})
        assert r.status_code == 200, r.text

    def serves(self, sdk_key: str, flag: str) -> bool:
        try:
            r = httpx.post(
                f"{self.ofrep_url}/ofrep/v1/evaluate/flags/{flag}",
                json={},
                headers={"X-API-Key": sdk_key},
                timeout=2,
            )
        except httpx.HTTPError:
            return False
        return r.status_code != 401 and r.status_code < 500


def ofrep_stack_fixture(document: dict[str, Any]) -> Any:
    """A module-scoped fixture: a stack with project shop, environment prod holding ``document``."""

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OfrepStack]:
        name = f"flagyard_ofrep_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
        db_url = f"{base}/{name}"
        prefix = f"fyofrep-{uuid.uuid4().hex[:8]}"
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
            "FLAGYARD_METRICS_PORT": "0",
            "FLAGYARD_LOG_LEVEL": "WARNING",
            "FLAGYARD_ENV_REFRESH_SECONDS": "0.2",
            "FLAGYARD_STREAM_BLOCK_MS": "200",
            "FLAGYARD_SDK_KEY_CACHE_SECONDS": "0.5",
            "FLAGYARD_SDK_KEY_NEGATIVE_CACHE_SECONDS": "0.2",
            "FLAGYARD_GRPC_HOST": "127.0.0.1",
            "FLAGYARD_OFREP_HOST": "127.0.0.1",
        }
        logs = tmp_path_factory.mktemp("ofrep-stack")
        headers = {"Authorization": f"Bearer {DEV_BOOTSTRAP_ADMIN_KEY}"}
        with CheckedClient(create_app(settings), headers=headers) as api:
            stack = OfrepStack(api, env, logs, prefix)
            stack.env["FLAGYARD_OFREP_PORT"] = str(stack.ofrep_port)
            try:
                assert api.post("/api/v1/projects", json={"key": "shop", "name": "Shop"}).status_code == 201
                r = api.post("/api/v1/projects/shop/environments", json={"key": "prod", "name": "Prod"})
                assert r.status_code == 201, r.text
                r = api.post(f"{ENVIRONMENT}/import", json=document)
                assert r.status_code == 200, r.text
                stack.start("syncer", "flagyard.syncer", "worker")
                stack.start("data_plane", "flagyard.data_plane", "--port", str(stack.grpc_port))
                _, probe = stack.sdk_key("probe")
                first = document["flags"][0]["key"]
                wait_until(lambda: stack.serves(probe, first), 60, interval=0.1)
                yield stack
            finally:
                stack.stop_all()
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        for key in client.scan_iter(f"rq:*{queue}*"):
            client.delete(key)
        client.close()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return fixture
