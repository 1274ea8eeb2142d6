"""Per-key rate limiting of the admin API: a fixed window counter in Redis, shared by all workers."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TypeVar

import redis
import redis.asyncio
import structlog

from flagyard.control_plane.exceptions import RateLimitedError

log = structlog.get_logger("flagyard.ratelimit")

_Pipeline = TypeVar("_Pipeline", redis.client.Pipeline, redis.asyncio.client.Pipeline)


class RateLimiter:
    """``limit`` requests per key per ``window`` seconds; 429 with ``Retry-After`` beyond.

    :meth:`check` is for worker threads, :meth:`check_async` for the event loop (its client is made on
    first use and dropped by :meth:`aclose`, since it belongs to the loop it ran on). If Redis is
    unavailable the limiter lets requests through (and logs it): rate limiting protects the API, it must
    not take it down.
    """

    def __init__(
        self,
        connection: redis.Redis,
        limit: int,
        window: int,
        prefix: str = "flagyard:ratelimit",
        async_connection: Callable[[], redis.asyncio.Redis] | None = None,
    ) -> None:
        self._redis = connection
        self._async_factory = async_connection
        self._async: redis.asyncio.Redis | None = None
        self.limit = limit
        self.window = window
        self._prefix = prefix

    def check(self, key_id: int) -> None:
        if self.limit <= 0:
            return
        now = time.time()
        name, slot = self._counter(key_id, now)
        try:
            count = int(self._count(self._redis.pipeline(transaction=False), name).execute()[0])
        except redis.RedisError as exc:
            log.warning("ratelimit.unavailable", error=str(exc))
            return
        self._judge(count, slot, now)

    async def check_async(self, key_id: int) -> None:
        if self.limit <= 0:
            return
        if self._async_factory is None:
            raise RuntimeError("this limiter has no asynchronous Redis connection")
        if self._async is None:
            self._async = self._async_factory()
        now = time.time()
        name, slot = self._counter(key_id, now)
        try:
            count = int((await self._count(self._async.pipeline(transaction=False), name).execute())[0])
        except redis.RedisError as exc:
            log.warning("ratelimit.unavailable", error=str(exc))
            return
        self._judge(count, slot, now)

    async def aclose(self) -> None:
        client, self._async = self._async, None
        if client is not None:
            await client.aclose()

    def _count(self, pipe: _Pipeline, name: str) -> _Pipeline:
        """Queue the window counter's increment (and its expiry) on ``pipe``."""
        pipe.incr(name)
        pipe.expire(name, self.window + 1)
        return pipe

    def _counter(self, key_id: int, now: float) -> tuple[str, int]:
        slot = int(now // self.window)
        return f"{self._prefix}:{key_id}:{slot}", slot

    def _judge(self, count: int, slot: int, now: float) -> None:
        if count > self.limit:
            retry_after = max(1, math.ceil((slot + 1) * self.window - now))
            raise RateLimitedError(
                f"rate limit of {self.limit} requests per {self.window} s exceeded", retry_after
            )
