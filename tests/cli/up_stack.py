"""Helpers of the ``flagyard up`` tests (a uniquely named module, imported by test_up.py).

``flagyard up`` runs as a real process (``.venv/bin/flagyard up``) with free ports, its own PostgreSQL
database (``flagyard_up_<random>``, dropped afterwards), Redis DB 10 with its own key prefix and queue
(removed afterwards), and a working directory without a ``.env``. Every wait is bounded.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import redis
from polling_helpers import free_port as free_port
from polling_helpers import wait_until as wait_until
from stack_processes import descendants, remove_stack_keys

FLAGYARD = str(Path(sys.executable).parent / "flagyard")
PG_ADMIN_URL = os.environ.get("FLAGYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_DB = 10
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"
READY_TIMEOUT = 150.0
STOP_TIMEOUT = 90.0


def database_url(name: str, base: str = PG_ADMIN_URL) -> str:
    return base.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{name}"


def database_exists(name: str) -> bool:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def query(name: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}") as conn:
        return list(conn.execute(sql).fetchall())


@dataclass
class Isolation:
    """What one test's ``flagyard up`` uses: a database name, a Redis prefix and queue, ports."""

    database: str = field(default_factory=lambda: f"flagyard_up_{uuid.uuid4().hex[:10]}")
    prefix: str = field(default_factory=lambda: f"fyup-{uuid.uuid4().hex[:8]}")
    queue: str = field(default_factory=lambda: f"flagyard-sync-up-{uuid.uuid4().hex[:8]}")
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    syncer_metrics_port: int = field(default_factory=free_port)
    ofrep_port: int = field(default_factory=free_port)
    flagd_rpc_port: int = field(default_factory=free_port)
    flagd_sync_port: int = field(default_factory=free_port)

    def env(self, **overrides: str) -> dict[str, str]:
        """The environment of ``flagyard up``: no FLAGYARD_* of ours leaks in."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGYARD_")}
        env.update(
            FLAGYARD_DATABASE_URL=database_url(self.database),
            FLAGYARD_REDIS_URL=REDIS_URL,
            FLAGYARD_REDIS_PREFIX=self.prefix,
            FLAGYARD_SYNC_QUEUE=self.queue,
            FLAGYARD_HTTP_PORT=str(self.http_port),
            FLAGYARD_GRPC_PORT=str(self.grpc_port),
            FLAGYARD_METRICS_PORT=str(self.metrics_port),
            FLAGYARD_OFREP_PORT=str(self.ofrep_port),
            FLAGYARD_FLAGD_RPC_PORT=str(self.flagd_rpc_port),
            FLAGYARD_FLAGD_SYNC_PORT=str(self.flagd_sync_port),
            FLAGYARD_SYNCER_METRICS_PORT=str(self.syncer_metrics_port),
            FLAGYARD_ENV_REFRESH_SECONDS="0.2",
            FLAGYARD_STREAM_BLOCK_MS="200",
            FLAGYARD_UP_READY_TIMEOUT_SECONDS="120",
            FLAGYARD_UP_STOP_TIMEOUT_SECONDS="20",
            NO_COLOR="1",
        )
        env.update(overrides)
        return env

    def cleanup(self) -> None:
        with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        client = redis.Redis.from_url(REDIS_URL)
        try:
            remove_stack_keys(client, self.prefix, self.queue)
        finally:
            client.close()


# --- processes ------------------------------------------------------------------------------------------


class UpProcess:
    """``flagyard up`` as a real process; its output collected line by line."""

    def __init__(self, env: dict[str, str], cwd: Path, *args: str) -> None:
        self.proc = subprocess.Popen(
            [FLAGYARD, "up", *args],
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            with self._changed:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def wait_for(
        self, pattern: str, timeout: float = READY_TIMEOUT, after: int = 0
    ) -> tuple[int, re.Match[str]]:
        """The first output line from index ``after`` on matching ``pattern`` (its index and match); fails
        after ``timeout`` or when the process has exited without printing it."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = after
            while True:
                for index in range(seen, len(self.lines)):
                    match = regex.search(self.lines[index])
                    if match:
                        return index, match
                seen = max(seen, len(self.lines))
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    tail = "\n".join(self.lines[-60:])
                    raise AssertionError(f"no line matching {pattern!r} (exit {self.proc.poll()}):\n{tail}")
                self._changed.wait(min(left, 0.5))

    def wait_ready(self) -> Banner:
        index, _ = self.wait_for(r"^Flagyard is up ")
        self.wait_for(r"^─{20,}$", after=index)  # the banner's last line
        return Banner.parse(self.output)

    def terminate(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then the exit code (bounded)."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def stop(self) -> None:
        """SIGTERM; ``flagyard up`` must exit 0 (the output's tail is the failure message)."""
        code = self.terminate()
        assert code == 0, f"exit {code}:\n" + "\n".join(self.lines[-60:])

    def kill_everything(self) -> None:
        """After a failed test: nothing of this run may survive it."""
        if self.proc.poll() is None:
            below = descendants(self.proc.pid)
            self.proc.kill()
            self.proc.wait(10)
            for pid in below:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        self._reader.join(10)


@dataclass
class Banner:
    admin_key: str | None
    sdk_keys: dict[str, str]
    pids: dict[str, int]
    text: str

    @classmethod
    def parse(cls, output: str) -> Banner:
        start = output.rindex("Flagyard is up ")
        text = output[start:]
        admin = re.search(r"^\s+admin key:\s+(fy_admin_\S+)$", text, re.M)
        sdk = dict(re.findall(r"^\s+SDK key \((\w+)\):\s+(fy_sdk_\S+)$", text, re.M))
        processes = re.search(r"^\s+processes\s+(.+)$", text, re.M)
        pids = {}
        if processes:
            for item in processes.group(1).split(", "):
                name, pid = item.rsplit(" ", 1)
                pids[name] = int(pid)
        return cls(admin.group(1) if admin else None, sdk, pids, text)


@contextmanager
def running_up(isolation: Isolation, cwd: Path, *args: str, **env: str) -> Iterator[UpProcess]:
    """A ``flagyard up`` that is killed with everything it started if the test fails before stopping it."""
    up = UpProcess(isolation.env(**env), cwd, *args)
    try:
        yield up
    finally:
        up.kill_everything()


def run_to_exit(isolation: Isolation, cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``flagyard up`` expected to exit on its own (a failed preflight)."""
    return subprocess.run(
        [FLAGYARD, "up", *args],
        env=isolation.env(**env),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def listening(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on ``port`` (Linux /proc; IPv6 in brackets, an
    IPv4-mapped one as its IPv4 address)."""
    found: set[str] = set()
    for path, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        with suppress(FileNotFoundError), open(path) as table:
            for line in list(table)[1:]:
                fields = line.split()
                address, _, hex_port = fields[1].partition(":")
                if fields[3] != "0A" or int(hex_port, 16) != port:
                    continue
                raw = bytes.fromhex(address)
                if width == 8:
                    found.add(".".join(str(b) for b in reversed(raw)))
                else:
                    words = [raw[i : i + 4][::-1] for i in range(0, 16, 4)]
                    text = socket.inet_ntop(socket.AF_INET6, b"".join(words))
                    # An IPv4-mapped address (gRPC binds IPv4 through an IPv6 socket) is that IPv4 address.
                    found.add(
                        text.removeprefix("::ffff:")
                        if text.startswith("::ffff:") and "." in text
                        else f"[{text}]"
                    )
    return found
