"""Message sizes between the data plane and SDKs: whatever fits the definition limits streams (snapshots in
chunks of ``SYNC_CHUNK_BYTES`` plus one definition, every message within ``MAX_GRPC_MESSAGE_BYTES``, the
SDK's channel limited to that too), a stored value over the limits is skipped instead of breaking the
environment's snapshots, and contexts over ``MAX_CONTEXT_BYTES`` are refused on the remote path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import orjson
import pytest
from google.protobuf import struct_pb2
from sdk_helpers import FLAGS, SDK_KEY, Env, Events, ThreadPlane, seeded_env, stopping_planes

from flagyard import ErrorCode, FlagyardClient, ProviderEvent, Reason
from flagyard.data_plane.server import SERVER_OPTIONS
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc
from flagyard.rule_engine import limits
from flagyard.sdk._grpc import CHANNEL_OPTIONS

BIG_FLAGS = 24
METADATA = (("authorization", f"Bearer {SDK_KEY}"),)


@pytest.fixture
def env() -> Iterator[Env]:
    yield from seeded_env()


@pytest.fixture
def planes() -> Iterator[list[ThreadPlane]]:
    yield from stopping_planes()


def big_flag(key: str) -> dict[str, Any]:
    """A string flag of eight variants of almost ``MAX_VALUE_BYTES`` each: just under ``MAX_FLAG_BYTES``."""
    value = key[-1] * (limits.MAX_VALUE_BYTES - 1600)
    return {
        "key": key,
        "type": "string",
        "variants": {f"v{i}": f"{i}{value}" for i in range(8)},
        "default_variant": "v3",
    }


def big_segment(key: str) -> dict[str, Any]:
    """A segment listing targeting keys up to just under ``MAX_SEGMENT_BYTES``."""
    count = (limits.MAX_SEGMENT_BYTES - 1000) // 46
    return {"key": key, "included": [f"user-{i:07d}-{'x' * 30}" for i in range(count)]}


def raw_stream(target: str) -> list[pb.SyncFlagsResponse]:
    """The first whole snapshot, read by a client that accepts any message size (to measure them)."""
    channel = grpc.insecure_channel(target, options=[("grpc.max_receive_message_length", 256 << 20)])
    try:
        call = pb_grpc.SyncServiceStub(channel).SyncFlags(
            pb.SyncFlagsRequest(), metadata=METADATA, timeout=30
        )
        messages = []
        for message in call:
            messages.append(message)
            if not message.snapshot.more:
                call.cancel()
                return messages
        raise AssertionError("the stream ended before the snapshot did")
    finally:
        channel.close()


def test_local_client__flags_and_segment_near_their_size_limits__snapshot_chunked_sdk_ready_with_all(
    env: Env, planes: list[ThreadPlane]
) -> None:
    keys = [f"big-{i:02d}" for i in range(BIG_FLAGS)]
    for key in keys:
        definition = big_flag(key)
        assert 0.95 * limits.MAX_FLAG_BYTES < len(orjson.dumps(definition)) <= limits.MAX_FLAG_BYTES
        env.put("flag", key, definition)
    segment = big_segment("crowd")
    assert 0.95 * limits.MAX_SEGMENT_BYTES < len(orjson.dumps(segment)) <= limits.MAX_SEGMENT_BYTES
    env.put("segment", "crowd", segment)
    plane = ThreadPlane(env.settings()).start()
    planes.append(plane)

    # The SDK below accepts no message over the limit either: its readiness shows every message fit.
    assert dict(CHANNEL_OPTIONS)["grpc.max_receive_message_length"] == limits.MAX_GRPC_MESSAGE_BYTES
    assert dict(SERVER_OPTIONS)["grpc.max_send_message_length"] == limits.MAX_GRPC_MESSAGE_BYTES
    messages = raw_stream(plane.target)
    sizes = [m.ByteSize() for m in messages]
    largest = max(len(d.SerializeToString()) for m in messages for d in m.snapshot.definitions)
    assert len(messages) > 1
    assert max(sizes) <= limits.SYNC_CHUNK_BYTES + largest + 1024
    assert max(sizes) <= limits.MAX_GRPC_MESSAGE_BYTES
    with FlagyardClient(target=plane.target, sdk_key=SDK_KEY, mode="local", ready_timeout=60) as client:
        assert client.ready
        flagset = client.resolver.flagset  # type: ignore[attr-defined]
        assert set(flagset.flags) == set(keys) | set(FLAGS)
        assert "crowd" in flagset.segments
        assert client.string("big-07", "d") == "3" + "7" * (limits.MAX_VALUE_BYTES - 1600)


def test_local_client__stored_flag_far_over_the_limit__skipped_and_counted_sdk_ready_with_the_rest(
    env: Env, planes: list[ThreadPlane]
) -> None:
    """A 20 MB variant written before the limits existed (or around the syncer) must not cost every
    local-mode SDK of the environment its configuration."""
    env.put("flag", "huge", {**FLAGS["banner"], "key": "huge", "variants": {"a": "x" * 20_000_000}})
    plane = ThreadPlane(env.settings(lazy_compile=False)).start()
    planes.append(plane)

    with FlagyardClient(target=plane.target, sdk_key=SDK_KEY, mode="local", ready_timeout=30) as client:
        assert client.ready
        assert client.string("banner", "d") == "Welcome"
        result = client.details("huge", "d")
        assert (result.value, result.error_code) == ("d", ErrorCode.FLAG_NOT_FOUND)
    assert plane.sample("flagyard_data_plane_invalid_definitions_total", {"kind": "flag"}) == 1


def context_of_size(size: int) -> dict[str, Any]:
    return {"targeting_key": "u-1", "blob": "x" * size}


def test_remote_resolve__context_over_the_limit__invalid_argument_naming_the_context(
    env: Env, planes: list[ThreadPlane]
) -> None:
    plane = ThreadPlane(env.settings()).start()
    planes.append(plane)
    channel = grpc.insecure_channel(plane.target, options=[("grpc.max_send_message_length", 64 << 20)])
    stub = pb_grpc.EvaluationServiceStub(channel)
    big = struct_pb2.Struct()
    big.update(context_of_size(limits.MAX_CONTEXT_BYTES + 1))
    fits = struct_pb2.Struct()
    fits.update(context_of_size(limits.MAX_CONTEXT_BYTES - 100))
    try:
        calls: list[Any] = [
            lambda c: stub.ResolveString(pb.ResolveRequest(flag_key="banner", context=c), metadata=METADATA),
            lambda c: stub.ResolveAll(pb.ResolveAllRequest(context=c), metadata=METADATA),
        ]
        for call in calls:
            with pytest.raises(grpc.RpcError) as caught:
                call(big)
            assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            assert (caught.value.details() or "").startswith("context:")
            call(fits)  # just under the limit: answered
        huge = struct_pb2.Struct()
        huge.update(context_of_size(limits.MAX_GRPC_MESSAGE_BYTES))
        with pytest.raises(grpc.RpcError) as caught:
            calls[0](huge)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED  # over the receive limit itself
    finally:
        channel.close()


def test_remote_client__context_over_the_limit__default_with_invalid_context_nothing_sent(
    env: Env, planes: list[ThreadPlane]
) -> None:
    plane = ThreadPlane(env.settings()).start()
    planes.append(plane)
    events = Events()
    with FlagyardClient(target=plane.target, sdk_key=SDK_KEY, mode="remote", ready_timeout=10) as client:
        client.add_listener(events)

        result = client.details("banner", "d", context_of_size(limits.MAX_CONTEXT_BYTES))

        assert (result.value, result.reason, result.error_code) == (
            "d",
            Reason.ERROR,
            ErrorCode.INVALID_CONTEXT,
        )
        assert str(limits.MAX_CONTEXT_BYTES) in (result.error_message or "")
        assert plane.requests("ResolveString", "INVALID_ARGUMENT") == 0
        assert events.of(ProviderEvent.ERROR) == []
        assert client.string("banner", "d", {"targeting_key": "u-1"}) == "Welcome"


def test_resolve_all__answer_over_the_message_limit__resource_exhausted_and_fewer_keys_answered(
    env: Env, planes: list[ThreadPlane]
) -> None:
    value = "y" * (limits.MAX_VALUE_BYTES - 100)
    count = limits.MAX_GRPC_MESSAGE_BYTES // len(value) + 2
    for i in range(count):
        env.put(
            "flag",
            f"wide-{i:03d}",
            {"key": f"wide-{i:03d}", "type": "string", "variants": {"v": value}, "default_variant": "v"},
        )
    plane = ThreadPlane(env.settings()).start()
    planes.append(plane)
    channel = grpc.insecure_channel(plane.target, options=[("grpc.max_receive_message_length", 256 << 20)])
    stub = pb_grpc.EvaluationServiceStub(channel)
    try:
        with pytest.raises(grpc.RpcError) as caught:
            stub.ResolveAll(pb.ResolveAllRequest(), metadata=METADATA, timeout=30)
        assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "flag_keys" in (caught.value.details() or "")

        part = stub.ResolveAll(
            pb.ResolveAllRequest(flag_keys=[f"wide-{i:03d}" for i in range(10)]),
            metadata=METADATA,
            timeout=30,
        )
        assert len(part.flags) == 10
    finally:
        channel.close()
