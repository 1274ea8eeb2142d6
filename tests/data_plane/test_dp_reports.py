"""ReportEvaluations: what an SDK-key holder may write into its environment's usage, over real gRPC and Redis,
and the usage read side over whatever Redis holds."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import pytest
import redis
import redis.asyncio
from dp_helpers import ENV, REDIS_DB, Client, Plane, wait_until

from flagyard.contracts.redis import (
    MAX_STORED_COUNT,
    EnvKeys,
    EvaluationCount,
    FlagUsage,
    apply_change,
    read_evaluations,
    record_evaluations,
)
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.rule_engine import limits

SEP = "\x1f"


def report(client: Client, *counts: pb.EvaluationCount, last: int | None = None) -> Any:
    request = pb.ReportEvaluationsRequest(
        counts=counts, last_evaluated_at=int(time.time()) if last is None else last
    )
    return client.evaluation.ReportEvaluations(request, metadata=client.metadata, timeout=10)


def entry(flag: str = "banner", variant: str = "a", reason: int = pb.REASON_STATIC, count: int = 1) -> Any:
    return pb.EvaluationCount(flag_key=flag, variant=variant, reason=reason, count=count)


def dropped(plane: Plane, cause: str) -> float | None:
    registry = plane.plane.metrics.registry  # type: ignore[union-attr]
    return registry.get_sample_value("flagyard_data_plane_report_entries_dropped_total", {"cause": cause})


def test_report__keys_naming_no_flag__dropped_counted_and_the_rest_stored(
    plane: Plane, client: Client, rds: redis.Redis, seeded: str
) -> None:
    apply_change(rds, seeded, ENV, "flag", "ratio", 2, None)  # deleted since the SDK evaluated it
    junk = ["banner\x1fa\x1fSTATIC", "", "no-such-flag", "ratio", "x" * 200, "banner\n", "bänner"]

    response = report(client, entry(count=3), *(entry(flag=k, count=10**9) for k in junk))

    assert response.recorded == 3
    keys = EnvKeys(seeded, ENV)
    assert rds.hgetall(keys.evaluations) == {f"banner{SEP}a{SEP}STATIC".encode(): b"3"}
    assert set(rds.hkeys(keys.evaluated_at)) == {b"banner"}
    assert dropped(plane, "unknown_flag") == len(junk)


@pytest.mark.parametrize(
    ("counts", "last", "field"),
    [
        ([entry(count=0)], None, "counts[0].count"),
        ([entry(), entry(count=10**12)], None, "counts[1].count"),
        ([entry(count=-5)], None, "counts[0].count"),
        ([entry(reason=pb.REASON_UNSPECIFIED)], None, "counts[0].reason"),
        ([entry(reason=99)], None, "counts[0].reason"),
        ([entry(variant="a\x1fSTATIC")], None, "counts[0].variant"),
        ([entry()], 2**62, "last_evaluated_at"),
        ([entry()], -1, "last_evaluated_at"),
        ([entry()] * (limits.MAX_REPORT_ENTRIES + 1), None, "counts"),
    ],
)
def test_report__over_a_bound__invalid_argument_naming_the_field_and_nothing_written(
    client: Client, rds: redis.Redis, seeded: str, counts: list[Any], last: int | None, field: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        report(client, *counts, last=last)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith(f"{field}:")
    keys = EnvKeys(seeded, ENV)
    assert rds.exists(keys.evaluations, keys.evaluated_at) == 0


def test_report__clock_ahead_within_the_skew__stamped_now_and_never_moved_back(
    client: Client, rds: redis.Redis, seeded: str
) -> None:
    before = int(time.time())
    report(client, entry(), last=before + limits.REPORT_CLOCK_SKEW_SECONDS - 5)
    stamped = read_evaluations(rds, seeded, ENV)["banner"].last_evaluated_at
    assert stamped is not None
    assert before <= stamped <= int(time.time())

    report(client, entry(), last=before - 3600)  # a late report of older evaluations

    usage = read_evaluations(rds, seeded, ENV)["banner"]
    assert (usage.evaluations, usage.last_evaluated_at) == (2, stamped)


def test_report__no_timestamp__stamped_now(client: Client, rds: redis.Redis, seeded: str) -> None:
    before = int(time.time())
    report(client, entry(), last=0)
    stamped = read_evaluations(rds, seeded, ENV)["banner"].last_evaluated_at
    assert stamped is not None
    assert before <= stamped <= int(time.time())


def test_report__environment_at_the_usage_cap__new_counters_dropped_existing_ones_still_count(
    plane: Plane, client: Client, rds: redis.Redis, seeded: str
) -> None:
    keys = EnvKeys(seeded, ENV)
    filler = {f"old-{i}{SEP}v{SEP}STATIC": 1 for i in range(limits.MAX_USAGE_FIELDS - 1)}
    with rds.pipeline(transaction=False) as pipe:
        items = list(filler.items())
        for start in range(0, len(items), 10_000):
            pipe.hset(keys.evaluations, mapping=dict(items[start : start + 10_000]))
        pipe.execute()

    first = report(client, entry(variant="a", count=2), entry(variant="b", count=5), entry(count=1))

    assert first.recorded == 3  # a (2, then 1 more, same counter) stored; b was one counter too many
    assert rds.hlen(keys.evaluations) == limits.MAX_USAGE_FIELDS
    assert rds.hget(keys.evaluations, f"banner{SEP}a{SEP}STATIC") == b"3"
    assert rds.hget(keys.evaluations, f"banner{SEP}b{SEP}STATIC") is None
    assert wait_until(lambda: dropped(plane, "usage_cap") == 1, timeout=5)


def test_record_evaluations__counter_near_the_top_or_not_a_number__saturates_or_is_replaced(
    rds: redis.Redis, prefix: str
) -> None:
    keys = EnvKeys(prefix, ENV)
    rds.hset(keys.evaluations, f"a{SEP}on{SEP}STATIC", MAX_STORED_COUNT - 1)
    rds.hset(keys.evaluations, f"b{SEP}on{SEP}STATIC", "garbage")
    rds.hset(keys.evaluated_at, "b", "not a time")

    async def record() -> Any:
        client = redis.asyncio.Redis(db=REDIS_DB)
        try:
            counts = [
                EvaluationCount("a", "on", "STATIC", limits.MAX_REPORTED_COUNT),
                EvaluationCount("b", "on", "STATIC", 7),
            ]
            return await record_evaluations(client, prefix, ENV, counts, 1_700_000_000)
        finally:
            await client.aclose()

    stored = asyncio.run(record())

    assert (stored.recorded, stored.dropped) == (limits.MAX_REPORTED_COUNT + 7, 0)
    assert int(rds.hget(keys.evaluations, f"a{SEP}on{SEP}STATIC") or 0) == MAX_STORED_COUNT
    assert rds.hget(keys.evaluations, f"b{SEP}on{SEP}STATIC") == b"7"
    assert rds.hget(keys.evaluated_at, "b") == b"1700000000"


def test_read_evaluations__garbage_in_redis__skipped_or_clamped_never_raises(
    rds: redis.Redis, prefix: str
) -> None:
    keys = EnvKeys(prefix, ENV)
    now = 1_750_000_000
    rds.hset(
        keys.evaluations,
        mapping={
            f"banner{SEP}a{SEP}STATIC": 4,
            f"banner{SEP}b{SEP}SPLIT": "1.5e+3",
            f"banner{SEP}a{SEP}DEFAULT": 2**70,
            "no-separators": 9,
            f"too{SEP}many{SEP}sep{SEP}s": 9,
            f"banner{SEP}c{SEP}STATIC": "twelve",
            f"banner{SEP}d{SEP}STATIC": -3,
            f"banner{SEP}e{SEP}STATIC": "nan",
            b"\xff\xfe" + f"{SEP}x{SEP}STATIC".encode(): 1,
        },
    )
    rds.hset(
        keys.evaluated_at,
        mapping={"banner": 2**62, "theme": "yesterday", "ratio": -10, "gone-flag": now - 100},
    )

    usage = read_evaluations(rds, prefix, ENV, now=now)

    assert usage["banner"] == FlagUsage(
        evaluations=MAX_STORED_COUNT,
        variants={"a": MAX_STORED_COUNT, "b": 1500},
        reasons={"STATIC": 4, "SPLIT": 1500, "DEFAULT": MAX_STORED_COUNT},
        last_evaluated_at=now,
    )
    assert usage["gone-flag"].last_evaluated_at == now - 100
    assert "theme" not in usage
    assert "ratio" not in usage
    assert usage["\ufffd\ufffd"].evaluations == 1
