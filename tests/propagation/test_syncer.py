"""The syncer against real PostgreSQL and Redis: jobs, deletions, reconcile, SDK keys, failed jobs."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import redis
import sqlalchemy as sa
from e2e_stack import Stack
from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry

from flagyard.contracts.redis import (
    EnvKeys,
    hash_sdk_key,
    load_environment_sync,
    parse_stored,
    sdkkeys_key,
)
from flagyard.syncer.core import Syncer

RULE = {
    "id": "de",
    "clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}],
    "variant": "on",
}
FLAG_PATH = "/api/v1/projects/shop/flags/checkout"


def seed(stack: Stack) -> None:
    api = stack.api
    assert api.post("/api/v1/projects", json={"key": "shop", "name": "Shop"}).status_code == 201
    for env in ("dev", "prod"):
        assert (
            api.post("/api/v1/projects/shop/environments", json={"key": env, "name": env}).status_code == 201
        )
    body = {"key": "checkout", "name": "Checkout", "type": "boolean", "variants": {"on": True, "off": False}}
    assert api.post("/api/v1/projects/shop/flags", json=body).status_code == 201


def patch_prod(stack: Stack, **config: Any) -> None:
    path = f"{FLAG_PATH}/environments/prod"
    r = stack.api.patch(path, json=config, headers={"If-Match": stack.api.get(path).headers["etag"]})
    assert r.status_code == 200, r.text


def run_jobs(stack: Stack, rds: redis.Redis) -> None:
    """Drain the sync queue with a real RQ worker in this process (no fork per job)."""
    SimpleWorker([Queue(stack.queue, connection=rds)], connection=rds).work(burst=True)


def env_ids(stack: Stack) -> dict[str, str]:
    with sa.create_engine(stack.db_url).connect() as conn:
        return {key: str(id_) for id_, key in conn.execute(sa.text("SELECT id, key FROM environments"))}


def stored_flag(rds: redis.Redis, stack: Stack, env_id: str) -> tuple[int, dict[str, Any]] | None:
    raw = load_environment_sync(rds, stack.prefix, env_id).flags.get("checkout")
    if raw is None:
        return None
    stored = parse_stored(raw)
    return stored.version, stored.definition


def test_sync_job__committed_change__is_written_with_its_version(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    seed(stack)
    patch_prod(stack, enabled=True, default_variant="off", off_variant="off", rules=[RULE])
    run_jobs(stack, rds)
    version = stack.api.get(FLAG_PATH).json()["version"]
    stored = stored_flag(rds, stack, env_ids(stack)["prod"])
    assert stored is not None
    assert stored[0] == version
    assert stored[1]["rules"][0]["id"] == "de"
    assert stored[1]["enabled"] is True
    dev = stored_flag(rds, stack, env_ids(stack)["dev"])
    assert dev is not None
    assert dev[1]["enabled"] is False


def test_sync_job__duplicate_and_stale_jobs__change_nothing(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    seed(stack)
    patch_prod(stack, enabled=True)
    run_jobs(stack, rds)
    prod = env_ids(stack)["prod"]
    rev = int(rds.get(EnvKeys(stack.prefix, prod).rev) or 0)
    version = stack.api.get(FLAG_PATH).json()["version"]
    for stale in (1, version, version - 1):
        assert syncer.sync_change(int(prod), "flag", "checkout", stale) == "ignored"
    assert int(rds.get(EnvKeys(stack.prefix, prod).rev) or 0) == rev
    assert stored_flag(rds, stack, prod) is not None
    assert stored_flag(rds, stack, prod)[0] == version  # type: ignore[index]


def test_sync_job__flag_deleted__is_removed_and_an_old_put_cannot_revive_it(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    seed(stack)
    run_jobs(stack, rds)
    prod = env_ids(stack)["prod"]
    etag = stack.api.get(FLAG_PATH).headers["etag"]
    assert stack.api.delete(FLAG_PATH, headers={"If-Match": etag}).status_code == 204
    run_jobs(stack, rds)
    assert stored_flag(rds, stack, prod) is None
    assert syncer.sync_change(int(prod), "flag", "checkout", 1) == "ignored"
    assert stored_flag(rds, stack, prod) is None


def test_sync_job__environment_deleted__drops_everything_redis_held_for_it(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    seed(stack)
    run_jobs(stack, rds)
    dev = env_ids(stack)["dev"]
    assert rds.exists(EnvKeys(stack.prefix, dev).flags)
    rds.hset(EnvKeys(stack.prefix, dev).served, "dp-1", f"1:{int(time.time() * 1000)}")
    etag = stack.api.get("/api/v1/projects/shop/environments/dev").headers["etag"]
    assert (
        stack.api.delete("/api/v1/projects/shop/environments/dev", headers={"If-Match": etag}).status_code
        == 204
    )
    run_jobs(stack, rds)
    keys = EnvKeys(stack.prefix, dev)
    assert rds.exists(keys.flags, keys.versions, keys.rev, keys.events, keys.served) == 0
    assert not rds.sismember(f"{stack.prefix}:envs", dev)


def test_reconcile__redis_lost_and_gained_entries__repairs_both(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    seed(stack)
    run_jobs(stack, rds)
    prod = env_ids(stack)["prod"]
    keys = EnvKeys(stack.prefix, prod)
    rds.hdel(keys.flags, "checkout")
    rds.hdel(keys.versions, "flag:checkout")
    rds.hset(keys.flags, "ghost", b'{"version": 0, "definition": {"key": "ghost"}}')
    rds.hset(keys.versions, "flag:ghost", 0)
    assert syncer.reconcile() >= 2
    assert stored_flag(rds, stack, prod) is not None
    assert not rds.hexists(keys.flags, "ghost")
    assert syncer.reconcile() == 0


def test_reconcile__empty_redis__is_hydrated_from_postgresql(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    seed(stack)
    patch_prod(stack, enabled=True, rules=[RULE], default_variant="off")
    version = stack.api.get(FLAG_PATH).json()["version"]
    for key in rds.scan_iter(f"{stack.prefix}:*"):
        rds.delete(key)
    syncer.reconcile()
    # each environment is restored at the version at which what it serves last changed
    expected = {"dev": 1, "prod": version}
    for env_key, env_id in env_ids(stack).items():
        stored = stored_flag(rds, stack, env_id)
        assert stored is not None
        assert stored[0] == expected[env_key]


def test_reconcile__empty_redis__each_environment_restored_in_one_transaction(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    # Given a project with two flags and a Redis that lost everything
    seed(stack)
    body = {"key": "search", "name": "Search", "type": "boolean", "variants": {"on": True, "off": False}}
    assert stack.api.post("/api/v1/projects/shop/flags", json=body).status_code == 201
    for key in rds.scan_iter(f"{stack.prefix}:*"):
        rds.delete(key)
    # When the reconcile restores it, watched by MONITOR (every command Redis executes, in order)
    with rds.monitor() as monitor:
        syncer.reconcile()
        rds.ping()  # a marker: the last command of the reconcile has run before it
        commands = []
        for entry in monitor.listen():
            if entry["db"] != rds.get_connection_kwargs()["db"] or entry["client_type"] == "lua":
                continue  # other tests' databases; commands run by the scripts themselves
            commands.append(entry["command"].split()[0].upper())
            if commands[-1] == "PING":
                break
    transactions, current = [], None
    for command in commands:
        if command == "MULTI":
            current = []
        elif command == "EXEC":
            transactions.append(current)
            current = None
        elif current is not None:
            current.append(command)
    # Then each environment's guarded writes ran in one MULTI/EXEC, none outside one
    writes = [t for t in transactions if "EVALSHA" in t or "EVAL" in t]
    assert [t.count("EVALSHA") + t.count("EVAL") for t in writes] == [2] * len(env_ids(stack))
    assert sum(c in ("EVALSHA", "EVAL") for c in commands) == 2 * len(env_ids(stack))


def test_sdk_keys__created_rotated_revoked__follow_in_redis(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    seed(stack)
    base = "/api/v1/projects/shop/environments/prod/sdk-keys"
    created = stack.api.post(base, json={"name": "backend"}).json()
    run_jobs(stack, rds)
    held = rds.hget(sdkkeys_key(stack.prefix), hash_sdk_key(created["key"]))
    assert held is not None
    assert b'"environment":"prod"' in held
    r = stack.api.delete(f"{base}/{created['id']}")
    assert r.status_code in (200, 204), r.text
    run_jobs(stack, rds)
    assert rds.hget(sdkkeys_key(stack.prefix), hash_sdk_key(created["key"])) is None


def test_failed_jobs__listed_and_requeued_from_the_command_line(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    queue = Queue(stack.queue, connection=rds)
    job = queue.enqueue(
        "flagyard.syncer.jobs.sync_change",
        outbox_id=0,
        environment_id=1,
        entity_type="bogus",
        entity_key="x",
        version=1,
    )
    run_jobs(stack, rds)
    assert job.id in FailedJobRegistry(queue=queue).get_job_ids()

    def cli(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "flagyard.syncer", "failed", *args],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        return proc.stdout

    assert job.id in cli("list")
    assert "unknown entity type" in cli("list")
    assert "requeued: 1" in cli("requeue")
    assert job.id not in FailedJobRegistry(queue=queue).get_job_ids()
    assert job.id in queue.get_job_ids()


def test_sync_batch__duplicates_and_an_unknown_type__coalesce_and_skip(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    seed(stack)
    run_jobs(stack, rds)
    for variant in ("on", "off", "on"):
        patch_prod(stack, enabled=True, default_variant=variant)
    prod = int(env_ids(stack)["prod"])
    version = stack.api.get(FLAG_PATH).json()["version"]
    batch = [
        {
            "outbox_id": None,
            "environment_id": prod,
            "entity_type": "flag",
            "entity_key": "checkout",
            "version": v,
        }
        for v in (version - 2, version, version - 1)
    ]
    batch.append(
        {"outbox_id": None, "environment_id": prod, "entity_type": "bogus", "entity_key": "x", "version": 1}
    )
    assert syncer.sync_changes(batch) == {"applied": 1, "invalid": 1}
    stored = stored_flag(rds, stack, str(prod))
    assert stored is not None
    assert stored[0] == version
    assert stored[1]["default_variant"] == "on"
