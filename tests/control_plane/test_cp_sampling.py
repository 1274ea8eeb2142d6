"""An environment's context sampling (opt-in): the ``sampling`` field of create/update/read, its checks (422
with pointers), its server-made salt (kept while sampling stays on, never shown, audited or logged), and its
publication by the real syncer: the policy reaches Redis through the outbox job of the environment
change, and is withdrawn with the sample when sampling is turned off or the environment is deleted."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import redis.asyncio
import sqlalchemy as sa
from cp_helpers import REDIS_URL, Api, rows
from fastapi.testclient import TestClient
from rq import Queue, SimpleWorker
from sqlalchemy.orm import sessionmaker

from flagyard.contracts.sampling import (
    SamplingPolicy,
    get_policy,
    policy_key,
    read_samples,
    sampling_keys,
    store_samples,
)
from flagyard.control_plane.settings import Settings
from flagyard.rule_engine import limits
from flagyard.syncer import jobs
from flagyard.syncer.core import Syncer

P = "/api/v1/projects"
ENVS = f"{P}/shop/environments"
PROD = f"{ENVS}/prod"
POLICY = {"attributes": ["plan", "country"], "hashed": ["targeting_key", "user.email"]}


@pytest.fixture
def syncer(engine: sa.Engine, redis_conn: redis.Redis, settings: Settings) -> Iterator[Syncer]:
    """The real syncer, run by a real RQ worker over the queue the control plane's outbox feeds."""
    instance = Syncer(sessionmaker(engine), redis_conn, settings.redis_prefix)
    jobs.configure(instance)
    yield instance
    jobs.configure(None)


def run_jobs(redis_conn: redis.Redis, settings: Settings) -> None:
    queue = Queue(settings.sync_queue, connection=redis_conn)
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert queue.count == 0


def patch(client: TestClient, api: Api, body: dict[str, Any], path: str = PROD) -> dict[str, Any]:
    r = client.patch(path, json=body, headers={"If-Match": api.etag(path)})
    assert r.status_code == 200, r.text
    return dict(r.json())


def salt_of(engine: sa.Engine, key: str = "prod") -> str | None:
    [(salt,)] = rows(engine, "SELECT sampling_salt FROM environments WHERE key = :k", k=key)
    return salt  # type: ignore[no-any-return]


def env_id(engine: sa.Engine, key: str = "prod") -> str:
    return str(rows(engine, "SELECT id FROM environments WHERE key = :k", k=key)[0][0])


def published(settings: Settings, env: str) -> SamplingPolicy | None:
    async def read() -> SamplingPolicy | None:
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            return await get_policy(client, settings.redis_prefix, env)
        finally:
            await client.aclose()

    return asyncio.run(read())


def store(settings: Settings, env: str, samples: list[dict[str, Any]]) -> None:
    """Write a sample as a data plane does (the contract's own writer)."""

    async def write() -> None:
        client = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            await store_samples(client, settings.redis_prefix, env, samples, now_ms=1_000)
        finally:
            await client.aclose()

    asyncio.run(write())


def details(response: Any) -> list[tuple[str, str]]:
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "validation_error"
    return [(d["path"], d["message"]) for d in response.json()["details"]]


# --- the API field --------------------------------------------------------------------------------


def test_sampling__default__off_everywhere(client: TestClient, api: Api, engine: sa.Engine) -> None:
    api.project()
    assert client.get(PROD).json()["sampling"] is None
    assert [e["sampling"] for e in client.get(ENVS).json()["items"]] == [None, None]
    assert salt_of(engine) is None


def test_sampling__created_on__shown_without_salt_and_salt_stored(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project(envs=())
    r = client.post(ENVS, json={"key": "prod", "name": "Prod", "sampling": POLICY})
    assert r.status_code == 201, r.text
    assert r.json()["sampling"] == POLICY
    assert client.get(PROD).json()["sampling"] == POLICY
    salt = salt_of(engine)
    assert salt is not None
    assert re.fullmatch(r"[0-9a-f]{32}", salt)
    assert salt not in r.text
    # An environment without flags or segments still gets a job, so the syncer publishes the policy.
    assert ("environment", "prod", False) in rows(
        engine, "SELECT entity_type, entity_key, deleted FROM outbox"
    )


@pytest.mark.parametrize(
    ("sampling", "expected"),
    [
        (
            {"attributes": ["plan", "country", "bad attr"], "hashed": []},
            [("/sampling/attributes/2", "not an attribute path (1-4 dotted parts of A-Z a-z 0-9 _ $ -)")],
        ),
        (
            {"attributes": ["plan"], "hashed": ["email", "plan"]},
            [("/sampling/hashed/1", "'plan' is named twice")],
        ),
        (
            {"attributes": ["a.b.c.d.e"], "hashed": [""]},
            [
                ("/sampling/attributes/0", "not an attribute path (1-4 dotted parts of A-Z a-z 0-9 _ $ -)"),
                ("/sampling/hashed/0", "not an attribute path (1-4 dotted parts of A-Z a-z 0-9 _ $ -)"),
            ],
        ),
        (
            {"attributes": [f"a{i}" for i in range(limits.MAX_SAMPLE_ATTRIBUTES)], "hashed": ["email"]},
            [
                (
                    "/sampling/attributes",
                    f"{limits.MAX_SAMPLE_ATTRIBUTES + 1} attributes, at most {limits.MAX_SAMPLE_ATTRIBUTES}",
                )
            ],
        ),
        (
            {"attributes": [], "hashed": []},
            [("/sampling", "names no attribute; send null to turn sampling off")],
        ),
    ],
    ids=["bad-path", "duplicate", "two-bad", "too-many", "empty"],
)
def test_sampling__invalid_policy__422_with_pointers_and_nothing_changed(
    client: TestClient, api: Api, engine: sa.Engine, sampling: dict[str, Any], expected: list[Any]
) -> None:
    api.project()
    assert details(client.patch(PROD, json={"sampling": sampling}, headers={"If-Match": '"1"'})) == expected
    assert details(client.post(ENVS, json={"key": "qa", "name": "QA", "sampling": sampling})) == expected
    assert client.get(PROD).json()["revision"] == 1
    assert rows(engine, "SELECT count(*) FROM environments WHERE sampling IS NOT NULL")[0][0] == 0


def test_sampling__salt_or_non_string__refused_by_the_schema(client: TestClient, api: Api) -> None:
    api.project()
    r = client.patch(
        PROD, json={"sampling": {"attributes": ["plan"], "salt": "ab" * 16}}, headers={"If-Match": '"1"'}
    )
    assert ("/sampling/salt", "unknown field") in details(r)
    r = client.patch(PROD, json={"sampling": {"attributes": [7]}}, headers={"If-Match": '"1"'})
    assert [path for path, _ in details(r)] == ["/sampling/attributes/0"]


def test_sampling__updated__salt_kept_while_on_dropped_when_off_new_when_on_again(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    on = patch(client, api, {"sampling": POLICY})
    assert (on["sampling"], on["revision"]) == (POLICY, 2)
    salt = salt_of(engine)
    assert salt is not None

    changed = patch(client, api, {"sampling": {"attributes": ["plan"], "hashed": ["targeting_key"]}})
    assert changed["sampling"] == {"attributes": ["plan"], "hashed": ["targeting_key"]}
    assert salt_of(engine) == salt  # hashes in the sample stay comparable

    same = patch(client, api, {"name": "PROD", "sampling": changed["sampling"]})
    assert same["revision"] == changed["revision"] == 3  # nothing changed, no new revision

    untouched = patch(client, api, {"description": "live"})
    assert untouched["sampling"] == changed["sampling"]
    assert salt_of(engine) == salt

    off = patch(client, api, {"sampling": None})
    assert off["sampling"] is None
    assert salt_of(engine) is None

    again = patch(client, api, {"sampling": POLICY})
    assert again["sampling"] == POLICY
    renewed = salt_of(engine)
    assert renewed is not None
    assert renewed != salt


def test_sampling__changed__audited_without_salt_and_one_environment_job_per_change(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    patch(client, api, {"sampling": POLICY})
    patch(client, api, {"description": "no sampling change"})
    patch(client, api, {"sampling": None})
    entries = client.get(f"{P}/shop/audit").json()["items"]
    updates = [e for e in entries if e["resource_type"] == "environment" and e["action"] == "updated"]
    paths = sorted(d["path"] for e in updates for d in e["diff"] if d["path"].startswith("/sampling"))
    assert paths == ["/sampling", "/sampling"], updates
    jobs_ = rows(
        engine, "SELECT version FROM outbox WHERE entity_type = 'environment' AND NOT deleted ORDER BY id"
    )
    assert [v for (v,) in jobs_] == [
        2,
        4,
    ]  # sampling on (revision 2) and off (revision 4), not the description


def test_sampling__writer_key__403(client: TestClient, api: Api) -> None:
    api.project()
    writer = api.key("writer")
    r = client.patch(
        PROD,
        json={"sampling": POLICY},
        headers={"If-Match": '"1"', "Authorization": f"Bearer {writer}"},
    )
    assert r.status_code == 403, r.text


def test_sampling__salt__never_in_responses_audit_idempotency_records_or_logs(
    client: TestClient,
    api: Api,
    engine: sa.Engine,
    syncer: Syncer,
    redis_conn: redis.Redis,
    settings: Settings,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    api.project(envs=())
    created = client.post(
        ENVS, json={"key": "prod", "name": "Prod", "sampling": POLICY}, headers={"Idempotency-Key": "c1"}
    )
    assert created.status_code == 201, created.text
    updated = patch(client, api, {"sampling": {"attributes": ["plan"], "hashed": ["email"]}})
    run_jobs(redis_conn, settings)
    salt = salt_of(engine)
    assert salt is not None
    assert published(settings, env_id(engine)) == SamplingPolicy(("plan",), ("email",), salt)  # it is real
    seen = [
        created.text,
        json.dumps(updated),
        client.get(PROD).text,
        client.get(ENVS).text,
        client.get(f"{P}/shop/audit").text,
        client.get("/api/v1/audit").text,
        repr(published(settings, env_id(engine))),
        caplog.text,
        capsys.readouterr().out,
        json.dumps([list(map(str, row)) for row in rows(engine, "SELECT * FROM audit_log")]),
        json.dumps([list(map(str, row)) for row in rows(engine, "SELECT * FROM idempotency_records")]),
        json.dumps([list(map(str, row)) for row in rows(engine, "SELECT * FROM outbox")]),
    ]
    for text in seen:
        assert salt not in text
        assert salt[:12] not in text


# --- the syncer -----------------------------------------------------------------------------------


def test_syncer__turned_on_then_changed__policy_published_with_the_same_salt(
    client: TestClient,
    api: Api,
    engine: sa.Engine,
    syncer: Syncer,
    redis_conn: redis.Redis,
    settings: Settings,
) -> None:
    api.project()
    api.flag()
    run_jobs(redis_conn, settings)
    prod = env_id(engine)
    assert published(settings, prod) is None

    patch(client, api, {"sampling": POLICY})
    run_jobs(redis_conn, settings)
    salt = salt_of(engine)
    assert salt is not None
    assert published(settings, prod) == SamplingPolicy(
        ("plan", "country"), ("targeting_key", "user.email"), salt
    )
    assert published(settings, env_id(engine, "dev")) is None

    patch(client, api, {"sampling": {"attributes": ["country"], "hashed": ["targeting_key"]}})
    run_jobs(redis_conn, settings)
    assert published(settings, prod) == SamplingPolicy(("country",), ("targeting_key",), salt)


def test_syncer__turned_off__policy_and_stored_sample_deleted(
    client: TestClient,
    api: Api,
    engine: sa.Engine,
    syncer: Syncer,
    redis_conn: redis.Redis,
    settings: Settings,
) -> None:
    api.project()
    patch(client, api, {"sampling": POLICY})
    run_jobs(redis_conn, settings)
    prod = env_id(engine)
    store(settings, prod, [{"plan": "pro"}, {"plan": "free"}])
    assert len(read_samples(redis_conn, settings.redis_prefix, prod)) == 2

    patch(client, api, {"sampling": None})
    run_jobs(redis_conn, settings)
    assert published(settings, prod) is None
    assert redis_conn.exists(*sampling_keys(settings.redis_prefix, prod)) == 0


def test_syncer__created_with_sampling_and_no_flags__policy_published(
    client: TestClient,
    api: Api,
    engine: sa.Engine,
    syncer: Syncer,
    redis_conn: redis.Redis,
    settings: Settings,
) -> None:
    api.project(envs=())
    r = client.post(ENVS, json={"key": "prod", "name": "Prod", "sampling": POLICY})
    assert r.status_code == 201, r.text
    run_jobs(redis_conn, settings)
    policy = published(settings, env_id(engine))
    assert policy is not None
    assert policy.hashed == ("targeting_key", "user.email")


def test_syncer__environment_deleted__sampling_keys_gone(
    client: TestClient,
    api: Api,
    engine: sa.Engine,
    syncer: Syncer,
    redis_conn: redis.Redis,
    settings: Settings,
) -> None:
    api.project()
    api.flag()
    patch(client, api, {"sampling": POLICY})
    run_jobs(redis_conn, settings)
    prod = env_id(engine)
    store(settings, prod, [{"plan": "pro"}])
    assert redis_conn.exists(*sampling_keys(settings.redis_prefix, prod)) == 3

    r = client.delete(PROD, headers={"If-Match": api.etag(PROD)})
    assert r.status_code == 204, r.text
    run_jobs(redis_conn, settings)
    assert redis_conn.exists(*sampling_keys(settings.redis_prefix, prod)) == 0


def test_syncer__project_deleted__every_environment_s_sampling_keys_gone(
    client: TestClient,
    api: Api,
    engine: sa.Engine,
    syncer: Syncer,
    redis_conn: redis.Redis,
    settings: Settings,
) -> None:
    api.project()
    patch(client, api, {"sampling": POLICY})
    patch(client, api, {"sampling": POLICY}, path=f"{ENVS}/dev")
    run_jobs(redis_conn, settings)
    ids = [env_id(engine, "prod"), env_id(engine, "dev")]
    assert all(published(settings, i) is not None for i in ids)
    r = client.delete(f"{P}/shop", headers={"If-Match": api.etag(f"{P}/shop")})
    assert r.status_code == 204, r.text
    run_jobs(redis_conn, settings)
    for i in ids:
        assert redis_conn.exists(*sampling_keys(settings.redis_prefix, i)) == 0


def test_reconcile__policy_lost_changed_or_left_over__repaired(
    client: TestClient,
    api: Api,
    engine: sa.Engine,
    syncer: Syncer,
    redis_conn: redis.Redis,
    settings: Settings,
) -> None:
    api.project()
    api.flag()
    patch(client, api, {"sampling": POLICY})
    syncer.reconcile()
    prod, dev = env_id(engine), env_id(engine, "dev")
    salt = salt_of(engine)
    wanted = SamplingPolicy(("plan", "country"), ("targeting_key", "user.email"), str(salt))
    assert published(settings, prod) == wanted
    assert syncer.reconcile() == 0  # in sync: nothing to repair

    redis_conn.delete(policy_key(settings.redis_prefix, prod))  # lost
    redis_conn.set(policy_key(settings.redis_prefix, dev), b"{}")  # not the contract, and dev does not sample
    store(settings, dev, [{"plan": "pro"}])  # a sample left over in an environment that does not sample
    assert syncer.reconcile() == 2
    assert published(settings, prod) == wanted
    assert redis_conn.exists(*sampling_keys(settings.redis_prefix, dev)) == 0

    redis_conn.set(
        policy_key(settings.redis_prefix, prod),
        b'{"attributes":["plan"],"hashed":[],"salt":"' + b"0" * 32 + b'"}',
    )
    assert syncer.reconcile() == 1
    assert published(settings, prod) == wanted


def test_restore__redis_lost_everything__policy_restored_with_the_environment(
    client: TestClient,
    api: Api,
    engine: sa.Engine,
    syncer: Syncer,
    redis_conn: redis.Redis,
    settings: Settings,
) -> None:
    api.project()
    api.flag()
    patch(client, api, {"sampling": POLICY})
    run_jobs(redis_conn, settings)
    prod = env_id(engine)
    assert published(settings, prod) is not None
    redis_conn.flushdb()
    syncer.reconcile()
    policy = published(settings, prod)
    assert policy is not None
    assert policy.salt == salt_of(engine)


def test_syncer__stored_policy_out_of_contract__logged_without_values_and_redis_kept(
    client: TestClient,
    api: Api,
    engine: sa.Engine,
    syncer: Syncer,
    redis_conn: redis.Redis,
    settings: Settings,
) -> None:
    api.project()
    patch(client, api, {"sampling": POLICY})
    run_jobs(redis_conn, settings)
    prod = env_id(engine)
    before = redis_conn.get(policy_key(settings.redis_prefix, prod))
    with engine.begin() as conn:  # written past the API
        conn.execute(
            sa.text("UPDATE environments SET sampling = CAST(:s AS json) WHERE key = 'prod'"),
            {"s": json.dumps({"attributes": ["bad attr"], "hashed": []})},
        )
    assert syncer.reconcile() == 0
    assert redis_conn.get(policy_key(settings.redis_prefix, prod)) == before
