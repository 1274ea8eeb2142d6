"""Data-plane settings, from ``FLAGYARD_*`` environment variables (pydantic-settings)."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator

from flagyard.contracts.redis import MAX_INSTANCE_ID
from flagyard.contracts.settings import RedisSettings, check_sentinel_url, redis_url_problem
from flagyard.rule_engine import limits

from .exceptions import ConfigurationError


class DataPlaneSettings(RedisSettings):
    """Every field is read from ``FLAGYARD_<FIELD NAME>``, e.g. ``FLAGYARD_REDIS_URL``.

    The data plane reads only Redis (the shared group, with mode and logging) and its own knobs: no
    database, no secret of the control plane. ``mode=production`` turns server reflection off by default.
    """

    configuration_error = ConfigurationError

    redis_timeout_seconds: float = Field(
        default=0.5, gt=0, description="Socket timeout of request-path Redis reads (SDK key lookups)."
    )
    redis_read_url: SecretStr | None = Field(
        default=None,
        description="A Redis to read from instead of redis_url: a replica near this data plane (another "
        "zone), plain (redis://) or through Sentinel (redis+sentinel://…: one of the set's replicas, the "
        "master if none is up). Environment loads, change streams, SDK-key lookups and sampling policies "
        "read it; what the data plane writes (served revisions, usage counts, context samples) still goes "
        "to redis_url. Unset: redis_url.",
    )
    grpc_host: str = Field(default="[::]", description="Address the gRPC server binds.")
    grpc_port: int = Field(default=50051, ge=0, le=65535, description="0 picks a free port (one process).")
    data_plane_processes: int = Field(
        default=1, ge=1, le=256, description="Processes serving the port together (SO_REUSEPORT)."
    )
    data_plane_tls_cert_file: Path | None = Field(
        default=None,
        description="PEM certificate chain the gRPC port serves TLS with (with data_plane_tls_key_file; "
        "neither: plaintext, for a mesh or a private network that provides transport security).",
    )
    data_plane_tls_key_file: Path | None = Field(
        default=None, description="PEM private key of data_plane_tls_cert_file."
    )
    data_plane_reflection: bool | None = Field(
        default=None,
        description="Serve gRPC server reflection (lists the services to grpcurl and the like); "
        "unset: on in development mode, off in production.",
    )
    ofrep_enabled: bool = Field(
        default=True, description="Serve OFREP (OpenFeature Remote Evaluation Protocol) over HTTP."
    )
    ofrep_host: str = Field(default="[::]", description="Address the OFREP HTTP server binds.")
    ofrep_port: int = Field(
        default=8016, ge=0, le=65535, description="OFREP's HTTP port (flagd's); 0 picks a free one."
    )
    sdk_key_rate_limit: float = Field(
        default=0.0,
        ge=0,
        description="Calls per second one SDK key may make to one data-plane process over every protocol "
        "(Flagyard's gRPC, flagd's, OFREP; a stream counts once, when it opens), in bursts of one second's "
        "worth (at least 1). Beyond it: RESOURCE_EXHAUSTED on gRPC, 429 with Retry-After on OFREP. "
        "0: no limit.",
    )
    ofrep_event_streams: bool = Field(
        default=True,
        description="Offer OFREP's SSE change notifications (eventStreams in bulk answers, ADR-0008).",
    )
    ofrep_max_streams_per_key: int = Field(
        default=32,
        ge=1,
        description="OFREP event streams one SDK key may hold open per process (429 beyond).",
    )
    ofrep_cors_origins: str = Field(
        default="",
        description="Origins (comma-separated, or *) whose browsers may call OFREP (CORS); empty: none.",
    )
    ofrep_max_connections: int = Field(
        default=10_000, ge=1, description="Open OFREP connections per process; more are answered 503."
    )
    ofrep_keep_alive_seconds: int = Field(
        default=75, ge=1, description="How long an idle OFREP keep-alive connection stays open."
    )
    metrics_port: int = Field(default=9464, ge=0, le=65535, description="Prometheus /metrics; 0 disables.")
    metrics_host: str = Field(
        default="0.0.0.0",  # noqa: S104 - a scraper elsewhere must reach it; `flagyard up` binds loopback
        description="Address the metrics server binds.",
    )
    sdk_key_cache_seconds: float = Field(
        default=30.0, ge=0, description="How long a verified SDK key is trusted before it is read again."
    )
    sdk_key_negative_cache_seconds: float = Field(
        default=5.0, ge=0, description="How long an unknown SDK key is remembered as unknown."
    )
    stream_block_ms: int = Field(default=2000, ge=10, description="XREAD BLOCK time.")
    stream_batch: int = Field(default=500, ge=1, description="XREAD COUNT.")
    env_refresh_seconds: float = Field(
        default=5.0, gt=0, description="How often P:envs is re-read and the revision lag measured."
    )
    sync_history: int = Field(
        default=1000, ge=0, description="Changes kept per environment for SyncFlags resumes."
    )
    sync_heartbeat_seconds: float = Field(default=15.0, gt=0, description="SyncFlags heartbeat interval.")
    sync_resume_wait_seconds: float = Field(
        default=1.0, ge=0, description="How long a resume from a revision ahead of this process waits."
    )
    lazy_compile: bool = Field(
        default=True,
        description="Load environments as placeholders compiled on first use and in the background "
        "(serve a large environment within a second); false compiles everything before serving.",
    )
    compile_ahead: bool = Field(
        default=True,
        description="With lazy_compile, compile every placeholder in the background once serving; false "
        "compiles a definition only when first used (less memory for large, sparsely used environments).",
    )
    metrics_flag_label_cap: int = Field(
        default=200, ge=0, description="Distinct flag keys labelled in metrics; the rest count as 'other'."
    )
    sample_policy_refresh_seconds: float = Field(
        default=5.0,
        gt=0,
        description="How often the context-sampling policies of environments called recently are re-read "
        "(an environment with samples waiting has its policy re-read before each flush, every second).",
    )
    sample_capacity: int = Field(
        default=limits.MAX_SAMPLE_CONTEXTS,
        ge=1,
        le=limits.MAX_SAMPLE_CONTEXTS,
        description="Distinct sampled contexts kept per environment in Redis (the most recently seen).",
    )
    grace_seconds: float = Field(default=5.0, ge=0, description="Shutdown grace for in-flight calls.")
    instance_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_INSTANCE_ID - 8,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="How this data plane names itself when it reports the revision it serves per environment "
        "(the console's propagation view; not a secret); unset: hostname-pid. With several processes each "
        "adds -<pid>.",
    )
    flagd_enabled: bool = Field(
        default=True,
        description="Serve flagd's gRPC protocols (data_plane/flagd.py) on flagd_rpc_port, flagd_sync_port.",
    )
    flagd_rpc_port: int = Field(
        default=8013,
        ge=0,
        le=65535,
        description="flagd RPC mode (flagd.evaluation.v1/v2) port, flagd's own default; 0 picks a free port.",
    )
    flagd_sync_port: int = Field(
        default=8015,
        ge=0,
        le=65535,
        description="flagd in-process mode (flagd.sync.v1) port, flagd's own default; 0 picks a free port.",
    )
    flagd_selector_keys: bool = Field(
        default=True,
        description="Accept the SDK key in flagd's selector ('sdkKey=<key>') from providers that cannot send "
        "an authorization header; false accepts only 'authorization: Bearer <key>'.",
    )
    flagd_keep_alive_seconds: float = Field(
        default=20.0, gt=0, description="Interval of flagd EventStream keep_alive events (flagd's is 20 s)."
    )

    # --- streams at fleet scale (data_plane/streams.py) ---
    max_streams: int = Field(
        default=10_000,
        ge=0,
        description="Open streams this process serves, every protocol together (Flagyard SyncFlags, flagd "
        "SyncFlags and EventStream, OFREP SSE); past it a new stream is refused (RESOURCE_EXHAUSTED, OFREP "
        "429). 0: no cap.",
    )
    max_streams_per_key: int = Field(
        default=0,
        ge=0,
        description="Open streams one SDK key may hold on this process, every protocol together (RESOURCE_"
        "EXHAUSTED, OFREP 429 beyond). 0: no cap (every instance of an app shares its key).",
    )
    stream_max_pending: int = Field(
        default=100,
        ge=1,
        description="Revisions a stream may fall behind while its client does not read; a stream further "
        "behind that made no progress for stream_check_seconds is ended with UNAVAILABLE (the SDK resumes "
        "from its revision).",
    )
    stream_check_seconds: float = Field(
        default=5.0, gt=0, description="How often every open stream's lag is measured and checked."
    )

    grpc_keepalive_seconds: float = Field(
        default=30.0,
        ge=0.1,
        description="How often the gRPC server pings each connection; a peer that does not answer within "
        "grpc_keepalive_timeout_seconds is dead: its connection is closed and its streams freed.",
    )
    grpc_keepalive_timeout_seconds: float = Field(
        default=10.0, ge=0.1, description="How long a keepalive ping may go unanswered (see above)."
    )

    @field_validator("redis_read_url")
    @classmethod
    def _read_url_well_formed(cls, value: SecretStr | None) -> SecretStr | None:
        return check_sentinel_url(value)

    def production_problems(self) -> list[str]:
        problems = super().production_problems()
        if self.redis_read_url is not None:
            problem = redis_url_problem(self.redis_read_url.get_secret_value(), "FLAGYARD_REDIS_READ_URL")
            problems += [problem] if problem else []
        return problems

    @model_validator(mode="after")
    def _tls_pair(self) -> Self:
        if (self.data_plane_tls_cert_file is None) != (self.data_plane_tls_key_file is None):
            raise ValueError(
                "data_plane_tls_cert_file and data_plane_tls_key_file go together: set both (TLS) or neither"
            )
        return self

    def served_instance_id(self) -> str:
        """This process's instance id (:func:`~flagyard.contracts.redis.check_instance_id` holds for it)."""
        pid = os.getpid()
        if self.instance_id is not None:
            return self.instance_id if self.data_plane_processes == 1 else f"{self.instance_id}-{pid}"
        host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[: MAX_INSTANCE_ID - 12] or "host"
        return f"{host}-{pid}"

    @property
    def reflection(self) -> bool:
        """Whether server reflection is served (the setting, else only in development mode)."""
        if self.data_plane_reflection is not None:
            return self.data_plane_reflection
        return self.mode != "production"
