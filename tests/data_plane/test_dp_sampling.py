"""Context sampling in the data plane (data_plane/sampling.py): what reaches Redis from resolves and reports,
under a policy and without one, within the per-environment budget and the sample's capacity, through a
Redis outage and hostile contexts. Real Redis, real gRPC data planes; bounds are asserted with the sampler's
counters and tick count, never with wall-clock timing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
import redis
from dp_helpers import ENV, FLAGS, SDK_KEY, Client, Plane, seed, settings_for, struct, wait_until
from test_dp_resilience import RedisServer

from flagyard.contracts.sampling import (
    SamplingPolicy,
    hash_value,
    put_policy,
    read_samples,
    samples_key,
    seen_key,
)
from flagyard.data_plane.metrics import SAMPLE_OUTCOMES
from flagyard.data_plane.sampling import Sampler
from flagyard.proto.gen.flagd.evaluation.v2 import evaluation_pb2 as ev2
from flagyard.proto.gen.flagd.evaluation.v2 import evaluation_pb2_grpc as ev2_grpc
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.rule_engine import limits

SALT = "5eed" * 8
POLICY = SamplingPolicy(
    attributes=("plan", "country", "app.version"), hashed=("targeting_key", "email"), salt=SALT
)
OFREP_KEY = {"X-API-Key": SDK_KEY}
SECRETS = ("ssn-", "Secret Street", "person", "@example.com", "user-")
"""Fragments of the values that must never reach Redis in clear."""


def context(i: int) -> dict[str, Any]:
    return {
        "targeting_key": f"user-{i}",
        "email": f"person{i}@example.com",
        "plan": ("free", "pro", "ent")[i % 3],
        "country": "DE",
        "app": {"version": "2.1", "device": f"Secret Street {i}"},
        "ssn": f"ssn-{i:09d}",
        "address": {"street": "Secret Street"},
    }


def outcomes(plane: Plane) -> dict[str, float]:
    registry = plane.plane.metrics.registry  # type: ignore[union-attr]
    return {
        o: registry.get_sample_value("flagyard_context_samples_total", {"outcome": o}) or 0.0
        for o in SAMPLE_OUTCOMES
    }


def errors(plane: Plane, operation: str) -> float:
    registry = plane.plane.metrics.registry  # type: ignore[union-attr]
    return (
        registry.get_sample_value("flagyard_context_sampling_errors_total", {"operation": operation}) or 0.0
    )


def sampler(plane: Plane) -> Sampler:
    return plane.plane.sampler  # type: ignore[union-attr]


def ticks(plane: Plane) -> int:
    """How many times the plane's sampler has flushed."""
    return int(plane.call(lambda: sampler(plane).ticks))


def wait_ticks(plane: Plane, more: int) -> None:
    """Wait until the plane's sampler has flushed ``more`` more times."""
    start = ticks(plane)
    wait_until(lambda: ticks(plane) >= start + more, 10)


def sampling(plane: Plane) -> bool:
    return bool(plane.call(lambda: sampler(plane).budget.get(ENV, -1) >= 0))


def everything_under(rds: redis.Redis, prefix: str) -> bytes:
    """Every key and value under ``prefix`` (whatever its type), concatenated: what a leak would show in."""
    out = b""
    for key in rds.scan_iter(f"{prefix}:*", count=1000):
        kind = rds.type(key)
        out += key + b"\n"
        if kind == b"string":
            out += rds.get(key) or b""
        elif kind == b"hash":
            out += b"".join(k + v for k, v in rds.hgetall(key).items())
        elif kind == b"zset":
            out += b"".join(rds.zrange(key, 0, -1))
        elif kind == b"stream":
            out += repr(rds.xrange(key)).encode()
        elif kind == b"set":
            out += b"".join(rds.smembers(key))
        elif kind == b"list":
            out += b"".join(rds.lrange(key, 0, -1))
        out += b"\n"
    return out


def assert_no_secret(rds: redis.Redis, prefix: str) -> None:
    dump = everything_under(rds, prefix)
    for secret in SECRETS:
        assert secret.encode() not in dump


def assert_sanitized(sample: dict[str, Any]) -> None:
    assert set(sample) <= {"plan", "country", "app", "targeting_key", "email"}
    assert set(sample.get("app", {})) <= {"version"}
    for hashed in ("targeting_key", "email"):
        if hashed in sample:
            assert sample[hashed].startswith("h:")
            assert len(sample[hashed]) == 34


def start_sampling(plane: Plane, client: Client) -> None:
    """Call once so the plane looks the environment's policy up, and wait until it samples."""
    client.resolve("ResolveBoolean", "new-checkout", {"targeting_key": "warm-up"})
    wait_until(lambda: sampling(plane), 10)


def policy_plane(seeded: str, rds: redis.Redis, planes: list[Plane], **settings: Any) -> Plane:
    """``POLICY`` in Redis for the seeded environment (as the syncer writes it), then a data plane started
    with ``settings``; stopped after the test."""
    put_policy(rds, seeded, ENV, POLICY)
    plane = Plane(settings_for(seeded, **settings)).start()
    planes.append(plane)
    return plane


@pytest.fixture
def sampling_plane(seeded: str, rds: redis.Redis, planes: list[Plane]) -> Plane:
    return policy_plane(seeded, rds, planes, sample_policy_refresh_seconds=0.5)


@pytest.fixture
def sclient(sampling_plane: Plane) -> Iterator[Client]:
    with Client(sampling_plane.port) as c:
        yield c


def test_sampling__policy__only_sanitized_contexts_reach_redis(
    sampling_plane: Plane, sclient: Client, rds: redis.Redis, seeded: str
) -> None:
    start_sampling(sampling_plane, sclient)
    methods = ["ResolveBoolean", "ResolveString", "ResolveInteger", "ResolveFloat", "ResolveObject"]
    keys = ["new-checkout", "banner", "rate-limit", "ratio", "theme"]
    i = 0

    def resolve_more() -> bool:
        nonlocal i
        for _ in range(20):
            sclient.resolve(methods[i % 5], keys[i % 5], context(i))
            i += 1
        sclient.resolve_all(context(i))
        i += 1
        return rds.hlen(samples_key(seeded, ENV)) >= 10

    wait_until(resolve_more, 15)

    samples = read_samples(rds, seeded, ENV)
    assert len(samples) >= 10
    hashes = {hash_value(SALT, f"user-{n}") for n in range(i)}
    for sample in samples:
        assert_sanitized(sample)
        if sample.get("targeting_key") != hash_value(SALT, "warm-up"):
            assert sample["targeting_key"] in hashes
            assert sample["app"] == {"version": "2.1"}
            assert sample["country"] == "DE"
    assert_no_secret(rds, seeded)
    assert rds.zcard(seen_key(seeded, ENV)) == len(samples)
    assert 0 < rds.ttl(samples_key(seeded, ENV)) <= limits.SAMPLE_TTL_SECONDS
    assert outcomes(sampling_plane)["stored"] >= len(samples)


def test_sampling__no_policy__nothing_stored_and_no_key_created(
    plane: Plane, client: Client, rds: redis.Redis, seeded: str
) -> None:
    before = set(rds.scan_iter(f"{seeded}:*"))
    for i in range(200):
        client.resolve("ResolveBoolean", "new-checkout", context(i))
    wait_ticks(plane, 3)
    for i in range(200, 300):  # known not to sample by now
        client.resolve_all(context(i))
    wait_ticks(plane, 2)

    assert not sampling(plane)
    assert set(rds.scan_iter(f"{seeded}:*")) - before <= {
        k for k in rds.scan_iter(f"{seeded}:*") if b"sampl" not in k
    }
    assert not list(rds.scan_iter(f"{seeded}:*sampl*"))
    assert outcomes(plane) == dict.fromkeys(SAMPLE_OUTCOMES, 0.0)


def test_sampling__burst_of_distinct_contexts__admitted_within_budget_and_every_offer_counted(
    seeded: str, rds: redis.Redis, planes: list[Plane]
) -> None:
    # A refresh period longer than the test: the environment is never forgotten (and looked up again) in
    # the middle, so every offer is counted under one outcome.
    sampling_plane = policy_plane(seeded, rds, planes, sample_policy_refresh_seconds=600)
    with Client(sampling_plane.port) as sclient:
        burst(sampling_plane, sclient, rds, seeded)


def burst(sampling_plane: Plane, sclient: Client, rds: redis.Redis, seeded: str) -> None:
    start_sampling(sampling_plane, sclient)
    before = outcomes(sampling_plane)
    ticks_before = ticks(sampling_plane)
    total = 3000
    call = sclient.evaluation.ResolveBoolean
    futures = []
    for i in range(total):
        request = pb.ResolveRequest(flag_key="banner", context=struct(context(10_000 + i)))
        futures.append(call.future(request, metadata=sclient.metadata, timeout=30))
        if len(futures) >= 64:
            for f in futures:
                assert f.result().value is False
            futures = []
    for f in futures:
        assert f.result().value is False

    def counted() -> dict[str, float]:
        now = outcomes(sampling_plane)
        return {o: now[o] - before[o] for o in SAMPLE_OUTCOMES}

    wait_until(lambda: sum(counted().values()) == total, 10)
    ticked = ticks(sampling_plane) - ticks_before
    after = counted()
    admitted = after["stored"] + after["empty"] + after["dropped"]
    budget = limits.MAX_REPORT_CONTEXTS + limits.SAMPLE_RATE_PER_SECOND * (ticked + 1)
    assert 0 < admitted <= budget
    assert after["rate_limited"] >= total - budget
    assert after["empty"] == 0  # every context has allowed attributes
    held = rds.hlen(samples_key(seeded, ENV))
    assert held <= limits.MAX_SAMPLE_CONTEXTS
    assert held <= 1 + after["stored"]


def test_sampling__small_capacity__the_set_never_exceeds_it(
    seeded: str, rds: redis.Redis, planes: list[Plane]
) -> None:
    plane = policy_plane(seeded, rds, planes, sample_capacity=5)
    with Client(plane.port) as client:
        start_sampling(plane, client)
        i = 0

        def more() -> bool:
            nonlocal i
            for _ in range(30):
                client.resolve("ResolveBoolean", "new-checkout", context(i))
                i += 1
            assert rds.hlen(samples_key(seeded, ENV)) <= 5
            assert rds.zcard(seen_key(seeded, ENV)) <= 5
            return outcomes(plane)["stored"] >= 40

        wait_until(more, 20)
    assert rds.hlen(samples_key(seeded, ENV)) == rds.zcard(seen_key(seeded, ENV)) == 5
    assert set(rds.hkeys(samples_key(seeded, ENV))) == set(rds.zrange(seen_key(seeded, ENV), 0, -1))


# --- ReportEvaluations ---


def report(client: Client, contexts: list[dict[str, Any]]) -> Any:
    request = pb.ReportEvaluationsRequest(
        counts=[pb.EvaluationCount(flag_key="banner", variant="a", reason=pb.REASON_STATIC, count=1)],
        last_evaluated_at=int(time.time()),
        contexts=[struct(c) for c in contexts],
    )
    return client.evaluation.ReportEvaluations(request, metadata=client.metadata, timeout=10)


def test_report__contexts_with_a_policy__stored_sanitized_and_response_asks_for_more(
    sampling_plane: Plane, sclient: Client, rds: redis.Redis, seeded: str
) -> None:
    response = report(sclient, [context(i) for i in range(limits.MAX_REPORT_CONTEXTS)])

    assert response.sample_contexts is True
    assert response.recorded == 1
    wait_until(lambda: rds.hlen(samples_key(seeded, ENV)) == limits.MAX_REPORT_CONTEXTS, 10)
    samples = read_samples(rds, seeded, ENV)
    for sample in samples:
        assert_sanitized(sample)
    assert {s["targeting_key"] for s in samples} == {
        hash_value(SALT, f"user-{i}") for i in range(limits.MAX_REPORT_CONTEXTS)
    }
    assert_no_secret(rds, seeded)


def test_report__more_contexts_than_a_report_holds__invalid_argument_and_nothing_written(
    sampling_plane: Plane, sclient: Client, rds: redis.Redis, seeded: str
) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        report(sclient, [context(i) for i in range(limits.MAX_REPORT_CONTEXTS + 1)])

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("contexts:")
    assert not list(rds.scan_iter(f"{seeded}:*:evaluations*"))
    wait_ticks(sampling_plane, 2)
    assert not rds.exists(samples_key(seeded, ENV))


def test_report__context_over_max_context_bytes__invalid_argument_naming_it(
    sampling_plane: Plane, sclient: Client
) -> None:
    big = {"plan": "x" * (limits.MAX_CONTEXT_BYTES + 10)}
    with pytest.raises(grpc.RpcError) as caught:
        report(sclient, [context(1), big])

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.details().startswith("contexts[1]:")


def test_report__no_policy__sample_contexts_false_and_contexts_not_stored(
    plane: Plane, client: Client, rds: redis.Redis, seeded: str
) -> None:
    response = report(client, [context(i) for i in range(5)])

    assert response.sample_contexts is False
    assert response.recorded == 1
    wait_ticks(plane, 2)
    assert not list(rds.scan_iter(f"{seeded}:*sampl*"))
    assert outcomes(plane)["dropped"] == 5
    assert outcomes(plane)["stored"] == 0


def test_report__policy_withdrawn__next_answer_stops_the_sdk_and_nothing_more_is_stored(
    sampling_plane: Plane, sclient: Client, rds: redis.Redis, seeded: str
) -> None:
    assert report(sclient, [context(1)]).sample_contexts is True
    wait_until(lambda: rds.hlen(samples_key(seeded, ENV)) == 1, 10)

    put_policy(rds, seeded, ENV, None)  # what the syncer does when an admin turns sampling off
    wait_until(lambda: not sampling(sampling_plane), 10)
    response = report(sclient, [context(2)])

    assert response.sample_contexts is False
    wait_ticks(sampling_plane, 2)
    assert not list(rds.scan_iter(f"{seeded}:*sampl*"))


# --- faults and hostile input ---


def test_sampling__redis_down_during_flushes__resolves_still_answer_and_errors_are_counted(
    tmp_path: Path, planes: list[Plane]
) -> None:
    server = RedisServer(tmp_path)
    server.start()
    try:
        rds = server.client()
        seed(rds, "fysample")
        put_policy(rds, "fysample", ENV, POLICY)
        plane = Plane(
            settings_for(
                "fysample", redis_url=f"redis://127.0.0.1:{server.port}/0", redis_timeout_seconds=0.2
            )
        ).start()
        planes.append(plane)
        with Client(plane.port) as client:
            start_sampling(plane, client)
            server.kill()
            i = 0

            def resolve_through() -> bool:
                nonlocal i
                for _ in range(20):
                    answer = client.resolve("ResolveBoolean", "new-checkout", context(i))
                    assert answer.variant == "on"  # country DE: in the beta segment
                    i += 1
                return errors(plane, "store") >= 2

            wait_until(resolve_through, 20)
            assert errors(plane, "policy") >= 1  # re-read before flushing, failed: last known kept
            assert sampling(plane)
            assert outcomes(plane)["dropped"] >= 1
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.kill()


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": "x"}
    for _ in range(depth):
        value = {"n": value}
    return value


def test_sampling__worst_case_contexts__resolves_answer_and_nothing_oversized_is_kept(
    sampling_plane: Plane, sclient: Client, rds: redis.Redis, seeded: str
) -> None:
    start_sampling(sampling_plane, sclient)
    filler = "y" * (limits.MAX_CONTEXT_BYTES - 8_000)
    deep = nested(25)  # as deep as a request parses (protobuf's recursion limit is 100 messages)
    hostile = [
        {"targeting_key": "k" * 2_000, "plan": filler, "country": deep, "app": deep},
        {
            "targeting_key": "t-0",
            "plan": ["a"] * 5_000,
            "country": {"x": filler[:1000]},
            "app": filler[:200_000],
        },
        {"targeting_key": {"deep": deep}, "email": 12345, "plan": [nested(5)], "country": 3.5},
    ]
    for _ in range(20):
        for ctx in hostile:
            answer = sclient.resolve("ResolveBoolean", "new-checkout", ctx)  # answered, not failed
            assert answer.reason != pb.REASON_UNSPECIFIED
            assert len(sclient.resolve_all(ctx).flags) == len(FLAGS)

    normal = sclient.resolve("ResolveInteger", "rate-limit", {"targeting_key": "u-1", "plan": "ent"})
    assert normal.value == 500
    wait_until(lambda: rds.hlen(samples_key(seeded, ENV)) >= 2, 10)
    for raw in rds.hvals(samples_key(seeded, ENV)):
        assert len(raw) < 2 * limits.MAX_SAMPLE_ATTRIBUTES * limits.MAX_SAMPLE_VALUE_BYTES
        sample = orjson.loads(raw)
        assert_sanitized(sample)
        assert "plan" not in sample or type(sample["plan"]) is str
    assert filler[:300].encode() not in everything_under(rds, seeded)


def test_sampling__plane_stops_with_samples_buffered__they_are_flushed(
    seeded: str, rds: redis.Redis, planes: list[Plane]
) -> None:
    plane = policy_plane(seeded, rds, planes, sample_policy_refresh_seconds=600)
    with Client(plane.port) as client:
        start_sampling(plane, client)
        wait_ticks(plane, 1)  # just flushed
        for i in range(5):
            client.resolve("ResolveBoolean", "banner", context(i))
        buffered = plane.call(lambda: len(sampler(plane)._buffers.get(ENV, [])))
        assert rds.hlen(samples_key(seeded, ENV)) + buffered == 5

        plane.stop()

    assert rds.hlen(samples_key(seeded, ENV)) == 5


def test_sampling__ofrep_and_flagd_calls__sampled_and_sanitized_like_flagyard_ones(
    sampling_plane: Plane, sclient: Client, rds: redis.Redis, seeded: str
) -> None:
    start_sampling(sampling_plane, sclient)
    assert sampling_plane.plane is not None
    http = httpx.Client(base_url=f"http://127.0.0.1:{sampling_plane.plane.ofrep_port}", timeout=10)
    channel = grpc.insecure_channel(f"127.0.0.1:{sampling_plane.plane.flagd_ports['rpc']}")
    flagd = ev2_grpc.ServiceStub(channel)
    try:
        for i in range(3):  # OFREP single and bulk; flagd's targetingKey is the engine's targeting_key
            ofrep = {k: v for k, v in context(i).items() if k != "targeting_key"} | {
                "targetingKey": f"user-{i}"
            }
            answer = http.post("/ofrep/v1/evaluate/flags/banner", json={"context": ofrep}, headers=OFREP_KEY)
            assert answer.status_code == 200
            assert (
                http.post("/ofrep/v1/evaluate/flags", json={"context": ofrep}, headers=OFREP_KEY).status_code
                == 200
            )
            flagd.ResolveString(
                ev2.ResolveStringRequest(
                    flag_key="banner", context=struct(ofrep | {"targetingKey": f"user-{100 + i}"})
                ),
                metadata=(("authorization", f"Bearer {SDK_KEY}"),),
                timeout=5,
            )
    finally:
        http.close()
        channel.close()

    wait_until(lambda: rds.hlen(samples_key(seeded, ENV)) >= 6, 10)
    samples = read_samples(rds, seeded, ENV)
    keys = {s.get("targeting_key") for s in samples}
    assert {hash_value(SALT, f"user-{n}") for n in (0, 1, 2, 100, 101, 102)} <= keys
    for sample in samples:
        assert_sanitized(sample)
    assert_no_secret(rds, seeded)
