"""Redis never lists an environment holding only part of its flags, whatever the syncer's threads do.

A data plane reloads an environment whenever its revisions restart (Redis lost its data); if Redis then
lists the environment with some of its flags, the data plane serves that part and its readers see the
other flags vanish (the chaos fault test's ``vanished_flag_reads``). These tests interleave the
syncer's reconcile thread and a job thread at chosen points (a subclass pausing after a flag is queued;
PostgreSQL, Redis and the syncer code are real), and make Redis lose its data between a job's check and
its write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from e2e_stack import Stack
from sqlalchemy.orm import Session, sessionmaker

from flagyard.contracts.redis import load_environment_sync
from flagyard.syncer.core import EnvironmentInfo, Outcome, Syncer

API = "/api/v1/projects/shop"
FLAGS = ("a", "b", "c", "d")
WAIT = 30.0


class PausingSyncer(Syncer):
    """Calls ``hooks[thread name](key)`` after each flag it syncs in that thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hooks: dict[str, Callable[[str], None]] = {}

    def _sync_flag(self, session: Session, env: EnvironmentInfo, key: str, version: int) -> Outcome:
        outcome = super()._sync_flag(session, env, key, version)
        hook = self.hooks.get(threading.current_thread().name)
        if hook is not None:
            hook(key)
        return outcome


@pytest.fixture
def syncer(stack: Stack, rds: redis.Redis) -> Iterator[PausingSyncer]:
    engine = sa.create_engine(stack.db_url, pool_size=4)
    yield PausingSyncer(sessionmaker(engine), rds, stack.prefix)
    engine.dispose()


def seed(stack: Stack) -> str:
    """Project ``shop`` with one environment and flags ``FLAGS``; returns the environment's id."""
    api = stack.api
    assert api.post("/api/v1/projects", json={"key": "shop", "name": "Shop"}).status_code == 201
    assert api.post(f"{API}/environments", json={"key": "prod", "name": "Prod"}).status_code == 201
    for key in FLAGS:
        body = {"key": key, "name": key, "type": "boolean", "variants": {"on": True, "off": False}}
        assert api.post(f"{API}/flags", json=body).status_code == 201
    with sa.create_engine(stack.db_url).connect() as conn:
        return str(conn.execute(sa.text("SELECT id FROM environments")).scalar_one())


def lose_everything(rds: redis.Redis, stack: Stack) -> None:
    """What a Redis restarted empty holds of this stack: nothing."""
    for key in rds.scan_iter(f"{stack.prefix}:*"):
        rds.delete(key)


def flags_listed(rds: redis.Redis, stack: Stack, env_id: str) -> list[str] | None:
    """The flags Redis holds for the environment, or None while it does not have the environment."""
    data = load_environment_sync(rds, stack.prefix, env_id)
    return sorted(data.flags) if data.exists else None


class Pause:
    """A point where one thread stops (after its first flag) until released."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.release = threading.Event()

    def __call__(self, key: str) -> None:
        if not self.reached.is_set():
            self.reached.set()
            assert self.release.wait(WAIT)


def test_reconcile_and_job_restore_interleaved__each_writes_the_whole_environment_at_once(
    stack: Stack, rds: redis.Redis, syncer: PausingSyncer
) -> None:
    # Given Redis lost everything, and the reconcile thread restoring the environment, paused after
    # its first flag
    env_id = seed(stack)
    lose_everything(rds, stack)
    reconcile_paused, job_paused = Pause(), Pause()
    syncer.hooks = {"reconcile": reconcile_paused, "job": job_paused}
    outcomes: list[str] = []
    reconcile = threading.Thread(target=syncer.reconcile, name="reconcile")
    job = threading.Thread(
        target=lambda: outcomes.append(syncer.sync_change(int(env_id), "flag", "a", 1)), name="job"
    )
    reconcile.start()
    assert reconcile_paused.reached.wait(WAIT)
    # and a job for that environment restoring it too, paused after its first flag
    job.start()
    assert job_paused.reached.wait(WAIT)
    # When the reconcile finishes first
    reconcile_paused.release.set()
    reconcile.join(WAIT)
    assert not reconcile.is_alive()
    # Then Redis holds the whole environment (not the part either thread had queued)
    assert flags_listed(rds, stack, env_id) == sorted(FLAGS)
    job_paused.release.set()
    job.join(WAIT)
    assert not job.is_alive()
    assert flags_listed(rds, stack, env_id) == sorted(FLAGS)
    assert outcomes == ["applied"]  # the job's change was its own, not taken into the reconcile's batch


def test_redis_loses_its_data_during_a_job__the_environment_is_restored_whole(
    stack: Stack, rds: redis.Redis, syncer: PausingSyncer
) -> None:
    # Given the environment in Redis, and a job of two changes
    env_id = seed(stack)
    syncer.reconcile()
    assert flags_listed(rds, stack, env_id) == sorted(FLAGS)
    for key in ("a", "b"):
        path = f"{API}/flags/{key}/environments/prod"
        r = stack.api.patch(path, json={"enabled": True}, headers={"If-Match": '"1"'})
        assert r.status_code == 200, r.text
    seen_during: list[list[str] | None] = []

    def lose_after_first(key: str) -> None:
        if key == "a" and not seen_during:  # the job has checked that Redis lists it, and written "a"
            lose_everything(rds, stack)
            seen_during.append(flags_listed(rds, stack, env_id))

    syncer.hooks = {threading.current_thread().name: lose_after_first}
    changes = [
        {"environment_id": int(env_id), "entity_type": "flag", "entity_key": key, "version": 2}
        for key in ("a", "b")
    ]
    # When Redis loses its data after the first change, before the second
    assert syncer.sync_changes(changes) == {"applied": 2}
    # Then the second change restored the whole environment rather than re-creating it holding "b" alone
    assert seen_during == [None]
    assert flags_listed(rds, stack, env_id) == sorted(FLAGS)
    assert syncer.reconcile() == 0
