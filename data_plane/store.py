"""Redis, as the data plane reads it (the reader side of the Redis contract).

The boundary for Redis errors: connection problems and timeouts become :class:`StoreUnavailableError`, values
that break the contract :class:`StoreCorruptError`. Two clients: a fast one for request-path reads (short
timeouts, no retries, so a call never hangs on a dead Redis) and one for the stream follower and whole
environment loads (its socket timeout outlasts ``XREAD BLOCK``). Both read ``read_url`` when one is given
(a replica near this data plane, ``FLAGYARD_REDIS_READ_URL``); then a second pair on ``url`` (the primary)
takes the writes (served revisions, usage counts, context samples), which a replica would refuse.

Both URLs may name a Sentinel set (:mod:`flagyard.contracts.redis_connect`): after a failover the clients
find the new master at their next connection, and until then every call fails as it does while Redis is
down (:class:`StoreUnavailableError`), which the follower and the request paths already ride out.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from flagyard.contracts import redis as contract
from flagyard.contracts import sampling
from flagyard.contracts.redis_connect import aclose_client, async_redis_client

from .exceptions import StoreCorruptError, StoreError, StoreUnavailableError


@asynccontextmanager
async def _mapped() -> AsyncIterator[None]:
    try:
        yield
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as exc:
        raise StoreUnavailableError(f"{type(exc).__name__}: {exc}") from exc
    except redis.exceptions.RedisError as exc:
        if "LOADING" in str(exc) or isinstance(exc, redis.exceptions.BusyLoadingError):
            raise StoreUnavailableError(f"{type(exc).__name__}: {exc}") from exc
        raise StoreError(f"{type(exc).__name__}: {exc}") from exc
    except contract.RedisContractError as exc:
        raise StoreCorruptError(str(exc)) from exc


@dataclass(frozen=True, slots=True)
class CurrentValue:
    """What Redis holds now for one key: the stored value (None if deleted) and the highest version."""

    raw: bytes | None
    version: int | None


def _client_pair(
    url: str, *, timeout: float, block_ms: int, replica: bool
) -> tuple[redis.asyncio.Redis, redis.asyncio.Redis]:
    """(fast, slow) clients of ``url``: see the module's docstring."""
    fast = async_redis_client(
        url,
        replica=replica,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
    )
    slow = async_redis_client(
        url,
        replica=replica,
        socket_timeout=block_ms / 1000 + 10,
        socket_connect_timeout=max(timeout, 1.0),
        retry=Retry(NoBackoff(), 0),
        decode_responses=False,
    )
    return fast, slow


class RedisStore:
    def __init__(
        self, url: str, prefix: str, *, timeout: float, block_ms: int, read_url: str | None = None
    ) -> None:
        self.prefix = prefix
        self.fast, self.slow = _client_pair(
            read_url or url, timeout=timeout, block_ms=block_ms, replica=read_url is not None
        )
        """Reads: ``read_url`` if given, else the primary."""
        self.write_fast, self.write_slow = (
            (self.fast, self.slow)
            if read_url is None
            else _client_pair(url, timeout=timeout, block_ms=block_ms, replica=False)
        )
        """Writes: always the primary (the same clients as the reads without ``read_url``)."""

    async def close(self) -> None:
        clients = {id(c): c for c in (self.fast, self.slow, self.write_fast, self.write_slow)}
        for client in clients.values():
            await aclose_client(client)

    def events_key(self, env_id: str) -> str:
        return contract.EnvKeys(self.prefix, env_id).events

    async def ping(self) -> None:
        async with _mapped():
            await self.fast.ping()

    async def record_evaluations(
        self, env_id: str, counts: list[contract.EvaluationCount], last_evaluated_at: int
    ) -> contract.RecordedEvaluations:
        async with _mapped():
            return await contract.record_evaluations(
                self.write_fast, self.prefix, env_id, counts, last_evaluated_at
            )

    async def sampling_policy(self, env_id: str) -> sampling.SamplingPolicy | None:
        """The environment's context-sampling policy (None: it does not sample)."""
        async with _mapped():
            return await sampling.get_policy(self.fast, self.prefix, env_id)

    async def store_samples(
        self, env_id: str, samples: list[dict[str, Any]], now_ms: int, capacity: int
    ) -> int:
        """Add sanitized samples to the environment's bounded sample; the number it holds afterwards."""
        async with _mapped():
            return await sampling.store_samples(
                self.write_fast, self.prefix, env_id, samples, now_ms, capacity=capacity
            )

    async def report_served(self, instance_id: str, revisions: dict[str, int]) -> None:
        if not revisions:
            return
        async with _mapped():
            await contract.report_served(self.write_slow, self.prefix, instance_id, revisions)

    async def withdraw_served(self, instance_id: str, env_ids: Sequence[str]) -> None:
        if not env_ids:
            return
        async with _mapped():
            await contract.withdraw_served(self.write_fast, self.prefix, instance_id, env_ids)

    async def sdk_key(self, key_hash: str) -> contract.SdkKeyRecord | None:
        async with _mapped():
            return await contract.get_sdk_key(self.fast, self.prefix, key_hash)

    async def lost_data(self) -> bool:
        """Whether Redis lists no environment at all (``P:envs`` missing): it lost its data (restarted
        empty) and the syncer has not re-hydrated it yet."""
        async with _mapped():
            return not await self.fast.exists(contract.envs_key(self.prefix))

    async def load(self, env_id: str) -> contract.EnvironmentData:
        async with _mapped():
            return await contract.load_environment(self.slow, self.prefix, env_id)

    async def environments(self) -> set[str]:
        async with _mapped():
            return await contract.list_environments(self.slow, self.prefix)

    async def revisions(self, env_ids: Sequence[str]) -> list[int | None]:
        """Each environment's revision in Redis (None where it has none)."""
        if not env_ids:
            return []
        async with _mapped():
            raw = await self.slow.mget([contract.EnvKeys(self.prefix, e).rev for e in env_ids])
        return [None if r is None else int(r) for r in raw]

    async def read_events(
        self, positions: dict[str, str], *, count: int, block_ms: int
    ) -> list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]]:
        """``XREAD BLOCK`` over the streams of ``positions`` (env id → last seen id); raw entries by env."""
        streams: dict[Any, Any] = {self.events_key(env): (pos or "0-0") for env, pos in positions.items()}
        by_key = {self.events_key(env).encode(): env for env in positions}
        async with _mapped():
            reply: Any = await self.slow.xread(streams, count=count, block=block_ms)
        out: list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]] = []
        if not reply:
            return out
        items = reply.items() if isinstance(reply, dict) else reply  # RESP3 answers a map
        for stream, entries in items:
            key = stream if isinstance(stream, bytes) else str(stream).encode()
            out.append(
                (by_key[key], [(_b(i), {_b(k): _b(v) for k, v in (f or {}).items()}) for i, f in entries])
            )
        return out

    async def current(self, env_id: str, items: Sequence[tuple[contract.Kind, str]]) -> list[CurrentValue]:
        """The stored value and highest version of each (kind, key), read in one MULTI/EXEC."""
        keys = contract.EnvKeys(self.prefix, env_id)
        async with _mapped(), self.slow.pipeline(transaction=True) as pipe:
            for kind, key in items:
                pipe.hget(keys.flags if kind == "flag" else keys.segments, key)
                pipe.hget(keys.versions, f"{kind}:{key}")
            raw = await pipe.execute()
        return [
            CurrentValue(raw[i], None if raw[i + 1] is None else int(raw[i + 1]))
            for i in range(0, len(raw), 2)
        ]


def _b(value: bytes | str | None) -> bytes:
    if value is None:
        return b""
    return value if isinstance(value, bytes) else value.encode()
