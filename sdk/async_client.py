"""``AsyncFlagyardClient``: the client's surface for asyncio apps (``await client.boolean(...)``).

Remote mode calls the data plane over ``grpc.aio``; local mode evaluates synchronously (microseconds,
no I/O) from the in-process FlagSet its background thread keeps current; offline reads a file.
"""

from __future__ import annotations

import asyncio
import builtins
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Self

import grpc

from flagyard.rule_engine import EvaluationResult, Explanation, FlagType

from ._local import LocalResolver
from ._offline import OfflineResolver
from ._remote import AsyncRemoteResolver
from ._report import EvaluationReporter
from ._resolver import Listener, Resolver, explain_with
from ._status import SERVING, ProviderStatus
from .client import Mode, _failure, _type_of, load_bootstrap
from .exceptions import ConfigurationError

_EMPTY: Mapping[str, Any] = {}


class AsyncFlagyardClient:
    """Evaluate flags from asyncio code; every getter returns the caller's ``default`` on any failure.

    Takes the arguments of :class:`~flagyard.sdk.client.FlagyardClient` except ``ready_timeout``: the
    constructor never blocks the event loop, ``await client.wait_ready(timeout)`` does the waiting.
    """

    def __init__(
        self,
        *,
        target: str | None = None,
        sdk_key: str | None = None,
        mode: Mode = "remote",
        bootstrap_file: str | os.PathLike[str] | None = None,
        timeout: float = 0.5,
        retries: int = 2,
        cache_ttl: float = 0.0,
        cache_size: int = 10_000,
        stale_after: float = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        channel_options: Mapping[str, Any] | None = None,
        resolver: Resolver | None = None,
        report_interval: builtins.float = 30.0,
    ) -> None:
        self._remote: AsyncRemoteResolver | None = None
        self._sync: Resolver | None = resolver
        self._reporter: EvaluationReporter | None = None
        if resolver is not None:
            return
        if target is None or sdk_key is None:
            raise ConfigurationError("give target and sdk_key (or use AsyncFlagyardClient.offline)")
        bootstrap = load_bootstrap(bootstrap_file)
        if mode == "remote":
            self._remote = AsyncRemoteResolver(
                target,
                sdk_key,
                timeout=timeout,
                retries=retries,
                cache_ttl=cache_ttl,
                cache_size=cache_size,
                bootstrap=bootstrap,
                credentials=credentials,
                options=channel_options,
            )
        elif mode == "local":
            self._sync = LocalResolver(
                target,
                sdk_key,
                bootstrap=bootstrap,
                stale_after=stale_after,
                credentials=credentials,
                options=channel_options,
            )
        else:
            raise ConfigurationError(f"mode must be 'remote' or 'local', not {mode!r}")
        if report_interval > 0:
            self._reporter = EvaluationReporter(
                target,
                sdk_key,
                interval=report_interval,
                credentials=credentials,
                options=channel_options,
                sample_contexts=mode == "local",  # remote: the data plane samples what it receives
            )

    @classmethod
    def offline(
        cls, path: str | os.PathLike[str], *, watch: bool = False, poll_interval: float = 1.0
    ) -> AsyncFlagyardClient:
        """A client over a flags file; raises ConfigurationError if it is unreadable or invalid."""
        return cls(resolver=OfflineResolver(path, watch=watch, poll_interval=poll_interval))

    async def details(
        self,
        key: str,
        default: Any,
        context: Mapping[str, Any] | None = None,
        flag_type: FlagType | None = None,
    ) -> EvaluationResult:
        """Value, variant, reason and error code; ``flag_type`` defaults to the type of ``default``."""
        if flag_type is None:
            flag_type = _type_of(default)
        try:
            if self._remote is not None:
                result = await self._remote.resolve(key, default, context or _EMPTY, flag_type)
            else:
                assert self._sync is not None
                result = self._sync.resolve(key, default, context or _EMPTY, flag_type)
        except Exception as exc:  # a resolver bug must not reach the app
            return _failure(default, exc)
        if self._reporter is not None:
            self._reporter.record(key, result, context)
        return result

    async def boolean(self, key: str, default: bool, context: Mapping[str, Any] | None = None) -> bool:
        return (await self.details(key, default, context, FlagType.BOOLEAN)).value  # type: ignore[no-any-return]

    async def string(self, key: str, default: str, context: Mapping[str, Any] | None = None) -> str:
        return (await self.details(key, default, context, FlagType.STRING)).value  # type: ignore[no-any-return]

    async def integer(self, key: str, default: int, context: Mapping[str, Any] | None = None) -> int:
        return (await self.details(key, default, context, FlagType.INTEGER)).value  # type: ignore[no-any-return]

    async def float(self, key: str, default: float, context: Mapping[str, Any] | None = None) -> float:
        return (await self.details(key, default, context, FlagType.FLOAT)).value  # type: ignore[no-any-return]

    async def object(self, key: str, default: Any, context: Mapping[str, Any] | None = None) -> Any:
        return (await self.details(key, default, context, FlagType.OBJECT)).value

    async def explain(
        self,
        key: str,
        context: Mapping[str, Any] | None = None,
        default: Any = None,
        flag_type: FlagType | None = None,
    ) -> Explanation:
        """The evaluation of ``key`` and its trace (see :meth:`FlagyardClient.explain`): local and offline
        modes; in remote mode the default with ERROR (GENERAL) and no trace. Never raises. Runs in the
        calling thread: it is in-process work (a recompile of the flag and one evaluation), no I/O."""
        try:
            resolver = self._remote if self._remote is not None else self._sync
            return explain_with(resolver, key, default, context or _EMPTY, flag_type)
        except Exception as exc:  # a resolver bug must not reach the app
            return Explanation(_failure(default, exc), None)

    async def all_flags(self, context: Mapping[str, Any] | None = None) -> dict[str, EvaluationResult]:
        """Every flag for ``context`` (see :meth:`FlagyardClient.all_flags`)."""
        try:
            if self._remote is not None:
                return await self._remote.resolve_all(context or _EMPTY)
            assert self._sync is not None
            return self._sync.resolve_all(context or _EMPTY)
        except Exception:
            return {}

    @property
    def status(self) -> ProviderStatus:
        resolver = self._remote if self._remote is not None else self._sync
        assert resolver is not None
        return resolver.status

    @property
    def ready(self) -> bool:
        return self.status in SERVING

    async def wait_ready(self, timeout: builtins.float) -> bool:
        """Wait up to ``timeout`` s for the live source (remote: one checking call); whether it is ready."""
        if self._remote is not None:
            return await self._remote.wait_ready(timeout)
        assert self._sync is not None
        if self._sync.status in SERVING:
            return True
        return await asyncio.to_thread(self._sync.wait_ready, timeout)

    def add_listener(self, listener: Listener) -> None:
        """Be told of READY, CONFIGURATION_CHANGED, ERROR and STALE (called from SDK threads)."""
        resolver = self._remote if self._remote is not None else self._sync
        assert resolver is not None
        resolver.add_listener(listener)

    async def close(self) -> None:
        """Stop the live source and send the evaluation counts not yet reported."""
        if self._reporter is not None:
            await asyncio.to_thread(self._reporter.close)
        if self._remote is not None:
            await self._remote.close()
        elif self._sync is not None:
            self._sync.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()
