"""Fan-out at fleet scale (issue 19): messages serialized once per revision, not per stream; slow and dead
consumers; stream caps; stream metrics. Real Redis, real grpc.aio data planes, real gRPC clients."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
import redis
from dp_helpers import ENV, FLAGS, SDK_KEY, Plane, seed, settings_for
from openfeature.schemas.protobuf.flagd.evaluation.v1 import evaluation_pb2 as ev1
from openfeature.schemas.protobuf.flagd.evaluation.v1 import evaluation_pb2_grpc as ev1_grpc
from openfeature.schemas.protobuf.flagd.sync.v1 import sync_pb2, sync_pb2_grpc

from flagyard.contracts.redis import apply_change
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
