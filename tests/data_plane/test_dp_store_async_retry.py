"""The data plane's Redis clients get asyncio retry objects: redis-py 8.2 warns at every start when a
synchronous ``redis.retry.Retry`` reaches an asyncio client (and drops a custom ``call_with_retry``)."""

from __future__ import annotations

import asyncio
import warnings

import redis.asyncio.retry

from flagyard.data_plane.store import RedisStore


def test_store__both_clients__asyncio_retry_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = RedisStore("redis://127.0.0.1:6379/8", "fyretry", timeout=0.5, block_ms=100)
    try:
        for client in (store.fast, store.slow):
            retry = client.connection_pool.connection_kwargs["retry"]
            assert isinstance(retry, redis.asyncio.retry.Retry)
            assert retry.get_retries() == 0
    finally:
        asyncio.run(store.close())
