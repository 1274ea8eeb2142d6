"""The hardening issue's three ``matches`` attacks, replayed against a real data plane.

Each pattern passed the old guard and one evaluation over a long attribute took seconds on Python's
backtracking ``re``, stalling the data plane's single event loop. Now a pattern is either refused when
the flag is validated (with the clause value's pointer) or matched by RE2 in linear time, so while
attackers evaluate the hostile flag with 1,024-character attributes, a normal evaluation on the same
data plane still answers within 50 ms.

The data plane runs as its own process (``python -m flagyard.data_plane``, one worker) over a real
Redis (the test DB named by ``FLAGYARD_TEST_REDIS_URL``, a fresh key prefix); the flags are written
with the syncer's writer; clients are real gRPC stubs.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from google.protobuf import struct_pb2
from polling_helpers import free_port, wait_until

from flagyard.contracts.redis import SdkKeyRecord, apply_change, hash_sdk_key, put_sdk_key
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc
from flagyard.rule_engine import DefinitionError, limits, validate_flag

REDIS_URL = os.environ.get("FLAGYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")
ENV = "env-regex-attack"
SDK_KEY = "fy_sdk_regex-attack-test-key"
META = {"project": "shop", "environment": "production"}

DOT_STARS, OPTIONAL_REPEAT, STACKED_REPEATS = (
    ".*.*.*=",
    "(a?){28}a{28}",
    "a{0,1000}a{0,1000}a{0,1000}a{0,1000}b",
)
HOSTILE_SUBJECTS = {
    # no '=': Python's re tried every split of the text among the three .* (cubic)
    DOT_STARS: "a" * limits.MAX_SUBJECT_LENGTH,
    # 27 a's then b's: Python's re tried every way to fill the 28 optional a's (exponential)
    OPTIONAL_REPEAT: "a" * 27 + "b" * (limits.MAX_SUBJECT_LENGTH - 27),
}
NORMAL_BUDGET_SECONDS = 0.050


def hostile_flag(key: str, pattern: str) -> dict[str, Any]:
    return {
        "key": key,
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "default_variant": "off",
        "rules": [
            {
                "id": "hostile",
                "clauses": [{"attribute": "payload", "operator": "matches", "values": [pattern]}],
                "variant": "on",
            }
        ],
    }


NORMAL_FLAG = {
    "key": "banner",
    "type": "string",
    "variants": {"a": "Welcome", "b": "Hi"},
    "default_variant": "a",
    "rules": [
        {
            "id": "de",
            "clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}],
            "variant": "b",
        }
    ],
}


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def data_plane(tmp_path: Path) -> Iterator[int]:
    """A data plane process serving the hostile flags (validated first, as the syncer would)."""
    prefix = f"fytest-{uuid.uuid4().hex[:12]}"
    client = redis.Redis.from_url(REDIS_URL)
    flags = [
        hostile_flag("dot-stars", DOT_STARS),
        hostile_flag("optional-repeat", OPTIONAL_REPEAT),
        NORMAL_FLAG,
    ]
    for flag in flags:
        apply_change(
            client, prefix, ENV, "flag", flag["key"], 1, validate_flag(flag).model_dump(mode="json"), META
        )
    put_sdk_key(client, prefix, hash_sdk_key(SDK_KEY), SdkKeyRecord(ENV, "shop", "production", None))
    port = free_port()
    env = {
        **os.environ,
        "FLAGYARD_REDIS_URL": REDIS_URL,
        "FLAGYARD_REDIS_PREFIX": prefix,
        "FLAGYARD_GRPC_HOST": "127.0.0.1",
        "FLAGYARD_DATA_PLANE_PROCESSES": "1",
        "FLAGYARD_METRICS_PORT": "0",
        "FLAGYARD_LOG_LEVEL": "warning",
    }
    with (tmp_path / "data_plane.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flagyard.data_plane", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=log,
        )
    try:
        wait_until(lambda: _port_open(port) or proc.poll() is not None, 30)
        assert proc.poll() is None, (tmp_path / "data_plane.log").read_text()
        yield port
    finally:
        proc.kill()
        proc.wait(10)
        keys = list(client.scan_iter(f"{prefix}:*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


class Stub:
    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        self.evaluation = pb_grpc.EvaluationServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {SDK_KEY}"),)

    def resolve(self, method: str, key: str, context: dict[str, Any], timeout: float = 30) -> Any:
        request_context = struct_pb2.Struct()
        request_context.update(context)
        request = pb.ResolveRequest(flag_key=key, context=request_context)
        return getattr(self.evaluation, method)(request, metadata=self.metadata, timeout=timeout)


def test_stacked_counted_repeats__refused_at_validation_with_the_clause_values_pointer() -> None:
    with pytest.raises(DefinitionError) as caught:
        validate_flag(hostile_flag("stacked", STACKED_REPEATS))
    (issue,) = caught.value.issues
    assert issue.path == "/rules/0/clauses/0/values/0"
    assert f"the limit is {limits.MAX_PATTERN_PROGRAM_SIZE}" in issue.message


def test_hostile_patterns__evaluated_with_1024_char_attributes__normal_evaluation_answers_within_50ms(
    data_plane: int,
) -> None:
    normal = Stub(data_plane)
    wait_until(lambda: normal.resolve("ResolveString", "banner", {"country": "DE"}).value == "Hi", 30)
    # Each hostile flag answers, and answers right, on a maximum-length attribute.
    for key, pattern in (("dot-stars", DOT_STARS), ("optional-repeat", OPTIONAL_REPEAT)):
        miss = normal.resolve("ResolveBoolean", key, {"payload": HOSTILE_SUBJECTS[pattern]})
        assert (miss.value, miss.reason) == (False, pb.REASON_DEFAULT)
        hit = normal.resolve("ResolveBoolean", key, {"payload": "a" * (limits.MAX_SUBJECT_LENGTH - 1) + "="})
        assert (hit.value, hit.reason) == (True, pb.REASON_TARGETING_MATCH)

    stop = threading.Event()
    attacks: list[int] = []

    def attack(key: str, subject: str) -> None:
        stub = Stub(data_plane)
        done = 0
        try:
            while not stop.is_set():
                # a fresh 1,024-character attribute each time, so nothing is answered from a memo
                payload = subject[:-4] + f"{done % 10_000:04d}"
                assert stub.resolve("ResolveBoolean", key, {"payload": payload}, timeout=10).reason == (
                    pb.REASON_DEFAULT
                )
                done += 1
        finally:
            attacks.append(done)
            stub.channel.close()

    latencies: list[float] = []
    with ThreadPoolExecutor(4) as pool:
        futures = [
            pool.submit(attack, key, HOSTILE_SUBJECTS[pattern])
            for key, pattern in (("dot-stars", DOT_STARS), ("optional-repeat", OPTIONAL_REPEAT)) * 2
        ]
        try:
            time.sleep(0.3)  # the attack is under way
            for _ in range(20):
                start = time.perf_counter()
                answer = normal.resolve("ResolveString", "banner", {"country": "DE"}, timeout=10)
                latencies.append(time.perf_counter() - start)
                assert answer.value == "Hi"
                time.sleep(0.02)
        finally:
            stop.set()
        for future in futures:
            future.result(timeout=60)
    normal.channel.close()
    assert min(attacks) > 0, "an attacker got no answer"
    assert max(latencies) < NORMAL_BUDGET_SECONDS, f"normal evaluation took {max(latencies) * 1000:.1f} ms"
