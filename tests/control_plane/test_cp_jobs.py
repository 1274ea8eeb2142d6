"""The sync queue's failed jobs over REST: a real RQ job fails in a real worker, is listed with its
exception, and is put back on the queue; only a global admin may do either."""

from __future__ import annotations

import operator

import pytest
import redis
from cp_helpers import Api, auth
from fastapi.testclient import TestClient
from rq import Queue, SimpleWorker
from rq.job import Job
from rq.registry import FailedJobRegistry

from flagyard.control_plane.settings import Settings


@pytest.fixture
def failed_job(redis_conn: redis.Redis, settings: Settings) -> Job:
    queue = Queue(settings.sync_queue, connection=redis_conn)
    job = queue.enqueue(operator.truediv, 1, 0)
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert job.get_status(refresh=True) == "failed"
    return job


def test_failed_jobs__listed_with_the_exception(client: TestClient, failed_job: Job) -> None:
    r = client.get("/api/v1/jobs/failed")
    assert r.status_code == 200, r.text
    [item] = r.json()["items"]
    assert item["id"] == failed_job.id
    assert item["error"] == "ZeroDivisionError: division by zero"
    assert r.json()["next_cursor"] is None


def test_failed_jobs__paged__cursor_continues(
    client: TestClient, redis_conn: redis.Redis, settings: Settings
) -> None:
    queue = Queue(settings.sync_queue, connection=redis_conn)
    jobs = [queue.enqueue(operator.truediv, 1, 0) for _ in range(3)]
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    first = client.get("/api/v1/jobs/failed", params={"limit": 2}).json()
    second = client.get("/api/v1/jobs/failed", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    assert len(first["items"]) == 2
    assert second["next_cursor"] is None
    assert {i["id"] for i in first["items"] + second["items"]} == {job.id for job in jobs}


def test_requeue__named_job__back_on_the_queue(
    client: TestClient, failed_job: Job, redis_conn: redis.Redis, settings: Settings
) -> None:
    r = client.post("/api/v1/jobs/failed/requeue", json={"job_ids": [failed_job.id]})
    assert r.status_code == 200, r.text
    assert r.json() == {"requeued": [failed_job.id]}
    assert failed_job.get_status(refresh=True) == "queued"
    queue = Queue(settings.sync_queue, connection=redis_conn)
    assert failed_job.id not in FailedJobRegistry(queue=queue)


def test_requeue__unknown_job__404_pointer_nothing_requeued(client: TestClient, failed_job: Job) -> None:
    r = client.post("/api/v1/jobs/failed/requeue", json={"job_ids": [failed_job.id, "no-such-job"]})
    assert r.status_code == 404
    assert r.json()["details"] == [
        {"path": "/job_ids/1", "message": "job no-such-job is not in the failed registry"}
    ]
    assert failed_job.get_status(refresh=True) == "failed"


def test_failed_jobs__project_admin_or_writer__403(client: TestClient, api: Api, failed_job: Job) -> None:
    api.project()
    for key in (api.key("writer"), api.key("admin", project="shop")):
        assert client.get("/api/v1/jobs/failed", headers=auth(key)).status_code == 403
        assert client.post("/api/v1/jobs/failed/requeue", headers=auth(key)).status_code == 403
    assert failed_job.get_status(refresh=True) == "failed"
