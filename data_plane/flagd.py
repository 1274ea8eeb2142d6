"""flagd's gRPC protocols on the data plane: the stock OpenFeature flagd providers use Flagyard unmodified.

- ``flagd.evaluation.v1.Service`` / ``flagd.evaluation.v2.Service`` (flagd's RPC mode): ResolveBoolean/
  String/Int/Float/Object (+ ResolveAll in v1) evaluated from L1 as ``flagyard.v1.EvaluationService`` does
  (``FlagSet.evaluate``), and EventStream: ``provider_ready`` first, ``configuration_change`` with the
  changed flag keys (``data.flags``) on every change L1 applies, ``keep_alive`` every
  ``flagd_keep_alive_seconds``.
- ``flagd.sync.v1.FlagSyncService`` (flagd's in-process mode): SyncFlags streams the environment as one
  flagd JSON document (``export_flagd``), again on every change; FetchAllFlags answers it once;
  GetMetadata (deprecated by flagd) the flag set's metadata.

Results as flagd sends them: ``reason`` is the rule engine's reason name (STATIC, TARGETING_MATCH, SPLIT,
DEFAULT, DISABLED, PREREQUISITE_FAILED), ``variant`` the variant served, ``metadata`` the flag's metadata.
A result without a variant (disabled without an off variant, no default variant) carries the reason only,
so providers answer the caller's default. Evaluation errors are gRPC statuses, as flagd's are and as the
providers map them back: FLAG_NOT_FOUND → NOT_FOUND, TYPE_MISMATCH → INVALID_ARGUMENT, PARSE_ERROR (a
value the protocol cannot carry: an integer beyond int64, an object flag's array) → DATA_LOSS,
INVALID_CONTEXT and TARGETING_KEY_MISSING → FAILED_PRECONDITION, GENERAL → INTERNAL. Providers send the
OpenFeature targeting key as ``targetingKey``; it is read as Flagyard's ``targeting_key`` (unless the
context sets that too).

Authentication (:func:`credential`): the environment's SDK key, as ``authorization: Bearer <key>``
metadata (Python: ``channel_credentials``; Java: ``clientInterceptors``; Go: dial options), or, when
``flagd_selector_keys`` allows it, in flagd's selector (``flagd-selector`` metadata or the request's
``selector`` field) as ``sdkKey=<key>``, for providers that can send nothing else. A selector may also name
the flag set, ``flagSetId=<project>/<environment>``; one naming another environment than the key's is
NOT_FOUND. Revocation and expiry are as for the Flagyard protocol (``SdkKeys``; open streams re-check their
key).

Bounds (everything a key holder sends): request messages by the server's options, contexts by
``MAX_CONTEXT_BYTES`` (RESOURCE_EXHAUSTED, which providers report as a general error: INVALID_ARGUMENT
would read as a type mismatch), selectors by :data:`MAX_SELECTOR_BYTES` (INVALID_ARGUMENT).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import orjson
import structlog
from google.protobuf.message import DecodeError, Message

from flagyard.contracts.redis import SdkKeyRecord, hash_sdk_key
from flagyard.proto.gen.flagd.evaluation.v1 import evaluation_pb2 as ev1
from flagyard.proto.gen.flagd.evaluation.v2 import evaluation_pb2 as ev2
from flagyard.proto.gen.flagd.sync.v1 import sync_pb2 as sync
from flagyard.proto.values import struct_to_dict
from flagyard.rule_engine import Document, ErrorCode, EvaluationResult, Flag, FlagType, Segment, limits
from flagyard.rule_engine.flagd import MAX_SAFE_INTEGER, export_flagd

from .auth import SdkKeys, bearer_token
from .exceptions import InvalidRequestError, RequestError, UnauthenticatedError
from .follower import Follower
from .l1 import CachedEnvironment
from .metrics import Metrics
from .sampling import Sampler
from .service import _KeyCheck
from .settings import DataPlaneSettings
from .streams import OpenStream, Streams

log = structlog.get_logger("flagyard.data_plane")

EVALUATION_V1 = "flagd.evaluation.v1.Service"
EVALUATION_V2 = "flagd.evaluation.v2.Service"
SYNC = "flagd.sync.v1.FlagSyncService"
SERVICES = (EVALUATION_V1, EVALUATION_V2, SYNC)
PROTOCOL_RPC = "flagd-rpc"
PROTOCOL_SYNC = "flagd-sync"
SELECTOR_HEADER = "flagd-selector"
MAX_SELECTOR_BYTES = 1024
"""Longest selector accepted (header or field): ``sdkKey=<key>,flagSetId=<project>/<environment>`` fits."""
SOURCE = "flagyard"

Context = grpc.aio.ServicerContext[Any, Any]


class ResourceExhaustedError(RequestError):
    """A request over a bound, answered RESOURCE_EXHAUSTED (flagd providers read INVALID_ARGUMENT as
    TYPE_MISMATCH)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class NotFoundError(RequestError):
    code = grpc.StatusCode.NOT_FOUND


class _EvaluationError(RequestError):
    """An evaluation error as the gRPC status flagd answers it with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


STATUS: dict[ErrorCode, grpc.StatusCode] = {
    ErrorCode.FLAG_NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    ErrorCode.TYPE_MISMATCH: grpc.StatusCode.INVALID_ARGUMENT,
    ErrorCode.PARSE_ERROR: grpc.StatusCode.DATA_LOSS,
    ErrorCode.INVALID_CONTEXT: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.TARGETING_KEY_MISSING: grpc.StatusCode.FAILED_PRECONDITION,
    ErrorCode.PROVIDER_NOT_READY: grpc.StatusCode.UNAVAILABLE,
    ErrorCode.GENERAL: grpc.StatusCode.INTERNAL,
}
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


# --- authentication and selectors ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Selector:
    sdk_key: str | None = None
    flag_set_id: str | None = None


def parse_selector(raw: str) -> Selector:
    """``name=value`` items separated by commas: ``sdkKey`` (the SDK key) and ``flagSetId``
    (``<project>/<environment>``); InvalidRequestError for anything else or over MAX_SELECTOR_BYTES."""
    if len(raw) > MAX_SELECTOR_BYTES:
        raise InvalidRequestError(f"selector: {len(raw)} characters, at most {MAX_SELECTOR_BYTES}")
    values: dict[str, str] = {}
    for item in raw.split(","):
        item = item.strip()
        if not item:
            continue
        name, eq, value = item.partition("=")
        name, value = name.strip(), value.strip()
        if not eq or name not in ("sdkKey", "flagSetId") or not value or name in values:
            raise InvalidRequestError(
                "selector: expected 'sdkKey=<sdk key>' and/or 'flagSetId=<project>/<environment>', "
                "comma-separated"
            )
        values[name] = value
    return Selector(values.get("sdkKey"), values.get("flagSetId"))


def _metadata_value(metadata: Iterable[Any] | None, name: str) -> str | None:
    for item in metadata or ():
        if item[0] == name:
            value = item[1]
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return None


def credential(
    metadata: Iterable[Any] | None, selector_field: str = "", *, selector_keys: bool
) -> tuple[str, Selector]:
    """The call's SDK key and its selector (header first, then the request's deprecated field).

    UnauthenticatedError when there is no key (a clear message naming both ways to send one)."""
    raw = _metadata_value(metadata, SELECTOR_HEADER)
    selector = parse_selector(raw if raw is not None else selector_field)
    if _metadata_value(metadata, "authorization") is not None:
        return bearer_token(metadata), selector
    if selector.sdk_key is not None:
        if not selector_keys:
            raise UnauthenticatedError(
                "SDK keys in the flagd selector are turned off here (FLAGYARD_FLAGD_SELECTOR_KEYS=false): "
                "send 'authorization: Bearer <sdk key>' metadata"
            )
        return selector.sdk_key, selector
    hint = " or the selector 'sdkKey=<sdk key>'" if selector_keys else ""
    raise UnauthenticatedError(
        f"missing SDK key: send 'authorization: Bearer <sdk key>' metadata{hint} (the environment's SDK key)"
    )


def flag_set_id(record: SdkKeyRecord) -> str:
    return f"{record.project}/{record.environment}"


def _check_flag_set(selector: Selector, record: SdkKeyRecord) -> None:
    if selector.flag_set_id is not None and selector.flag_set_id != flag_set_id(record):
        raise NotFoundError(
            f"flag set {selector.flag_set_id!r} is not served to this SDK key (it serves "
            f"{flag_set_id(record)!r})"
        )


# --- the environment as flagd JSON, once per change -------------------------------------------------------


class FlagdDocument:
    """One state of an environment as flagd sees it: the versions EventStream compares (cheap, read from L1)
    and the flagd JSON document SyncFlags and FetchAllFlags send (built on first use, once per state)."""

    __slots__ = (
        "_changes",
        "_json",
        "_sync",
        "env",
        "flag_versions",
        "generation",
        "owner",
        "revision",
        "segment_versions",
        "skipped",
    )

    def __init__(self, env: CachedEnvironment, owner: Documents | None = None) -> None:
        self.env = env
        self.owner = owner
        self._sync: bytes | None = None
        self._changes: dict[tuple[int, int, str], bytes | None] = {}
        self.generation, self.revision = env.generation, env.revision
        self.flag_versions = {k: e.version for (kind, k), e in env.definitions.items() if kind == "flag"}
        self.segment_versions = {
            k: e.version for (kind, k), e in env.definitions.items() if kind == "segment"
        }
        self.skipped: tuple[tuple[str, str], ...] = ()
        """(flag key, why) of each flag export_flagd could not express: left out of the JSON."""
        self._json: str | None = None

    def json(self, record: SdkKeyRecord) -> str:
        """The environment as flagd JSON (``export_flagd``), as it was in this state."""
        if self._json is None:
            document = native_document(self.env, {"flagSetId": flag_set_id(record)})
            exported, skipped = export_environment(document)
            for key, why in skipped:
                log.warning("flagd.export_skipped", environment=self.env.env_id, flag=key, problem=why)
            self.skipped = tuple(skipped)
            self._json = orjson.dumps(exported).decode()
        return self._json

    def sync_message(self, record: SdkKeyRecord) -> bytes:
        """flagd's SyncFlagsResponse for this state, serialized once for every stream of the environment
        (its flag set id is the environment's, the same for every key of it)."""
        if self._sync is None:
            message = sync.SyncFlagsResponse(flag_configuration=self.json(record))
            message.sync_context.update({"flagSetId": flag_set_id(record)})
            self._sync = message.SerializeToString()
            self._counted()
        return self._sync

    def change_message(self, previous: FlagdDocument, response: Any) -> bytes | None:
        """EventStream's ``configuration_change`` from ``previous`` to this state (None: no flag changed),
        serialized once for every stream that saw ``previous`` (usually all of them)."""
        slot = (previous.generation, previous.revision, response.DESCRIPTOR.full_name)
        if slot in self._changes:
            return self._changes[slot]
        segments = self.segment_versions != previous.segment_versions
        changes = changed_flags(previous.flag_versions, self.flag_versions, segments)
        out: bytes | None = None
        if changes:
            message = response(type="configuration_change")
            message.data.update(
                {
                    "flags": {
                        k: {"type": t, "source": SOURCE, "flagKey": k} for k, t in sorted(changes.items())
                    }
                }
            )
            out = message.SerializeToString()
            self._counted()
        if len(self._changes) >= 8:  # streams far behind are rare: keep the few recent predecessors
            self._changes.pop(next(iter(self._changes)))
        self._changes[slot] = out
        return out

    def _counted(self) -> None:
        if self.owner is not None:
            self.owner.serializations += 1


def native_document(env: CachedEnvironment, metadata: Mapping[str, Any]) -> Document:
    flags, segments = [], []
    for (kind, _), entry in sorted(env.definitions.items()):
        definition = orjson.loads(entry.json())
        if kind == "flag":
            flags.append(Flag.model_validate(definition))
        else:
            segments.append(Segment.model_validate(definition))
    return Document(flags=flags, segments=segments, metadata=dict(metadata))


def export_environment(document: Document) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """``export_flagd`` of the document, leaving out each flag whose values flagd's schema cannot carry, with
    why.

    ``export_flagd`` expresses every native flag, but writes an object flag's JSON array or an integer past
    ±2^53-1 as it is; a stock provider refuses such a document whole (or rounds the integer), so a flag
    holding one would take the whole environment away from in-process providers. It is left out instead
    (the provider answers FLAG_NOT_FOUND for it, and RPC mode PARSE_ERROR)."""
    skipped: list[tuple[str, str]] = []
    kept = []
    for flag in document.flags:
        why = _not_carried(flag)
        if why is None:
            kept.append(flag)
        else:
            skipped.append((flag.key, why))
    if skipped:
        document = document.model_copy(update={"flags": kept})
    return export_flagd(document), skipped


def _not_carried(flag: Flag) -> str | None:
    for name, value in flag.variants.items():
        if flag.type is FlagType.OBJECT and not isinstance(value, dict):
            return f"variant '{name}': flagd object variants are JSON objects, not arrays"
        if flag.type is FlagType.INTEGER and abs(value) > MAX_SAFE_INTEGER:
            return f"variant '{name}': flagd integers stay within ±2^53-1"
    return None


class Documents:
    """Each environment's current :class:`FlagdDocument`, shared by every stream and call."""

    def __init__(self) -> None:
        self._cache: dict[str, FlagdDocument] = {}
        self.serializations = 0
        """Stream messages serialized (sync documents, configuration changes): once per state, not per
        stream (a fan-out test counts them)."""

    def get(self, env: CachedEnvironment) -> FlagdDocument:
        """The environment's document; call it and use the result before awaiting (L1 changes between
        awaits, and the JSON is built from L1 as it is when first asked for)."""
        cached = self._cache.get(env.env_id)
        if cached is not None and cached.generation == env.generation and cached.revision == env.revision:
            return cached
        built = self._cache[env.env_id] = FlagdDocument(env, self)
        return built


def changed_flags(
    before: Mapping[str, int], after: Mapping[str, int], segments_changed: bool
) -> dict[str, str]:
    """flag key → flagd's notification type (write, update, delete) between two states; every flag is
    ``update`` when a segment changed (any flag may use it)."""
    changes: dict[str, str] = {}
    for key, version in after.items():
        if key not in before:
            changes[key] = "write"
        elif segments_changed or before[key] != version:
            changes[key] = "update"
    for key in before:
        if key not in after:
            changes[key] = "delete"
    return changes


# --- results -------------------------------------------------------------------------------------------


def _fits(flag_type: FlagType, value: Any) -> str | None:
    """Why ``value`` cannot travel as ``flag_type`` in flagd's messages (None: it can)."""
    if flag_type is FlagType.INTEGER and not (
        isinstance(value, int) and not isinstance(value, bool) and INT64_MIN <= value <= INT64_MAX
    ):
        return f"integer value {value!r} does not fit int64"
    if flag_type is FlagType.OBJECT and not isinstance(value, dict):
        return "flagd object values are JSON objects; this variant is not one"
    return None


class Resolver:
    """One typed Resolve method of one service version: an EvaluationResult → its serialized response."""

    __slots__ = ("cache", "flag_type", "message", "request")

    def __init__(self, flag_type: FlagType, request: type[Message], message: type[Message]) -> None:
        self.flag_type = flag_type
        self.request = request
        self.message = message
        self.cache: dict[int, tuple[EvaluationResult, bytes]] = {}

    def encode(self, result: EvaluationResult) -> bytes:
        """The serialized response (cached per shared result object), or _EvaluationError."""
        cached = self.cache.get(id(result))
        if cached is not None and cached[0] is result:
            return cached[1]
        if result.error_code is not None:
            raise _EvaluationError(STATUS[result.error_code], result.error_message or str(result.error_code))
        msg: Any = self.message(reason=str(result.reason))
        if result.variant is not None:
            value = result.value
            problem = _fits(self.flag_type, value)
            if problem is not None:
                raise _EvaluationError(grpc.StatusCode.DATA_LOSS, problem)
            if self.flag_type is FlagType.OBJECT:
                msg.value.update(value)
            elif self.flag_type is FlagType.FLOAT:
                msg.value = float(value)
            else:
                msg.value = value
            msg.variant = result.variant
        if result.flag_metadata:
            msg.metadata.update(result.flag_metadata)
        data: bytes = msg.SerializeToString()
        if len(self.cache) >= 20_000:
            self.cache.clear()
        self.cache[id(result)] = (result, data)
        return data


def _resolvers(module: Any) -> dict[str, Resolver]:
    """v1 and v2 differ only in v2's ``optional`` value and variant, which are set only with a variant in
    both (a v1 client reads the unset fields as zero values, as flagd's v1 answers them)."""
    return {
        "ResolveBoolean": Resolver(
            FlagType.BOOLEAN, module.ResolveBooleanRequest, module.ResolveBooleanResponse
        ),
        "ResolveString": Resolver(FlagType.STRING, module.ResolveStringRequest, module.ResolveStringResponse),
        "ResolveInt": Resolver(FlagType.INTEGER, module.ResolveIntRequest, module.ResolveIntResponse),
        "ResolveFloat": Resolver(FlagType.FLOAT, module.ResolveFloatRequest, module.ResolveFloatResponse),
        "ResolveObject": Resolver(FlagType.OBJECT, module.ResolveObjectRequest, module.ResolveObjectResponse),
    }


def flagd_context(data: bytes, struct: Any) -> dict[str, Any]:
    """The request's context as the rule engine reads it: bounded, ``targetingKey`` → ``targeting_key``."""
    if len(data) > limits.MAX_CONTEXT_BYTES and struct.ByteSize() > limits.MAX_CONTEXT_BYTES:
        raise ResourceExhaustedError(
            f"context: {struct.ByteSize()} bytes encoded, at most {limits.MAX_CONTEXT_BYTES} "
            "(MAX_CONTEXT_BYTES)"
        )
    context = struct_to_dict(struct)
    targeting_key = context.get("targetingKey")
    if isinstance(targeting_key, str) and targeting_key and "targeting_key" not in context:
        context["targeting_key"] = targeting_key
    return context


def _parse(message: type[Message], data: bytes) -> Any:
    try:
        return message.FromString(data)
    except DecodeError as exc:
        raise InvalidRequestError(f"malformed {message.DESCRIPTOR.name}: {exc}") from exc


def _identity(data: bytes) -> bytes:
    return data


# --- the handlers --------------------------------------------------------------------------------------


class FlagdHandlers:
    def __init__(
        self,
        settings: DataPlaneSettings,
        follower: Follower,
        keys: SdkKeys,
        metrics: Metrics,
        sampler: Sampler,
        streams: Streams | None = None,
    ) -> None:
        self.settings = settings
        self.sampler = sampler
        self.follower = follower
        self.keys = keys
        self.metrics = metrics
        self.streams = streams if streams is not None else Streams(settings, metrics)
        self.documents = Documents()
        self._requests: dict[tuple[str, str, str], Any] = {}

    def _count(self, protocol: str, method: str, code: str) -> None:
        child = self._requests.get((protocol, method, code))
        if child is None:
            child = self._requests[protocol, method, code] = self.metrics.requests.labels(
                protocol, method, code
            )
        child.inc()

    async def _authenticate(
        self, context: Context, selector_field: str = ""
    ) -> tuple[str, SdkKeyRecord, CachedEnvironment]:
        metadata = context.invocation_metadata()
        token, selector = credential(
            metadata, selector_field, selector_keys=self.settings.flagd_selector_keys
        )
        if _metadata_value(metadata, "authorization") is not None:
            record = await self.keys.authenticate(metadata)  # the header: SdkKeys' cached fast path
        else:
            record = await self.keys.verify(token)
            self.keys.admit(token)
        _check_flag_set(selector, record)
        return token, record, await self.follower.environment(record.environment_id)

    async def _fail(self, protocol: str, method: str, context: Context, exc: BaseException) -> Any:
        if isinstance(exc, RequestError):
            self._count(protocol, method, exc.code.name)
            await context.abort(exc.code, str(exc))
        self._count(protocol, method, "INTERNAL")
        log.error("flagd.call_failed", method=method, error=f"{type(exc).__name__}: {exc}", exc_info=exc)
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")

    # --- evaluation (v1, v2) ---

    def typed(self, method: str, resolver: Resolver) -> Callable[[bytes, Context], Awaitable[bytes]]:
        latency = self.metrics.latency.labels(PROTOCOL_RPC, method)
        pending = self.metrics.pending
        flag_type = resolver.flag_type

        async def handle(data: bytes, context: Context) -> bytes:
            started = time.perf_counter()
            try:
                request = _parse(resolver.request, data)
                evaluation_context = flagd_context(data, request.context)
                _, _, env = await self._authenticate(context)
                result = env.flagset.evaluate(request.flag_key, None, evaluation_context, flag_type)
                self.sampler.offer(env.env_id, evaluation_context)
                if result.error_code is ErrorCode.FLAG_NOT_FOUND:
                    pending["other", None, result.reason] += 1
                else:
                    pending[request.flag_key, result.variant, result.reason] += 1
                response = resolver.encode(result)
            except Exception as exc:
                return await self._fail(PROTOCOL_RPC, method, context, exc)  # type: ignore[no-any-return]
            self._count(PROTOCOL_RPC, method, "OK")
            latency.observe(time.perf_counter() - started)
            return response

        return handle

    async def resolve_all(self, data: bytes, context: Context) -> bytes:
        """v1 ResolveAll: every flag for the context, with its own type; flags in error are left out."""
        started = time.perf_counter()
        try:
            request = _parse(ev1.ResolveAllRequest, data)
            evaluation_context = flagd_context(data, request.context)
            _, record, env = await self._authenticate(context)
            self.sampler.offer(env.env_id, evaluation_context)
            response = ev1.ResolveAllResponse()
            response.metadata.update({"flagSetId": flag_set_id(record)})
            for key, flag in list(env.flagset.flags.items()):
                result = env.flagset.evaluate(key, None, evaluation_context)
                if result.error_code is not None or _fits(flag.type, result.value) is not None:
                    continue
                entry = response.flags[key]
                entry.reason = str(result.reason)
                if result.variant is not None:
                    entry.variant = result.variant
                    value = result.value
                    if flag.type is FlagType.BOOLEAN:
                        entry.bool_value = value
                    elif flag.type is FlagType.STRING:
                        entry.string_value = value
                    elif flag.type is FlagType.OBJECT:
                        entry.object_value.update(value)
                    else:
                        entry.double_value = float(value)
                if result.flag_metadata:
                    entry.metadata.update(result.flag_metadata)
            out: bytes = response.SerializeToString()
            if len(out) > limits.MAX_GRPC_MESSAGE_BYTES:
                raise ResourceExhaustedError(
                    f"the answer is {len(out)} bytes, over MAX_GRPC_MESSAGE_BYTES "
                    f"({limits.MAX_GRPC_MESSAGE_BYTES})"
                )
        except Exception as exc:
            return await self._fail(PROTOCOL_RPC, "ResolveAll", context, exc)  # type: ignore[no-any-return]
        self._count(PROTOCOL_RPC, "ResolveAll", "OK")
        self.metrics.latency.labels(PROTOCOL_RPC, "ResolveAll").observe(time.perf_counter() - started)
        return out

    def event_stream(self, response: type[Message]) -> Callable[[bytes, Context], AsyncIterator[bytes]]:
        async def handle(data: bytes, context: Context) -> AsyncIterator[bytes]:
            try:
                token, record, env = await self._authenticate(context)
                stream = self.streams.open(
                    PROTOCOL_RPC, hash_sdk_key(token), env, self.streams.grpc_ender(context)
                )
            except Exception as exc:
                await self._fail(PROTOCOL_RPC, "EventStream", context, exc)
                return
            code = "OK"
            try:
                check = _KeyCheck(self.keys, token, record)
                async for message in self._events(response, env, record, check, stream):
                    yield message
            except UnauthenticatedError as exc:
                code = ""
                log.info("flagd.key_rejected", environment=env.env_id, reason=str(exc))
                await self._fail(PROTOCOL_RPC, "EventStream", context, exc)
            finally:
                self.streams.close(stream)
                if code:
                    self._count(PROTOCOL_RPC, "EventStream", stream.outcome(context, code))

        return handle

    async def _events(
        self, response: Any, env: CachedEnvironment, record: SdkKeyRecord, key: _KeyCheck, stream: OpenStream
    ) -> AsyncIterator[bytes]:
        keep_alive = self.settings.flagd_keep_alive_seconds
        changed = env.changed
        state = self.documents.get(env)  # the state provider_ready stands for: taken before it is sent
        yield response(type="provider_ready").SerializeToString()
        stream.progress += 1
        stream.sent = state.revision
        beat = time.monotonic() + keep_alive
        while True:
            if time.monotonic() >= key.due:
                await key.check()
            if env.generation != state.generation or env.revision != state.revision:
                changed = env.changed  # taken before reading the state it is compared against
                new = self.documents.get(env)
                out = new.change_message(state, response)
                state = new
                if out is not None:
                    yield out
                    stream.progress += 1
                    beat = time.monotonic() + keep_alive
                stream.sent = state.revision
                continue
            try:
                await self.streams.wait_changed(stream, changed, min(beat, key.due))
            except TimeoutError:
                if time.monotonic() >= beat:
                    beat = time.monotonic() + keep_alive
                    yield response(type="keep_alive").SerializeToString()
                    stream.progress += 1

    # --- sync ---

    async def sync_flags(self, data: bytes, context: Context) -> AsyncIterator[bytes]:
        started = time.perf_counter()
        try:
            request = _parse(sync.SyncFlagsRequest, data)
            token, record, env = await self._authenticate(context, request.selector)
            key = _KeyCheck(self.keys, token, record)
            stream = self.streams.open(
                PROTOCOL_SYNC, hash_sdk_key(token), env, self.streams.grpc_ender(context)
            )
        except Exception as exc:
            await self._fail(PROTOCOL_SYNC, "SyncFlags", context, exc)
            return
        code = "OK"
        self.metrics.sync_streams.inc()
        try:
            first = True
            revision = generation = -1
            while True:
                if time.monotonic() >= key.due:
                    await key.check()
                changed = env.changed
                if env.revision != revision or env.generation != generation:
                    document = self.documents.get(env)
                    revision, generation = document.revision, document.generation
                    out = document.sync_message(record)
                    if len(out) > limits.MAX_GRPC_MESSAGE_BYTES:
                        raise ResourceExhaustedError(
                            f"the environment is {len(out)} bytes as flagd JSON, over MAX_GRPC_MESSAGE_BYTES"
                        )
                    yield out
                    stream.progress += 1
                    stream.sent = revision
                    if first:
                        first = False
                        self.metrics.latency.labels(PROTOCOL_SYNC, "SyncFlags").observe(
                            time.perf_counter() - started
                        )
                    continue
                try:
                    await self.streams.wait_changed(stream, changed, key.due)
                except TimeoutError:
                    continue
        except Exception as exc:
            code = ""
            if isinstance(exc, UnauthenticatedError):
                log.info("flagd.key_rejected", environment=env.env_id, reason=str(exc))
            await self._fail(PROTOCOL_SYNC, "SyncFlags", context, exc)
        finally:
            self.streams.close(stream)
            self.metrics.sync_streams.dec()
            if code:
                self._count(PROTOCOL_SYNC, "SyncFlags", stream.outcome(context, code))

    async def fetch_all_flags(self, data: bytes, context: Context) -> bytes:
        started = time.perf_counter()
        try:
            request = _parse(sync.FetchAllFlagsRequest, data)
            _, record, env = await self._authenticate(context, request.selector)
            document = self.documents.get(env)
            out: bytes = sync.FetchAllFlagsResponse(
                flag_configuration=document.json(record)
            ).SerializeToString()
        except Exception as exc:
            return await self._fail(PROTOCOL_SYNC, "FetchAllFlags", context, exc)  # type: ignore[no-any-return]
        self._count(PROTOCOL_SYNC, "FetchAllFlags", "OK")
        self.metrics.latency.labels(PROTOCOL_SYNC, "FetchAllFlags").observe(time.perf_counter() - started)
        return out

    async def get_metadata(self, data: bytes, context: Context) -> bytes:
        """The flag set's metadata. The one call answered without a key, with nothing in it: the stock Python
        in-process provider sends it without its selector, and does not sync when it fails."""
        try:
            _parse(sync.GetMetadataRequest, data)
            metadata = context.invocation_metadata()
            response = sync.GetMetadataResponse()
            response.metadata.SetInParent()
            selector = parse_selector(_metadata_value(metadata, SELECTOR_HEADER) or "")
            if _metadata_value(metadata, "authorization") is not None or selector.sdk_key is not None:
                _, record, _ = await self._authenticate(context)
                response.metadata.update({"flagSetId": flag_set_id(record)})
            out: bytes = response.SerializeToString()
        except Exception as exc:
            return await self._fail(PROTOCOL_SYNC, "GetMetadata", context, exc)  # type: ignore[no-any-return]
        self._count(PROTOCOL_SYNC, "GetMetadata", "OK")
        return out


def method_handlers(handlers: FlagdHandlers) -> dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]]:
    """Service name → method name → handler, ready for ``add_generic_rpc_handlers``."""

    def unary(fn: Any) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_unary_rpc_method_handler(
            fn, request_deserializer=_identity, response_serializer=_identity
        )

    def stream(fn: Any) -> grpc.RpcMethodHandler[Any, Any]:
        return grpc.unary_stream_rpc_method_handler(
            fn, request_deserializer=_identity, response_serializer=_identity
        )

    services: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
    for name, module in ((EVALUATION_V1, ev1), (EVALUATION_V2, ev2)):
        methods = {m: unary(handlers.typed(m, r)) for m, r in _resolvers(module).items()}
        methods["EventStream"] = stream(handlers.event_stream(module.EventStreamResponse))
        services[name] = methods
    services[EVALUATION_V1]["ResolveAll"] = unary(handlers.resolve_all)
    services[SYNC] = {
        "SyncFlags": stream(handlers.sync_flags),
        "FetchAllFlags": unary(handlers.fetch_all_flags),
        "GetMetadata": unary(handlers.get_metadata),
    }
    return services
