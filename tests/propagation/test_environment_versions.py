"""Each environment's copy of a flag changes only when what that environment serves changes.

A flag has one version counter for its definition and every environment configuration; what an
environment serves carries the version at which *it* last changed. These tests run the real control
plane, PostgreSQL, Redis and the syncer's jobs and reconcile, and read what a data plane would read: the
stored value, the environment's revision and its event stream (one event = one CONFIGURATION_CHANGED for
SDKs).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
import sqlalchemy as sa
from e2e_stack import Stack
from rq import Queue, SimpleWorker

from flagyard.contracts.redis import EnvKeys, parse_stored
from flagyard.syncer.core import Syncer

API = "/api/v1/projects/shop"
FLAG = f"{API}/flags/checkout"


@dataclass(frozen=True)
class Seen:
    """What a data plane reading one environment sees of flag ``checkout``."""

    raw: bytes | None
    revision: int
    guard: int
    last_event: str

    @property
    def version(self) -> int | None:
        return None if self.raw is None else parse_stored(self.raw).version


def seen(rds: redis.Redis, stack: Stack, env_id: str) -> Seen:
    keys = EnvKeys(stack.prefix, env_id)
    last = rds.xrevrange(keys.events, count=1)
    return Seen(
        raw=rds.hget(keys.flags, "checkout"),  # type: ignore[arg-type]
        revision=int(rds.get(keys.rev) or 0),  # type: ignore[arg-type]
        guard=int(rds.hget(keys.versions, "flag:checkout") or 0),  # type: ignore[arg-type]
        last_event=(last[0][0].decode() if last else "0-0"),  # type: ignore[index]
    )


def events_since(rds: redis.Redis, stack: Stack, env_id: str, since: Seen) -> list[dict[str, str]]:
    entries = rds.xrange(EnvKeys(stack.prefix, env_id).events, min=f"({since.last_event}")
    return [{k.decode(): v.decode() for k, v in fields.items()} for _, fields in entries]  # type: ignore[union-attr]


def run_jobs_and_reconcile(stack: Stack, rds: redis.Redis, syncer: Syncer) -> None:
    SimpleWorker([Queue(stack.queue, connection=rds)], connection=rds).work(burst=True)
    syncer.reconcile()


def env_ids(stack: Stack) -> dict[str, str]:
    with sa.create_engine(stack.db_url).connect() as conn:
        return {key: str(id_) for id_, key in conn.execute(sa.text("SELECT id, key FROM environments"))}


def write(stack: Stack, method: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    r = stack.api.request(method, path, json=body, headers={"If-Match": stack.api.get(path).headers["etag"]})
    assert r.status_code == 200, r.text
    return dict(r.json())


def flag_version(stack: Stack) -> int:
    return int(stack.api.get(FLAG).json()["version"])


def seed(stack: Stack, rds: redis.Redis, syncer: Syncer) -> dict[str, str]:
    api = stack.api
    assert api.post("/api/v1/projects", json={"key": "shop", "name": "Shop"}).status_code == 201
    for env in ("dev", "prod"):
        assert api.post(f"{API}/environments", json={"key": env, "name": env}).status_code == 201
    body = {"key": "checkout", "name": "Checkout", "type": "boolean", "variants": {"on": True, "off": False}}
    assert api.post(f"{API}/flags", json=body).status_code == 201
    run_jobs_and_reconcile(stack, rds, syncer)
    return env_ids(stack)


def test_config_change_in_prod__jobs_and_reconcile__dev_value_revision_and_stream_untouched(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    # Given both environments synced
    envs = seed(stack, rds, syncer)
    dev_before, prod_before = seen(rds, stack, envs["dev"]), seen(rds, stack, envs["prod"])
    assert dev_before.raw is not None
    # When prod's configuration changes and the syncer runs its jobs and two reconciles
    write(stack, "PATCH", f"{FLAG}/environments/prod", {"enabled": True, "off_variant": "off"})
    run_jobs_and_reconcile(stack, rds, syncer)
    assert syncer.reconcile() == 0
    # Then dev holds exactly what it held, and its SDKs were told of nothing
    assert seen(rds, stack, envs["dev"]) == dev_before
    assert events_since(rds, stack, envs["dev"], dev_before) == []
    # while prod got the change, once, at the flag's new version
    prod_events = events_since(rds, stack, envs["prod"], prod_before)
    assert [(e["key"], int(e["version"])) for e in prod_events] == [("checkout", flag_version(stack))]
    assert seen(rds, stack, envs["prod"]).version == flag_version(stack)
    assert parse_stored(seen(rds, stack, envs["prod"]).raw or b"").definition["enabled"] is True


def test_definition_change__reaches_every_environment_above_what_each_had(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    # Given prod changed twice since dev last changed (dev is two versions behind the flag)
    envs = seed(stack, rds, syncer)
    for variant in ("on", "off"):
        write(stack, "PATCH", f"{FLAG}/environments/prod", {"enabled": True, "default_variant": variant})
    run_jobs_and_reconcile(stack, rds, syncer)
    before = {name: seen(rds, stack, env_id) for name, env_id in envs.items()}
    assert (before["dev"].version, before["prod"].version) == (1, 3)
    # When a served part of the definition changes (a variant added)
    write(stack, "PATCH", FLAG, {"variants": {"on": True, "off": False, "maybe": True}})
    run_jobs_and_reconcile(stack, rds, syncer)
    # Then every environment serves it, at the flag's new version, with one event each
    for name, env_id in envs.items():
        after = seen(rds, stack, env_id)
        assert after.version == flag_version(stack) == 4, name
        assert parse_stored(after.raw or b"").definition["variants"]["maybe"] is True
        assert [e["key"] for e in events_since(rds, stack, env_id, before[name])] == ["checkout"], name


def test_name_only_change__no_environment_written(stack: Stack, rds: redis.Redis, syncer: Syncer) -> None:
    envs = seed(stack, rds, syncer)
    before = {name: seen(rds, stack, env_id) for name, env_id in envs.items()}
    body = write(stack, "PATCH", FLAG, {"name": "Checkout v2", "description": "new", "tags": ["x"]})
    assert body["version"] == 2  # the flag itself has a new version (history, audit)
    run_jobs_and_reconcile(stack, rds, syncer)
    # What SDKs evaluate (key, type, variants, salt, configuration) did not change: nothing is written
    for name, env_id in envs.items():
        assert seen(rds, stack, env_id) == before[name], name


def test_rollback__only_environments_it_changes_move__and_versions_keep_rising_across_delete_recreate(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    envs = seed(stack, rds, syncer)
    write(stack, "PATCH", f"{FLAG}/environments/prod", {"enabled": True})  # v2
    write(stack, "PATCH", f"{FLAG}/environments/dev", {"enabled": True})  # v3
    run_jobs_and_reconcile(stack, rds, syncer)
    before = {name: seen(rds, stack, env_id) for name, env_id in envs.items()}
    assert (before["dev"].version, before["prod"].version) == (3, 2)
    # When rolled back to v2 (dev was off then; prod's configuration is the same as now)
    r = stack.api.post(f"{FLAG}/rollback", json={"version": 2})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == 4
    run_jobs_and_reconcile(stack, rds, syncer)
    # Then dev moves to v4 (above its 3), prod is untouched
    dev = seen(rds, stack, envs["dev"])
    assert dev.version == dev.guard == 4
    assert parse_stored(dev.raw or b"").definition["enabled"] is False
    assert seen(rds, stack, envs["prod"]) == before["prod"]
    # When the flag is deleted and created again
    etag = stack.api.get(FLAG).headers["etag"]
    assert stack.api.delete(FLAG, headers={"If-Match": etag}).status_code == 204
    run_jobs_and_reconcile(stack, rds, syncer)
    for env_id in envs.values():
        assert seen(rds, stack, env_id).raw is None
        assert seen(rds, stack, env_id).guard == 5  # the tombstone is above both environments' versions
    body = {"key": "checkout", "name": "Checkout", "type": "boolean", "variants": {"on": True, "off": False}}
    assert stack.api.post(f"{API}/flags", json=body).status_code == 201
    run_jobs_and_reconcile(stack, rds, syncer)
    # Then both environments serve it again, above the tombstone (the guard accepted it)
    for env_id in envs.values():
        assert seen(rds, stack, env_id).version == seen(rds, stack, env_id).guard == 6
    assert syncer.reconcile() == 0


def test_environment_created_later__serves_the_flags_current_version__nothing_else_rewritten(
    stack: Stack, rds: redis.Redis, syncer: Syncer
) -> None:
    envs = seed(stack, rds, syncer)
    dev_before = seen(rds, stack, envs["dev"])
    write(stack, "PATCH", f"{FLAG}/environments/prod", {"enabled": True})
    run_jobs_and_reconcile(stack, rds, syncer)
    prod_before = seen(rds, stack, envs["prod"])
    assert stack.api.post(f"{API}/environments", json={"key": "qa", "name": "QA"}).status_code == 201
    run_jobs_and_reconcile(stack, rds, syncer)
    # The new environment starts at the flag's current version (nothing older can be in its Redis)
    qa = env_ids(stack)["qa"]
    qa_before = seen(rds, stack, qa)
    assert qa_before.version == flag_version(stack) == 2
    assert seen(rds, stack, envs["prod"]) == prod_before
    # and a later change elsewhere leaves it, like dev, alone
    write(stack, "PATCH", f"{FLAG}/environments/prod", {"enabled": False})
    run_jobs_and_reconcile(stack, rds, syncer)
    assert seen(rds, stack, qa) == qa_before
    assert seen(rds, stack, envs["dev"]) == dev_before
    assert seen(rds, stack, envs["prod"]).version == 3
    assert syncer.reconcile() == 0
