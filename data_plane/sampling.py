"""The context sampler: a small, rate-limited, per-environment sample of the contexts this process evaluates
(and that SDKs in local mode report), for impact previews (``contracts/sampling.py``).

An environment samples only when its policy (``P:env:{id}:sampling``) is in Redis. The request path pays
almost nothing: :meth:`Sampler.offer` is one dict lookup for an environment that does not sample, and for one
that does, one more store while it has budget left. The budget is a token bucket per environment, refilled
with ``SAMPLE_RATE_PER_SECOND`` tokens once a second by the background task (no clock read per call) and
capped at ``MAX_REPORT_CONTEXTS``, so a report's contexts may use a burst and a process never samples more
than ``burst + rate × seconds`` contexts of an environment. Only an admitted context is sanitized
(:func:`~flagyard.contracts.sampling.sanitize`, the one place attributes are filtered and hashed) and
buffered; raw contexts are never held. Each environment's buffer holds at most ``MAX_REPORT_CONTEXTS``
samples (more are dropped and counted), flushed every second with
:func:`~flagyard.contracts.sampling.store_samples`, which bounds the set in Redis.

Policies: an environment seen for the first time is looked up at the next tick (a second at most; a report
looks it up at once, since it must answer whether the environment samples). Policies of environments called
since the last refresh are re-read every ``sample_policy_refresh_seconds``, and an environment with samples
waiting has its policy re-read just before they are flushed, so a sample is never stored under a withdrawn
or changed policy (samples taken under a changed policy are dropped). Environments not called for a whole
refresh period are forgotten (looked up again when called). A Redis error keeps the last known policy, is
logged and counted (``flagyard_context_sampling_errors_total``) and never reaches a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Sequence
from typing import Any

import structlog
from google.protobuf.struct_pb2 import Struct

from flagyard.contracts.sampling import SamplingPolicy, sanitize
from flagyard.proto.values import struct_to_dict
from flagyard.rule_engine import limits

from .exceptions import StoreCorruptError, StoreError
from .metrics import Metrics
from .store import RedisStore

log = structlog.get_logger("flagyard.data_plane.sampling")

OFF = -1
"""Budget value of an environment known not to sample, called since the last refresh."""
IDLE = -2
"""Budget value of an environment known not to sample, not called since the last refresh."""
TICK_SECONDS = 1.0
"""Refill and flush interval."""


class Sampler:
    """Per-environment budgets, policies and buffers of one process, and the task that refills, refreshes
    and flushes them. Everything runs in the server's event loop (no locks)."""

    def __init__(
        self,
        store: RedisStore,
        metrics: Metrics,
        *,
        capacity: int = limits.MAX_SAMPLE_CONTEXTS,
        refresh_seconds: float = 5.0,
        rate: int = limits.SAMPLE_RATE_PER_SECOND,
        burst: int = limits.MAX_REPORT_CONTEXTS,
    ) -> None:
        self.store = store
        self.capacity = capacity
        self.refresh_seconds = refresh_seconds
        self.rate = rate
        self.burst = burst
        self.budget: dict[str, int] = {}
        """env id → tokens left (≥ 0: samples), or OFF / IDLE; absent: never seen (or forgotten)."""
        self.policies: dict[str, SamplingPolicy] = {}
        self.ticks = 0
        """Refills done: a process admits at most ``burst + rate × ticks`` contexts per environment."""
        self._buffers: dict[str, list[dict[str, Any]]] = {}
        self._refilled: dict[str, int] = {}
        """Sampling env id → its budget right after the last refill (less now: it was called since)."""
        self._used: set[str] = set()
        self._new: set[str] = set()
        self._limited = self._empty = self._dropped = 0
        self._outcomes = {
            o: metrics.context_samples.labels(o) for o in ("stored", "rate_limited", "dropped", "empty")
        }
        self._errors = {o: metrics.context_sampling_errors.labels(o) for o in ("policy", "store")}
        self._task: asyncio.Task[None] | None = None

    # --- request path ---

    def offer(self, env_id: str, context: dict[str, Any]) -> None:
        """Consider one evaluated context (called on every evaluation: as cheap as it can be)."""
        budget = self.budget.get(env_id)
        if budget is None or budget <= 0:
            if budget != OFF:
                self._miss(env_id, budget)
            return
        self.budget[env_id] = budget - 1
        self._take(env_id, context)

    def _miss(self, env_id: str, budget: int | None) -> None:
        if budget is None:  # first call: looked up at the next tick, not sampled until then
            self.budget[env_id] = OFF
            self._new.add(env_id)
        elif budget == IDLE:
            self.budget[env_id] = OFF
        else:
            self._limited += 1

    def _take(self, env_id: str, context: dict[str, Any]) -> None:
        policy = self.policies.get(env_id)
        if policy is None:
            return
        try:
            sample = sanitize(policy, context)
        except Exception as exc:  # never into a request
            self._dropped += 1
            log.warning("sampling.sanitize_failed", environment=env_id, error=type(exc).__name__)
            return
        if sample is None:
            self._empty += 1
            return
        buffer = self._buffers.get(env_id)
        if buffer is None:
            buffer = self._buffers[env_id] = []
        if len(buffer) >= self.burst:
            self._dropped += 1
            return
        buffer.append(sample)

    async def samples(self, env_id: str) -> bool:
        """Whether the environment samples (looked up now if this process has not seen it yet)."""
        budget = self.budget.get(env_id)
        if budget is None:
            self.budget[env_id] = OFF
            await self._refresh([env_id])
            budget = self.budget.get(env_id)
        elif budget == IDLE:
            self.budget[env_id] = OFF
        return budget is not None and budget >= 0

    def offer_reported(self, env_id: str, contexts: Sequence[Struct]) -> None:
        """Consider the contexts an SDK reported (after :meth:`samples`): as many as the budget allows."""
        budget = self.budget.get(env_id)
        if budget is None or budget < 0:
            self._dropped += len(contexts)  # sent under a policy since withdrawn
            return
        admitted = min(budget, len(contexts))
        self.budget[env_id] = budget - admitted
        self._limited += len(contexts) - admitted
        for context in contexts[:admitted]:
            self._take(env_id, struct_to_dict(context))

    # --- background ---

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="sampling")

    async def stop(self) -> None:
        """Stop the task and flush what is buffered (best effort, briefly)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._flush(), 1.0)
        self._fold()

    async def _loop(self) -> None:
        refresh_due = time.monotonic() + self.refresh_seconds
        while True:
            await asyncio.sleep(TICK_SECONDS)
            try:
                self._refill()
                if time.monotonic() >= refresh_due:
                    refresh_due = time.monotonic() + self.refresh_seconds
                    await self._refresh_seen()
                if self._new:  # after the refresh: one looked up now has a whole period to be called
                    new, self._new = self._new, set()
                    await self._refresh(new)
                await self._flush()
                self._fold()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("sampling.error", error=f"{type(exc).__name__}: {exc}")

    def _refill(self) -> None:
        self.ticks += 1
        rate, burst, refilled, used = self.rate, self.burst, self._refilled, self._used
        for env_id, budget in self.budget.items():
            if budget >= 0:
                if budget < refilled.get(env_id, burst):
                    used.add(env_id)
                refilled[env_id] = self.budget[env_id] = min(budget + rate, burst)

    async def _refresh_seen(self) -> None:
        """Forget environments not called since the last refresh; re-read the others' policies."""
        for env_id, budget in list(self.budget.items()):
            if budget == IDLE or (budget >= 0 and env_id not in self._used):
                self._forget(env_id)
        self._used.clear()
        await self._refresh(list(self.budget))

    def _forget(self, env_id: str) -> None:
        self.budget.pop(env_id, None)
        self.policies.pop(env_id, None)
        self._refilled.pop(env_id, None)
        self._dropped += len(self._buffers.pop(env_id, ()))

    async def _refresh(self, env_ids: Iterable[str]) -> None:
        """Read the policies of ``env_ids`` and apply them; on a Redis error keep the last known."""
        ids = list(env_ids)
        if not ids:
            return
        results = await asyncio.gather(*(self.store.sampling_policy(e) for e in ids), return_exceptions=True)
        failed = 0
        for env_id, result in zip(ids, results, strict=True):
            if isinstance(result, StoreCorruptError):
                self._errors["policy"].inc()
                log.error("sampling.bad_policy", environment=env_id, error=str(result))
                self._apply(env_id, None)
            elif isinstance(result, BaseException):
                if not isinstance(result, StoreError):
                    log.error("sampling.policy_error", error=f"{type(result).__name__}: {result}")
                failed += 1
            else:
                self._apply(env_id, result)
        if failed:
            self._errors["policy"].inc(failed)
            log.warning("sampling.policy_unavailable", environments=failed, kept="last known")

    def _apply(self, env_id: str, policy: SamplingPolicy | None) -> None:
        if env_id not in self.budget:  # forgotten meanwhile
            return
        old = self.policies.get(env_id)
        if old is not None and old != policy:  # samples taken under another policy are not stored
            self._dropped += len(self._buffers.pop(env_id, ()))
        if policy is None:
            self.policies.pop(env_id, None)
            self._refilled.pop(env_id, None)
            self.budget[env_id] = IDLE
            return
        self.policies[env_id] = policy
        if self.budget[env_id] < 0:  # starts sampling: a full burst
            self.budget[env_id] = self._refilled[env_id] = self.burst

    async def _flush(self) -> None:
        if not self._buffers:
            return
        await self._refresh(list(self._buffers))
        buffers, self._buffers = self._buffers, {}
        now_ms = int(time.time() * 1000)
        pending = [(env_id, samples) for env_id, samples in buffers.items() if samples]
        results = await asyncio.gather(
            *(self.store.store_samples(e, s, now_ms, self.capacity) for e, s in pending),
            return_exceptions=True,
        )
        failed = 0
        for (_env_id, samples), result in zip(pending, results, strict=True):
            if isinstance(result, BaseException):
                failed += 1
                self._dropped += len(samples)
                if not isinstance(result, StoreError):
                    log.error("sampling.store_error", error=f"{type(result).__name__}: {result}")
            elif result < 0:  # the policy was withdrawn since it was read: nothing was written
                self._dropped += len(samples)
            else:
                self._outcomes["stored"].inc(len(samples))
        if failed:
            self._errors["store"].inc(failed)
            log.warning("sampling.store_unavailable", environments=failed, samples="dropped")

    def _fold(self) -> None:
        """Move the request path's plain counts into the counters."""
        for outcome, n in (
            ("rate_limited", self._limited),
            ("empty", self._empty),
            ("dropped", self._dropped),
        ):
            if n:
                self._outcomes[outcome].inc(n)
        self._limited = self._empty = self._dropped = 0
