"""Several data-plane processes serving one port (SO_REUSEPORT; the kernel spreads connections).

The supervisor starts ``FLAGYARD_DATA_PLANE_PROCESSES`` workers (``python -m flagyard.data_plane
--worker``), restarts one that dies, forwards SIGTERM/SIGINT and waits for them. Metrics: the workers write
prometheus-client multiprocess files into ``PROMETHEUS_MULTIPROC_DIR`` (a temporary directory unless set)
and the supervisor serves their aggregate on ``FLAGYARD_METRICS_PORT``.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

import structlog

from .settings import DataPlaneSettings

log = structlog.get_logger("flagyard.data_plane")

RESTART_BACKOFF_MAX = 10.0


def supervise(settings: DataPlaneSettings) -> int:
    if settings.grpc_port == 0:
        log.error("supervisor.bad_port", problem="several processes need a fixed FLAGYARD_GRPC_PORT")
        return 2
    if settings.flagd_enabled and 0 in (settings.flagd_rpc_port, settings.flagd_sync_port):
        log.error(
            "supervisor.bad_port",
            problem="several processes need fixed FLAGYARD_FLAGD_RPC_PORT and FLAGYARD_FLAGD_SYNC_PORT",
        )
        return 2
    if settings.ofrep_enabled and settings.ofrep_port == 0:
        log.error("supervisor.bad_port", problem="several processes need a fixed FLAGYARD_OFREP_PORT")
        return 2
    own_dir = "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR") or tempfile.mkdtemp(prefix="flagyard-metrics-")
    # Workers read the same FLAGYARD_* environment; command-line overrides are passed on through it.
    env = dict(os.environ, PROMETHEUS_MULTIPROC_DIR=metrics_dir, FLAGYARD_GRPC_PORT=str(settings.grpc_port))
    if settings.metrics_port:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
        start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=registry)

    stopping = False

    def stop(signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for proc in workers.values():
            if proc.poll() is None:
                proc.send_signal(signum)

    def spawn(index: int) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flagyard.data_plane", "--worker"],
            env=dict(env, FLAGYARD_WORKER_INDEX=str(index)),
        )
        log.info("supervisor.worker_started", index=index, pid=proc.pid)
        return proc

    workers = {i: spawn(i) for i in range(settings.data_plane_processes)}
    backoff = dict.fromkeys(workers, 0.5)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping:
            time.sleep(0.2)
            for index, proc in list(workers.items()):
                code = proc.poll()
                if code is None or stopping:
                    continue
                _mark_dead(metrics_dir, proc.pid)
                log.error("supervisor.worker_died", index=index, pid=proc.pid, code=code)
                time.sleep(backoff[index])
                backoff[index] = min(backoff[index] * 2, RESTART_BACKOFF_MAX)
                workers[index] = spawn(index)
        deadline = time.monotonic() + settings.grace_seconds + 5
        for proc in workers.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    finally:
        if own_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    log.info("supervisor.stopped")
    return 0


def _mark_dead(metrics_dir: str, pid: int) -> None:
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
    except Exception as exc:  # best effort
        log.warning("supervisor.metrics_cleanup_failed", pid=pid, error=str(exc))
