"""Fixtures: a fresh PostgreSQL database per test session (Alembic ``upgrade head`` from scratch),
emptied before every test; a dedicated Redis database index flushed before every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa
from alembic import command
from contract_helpers import CheckedClient
from cp_helpers import ADMIN_KEY, REDIS_URL, Api, alembic_config, create_database, database_url, drop_database
from cp_sampling_helpers import SamplingStack, sampling_stack
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flagyard.control_plane.main import create_app
from flagyard.control_plane.services.keys import ensure_bootstrap_key
from flagyard.control_plane.settings import Settings

TABLES = (
    "projects, environments, flags, flag_environments, flag_versions, segments, segment_versions, audit_log, "
    "webhook_subscriptions, webhook_deliveries, "
    "outbox, api_keys, idempotency_records, console_sessions, scheduled_changes"
)


@pytest.fixture(scope="session")
def db_url() -> Iterator[str]:
    name = create_database()
    url = database_url(name)
    try:
        command.upgrade(alembic_config(url), "head")
        yield url
    finally:
        drop_database(name)


@pytest.fixture(scope="session")
def settings(db_url: str) -> Settings:
    return Settings(
        database_url=db_url,  # type: ignore[arg-type]
        redis_url=REDIS_URL,  # type: ignore[arg-type]
        outbox_dispatch="inline",
        outbox_relay_interval_seconds=0,
        scheduler_interval_seconds=0,
        rate_limit_requests=0,
        auth_failure_limit=0,
        access_log=False,
        log_level="WARNING",
        db_pool_size=4,
        webhook_poll_interval_seconds=0,  # tests of webhooks drive delivery themselves
        webhook_allow_private=True,
    )


@pytest.fixture(scope="session")
def engine(db_url: str) -> Iterator[sa.Engine]:
    eng = sa.create_engine(db_url, pool_size=2)
    yield eng
    eng.dispose()


@pytest.fixture(scope="session")
def redis_conn() -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(REDIS_URL)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture(scope="session")
def client(app: FastAPI) -> Iterator[TestClient]:
    with CheckedClient(app, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c


@pytest.fixture(autouse=True)
def _clean(request: pytest.FixtureRequest) -> None:
    """Empty every table and the Redis database, then re-insert the bootstrap admin key."""
    if "engine" not in request.fixturenames and "client" not in request.fixturenames:
        return
    eng: sa.Engine = request.getfixturevalue("engine")
    with eng.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {TABLES} RESTART IDENTITY CASCADE"))
    with sa.orm.Session(eng) as session, session.begin():
        ensure_bootstrap_key(session, ADMIN_KEY)
    request.getfixturevalue("redis_conn").flushdb()
    if "client" in request.fixturenames:
        request.getfixturevalue("app").state.flagyard.key_cache.clear()


@pytest.fixture
def api(client: TestClient) -> Api:
    return Api(client)


@pytest.fixture
def sampling(
    client: TestClient, api: Api, engine: sa.Engine, redis_conn: redis.Redis, settings: Settings
) -> Iterator[SamplingStack]:
    """The context-sampling tests' stack: API, database, Redis, and the syncer the sync jobs use."""
    with sampling_stack(client, api, engine, redis_conn, settings) as stack:
        yield stack
