"""Remote mode: every evaluation is one Resolve call (a bulk one ResolveAll call) to the data plane over
one reused channel, with a deadline, retries of transient failures and an optional short-lived cache.

The sync resolver uses a ``grpc`` channel; the async one a ``grpc.aio`` channel made in the running event
loop. Both share :class:`_RemoteState`: the status (READY on a success, ERROR on a failure, FATAL when
the SDK key is rejected), the key's rejection (no call for ``auth_retry`` seconds after UNAUTHENTICATED,
so a bad key never spins), the cache and the bootstrap fallback.
"""

from __future__ import annotations

import asyncio
import copy
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import grpc
import grpc.aio
import orjson

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc
from flagyard.rule_engine import ErrorCode, EvaluationResult, FlagSet, FlagType
from flagyard.rule_engine.result import error_result

from ._grpc import (
    METHODS,
    RETRYABLE,
    Backoff,
    channel_options,
    check_target,
    metadata_for,
    on_fork_in_child,
    resolution_of,
    result_of,
    status_message,
    status_of,
    to_struct,
)
from ._resolver import Listener
from ._status import ProviderStatus, StatusMachine
from .exceptions import ConfigurationError

_PROBE = pb.ResolveAllRequest(flag_keys=[""])
"""Checks the SDK key and the connection: one flag that cannot exist (answered FLAG_NOT_FOUND)."""
_SORTED = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS


class _Cache:
    """Results per (type, flag, context) for ``ttl`` seconds, at most ``size`` of them (LRU)."""

    def __init__(self, ttl: float, size: int) -> None:
        self.ttl = ttl
        self.size = size
        self._entries: OrderedDict[tuple[FlagType, str, bytes], tuple[float, EvaluationResult]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    @staticmethod
    def key(flag_type: FlagType, flag: str, context: Mapping[str, Any]) -> tuple[FlagType, str, bytes] | None:
        try:
            return flag_type, flag, orjson.dumps(context, option=_SORTED)
        except (TypeError, orjson.JSONEncodeError):
            return None  # not JSON: not cached

    def get(self, key: tuple[FlagType, str, bytes], default: Any) -> EvaluationResult | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
        result = entry[1]
        if result.variant is None:
            return replace(result, value=default)
        if key[0] is FlagType.OBJECT:
            return replace(result, value=copy.deepcopy(result.value))
        return result

    def put(self, key: tuple[FlagType, str, bytes], result: EvaluationResult) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + self.ttl, result)
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def reset_after_fork(self) -> None:
        self._lock = threading.Lock()


class _RemoteState:
    """Settings, status, the key's rejection, cache and bootstrap of a remote resolver."""

    def __init__(
        self,
        target: str,
        sdk_key: str,
        *,
        timeout: float,
        retries: int,
        backoff: Backoff,
        cache_ttl: float,
        cache_size: int,
        bootstrap: FlagSet | None,
        auth_retry: float,
        credentials: grpc.ChannelCredentials | None,
        options: Mapping[str, Any] | None,
    ) -> None:
        if timeout <= 0 or retries < 0 or cache_ttl < 0 or cache_size < 1 or auth_retry < 0:
            raise ConfigurationError(
                "timeout must be > 0; retries, cache_ttl, auth_retry >= 0; cache_size >= 1"
            )
        self._target = check_target(target)
        self._metadata = metadata_for(sdk_key)
        self._timeout = timeout
        self._retries = retries
        self._backoff = backoff
        self._cache = _Cache(cache_ttl, cache_size) if cache_ttl > 0 else None
        self._bootstrap = bootstrap
        self._auth_retry = auth_retry
        self._credentials = credentials
        self._options = channel_options(options)
        self._status = StatusMachine()
        self._rejected_until = 0.0
        """No call before this (monotonic time) since the key was rejected: a bad key never spins."""
        self._closed = False

    @property
    def status(self) -> ProviderStatus:
        return self._status.status

    def add_listener(self, listener: Listener) -> None:
        self._status.add_listener(listener)

    def _holding_off(self) -> bool:
        return self._closed or self._rejected_until > time.monotonic()

    def _skip(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType
    ) -> EvaluationResult | None:
        """The answer when no call is to be made: an empty key, a closed client, a rejected key."""
        if not key:
            return error_result(default, ErrorCode.FLAG_NOT_FOUND, "flag key is empty")
        if self._closed:
            return self._fallback(key, default, context, flag_type, "client is closed")
        if self._rejected_until and time.monotonic() < self._rejected_until:
            return self._fallback(key, default, context, flag_type, "SDK key rejected by the data plane")
        return None

    def _fallback(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType, message: str
    ) -> EvaluationResult:
        if self._bootstrap is not None:
            return self._bootstrap.evaluate(key, default, context, flag_type)
        return error_result(default, ErrorCode.GENERAL, message)

    def _fallback_all(self, context: Mapping[str, Any]) -> dict[str, EvaluationResult]:
        return self._bootstrap.evaluate_all(context) if self._bootstrap is not None else {}

    def _request(self, key: str, context: Mapping[str, Any]) -> pb.ResolveRequest:
        return pb.ResolveRequest(flag_key=key, context=to_struct(context))

    def _succeeded(self) -> None:
        self._rejected_until = 0.0
        self._status.move(ProviderStatus.READY)

    def _failed(self, exc: BaseException) -> str:
        """Record a failed call (the status mapped here, at the boundary); the message to serve with."""
        code, message = status_message(exc)
        if code is grpc.StatusCode.UNAUTHENTICATED:
            self._rejected_until = time.monotonic() + self._auth_retry
            self._status.move(ProviderStatus.FATAL, message)
        else:
            self._status.move(ProviderStatus.ERROR, message)
        return message

    def _cached(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType
    ) -> tuple[tuple[FlagType, str, bytes] | None, EvaluationResult | None]:
        cache_key = self._cache.key(flag_type, key, context) if self._cache is not None else None
        if cache_key is None or self._cache is None:
            return None, None
        return cache_key, self._cache.get(cache_key, default)

    def _store(self, cache_key: tuple[FlagType, str, bytes] | None, result: EvaluationResult) -> None:
        if cache_key is not None and self._cache is not None and result.error_code is None:
            self._cache.put(cache_key, result)

    def _reset_after_fork(self) -> None:
        self._status.reset_after_fork()
        if self._cache is not None:
            self._cache.reset_after_fork()


class RemoteResolver(_RemoteState):
    """Remote mode over a blocking ``grpc`` channel; thread-safe, and fork-safe (a child makes its own
    channel)."""

    def __init__(
        self,
        target: str,
        sdk_key: str,
        *,
        timeout: float = 0.5,
        retries: int = 2,
        backoff: Backoff = Backoff(0.02, 0.2),  # noqa: B008 - frozen
        cache_ttl: float = 0.0,
        cache_size: int = 10_000,
        bootstrap: FlagSet | None = None,
        auth_retry: float = 30.0,
        ready_timeout: float = 0.0,
        credentials: grpc.ChannelCredentials | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            target,
            sdk_key,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            cache_ttl=cache_ttl,
            cache_size=cache_size,
            bootstrap=bootstrap,
            auth_retry=auth_retry,
            credentials=credentials,
            options=options,
        )
        self._connect()
        on_fork_in_child(self, RemoteResolver._after_fork)
        if ready_timeout > 0:
            self.wait_ready(ready_timeout)

    def _connect(self) -> None:
        if self._credentials is not None:
            channel = grpc.secure_channel(self._target, self._credentials, self._options)
        else:
            channel = grpc.insecure_channel(self._target, self._options)
        stub = pb_grpc.EvaluationServiceStub(channel)
        self._channel = channel
        self._methods: dict[FlagType, Any] = {t: getattr(stub, name) for t, name in METHODS.items()}
        self._resolve_all = stub.ResolveAll

    def _call(self, method: Any, request: Any, *, timeout: float | None = None, wait: bool = False) -> Any:
        """One call within the deadline, retried with backoff on a transient status while time is left."""
        deadline = time.monotonic() + (timeout or self._timeout)
        attempt = 0
        while True:
            try:
                return method(
                    request,
                    metadata=self._metadata,
                    timeout=max(deadline - time.monotonic(), 0.001),
                    wait_for_ready=wait,
                )
            except grpc.RpcError as exc:
                if attempt >= self._retries or status_of(exc) not in RETRYABLE:
                    raise
                delay = self._backoff.delay(attempt)
                if time.monotonic() + delay >= deadline:
                    raise
                time.sleep(delay)
                attempt += 1

    def resolve(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType
    ) -> EvaluationResult:
        skipped = self._skip(key, default, context, flag_type)
        if skipped is not None:
            return skipped
        cache_key, hit = self._cached(key, default, context, flag_type) if self._cache else (None, None)
        if hit is not None:
            return hit
        try:
            request = self._request(key, context)
        except Exception as exc:
            return error_result(default, ErrorCode.INVALID_CONTEXT, f"context cannot be sent: {exc}")
        try:
            response = self._call(self._methods[flag_type], request)
        except Exception as exc:  # grpc.RpcError, or ValueError from a channel closed meanwhile
            return self._fallback(key, default, context, flag_type, self._failed(exc))
        if self._status.status is not ProviderStatus.READY:
            self._succeeded()
        result = result_of(response, default, flag_type)
        if cache_key is not None:
            self._store(cache_key, result)
        return result

    def resolve_all(self, context: Mapping[str, Any]) -> dict[str, EvaluationResult]:
        if self._holding_off():
            return self._fallback_all(context)
        try:
            response = self._call(self._resolve_all, pb.ResolveAllRequest(context=to_struct(context)))
        except Exception as exc:
            self._failed(exc)
            return self._fallback_all(context)
        if self._status.status is not ProviderStatus.READY:
            self._succeeded()
        return {key: resolution_of(resolution) for key, resolution in response.flags.items()}

    def wait_ready(self, timeout: float) -> bool:
        """Check the key and the connection with one call, waiting up to ``timeout`` s for the data plane."""
        if self._status.status is ProviderStatus.READY:
            return True
        if self._holding_off():
            return False
        try:
            self._call(self._resolve_all, _PROBE, timeout=timeout, wait=True)
        except Exception as exc:
            self._failed(exc)
            return False
        self._succeeded()
        return True

    def close(self) -> None:
        self._closed = True
        self._channel.close()

    def _after_fork(self) -> None:
        self._reset_after_fork()
        if not self._closed:
            self._connect()  # the parent's channel and its connection stay the parent's


class AsyncRemoteResolver(_RemoteState):
    """Remote mode over ``grpc.aio``: the channel is made in the running event loop (again if called from
    another loop, and in a forked child)."""

    def __init__(
        self,
        target: str,
        sdk_key: str,
        *,
        timeout: float = 0.5,
        retries: int = 2,
        backoff: Backoff = Backoff(0.02, 0.2),  # noqa: B008 - frozen
        cache_ttl: float = 0.0,
        cache_size: int = 10_000,
        bootstrap: FlagSet | None = None,
        auth_retry: float = 30.0,
        credentials: grpc.ChannelCredentials | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(
            target,
            sdk_key,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            cache_ttl=cache_ttl,
            cache_size=cache_size,
            bootstrap=bootstrap,
            auth_retry=auth_retry,
            credentials=credentials,
            options=options,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        on_fork_in_child(self, AsyncRemoteResolver._after_fork)

    def _stub_for_loop(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._stub is None:
            if self._credentials is not None:
                channel = grpc.aio.secure_channel(self._target, self._credentials, self._options)
            else:
                channel = grpc.aio.insecure_channel(self._target, self._options)
            self._channel, self._loop = channel, loop
            self._stub = pb_grpc.EvaluationServiceStub(channel)
        return self._stub

    async def _call(
        self, name: str, request: Any, *, timeout: float | None = None, wait: bool = False
    ) -> Any:
        method = getattr(self._stub_for_loop(), name)
        deadline = time.monotonic() + (timeout or self._timeout)
        attempt = 0
        while True:
            try:
                return await method(
                    request,
                    metadata=self._metadata,
                    timeout=max(deadline - time.monotonic(), 0.001),
                    wait_for_ready=wait,
                )
            except grpc.RpcError as exc:
                if attempt >= self._retries or status_of(exc) not in RETRYABLE:
                    raise
                delay = self._backoff.delay(attempt)
                if time.monotonic() + delay >= deadline:
                    raise
                await asyncio.sleep(delay)
                attempt += 1

    async def resolve(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType
    ) -> EvaluationResult:
        skipped = self._skip(key, default, context, flag_type)
        if skipped is not None:
            return skipped
        cache_key, hit = self._cached(key, default, context, flag_type) if self._cache else (None, None)
        if hit is not None:
            return hit
        try:
            request = self._request(key, context)
        except Exception as exc:
            return error_result(default, ErrorCode.INVALID_CONTEXT, f"context cannot be sent: {exc}")
        try:
            response = await self._call(METHODS[flag_type], request)
        except Exception as exc:
            return self._fallback(key, default, context, flag_type, self._failed(exc))
        if self._status.status is not ProviderStatus.READY:
            self._succeeded()
        result = result_of(response, default, flag_type)
        if cache_key is not None:
            self._store(cache_key, result)
        return result

    async def resolve_all(self, context: Mapping[str, Any]) -> dict[str, EvaluationResult]:
        if self._holding_off():
            return self._fallback_all(context)
        try:
            response = await self._call("ResolveAll", pb.ResolveAllRequest(context=to_struct(context)))
        except Exception as exc:
            self._failed(exc)
            return self._fallback_all(context)
        if self._status.status is not ProviderStatus.READY:
            self._succeeded()
        return {key: resolution_of(resolution) for key, resolution in response.flags.items()}

    async def wait_ready(self, timeout: float) -> bool:
        if self._status.status is ProviderStatus.READY:
            return True
        if self._holding_off():
            return False
        try:
            await self._call("ResolveAll", _PROBE, timeout=timeout, wait=True)
        except Exception as exc:
            self._failed(exc)
            return False
        self._succeeded()
        return True

    async def close(self) -> None:
        self._closed = True
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None and self._loop is asyncio.get_running_loop():
            await channel.close(None)

    def _after_fork(self) -> None:
        self._reset_after_fork()
        self._loop, self._channel, self._stub = None, None, None
