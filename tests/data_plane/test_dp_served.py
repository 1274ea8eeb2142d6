"""A data plane reports the revision it serves per environment (``P:env:{id}:served``): soon after a change,
bounded by a TTL, dropping reports of dead instances, and withdrawn when it stops."""

from __future__ import annotations

import asyncio
import os
import time

import pytest
import redis
import redis.asyncio
from dp_helpers import ENV, FLAGS, META, REDIS_DB, Plane, settings_for, wait_until

from flagyard.contracts.redis import (
    MAX_INSTANCE_ID,
    SERVED_TTL_SECONDS,
    EnvKeys,
    RedisContractError,
    apply_change,
    check_instance_id,
    report_served,
)
from flagyard.data_plane.settings import DataPlaneSettings


def served(rds: redis.Redis, prefix: str) -> dict[str, tuple[int, int]]:
    out = {}
    for field, raw in rds.hgetall(EnvKeys(prefix, ENV).served).items():
        revision, _, stamp = raw.decode().partition(":")
        out[field.decode()] = (int(revision), int(stamp))
    return out


def test_served__after_a_change__reported_soon_with_a_ttl_then_withdrawn_on_stop(
    seeded: str, rds: redis.Redis, planes: list[Plane]
) -> None:
    stored = int(rds.get(EnvKeys(seeded, ENV).rev) or 0)
    dead = int((time.time() - SERVED_TTL_SECONDS - 5) * 1000)
    rds.hset(EnvKeys(seeded, ENV).served, "dp-dead", f"1:{dead}")
    # Periodic reports every 5 s at most: a report within 1.5 s of a change is the change's own.
    plane = Plane(settings_for(seeded, instance_id="dp-test", env_refresh_seconds=30)).start()
    planes.append(plane)
    first = wait_until(lambda: served(rds, seeded).get("dp-test"), 5)
    assert first[0] == stored
    assert abs(first[1] / 1000 - time.time()) < 5
    assert "dp-dead" not in served(rds, seeded)
    assert 0 < rds.pttl(EnvKeys(seeded, ENV).served) <= SERVED_TTL_SECONDS * 1000

    time.sleep(0.5)
    apply_change(rds, seeded, ENV, "flag", "banner", 2, {**FLAGS["banner"], "default_variant": "b"}, META)
    changed = time.monotonic()
    wait_until(lambda: served(rds, seeded)["dp-test"][0] == stored + 1, 5)
    assert time.monotonic() - changed < 1.5

    plane.stop()
    assert "dp-test" not in served(rds, seeded)


def test_served__two_processes__one_field_each(seeded: str, rds: redis.Redis, planes: list[Plane]) -> None:
    planes.extend(Plane(settings_for(seeded, instance_id=name)).start() for name in ("dp-1", "dp-2"))
    wait_until(lambda: {"dp-1", "dp-2"} <= served(rds, seeded).keys(), 5)


def test_instance_id__default_and_setting__valid_and_bounded() -> None:
    default = DataPlaneSettings().served_instance_id()
    assert check_instance_id(default) == default
    assert default.endswith(f"-{os.getpid()}")
    assert DataPlaneSettings(instance_id="eu-1").served_instance_id() == "eu-1"
    several = DataPlaneSettings(instance_id="eu-1", data_plane_processes=4).served_instance_id()
    assert several.startswith("eu-1-")
    assert check_instance_id(several) == several
    with pytest.raises(ValueError, match="instance_id"):
        DataPlaneSettings(instance_id="has space")
    with pytest.raises(ValueError, match="instance_id"):
        DataPlaneSettings(instance_id="x" * MAX_INSTANCE_ID)
    with pytest.raises(RedisContractError, match="instance id"):
        check_instance_id("x" * (MAX_INSTANCE_ID + 1))


def test_report_served__environment_redis_does_not_hold__nothing_written(
    rds: redis.Redis, prefix: str
) -> None:
    async def report() -> None:
        client = redis.asyncio.Redis(db=REDIS_DB)
        try:
            await report_served(client, prefix, "dp-1", {"gone": 3, ENV: 1})
        finally:
            await client.aclose()

    rds.set(EnvKeys(prefix, ENV).rev, 1)
    asyncio.run(report())
    assert not rds.exists(EnvKeys(prefix, "gone").served)
    assert served(rds, prefix)["dp-1"][0] == 1
