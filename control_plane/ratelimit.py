"""Per-key rate limiting of the admin API: a fixed window counter in Redis, shared by all workers."""

from __future__ import annotations

import math
import time

import redis
import structlog

from flagyard.control_plane.exceptions import RateLimitedError

log = structlog.get_logger("flagyard.ratelimit")


class RateLimiter:
    """``limit`` requests per key per ``window`` seconds; 429 with ``Retry-After`` beyond.

    If Redis is unavailable the limiter lets requests through (and logs it): rate limiting protects the
    API, it must not take it down.
    """

    def __init__(
        self, connection: redis.Redis, limit: int, window: int, prefix: str = "flagyard:ratelimit"
    ) -> None:
        self._redis = connection
        self.limit = limit
        self.window = window
        self._prefix = prefix

    def check(self, key_id: int) -> None:
        if self.limit <= 0:
            return
        now = time.time()
        slot = int(now // self.window)
        name = f"{self._prefix}:{key_id}:{slot}"
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.incr(name)
            pipe.expire(name, self.window + 1)
            count = int(pipe.execute()[0])
        except redis.RedisError as exc:
            log.warning("ratelimit.unavailable", error=str(exc))
            return
        if count > self.limit:
            retry_after = max(1, math.ceil((slot + 1) * self.window - now))
            raise RateLimitedError(
                f"rate limit of {self.limit} requests per {self.window} s exceeded", retry_after
            )
