"""A syncer worker killed (SIGKILL) in the middle of a job: a living worker runs the job again within
seconds, not when RQ's own timeout (the job's timeout + 60 s) or the next reconcile would notice.

The job is held in flight by PostgreSQL: the test locks ``flag_environments`` after the change committed,
so the worker that takes the job blocks reading it; that worker is killed, the lock released. Both workers
reconcile only at start (interval one hour), before the change, so only the job can bring it to Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import psycopg
import pytest
from e2e_stack import Stack
from fault_flows import ENV, boolean_flag, create_project, env_config_path, redis_versions, scrape, wait_for
from fault_infra import RedisInstance, free_port
from rq import Queue, Worker
from rq.job import Job

from flagyard.syncer.worker import alive_key

pytestmark = pytest.mark.faults

FLAG = "kill-switch"


def _start_worker(stack: Stack, name: str, metrics_port: int) -> subprocess.Popen[bytes]:
    env = {
        **stack.env,
        "FLAGYARD_SYNCER_METRICS_PORT": str(metrics_port),
        "FLAGYARD_RECONCILE_INTERVAL_SECONDS": "3600",
    }
    log = (stack.logs / f"{name}.log").open("ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flagyard.syncer", "worker"], env=env, stdout=log, stderr=log
    )
    log.close()
    stack.processes[name] = proc
    return proc


def _ok_reconciles(port: int) -> float | None:
    try:
        return scrape(port).get(("flagyard_syncer_reconcile_runs_total", (("outcome", "ok"),)))
    except httpx.HTTPError:
        return None  # not serving yet


def _started_job(queue: Queue, version: int) -> Job | None:
    """The started job carrying the flag's change to ``version``."""
    for job_id in queue.started_job_registry.get_job_ids(cleanup=False):
        job = Job.fetch(job_id, connection=queue.connection)
        if any(c["entity_key"] == FLAG and c["version"] == version for c in job.kwargs["changes"]):
            return job
    return None


def test_worker_killed_mid_job__a_living_worker_runs_the_job_again_within_seconds(
    fault_stack: Stack, own_redis: RedisInstance
) -> None:
    stack = fault_stack
    rds = own_redis.client()
    queue = Queue(stack.queue, connection=rds)
    ports = {"worker-a": free_port(), "worker-b": free_port()}
    workers = {name: _start_worker(stack, name, port) for name, port in ports.items()}
    create_project(stack.api, {FLAG: boolean_flag()})
    wait_for(lambda: redis_versions(rds, stack.prefix).get(FLAG) == 1, 30)
    wait_for(lambda: len(Worker.all(queue=queue)) == 2, 30)
    by_pid = {w.pid: w.name for w in Worker.all(queue=queue)}
    wait_for(lambda: all(rds.exists(alive_key(stack.prefix, name)) for name in by_pid.values()), 10)
    for port in ports.values():  # their reconcile at start is over (it would write the change too)
        wait_for(lambda p=port: _ok_reconciles(p) == 1.0, 30)  # type: ignore[misc]
    wait_for(lambda: queue.count == 0 and not queue.started_job_registry.get_job_ids(cleanup=False), 30)

    for proc in workers.values():
        os.kill(proc.pid, signal.SIGSTOP)  # neither may run the job before it is held in PostgreSQL
    path = env_config_path(FLAG)
    etag = stack.api.get(path).headers["etag"]
    r = stack.api.patch(path, json={"enabled": False}, headers={"If-Match": etag})
    assert r.status_code == 200, r.text
    version = int(stack.api.get(f"/api/v1/projects/shop/flags/{FLAG}").json()["version"])
    lock = psycopg.connect(stack.db_url.replace("+psycopg", ""))
    try:
        lock.execute("SET lock_timeout = '10s'")
        lock.execute("LOCK TABLE flag_environments IN ACCESS EXCLUSIVE MODE")
        for proc in workers.values():
            os.kill(proc.pid, signal.SIGCONT)
        job = wait_for(lambda: _started_job(queue, version), 30)
        job_id = job.id
        taker = next(name for name, proc in workers.items() if by_pid[proc.pid] == job.worker_name)
        survivor = next(name for name in workers if name != taker)
        time.sleep(0.5)  # it reads the flag: blocked by the lock
        assert redis_versions(rds, stack.prefix)[FLAG] == 1

        workers[taker].kill()
        workers[taker].wait(10)
        killed = time.monotonic()
    finally:
        lock.rollback()
        lock.close()
    del stack.processes[taker]

    # before: the job stayed "started" until its timeout + 60 s (240 s), RQ's cleanup ran every 10 min
    wait_for(lambda: redis_versions(rds, stack.prefix).get(FLAG) == version, 30)
    recovered_after = time.monotonic() - killed
    job = Job.fetch(job_id, connection=rds)
    wait_for(lambda: job.get_status(refresh=True) == "finished", 10)  # the worker books it after the write
    assert job.return_value() == {"applied": 1}  # this job wrote the change, no duplicate of it did
    metrics = scrape(ports[survivor])
    assert metrics["flagyard_syncer_jobs_recovered_total", (("reason", "abandoned"),)] == 1.0
    assert _ok_reconciles(ports[survivor]) == 1.0  # still only the one at start
    print(f"{ENV}: change in Redis {recovered_after:.2f} s after the worker's SIGKILL")
    rds.close()
