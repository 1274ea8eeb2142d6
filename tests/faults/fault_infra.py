"""Helpers of the fault-injection tests (a uniquely named module, importable next to conftest).

Our own Redis and PostgreSQL servers on free ports, so a test can kill and restart them without
disturbing any other test: :class:`RedisInstance` (``redis-server`` without persistence, so a restart
comes back empty, as after a crash) and :class:`PostgresInstance` (``initdb`` + ``postgres`` from the
installed PostgreSQL, run as the ``postgres`` OS user when we are root, fsync off). Both offer
``start``/``stop``/``kill``/``restart``; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import redis
from polling_helpers import free_port as free_port


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"{what} within {timeout}s")


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) != 0


def _end(proc: subprocess.Popen[bytes] | None, sig: int, timeout: float) -> None:
    """Send ``sig`` to a process we started and reap it; SIGKILL if it outlives ``timeout``."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(10)


class RedisInstance:
    """A ``redis-server`` of our own: no RDB, no AOF, so every restart starts empty (data lost)."""

    def __init__(self, directory: Path, port: int | None = None, extra_args: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.directory = directory
        self.extra_args = extra_args
        """More ``redis-server`` arguments (``--replicaof host port`` for a replica)."""
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def client(self, **options: Any) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **options)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ping(self) -> bool:
        client = self.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self, timeout: float = 15.0) -> None:
        assert not self.running, "redis-server is already running"
        _wait(lambda: _port_free(self.port), timeout, f"port {self.port} was not released")
        log = (self.directory / f"redis-{self.port}.log").open("ab")
        self.proc = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
                "--dir",
                str(self.directory),
                *self.extra_args,
            ],
            stdout=log,
            stderr=log,
        )
        log.close()
        self.starts += 1
        _wait(self.ping, timeout, f"redis-server on port {self.port} did not answer PING")

    def stop(self, timeout: float = 10.0) -> None:
        """A clean shutdown (SIGTERM); nothing is saved."""
        _end(self.proc, signal.SIGTERM, timeout)

    def kill(self) -> None:
        """A crash (SIGKILL): every connection breaks at once."""
        _end(self.proc, signal.SIGKILL, 10)

    def restart(self, down_seconds: float = 0.0) -> None:
        """Kill, stay down ``down_seconds``, come back empty on the same port."""
        self.kill()
        time.sleep(down_seconds)
        self.start()


def _postgres_bin() -> Path:
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"), key=lambda p: int(p.split("/")[4].split(".")[0])
    )
    if not candidates:
        found = shutil.which("postgres")
        if found is None:
            raise RuntimeError("no PostgreSQL server binaries found under /usr/lib/postgresql/*/bin")
        return Path(found).parent
    return Path(candidates[-1]).parent


class PostgresInstance:
    """A PostgreSQL cluster of our own, in a temporary directory, on a free port.

    fsync is off (a process crash keeps what reached the OS), but commits stay synchronous: with
    ``synchronous_commit=off`` a crash would lose acknowledged commits, which the syncer may already
    have propagated. As root the server cannot run as us: the directory is given to the ``postgres`` OS user and
    ``initdb``/``postgres`` run as that user (``Popen(user=...)``). The postmaster is our direct child,
    so :meth:`kill` can crash it (SIGKILL) and :meth:`stop` shut it down fast (SIGINT).
    """

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.bin = _postgres_bin()
        self.root = Path(tempfile.mkdtemp(prefix="flagyard-faults-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.log_path = self.root / "postgres.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam(self._user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run_as(["mkdir", "-p", str(self.socket_dir)])
        self._run_as(
            [
                str(self.bin / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
                "--no-instructions",
            ],
        )

    def _run_as(self, argv: list[str]) -> None:
        result = subprocess.run(
            argv, user=self._user, group=self._user, capture_output=True, timeout=120, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {result.stderr.decode(errors='replace')[-2000:]}")

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        """SQLAlchemy URL (psycopg 3) of one database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def accepting(self) -> bool:
        try:
            with psycopg.connect(self.admin_url, connect_timeout=1) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False

    def start(self, timeout: float = 30.0) -> None:
        assert not self.running, "postgres is already running"
        _wait(lambda: _port_free(self.port), timeout, f"port {self.port} was not released")
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [
                str(self.bin / "postgres"),
                "-D",
                str(self.data),
                "-p",
                str(self.port),
                "-k",
                str(self.socket_dir),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200",
                "-c",
                "shared_buffers=64MB",
                "-c",
                "log_min_messages=warning",
            ],
            user=self._user,
            group=self._user,
            stdout=log,
            stderr=log,
        )
        log.close()
        self.starts += 1
        deadline = time.monotonic() + timeout
        while not self.accepting():
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited at start:\n{self.log_tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"postgres did not accept connections within {timeout}s")
            time.sleep(0.05)

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown (SIGINT): clients are disconnected, the cluster is shut down cleanly."""
        _end(self.proc, signal.SIGINT, timeout)
        self._wait_children_gone(timeout)

    def kill(self, timeout: float = 30.0) -> None:
        """A crash: immediate shutdown (SIGQUIT, no checkpoint; crash recovery at the next start), then
        SIGKILL for anything left. (A bare SIGKILL of the postmaster would orphan its backends, which hold
        the shared memory and the port.)"""
        _end(self.proc, signal.SIGQUIT, timeout)
        self._wait_children_gone(timeout)

    def restart(self, down_seconds: float = 0.0) -> None:
        self.kill()
        time.sleep(down_seconds)
        self.start()

    def _wait_children_gone(self, timeout: float) -> None:
        pid_file = self.data / "postmaster.pid"
        _wait(lambda: not pid_file.exists() or _port_free(self.port), timeout, "postgres did not go away")

    def create_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    def destroy(self) -> None:
        """Stop the server and remove its directory."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class SentinelSet:
    """A Redis Sentinel deployment of our own on loopback: a primary and a replica (:class:`RedisInstance`,
    no persistence) and ``sentinels`` ``redis-server --sentinel`` processes, each with its own generated
    config file (Sentinel rewrites it), monitoring the primary as ``master`` with quorum 2 and short
    timeouts, so a killed primary is replaced within a few seconds."""

    def __init__(
        self,
        directory: Path,
        master: str = "flagyard",
        sentinels: int = 3,
        down_after_ms: int = 1000,
        failover_timeout_ms: int = 3000,
    ) -> None:
        self.directory = directory
        self.master = master
        self.primary = RedisInstance(directory)
        self.replica = RedisInstance(
            directory,
            extra_args=("--replicaof", "127.0.0.1", str(self.primary.port), "--replica-read-only", "yes"),
        )
        self.sentinel_ports = [free_port() for _ in range(sentinels)]
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.sentinel_procs: list[subprocess.Popen[bytes]] = []

    def url(self, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.master}/{db}"

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.sentinel_ports[index], socket_timeout=1, socket_connect_timeout=1
        )

    def master_address(self, index: int = 0) -> tuple[str, int] | None:
        """The master Sentinel ``index`` names now (None if it cannot answer)."""
        client = self.sentinel_client(index)
        try:
            raw = client.execute_command("SENTINEL", "get-master-addr-by-name", self.master)
        except redis.RedisError:
            return None
        finally:
            client.close()
        if not raw:
            return None
        host, port = (part.decode() if isinstance(part, bytes) else str(part) for part in raw)
        return host, int(port)

    def _replica_in_sync(self) -> bool:
        client = self.replica.client(socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            info = client.info("replication")
        except redis.RedisError:
            return False
        finally:
            client.close()
        return info.get("master_link_status") == "up"

    def _sentinels_see_everyone(self) -> bool:
        for index in range(len(self.sentinel_ports)):
            client = self.sentinel_client(index)
            try:
                state = client.execute_command("SENTINEL", "master", self.master)
            except redis.RedisError:
                return False
            finally:
                client.close()
            fields = dict(zip(state[::2], state[1::2], strict=True)) if isinstance(state, list) else state
            fields = {_text(k): _text(v) for k, v in fields.items()}
            if int(fields.get("num-slaves", 0)) < 1 or int(fields.get("num-other-sentinels", 0)) < (
                len(self.sentinel_ports) - 1
            ):
                return False
        return True

    def start(self, timeout: float = 30.0) -> None:
        self.primary.start()
        self.replica.start()
        _wait(self._replica_in_sync, timeout, "the replica did not sync with the primary")
        for port in self.sentinel_ports:
            config = self.directory / f"sentinel-{port}.conf"
            config.write_text(
                "\n".join(
                    [
                        f"port {port}",
                        "bind 127.0.0.1",
                        "daemonize no",
                        f"dir {self.directory}",
                        f"sentinel monitor {self.master} 127.0.0.1 {self.primary.port} 2",
                        f"sentinel down-after-milliseconds {self.master} {self.down_after_ms}",
                        f"sentinel failover-timeout {self.master} {self.failover_timeout_ms}",
                        f"sentinel parallel-syncs {self.master} 1",
                        "",
                    ]
                )
            )
            log = (self.directory / f"sentinel-{port}.log").open("ab")
            self.sentinel_procs.append(
                subprocess.Popen(["redis-server", str(config), "--sentinel"], stdout=log, stderr=log)
            )
            log.close()
        # Every Sentinel knows the replica and the other Sentinels (hello messages every 2 s): only then
        # can a quorum agree and elect a leader when the primary dies.
        _wait(self._sentinels_see_everyone, timeout, "the Sentinels did not discover each other", 0.2)

    def stop(self) -> None:
        for proc in self.sentinel_procs:
            _end(proc, signal.SIGKILL, 10)
        self.replica.kill()
        self.primary.kill()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
