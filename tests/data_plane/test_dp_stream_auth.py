"""An open SyncFlags stream checks its SDK key again within the key-cache TTL: a key revoked in Redis, or one
that expires, ends the stream with UNAUTHENTICATED; a valid key's stream stays open."""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import pytest
import redis
from dp_helpers import ENV, FLAGS, SDK_KEY, Client, Plane, settings_for, wait_until

from flagyard.contracts.redis import SdkKeyRecord, apply_change, delete_sdk_key, hash_sdk_key, put_sdk_key
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb

OTHER_KEY = "sdk-test-key-2"


@pytest.fixture
def short_ttl_plane(seeded: str, planes: list[Plane]) -> Plane:
    """Keys cached for 0.5 s; heartbeats far apart, so only the key check can end a quiet stream."""
    plane = Plane(settings_for(seeded, sdk_key_cache_seconds=0.5, sync_heartbeat_seconds=60)).start()
    planes.append(plane)
    return plane


@pytest.fixture
def clients(short_ttl_plane: Plane) -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for c in made:
        c.close()


def open_synced(client: Client) -> Iterator[pb.SyncFlagsResponse]:
    """A stream whose whole first snapshot was read."""
    call = client.sync.SyncFlags(pb.SyncFlagsRequest(), metadata=client.metadata, timeout=20)
    messages: Iterator[pb.SyncFlagsResponse] = iter(call)
    while next(messages).snapshot.more:
        pass
    return messages


def sample(plane: Plane, name: str, labels: dict[str, str] | None = None) -> float | None:
    return plane.plane.metrics.registry.get_sample_value(name, labels or {})  # type: ignore[union-attr]


def test_sync_flags__key_revoked_in_redis_mid_stream__stream_ends_unauthenticated_other_keys_stay(
    short_ttl_plane: Plane, clients: list[Client], rds: redis.Redis, seeded: str
) -> None:
    put_sdk_key(rds, seeded, hash_sdk_key(OTHER_KEY), SdkKeyRecord(ENV, "shop", "production", None))
    clients += [Client(short_ttl_plane.port, SDK_KEY), Client(short_ttl_plane.port, OTHER_KEY)]
    revoked, kept = open_synced(clients[0]), open_synced(clients[1])
    time.sleep(1.2)  # several cache periods with the key valid: the stream must stay open meanwhile

    delete_sdk_key(rds, seeded, hash_sdk_key(SDK_KEY))

    with pytest.raises(grpc.RpcError) as caught:
        next(revoked)
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "unknown SDK key" in (caught.value.details() or "")
    apply_change(rds, seeded, ENV, "flag", "banner", 2, {**FLAGS["banner"], "default_variant": "b"})
    change = next(kept)
    assert change.change.definition.key == "banner"
    assert sample(short_ttl_plane, "flagyard_data_plane_sync_streams_revoked_total") == 1
    assert (
        sample(
            short_ttl_plane,
            "flagyard_data_plane_requests_total",
            {"protocol": "flagyard", "method": "SyncFlags", "code": "UNAUTHENTICATED"},
        )
        == 1
    )
    assert wait_until(lambda: sample(short_ttl_plane, "flagyard_data_plane_sync_streams") == 1, timeout=5)


def test_sync_flags__key_expires_mid_stream__stream_ends_unauthenticated(
    rds: redis.Redis, seeded: str, planes: list[Plane]
) -> None:
    """With the default 30 s cache: the expiry, not a cache refresh, ends the stream."""
    plane = Plane(settings_for(seeded, sync_heartbeat_seconds=60)).start()
    planes.append(plane)
    record = SdkKeyRecord(ENV, "shop", "production", time.time() + 1.5)
    put_sdk_key(rds, seeded, hash_sdk_key(OTHER_KEY), record)
    client = Client(plane.port, OTHER_KEY)
    try:
        messages = open_synced(client)

        with pytest.raises(grpc.RpcError) as caught:
            next(messages)

        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert "expired SDK key" in (caught.value.details() or "")
    finally:
        client.close()
