"""Fan-out at fleet scale (issue 19): messages serialized once per revision, not per stream; slow and dead
consumers; stream caps; stream metrics. Real Redis, real grpc.aio data planes, real gRPC clients."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import orjson
import pytest
import redis
from dp_helpers import ENV, FLAGS, SDK_KEY, Plane, seed, settings_for, wait_until
from openfeature.schemas.protobuf.flagd.evaluation.v1 import evaluation_pb2 as ev1
from openfeature.schemas.protobuf.flagd.evaluation.v1 import evaluation_pb2_grpc as ev1_grpc
from openfeature.schemas.protobuf.flagd.sync.v1 import sync_pb2, sync_pb2_grpc

from flagyard.contracts.redis import SdkKeyRecord, apply_change, hash_sdk_key, put_sdk_key
from flagyard.data_plane.l1 import CachedEnvironment
from flagyard.data_plane.metrics import Metrics
from flagyard.data_plane.server import server_options
from flagyard.data_plane.streams import Streams
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc

REDIS_URL = os.environ.get("FLAGYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/14")
METADATA = (("authorization", f"Bearer {SDK_KEY}"),)


@pytest.fixture
def rds() -> Iterator[redis.Redis]:
    """This module's Redis: the helper's own database when the run names one (FLAGYARD_TEST_REDIS_URL)."""
    client = redis.Redis.from_url(REDIS_URL)
    yield client
    client.close()


def start(prefix: str, planes: list[Plane], **overrides: Any) -> Plane:
    plane = Plane(settings_for(prefix, REDIS_URL, **overrides)).start()
    planes.append(plane)
    return plane


def channel(port: int, *options: tuple[str, Any]) -> grpc.Channel:
    return grpc.insecure_channel(
        f"127.0.0.1:{port}",
        options=[
            ("grpc.max_receive_message_length", 64 << 20),
            ("grpc.use_local_subchannel_pool", 1),
            *options,
        ],
    )


def banner(version: int) -> dict[str, Any]:
    return {**FLAGS["banner"], "default_variant": "b" if version % 2 else "a"}


def test_fan_out__a_change_to_many_streams__serialized_once_per_protocol_not_per_stream(
    rds: redis.Redis, prefix: str, planes: list[Plane]
) -> None:
    seed(rds, prefix)
    plane = start(prefix, planes)
    ch = channel(plane.port)
    flagyard = [
        iter(pb_grpc.SyncServiceStub(ch).SyncFlags(pb.SyncFlagsRequest(), metadata=METADATA, timeout=30))
        for _ in range(30)
    ]
    flagd_sync = [
        iter(
            sync_pb2_grpc.FlagSyncServiceStub(ch).SyncFlags(
                sync_pb2.SyncFlagsRequest(), metadata=METADATA, timeout=30
            )
        )
        for _ in range(10)
    ]
    events = [
        iter(ev1_grpc.ServiceStub(ch).EventStream(ev1.EventStreamRequest(), metadata=METADATA, timeout=30))
        for _ in range(10)
    ]
    for stream in flagyard:
        assert next(stream).snapshot.more is False  # the test environment fits one chunk
    for stream in flagd_sync:
        assert next(stream).flag_configuration
    for stream in events:
        assert next(stream).type == "provider_ready"
    p = plane.plane
    assert p is not None
    assert p.flagd is not None
    documents = p.flagd.documents
    env_before = plane.call(lambda: p.follower.envs[ENV].serializations)
    flagd_before = plane.call(lambda: documents.serializations)

    changes = 3
    for version in range(2, 2 + changes):
        apply_change(rds, prefix, ENV, "flag", "banner", version, banner(version))
        for stream in flagyard:
            message = next(stream)
            assert message.change.definition.key == "banner"
            assert message.change.definition.version == version
        for stream in flagd_sync:
            assert f'"defaultVariant":"{banner(version)["default_variant"]}"' in next(
                stream
            ).flag_configuration.replace(" ", "")
        for stream in events:
            message = next(stream)
            assert message.type == "configuration_change"
            assert "banner" in message.data["flags"]

    # One SyncFlagsResponse per change for 30 Flagyard streams; one flagd document and one
    # configuration_change per change for 10 streams each (before: one per stream, 30 and 10 + 10).
    assert plane.call(lambda: p.follower.envs[ENV].serializations) - env_before == changes
    assert plane.call(lambda: documents.serializations) - flagd_before == 2 * changes
    ch.close()


CLIENT = Path(__file__).with_name("fanout_client.py")


class Fleet:
    """``fanout_client.py`` in a niced subprocess: many streams, read as fast as they come."""

    def __init__(self, port: int, streams: int, changes: int, seconds: float = 120) -> None:
        self.proc = subprocess.Popen(
            [
                "nice",
                "-n",
                "10",
                sys.executable,
                str(CLIENT),
                str(port),
                SDK_KEY,
                str(streams),
                str(changes),
                str(seconds),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        assert line == "ready", f"the fleet did not get its snapshots: {line!r}"

    def result(self) -> dict[str, Any]:
        out, _ = self.proc.communicate(timeout=180)
        return dict(orjson.loads(out.strip().splitlines()[-1]))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def big_banner(version: int) -> dict[str, Any]:
    """12 KiB a change: a client that does not read fills its flow-control window in a few."""
    return {**FLAGS["banner"], "variants": {"a": "Welcome", "b": f"{version}" + "x" * 12_000}}


def stream_counts(plane: Plane) -> dict[str, int]:
    p = plane.plane
    assert p is not None
    return dict(plane.call(lambda: {s.protocol: p.streams.count(s.protocol) for s in p.streams.open_streams}))


def sample(plane: Plane, name: str, labels: dict[str, str]) -> float:
    p = plane.plane
    assert p is not None
    value = plane.call(lambda: p.metrics.registry.get_sample_value(name, labels))
    return float(value or 0.0)


def read_to_the_end(call: Any) -> tuple[int, grpc.RpcError]:
    """How many messages a stream still yields, and the error status that ends it."""
    received = 0
    try:
        for _ in call:
            received += 1
    except grpc.RpcError as exc:
        return received, exc
    raise AssertionError(f"the stream ended OK after {received} messages")


def test_slow_consumer__one_stalled_among_200__ended_unavailable_the_others_get_every_change(
    rds: redis.Redis, prefix: str, planes: list[Plane]
) -> None:
    seed(rds, prefix)
    plane = start(prefix, planes, stream_max_pending=10, stream_check_seconds=0.5)
    fleet = Fleet(plane.port, 200, changes=40)
    try:
        # A client that opens a stream and never reads it; BDP off keeps its window at gRPC's 64 KiB.
        stalled_channel = channel(plane.port, ("grpc.http2.bdp_probe", 0))
        stalled = pb_grpc.SyncServiceStub(stalled_channel).SyncFlags(pb.SyncFlagsRequest(), metadata=METADATA)
        assert wait_until(lambda: stream_counts(plane).get("flagyard") == 201, 20)

        for version in range(2, 42):
            apply_change(rds, prefix, ENV, "flag", "banner", version, big_banner(version))

        result = fleet.result()
        assert result["changes"] == [40] * 200, "every reading stream got every change"
        assert result["codes"] == {"OK": 200}
        assert wait_until(
            lambda: (
                sample(plane, "flagyard_data_plane_streams_ended_slow_total", {"protocol": "flagyard"}) == 1
            ),
            30,
        )
        assert wait_until(lambda: stream_counts(plane).get("flagyard", 0) == 0, 20), (
            "the stalled one is freed"
        )
        assert sample(plane, "flagyard_data_plane_streams_open", {"protocol": "flagyard"}) == 0
        ended_calls = {"protocol": "flagyard", "method": "SyncFlags", "code": "UNAVAILABLE"}
        assert wait_until(lambda: sample(plane, "flagyard_data_plane_requests_total", ended_calls) == 1, 10)

        # Once it reads again, the stalled client gets what its transport held, then UNAVAILABLE (retry).
        received, ended = read_to_the_end(stalled)
        assert ended.code() is grpc.StatusCode.UNAVAILABLE
        assert "stream_max_pending" in (ended.details() or "")
        print("stalled client received", received)
        assert 1 <= received < 41, "it was ended long before the last change"
        stalled_channel.close()
    finally:
        fleet.kill()


@pytest.mark.parametrize(
    ("how", "sig"),
    [
        ("killed: the kernel closes its sockets", signal.SIGKILL),
        ("frozen: sockets open, nothing answers; only keepalive can tell", signal.SIGSTOP),
    ],
)
def test_dead_peer__client_process_killed_or_frozen__its_streams_freed(
    rds: redis.Redis, prefix: str, planes: list[Plane], how: str, sig: signal.Signals
) -> None:
    seed(rds, prefix)
    plane = start(prefix, planes, grpc_keepalive_seconds=0.5, grpc_keepalive_timeout_seconds=0.5)
    stay = channel(plane.port)
    staying = pb_grpc.SyncServiceStub(stay).SyncFlags(pb.SyncFlagsRequest(), metadata=METADATA, timeout=60)
    assert next(staying).snapshot
    assert wait_until(lambda: stream_counts(plane).get("flagyard") == 1, 10)
    before = sample(plane, "flagyard_data_plane_streams_open", {"protocol": "flagyard"})

    fleet = Fleet(plane.port, 5, changes=1_000_000, seconds=600)
    try:
        assert wait_until(lambda: stream_counts(plane).get("flagyard") == 6, 10)
        assert sample(plane, "flagyard_data_plane_streams_open", {"protocol": "flagyard"}) == before + 5
        os.kill(fleet.proc.pid, sig)
        assert wait_until(lambda: stream_counts(plane).get("flagyard") == 1, 30), how
        assert wait_until(
            lambda: sample(plane, "flagyard_data_plane_streams_open", {"protocol": "flagyard"}) == before, 10
        )
        # The live client's stream is untouched: it still gets changes.
        apply_change(rds, prefix, ENV, "flag", "banner", 2, banner(2))
        # Heartbeats (every 5 s here) may come first when finding the dead peer took that long.
        message = next(staying)
        while message.HasField("heartbeat"):
            message = next(staying)
        assert message.change.definition.version == 2
    finally:
        if sig is signal.SIGSTOP:
            os.kill(fleet.proc.pid, signal.SIGCONT)
        fleet.kill()
        stay.close()


OTHER_KEY = "sdk-test-key-2"


def flagyard_stream(ch: grpc.Channel, key: str = SDK_KEY) -> Any:
    return pb_grpc.SyncServiceStub(ch).SyncFlags(
        pb.SyncFlagsRequest(), metadata=(("authorization", f"Bearer {key}"),), timeout=30
    )


def refused(call: Any) -> grpc.RpcError:
    """The error a stream refused at a cap ends with before its first message."""
    _, error = read_to_the_end(call)
    return error


def test_max_streams__every_protocol_counts__resource_exhausted_past_it_then_a_slot_frees(
    rds: redis.Redis, prefix: str, planes: list[Plane]
) -> None:
    seed(rds, prefix)
    plane = start(prefix, planes, max_streams=3)
    assert plane.plane is not None
    ch = channel(plane.port)
    first = flagyard_stream(ch)
    assert next(first).snapshot
    flagd = sync_pb2_grpc.FlagSyncServiceStub(ch).SyncFlags(
        sync_pb2.SyncFlagsRequest(), metadata=METADATA, timeout=30
    )
    assert next(flagd).flag_configuration
    events = ev1_grpc.ServiceStub(ch).EventStream(ev1.EventStreamRequest(), metadata=METADATA, timeout=30)
    assert next(events).type == "provider_ready"

    error = refused(flagyard_stream(ch))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "maximum of 3 streams (max_streams)" in (error.details() or "")
    error = refused(
        ev1_grpc.ServiceStub(ch).EventStream(ev1.EventStreamRequest(), metadata=METADATA, timeout=30)
    )
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    with httpx.Client(base_url=f"http://127.0.0.1:{plane.plane.ofrep_port}", timeout=10) as http:
        answer = http.get("/ofrep/v1/events", headers={"X-API-Key": SDK_KEY})
        assert answer.status_code == 429
        assert "max_streams" in answer.text
        assert answer.headers["retry-after"] == "5"
    assert (
        sample(
            plane, "flagyard_data_plane_streams_refused_total", {"protocol": "flagyard", "limit": "process"}
        )
        == 1
    )
    assert (
        sample(plane, "flagyard_data_plane_streams_refused_total", {"protocol": "ofrep", "limit": "process"})
        == 1
    )
    assert stream_counts(plane) == {"flagyard": 1, "flagd-sync": 1, "flagd-rpc": 1}

    first.cancel()
    assert wait_until(lambda: sum(stream_counts(plane).values()) == 2, 10)
    again = flagyard_stream(ch)
    assert next(again).snapshot, "a closed stream frees its slot"
    for call in (again, flagd, events):
        call.cancel()
    ch.close()


def test_max_streams_per_key__one_key_capped__another_key_still_served(
    rds: redis.Redis, prefix: str, planes: list[Plane]
) -> None:
    seed(rds, prefix)
    put_sdk_key(rds, prefix, hash_sdk_key(OTHER_KEY), SdkKeyRecord(ENV, "shop", "production", None))
    plane = start(prefix, planes, max_streams_per_key=2)
    ch = channel(plane.port)
    mine = [flagyard_stream(ch) for _ in range(2)]
    for call in mine:
        assert next(call).snapshot

    error = refused(flagyard_stream(ch))
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "maximum of 2 streams on this data-plane process (max_streams_per_key)" in (error.details() or "")
    assert SDK_KEY not in (error.details() or ""), "no secret in errors"
    error = refused(
        sync_pb2_grpc.FlagSyncServiceStub(ch).SyncFlags(
            sync_pb2.SyncFlagsRequest(), metadata=METADATA, timeout=30
        )
    )
    assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED, "the cap is over every protocol"
    other = flagyard_stream(ch, OTHER_KEY)
    assert next(other).snapshot
    for call in (*mine, other):
        call.cancel()
    ch.close()


class Recorder:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


def test_streams_check__far_behind_but_progressing__kept__far_behind_and_stuck__ended() -> None:
    """The lag check alone (no transport): a burst that puts a reading stream far behind never ends it."""
    settings = settings_for("unused", REDIS_URL, stream_max_pending=10)
    streams = Streams(settings, Metrics())
    env = CachedEnvironment("env-x")
    reading, stuck, quiet = Recorder(), Recorder(), Recorder()
    a = streams.open("flagyard", "key", env, reading)
    b = streams.open("flagd-sync", "key", env, stuck)
    c = streams.open("flagyard", "key", env, quiet)
    assert streams.check() == []  # first look: no lag
    env.revision = 50  # a burst of 50 changes
    a.progress += 3  # a is sending them; b and c are not
    c.sent = 45  # c sent most, then stopped: within the bound
    assert streams.check() == [b]
    assert stuck.reasons
    assert "fell 50 revisions behind" in stuck.reasons[0]
    assert "stream_max_pending" in stuck.reasons[0]
    assert reading.reasons == []
    assert quiet.reasons == []
    assert streams.count() == 2
    assert (
        streams.metrics.registry.get_sample_value("flagyard_data_plane_stream_lag", {"protocol": "flagyard"})
        == 50
    )
    streams.close(b)  # the stream's own finally, after it was ended: idempotent
    assert streams.count() == 2


def test_server_options__keepalive_and_pending_calls__follow_the_settings() -> None:
    settings = settings_for("unused", REDIS_URL, grpc_keepalive_seconds=2, grpc_keepalive_timeout_seconds=0.5)
    options = dict(server_options(settings))
    assert options["grpc.keepalive_time_ms"] == 2000
    assert options["grpc.keepalive_timeout_ms"] == 500
    assert options["grpc.http2.ping_timeout_ms"] == 500, "gRPC times keepalive pings out by this one"
    assert options["grpc.http2.max_pings_without_data"] == 0
    assert options["grpc.server.max_pending_requests"] >= settings.max_streams
    assert options["grpc.server.max_pending_requests_hard_limit"] >= settings.max_streams
    unlimited = dict(server_options(settings_for("unused", REDIS_URL, max_streams=0)))
    assert unlimited["grpc.server.max_pending_requests"] == 100_000


def test_fleet_opening_at_once__more_streams_than_grpcs_default_pending_calls__every_one_gets_its_snapshot(
    rds: redis.Redis, prefix: str, planes: list[Plane]
) -> None:
    """gRPC core holds at most 1000 calls the application has not picked up by default; a fleet reconnecting
    at once exceeded it and many streams waited indefinitely (issue 19). 1500 at once: all served."""
    seed(rds, prefix)
    plane = start(prefix, planes)
    fleet = Fleet(plane.port, 1500, changes=1)  # its constructor asserts every stream got its snapshot
    try:
        assert stream_counts(plane).get("flagyard") == 1500
        apply_change(rds, prefix, ENV, "flag", "banner", 2, banner(2))
        result = fleet.result()
        assert result["changes"] == [1] * 1500
    finally:
        fleet.kill()
