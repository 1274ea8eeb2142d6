"""Syncer throughput: committed changes per second one worker process carries into Redis.

Seeds ``--flags`` flags through the control plane's own services (a scratch database, Alembic migrated),
makes ``--changes`` changes spread over them so that every change has real work (read PostgreSQL,
validate, compile, write Redis under the version guard), then drains the queue with one RQ
``SimpleWorker`` in this process, twice: as the control plane enqueues them one request at a time (one
change per job), and as a backlog the outbox relay re-enqueues in batches (after Redis was down).
Goal: ≥ 300 changes/s. Floor, same run and same worker: RQ's own cost per job (as many no-op jobs).

Run: ``.venv/bin/python -m benchmarks.syncer_bench``; ``--json-out PATH`` also writes the rows as JSON
(``benchmarks/results.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
import uuid
from pathlib import Path

import psycopg
import redis
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from rq import Queue, SimpleWorker
from sqlalchemy.orm import sessionmaker

from benchmarks.results import add_json_argument, row, write_json
from flagyard.control_plane.main import create_app
from flagyard.control_plane.outbox import relay_once
from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY, Settings
from flagyard.syncer import jobs
from flagyard.syncer.core import Syncer

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = os.environ.get("FLAGYARD_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FLAGYARD_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")


def noop() -> None:
    """The floor's job: RQ's bookkeeping and nothing else."""


def drain(queue: Queue, connection: redis.Redis) -> float:
    started = time.perf_counter()
    SimpleWorker([queue], connection=connection).work(burst=True, logging_level="WARNING")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flags", type=int, default=300)
    parser.add_argument("--changes", type=int, default=1500)
    add_json_argument(parser)
    args = parser.parse_args()
    logging.getLogger("rq").setLevel(logging.WARNING)

    db = f"flagyard_bench_sync_{uuid.uuid4().hex[:8]}"
    prefix = f"fybench-{uuid.uuid4().hex[:8]}"
    queue_name = f"flagyard-sync-{uuid.uuid4().hex[:8]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    db_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + f"/{db}"
    connection = redis.Redis.from_url(REDIS_URL)
    engine = sa.create_engine(db_url, pool_size=2)
    try:
        config = Config(str(ROOT / "alembic.ini"))
        config.set_main_option("sqlalchemy.url", db_url)
        config.attributes["configure_logging"] = False
        command.upgrade(config, "head")
        settings = Settings(
            database_url=db_url,  # type: ignore[arg-type]
            redis_url=REDIS_URL,  # type: ignore[arg-type]
            sync_queue=queue_name,
            outbox_dispatch="inline",
            outbox_relay_interval_seconds=0,
            rate_limit_requests=0,
            access_log=False,
            log_level="WARNING",
        )
        queue = Queue(queue_name, connection=connection)
        headers = {"Authorization": f"Bearer {DEV_BOOTSTRAP_ADMIN_KEY}"}
        with TestClient(create_app(settings), headers=headers) as api:
            api.post("/api/v1/projects", json={"key": "b", "name": "B"}).raise_for_status()
            api.post("/api/v1/projects/b/environments", json={"key": "prod", "name": "P"}).raise_for_status()
            for i in range(args.flags):
                body = {
                    "key": f"f{i}",
                    "name": "F",
                    "type": "boolean",
                    "variants": {"on": True, "off": False},
                }
                api.post("/api/v1/projects/b/flags", json=body).raise_for_status()
            queue.empty()
            etags: dict[int, str] = {}
            for n in range(args.changes):
                i = n % args.flags
                path = f"/api/v1/projects/b/flags/f{i}/environments/prod"
                if i not in etags:
                    etags[i] = api.get(path).headers["etag"]
                rule = {
                    "id": "r",
                    "variant": "on",
                    "clauses": [{"attribute": "n", "operator": "eq", "values": [n]}],
                }
                response = api.patch(path, json={"rules": [rule]}, headers={"If-Match": etags[i]})
                response.raise_for_status()
                etags[i] = response.headers["etag"]
        jobs_queued = queue.count
        sessions = sessionmaker(engine)
        jobs.configure(Syncer(sessions, connection, prefix))
        one_per_job = drain(queue, connection)
        for key in connection.scan_iter(f"{prefix}:*"):
            connection.delete(key)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE outbox SET enqueued_at = NULL"))
        while relay_once(sessions, connection, queue_name, grace_seconds=0):
            pass
        batch_jobs = queue.count
        if os.environ.get("FLAGYARD_BENCH_PROFILE"):
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
            batched = drain(queue, connection)
            profiler.disable()
            profiler.dump_stats(os.environ["FLAGYARD_BENCH_PROFILE"])
        else:
            batched = drain(queue, connection)
        for _ in range(jobs_queued):
            queue.enqueue("benchmarks.syncer_bench.noop")
        floor = drain(queue, connection)
        print(f"syncer: one SimpleWorker process, {jobs_queued} changes over {args.flags} flags")
        print(f"{'':<44} {'changes/s':>10} {'ms/change':>10} {'goal':>10}")
        for name, total, goal in (
            ("one change per job (request by request)", one_per_job, ">= 300/s"),
            (f"relayed backlog ({batch_jobs} jobs)", batched, ">= 300/s"),
            ("floor: RQ no-op jobs (one per change)", floor, ""),
        ):
            print(f"{name:<44} {jobs_queued / total:>10.0f} {total / jobs_queued * 1000:>10.2f} {goal:>10}")
        note = f"one SimpleWorker, {jobs_queued} changes over {args.flags} flags"
        write_json(
            args.json_out,
            [
                row(
                    f"syncer: {name}",
                    jobs_queued / total,
                    "changes/s",
                    jobs_queued / floor,
                    "RQ no-op jobs, one per change",
                    goal_op=">=",
                    goal_value=300,
                    note=note,
                )
                for name, total in (
                    ("one change per job (request by request)", one_per_job),
                    (f"relayed backlog ({batch_jobs} jobs)", batched),
                )
            ],
        )
    finally:
        jobs.configure(None)
        engine.dispose()
        for key in connection.scan_iter(f"{prefix}:*"):
            connection.delete(key)
        for key in connection.scan_iter(f"rq:*{queue_name}*"):
            connection.delete(key)
        connection.close()
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main()
