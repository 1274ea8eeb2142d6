"""Rate limits: a sliding log (no 2× burst at a window's edge), every key under the deployment's Redis
prefix, and failed authentications limited per client address."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import redis
import redis.asyncio
import sqlalchemy as sa
from contract_helpers import CheckedClient
from cp_helpers import ADMIN_KEY, REDIS_URL, auth

from flagyard.control_plane.exceptions import RateLimitedError
from flagyard.control_plane.main import create_app
from flagyard.control_plane.ratelimit import RateLimiter
from flagyard.control_plane.settings import Settings


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def limiter(conn: redis.Redis, clock: Clock, prefix: str, **kwargs: int) -> RateLimiter:
    return RateLimiter(
        conn,
        kwargs.get("limit", 3),
        kwargs.get("window", 10),
        prefix,
        async_connection=lambda: redis.asyncio.Redis.from_url(REDIS_URL),
        auth_failure_limit=kwargs.get("auth_failure_limit", 0),
        auth_failure_window=kwargs.get("auth_failure_window", 10),
        clock=clock,
    )


def test_window_edge__limit_at_the_end_of_one_window__none_more_at_the_start_of_the_next(
    redis_conn: redis.Redis,
) -> None:
    clock = Clock(1_000_009.5)  # late in the fixed window [1_000_000, 1_000_010)
    rl = limiter(redis_conn, clock, f"t{uuid.uuid4().hex[:8]}")
    for _ in range(3):
        rl.check(7)
    clock.now = 1_000_010.5  # a new fixed window: a fixed counter would let 3 more through here
    with pytest.raises(RateLimitedError) as exc:
        rl.check(7)
    assert exc.value.retry_after == 9  # the first of the three leaves the window at 1_000_019.5
    clock.now = 1_000_019.6  # the three left the window together
    for _ in range(3):
        rl.check(7)
    with pytest.raises(RateLimitedError):
        rl.check(7)


def test_window__refused_requests__not_logged(redis_conn: redis.Redis) -> None:
    clock = Clock(2_000_000.0)
    rl = limiter(redis_conn, clock, f"t{uuid.uuid4().hex[:8]}", limit=2)
    rl.check(1)
    rl.check(1)
    for _ in range(50):
        with pytest.raises(RateLimitedError):
            rl.check(1)
    assert redis_conn.zcard(rl.key_name(1)) == 2
    clock.now += 10.01
    rl.check(1)


def test_async_and_sync__share_one_log(redis_conn: redis.Redis) -> None:
    clock = Clock(3_000_000.0)
    rl = limiter(redis_conn, clock, f"t{uuid.uuid4().hex[:8]}", limit=2)

    async def run() -> None:
        await rl.check_async(5)
        rl.check(5)
        with pytest.raises(RateLimitedError):
            await rl.check_async(5)
        await rl.aclose()

    asyncio.run(run())


def test_keys__all_under_the_deployment_prefix__two_prefixes_do_not_throttle_each_other(
    redis_conn: redis.Redis,
) -> None:
    redis_conn.delete(*redis_conn.keys("deploy-*"), "unused")
    clock = Clock(4_000_000.0)
    a = limiter(redis_conn, clock, "deploy-a", limit=1, auth_failure_limit=1)
    b = limiter(redis_conn, clock, "deploy-b", limit=1, auth_failure_limit=1)
    a.check(1)
    b.check(1)  # the same key id in another deployment: its own counter
    with pytest.raises(RateLimitedError):
        a.fail_auth("10.0.0.1") or a.fail_auth("10.0.0.1")
    b.fail_auth("10.0.0.1")
    names = sorted(k.decode() for k in redis_conn.keys("deploy-*"))
    assert names == [
        "deploy-a:ratelimit:authfail:10.0.0.1",
        "deploy-a:ratelimit:key:1",
        "deploy-b:ratelimit:authfail:10.0.0.1",
        "deploy-b:ratelimit:key:1",
    ]
    assert all(0 < redis_conn.pttl(name) <= 10_000 for name in names)


def test_auth_failures__flood_from_one_address__429_with_retry_after(
    settings: Settings, engine: sa.Engine
) -> None:
    guarded = settings.model_copy(update={"auth_failure_limit": 3, "auth_failure_window_seconds": 60})
    with CheckedClient(create_app(guarded)) as c:
        statuses = [
            c.get("/api/v1/projects", headers=auth("fy_admin_" + "x" * 43)).status_code for _ in range(3)
        ]
        flood = c.get("/api/v1/projects/p/flags", headers=auth("fy_admin_" + "y" * 43))
        missing = c.post("/api/v1/projects", json={"key": "p", "name": "P"})
    assert statuses == [401, 401, 401]
    assert flood.status_code == 429
    assert flood.json()["code"] == "rate_limited"
    assert 1 <= int(flood.headers["retry-after"]) <= 60
    assert missing.status_code == 429


def test_auth_failures__valid_requests_not_charged_and_cached_key_passes_while_blocked(
    settings: Settings, redis_conn: redis.Redis, engine: sa.Engine
) -> None:
    guarded = settings.model_copy(update={"auth_failure_limit": 2, "auth_failure_window_seconds": 60})
    with CheckedClient(create_app(guarded)) as c:
        ok = [c.get("/api/v1/projects", headers=auth(ADMIN_KEY)).status_code for _ in range(10)]
        bad = [c.get("/api/v1/projects", headers=auth("fy_reader_nope")).status_code for _ in range(3)]
        still = c.get("/api/v1/projects", headers=auth(ADMIN_KEY))
    assert ok == [200] * 10
    assert bad == [401, 401, 429]  # the ten successes were not counted against the address
    assert still.status_code == 200  # authenticated within FLAGYARD_AUTH_CACHE_SECONDS
    (name,) = [k.decode() for k in redis_conn.keys("*authfail*")]
    assert name == "flagyard:ratelimit:authfail:testclient"
    assert redis_conn.zcard(name) == 2
