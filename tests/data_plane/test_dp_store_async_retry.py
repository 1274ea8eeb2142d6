"""The data plane's Redis clients (plain or Sentinel URL, with or without a read URL, and the Sentinel
clients behind them) get asyncio retry objects: redis-py 8.2 warns at every start when a synchronous
``redis.retry.Retry`` reaches an asyncio client (and drops a custom ``call_with_retry``). With a read URL
the reads and the writes are different clients, the reads on a replica."""

from __future__ import annotations

import asyncio
import warnings

import pytest
import redis.asyncio.retry
import redis.asyncio.sentinel

from flagyard.data_plane.store import RedisStore

SENTINEL_URL = "redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/flagyard/8"


@pytest.mark.parametrize(
    ("url", "read_url"),
    [("redis://127.0.0.1:6379/8", None), (SENTINEL_URL, None), ("redis://127.0.0.1:6379/8", SENTINEL_URL)],
)
def test_store__every_client__asyncio_retry_without_warnings(url: str, read_url: str | None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        store = RedisStore(url, "fyretry", timeout=0.5, block_ms=100, read_url=read_url)
    try:
        for client in (store.fast, store.slow, store.write_fast, store.write_slow):
            pool = client.connection_pool
            retries = [pool.connection_kwargs["retry"]]
            if isinstance(pool, redis.asyncio.sentinel.SentinelConnectionPool):
                retries += [
                    s.connection_pool.connection_kwargs["retry"] for s in pool.sentinel_manager.sentinels
                ]
            for retry in retries:
                assert isinstance(retry, redis.asyncio.retry.Retry)
                assert retry.get_retries() == 0
        if read_url is not None:
            assert store.fast is not store.write_fast
            assert store.fast.connection_pool.is_master is False  # type: ignore[attr-defined]
            assert store.write_fast.connection_pool.connection_kwargs["db"] == 8
    finally:
        asyncio.run(store.close())
