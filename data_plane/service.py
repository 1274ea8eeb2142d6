"""The gRPC handlers of ``flagyard.v1.EvaluationService`` and ``flagyard.v1.SyncService``.

Every handler authenticates the call (:mod:`.auth`), finds its environment in L1 and answers from it; Redis
is touched only for an SDK key not cached yet or an environment not loaded yet. Evaluation problems are
results (reason ERROR with an error code), never transport errors; :class:`RequestError` becomes its gRPC
status; anything unexpected is logged and answered INTERNAL without details.

What an SDK-key holder sends is bounded here, by ``rule_engine/limits.py``: contexts (MAX_CONTEXT_BYTES),
bulk keys (MAX_BULK_KEYS), reports (:mod:`.reports`), and every message by the server's options. A
SyncFlags stream outlives its authentication, so it checks its key again as the key cache runs out and
ends with UNAUTHENTICATED once the key is revoked or expired.

ResolveAll and SyncFlags return bytes they serialized themselves (cached entries, shared history
messages); :func:`method_handlers` registers them with an identity serializer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
import grpc.aio
import structlog
from google.protobuf.message import DecodeError, Message
from google.protobuf.struct_pb2 import Struct

from flagyard.contracts.redis import SdkKeyRecord, hash_sdk_key
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.values import struct_to_dict
from flagyard.rule_engine import ErrorCode, limits

from .auth import MIN_RECHECK_SECONDS, SdkKeys, bearer_token
from .convert import RESOLVERS, BulkEncoder, TypedResolver, resolve_all
from .exceptions import (
    InvalidRequestError,
    RequestError,
    ResponseTooLargeError,
    StoreUnavailableError,
    UnauthenticatedError,
    UnavailableError,
)
from .follower import Follower
from .l1 import CachedEnvironment
from .metrics import Metrics
from .reports import validate_report
from .sampling import Sampler
from .settings import DataPlaneSettings
from .store import RedisStore
from .streams import OpenStream, Streams

log = structlog.get_logger("flagyard.data_plane")

EVALUATION_SERVICE = "flagyard.v1.EvaluationService"
SYNC_SERVICE = "flagyard.v1.SyncService"
PROTOCOL = "flagyard"
"""This module's value of the metrics' ``protocol`` label."""
Context = grpc.aio.ServicerContext[Any, Any]
M = TypeVar("M", bound=Message)


class Handlers:
    def __init__(
        self,
        settings: DataPlaneSettings,
        follower: Follower,
        keys: SdkKeys,
        metrics: Metrics,
        encoder: BulkEncoder,
        store: RedisStore,
        sampler: Sampler,
        streams: Streams | None = None,
    ) -> None:
        self.settings = settings
        self.streams = streams if streams is not None else Streams(settings, metrics)
        self.store = store
        self.sampler = sampler
        self.follower = follower
        self.keys = keys
        self.metrics = metrics
        self.encoder = encoder
        self._requests: dict[tuple[str, str], Any] = {}
        self._latency = {
            m: metrics.latency.labels(PROTOCOL, m)
            for m in (*RESOLVERS, "ResolveAll", "SyncFlags", "ReportEvaluations")
        }

    def _count(self, method: str, code: str) -> None:
        child = self._requests.get((method, code))
        if child is None:
            child = self._requests[method, code] = self.metrics.requests.labels(PROTOCOL, method, code)
        child.inc()

    async def _environment(self, context: Context) -> CachedEnvironment:
        record = await self.keys.authenticate(context.invocation_metadata())
        return await self.follower.environment(record.environment_id)

    async def _fail(self, method: str, context: Context, exc: BaseException) -> Any:
        if isinstance(exc, RequestError):
            self._count(method, exc.code.name)
            await context.abort(exc.code, str(exc))
        self._count(method, "INTERNAL")
        log.error("call.failed", method=method, error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    # --- evaluation ---

    def typed(self, resolver: TypedResolver) -> Callable[[bytes, Context], Awaitable[bytes]]:
        method = resolver.method
        flag_type = resolver.flag_type
        latency = self._latency[method]
        pending = self.metrics.pending
        offer = self.sampler.offer

        async def handle(data: bytes, context: Context) -> bytes:
            started = time.perf_counter()
            try:
                request = _parse(pb.ResolveRequest, data)
                key = request.flag_key
                if not key:
                    raise InvalidRequestError("flag_key must not be empty")
                if len(data) > limits.MAX_CONTEXT_BYTES:
                    _check_context(request.context)
                env = await self._environment(context)
                evaluated = struct_to_dict(request.context)
                result = env.flagset.evaluate(key, None, evaluated, flag_type)
                response = resolver.encode(result)
                offer(env.env_id, evaluated)
            except Exception as exc:
                return await self._fail(method, context, exc)  # type: ignore[no-any-return]
            if result.error_code is ErrorCode.FLAG_NOT_FOUND:
                pending["other", None, result.reason] += 1
            else:
                pending[key, result.variant, result.reason] += 1
            self._count(method, "OK")
            latency.observe(time.perf_counter() - started)
            return response

        return handle

    async def resolve_all(self, data: bytes, context: Context) -> bytes:
        started = time.perf_counter()
        try:
            request = _parse(pb.ResolveAllRequest, data)
            if len(request.flag_keys) > limits.MAX_BULK_KEYS:
                raise InvalidRequestError(
                    f"flag_keys: {len(request.flag_keys)} keys, at most {limits.MAX_BULK_KEYS}"
                )
            if len(data) > limits.MAX_CONTEXT_BYTES:
                _check_context(request.context)
            env = await self._environment(context)
            evaluated = struct_to_dict(request.context)
            response = resolve_all(env.flagset, evaluated, request.flag_keys, env.revision, self.encoder)
            if len(response) > limits.MAX_GRPC_MESSAGE_BYTES:
                raise ResponseTooLargeError(
                    f"the answer is {len(response)} bytes, over MAX_GRPC_MESSAGE_BYTES "
                    f"({limits.MAX_GRPC_MESSAGE_BYTES}): name fewer flag_keys per call"
                )
            self.sampler.offer(env.env_id, evaluated)
        except Exception as exc:
            return await self._fail("ResolveAll", context, exc)  # type: ignore[no-any-return]
        self._count("ResolveAll", "OK")
        self._latency["ResolveAll"].observe(time.perf_counter() - started)
        return response

    async def report_evaluations(self, data: bytes, context: Context) -> bytes:
        """Add an SDK's evaluation counts to its environment's usage in Redis (see :mod:`.reports`) and its
        sampled contexts to the sampler (:mod:`.sampling`); answer whether the environment samples."""
        started = time.perf_counter()
        try:
            request = _parse(pb.ReportEvaluationsRequest, data)
            env = await self._environment(context)
            report = validate_report(request, env.flagset.flags, time.time())
            try:
                stored = await self.store.record_evaluations(
                    env.env_id, report.counts, report.last_evaluated_at
                )
            except StoreUnavailableError as exc:
                raise UnavailableError("cannot record evaluations: Redis is unavailable") from exc
            sampling = await self.sampler.samples(env.env_id)
            if request.contexts:
                self.sampler.offer_reported(env.env_id, request.contexts)
        except Exception as exc:
            return await self._fail("ReportEvaluations", context, exc)  # type: ignore[no-any-return]
        dropped = self.metrics.report_entries_dropped
        if report.unknown:
            dropped.labels("unknown_flag").inc(report.unknown)
        if stored.dropped:
            dropped.labels("usage_cap").inc(stored.dropped)
        self._count("ReportEvaluations", "OK")
        self._latency["ReportEvaluations"].observe(time.perf_counter() - started)
        answer = pb.ReportEvaluationsResponse(recorded=stored.recorded, sample_contexts=sampling)
        return bytes(answer.SerializeToString())

    # --- sync ---

    async def sync_flags(self, data: bytes, context: Context) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        try:
            request = _parse(pb.SyncFlagsRequest, data)
            if request.HasField("revision") and request.revision < 0:
                raise InvalidRequestError("revision must not be negative")
            token = bearer_token(context.invocation_metadata())
            record = await self.keys.verify(token)
            self.keys.admit(token)
            env = await self.follower.environment(record.environment_id)
            stream = self.streams.open(PROTOCOL, hash_sdk_key(token), env, self.streams.grpc_ender(context))
        except Exception as exc:
            await self._fail("SyncFlags", context, exc)
            return
        self.metrics.sync_streams.inc()
        code = "OK"
        try:
            first = True
            async for message in self._stream(env, request, _KeyCheck(self.keys, token, record), stream):
                yield message
                if first:
                    first = False
                    self._latency["SyncFlags"].observe(time.perf_counter() - started)
        except UnauthenticatedError as exc:
            code = ""
            self.metrics.sync_streams_revoked.inc()
            log.info("sync.key_rejected", environment=env.env_id, reason=str(exc))
            await self._fail("SyncFlags", context, exc)
        finally:
            self.streams.close(stream)
            self.metrics.sync_streams.dec()
            if code:
                self._count("SyncFlags", stream.outcome(context, code))

    async def _stream(
        self, env: CachedEnvironment, request: pb.SyncFlagsRequest, key: _KeyCheck, stream: OpenStream
    ) -> AsyncIterator[bytes]:
        """The messages of one stream; raises UnauthenticatedError once its key is revoked or expired.
        ``stream`` follows what its transport accepted (``progress`` per message, ``sent`` per batch)."""
        heartbeat = self.settings.sync_heartbeat_seconds
        if request.HasField("revision"):
            revision, event_id = request.revision, request.event_id
            deadline = time.monotonic() + self.settings.sync_resume_wait_seconds
            while revision > env.revision and time.monotonic() < deadline:  # this process lags behind
                changed = env.changed
                try:
                    await asyncio.wait_for(changed.wait(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    break
        else:
            revision, event_id = -1, ""
        generation = env.generation
        if revision >= 0 and env.position_known(revision, event_id):
            messages = list(env.changes_after(revision)) or [env.heartbeat_message()]
        else:
            messages = env.snapshot_messages()
        # The position the messages bring the client to, taken with them: more may change while they go.
        revision, event_id = env.revision, env.event_id
        for message in messages:
            yield message
            stream.progress += 1
        stream.sent = revision
        beat = time.monotonic() + heartbeat
        while True:
            if time.monotonic() >= key.due:
                await key.check()
            changed = env.changed  # taken before comparing, so no change is missed
            if env.generation != generation or not env.position_known(revision, event_id):
                generation = env.generation
                messages = env.snapshot_messages()
            elif env.revision != revision:
                messages = list(env.changes_after(revision))
            else:
                try:
                    await self.streams.wait_changed(stream, changed, min(beat, key.due))
                except TimeoutError:
                    if time.monotonic() >= beat:
                        beat = time.monotonic() + heartbeat
                        yield env.heartbeat_message()
                        stream.progress += 1
                continue
            revision, event_id = env.revision, env.event_id
            for message in messages:
                yield message
                stream.progress += 1
            stream.sent = revision
            beat = time.monotonic() + heartbeat


class _KeyCheck:
    """The SDK key of an open stream, authenticated again whenever :meth:`SdkKeys.next_check` says."""

    __slots__ = ("due", "keys", "token")

    def __init__(self, keys: SdkKeys, token: str, record: SdkKeyRecord) -> None:
        self.keys = keys
        self.token = token
        self.due = keys.next_check(token, record)

    async def check(self) -> None:
        """UnauthenticatedError if the key is now unknown (revoked) or expired."""
        try:
            record = await self.keys.verify(self.token)
        except UnavailableError:  # verified when the stream opened, and nothing says it was revoked since
            self.due = time.monotonic() + max(self.keys.negative_ttl, MIN_RECHECK_SECONDS)
            return
        self.due = self.keys.next_check(self.token, record)


def _check_context(context: Struct) -> None:
    """INVALID_ARGUMENT for a context over ``MAX_CONTEXT_BYTES`` (called only for requests that large)."""
    size = context.ByteSize()
    if size > limits.MAX_CONTEXT_BYTES:
        raise InvalidRequestError(
            f"context: {size} bytes encoded, at most {limits.MAX_CONTEXT_BYTES} (MAX_CONTEXT_BYTES)"
        )


def _identity(data: bytes) -> bytes:
    return data


def _parse(message: type[M], data: bytes) -> M:
    """Decode a request in the handler, so a malformed one is INVALID_ARGUMENT (not UNKNOWN)."""
    try:
        return message.FromString(data)
    except DecodeError as exc:
        raise InvalidRequestError(f"malformed {message.DESCRIPTOR.name}: {exc}") from exc


def method_handlers(handlers: Handlers) -> dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]]:
    """Service name → method name → handler, ready for ``add_generic_rpc_handlers``."""
    evaluation: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        name: grpc.unary_unary_rpc_method_handler(
            handlers.typed(resolver),
            request_deserializer=_identity,
            response_serializer=_identity,
        )
        for name, resolver in RESOLVERS.items()
    }
    evaluation["ResolveAll"] = grpc.unary_unary_rpc_method_handler(
        handlers.resolve_all,
        request_deserializer=_identity,
        response_serializer=_identity,
    )
    evaluation["ReportEvaluations"] = grpc.unary_unary_rpc_method_handler(
        handlers.report_evaluations,
        request_deserializer=_identity,
        response_serializer=_identity,
    )
    sync = {
        "SyncFlags": grpc.unary_stream_rpc_method_handler(
            handlers.sync_flags,
            request_deserializer=_identity,
            response_serializer=_identity,
        )
    }
    return {EVALUATION_SERVICE: evaluation, SYNC_SERVICE: sync}
