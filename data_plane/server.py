"""One data-plane process: the grpc.aio server, its health and reflection services, L1 and its tasks, and
the OFREP HTTP server in the same event loop, reading the same L1 (:mod:`.ofrep`).

Ports: ``grpc_port`` (Flagyard's protocol) and, unless ``flagd_enabled`` is off, ``flagd_rpc_port`` and
``flagd_sync_port`` (flagd's protocols, :mod:`.flagd`): listeners of one server, each serving every service.

Health (``grpc.health.v1.Health``, on every port): ``""`` and every service (Flagyard's and flagd's) are
SERVING once L1 was hydrated and stay SERVING while Redis is down (evaluations are answered from L1);
``flagyard.data_plane.Redis`` is NOT_SERVING while the data plane is degraded (Redis unreachable, L1 possibly
stale). Use ``""`` for readiness and the Redis one for alerting (with ``flagyard_data_plane_degraded``).

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
from .flagd import SERVICES as FLAGD_SERVICES
from .flagd import FlagdHandlers
from .flagd import method_handlers as flagd_method_handlers
from .follower import READY, REDIS_DOWN, Follower, FollowerStatus
from .metrics import Metrics
from .ofrep import OfrepServer
from .sampling import Sampler
from .service import EVALUATION_SERVICE, SYNC_SERVICE, Handlers, method_handlers
from .settings import DataPlaneSettings
from .store import RedisStore
from .streams import Streams

log = structlog.get_logger("flagyard.data_plane")

REDIS_HEALTH_SERVICE = "flagyard.data_plane.Redis"
SERVER_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.so_reuseport", 1),
    # Snapshot chunks are cut so every message fits (SYNC_CHUNK_BYTES plus one definition, see .l1).
    ("grpc.max_send_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
    # Keepalive finds dead peers (a client killed, a partition, a NAT that forgot the connection): the
    # server pings every grpc_keepalive_seconds and closes the connection, cancelling its streams, when no
    # answer comes within grpc_keepalive_timeout_seconds (server_options puts the settings' values here).
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.http2.ping_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # Keep pinging a connection whose streams are quiet (the default stops after 2 pings without data).
    ("grpc.http2.max_pings_without_data", 0),
    # Accept clients' keepalive pings this often (SDKs ping every 20 s; gRPC's default of 5 minutes would
    # answer them with GOAWAY "too_many_pings" after max_ping_strikes).
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
    ("grpc.http2.max_ping_strikes", 2),
    # Calls that arrived but the application has not picked up yet. gRPC core's default (1000) is what a
    # fleet opening its streams at once runs into: past it calls queue in the core and many wait beyond
    # any deadline (issue 19: of 5000 streams opened together, ~3500 got a snapshot; with the limit
    # raised, all 5000 in about 2 s, measured by benchmarks/fanout_bench.py). server_options sets it
    # from max_streams.
    ("grpc.server.max_pending_requests", 1000),
    ("grpc.server.max_pending_requests_hard_limit", 3000),
]


def server_options(settings: DataPlaneSettings) -> list[tuple[str, Any]]:
    """:data:`SERVER_OPTIONS` with the keepalive settings' and a pending-call bound that lets as many streams
    open at once as max_streams allows (100 000 when it is 0)."""
    pending = max(1000, settings.max_streams or 100_000)
    keepalive = {
        "grpc.server.max_pending_requests": pending,
        "grpc.server.max_pending_requests_hard_limit": pending,
        "grpc.keepalive_time_ms": int(settings.grpc_keepalive_seconds * 1000),
        "grpc.keepalive_timeout_ms": int(settings.grpc_keepalive_timeout_seconds * 1000),
        "grpc.http2.ping_timeout_ms": int(settings.grpc_keepalive_timeout_seconds * 1000),
    }
    return [(name, keepalive.get(name, value)) for name, value in SERVER_OPTIONS]


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
            read_url=None if settings.redis_read_url is None else settings.redis_read_url.get_secret_value(),
        )
        self.encoder = BulkEncoder()
        self.health = HealthServicer()
        self.follower = Follower(self.store, settings, self.metrics, self.encoder, on_status=self._on_status)
        self.keys = SdkKeys(
            self.store,
            settings.sdk_key_cache_seconds,
            settings.sdk_key_negative_cache_seconds,
            settings.sdk_key_rate_limit,
        )
        self.sampler = Sampler(
            self.store,
            self.metrics,
            capacity=settings.sample_capacity,
            refresh_seconds=settings.sample_policy_refresh_seconds,
        )
        self.streams = Streams(settings, self.metrics)
        """Every open stream of this process, over every protocol: caps, lag, slow consumers."""
        self.handlers = Handlers(
            settings,
            self.follower,
            self.keys,
            self.metrics,
            self.encoder,
            self.store,
            self.sampler,
            self.streams,
        )
        self.flagd = (
            FlagdHandlers(settings, self.follower, self.keys, self.metrics, self.sampler, self.streams)
            if settings.flagd_enabled
            else None
        )
        self.server: grpc.aio.Server | None = None
        self.port = 0
        self.flagd_ports: dict[str, int] = {}
        """``rpc`` and ``sync``: the ports flagd's protocols were bound on (empty when turned off)."""
        self.ofrep = (
            OfrepServer(settings, self.follower, self.keys, self.metrics, self.sampler, self.streams)
            if settings.ofrep_enabled
            else None
        )
        self.ofrep_port = 0
        self._health_tasks: set[asyncio.Task[None]] = set()

    def _on_status(self, status: FollowerStatus) -> None:
        serving = health_pb2.HealthCheckResponse.SERVING
        not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
        ready = status in READY
        updates = [(name, serving if ready else not_serving) for name in ("", *self._services())]
        updates.append((REDIS_HEALTH_SERVICE, serving if status is FollowerStatus.SERVING else not_serving))
        if status in REDIS_DOWN:
            log.warning("data_plane.degraded", serving="L1 as last known", status=status.value)
        else:
            log.info("data_plane.serving", environments=len(self.follower.envs))
        for name, status in updates:
            task = asyncio.create_task(self.health.set(name, status))
            self._health_tasks.add(task)
            task.add_done_callback(self._health_tasks.discard)

    def _services(self) -> tuple[str, ...]:
        """The services served (their health follows L1's readiness)."""
        return (EVALUATION_SERVICE, SYNC_SERVICE, *(FLAGD_SERVICES if self.flagd is not None else ()))

    async def start(self) -> int:
        """Bind, start serving (NOT_SERVING until L1 is hydrated) and start L1's tasks; the bound port."""
        server = grpc.aio.server(options=server_options(self.settings))
        services = method_handlers(self.handlers)
        if self.flagd is not None:
            services |= flagd_method_handlers(self.flagd)
        for service, handlers in services.items():
            server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(service, handlers)])
        health_pb2_grpc.add_HealthServicer_to_server(self.health, server)
        for name in ("", *self._services(), REDIS_HEALTH_SERVICE):
            await self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.settings.reflection:
            health = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
            # flagd's services are not listed: their descriptors live in a pool of their own (flagd_pool)
            listed = (EVALUATION_SERVICE, SYNC_SERVICE, health, reflection.SERVICE_NAME)
            reflection.enable_server_reflection(listed, server)
        credentials = server_credentials(self.settings)

        def bind(port: int) -> int:
            address = grpc_address(self.settings.grpc_host, port)
            if credentials is None:
                bound = server.add_insecure_port(address)
            else:
                bound = server.add_secure_port(address, credentials)
            if not bound:
                raise OSError(f"cannot bind {address}")
            return bound

        # One server, several ports: each serves every service (and health), so a flagd port that is the
        # gRPC port, or the other flagd port, is that same listener.
        self.port = bind(self.settings.grpc_port)
        if self.flagd is not None:
            ports = {self.settings.grpc_port: self.port}
            for name, port in (
                ("rpc", self.settings.flagd_rpc_port),
                ("sync", self.settings.flagd_sync_port),
            ):
                if port == 0 or port not in ports:
                    ports[port] = bind(port)
                self.flagd_ports[name] = ports[port]
        await server.start()
        self.server = server
        if self.ofrep is not None:
            try:
                self.ofrep_port = await self.ofrep.start()
            except BaseException:
                await server.stop(0)
                self.server = None
                raise
        self.follower.start()
        self.sampler.start()
        self.streams.start()
        log.info(
            "grpc.started",
            port=self.port,
            flagd_ports=self.flagd_ports,
            tls=credentials is not None,
            reflection=self.settings.reflection,
        )
        return self.port

    async def stop(self, grace: float | None = None) -> None:
        if self.ofrep is not None:
            await self.ofrep.stop()
        if self.server is not None:
            await self.health.enter_graceful_shutdown()
            await self.server.stop(self.settings.grace_seconds if grace is None else grace)
            self.server = None
        await self.streams.stop()
        await self.sampler.stop()
        await self.follower.stop()
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
