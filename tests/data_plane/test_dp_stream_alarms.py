"""Streams wait for their environment's next change or their own deadline (heartbeat, key check) with one
shared timer and heap (:meth:`Streams.wait_changed`), not a timer per wait: the deadlines must still be
kept, a change must still wake every waiter, an outside cancellation must stay one, and the heap must stay
bounded by the streams. Pure asyncio: no transport."""

from __future__ import annotations

import asyncio
import time

import pytest
from dp_helpers import settings_for

from flagyard.data_plane.l1 import CachedEnvironment, Change
from flagyard.data_plane.metrics import Metrics
from flagyard.data_plane.streams import OpenStream, Streams


def registry() -> Streams:
    return Streams(settings_for("unused"), Metrics())


async def woken(streams: Streams, stream: OpenStream, changed: Change, deadline: float) -> tuple[str, float]:
    """How the wait ended (``change`` or ``deadline``) and when (``time.monotonic()``)."""
    try:
        await streams.wait_changed(stream, changed, deadline)
    except TimeoutError:
        return "deadline", time.monotonic()
    return "change", time.monotonic()


def test_wait_changed__each_stream_woken_at_its_own_deadline__not_before() -> None:
    async def run() -> None:
        streams, env = registry(), CachedEnvironment("env-x")
        start = time.monotonic()
        deadlines = [start + 0.05 * (i % 7 + 1) for i in range(40)]  # several streams per deadline, shuffled
        opened = [streams.open("flagyard", f"key-{i}", env) for i in range(40)]
        outcomes = await asyncio.gather(
            *(woken(streams, s, env.changed, d) for s, d in zip(opened, deadlines, strict=True))
        )
        for (how, at), deadline in zip(outcomes, deadlines, strict=True):
            assert how == "deadline"
            assert at >= deadline, "woken before its deadline"
        assert not env.changed.is_set()

    asyncio.run(run())


def test_wait_changed__a_change_wakes_every_waiter__a_past_deadline_raises_at_once() -> None:
    async def run() -> None:
        streams, env = registry(), CachedEnvironment("env-x")
        later = time.monotonic() + 60
        opened = [streams.open("flagyard", "key", env) for _ in range(100)]
        changed = env.changed
        waits = [asyncio.ensure_future(woken(streams, s, changed, later)) for s in opened]
        await asyncio.sleep(0.01)
        assert not any(w.done() for w in waits)
        changed.set()
        outcomes = await asyncio.gather(*waits)
        assert {how for how, _ in outcomes} == {"change"}
        # A change that already happened: no wait. A deadline already past: TimeoutError, no wait.
        assert (await woken(streams, opened[0], changed, later))[0] == "change"
        assert (await woken(streams, opened[0], Change(), time.monotonic() - 1))[0] == "deadline"

    asyncio.run(run())


def test_wait_changed__outside_cancellation_stays_a_cancellation__the_stream_is_not_woken_later() -> None:
    async def run() -> None:
        streams, env = registry(), CachedEnvironment("env-x")
        stream = streams.open("flagyard", "key", env)
        task = asyncio.ensure_future(streams.wait_changed(stream, env.changed, time.monotonic() + 0.05))
        await asyncio.sleep(0.01)
        task.cancel()  # what gRPC does when the client leaves, or Streams when it ends a slow consumer
        with pytest.raises(asyncio.CancelledError):
            await task
        assert stream.waiting is None
        streams.close(stream)
        await asyncio.sleep(0.1)  # its alarm came due: dropped, nothing to wake
        assert streams.alarms == 0

    asyncio.run(run())


def test_wait_changed__deadlines_moving_later_on_every_change__one_alarm_per_stream() -> None:
    """Heartbeats move a stream's deadline later after every message; its heap entry is kept, not pushed
    again per wait, so the heap holds at most one entry per stream however many changes go by."""

    async def run() -> None:
        streams, env = registry(), CachedEnvironment("env-x")
        opened = [streams.open("flagyard", f"key-{i}", env) for i in range(50)]
        for _ in range(30):
            changed = env.changed
            deadline = time.monotonic() + 30
            waits = [asyncio.ensure_future(woken(streams, s, changed, deadline)) for s in opened]
            await asyncio.sleep(0)
            env._notify()
            assert {how for how, _ in await asyncio.gather(*waits)} == {"change"}
        assert streams.alarms == len(opened)
        # A deadline that moved later is still kept once the first one comes due: pushed again then.
        stream = streams.open("flagyard", "key-late", env)
        early = asyncio.ensure_future(woken(streams, stream, env.changed, time.monotonic() + 0.05))
        await asyncio.sleep(0)
        env._notify()
        assert (await early)[0] == "change"
        moved = time.monotonic() + 0.2
        how, at = await woken(streams, stream, env.changed, moved)
        assert how == "deadline"
        assert at >= moved, "woken at the first (earlier) deadline its entry was queued for"

    asyncio.run(run())
