"""Rate limiting of the admin API in Redis, shared by all workers: per key, and failed authentications
per client address.

Each limit is a sliding log: one sorted set per subject holding the times of the requests it let
through within the last window, trimmed, counted and appended by one Lua script (one round trip, from
worker threads or the event loop). Unlike a fixed window, whose counter resets at the window's edge and so
lets 2× the limit through around it, no span of ``window`` seconds ever holds more than ``limit``
requests. Every key lies under the deployment's ``FLAGYARD_REDIS_PREFIX``
(``P:ratelimit:key:{id}``, ``P:ratelimit:authfail:{address}``) and expires one window after its last
request, so the number of keys is bounded by the subjects active within a window; a set holds at most
``limit`` entries.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
import structlog

from flagyard.control_plane.exceptions import RateLimitedError

log = structlog.get_logger("flagyard.ratelimit")

SLIDING_LOG = """
local now = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], now, ARGV[4])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window * 1000))
  return 0
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return math.max(1, math.ceil((tonumber(oldest[2]) + window - now) * 1000))
"""
"""KEYS[1] the subject's log; ARGV now (seconds), window (seconds), limit, a unique member. Returns 0 if
the request is let through (and logged), else the milliseconds until the oldest logged one leaves."""

MAX_ADDRESS_CHARS = 64
_BLOCKED_MAX = 10_000


class RateLimiter:
    """``limit`` requests per key and ``auth_failure_limit`` failed authentications per client address,
    each per its window; 429 with ``Retry-After`` beyond.

    The ``*_async`` methods are for the event loop (their client is made on first use and dropped by
    :meth:`aclose`, since it belongs to the loop it ran on). If Redis is unavailable the limiter lets
    requests through (and logs it): rate limiting protects the API, it must not take it down. An address
    refused for failing authentication is remembered in this process until its retry time, so its further
    attempts are refused without Redis or a key lookup (:meth:`check_address`).
    """

    def __init__(
        self,
        connection: redis.Redis,
        limit: int,
        window: int,
        prefix: str = "flagyard",
        async_connection: Callable[[], redis.asyncio.Redis] | None = None,
        *,
        auth_failure_limit: int = 0,
        auth_failure_window: int = 60,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._redis = connection
        self._async_factory = async_connection
        self._async: redis.asyncio.Redis | None = None
        self.limit = limit
        self.window = window
        self.auth_failure_limit = auth_failure_limit
        self.auth_failure_window = auth_failure_window
        self._prefix = f"{prefix}:ratelimit"
        self._clock = clock
        self._script = connection.register_script(SLIDING_LOG)
        self._async_script: Any = None
        self._blocked: dict[str, float] = {}
        self._lock = threading.Lock()

    def key_name(self, key_id: int) -> str:
        return f"{self._prefix}:key:{key_id}"

    def address_name(self, address: str | None) -> str:
        return f"{self._prefix}:authfail:{_address(address)}"

    # --- per key -------------------------------------------------------------------------------------

    def check(self, key_id: int) -> None:
        if self.limit > 0:
            self._judge(self._run(self.key_name(key_id), self.limit, self.window), self._key_message())

    async def check_async(self, key_id: int) -> None:
        if self.limit > 0:
            wait = await self._run_async(self.key_name(key_id), self.limit, self.window)
            self._judge(wait, self._key_message())

    # --- failed authentication per client address ---------------------------------------------------

    def check_address(self, address: str | None) -> None:
        """Refuse (429) an address this process saw exceed its failure limit, until its retry time."""
        if self.auth_failure_limit <= 0 or not self._blocked:
            return
        until = self._blocked.get(_address(address))
        if until is None:
            return
        now = self._clock()
        if until <= now:
            with self._lock:
                self._blocked.pop(_address(address), None)
            return
        raise RateLimitedError(self._address_message(), max(1, math.ceil(until - now)))

    def fail_auth(self, address: str | None) -> None:
        """Count a failed authentication of ``address``; :class:`RateLimitedError` beyond the limit."""
        if self.auth_failure_limit > 0:
            wait = self._run(self.address_name(address), self.auth_failure_limit, self.auth_failure_window)
            self._judge_address(address, wait)

    async def fail_auth_async(self, address: str | None) -> None:
        if self.auth_failure_limit > 0:
            name = self.address_name(address)
            wait = await self._run_async(name, self.auth_failure_limit, self.auth_failure_window)
            self._judge_address(address, wait)

    async def aclose(self) -> None:
        client, self._async = self._async, None
        self._async_script = None
        if client is not None:
            await client.aclose()

    # --- the script ----------------------------------------------------------------------------------

    def _args(self, limit: int, window: int) -> list[Any]:
        now = self._clock()
        return [repr(now), window, limit, f"{now!r}:{os.urandom(6).hex()}"]

    def _run(self, name: str, limit: int, window: int) -> int:
        """Milliseconds to wait (0: let through); 0 when Redis is unavailable."""
        try:
            return int(self._script(keys=[name], args=self._args(limit, window)))
        except redis.RedisError as exc:
            log.warning("ratelimit.unavailable", error=str(exc))
            return 0

    async def _run_async(self, name: str, limit: int, window: int) -> int:
        if self._async_factory is None:
            raise RuntimeError("this limiter has no asynchronous Redis connection")
        if self._async is None:
            self._async = self._async_factory()
            self._async_script = self._async.register_script(SLIDING_LOG)
        try:
            return int(await self._async_script(keys=[name], args=self._args(limit, window)))
        except redis.RedisError as exc:
            log.warning("ratelimit.unavailable", error=str(exc))
            return 0

    def _key_message(self) -> str:
        return f"rate limit of {self.limit} requests per {self.window} s exceeded"

    def _address_message(self) -> str:
        return (
            f"too many failed authentications from this address "
            f"(at most {self.auth_failure_limit} per {self.auth_failure_window} s)"
        )

    @staticmethod
    def _judge(wait_ms: int, message: str) -> None:
        if wait_ms > 0:
            raise RateLimitedError(message, max(1, math.ceil(wait_ms / 1000)))

    def _judge_address(self, address: str | None, wait_ms: int) -> None:
        if wait_ms <= 0:
            return
        with self._lock:
            if len(self._blocked) >= _BLOCKED_MAX:
                self._blocked.clear()
            self._blocked[_address(address)] = self._clock() + wait_ms / 1000
        self._judge(wait_ms, self._address_message())


def _address(address: str | None) -> str:
    return (address or "unknown")[:MAX_ADDRESS_CHARS]
