"""Attacks on the control plane's edge, replayed against a real one (uvicorn over HTTP, PostgreSQL, Redis).

Each test is what an attacker (or a careless client) sends: an oversized or over-deep body, duplicate
JSON keys, a database dump after idempotent key creations, a flood of bad keys; and what an operator sees
when a plane refuses its settings. Each asserts the attack fails and leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest
import redis
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from polling_helpers import free_port, wait_until

from flagyard.rule_engine import limits

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("FLAGYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FLAGYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
ADMIN_KEY = "fy_admin_" + secrets.token_urlsafe(32)
AUTH_FAILURE_LIMIT = 5
FLAGS = "/api/v1/projects/shop/flags"


@dataclass
class Plane:
    url: str
    engine: sa.Engine
    prefix: str

    def client(self, key: str | None = ADMIN_KEY) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60)

    def count(self, table: str) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one())

    def written(self) -> tuple[int, ...]:
        return tuple(self.count(t) for t in ("flags", "flag_versions", "audit_log", "outbox"))


def _database_url(name: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plane]:
    name = f"flagyard_edge_{uuid.uuid4().hex[:10]}"
    prefix = f"edge-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = _database_url(name)
    server = None
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
    try:
        config = Config(str(ROOT / "alembic.ini"))
        config.set_main_option("sqlalchemy.url", url)
        config.attributes["configure_logging"] = False
        command.upgrade(config, "head")
        port = free_port()
        log = tmp_path_factory.mktemp("edge") / "uvicorn.log"
        env = {
            **os.environ,
            "FLAGYARD_DATABASE_URL": url,
            "FLAGYARD_REDIS_URL": REDIS_URL,
            "FLAGYARD_REDIS_PREFIX": prefix,
            "FLAGYARD_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
            "FLAGYARD_RATE_LIMIT_REQUESTS": "0",
            "FLAGYARD_AUTH_FAILURE_LIMIT": str(AUTH_FAILURE_LIMIT),
            "FLAGYARD_AUTH_FAILURE_WINDOW_SECONDS": "60",
            "FLAGYARD_OUTBOX_RELAY_INTERVAL_SECONDS": "0",
            "FLAGYARD_LOG_LEVEL": "WARNING",
        }
        log_file = log.open("wb")
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                "--factory",
                "flagyard.control_plane.main:app_from_env",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
        base = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(base + "/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                assert server is not None
                assert server.poll() is None, log.read_text()[-2000:]
                return False

        try:
            wait_until(ready, timeout=60, interval=0.1)
        except AssertionError as exc:
            raise AssertionError(f"uvicorn did not answer: {log.read_text()[-2000:]}") from exc
        p = Plane(base, engine, prefix)
        with p.client() as c:
            assert c.post("/api/v1/projects", json={"key": "shop", "name": "Shop"}).status_code == 201
            assert (
                c.post("/api/v1/projects/shop/environments", json={"key": "prod", "name": "P"}).status_code
                == 201
            )
        yield p
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
            log_file.close()
        engine.dispose()
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        client = redis.Redis.from_url(REDIS_URL)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
        client.close()


def test_20_mb_body__413_and_nothing_written(plane: Plane) -> None:
    before = plane.written()
    padding = b"x" * (20 * 1024 * 1024)
    body = b'{"key": "huge", "name": "' + padding + b'", "type": "boolean", "variants": {"on": true}}'
    with plane.client() as c:
        declared = c.post(FLAGS, content=body, headers={"Content-Type": "application/json"})

        def chunked() -> Iterator[bytes]:
            for start in range(0, len(body), 1 << 20):
                yield body[start : start + (1 << 20)]

        streamed = c.post(FLAGS, content=chunked(), headers={"Content-Type": "application/json"})
    for r in (declared, streamed):
        assert r.status_code == 413, r.text[:200]
        assert r.json()["code"] == "payload_too_large"
        assert r.json()["details"] == [
            {"path": "", "message": f"the request body is larger than {limits.MAX_REQUEST_BODY_BYTES} bytes"}
        ]
    assert plane.written() == before


def test_300_deep_json__422_with_a_pointer_nothing_written(plane: Plane) -> None:
    before = plane.written()
    deep = "[" * 300 + "]" * 300
    body = '{"key": "deep", "name": "D", "type": "object", "variants": {"on": ' + deep + "}}"
    with plane.client() as c:
        r = c.post(FLAGS, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text[:300]
    assert r.json()["code"] == "validation_error"
    assert any(d["path"].startswith("/variants/on") for d in r.json()["details"]), r.json()
    assert plane.written() == before


def test_duplicate_json_keys__422_nothing_written(plane: Plane) -> None:
    before = plane.written()
    body = '{"key": "dup", "name": "D", "type": "boolean", "variants": {"on": true}, "variants": {"x": 1}}'
    with plane.client() as c:
        r = c.post(FLAGS, content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert "duplicate key 'variants'" in r.json()["details"][0]["message"]
    assert plane.written() == before


def test_idempotent_key_creation__no_secret_in_any_table(plane: Plane) -> None:
    with plane.client() as c:
        created = c.post(
            "/api/v1/api-keys", json={"name": "ci", "role": "writer"}, headers={"Idempotency-Key": "k1"}
        )
        sdk = c.post(
            "/api/v1/projects/shop/environments/prod/sdk-keys",
            json={"name": "app"},
            headers={"Idempotency-Key": "k2"},
        )
        retried = c.post(
            "/api/v1/api-keys", json={"name": "ci", "role": "writer"}, headers={"Idempotency-Key": "k1"}
        )
    assert created.status_code == sdk.status_code == 201
    assert retried.status_code == 409
    with plane.engine.connect() as conn:
        tables = list(conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")))
        dump = "\n".join(
            str(row[0]) for (t,) in tables for row in conn.execute(sa.text(f'SELECT "{t}"::text FROM "{t}"'))
        )
    assert "idempotency_records" in {t for (t,) in tables}
    for key in (created.json()["key"], sdk.json()["key"]):
        secret = key.split("_", 2)[2]
        # The display prefix keeps the first 6 characters of a secret by design; no 7 are anywhere.
        leaked = [secret[i : i + 7] for i in range(len(secret) - 6) if secret[i : i + 7] in dump]
        assert leaked == []
        assert key not in retried.text


def test_auth_failure_flood__429_with_retry_after_valid_key_unaffected(plane: Plane) -> None:
    with plane.client() as ok:
        assert ok.get("/api/v1/projects").status_code == 200  # authenticated (and cached) before the flood
    statuses = []
    with plane.client("fy_admin_" + secrets.token_urlsafe(32)) as bad:
        for _ in range(AUTH_FAILURE_LIMIT + 3):
            r = bad.get("/api/v1/projects")
            statuses.append(r.status_code)
    assert statuses == [401] * AUTH_FAILURE_LIMIT + [429] * 3
    assert int(r.headers["retry-after"]) >= 1
    assert r.json()["code"] == "rate_limited"
    with plane.client() as ok:
        assert ok.get("/api/v1/projects").status_code == 200
    client = redis.Redis.from_url(REDIS_URL)
    try:
        (name,) = client.keys(f"{plane.prefix}:ratelimit:authfail:*")
        assert client.ttl(name) > 0
    finally:
        client.close()


# --- settings errors never show a secret --------------------------------------------------------------

BOOTSTRAP_SECRET = "fy_admin_" + "Kq7" + "Zw9Xv2SECRETbootstrapFRAGMENT"  # weak on purpose: refused
DATABASE_PASSWORD = "dbPASSWORDhunter2x9"
REDIS_PASSWORD = "redisPASSWORDq8w7e6"


def _fragments(secret: str) -> list[str]:
    return [secret[i : i + 6] for i in range(len(secret) - 5)]


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLAGYARD_")}
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=60
    )


ENTRY_POINTS = {
    "control plane (uvicorn factory)": [
        "-m",
        "uvicorn",
        "--factory",
        "flagyard.control_plane.main:app_from_env",
        "--port",
        "1",
    ],
    "syncer": ["-m", "flagyard.syncer", "reconcile"],
    "outbox relay": ["-m", "flagyard.control_plane.outbox", "--once"],
    "data plane": ["-m", "flagyard.data_plane"],
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("problem", ["production refuses", "a bad number"])
def test_settings_error__no_fragment_of_any_secret_in_the_output(entry: str, problem: str) -> None:
    env = {
        "FLAGYARD_BOOTSTRAP_ADMIN_KEY": BOOTSTRAP_SECRET,
        "FLAGYARD_DATABASE_URL": f"postgresql://flagyard:{DATABASE_PASSWORD}@127.0.0.1:1/flagyard",
        "FLAGYARD_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:1/0",
        # A good one: its setting's name would match the fragment "SECRET" of BOOTSTRAP_SECRET.
        "FLAGYARD_WEBHOOK_SECRET_KEY": "Vd3kQ9xL2mP7wR4tY8bN1cF6hJ0sZ5gA-Ue_Ko2Xi7",
    }
    if problem == "production refuses":
        env["FLAGYARD_MODE"] = "production"
        # The syncer reads no bootstrap key: it refuses the template's database host (its password kept, so
        # a leak would show); the data plane reads neither.
        env["FLAGYARD_DATABASE_URL"] = (
            f"postgresql://flagyard:{DATABASE_PASSWORD}@postgres.invalid:1/flagyard"
        )
        env["FLAGYARD_GRPC_PORT"] = "not-a-port"
    else:
        env["FLAGYARD_DB_POOL_SIZE"] = "lots"
        env["FLAGYARD_GRPC_PORT"] = "not-a-port"
    proc = _run(ENTRY_POINTS[entry], env)
    output = proc.stdout + proc.stderr
    assert proc.returncode != 0, output[-500:]
    assert "FLAGYARD_" in output  # it says which setting is wrong
    for secret in (BOOTSTRAP_SECRET.removeprefix("fy_admin_"), DATABASE_PASSWORD, REDIS_PASSWORD):
        shown = [f for f in _fragments(secret) if f in output]
        assert shown == [], (entry, shown)
