"""The ``stack`` fixture of the protocol suites (see protocol_helpers.py): one real stack per module with
the matrix environment below, made over REST, synced by the syncer, served by the data plane."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
from contract_helpers import CheckedClient
from polling_helpers import wait_until
from protocol_helpers import ENV, PG_ADMIN_URL, PROJECT, REDIS_URL, Plane, Stack
from stack_helpers import migrate, stack_settings

from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY
from flagyard.data_plane.settings import DataPlaneSettings

BOOL = {"on": True, "off": False}
SEGMENTS: list[dict[str, Any]] = [
    {
        "key": "beta",
        "name": "Beta",
        "included": ["u-vip"],
        "excluded": ["u-banned"],
        "rules": [{"clauses": [{"attribute": "country", "operator": "in", "values": ["AT"]}]}],
    }
]


def _flag(key: str, type_: str, variants: dict[str, Any], **config: Any) -> dict[str, Any]:
    return {
        "key": key,
        "name": key,
        "type": type_,
        "variants": variants,
        "environments": {ENV: {"enabled": True, **config}},
    }


FLAGS: list[dict[str, Any]] = [
    _flag(
        "bool-rule",
        "boolean",
        BOOL,
        off_variant="off",
        default_variant="off",
        rules=[
            {
                "id": "de",
                "clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}],
                "variant": "on",
            }
        ],
    ),
    _flag(
        "str-segment",
        "string",
        {"a": "Welcome", "b": "Hi there"},
        default_variant="a",
        rules=[
            {"id": "beta", "clauses": [{"operator": "segment_match", "values": ["beta"]}], "variant": "b"}
        ],
    ),
    _flag("int-static", "integer", {"normal": 100, "raised": 500}, default_variant="normal"),
    _flag(
        "float-rule",
        "float",
        {"low": 0.25, "high": 0.75},
        default_variant="low",
        rules=[
            {
                "id": "ent",
                "clauses": [{"attribute": "plan", "operator": "in", "values": ["ent", "pro"]}],
                "variant": "high",
            }
        ],
    ),
    _flag(
        "obj-static",
        "object",
        {"dark": {"bg": "#000", "sizes": [1, 2]}, "light": {"bg": "#fff"}},
        default_variant="dark",
    ),
    _flag(
        "split",
        "string",
        {"x": "X", "y": "Y"},
        default_split={"variations": [{"variant": "x", "weight": 5000}, {"variant": "y", "weight": 5000}]},
    ),
    {**_flag("disabled-off", "boolean", BOOL, off_variant="off", default_variant="on"), "environments": {}},
    _flag("disabled-none", "boolean", BOOL, default_variant="on"),
    _flag("switch", "boolean", BOOL, off_variant="off", default_variant="off"),
    _flag("obj-array", "object", {"list": [1, "x"], "map": {"a": 1}}, default_variant="list"),
]
# disabled-off: configured below (disabled, with an off variant); disabled-none: disabled, no off variant.
CONTEXTS: list[dict[str, Any]] = [
    {},
    {"targeting_key": "u1"},
    {"targeting_key": "u-vip"},
    {"targeting_key": "u2", "country": "DE", "plan": "ent"},
    {"targeting_key": "u3", "country": "AT"},
    {"targeting_key": "u-banned", "country": "AT", "plan": "pro"},
]


def create_environment(api: CheckedClient) -> str:
    """The matrix environment; returns an SDK key of it."""
    assert api.post("/api/v1/projects", json={"key": PROJECT, "name": "Shop"}).status_code == 201
    r = api.post(f"/api/v1/projects/{PROJECT}/environments", json={"key": ENV, "name": "Prod"})
    assert r.status_code == 201, r.text
    for segment in SEGMENTS:
        r = api.post(f"/api/v1/projects/{PROJECT}/segments", json=segment)
        assert r.status_code == 201, r.text
    for flag in FLAGS:
        r = api.post(f"/api/v1/projects/{PROJECT}/flags", json=flag)
        assert r.status_code == 201, r.text
    for key, config in (
        ("disabled-off", {"enabled": False, "off_variant": "off", "default_variant": "on"}),
        ("disabled-none", {"enabled": False, "off_variant": None}),
    ):
        path = f"/api/v1/projects/{PROJECT}/flags/{key}/environments/{ENV}"
        r = api.patch(path, json=config, headers={"If-Match": api.get(path).headers["etag"]})
        assert r.status_code == 200, r.text
    r = api.post(f"/api/v1/projects/{PROJECT}/environments/{ENV}/sdk-keys", json={"name": "backend"})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


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
