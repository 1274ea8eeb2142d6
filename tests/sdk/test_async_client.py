"""AsyncFlagyardClient: remote mode over grpc.aio, local mode from the streamed FlagSet, offline; the
failure paths return defaults."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sdk_helpers import (
    BETA_USER,
    ENV_ID,
    FLAGS,
    SDK_KEY,
    Env,
    Events,
    ThreadPlane,
    seeded_env,
    stopping_planes,
    unused_target,
)

from flagyard import AsyncFlagyardClient, ErrorCode, ProviderEvent, Reason
from flagyard.contracts.redis import read_evaluations

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flags.json"


@pytest.fixture
def env() -> Iterator[Env]:
    yield from seeded_env()


@pytest.fixture
def planes() -> Iterator[list[ThreadPlane]]:
    yield from stopping_planes()


@pytest.fixture
def plane(env: Env, planes: list[ThreadPlane]) -> ThreadPlane:
    planes.append(ThreadPlane(env.settings()).start())
    return planes[-1]


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_async_client__all_five_types__served(plane: ThreadPlane, mode: str) -> None:
    async def main() -> None:
        async with AsyncFlagyardClient(target=plane.target, sdk_key=SDK_KEY, mode=mode) as client:  # type: ignore[arg-type]
            assert await client.wait_ready(10)
            assert client.ready
            assert await client.boolean("new-checkout", False, BETA_USER) is True
            assert await client.string("banner", "x") == "Welcome"
            assert await client.integer("rate-limit", 1, {"plan": "ent"}) == 500
            assert await client.float("ratio", 0.0) == 0.75
            assert await client.object("theme", {}) == {"bg": "#000", "sizes": [1, 2]}
            details = await client.details("new-checkout", False, BETA_USER)
            assert (details.variant, details.reason) == ("on", Reason.TARGETING_MATCH)
            assert set(await client.all_flags(BETA_USER)) == set(FLAGS)
            missing = await client.details("missing", "d")
            assert (missing.value, missing.error_code) == ("d", ErrorCode.FLAG_NOT_FOUND)
            mismatch = await client.details("banner", 1)
            assert (mismatch.value, mismatch.error_code) == (1, ErrorCode.TYPE_MISMATCH)

    asyncio.run(main())


def test_async_client__remote_concurrent_calls__one_channel_all_answered(plane: ThreadPlane) -> None:
    async def main() -> list[int]:
        async with AsyncFlagyardClient(target=plane.target, sdk_key=SDK_KEY, mode="remote") as client:
            return await asyncio.gather(
                *(client.integer("rate-limit", 0, {"plan": "ent" if i % 2 else "free"}) for i in range(50))
            )

    assert asyncio.run(main()) == [100, 500] * 25


def test_async_client__local_change_in_redis__configuration_changed_and_new_value(
    env: Env, plane: ThreadPlane
) -> None:
    events = Events()

    async def main() -> str:
        async with AsyncFlagyardClient(target=plane.target, sdk_key=SDK_KEY, mode="local") as client:
            assert await client.wait_ready(10)
            client.add_listener(events)
            env.put_flag("banner", default_variant="b")
            await asyncio.to_thread(events.wait, ProviderEvent.CONFIGURATION_CHANGED)
            return await client.string("banner", "x")

    assert asyncio.run(main()) == "Hi"
    assert events.of(ProviderEvent.CONFIGURATION_CHANGED)[0][1] == ["banner"]


@pytest.mark.parametrize("mode", ["remote", "local"])
def test_async_client__no_server__defaults_with_error_codes(mode: str) -> None:
    async def main() -> None:
        async with AsyncFlagyardClient(target=unused_target(), sdk_key=SDK_KEY, mode=mode) as client:  # type: ignore[arg-type]
            assert not await client.wait_ready(0.3)
            result = await client.details("banner", "d")
            assert (result.value, result.reason) == ("d", Reason.ERROR)
            expected = ErrorCode.GENERAL if mode == "remote" else ErrorCode.PROVIDER_NOT_READY
            assert result.error_code is expected
            assert await client.boolean("new-checkout", True) is True
            assert await client.all_flags() == {}

    asyncio.run(main())


def test_async_client__bad_sdk_key__defaults_and_fatal(plane: ThreadPlane) -> None:
    async def main() -> None:
        async with AsyncFlagyardClient(target=plane.target, sdk_key="nope", mode="remote") as client:
            assert not await client.wait_ready(2)
            results = [await client.details("banner", "d") for _ in range(20)]
            assert {(r.value, r.error_code) for r in results} == {("d", ErrorCode.GENERAL)}

    asyncio.run(main())
    assert plane.requests("ResolveAll", "UNAUTHENTICATED") == 1
    assert plane.requests("ResolveString", "UNAUTHENTICATED") == 0


def test_async_client__offline__serves_the_file() -> None:
    async def main() -> bool:
        async with AsyncFlagyardClient.offline(EXAMPLE) as client:
            assert await client.wait_ready(0)
            return await client.boolean("new-checkout", False, {"targeting_key": "u-1", "country": "DE"})

    assert asyncio.run(main()) is True


def test_async_client__closed__reports_its_evaluation_counts(plane: ThreadPlane, env: Env) -> None:
    async def main() -> None:
        client = AsyncFlagyardClient(
            target=plane.target, sdk_key=SDK_KEY, mode="remote", report_interval=3600
        )
        assert await client.wait_ready(10)
        for _ in range(3):
            assert await client.boolean("new-checkout", False, BETA_USER) is True
        assert await client.string("banner", "x") == "Welcome"
        await client.close()

    asyncio.run(main())
    usage = read_evaluations(env.rds, env.prefix, ENV_ID)
    assert usage["new-checkout"].variants == {"on": 3}
    assert usage["banner"].evaluations == 1
