"""Helpers of the end-to-end tests (a uniquely named module, importable next to conftest).

A whole Flagyard stack from real parts in real processes.

PostgreSQL: a fresh database with Alembic migrations; Redis: its own DB index and key prefix; the
control plane in process (FastAPI TestClient, inline outbox dispatch); the syncer and the data plane as
subprocesses started with ``python -m`` exactly as an operator would.
"""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
from fastapi.testclient import TestClient
from google.protobuf import struct_pb2
from polling_helpers import free_port as free_port
from polling_helpers import wait_until as wait_until
from stack_helpers import Children

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc

ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("FLAGYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_DB = 12


@dataclass
class Stack:
    db_url: str
    redis_url: str
    prefix: str
    queue: str
    api: TestClient
    env: dict[str, str]
    logs: Path
    grpc_port: int = 0
    children: Children = field(init=False)

    def __post_init__(self) -> None:
        self.children = Children(self.logs)

    @property
    def processes(self) -> dict[str, subprocess.Popen[bytes]]:
        return self.children.processes

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        return self.children.start(name, self.env, *args)

    def start_syncer(self) -> subprocess.Popen[bytes]:
        return self.start("syncer", "flagyard.syncer", "worker")

    def start_data_plane(self) -> subprocess.Popen[bytes]:
        proc = self.start("data_plane", "flagyard.data_plane", "--port", str(self.grpc_port))
        wait_until(lambda: _port_open(self.grpc_port), 20)
        return proc

    def kill(self, name: str) -> None:
        self.children.kill(name)

    def stop_all(self) -> None:
        self.children.stop_all()

    def log_text(self, name: str) -> str:
        return self.children.log_tail(name)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Evaluator:
    """A real gRPC client of the data plane, authenticated with one SDK key."""

    def __init__(self, port: int, sdk_key: str) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        self.stub = pb_grpc.EvaluationServiceStub(self.channel)
        self.metadata = (("authorization", f"Bearer {sdk_key}"),)

    def boolean(self, flag: str, context: dict[str, Any]) -> Any:
        ctx = struct_pb2.Struct()
        ctx.update(context)
        return self.stub.ResolveBoolean(
            pb.ResolveRequest(flag_key=flag, context=ctx), metadata=self.metadata, timeout=5
        )

    def try_boolean(self, flag: str, context: dict[str, Any]) -> Any:
        try:
            return self.boolean(flag, context)
        except grpc.RpcError:
            return None

    def close(self) -> None:
        self.channel.close()
