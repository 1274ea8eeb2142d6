"""Readiness probes of ``flagyard up``: each returns within about a second, True once ready."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import grpc
import httpx
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from rq import Queue, Worker

from flagyard.contracts.redis import hash_sdk_key, sdkkeys_key
from flagyard.contracts.redis_connect import redis_client
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc
from flagyard.syncer.settings import SyncerSettings

from .up_seed import KILL_SWITCH
from .up_setup import StackSettings

TIMEOUT = 1.0


def http_ready(url: str) -> Callable[[int], bool]:
    """The control plane answers ``/readyz`` with 200 (its database is reachable)."""

    def check(_pid: int) -> bool:
        return httpx.get(url, timeout=TIMEOUT).status_code == 200

    return check


def grpc_ready(target: str) -> Callable[[int], bool]:
    """The data plane's gRPC health service reports ``""`` SERVING (L1 is loaded from Redis)."""

    def check(_pid: int) -> bool:
        with grpc.insecure_channel(target) as channel:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=TIMEOUT
            )
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return check


def syncer_ready(settings: SyncerSettings) -> Callable[[int], bool]:
    """An RQ worker with the child's pid is registered on the sync queue (it takes jobs)."""

    def check(pid: int) -> bool:
        connection = redis_client(
            settings.redis_url.get_secret_value(), socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )
        try:
            workers = Worker.all(queue=Queue(settings.sync_queue, connection=connection))
            return any(w.pid == pid for w in workers)
        finally:
            connection.close()

    return check


def demo_served(stack: StackSettings, target: str, sdk_keys: Sequence[str]) -> Callable[[], bool]:
    """Every new SDK key reached Redis and evaluates the demo's kill switch through the data plane.

    The key is looked for in Redis first, so the data plane never caches it as unknown."""
    settings = stack.syncer

    def check() -> bool:
        connection = redis_client(
            settings.redis_url.get_secret_value(), socket_timeout=TIMEOUT, socket_connect_timeout=TIMEOUT
        )
        try:
            hashes = [hash_sdk_key(key) for key in sdk_keys]
            if not all(connection.hmget(sdkkeys_key(settings.redis_prefix), hashes)):
                return False
        finally:
            connection.close()
        with grpc.insecure_channel(target) as channel:
            stub = pb_grpc.EvaluationServiceStub(channel)
            for key in sdk_keys:
                reply = stub.ResolveBoolean(
                    pb.ResolveRequest(flag_key=KILL_SWITCH, context=struct_pb2.Struct()),
                    metadata=(("authorization", f"Bearer {key}"),),
                    timeout=TIMEOUT,
                )
                if not reply.HasField("value") or reply.reason == pb.REASON_ERROR:
                    return False
        return True

    return check
