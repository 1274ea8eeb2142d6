"""Keeping L1 current: hydration, the Redis stream follower, environment discovery, degraded mode.

One task follows every environment's stream with a single multiplexed ``XREAD BLOCK`` from the last id each
environment has applied. For each batch it reads the current value of the keys involved (one MULTI/EXEC)
and applies them in revision order. A revision that is not the next one (the stream was trimmed past the
last id, or Redis lost or restored data) reloads the environment from the hashes.

When Redis goes away the follower marks the data plane degraded (L1 keeps serving as last known), probes
Redis with a capped backoff, and when it answers again reloads every environment and carries on. Nothing in
L1 expires.

Each environment's state and the rules for applying events to it are :class:`~.l1.CachedEnvironment`'s;
this module is the Redis side: reading, retrying, and the :class:`FollowerStatus` the health service shows.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import time
from collections.abc import Callable
from enum import StrEnum

import structlog

from flagyard.contracts import redis as contract

from .convert import BulkEncoder
from .exceptions import StoreError, StoreUnavailableError, UnavailableError
from .l1 import CachedEnvironment, Lazy, build, warm
from .metrics import Metrics
from .settings import DataPlaneSettings
from .store import RedisStore

log = structlog.get_logger("flagyard.data_plane")


class FollowerStatus(StrEnum):
    LOADING = "LOADING"
    """The first load from Redis is under way: nothing to serve yet."""
    UNREACHABLE = "UNREACHABLE"
    """Redis failed before the first load completed: nothing to serve, retrying."""
    SERVING = "SERVING"
    """Every environment loaded and followed."""
    DEGRADED = "DEGRADED"
    """Redis unreachable after the first load: L1 serves as last known, retrying."""


TRANSITIONS: dict[FollowerStatus, frozenset[FollowerStatus]] = {
    FollowerStatus.LOADING: frozenset({FollowerStatus.SERVING, FollowerStatus.UNREACHABLE}),
    FollowerStatus.UNREACHABLE: frozenset({FollowerStatus.SERVING}),
    FollowerStatus.SERVING: frozenset({FollowerStatus.DEGRADED}),
    FollowerStatus.DEGRADED: frozenset({FollowerStatus.SERVING}),
}
"""Every change of status allowed: once SERVING, never back to a status with nothing to serve."""
READY = frozenset({FollowerStatus.SERVING, FollowerStatus.DEGRADED})
"""Evaluations are answered (from L1)."""
REDIS_DOWN = frozenset({FollowerStatus.UNREACHABLE, FollowerStatus.DEGRADED})

REPORT_GAP = 0.1
"""Seconds the served-revision report waits after a change, so one report covers a burst."""

StatusCallback = Callable[[FollowerStatus], None]
"""Called with the new status at every transition."""


class Follower:
    """The L1 cache (:class:`~.l1.CachedEnvironment` by id) and the tasks that keep it current from Redis."""

    def __init__(
        self,
        store: RedisStore,
        settings: DataPlaneSettings,
        metrics: Metrics,
        encoder: BulkEncoder,
        on_status: StatusCallback | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.metrics = metrics
        self.encoder = encoder
        self.envs: dict[str, CachedEnvironment] = {}
        self.status = FollowerStatus.LOADING
        self._on_status = on_status
        self._reload: dict[str, str] = {}  # env id → cause, done by the follower
        self._loading: dict[str, asyncio.Task[CachedEnvironment]] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._warming: dict[str, asyncio.Task[None]] = {}
        self._unwarmed: dict[str, tuple[CachedEnvironment, list[Lazy]]] = {}
        self._ready_event = asyncio.Event()
        self._followed_changed = asyncio.Event()
        """Set when an environment is added outside the follower, which then stops waiting to follow it."""
        self._stopping = False
        self.instance_id = settings.served_instance_id()
        self._served_changed = asyncio.Event()
        """Set when an environment's revision moved: the served revisions are reported soon after."""

    # --- lifecycle ---

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._run(), name="l1.follower"),
            asyncio.create_task(self._refresh_loop(), name="l1.refresh"),
            asyncio.create_task(self._flush_loop(), name="l1.metrics"),
            asyncio.create_task(self._report_loop(), name="l1.served"),
        ]

    async def stop(self, timeout: float = 5.0) -> None:
        """Stop every task. A cancellation that lands inside a Redis read can come back as a connection
        error, which the follower would retry: so the loops also check ``_stopping``, and a task still
        running is cancelled again until it ends (at most ``timeout`` seconds)."""
        self._stopping = True
        for task in self._tasks + list(self._loading.values()) + list(self._warming.values()):
            task.cancel()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        pending = {task for task in self._tasks if not task.done()}
        while pending and loop.time() < deadline:
            _, pending = await asyncio.wait(pending, timeout=0.1)
            for task in pending:
                task.cancel()
        for task in self._tasks:
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: an error while stopping is not worth a warning
        if pending:
            log.warning("l1.stop_timeout", tasks=sorted(t.get_name() for t in pending))
        self._flush_metrics()
        with contextlib.suppress(StoreError, asyncio.TimeoutError):
            # This process serves nothing any more: the propagation view stops counting it at once.
            await asyncio.wait_for(self.store.withdraw_served(self.instance_id, list(self.envs)), 1.0)

    async def wait_ready(self, timeout: float | None = None) -> None:
        await asyncio.wait_for(self._ready_event.wait(), timeout)

    @property
    def ready(self) -> bool:
        return self.status in READY

    @property
    def degraded(self) -> bool:
        return self.status in REDIS_DOWN

    def _move(self, target: FollowerStatus) -> bool:
        """Move to ``target`` (False, nothing done, if already there or the table refuses it)."""
        if target not in TRANSITIONS[self.status]:
            return False
        self.status = target
        if target in READY:
            self._ready_event.set()
        self.metrics.degraded.set(1 if target in REDIS_DOWN else 0)
        if self._on_status is not None:
            self._on_status(target)
        return True

    # --- reads ---

    async def environment(self, env_id: str) -> CachedEnvironment:
        """The environment, loading it on first use (a key for an environment created after start)."""
        env = self.envs.get(env_id)
        if env is not None:
            return env
        if not self.ready:
            raise UnavailableError("the data plane is not ready (first load from Redis pending)")
        task = self._loading.get(env_id)
        if task is None:
            task = asyncio.create_task(self._load_new(env_id), name=f"l1.load.{env_id}")
            self._loading[env_id] = task
            task.add_done_callback(lambda _t: self._loading.pop(env_id, None))
        try:
            return await asyncio.shield(task)
        except StoreError as exc:
            raise UnavailableError(f"environment {env_id!r} is not loaded and Redis is unavailable") from exc

    async def _load_new(self, env_id: str) -> CachedEnvironment:
        env = CachedEnvironment(env_id, self.settings.sync_history)
        await self._load_into(env, "new")
        held = self.envs.setdefault(env_id, env)
        self._followed_changed.set()
        return held

    # --- loading ---

    async def _load_into(self, env: CachedEnvironment, cause: str) -> None:
        started = time.perf_counter()
        data = await self.store.load(env.env_id)
        if not data.exists and env.exists:
            # Redis lost this environment (restarted empty?): keep serving what we have, and follow the
            # stream from its start so the syncer's re-population is noticed (its revisions restart).
            log.warning("environment.missing_in_redis", env=env.env_id, revision=env.revision)
            env.event_id = "0-0"
            return
        built = await build(data, lazy=self.settings.lazy_compile, on_invalid=self._invalid(env.env_id))
        for kind, key, problem in built.invalid:
            self._invalid(env.env_id)(kind, key, problem)
        if data.revision < env.revision:
            log.warning(
                "environment.revision_regressed", env=env.env_id, held=env.revision, redis=data.revision
            )
        env.install(data, built)
        self._served_changed.set()
        self.metrics.reloads.labels(cause).inc()
        self._update_size()
        previous = self._warming.pop(env.env_id, None)
        if previous is not None:
            previous.cancel()
        if self.settings.compile_ahead:
            self._unwarmed[env.env_id] = (env, built.lazy)
        if self.ready:  # at start, warm-up waits until every environment serves
            self._start_warming()
        log.info(
            "environment.loaded",
            env=env.env_id,
            cause=cause,
            revision=env.revision,
            flags=len(env.flagset.flags),
            segments=len(env.flagset.segments),
            seconds=round(time.perf_counter() - started, 3),
        )

    def _invalid(self, env_id: str) -> Callable[[str, str, str], None]:
        def report(kind: str, key: str, problem: str) -> None:
            self.metrics.invalid_definitions.labels(kind).inc()
            log.error("definition.invalid", env=env_id, kind=kind, key=key, problem=problem)

        return report

    def _start_warming(self) -> None:
        for env, lazies in self._unwarmed.values():
            if lazies:
                task = asyncio.create_task(self._warm(env, lazies), name=f"l1.warm.{env.env_id}")
                self._warming[env.env_id] = task
        self._unwarmed.clear()

    async def _warm(self, env: CachedEnvironment, lazies: list[Lazy]) -> None:
        started = time.perf_counter()
        compiled = await warm(lazies)
        self._warming.pop(env.env_id, None)
        if not self._warming:
            _release_memory()
        log.info(
            "environment.compiled",
            env=env.env_id,
            compiled=compiled,
            seconds=round(time.perf_counter() - started, 3),
        )

    async def _hydrate(self, cause: str) -> None:
        """Load every environment Redis lists (and every one already held)."""
        ids = await self.store.environments()
        for env_id in sorted(ids | set(self.envs)):
            env = self.envs.get(env_id)
            if env is None:
                env = CachedEnvironment(env_id, self.settings.sync_history)
                await self._load_into(env, cause)
                self.envs.setdefault(env_id, env)
            else:
                await self._load_into(env, cause)
        self._update_size()

    def _update_size(self) -> None:
        self.metrics.l1_environments.set(len(self.envs))
        self.metrics.l1_flags.set(sum(len(e.flagset.flags) for e in self.envs.values()))

    # --- the follower ---

    async def _run(self) -> None:
        backoff = 0.05
        need_hydrate = "start"
        while not self._stopping:
            try:
                if need_hydrate:
                    await self._hydrate(need_hydrate)
                    if need_hydrate == "reconnect":
                        self.metrics.stream_reconnects.inc()
                        log.info("stream.reconnected", environments=len(self.envs))
                    need_hydrate = ""
                    backoff = 0.05
                    self._move(FollowerStatus.SERVING)
                    self._start_warming()
                await self._follow_once()
            except asyncio.CancelledError:
                raise
            except StoreUnavailableError as exc:
                down = FollowerStatus.DEGRADED if self.ready else FollowerStatus.UNREACHABLE
                if self._move(down):
                    log.warning("redis.unavailable", error=str(exc), serving="L1 as last known")
                need_hydrate = need_hydrate or "reconnect"
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 2.0)
            except Exception as exc:  # the follower must survive anything; log and retry
                log.exception("follower.error", error=f"{type(exc).__name__}: {exc}")
                await asyncio.sleep(1.0)

    async def _follow_once(self) -> None:
        for env_id, cause in list(self._reload.items()):
            env = self.envs.get(env_id)
            if env is not None:
                await self._load_into(env, cause)
            self._reload.pop(env_id, None)
        self._followed_changed.clear()
        positions = {env_id: env.event_id for env_id, env in self.envs.items()}
        if not positions:
            await self.store.ping()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._followed_changed.wait(), self.settings.stream_block_ms / 1000)
            return
        batches = await self._read_unless_followed_changes(positions)
        for env_id, entries in batches:
            env = self.envs.get(env_id)
            if env is not None and entries:
                await self._handle(env, entries)

    async def _read_unless_followed_changes(
        self, positions: dict[str, str]
    ) -> list[tuple[str, list[tuple[bytes, dict[bytes, bytes]]]]]:
        """The blocking read of ``positions``; abandoned (nothing read, nothing lost: positions only move
        when entries are applied) when an environment is added meanwhile, so its changes need not wait
        for the block to end."""
        read = asyncio.ensure_future(
            self.store.read_events(
                positions, count=self.settings.stream_batch, block_ms=self.settings.stream_block_ms
            )
        )
        added = asyncio.ensure_future(self._followed_changed.wait())
        try:
            await asyncio.wait((read, added), return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            read.cancel()
            raise
        finally:
            added.cancel()
        if read.done():
            return read.result()
        read.cancel()
        await asyncio.wait((read,))
        if not read.cancelled():
            read.exception()  # a cancelled read may end as a connection error instead: nothing to report
        return []

    async def _handle(self, env: CachedEnvironment, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> None:
        events: list[contract.Event] = []
        for event_id, fields in entries:
            try:
                events.append(contract.parse_event(event_id, fields))
            except contract.RedisContractError as exc:
                self.metrics.invalid_definitions.labels("event").inc()
                log.error("event.invalid", env=env.env_id, problem=str(exc))
                self._reload[env.env_id] = "gap"
                return
        usable, cause = env.contiguous(events)
        if cause is not None:
            expected, got = env.revision + len(usable) + 1, events[len(usable)].revision
            log.warning("stream.gap", env=env.env_id, expected=expected, got=got, cause=cause)
            self._reload[env.env_id] = cause
        if not usable:
            return
        currents = await self.store.current(env.env_id, [(e.kind, e.key) for e in usable])
        invalid = self._invalid(env.env_id)
        for event, current in zip(usable, currents, strict=True):
            if env.revision + 1 != event.revision:  # reloaded meanwhile
                return
            env.apply(event, current.raw, current.version, invalid)
            log.debug(
                "change.applied", env=env.env_id, revision=event.revision, kind=event.kind, key=event.key
            )
        self._update_size()
        self._served_changed.set()

    # --- periodic work ---

    async def _refresh_loop(self) -> None:
        """Discover environments created since start, measure the revision lag, catch regressions."""
        while not self._stopping:
            await asyncio.sleep(self.settings.env_refresh_seconds)
            if not self.ready or self.degraded:
                continue
            try:
                for env_id in await self.store.environments() - set(self.envs):
                    await self.environment(env_id)
                ids = list(self.envs)
                lag = 0
                for env_id, redis_rev in zip(ids, await self.store.revisions(ids), strict=True):
                    env = self.envs[env_id]
                    if redis_rev is None:
                        continue
                    if redis_rev < env.revision and env_id not in self._reload:
                        self._reload[env_id] = "regression"
                    lag = max(lag, redis_rev - env.revision)
                self.metrics.revision_lag.set(lag)
            except asyncio.CancelledError:
                raise
            except (StoreError, UnavailableError):
                continue
            except Exception as exc:
                log.exception("refresh.error", error=f"{type(exc).__name__}: {exc}")

    async def _report_loop(self) -> None:
        """Report the revision this process serves per environment (``P:env:{id}:served``, the Redis
        contract): soon after a change is applied or an environment loaded, and at least every
        :data:`~flagyard.contracts.redis.SERVED_REPORT_SECONDS` (or ``env_refresh_seconds`` if shorter) so
        the report never looks stale. Bursts of changes are reported once per :data:`REPORT_GAP` seconds."""
        interval = min(contract.SERVED_REPORT_SECONDS, self.settings.env_refresh_seconds)
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._served_changed.wait(), interval)
            await asyncio.sleep(REPORT_GAP)
            self._served_changed.clear()
            if not self.ready or self.degraded:
                continue
            try:
                await self.store.report_served(
                    self.instance_id,
                    {env_id: env.revision for env_id, env in self.envs.items() if env.exists},
                )
            except asyncio.CancelledError:
                raise
            except StoreError as exc:
                log.debug("served.report_failed", error=str(exc))
            except Exception as exc:
                log.exception("served.report_error", error=f"{type(exc).__name__}: {exc}")

    async def _flush_loop(self) -> None:
        while not self._stopping:
            await asyncio.sleep(1.0)
            self._flush_metrics()

    def _flush_metrics(self) -> None:
        pending = self.metrics.pending
        for flag, variant, reason, n in self.encoder.take_counts():
            pending[flag, variant, reason] += n
        self.metrics.flush()


def _release_memory() -> None:
    """Hand the memory compilation used transiently (pydantic models) back to the OS (glibc only)."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
