"""A Flagyard stack of the load test's own: ``flagyard up`` on free loopback ports, with its own PostgreSQL
database (created by ``flagyard up``, dropped afterwards) and its own Redis key prefix and sync queue
(removed afterwards). Every wait is bounded; :meth:`Stack.stop` always ends what :meth:`Stack.start`
started.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import psycopg
import redis
from psycopg import sql

FLAGYARD = str(Path(sys.executable).parent / "flagyard")
READY = re.compile(r"^Flagyard is up ")


class StackError(Exception):
    """The stack did not come up (or its keys could not be read)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Target:
    """Where the running stack answers, and the demo's keys."""

    rest: str
    """The REST API's base URL, e.g. ``http://127.0.0.1:8123`` (routes are under ``/api/v1``)."""
    grpc: str
    admin_key: str = field(repr=False)
    sdk_keys: dict[str, str] = field(repr=False)


@dataclass
class StackOptions:
    postgres_url: str = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    """Any database on the server: only its server part is used."""
    redis_url: str = "redis://127.0.0.1:6379/8"
    syncer_workers: int = 1
    data_plane_processes: int = 1
    access_log: bool = False
    ready_timeout: float = 120.0
    stop_timeout: float = 60.0


class Stack:
    def __init__(self, options: StackOptions, log_path: Path) -> None:
        self.options = options
        self.log_path = log_path
        suffix = uuid.uuid4().hex[:10]
        self.database = f"flagyard_loadtest_{suffix}"
        self.prefix = f"fylt-{suffix}"
        self.queue = f"flagyard-sync-lt-{suffix}"
        self.http_port = free_port()
        self.grpc_port = free_port()
        self.ofrep_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._tmp = Path(tempfile.mkdtemp(prefix="flagyard-loadtest-"))
        self._ready = threading.Event()
        self._reader: threading.Thread | None = None
        self._log: IO[str] | None = None

    # --- start ---------------------------------------------------------------------------------------

    def _database_url(self) -> str:
        base = self.options.postgres_url.rsplit("/", 1)[0]
        if base.startswith("postgresql://"):
            base = "postgresql+psycopg://" + base.removeprefix("postgresql://")
        return f"{base}/{self.database}"

    def env(self) -> dict[str, str]:
        """``flagyard up``'s environment: none of the caller's FLAGYARD_* settings leak in."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLAGYARD_")}
        env.update(
            FLAGYARD_DATABASE_URL=self._database_url(),
            FLAGYARD_REDIS_URL=self.options.redis_url,
            FLAGYARD_REDIS_PREFIX=self.prefix,
            FLAGYARD_SYNC_QUEUE=self.queue,
            FLAGYARD_HTTP_HOST="127.0.0.1",
            FLAGYARD_GRPC_HOST="127.0.0.1",
            FLAGYARD_OFREP_PORT=str(self.ofrep_port),
            FLAGYARD_METRICS_PORT="0",
            FLAGYARD_SYNCER_METRICS_PORT="0",
            # One admin key drives every admin user: the per-key rate limit would measure itself.
            FLAGYARD_RATE_LIMIT_REQUESTS="0",
            FLAGYARD_ACCESS_LOG="true" if self.options.access_log else "false",
            FLAGYARD_LOG_JSON="false",
            FLAGYARD_UP_READY_TIMEOUT_SECONDS=str(int(self.options.ready_timeout * 0.75)),
            FLAGYARD_UP_STOP_TIMEOUT_SECONDS="15",
            NO_COLOR="1",
        )
        return env

    def start(self) -> Target:
        """Start ``flagyard up`` and wait until its banner says it is ready; where it answers and its keys."""
        keys_file = self._tmp / "keys.json"
        self._log = self.log_path.open("w", encoding="utf-8")
        self.proc = subprocess.Popen(  # noqa: S603 - our own command line
            [
                FLAGYARD,
                "up",
                "--port",
                str(self.http_port),
                "--grpc-port",
                str(self.grpc_port),
                "--syncer-workers",
                str(self.options.syncer_workers),
                "--data-plane-processes",
                str(self.options.data_plane_processes),
                "--write-keys",
                str(keys_file),
                "--env-file",
                str(self._tmp / "no.env"),
            ],
            env=self.env(),
            cwd=self._tmp,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us; we stop the group in order (SIGTERM)
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.options.ready_timeout
        while not self._ready.wait(0.2):
            if self.proc.poll() is not None:
                raise StackError(f"flagyard up exited with {self.proc.returncode}; see {self.log_path}")
            if time.monotonic() > deadline:
                raise StackError(f"flagyard up not ready within {self.options.ready_timeout:.0f}s")
        try:
            keys = json.loads(keys_file.read_text())
        except (OSError, ValueError) as exc:
            raise StackError(f"flagyard up wrote no readable keys file: {exc}") from exc
        finally:
            keys_file.unlink(missing_ok=True)
        return Target(
            rest=f"http://127.0.0.1:{self.http_port}",
            grpc=f"127.0.0.1:{self.grpc_port}",
            admin_key=keys["admin_key"],
            sdk_keys=dict(keys["sdk_keys"]),
        )

    def _read(self) -> None:
        assert self.proc is not None
        assert self.proc.stdout is not None
        assert self._log is not None
        for raw in iter(self.proc.stdout.readline, b""):
            line = raw.decode("utf-8", "replace")
            # The banner repeats the keys; the log keeps everything else.
            self._log.write(re.sub(r"\bfy_(admin|sdk)_\S+", r"fy_\1_…", line))
            self._log.flush()
            if READY.search(line):
                self._ready.set()

    def tail(self, lines: int = 40) -> str:
        with suppress(OSError):
            return "".join(self.log_path.read_text(encoding="utf-8").splitlines(True)[-lines:])
        return ""

    # --- stop ----------------------------------------------------------------------------------------

    def stop(self) -> int | None:
        """SIGTERM (``flagyard up`` stops its processes in order), bounded; then everything it started is
        killed by pid if it is still there. Its exit code (None if it was never started)."""
        if self.proc is None:
            return None
        code: int | None = None
        if self.proc.poll() is None:
            below = descendants(self.proc.pid)
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(self.options.stop_timeout)
            except subprocess.TimeoutExpired:
                below |= descendants(self.proc.pid)
                self.proc.kill()
                self.proc.wait(10)
            for pid in below:
                if alive(pid):
                    with suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        else:
            code = self.proc.returncode
        if self._reader is not None:
            self._reader.join(10)
        if self._log is not None:
            self._log.close()
        return code

    def cleanup(self) -> None:
        """Drop the database and remove every Redis key of this stack; the temporary folder."""
        shutil.rmtree(self._tmp, ignore_errors=True)
        maintenance = self.options.postgres_url.rsplit("/", 1)[0] + "/postgres"
        maintenance = maintenance.replace("postgresql+psycopg://", "postgresql://", 1)
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=10) as conn:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            conn.execute(drop.format(sql.Identifier(self.database)))
        client = redis.Redis.from_url(self.options.redis_url, socket_timeout=10)
        try:
            remove_stack_keys(client, self.prefix, self.queue)
        finally:
            client.close()


def remove_stack_keys(client: redis.Redis, prefix: str, queue: str) -> None:
    """Every Redis key of one stack: its contract keys (``prefix``) and its RQ queue's keys."""
    for pattern in (f"{prefix}:*", f"rq:*{queue}*"):
        for key in client.scan_iter(pattern, count=1000):
            client.delete(key)
    # RQ's job, result and worker keys carry ids, not the queue: find ours by their fields.
    for key in client.scan_iter("rq:job:*", count=1000):
        if client.type(key) == b"hash" and client.hget(key, "origin") == queue.encode():
            client.delete(key, b"rq:results:" + key.removeprefix(b"rq:job:"))
    for key in client.scan_iter("rq:worker:*", count=1000):
        if client.type(key) == b"hash" and client.hget(key, "queues") == queue.encode():
            client.delete(key)
    client.srem("rq:queues", f"rq:queue:{queue}")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, None if it does not exist."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie does not)."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def descendants(root: int) -> set[int]:
    """Every live process below ``root`` (Linux /proc; empty elsewhere)."""
    parents: dict[int, list[int]] = {}
    proc = Path("/proc")
    if not proc.is_dir():
        return set()
    for entry in proc.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[0] != "Z":
                parents.setdefault(stat[1], []).append(int(entry.name))
    found: set[int] = set()
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found
