"""Redis restarting empty, piece by piece: a data plane keeps accepting SDK keys it verified before until the
syncer has re-hydrated Redis (and still rejects a revoked one afterwards), and a sync job for an environment
Redis lost restores the SDK keys and the whole environment, not just its own change."""

from __future__ import annotations

import time

import grpc
import pytest
import redis
import sqlalchemy as sa
from e2e_stack import Evaluator, Stack
from fault_flows import (
    ENV,
    boolean_flag,
    create_project,
    env_config_path,
    pg_versions,
    redis_versions,
    resolve_all,
    start_data_plane,
    wait_for,
)
from fault_infra import RedisInstance, free_port
from sqlalchemy.orm import sessionmaker

from flagyard.contracts.redis import apply_change, hash_sdk_key, sdkkeys_key
from flagyard.syncer.core import Syncer

pytestmark = pytest.mark.faults

CONTEXT = {"targeting_key": "u"}
KEYS = ["alpha", "beta", "gamma"]


def _code(evaluator: Evaluator) -> grpc.StatusCode:
    try:
        resolve_all(evaluator, CONTEXT, timeout=2)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


def test_sdk_key__redis_restarted_empty__verified_key_served_until_rehydrated_then_revocation_holds(
    fault_stack: Stack, own_redis: RedisInstance
) -> None:
    stack = fault_stack
    sdk_key = create_project(stack.api, {key: boolean_flag() for key in KEYS})
    stack.env["FLAGYARD_SDK_KEY_CACHE_SECONDS"] = "0.2"
    stack.env["FLAGYARD_SDK_KEY_NEGATIVE_CACHE_SECONDS"] = "0.2"
    stack.start_syncer()
    port = free_port()
    start_data_plane(stack, "data_plane", port)
    evaluator = Evaluator(port, sdk_key)
    try:
        wait_for(lambda: len(resolve_all(evaluator, CONTEXT).flags) == len(KEYS), 30)
        stack.kill("syncer")  # nobody re-hydrates Redis for now
        own_redis.restart()  # back at once, empty
        wait_for(lambda: resolve_all(evaluator, CONTEXT), 10)  # the data plane reconnected
        deadline = time.monotonic() + 1.5  # several key-cache lifetimes
        codes = set()
        while time.monotonic() < deadline:
            codes.add(_code(evaluator))
            time.sleep(0.02)
        assert codes == {grpc.StatusCode.OK}

        # Redis lists an environment again but not the key: the key was revoked meanwhile.
        rds = own_redis.client()
        apply_change(
            rds,
            stack.prefix,
            "999",
            "flag",
            "other",
            1,
            {"key": "other", "type": "boolean", "variants": {"on": True}, "enabled": False},
        )
        assert wait_for(lambda: _code(evaluator) == grpc.StatusCode.UNAUTHENTICATED, 10)

        stack.start_syncer()  # its reconcile restores the key
        assert wait_for(lambda: _code(evaluator) == grpc.StatusCode.OK, 30)
        assert rds.hexists(sdkkeys_key(stack.prefix), hash_sdk_key(sdk_key))
        rds.close()
    finally:
        evaluator.close()


def test_sync_job__redis_lost_its_data__restores_sdk_keys_and_whole_environment_first(
    fault_stack: Stack, own_redis: RedisInstance
) -> None:
    stack = fault_stack
    sdk_key = create_project(stack.api, {key: boolean_flag() for key in KEYS})
    engine = sa.create_engine(stack.db_url, pool_size=2)
    rds = redis.Redis.from_url(stack.redis_url)
    syncer = Syncer(sessionmaker(engine), rds, stack.prefix)
    try:
        syncer.reconcile()
        assert redis_versions(rds, stack.prefix) == pg_versions(stack.api)
        own_redis.restart()  # empty
        path = env_config_path("beta")
        r = stack.api.patch(
            path, json={"default_variant": "on"}, headers={"If-Match": stack.api.get(path).headers["etag"]}
        )
        assert r.status_code == 200, r.text
        with engine.connect() as conn:
            env_id = conn.execute(
                sa.text("SELECT id FROM environments WHERE key = :k"), {"k": ENV}
            ).scalar_one()

        assert syncer.sync_change(int(env_id), "flag", "beta", int(r.json()["version"])) == "applied"

        assert redis_versions(rds, stack.prefix) == pg_versions(stack.api)  # every flag, not just beta
        assert rds.hexists(sdkkeys_key(stack.prefix), hash_sdk_key(sdk_key))
        assert syncer.reconcile() == 0  # nothing left to repair
    finally:
        rds.close()
        engine.dispose()
