"""``sdk_key_rate_limit``: one token bucket per SDK key and process, shared by every protocol the data plane
speaks (Flagyard's gRPC, flagd's RPC, OFREP). Past it a call is refused with the protocol's own "slow down"
(RESOURCE_EXHAUSTED, 429 with Retry-After) while other keys keep being served; without it nothing is limited.

The rate is 0.25 calls/s (a burst of one, refilled after 4 s), so calls made back to back cannot refill it."""

from __future__ import annotations

import grpc
import httpx
import pytest
import redis
from dp_helpers import ENV, SDK_KEY, Client, Plane, settings_for
from google.protobuf import struct_pb2

from flagyard.contracts.redis import SdkKeyRecord, hash_sdk_key, put_sdk_key
from flagyard.proto.gen.flagd.evaluation.v2 import evaluation_pb2 as ev2
from flagyard.proto.gen.flagd.evaluation.v2 import evaluation_pb2_grpc as ev2_grpc

OTHER_KEY = "sdk-test-key-other"


def _plane(planes: list[Plane], prefix: str, rate: float) -> Plane:
    plane = Plane(settings_for(prefix, sdk_key_rate_limit=rate)).start()
    planes.append(plane)
    return plane


def _flagd(plane: Plane, key: str) -> str:
    """A flagd v2 ResolveString of ``banner``: its value, or the status code's name when refused."""
    assert plane.plane is not None
    with grpc.insecure_channel(f"127.0.0.1:{plane.plane.flagd_ports['rpc']}") as channel:
        stub = ev2_grpc.ServiceStub(channel)
        try:
            response = stub.ResolveString(
                ev2.ResolveStringRequest(flag_key="banner", context=struct_pb2.Struct()),
                metadata=(("authorization", f"Bearer {key}"),),
                timeout=5,
            )
        except grpc.RpcError as exc:
            return str(exc.code().name)
    return str(response.value)


def _ofrep(plane: Plane, key: str) -> httpx.Response:
    assert plane.plane is not None
    url = f"http://127.0.0.1:{plane.plane.ofrep_port}/ofrep/v1/evaluate/flags/banner"
    return httpx.post(url, json={}, headers={"X-API-Key": key}, timeout=10)


def test_rate_limit__one_bucket_per_key_across_protocols__others_served(
    rds: redis.Redis, seeded: str, planes: list[Plane]
) -> None:
    put_sdk_key(rds, seeded, hash_sdk_key(OTHER_KEY), SdkKeyRecord(ENV, "shop", "production", None))
    plane = _plane(planes, seeded, 0.25)
    client, other = Client(plane.port, SDK_KEY), Client(plane.port, OTHER_KEY)
    try:
        assert client.resolve("ResolveString", "banner").value == "Welcome"  # the burst: one call

        with pytest.raises(grpc.RpcError) as refused:
            client.resolve("ResolveString", "banner")
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "rate limit" in (refused.value.details() or "")
        assert _flagd(plane, SDK_KEY) == "RESOURCE_EXHAUSTED"
        over = _ofrep(plane, SDK_KEY)
        assert (over.status_code, int(over.headers["retry-after"]) >= 1) == (429, True)

        assert other.resolve("ResolveString", "banner").value == "Welcome"  # its own bucket
        assert plane.plane is not None
        counted = plane.plane.metrics.registry.get_sample_value(
            "flagyard_data_plane_requests_total",
            {"protocol": "flagyard", "method": "ResolveString", "code": "RESOURCE_EXHAUSTED"},
        )
        assert counted == 1
    finally:
        client.close()
        other.close()


def test_rate_limit__off_by_default__back_to_back_calls_all_served(seeded: str, planes: list[Plane]) -> None:
    plane = _plane(planes, seeded, 0.0)
    client = Client(plane.port, SDK_KEY)
    try:
        assert [client.resolve("ResolveString", "banner").value for _ in range(20)] == ["Welcome"] * 20
        assert [_flagd(plane, SDK_KEY) for _ in range(5)] == ["Welcome"] * 5
        assert [_ofrep(plane, SDK_KEY).status_code for _ in range(5)] == [200] * 5
    finally:
        client.close()
