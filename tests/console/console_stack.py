"""The stack the console's browser tests drive (a uniquely named module, importable next to conftest).

Every part is real and served on loopback the way an operator runs it: a fresh PostgreSQL database
(migrated), a Redis key prefix and sync queue of its own, the control plane under uvicorn (``python -m
uvicorn --factory flagyard.control_plane.main:app_from_env``) on a free port, one syncer worker and the data
plane (``python -m flagyard.data_plane``) on a free gRPC port. A change made in the browser goes through the
REST API, the outbox, the syncer and Redis to the data plane, and from there to a local-mode SDK client.

Waits for readiness use ``flagyard up``'s own probes (``/readyz``, gRPC health, the RQ worker registry).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from polling_helpers import free_port, wait_until
from stack_helpers import Children, fresh_database, stack_env
from stack_processes import remove_stack_keys

from flagyard.cli.up_probes import grpc_ready, http_ready, syncer_ready
from flagyard.contracts.redis import hash_sdk_key, sdkkeys_key
from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY
from flagyard.sdk import FlagyardClient
from flagyard.syncer.settings import SyncerSettings

REDIS_URL = os.environ.get("FLAGYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/11")
READY_TIMEOUT = 90.0
"""Seconds each child may take to get ready (three Python processes importing at once on a busy machine)."""

_STACK_KNOBS: dict[str, Any] = {  # settings of every child (each reads those it knows)
    # Free ports for everything the data plane serves beside gRPC; no metrics server.
    "metrics_port": 0,
    "ofrep_port": 0,
    "flagd_rpc_port": 0,
    "flagd_sync_port": 0,
    # Changes and new SDK keys are seen within a fraction of a second.
    "env_refresh_seconds": 0.2,
    "stream_block_ms": 200,
    "sdk_key_cache_seconds": 0.3,
    "sdk_key_negative_cache_seconds": 0.1,
    "syncer_metrics_port": 0,
    "reconcile_interval_seconds": 2,
    "log_json": False,
    # Webhook receivers of the tests listen on 127.0.0.1, which production refuses.
    "webhook_allow_private": True,
}


@dataclass
class ConsoleStack:
    """A running stack. ``base_url`` is the control plane (``http://127.0.0.1:<port>``; the console is
    ``base_url + "/ui/"``); ``api`` is an HTTP client of it authenticated with ``admin_key`` (the bootstrap
    admin key); ``grpc_target`` is the data plane's address for SDK clients; ``db_url`` (SQLAlchemy) and
    ``redis_url`` with ``prefix`` are where its state lives."""

    base_url: str
    admin_key: str
    grpc_target: str
    db_url: str
    redis_url: str
    prefix: str
    api: httpx.Client
    children: Children
    _clients: list[Any] = field(default_factory=list)

    def api_as(self, key: str) -> httpx.Client:
        """An HTTP client of the control plane authenticated with ``key`` (closed with the stack)."""
        client = httpx.Client(base_url=self.base_url, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        self._clients.append(client)
        return client

    def create_api_key(self, role: str, *, project: str | None = None, name: str | None = None) -> str:
        """A new API key (``admin``, ``writer`` or ``reader``; global unless ``project`` is given)."""
        body = {"name": name or f"{role}-{uuid.uuid4().hex[:6]}", "role": role, "project": project}
        r = self.api.post("/api/v1/api-keys", json=body)
        assert r.status_code == 201, f"creating a {role} key: {r.status_code} {r.text}"
        return str(r.json()["key"])

    def create_project(
        self, key: str, environments: tuple[str, ...] = ("staging", "production"), *, name: str | None = None
    ) -> None:
        """A project with the given environments, made over REST (the console shows them)."""
        r = self.api.post("/api/v1/projects", json={"key": key, "name": name or key.title()})
        assert r.status_code == 201, f"creating project {key}: {r.status_code} {r.text}"
        for env in environments:
            r = self.api.post(f"/api/v1/projects/{key}/environments", json={"key": env, "name": env.title()})
            assert r.status_code == 201, f"creating environment {key}/{env}: {r.status_code} {r.text}"

    def create_sdk_key(self, project: str, environment: str, *, name: str = "console-tests") -> str:
        """A new SDK key of the environment, returned once the syncer has published it to Redis (so the
        data plane never caches it as unknown)."""
        r = self.api.post(
            f"/api/v1/projects/{project}/environments/{environment}/sdk-keys", json={"name": name}
        )
        assert r.status_code == 201, (
            f"creating an SDK key of {project}/{environment}: {r.status_code} {r.text}"
        )
        key = str(r.json()["key"])
        rds = redis.Redis.from_url(self.redis_url)
        try:
            wait_until(lambda: rds.hexists(sdkkeys_key(self.prefix), hash_sdk_key(key)), READY_TIMEOUT)
        finally:
            rds.close()
        return key

    def sdk_client(self, project: str, environment: str, **options: Any) -> FlagyardClient:
        """A ready local-mode SDK client of the environment (a new SDK key; closed with the stack, or by the
        test). It streams the environment from the data plane, so it sees a change made in the browser once
        the change has gone the whole way: poll it with ``wait_until``."""
        sdk_key = self.create_sdk_key(project, environment)
        options = {"ready_timeout": 30.0, "report_interval": 0, **options}
        client = FlagyardClient(target=self.grpc_target, sdk_key=sdk_key, mode="local", **options)
        self._clients.append(client)
        assert client.wait_ready(30), f"the local-mode SDK of {project}/{environment} did not get ready"
        return client

    def log_tail(self, name: str) -> str:
        """The end of a child's log: ``control_plane``, ``syncer`` or ``data_plane``."""
        return self.children.log_tail(name)

    def close_clients(self) -> None:
        for client in reversed(self._clients):
            with suppress(Exception):
                client.close()
        self._clients.clear()


@contextmanager
def running_console_stack(logs: Path) -> Iterator[ConsoleStack]:
    """Start the stack; stop it and remove its database and Redis keys afterwards."""
    prefix = f"fyconsole-{uuid.uuid4().hex[:8]}"
    queue = f"flagyard-sync-console-{uuid.uuid4().hex[:8]}"
    http_port, grpc_port = free_port(), free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    grpc_target = f"127.0.0.1:{grpc_port}"
    children = Children(logs)
    try:
        with fresh_database("console") as db_url:
            env = stack_env(db_url, REDIS_URL, prefix=prefix, queue=queue, **_STACK_KNOBS)
            uvicorn = ["uvicorn", "--factory", "flagyard.control_plane.main:app_from_env"]
            children.start(
                "control_plane",
                env,
                *uvicorn,
                "--host",
                "127.0.0.1",
                "--port",
                str(http_port),
                "--no-access-log",
            )
            children.start("syncer", env, "flagyard.syncer", "worker", "--processes", "1")
            children.start("data_plane", env, "flagyard.data_plane", "--port", str(grpc_port))
            _wait_ready(children, "control_plane", http_ready(f"{base_url}/readyz"))
            syncer_settings = SyncerSettings(redis_url=REDIS_URL, sync_queue=queue, redis_prefix=prefix)
            _wait_ready(children, "syncer", syncer_ready(syncer_settings))
            _wait_ready(children, "data_plane", grpc_ready(grpc_target))
            api = httpx.Client(
                base_url=base_url, headers={"Authorization": f"Bearer {DEV_BOOTSTRAP_ADMIN_KEY}"}, timeout=10
            )
            stack = ConsoleStack(
                base_url, DEV_BOOTSTRAP_ADMIN_KEY, grpc_target, db_url, REDIS_URL, prefix, api, children
            )
            try:
                yield stack
            finally:
                stack.close_clients()
                api.close()
                children.stop_all()
    finally:
        children.stop_all()
        client = redis.Redis.from_url(REDIS_URL)
        try:
            remove_stack_keys(client, prefix, queue)
        finally:
            client.close()


def _wait_ready(children: Children, name: str, probe: Any) -> None:
    """Poll ``flagyard up``'s probe of the child until it passes; fail with the child's log if it exits or
    does not get ready in time."""
    pid = children.processes[name].pid
    deadline = time.monotonic() + READY_TIMEOUT
    last: BaseException | None = None
    while time.monotonic() < deadline:
        children.check_alive(name)
        try:
            if probe(pid):
                return
        except Exception as exc:  # refused, unavailable, not registered yet
            last = exc
        time.sleep(0.1)
    raise AssertionError(
        f"{name} was not ready within {READY_TIMEOUT:.0f}s (last probe error: {last!r}):\n{children.log_tail(name)}"
    )
