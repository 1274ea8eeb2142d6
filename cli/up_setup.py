"""What ``flagyard up`` does before it starts anything: settings, preflight, database and migrations.

Needs the server extra (``pip install 'flagyard[server]'``); ``flagyard.cli.up`` imports it lazily.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from dotenv import dotenv_values
from psycopg import sql
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from flagyard.contracts.redis_connect import is_sentinel_url, parse_sentinel_url, redis_client
from flagyard.contracts.settings import RedisSettings
from flagyard.control_plane import migrations
from flagyard.control_plane.settings import Settings
from flagyard.data_plane.settings import DataPlaneSettings
from flagyard.db.settings import DatabaseSettings
from flagyard.syncer.settings import SyncerSettings

from .addresses import bind_host
from .exceptions import PreflightError

MAINTENANCE_DATABASE = "postgres"


class UpSettings(BaseSettings):
    """The knobs of ``flagyard up`` itself (the planes read their own settings)."""

    model_config = SettingsConfigDict(env_prefix="FLAGYARD_", extra="ignore", frozen=True)

    http_host: str = "127.0.0.1"
    """Address the control plane's REST API binds (``--host``)."""
    http_port: int = Field(default=8000, ge=1, le=65535)
    """Port of the REST API (``--port``)."""
    up_ready_timeout_seconds: float = Field(default=60.0, gt=0)
    """How long every process gets to become ready before ``flagyard up`` gives up."""
    up_stop_timeout_seconds: float = Field(default=15.0, gt=0)
    """How long each process gets to stop after SIGTERM before it is killed."""


@dataclass(frozen=True)
class StackSettings:
    """Each process's settings, read from the one environment every child inherits."""

    up: UpSettings
    control_plane: Settings
    syncer: SyncerSettings
    data_plane: DataPlaneSettings


def load_environment(env_file: Path | None, overrides: dict[str, str]) -> None:
    """Merge ``env_file``'s ``FLAGYARD_*`` variables (the process environment wins) and the command-line
    ``overrides`` (they win) into this process's environment, which every child inherits."""
    if env_file is not None and env_file.is_file():
        for name, value in dotenv_values(env_file).items():
            if name.startswith("FLAGYARD_") and value is not None:
                os.environ.setdefault(name, value)
    os.environ.update(overrides)


LOOPBACK = "127.0.0.1"
LISTENERS = (
    "FLAGYARD_HTTP_HOST",
    "FLAGYARD_GRPC_HOST",
    "FLAGYARD_METRICS_HOST",
    "FLAGYARD_SYNCER_METRICS_HOST",
    "FLAGYARD_OFREP_HOST",
)
"""Every address a process of ``flagyard up`` listens on (REST, gRPC, the data plane's and the syncer's
metrics, OFREP)."""


def loopback_in_development() -> None:
    """In development mode every listener not set explicitly binds 127.0.0.1: the demo's keys are printed
    and the development admin key is public, so nothing may answer on another interface unless asked to.
    Production mode keeps each plane's own default (set them explicitly there)."""
    if os.environ.get("FLAGYARD_MODE", "development") != "development":
        return
    for name in LISTENERS:
        os.environ.setdefault(name, LOOPBACK)


def load_settings() -> StackSettings:
    """Every plane's settings from the environment; pydantic's ValidationError if one is invalid."""
    return StackSettings(UpSettings(), Settings(), SyncerSettings(), DataPlaneSettings())


# --- preflight -----------------------------------------------------------------------------------------


def masked(url: str) -> str:
    """A URL fit to print: its password replaced by ``***``."""
    try:
        if is_sentinel_url(url):
            return parse_sentinel_url(url).masked()
        return sa.make_url(url).render_as_string(hide_password=True)
    except (sa.exc.ArgumentError, ValueError):
        return "<an unparsable URL>"


def _postgres_hints() -> list[str]:
    versions = sorted(p.name for p in Path("/etc/postgresql").glob("*") if p.is_dir())
    hints = []
    if versions:
        hints.append(f"pg_ctlcluster --skip-systemctl-redirect {versions[-1]} main start")
    hints += [
        "docker compose up -d postgres redis   # from the repository's docker-compose.yml",
        "brew services start postgresql        # macOS",
    ]
    return hints


def _redis_hints(port: int) -> list[str]:
    return [
        f"redis-server --daemonize yes --port {port} --save '' --appendonly no",
        "docker compose up -d postgres redis   # from the repository's docker-compose.yml",
        "brew services start redis             # macOS",
    ]


def _problem(what: str, where: str, url: str, error: str, hints: list[str], setting: str) -> str:
    lines = [
        f"{what} is not reachable at {where} ({masked(url)}): {error}",
        "  Start it, for example:",
        *(f"    {h}" for h in hints),
        f"  or point {setting} at a running one (environment or .env).",
    ]
    return "\n".join(lines)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _conninfo(url: str, database: str | None = None) -> str:
    """A libpq URL for psycopg from the SQLAlchemy URL (driver suffix dropped, database replaced)."""
    parsed = sa.make_url(url).set(drivername="postgresql")
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


def _pg_where(url: str) -> str:
    parsed = sa.make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


def check_postgres(settings: DatabaseSettings) -> str | None:
    """Connect to the maintenance database; a problem report naming PostgreSQL and where, or None."""
    url = settings.sqlalchemy_url
    try:
        with psycopg.connect(
            _conninfo(url, MAINTENANCE_DATABASE), connect_timeout=settings.db_connect_timeout_seconds
        ):
            return None
    except psycopg.OperationalError as exc:
        return _problem(
            "PostgreSQL", _pg_where(url), url, _first_line(exc), _postgres_hints(), "FLAGYARD_DATABASE_URL"
        )
    except (ValueError, sa.exc.ArgumentError) as exc:
        return f"FLAGYARD_DATABASE_URL is not a PostgreSQL URL ({masked(url)}): {_first_line(exc)}"


def check_redis(settings: RedisSettings) -> str | None:
    """PING Redis; a problem report naming Redis and where, or None."""
    url = settings.redis_url.get_secret_value()
    try:
        client = redis_client(
            url,
            socket_timeout=settings.redis_timeout_seconds,
            socket_connect_timeout=settings.redis_timeout_seconds,
        )
    except ValueError as exc:
        return f"FLAGYARD_REDIS_URL is not a Redis URL ({masked(url)}): {_first_line(exc)}"
    options = client.connection_pool.connection_kwargs
    host, port = options.get("host", "localhost"), int(options.get("port", 6379))
    where, hints = f"{host}:{port}", _redis_hints(port)
    if is_sentinel_url(url):  # no address of its own: the Sentinels name the master
        target = parse_sentinel_url(url)
        where = f"the master {target.master!r} of the Sentinels " + ",".join(
            f"{h}:{p}" for h, p in target.sentinels
        )
        hints = ["the Redis servers and Sentinels of the set (redis-server --sentinel)"]
    try:
        client.ping()
    except redis.RedisError as exc:
        # redis-py appends every Sentinel client's repr to "No master found": the first part says it all.
        error = _first_line(exc).split(" : <", 1)[0]
        return _problem("Redis", where, url, error, hints, "FLAGYARD_REDIS_URL")
    finally:
        client.close()
    return None


def _port_free(host: str, port: int) -> bool:
    host = bind_host(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(stack: StackSettings) -> list[str]:
    """Every port the group will listen on must be free (a second data plane would share its port)."""
    wanted = [
        (stack.up.http_host, stack.up.http_port, "the REST API", "--port or FLAGYARD_HTTP_PORT"),
        (
            stack.data_plane.grpc_host,
            stack.data_plane.grpc_port,
            "the data plane's gRPC",
            "--grpc-port or FLAGYARD_GRPC_PORT",
        ),
        (
            stack.data_plane.metrics_host,
            stack.data_plane.metrics_port,
            "the data plane's metrics",
            "FLAGYARD_METRICS_PORT (0: off)",
        ),
        (
            stack.syncer.syncer_metrics_host,
            stack.syncer.syncer_metrics_port,
            "the syncer's metrics",
            "FLAGYARD_SYNCER_METRICS_PORT (0: off)",
        ),
    ]
    dp = stack.data_plane
    if dp.flagd_enabled:  # a flagd port that is the gRPC port is that same listener
        wanted += [
            (dp.grpc_host, port, what, how)
            for port, what, how in (
                (
                    dp.flagd_rpc_port,
                    "flagd RPC",
                    "FLAGYARD_FLAGD_RPC_PORT (FLAGYARD_FLAGD_ENABLED=false: off)",
                ),
                (dp.flagd_sync_port, "flagd sync", "FLAGYARD_FLAGD_SYNC_PORT"),
            )
            if port != dp.grpc_port
        ]
    if stack.data_plane.ofrep_enabled:
        wanted.append(
            (stack.data_plane.ofrep_host, stack.data_plane.ofrep_port, "OFREP", "FLAGYARD_OFREP_PORT")
        )
    problems, seen = [], set()
    for host, port, what, how in wanted:
        if port == 0:
            continue
        if port in seen:
            problems.append(f"port {port} is wanted twice ({what}); change {how}")
            continue
        seen.add(port)
        if not _port_free(host, port):
            problems.append(
                f"port {port} ({what}) is already in use on {host}; stop what uses it or change {how}"
            )
    return problems


def preflight(stack: StackSettings) -> None:
    """PostgreSQL, Redis and the ports; :class:`PreflightError` listing every problem found."""
    problems = [p for p in (check_postgres(stack.control_plane), check_redis(stack.control_plane)) if p]
    problems += check_ports(stack)
    if problems:
        raise PreflightError(problems)


# --- database ------------------------------------------------------------------------------------------


def ensure_database(settings: DatabaseSettings) -> bool:
    """Create the configured database if it does not exist; True if it was created."""
    url = settings.sqlalchemy_url
    name = sa.make_url(url).database
    if not name:
        raise PreflightError([f"FLAGYARD_DATABASE_URL names no database ({masked(url)})"])
    timeout = settings.db_connect_timeout_seconds
    try:
        with psycopg.connect(
            _conninfo(url, MAINTENANCE_DATABASE), autocommit=True, connect_timeout=timeout
        ) as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return False
            try:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except psycopg.errors.DuplicateDatabase:
                return False  # created by someone else meanwhile
    except psycopg.Error as exc:
        raise PreflightError(
            [f"cannot create the database {name!r} on PostgreSQL at {_pg_where(url)}: {_first_line(exc)}"]
        ) from exc
    return True


def alembic_config() -> Config:
    """Alembic over the packaged migrations (no alembic.ini needed, so it works from a wheel)."""
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).resolve().parent))
    config.attributes["configure_logging"] = False
    return config


def migrate(settings: DatabaseSettings) -> tuple[str | None, str | None]:
    """Upgrade the schema to head; (revision before, revision after)."""
    config = alembic_config()
    head = ScriptDirectory.from_config(config).get_current_head()
    engine = sa.create_engine(
        settings.sqlalchemy_url,
        poolclass=sa.pool.NullPool,
        connect_args={"connect_timeout": settings.db_connect_timeout_seconds},
    )
    try:
        with engine.begin() as connection:
            before = MigrationContext.configure(connection).get_current_revision()
            if before != head:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
    except sa.exc.SQLAlchemyError as exc:
        raise PreflightError([f"migrating the database failed: {_first_line(exc)}"]) from exc
    finally:
        engine.dispose()
    return before, head
