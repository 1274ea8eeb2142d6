"""The sampling contract against a real Redis: what a sample keeps, and that the set stays bounded."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio

from flagyard.contracts.redis import RedisContractError
from flagyard.contracts.sampling import (
    HASH_PREFIX,
    SamplingPolicy,
    get_policy,
    hash_value,
    parse_policy,
    policy_issues,
    put_policy,
    read_samples,
    samples_key,
    sanitize,
    seen_key,
    store_samples,
)
from flagyard.rule_engine import limits

REDIS_URL = os.environ.get("FLAGYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/3")
SALT = "ab" * 16
POLICY = SamplingPolicy(("plan", "country", "app.version", "tags"), ("targeting_key", "email"), SALT)


@pytest.fixture
def prefix() -> Iterator[str]:
    name = f"fysample{uuid.uuid4().hex[:8]}"
    yield name
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()


def test_sanitize__keeps_allowed_attributes_in_clear_hashes_the_hashed_and_drops_the_rest() -> None:
    context = {
        "targeting_key": "user-42",
        "email": "ada@example.com",
        "plan": "pro",
        "country": "DE",
        "app": {"version": "2.3.1", "build": "secret-build"},
        "tags": ["beta", "staff"],
        "name": "Ada Lovelace",
        "ip": "10.0.0.1",
    }
    sample = sanitize(POLICY, context)
    assert sample == {
        "targeting_key": hash_value(SALT, "user-42"),
        "email": hash_value(SALT, "ada@example.com"),
        "plan": "pro",
        "country": "DE",
        "app": {"version": "2.3.1"},
        "tags": ["beta", "staff"],
    }
    assert str(sample["targeting_key"]).startswith(HASH_PREFIX)
    assert "user-42" not in str(sample)
    assert "ada@example.com" not in str(sample)


def test_sanitize__leaves_out_values_too_large_or_not_flat_and_unhashable_hashed_values() -> None:
    context = {
        "plan": "x" * (limits.MAX_SAMPLE_VALUE_BYTES + 1),
        "country": {"nested": "object"},
        "tags": [["nested"]],
        "targeting_key": 3.5,
        "email": 12345,
    }
    assert sanitize(POLICY, context) == {"email": hash_value(SALT, "12345")}
    assert sanitize(POLICY, {"name": "only personal data"}) is None


def test_hash_value__is_keyed_by_the_salt() -> None:
    assert hash_value(SALT, "u") != hash_value("cd" * 16, "u")
    assert hash_value(SALT, "u") == hash_value(SALT, "u")
    assert hash_value(SALT, 7) == hash_value(SALT, "7")
    assert hash_value(SALT, True) is None


def test_policy_issues__names_the_field_of_each_problem() -> None:
    too_many = [f"a{i}" for i in range(limits.MAX_SAMPLE_ATTRIBUTES)]
    assert policy_issues(too_many, ["b"]) == [
        (
            "attributes",
            f"{limits.MAX_SAMPLE_ATTRIBUTES + 1} attributes, at most {limits.MAX_SAMPLE_ATTRIBUTES}",
        )
    ]
    issues = policy_issues(["plan", "a..b", "plan"], ["plan"])
    assert [field for field, _ in issues] == ["attributes/1", "attributes/2", "hashed/0"]
    assert policy_issues(["plan", "app.version"], ["targeting_key"]) == []


def test_policy__round_trips_through_redis_and_withdrawing_deletes_the_sample(prefix: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)

    async def scenario() -> tuple[SamplingPolicy | None, int, SamplingPolicy | None]:
        aclient = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            put_policy(client, prefix, "1", POLICY)
            stored = await get_policy(aclient, prefix, "1")
            held = await store_samples(aclient, prefix, "1", [{"plan": "pro"}], 1_000)
            put_policy(client, prefix, "1", None)
            return stored, held, await get_policy(aclient, prefix, "1")
        finally:
            await aclient.aclose()

    stored, held, withdrawn = asyncio.run(scenario())
    assert stored == POLICY
    assert held == 1
    assert withdrawn is None
    assert client.exists(samples_key(prefix, "1"), seen_key(prefix, "1")) == 0
    assert "salt" not in repr(POLICY)
    assert SALT not in repr(POLICY)
    with pytest.raises(RedisContractError):
        parse_policy(b'{"attributes": ["a b"], "hashed": [], "salt": "' + SALT.encode() + b'"}')
    client.close()


def test_store_samples__holds_distinct_contexts_once_and_evicts_the_least_recently_seen(prefix: str) -> None:
    async def scenario() -> list[int]:
        aclient = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            put_policy(redis.Redis.from_url(REDIS_URL), prefix, "1", POLICY)
            helds = []
            steps = [("a", 1), ("b", 2), ("c", 3), ("a", 4), ("d", 5), ("a", 6)]
            for plan, now in steps:
                helds.append(await store_samples(aclient, prefix, "1", [{"plan": plan}], now, capacity=3))
            return helds
        finally:
            await aclient.aclose()

    # "a" seen again at 4 is refreshed, so "b" (seen last at 2) is the one evicted when "d" arrives.
    assert asyncio.run(scenario()) == [1, 2, 3, 3, 3, 3]
    client = redis.Redis.from_url(REDIS_URL)
    assert sorted(s["plan"] for s in read_samples(client, prefix, "1")) == ["a", "c", "d"]
    assert 0 < client.ttl(samples_key(prefix, "1")) <= limits.SAMPLE_TTL_SECONDS
    client.close()


def test_store_samples__a_flood_of_distinct_contexts_stays_at_the_bound(prefix: str) -> None:
    """The worst case an SDK-key holder can produce: every sample distinct, far more than the bound."""

    async def scenario() -> int:
        aclient = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            put_policy(redis.Redis.from_url(REDIS_URL), prefix, "1", POLICY)
            held = 0
            for batch in range(30):
                samples = [
                    {"plan": f"p{batch}-{i}", "tags": ["x" * 200]} for i in range(limits.MAX_REPORT_CONTEXTS)
                ]
                held = await store_samples(aclient, prefix, "1", samples, batch)
            return held
        finally:
            await aclient.aclose()

    assert 30 * limits.MAX_REPORT_CONTEXTS > limits.MAX_SAMPLE_CONTEXTS
    assert asyncio.run(scenario()) == limits.MAX_SAMPLE_CONTEXTS
    client = redis.Redis.from_url(REDIS_URL)
    assert (
        client.hlen(samples_key(prefix, "1"))
        == client.zcard(seen_key(prefix, "1"))
        == limits.MAX_SAMPLE_CONTEXTS
    )
    newest = {s["plan"] for s in read_samples(client, prefix, "1")}
    assert f"p29-{limits.MAX_REPORT_CONTEXTS - 1}" in newest
    assert "p0-0" not in newest
    client.close()


def test_store_samples__without_the_policy__writes_nothing(prefix: str) -> None:
    """A flush that races the opt-out (the syncer deletes policy and sample together) stores nothing."""

    async def scenario() -> int:
        aclient = redis.asyncio.Redis.from_url(REDIS_URL)
        try:
            return await store_samples(aclient, prefix, "1", [{"plan": "pro"}], 1)
        finally:
            await aclient.aclose()

    assert asyncio.run(scenario()) == -1
    client = redis.Redis.from_url(REDIS_URL)
    assert client.exists(samples_key(prefix, "1"), seen_key(prefix, "1")) == 0
    client.close()
