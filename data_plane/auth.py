"""SDK keys: ``authorization: Bearer <sdk key>`` → SHA-256 hex → ``P:sdkkeys`` → environment.

Verified keys are cached in process for ``sdk_key_cache_seconds`` (a revoked key stops working within that
time, also on a SyncFlags stream already open: see :meth:`SdkKeys.next_check`), unknown ones for
``sdk_key_negative_cache_seconds``. ``expires_at`` is checked on every call. While Redis is unavailable, or
has lost its data (restarted empty, not yet re-hydrated by the syncer), a key verified before keeps working
(stale); an unverified one is UNAVAILABLE (or unknown if Redis lost its data). Concurrent first uses of one
key share a single Redis read. With ``sdk_key_rate_limit`` set, the calls of one key in one process share
one token bucket whatever their protocol (Flagyard's gRPC, flagd's, OFREP); a stream counts when it opens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from flagyard.contracts.redis import SdkKeyRecord, hash_sdk_key

from .exceptions import (
    RateLimitedError,
    StoreCorruptError,
    StoreUnavailableError,
    UnauthenticatedError,
    UnavailableError,
)
from .store import RedisStore

MAX_CACHED_KEYS = 10_000
MIN_RECHECK_SECONDS = 0.25
"""A long-lived call checks its key again at most this often (with a cache TTL of 0, or close to expiry)."""


class _Cached:
    __slots__ = ("fetched", "record")

    def __init__(self, record: SdkKeyRecord | None, fetched: float) -> None:
        self.record = record
        self.fetched = fetched


def bearer_token(metadata: Iterable[Any] | None) -> str:
    """The SDK key of the ``authorization`` metadata; UnauthenticatedError if missing or malformed."""
    for item in metadata or ():
        key, value = item[0], item[1]
        if key == "authorization":
            if isinstance(value, bytes):
                value = value.decode(errors="replace")
            scheme, _, token = value.strip().partition(" ")
            token = token.strip()
            if scheme.lower() != "bearer" or not token:
                raise UnauthenticatedError("authorization metadata must be 'Bearer <sdk key>'")
            return str(token)
    raise UnauthenticatedError("missing authorization metadata ('Bearer <sdk key>')")


class KeyRateLimiter:
    """A token bucket per SDK key in this process: ``rate`` per second, bursts of ``max(1, rate)``."""

    def __init__(self, rate: float, max_keys: int = 10_000) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.max_keys = max_keys
        self._buckets: dict[str, list[float]] = {}

    def wait(self, key: str, now: float) -> float:
        """0 if a request with ``key`` may go now (and take its token), else the seconds until it may."""
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.max_keys:
                self._buckets.clear()
            bucket = self._buckets[key] = [self.burst, now]
        tokens = min(self.burst, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        if tokens >= 1.0:
            bucket[0] = tokens - 1.0
            return 0.0
        bucket[0] = tokens
        return (1.0 - tokens) / self.rate


class SdkKeys:
    def __init__(self, store: RedisStore, ttl: float, negative_ttl: float, rate_limit: float = 0.0) -> None:
        self.store = store
        self.ttl = ttl
        self.negative_ttl = negative_ttl
        self._limiter = KeyRateLimiter(rate_limit) if rate_limit > 0 else None
        self._cache: dict[str, _Cached] = {}
        self._inflight: dict[str, asyncio.Future[SdkKeyRecord | None]] = {}

    async def authenticate(self, metadata: Iterable[Any] | None) -> SdkKeyRecord:
        """The record of the call's SDK key (see :meth:`verify`).

        A key cached and valid is answered here: every unary call comes this way, and a second coroutine
        frame would cost it a fifth more.
        """
        token = bearer_token(metadata)
        cached = self._cache.get(token)
        if (
            cached is not None
            and (record := cached.record) is not None
            and time.monotonic() - cached.fetched < self.ttl
            and not record.expired(time.time())
        ):
            if self._limiter is not None:
                self.admit(token)
            return record
        record = await self.verify(token)
        if self._limiter is not None:
            self.admit(token)
        return record

    def admit(self, token: str) -> None:
        """Count one call of a verified key against ``sdk_key_rate_limit``: RateLimitedError past it.

        :meth:`authenticate` does it for every call; a caller that checks a key with :meth:`verify` to open a
        call (a stream) admits it too, while the re-checks of an open stream are not calls and are not
        counted."""
        if self._limiter is not None:
            wait = self._limiter.wait(token, time.monotonic())
            if wait:
                raise RateLimitedError(wait)

    async def verify(self, token: str) -> SdkKeyRecord:
        """The record of an SDK key; UnauthenticatedError if unknown or expired, UnavailableError if it
        cannot be verified (Redis unavailable and the key not verified before)."""
        cached = self._cache.get(token)
        now = time.monotonic()
        if cached is not None and now - cached.fetched < (self.ttl if cached.record else self.negative_ttl):
            record = cached.record
        else:
            try:
                record = await self._fetch(token)
            except StoreUnavailableError as exc:
                if cached is None:
                    raise UnavailableError("cannot verify the SDK key: Redis is unavailable") from exc
                record = cached.record  # stale, but the best we know
        if record is None:
            raise UnauthenticatedError("unknown SDK key")
        if record.expired(time.time()):
            raise UnauthenticatedError("expired SDK key")
        return record

    def next_check(self, token: str, record: SdkKeyRecord) -> float:
        """When (``time.monotonic()``) a long-lived call authenticated with ``token`` must authenticate again.

        That is when its cache entry runs out, so the next check reads Redis: a key revoked at any time is
        noticed within the cache TTL, as by unary calls. Sooner if the key expires first; later (after the
        negative-cache period) while the entry is stale because Redis cannot be read.
        """
        now = time.monotonic()
        cached = self._cache.get(token)
        due = cached.fetched + self.ttl if cached is not None and cached.record is not None else now
        if due <= now:
            due = now + self.negative_ttl
        if record.expires_at is not None:
            due = min(due, now + record.expires_at - time.time())
        return max(due, now + MIN_RECHECK_SECONDS)

    async def _fetch(self, token: str) -> SdkKeyRecord | None:
        future = self._inflight.get(token)
        if future is not None:
            return await asyncio.shield(future)
        future = asyncio.get_running_loop().create_future()
        self._inflight[token] = future
        try:
            try:
                record = await self.store.sdk_key(hash_sdk_key(token))
            except StoreCorruptError:
                record = None
            fetched = time.monotonic()
            previous = self._cache.get(token)
            # Verified before, unknown now: revoked, unless Redis lost its data (restarted empty and not
            # re-hydrated yet: the syncer restores SDK keys before it lists any environment). Then, as while
            # Redis is unreachable, the last verified record serves; checked again after the negative-cache
            # period.
            if (
                record is None
                and previous is not None
                and previous.record is not None
                and await self.store.lost_data()
            ):
                record, fetched = previous.record, fetched - self.ttl + self.negative_ttl
            if len(self._cache) >= MAX_CACHED_KEYS:
                self._cache.clear()
            self._cache[token] = _Cached(record, fetched)
            future.set_result(record)
            return record
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark it retrieved: waiters re-raise it, nobody else needs it
            raise
        finally:
            del self._inflight[token]
