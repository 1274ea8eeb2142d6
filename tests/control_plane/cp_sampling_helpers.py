"""Helpers of the control plane's context-sampling tests (a uniquely named module, importable next to
conftest, whose ``sampling`` fixture builds a :class:`SamplingStack`): the API, PostgreSQL and Redis of one
test, and the real syncer run by a real RQ worker over the queue the control plane's outbox feeds."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
import sqlalchemy as sa
from cp_helpers import REDIS_URL, Api, rows
from fastapi.testclient import TestClient
from rq import Queue, SimpleWorker
from sqlalchemy.orm import sessionmaker

from flagyard.contracts.sampling import SamplingPolicy, get_policy, sampling_keys, store_samples
from flagyard.control_plane.settings import Settings
from flagyard.syncer import jobs
from flagyard.syncer.core import Syncer

P = "/api/v1/projects"
ENVS = f"{P}/shop/environments"
PROD = f"{ENVS}/prod"
POLICY = {"attributes": ["plan", "country"], "hashed": ["targeting_key", "user.email"]}


@dataclass
class SamplingStack:
    """One test's control plane (TestClient and :class:`Api`), database, Redis and syncer."""

    client: TestClient
    api: Api
    engine: sa.Engine
    redis: redis.Redis
    settings: Settings
    syncer: Syncer

    @property
    def prefix(self) -> str:
        return self.settings.redis_prefix

    def patch(self, body: dict[str, Any], path: str = PROD) -> dict[str, Any]:
        """PATCH ``path`` with its current ETag; the updated resource."""
        r = self.client.patch(path, json=body, headers={"If-Match": self.api.etag(path)})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def create_prod(self, **headers: str) -> Any:
        """POST environment prod of project shop with sampling ``POLICY``; the 201 response."""
        r = self.client.post(ENVS, json={"key": "prod", "name": "Prod", "sampling": POLICY}, headers=headers)
        assert r.status_code == 201, r.text
        return r

    def run_jobs(self) -> None:
        """Run every queued sync job in a burst worker, in this process (so with this syncer)."""
        queue = Queue(self.settings.sync_queue, connection=self.redis)
        SimpleWorker([queue], connection=self.redis).work(burst=True)
        assert queue.count == 0

    def sample_prod(self) -> str:
        """Turn sampling ``POLICY`` on in prod and run the jobs: prod's id, whose policy is now published."""
        self.patch({"sampling": POLICY})
        self.run_jobs()
        return self.env_id()

    def salt(self, key: str = "prod") -> str | None:
        [(salt,)] = rows(self.engine, "SELECT sampling_salt FROM environments WHERE key = :k", k=key)
        return salt  # type: ignore[no-any-return]

    def env_id(self, key: str = "prod") -> str:
        return str(rows(self.engine, "SELECT id FROM environments WHERE key = :k", k=key)[0][0])

    def published(self, env: str) -> SamplingPolicy | None:
        """The policy Redis holds for ``env``, read with the contract's own reader."""

        async def read() -> SamplingPolicy | None:
            client = redis.asyncio.Redis.from_url(REDIS_URL)
            try:
                return await get_policy(client, self.prefix, env)
            finally:
                await client.aclose()

        return asyncio.run(read())

    def store(self, env: str, samples: list[dict[str, Any]]) -> None:
        """Write a sample as a data plane does (the contract's own writer)."""

        async def write() -> None:
            client = redis.asyncio.Redis.from_url(REDIS_URL)
            try:
                await store_samples(client, self.prefix, env, samples, now_ms=1_000)
            finally:
                await client.aclose()

        asyncio.run(write())

    def sampling_keys_held(self, env: str) -> int:
        """How many of ``env``'s sampling keys (policy, sample, seen) exist in Redis."""
        return int(self.redis.exists(*sampling_keys(self.prefix, env)))


@contextmanager
def sampling_stack(
    client: TestClient, api: Api, engine: sa.Engine, redis_conn: redis.Redis, settings: Settings
) -> Iterator[SamplingStack]:
    """A :class:`SamplingStack` whose syncer the jobs of this process use until it closes."""
    syncer = Syncer(sessionmaker(engine), redis_conn, settings.redis_prefix)
    jobs.configure(syncer)
    try:
        yield SamplingStack(client, api, engine, redis_conn, settings, syncer)
    finally:
        jobs.configure(None)
