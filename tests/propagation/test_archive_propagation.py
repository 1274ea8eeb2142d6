"""Archiving reaches the planes as a missing flag, and unarchiving serves it again, on the real stack
(control plane in process, syncer and data plane as processes, a gRPC client with an SDK key)."""

from __future__ import annotations

import redis
from e2e_stack import Evaluator, Stack, wait_until

from flagyard.contracts.redis import EnvKeys, load_environment_sync, parse_stored
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb

DE = {"targeting_key": "u1", "country": "DE"}
FLAG = "/api/v1/projects/shop/flags/checkout"
DE_RULE = {
    "id": "de",
    "clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}],
    "variant": "on",
}


def make_project(stack: Stack) -> str:
    """Project shop with environment prod, flag checkout on for DE; returns an SDK key of prod."""
    api = stack.api
    assert api.post("/api/v1/projects", json={"key": "shop", "name": "Shop"}).status_code == 201
    r = api.post("/api/v1/projects/shop/environments", json={"key": "prod", "name": "Prod"})
    assert r.status_code == 201, r.text
    body = {"key": "checkout", "name": "Checkout", "type": "boolean", "variants": {"on": True, "off": False}}
    assert api.post("/api/v1/projects/shop/flags", json=body).status_code == 201
    config = {"enabled": True, "off_variant": "off", "default_variant": "off", "rules": [DE_RULE]}
    r = api.patch(f"{FLAG}/environments/prod", json=config, headers={"If-Match": '"1"'})
    assert r.status_code == 200, r.text
    r = api.post("/api/v1/projects/shop/environments/prod/sdk-keys", json={"name": "backend"})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def test_archive__data_plane_answers_flag_not_found__unarchive_serves_the_old_config_higher(
    stack: Stack,
) -> None:
    sdk_key = make_project(stack)
    stack.start_syncer()
    stack.start_data_plane()
    client = Evaluator(stack.grpc_port, sdk_key)
    try:
        served = wait_until(lambda: client.try_boolean("checkout", DE), 30)
        assert (served.value, served.variant) == (True, "on")

        r = stack.api.post(f"{FLAG}/archive", json={"comment": "released"})
        assert r.status_code == 200, r.text
        assert r.json()["archived"] is True
        archived_version = r.json()["version"]
        assert archived_version > served.version

        gone = wait_until(
            lambda: (a := client.boolean("checkout", DE)).error_code == pb.ERROR_CODE_FLAG_NOT_FOUND and a,
            15,
        )
        assert gone.value is False  # nothing served: the caller's default (the proto's zero value)

        rds = redis.Redis.from_url(stack.redis_url)
        env_id = next(m.decode() for m in rds.smembers(f"{stack.prefix}:envs"))
        held = load_environment_sync(rds, stack.prefix, env_id)
        assert "checkout" not in held.flags
        keys = EnvKeys(stack.prefix, env_id)
        assert int(rds.hget(keys.versions, "flag:checkout") or 0) == archived_version  # the tombstone
        last_event = rds.xrevrange(keys.events, count=1)[0][1]
        assert (last_event[b"op"], int(last_event[b"version"])) == (b"delete", archived_version)

        r = stack.api.post(f"{FLAG}/unarchive", json={})
        assert r.status_code == 200, r.text
        assert r.json()["archived"] is False
        back = wait_until(
            lambda: (
                (a := client.try_boolean("checkout", DE)) is not None
                and a.error_code != pb.ERROR_CODE_FLAG_NOT_FOUND
                and a
            ),
            15,
        )
        assert (back.value, back.variant) == (True, "on")  # the configuration it had
        assert back.version == r.json()["version"] > archived_version
        stored = parse_stored(load_environment_sync(rds, stack.prefix, env_id).flags["checkout"])
        assert stored.version == back.version
        assert stored.definition["rules"][0]["id"] == "de"
        rds.close()
    finally:
        client.close()


def test_archived_flag__redis_restored_from_scratch__stays_missing(stack: Stack) -> None:
    """The reconcile restores an environment Redis lost from PostgreSQL's served flags only."""
    make_project(stack)
    body = {"key": "kept", "name": "Kept", "type": "boolean", "variants": {"on": True, "off": False}}
    assert stack.api.post("/api/v1/projects/shop/flags", json=body).status_code == 201
    assert stack.api.post(f"{FLAG}/archive", json={}).status_code == 200
    stack.start_syncer()  # starts with a reconcile of an empty Redis
    rds = redis.Redis.from_url(stack.redis_url)
    env_id = wait_until(lambda: next((m.decode() for m in rds.smembers(f"{stack.prefix}:envs")), None), 30)
    held = wait_until(
        lambda: "kept" in (h := load_environment_sync(rds, stack.prefix, env_id)).flags and h,
        30,
    )
    assert "checkout" not in held.flags
    rds.close()
