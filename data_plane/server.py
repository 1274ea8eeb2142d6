"""One data-plane process: the grpc.aio server, its health and reflection services, L1 and its tasks, and
the OFREP HTTP server in the same event loop, reading the same L1 (:mod:`.ofrep`).

Health (``grpc.health.v1.Health``): ``""`` and both Flagyard services are SERVING once L1 was hydrated and
stay SERVING while Redis is down (evaluations are answered from L1); ``flagyard.data_plane.Redis`` is
NOT_SERVING while the data plane is degraded (Redis unreachable, L1 possibly stale). Use ``""`` for
readiness and the Redis one for alerting (with ``flagyard_data_plane_degraded``).

Transport: TLS when ``data_plane_tls_cert_file``/``data_plane_tls_key_file`` are set, else plaintext (for a
mesh or private network that secures transport); server reflection only where ``settings.reflection``
(development mode by default). Messages either way are bounded by ``limits.MAX_GRPC_MESSAGE_BYTES``.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Any

import grpc
import grpc.aio
import structlog
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection
from prometheus_client import CollectorRegistry

from flagyard.rule_engine import limits

from .auth import SdkKeys
from .convert import BulkEncoder
from .exceptions import ConfigurationError
from .follower import L1
from .metrics import Metrics
from .ofrep import OfrepServer
from .service import EVALUATION_SERVICE, SYNC_SERVICE, Handlers, method_handlers
from .settings import DataPlaneSettings
from .store import RedisStore

log = structlog.get_logger("flagyard.data_plane")

REDIS_HEALTH_SERVICE = "flagyard.data_plane.Redis"
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.so_reuseport", 1),
    # Snapshot chunks are cut so every message fits (SYNC_CHUNK_BYTES plus one definition, see .l1).
    ("grpc.max_send_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
]


def grpc_address(host: str, port: int) -> str:
    """``host:port`` as gRPC binds it. ``*`` and the empty host mean every interface, as they do for
    uvicorn and the metrics server, but gRPC knows them as ``[::]`` (both families); an IPv6 address
    needs its brackets."""
    bare = host.strip("[]")
    if bare in ("", "*"):
        bare = "::"
    return f"[{bare}]:{port}" if ":" in bare else f"{bare}:{port}"


class DataPlane:
    """A data plane serving on ``settings.grpc_host:grpc_port`` (start/stop within one event loop)."""

    def __init__(self, settings: DataPlaneSettings, registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.metrics = Metrics(registry, settings.metrics_flag_label_cap)
        self.store = RedisStore(
            settings.redis_url.get_secret_value(),
            settings.redis_prefix,
            timeout=settings.redis_timeout_seconds,
            block_ms=settings.stream_block_ms,
        )
        self.encoder = BulkEncoder()
        self.health = HealthServicer()
        self.l1 = L1(self.store, settings, self.metrics, self.encoder, on_state=self._on_state)
        self.keys = SdkKeys(
            self.store, settings.sdk_key_cache_seconds, settings.sdk_key_negative_cache_seconds
        )
        self.handlers = Handlers(settings, self.l1, self.keys, self.metrics, self.encoder, self.store)
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.ofrep = (
            OfrepServer(settings, self.l1, self.keys, self.metrics) if settings.ofrep_enabled else None
        )
        self.ofrep_port = 0
        self._health_tasks: set[asyncio.Task[None]] = set()

    def _on_state(self, ready: bool, degraded: bool) -> None:
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        updates = [
            (name, serving if ready else not_serving) for name in ("", EVALUATION_SERVICE, SYNC_SERVICE)
        ]
        updates.append((REDIS_HEALTH_SERVICE, not_serving if degraded or not ready else serving))
        if degraded:
            log.warning("data_plane.degraded", serving="L1 as last known")
        elif ready:
            log.info("data_plane.serving", environments=len(self.l1.envs))
        for name, status in updates:
            task = asyncio.create_task(self.health.set(name, status))
            self._health_tasks.add(task)
            task.add_done_callback(self._health_tasks.discard)

    async def start(self) -> int:
        """Bind, start serving (NOT_SERVING until L1 is hydrated) and start L1's tasks; the bound port."""
        server = grpc.aio.server(options=SERVER_OPTIONS)
        for service, handlers in method_handlers(self.handlers).items():
            server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, handlers)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for name in ("", EVALUATION_SERVICE, SYNC_SERVICE, REDIS_HEALTH_SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.settings.reflection:
            health = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
            services = (EVALUATION_SERVICE, SYNC_SERVICE, health, reflection.SERVICE_NAME)
            reflection.enable_server_reflection(services, server)
        address = grpc_address(self.settings.grpc_host, self.settings.grpc_port)
        credentials = server_credentials(self.settings)
        if credentials is None:
            self.port = server.add_insecure_port(address)
        else:
            self.port = server.add_secure_port(address, credentials)
        if not self.port:
            raise OSError(f"cannot bind {address}")
        await server.start()
        self.server = server
        if self.ofrep is not None:
            try:
                self.ofrep_port = await self.ofrep.start()
            except BaseException:
                await server.stop(0)
                self.server = None
                raise
        self.l1.start()
        log.info(
            "grpc.started", port=self.port, tls=credentials is not None, reflection=self.settings.reflection
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        if self.ofrep is not None:
            await self.ofrep.stop()
        if self.server is not None:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(self.settings.grace_seconds if grace is None else grace)
            self.server = None
        await self.l1.stop()
        await self.store.close()
        log.info("grpc.stopped")

    async def serve(self) -> None:
        """Start, run until SIGTERM or SIGINT, stop gracefully."""
        await self.start()
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stopping.set)
        try:
            await stopping.wait()
        finally:
            await self.stop()


def server_credentials(settings: DataPlaneSettings) -> grpc.ServerCredentials | None:
    """TLS credentials from the settings' certificate and key files (None: plaintext); ConfigurationError
    if a file cannot be read."""
    cert_file, key_file = settings.data_plane_tls_cert_file, settings.data_plane_tls_key_file
    if cert_file is None or key_file is None:
        return None
    try:
        chain, key = cert_file.read_bytes(), key_file.read_bytes()
    except OSError as exc:
        raise ConfigurationError(f"cannot read the TLS certificate or key: {exc}") from exc
    return grpc.ssl_server_credentials([(key, chain)])


def run(settings: DataPlaneSettings, *, serve_metrics: bool = True) -> None:
    """Run one data-plane process (with uvloop where available) until signalled."""
    if serve_metrics and settings.metrics_port:
        from prometheus_client import REGISTRY, start_http_server

        plane = DataPlane(settings, REGISTRY)
        start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=REGISTRY)
    else:
        plane = DataPlane(settings)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a server extra
        asyncio.run(plane.serve())
    else:
        uvloop.run(plane.serve())
