"""A Redis outage longer than RQ's reconnect waits, while the syncer worker is idle or in the middle of a
job: the worker process rides it out (same pid), its reconcile thread runs again once Redis is back, a
change made through the API during the outage reaches Redis within seconds of Redis's return, the worker
runs jobs again, and the outage is logged and counted once.

Before: when the outage began mid-job, the job's failure bookkeeping (RQ's ``handle_execution_ended``, a
Redis call made while Redis was down) raised out of RQ's work loop ("found an unhandled exception,
quitting"), the process exited and took its reconcile thread with it; only a supervisor's restart brought
the syncer back.

Mid-job, the job is held in flight by PostgreSQL (as in test_fault_syncer_abandoned_job.py): a lock on
``flag_environments`` taken after the change committed blocks the worker reading it; Redis is killed, then
the lock released, so the job fails on Redis while Redis is away. Redis comes back empty (as after a
crash), or — ``mid_job_data_kept`` — with what it held when it died (saved just before), the in-flight
job still marked started by the worker that gave it up: the maintenance thread runs it again."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import httpx
import psycopg
import pytest
from e2e_stack import Stack
from fault_flows import (
    boolean_flag,
    create_project,
    elapsed,
    env_config_path,
    redis_versions,
    scrape,
    syncer_metrics_port,
    wait_for,
)
from fault_infra import RedisInstance
from rq import Queue
from rq.job import Job

pytestmark = pytest.mark.faults

FLAG = "kill-switch"
OTHER = "banner"
DOWN_SECONDS = 12.0
"""Longer than RQ's reconnect waits (at most 2 s here, 60 s by default) several times over."""
OK_RUNS = ("flagyard_syncer_reconcile_runs_total", (("outcome", "ok"),))
LAST_RECONCILE = ("flagyard_syncer_reconcile_last_success_timestamp_seconds", ())
RECOVERED = ("flagyard_syncer_jobs_recovered_total", (("reason", "abandoned"),))
OUTAGES = ("flagyard_syncer_redis_outages_total", ())


def _metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float] | None:
    try:
        return scrape(port)
    except httpx.HTTPError:
        return None


def _started_job(queue: Queue, version: int) -> Job | None:
    for job_id in queue.started_job_registry.get_job_ids(cleanup=False):
        job = Job.fetch(job_id, connection=queue.connection)
        if any(c["entity_key"] == FLAG and c["version"] == version for c in job.kwargs["changes"]):
            return job
    return None


def _patch(stack: Stack, flag: str, body: dict[str, object]) -> int:
    path = env_config_path(flag)
    r = stack.api.patch(path, json=body, headers={"If-Match": stack.api.get(path).headers["etag"]})
    assert r.status_code == 200, r.text
    return int(stack.api.get(f"/api/v1/projects/shop/flags/{flag}").json()["version"])


def _finished_job_for(queue: Queue, flag: str, version: int) -> bool:
    for job_id in queue.finished_job_registry.get_job_ids(cleanup=False):
        job = Job.fetch(job_id, connection=queue.connection)
        if any(c["entity_key"] == flag and c["version"] == version for c in job.kwargs["changes"]):
            return True
    return False


def _hold_a_job_in_flight(
    stack: Stack, syncer: subprocess.Popen[bytes], queue: Queue, own_redis: RedisInstance, keep_data: bool
) -> tuple[int, str, float]:
    """Change the flag, let the worker take the job and block in it, kill Redis (after saving what it holds
    with ``keep_data``), let the job go on; returns the flag's version, the job's id and when Redis died."""
    os.kill(syncer.pid, signal.SIGSTOP)  # it may not run the job before the job is held in PostgreSQL
    version = _patch(stack, FLAG, {"enabled": False})
    lock = psycopg.connect(stack.db_url.replace("+psycopg", ""))
    try:
        lock.execute("SET lock_timeout = '10s'")
        lock.execute("LOCK TABLE flag_environments IN ACCESS EXCLUSIVE MODE")
        os.kill(syncer.pid, signal.SIGCONT)
        job = wait_for(lambda: _started_job(queue, version), 30)
        time.sleep(0.5)  # the job reads the flag: blocked by the lock
        if keep_data:
            queue.connection.save()
        own_redis.kill()
        return version, job.id, time.monotonic()
    finally:
        lock.rollback()
        lock.close()


def _last_reconcile(port: int) -> float:
    return (_metrics(port) or {}).get(LAST_RECONCILE, 0.0)


@pytest.mark.parametrize("scenario", ["mid_job", "mid_job_data_kept", "idle"])
def test_redis_down__worker_rides_it_out_and_syncs_again_once_redis_is_back(
    fault_stack: Stack, own_redis: RedisInstance, scenario: str
) -> None:
    stack = fault_stack
    port = syncer_metrics_port(stack)
    rds = own_redis.client()
    queue = Queue(stack.queue, connection=rds)
    create_project(stack.api, {FLAG: boolean_flag(), OTHER: boolean_flag()})
    syncer = stack.start_syncer()
    wait_for(lambda: redis_versions(rds, stack.prefix) == {FLAG: 1, OTHER: 1}, 30)
    wait_for(lambda: (_metrics(port) or {}).get(OK_RUNS, 0) >= 1, 30)
    wait_for(lambda: queue.count == 0 and not queue.started_job_registry.get_job_ids(cleanup=False), 30)

    version, job_id = 1, None
    if scenario == "idle":
        own_redis.kill()
        down_started = time.monotonic()
    else:
        version, job_id, down_started = _hold_a_job_in_flight(
            stack, syncer, queue, own_redis, keep_data=scenario == "mid_job_data_kept"
        )

    time.sleep(2.0)  # the job has failed on Redis; its bookkeeping too
    during = _patch(stack, OTHER, {"default_variant": "on"})  # committed; the enqueue waits for Redis
    time.sleep(max(0.0, DOWN_SECONDS - elapsed(down_started)))
    assert syncer.poll() is None, stack.log_text("syncer")  # before: exited with the worker's work loop
    own_redis.start()  # same port; empty, or what it saved (the reconcile hydrates an empty one)
    back = time.monotonic()
    back_wall = time.time()
    down_seconds = elapsed(down_started)

    wait_for(lambda: redis_versions(rds, stack.prefix).get(OTHER) == during, 30, interval=0.02)
    change_seconds = elapsed(back)
    wait_for(lambda: _last_reconcile(port) > back_wall, 30, interval=0.02)
    reconcile_seconds = elapsed(back)
    assert redis_versions(rds, stack.prefix) == {FLAG: version, OTHER: during}
    rerun_seconds = None
    if scenario == "mid_job_data_kept":
        # The job the first worker gave up is run again (before: it stayed started until RQ's timeout).
        job = Job.fetch(job_id, connection=rds)
        wait_for(lambda: job.get_status(refresh=True) == "finished", 30, interval=0.02)
        rerun_seconds = elapsed(back)

    # The worker itself runs jobs again (not only the reconcile thread): a new version of the flag.
    after = _patch(stack, FLAG, {"enabled": scenario != "idle"})
    assert after == version + 1
    wait_for(lambda: _finished_job_for(queue, FLAG, after), 30)
    job_after_seconds = elapsed(back)
    assert redis_versions(rds, stack.prefix)[FLAG] == after

    metrics = _metrics(port)
    assert metrics is not None
    log = (stack.logs / "syncer.log").read_text(errors="replace")
    print(
        "faults.summary",
        {
            "scenario": scenario,
            "down_seconds": down_seconds,
            "change_in_redis_after_return_seconds": change_seconds,
            "reconcile_ok_after_return_seconds": reconcile_seconds,
            "rerun_job_finished_after_return_seconds": rerun_seconds,
            "new_job_finished_after_return_seconds": job_after_seconds,
            "outages": metrics.get(OUTAGES),
            "recovered": metrics.get(RECOVERED),
        },
    )
    assert down_seconds >= DOWN_SECONDS
    assert syncer.poll() is None, log[-4000:]
    assert stack.processes["syncer"].pid == syncer.pid
    assert "unhandled exception, quitting" not in log
    assert metrics.get(OUTAGES) == 1.0  # one outage, counted once
    assert log.count("syncer.redis_outage") == 1, log[-4000:]  # and logged once
    assert log.count("syncer.redis_back") == 1, log[-4000:]
    if scenario == "mid_job_data_kept":
        assert metrics.get(RECOVERED) == 1.0
    rds.close()
