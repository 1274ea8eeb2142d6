"""OFREP, the OpenFeature Remote Evaluation Protocol, served over HTTP from the data plane's own L1.

Spec: open-feature/protocol ``service/openapi.yaml`` (0.3.0). Two routes evaluate:

- ``POST /ofrep/v1/evaluate/flags/{key}``: one flag. 200 ``evaluationSuccess``; 404 ``FLAG_NOT_FOUND``;
  400 ``evaluationFailure`` (``PARSE_ERROR``, ``TARGETING_KEY_MISSING``, ``INVALID_CONTEXT``, ``GENERAL``).
- ``POST /ofrep/v1/evaluate/flags``: every flag of the key's environment; 200 ``bulkEvaluationSuccess`` with
  an ``ETag`` (a hash of the body: the answer for this context, so it is right for time-based rules too),
  304 when ``If-None-Match`` names it; 400 ``bulkEvaluationFailure`` for a bad request.

Both take ``{"context": {...}}``; ``targetingKey`` becomes the rule engine's ``targeting_key``. A missing
body or ``context`` is an empty context (the stock providers send ``{}`` without one). The SDK key travels
in ``X-API-Key`` or ``Authorization: Bearer`` and is checked by :class:`.auth.SdkKeys`, the gRPC port's
check (revocation within the key cache, expiry on every call): 401 missing, unknown or expired; 429 with
``Retry-After`` past ``sdk_key_rate_limit`` (shared with the gRPC protocols); 503 while L1 is not
hydrated. Evaluation is ``FlagSet.evaluate`` of the environment in L1, as for ResolveBoolean & co.

Results as OFREP reads them: ``value`` and ``variant`` only when a variant is served (no variant: the
caller's default, OFREP's ``codeDefaultFlag``); reasons STATIC, TARGETING_MATCH, SPLIT, DEFAULT, DISABLED,
and PREREQUISITE_FAILED sent as DISABLED (the flag is off for this context; the Python provider only knows
OpenFeature's reasons); ``metadata`` is the flag's metadata. Type checks happen in the provider (OFREP sends
no type, ADR-0003).

Bounds (an SDK-key holder's input; anyone's for the headers): request line plus headers
:data:`MAX_HEADER_BYTES` and :data:`MAX_HEADERS` (431), body :data:`MAX_BODY_BYTES` (413), context nesting
:data:`MAX_CONTEXT_DEPTH` and :data:`MAX_CONTEXT_MEMBERS` (400 INVALID_CONTEXT), flag key
:data:`MAX_FLAG_KEY_LENGTH` characters of the key pattern (longer or other: 404 without a lookup),
``ofrep_max_connections`` open connections (503).

Event streams (ADR-0008, ``ofrep_event_streams``): a bulk answer carries ``eventStreams`` pointing at
``GET /ofrep/v1/events`` (relative to the provider's OFREP base URL), authenticated like the rest. It sends
``retry: 5000``, then for every change of the environment (or reload) one ``refetchEvaluation`` event whose
``id`` is the environment's revision and whose ``etag`` is that revision quoted; keep-alive comments every
``sync_heartbeat_seconds``; ``Last-Event-ID`` older than the revision gets one event at once. The key is
checked again as a SyncFlags stream's is (revoked or expired: the stream ends); at most
``ofrep_max_streams_per_key`` streams per key and process (429, ``Retry-After: 5``). A refetch carrying
``flagConfigEtag`` (the announced revision) waits up to ``sync_resume_wait_seconds`` for this process to
reach it, since the event may come from another process sharing the port.

Health on the same port: ``GET /healthz`` (the process answers) and ``GET /readyz`` (200 once L1 is
hydrated, and while Redis is down: answers come from L1; 503 before), as the gRPC health service.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hashlib
import math
import re
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Generator, MutableMapping
from typing import Any

import orjson
import structlog
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from flagyard.contracts.redis import SdkKeyRecord, hash_sdk_key
from flagyard.rule_engine import ErrorCode, EvaluationResult, Reason, limits
from flagyard.rule_engine.model import KEY_PATTERN

from .auth import MIN_RECHECK_SECONDS, SdkKeys, bearer_token
from .exceptions import RateLimitedError, StreamLimitError, UnauthenticatedError, UnavailableError
from .follower import Follower
from .l1 import CachedEnvironment
from .metrics import Metrics
from .sampling import Sampler
from .settings import DataPlaneSettings
from .streams import OpenStream, Streams

log = structlog.get_logger("flagyard.data_plane")

PROTOCOL = "ofrep"
BULK_PATH = "/ofrep/v1/evaluate/flags"
SINGLE_PREFIX = BULK_PATH + "/"
EVENTS_PATH = "/ofrep/v1/events"
INACTIVITY_DELAY_SECONDS = 120
"""What the bulk answer's ``eventStreams`` asks a client to wait before closing an idle stream (the
spec's default)."""
SSE_RETRY_MS = 5000
CORS_REQUEST_HEADERS = b"content-type, x-api-key, authorization, if-none-match, last-event-id"

MAX_HEADER_BYTES = 16 * limits.KiB
"""Request line and headers of one request (431 beyond)."""
MAX_HEADERS = 100
"""Header fields of one request (431 beyond)."""
MAX_BODY_BYTES = limits.MAX_CONTEXT_BYTES + limits.KiB
"""A request body: a context as large as the gRPC port takes, plus its ``{"context": …}`` (413 beyond)."""
MAX_CONTEXT_DEPTH = limits.MAX_VALUE_DEPTH
"""Nesting of objects and arrays in a context, the context itself being depth 1."""
MAX_CONTEXT_MEMBERS = 10_000
"""Object members and array elements in a context, all levels together."""
MAX_FLAG_KEY_LENGTH = 128
"""The longest flag key (``rule_engine.model.KEY_PATTERN``)."""
_KEY = re.compile(KEY_PATTERN)

REASONS: dict[Reason, str] = {
    Reason.STATIC: "STATIC",
    Reason.TARGETING_MATCH: "TARGETING_MATCH",
    Reason.SPLIT: "SPLIT",
    Reason.DEFAULT: "DEFAULT",
    Reason.DISABLED: "DISABLED",
    Reason.PREREQUISITE_FAILED: "DISABLED",
}
FAILURE_CODES = frozenset(
    {ErrorCode.PARSE_ERROR, ErrorCode.TARGETING_KEY_MISSING, ErrorCode.INVALID_CONTEXT, ErrorCode.GENERAL}
)
"""The error codes of OFREP's ``evaluationFailure``; any other is sent as GENERAL."""

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]
_JSON = (b"content-type", b"application/json")
_MISSING = object()


class BadRequestError(Exception):
    """A request OFREP answers 400 (its ``errorCode`` is ``code``)."""

    def __init__(self, code: ErrorCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class _DisconnectedError(Exception):
    """The client went away while its request was read."""


# --- requests ----------------------------------------------------------------------------------------------


def parse_context(body: bytes) -> dict[str, Any]:
    """The rule engine's context of an OFREP request body; BadRequestError if it is not one."""
    if not body.strip():
        return {}
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequestError(ErrorCode.PARSE_ERROR, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequestError(ErrorCode.INVALID_CONTEXT, 'the request body must be {"context": {...}}')
    context = document.get("context", _MISSING)
    if context is _MISSING:
        return {}
    if not isinstance(context, dict):
        raise BadRequestError(ErrorCode.INVALID_CONTEXT, "context must be a JSON object")
    if len(body) > 2 * limits.KiB or body.count(b"{") + body.count(b"[") > MAX_CONTEXT_DEPTH:
        _check_shape(context)
    targeting_key = context.pop("targetingKey", _MISSING)
    if targeting_key is not _MISSING:
        if not isinstance(targeting_key, str):
            raise BadRequestError(ErrorCode.INVALID_CONTEXT, "targetingKey must be a string")
        context["targeting_key"] = targeting_key
    return context


def _check_shape(context: dict[str, Any]) -> None:
    members = 0
    stack: list[tuple[Any, int]] = [(context, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_CONTEXT_DEPTH:
            raise BadRequestError(
                ErrorCode.INVALID_CONTEXT,
                f"context nested deeper than {MAX_CONTEXT_DEPTH} objects and arrays (MAX_CONTEXT_DEPTH)",
            )
        children = value.values() if isinstance(value, dict) else value
        members += len(children)
        if members > MAX_CONTEXT_MEMBERS:
            raise BadRequestError(
                ErrorCode.INVALID_CONTEXT,
                f"context has more than {MAX_CONTEXT_MEMBERS} members and elements (MAX_CONTEXT_MEMBERS)",
            )
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


def etag_matches(if_none_match: bytes, etag: bytes) -> bool:
    """Whether ``If-None-Match`` names ``etag`` (weak comparison, as RFC 9110 asks for it)."""
    for tag in if_none_match.split(b","):
        tag = tag.strip()
        if tag == b"*" or tag.removeprefix(b"W/") == etag:
            return True
    return False


# --- results ------------------------------------------------------------------------------------------------


def evaluation_document(key: str, result: EvaluationResult) -> dict[str, Any]:
    """``evaluationSuccess`` or ``evaluationFailure`` (or ``flagNotFound``) of one result."""
    code = result.error_code
    if code is not None:
        name = code if code in FAILURE_CODES or code is ErrorCode.FLAG_NOT_FOUND else ErrorCode.GENERAL
        return {"key": key, "errorCode": str(name), "errorDetails": result.error_message or str(name)}
    document: dict[str, Any] = {"key": key, "reason": REASONS.get(result.reason, "UNKNOWN")}
    if result.variant is not None:
        document["value"] = result.value
        document["variant"] = result.variant
    if result.flag_metadata:
        document["metadata"] = dict(result.flag_metadata)
    return document


def encode_result(key: str, result: EvaluationResult) -> tuple[bytes, bool]:
    """The JSON of one result, and whether it is a success (a value JSON cannot carry is a PARSE_ERROR)."""
    try:
        return orjson.dumps(evaluation_document(key, result)), result.error_code is None
    except (orjson.JSONEncodeError, TypeError) as exc:  # an integer beyond 64 bits
        details = f"the value cannot be sent: {exc}"
        return orjson.dumps({"key": key, "errorCode": "PARSE_ERROR", "errorDetails": details}), False


class Encoder:
    """JSON of results, cached per shared result object (built once per flag), as :class:`.BulkEncoder`."""

    __slots__ = ("cache", "max_entries")

    def __init__(self, max_entries: int = 50_000) -> None:
        self.cache: dict[int, tuple[EvaluationResult, str, bytes]] = {}
        self.max_entries = max_entries

    def encode(self, key: str, result: EvaluationResult) -> tuple[bytes, bool]:
        """:func:`encode_result`, from the cache for a result seen before."""
        cached = self.cache.get(id(result))
        if cached is not None and cached[0] is result and cached[1] == key:
            return cached[2], True
        data, ok = encode_result(key, result)
        if ok and result.variant is not None:  # a shared result, not one built for this call
            if len(self.cache) >= self.max_entries:
                self.cache.clear()
            self.cache[id(result)] = (result, key, data)
        return data, ok


# --- the ASGI application -----------------------------------------------------------------------------------


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, body: bytes = b"", headers: Headers | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or []


def _error(status: int, details: str, headers: Headers | None = None) -> Response:
    return Response(status, orjson.dumps({"errorDetails": details}), headers)


def _failure(status: int, code: ErrorCode, details: str, key: str | None = None) -> Response:
    document = {"errorCode": str(code), "errorDetails": details}
    return Response(status, orjson.dumps(document if key is None else {"key": key} | document))


class _Request:
    """What the routes read of a request's headers, in one pass."""

    __slots__ = ("if_none_match", "last_event_id", "length", "metadata")

    def __init__(self, headers: Headers) -> None:
        token: str | None = None
        authorization: str | None = None
        self.if_none_match: bytes | None = None
        self.length: int | None = None
        self.last_event_id = ""
        for name, value in headers:
            if name == b"x-api-key":
                token = value.decode("latin-1").strip()
            elif name == b"authorization":
                authorization = value.decode("latin-1")
            elif name == b"if-none-match":
                self.if_none_match = value
            elif name == b"content-length":
                self.length = int(value) if value.isdigit() else None
            elif name == b"last-event-id":
                self.last_event_id = value.decode("latin-1").strip()
        self.metadata: tuple[tuple[str, str], ...] = ()
        """``authorization`` metadata as :meth:`.SdkKeys.authenticate` reads it (X-API-Key wins)."""
        if token:
            self.metadata = (("authorization", f"Bearer {token}"),)
        elif token is None and authorization is not None:
            self.metadata = (("authorization", authorization),)


class OfrepApp:
    """The ASGI application: OFREP's two evaluation routes and health."""

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
        self.encoder = Encoder()
        self._counters: dict[tuple[str, int], Any] = {}
        self._streams = metrics.protocol_streams.labels(PROTOCOL)
        self._origins = {o.strip() for o in settings.ofrep_cors_origins.split(",") if o.strip()}
        self.closing = asyncio.Event()
        """Set when the server stops: open event streams end."""
        self._bulk_tail = b"]}"
        if settings.ofrep_event_streams:
            stream = {
                "type": "sse",
                "endpoint": {"requestUri": EVENTS_PATH},
                "inactivityDelaySec": INACTIVITY_DELAY_SECONDS,
            }
            self._bulk_tail = b'],"eventStreams":' + orjson.dumps([stream]) + b"}"
        self._latency = {op: metrics.latency.labels(PROTOCOL, op) for op in ("evaluate", "bulk")}

    def _count(self, operation: str, status: int) -> None:
        child = self._counters.get((operation, status))
        if child is None:
            child = self._counters[operation, status] = self.metrics.requests.labels(
                PROTOCOL, operation, str(status)
            )
        child.inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # lifespan is off and websockets are not served
            return
        started = time.perf_counter()
        path: str = scope["path"]
        if path in (BULK_PATH, SINGLE_PREFIX):
            operation, key = "bulk", None
        elif path.startswith(SINGLE_PREFIX):
            operation, key = "evaluate", path[len(SINGLE_PREFIX) :]
        elif path in ("/healthz", "/readyz"):
            operation, key = "health", None
        elif path == EVENTS_PATH and self.settings.ofrep_event_streams:
            cors = self._cors(scope) if self._origins else []
            if cors and scope["method"] == "OPTIONS":
                await _send(send, self._preflight(cors))
                return
            self._count("events", await self._events(scope, receive, send, cors))
            return
        else:
            operation, key = "unknown", None
        cors = self._cors(scope) if self._origins else []
        if cors and scope["method"] == "OPTIONS":
            await _send(send, self._preflight(cors))
            self._count("preflight", 204)
            return
        try:
            response = await self._respond(scope, receive, operation, key)
        except _DisconnectedError:
            self._count(operation, 499)
            return
        except Exception as exc:  # never a traceback to the client
            log.error("ofrep.failed", operation=operation, error=f"{type(exc).__name__}: {exc}", exc_info=exc)
            response = _error(500, "internal error")
        if cors:
            response.headers = response.headers + cors
        await _send(send, response, head=scope["method"] == "HEAD")
        self._count(operation, response.status)
        if operation in ("evaluate", "bulk") and response.status in (200, 304):
            self._latency[operation].observe(time.perf_counter() - started)

    async def _respond(self, scope: Scope, receive: Receive, operation: str, key: str | None) -> Response:
        method: str = scope["method"]
        if operation == "health":
            if method not in ("GET", "HEAD"):
                return _error(405, "use GET", [(b"allow", b"GET, HEAD")])
            return self._health(scope["path"])
        if operation == "unknown":
            return _error(404, "no such endpoint: OFREP is under /ofrep/v1/evaluate/flags")
        if method != "POST":
            return _error(405, "use POST", [(b"allow", b"POST")])
        request = _Request(scope["headers"])
        found = await self._authenticate(request)
        if isinstance(found, Response):
            return found
        env = found[1]
        length = request.length
        if length is not None and length > MAX_BODY_BYTES:
            return _error(413, f"request body over {MAX_BODY_BYTES} bytes (MAX_BODY_BYTES)")
        body = await _read_body(receive)
        if body is None:
            return _error(413, f"request body over {MAX_BODY_BYTES} bytes (MAX_BODY_BYTES)")
        try:
            context = parse_context(body)
        except BadRequestError as exc:
            return _failure(400, exc.code, exc.details, key)
        flagset = env.flagset
        pending = self.metrics.pending
        encode = self.encoder.encode
        self.sampler.offer(env.env_id, context)
        if key is not None:
            if len(key) > MAX_FLAG_KEY_LENGTH or not _KEY.match(key):
                result = flagset.evaluate("", None, context)  # not a key: never found, never looked up
            else:
                result = flagset.evaluate(key, None, context)
            code = result.error_code
            if code is ErrorCode.FLAG_NOT_FOUND:
                pending["other", None, result.reason] += 1
                return _failure(404, code, f"flag '{key}' was not found", key)
            pending[key, result.variant, result.reason] += 1
            data, ok = encode(key, result)
            return Response(200 if ok else 400, data)
        if scope["query_string"]:
            await self._catch_up(env, scope["query_string"])
            flagset = env.flagset
        parts = []
        for flag_key in sorted(flagset.flags):  # one order in every process, so one ETag
            result = flagset.evaluate(flag_key, None, context)
            pending[flag_key, result.variant, result.reason] += 1
            parts.append(encode(flag_key, result)[0])
        data = b'{"flags":[' + b",".join(parts) + self._bulk_tail
        etag = b'"' + hashlib.blake2b(data, digest_size=16).hexdigest().encode() + b'"'
        if_none_match = request.if_none_match
        if if_none_match is not None and etag_matches(if_none_match, etag):
            return Response(304, b"", [(b"etag", etag)])
        return Response(200, data, [(b"etag", etag)])

    async def _authenticate(self, request: _Request) -> tuple[SdkKeyRecord, CachedEnvironment] | Response:
        """The environment of the request's SDK key, or the response refusing it (401, 429, 503)."""
        try:
            record = await self.keys.authenticate(request.metadata)
            env = await self.follower.environment(record.environment_id)
        except UnauthenticatedError as exc:
            return _error(401, f"{exc}: send the environment's SDK key as X-API-Key or Authorization: Bearer")
        except UnavailableError as exc:
            return _error(503, str(exc), [(b"retry-after", b"1")])
        except RateLimitedError as exc:
            seconds = str(max(1, math.ceil(exc.retry_after))).encode()
            return _error(429, "rate limit of this SDK key exceeded", [(b"retry-after", seconds)])
        return record, env

    async def _catch_up(self, env: CachedEnvironment, query: bytes) -> None:
        """A refetch triggered by an event of another process (``flagConfigEtag``, the revision it announced)
        waits up to ``sync_resume_wait_seconds`` for this process to reach that revision."""
        values = urllib.parse.parse_qs(query.decode("latin-1")).get("flagConfigEtag")
        wanted = values[0].strip('"') if values else ""
        if not wanted.isdigit() or len(wanted) > 19:
            return
        deadline = time.monotonic() + self.settings.sync_resume_wait_seconds
        while env.revision < int(wanted) and (left := deadline - time.monotonic()) > 0:
            changed = env.changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), left)

    def _cors(self, scope: Scope) -> Headers:
        """The CORS headers for the request's ``Origin`` if ``ofrep_cors_origins`` allows it, else none."""
        origin = next((value for name, value in scope["headers"] if name == b"origin"), None)
        if origin is None or ("*" not in self._origins and origin.decode("latin-1") not in self._origins):
            return []
        return [
            (b"access-control-allow-origin", b"*" if "*" in self._origins else origin),
            (b"access-control-expose-headers", b"etag, retry-after"),
            (b"vary", b"origin"),
        ]

    @staticmethod
    def _preflight(cors: Headers) -> Response:
        return Response(
            204,
            b"",
            [
                *cors,
                (b"access-control-allow-methods", b"POST, GET"),
                (b"access-control-allow-headers", CORS_REQUEST_HEADERS),
                (b"access-control-max-age", b"600"),
            ],
        )

    async def _events(self, scope: Scope, receive: Receive, send: Send, cors: Headers) -> int:
        """``GET /ofrep/v1/events``: ADR-0008's SSE stream of one key's environment; the status it got."""
        if scope["method"] != "GET":
            response = _error(405, "use GET", [(b"allow", b"GET")])
        else:
            request = _Request(scope["headers"])
            found = await self._authenticate(request)
            if isinstance(found, Response):
                response = found
            else:
                # One count of streams for every protocol (data_plane/streams.py): the process's and the
                # key's caps, and OFREP's own per-key cap within them.
                slot = hash_sdk_key(bearer_token(request.metadata))
                try:
                    stream = self.streams.open(
                        PROTOCOL, slot, found[1], protocol_key_limit=self.settings.ofrep_max_streams_per_key
                    )
                except StreamLimitError as exc:
                    response = _error(429, str(exc), [(b"retry-after", b"5")])
                else:
                    self._streams.inc()
                    try:
                        await self._stream(*found, request, receive, send, cors, stream)
                    finally:
                        self._streams.dec()
                        self.streams.close(stream)
                    return 200
        response.headers = response.headers + cors
        await _send(send, response)
        return response.status

    async def _stream(
        self,
        record: SdkKeyRecord,
        env: CachedEnvironment,
        request: _Request,
        receive: Receive,
        send: Send,
        cors: Headers,
        stream: OpenStream,
    ) -> None:
        """Announce every change of ``env`` as ``refetchEvaluation`` (its revision as id and etag), with
        keep-alive comments, until the client leaves, the server stops or the key is revoked or expires."""
        headers = [
            (b"content-type", b"text/event-stream"),
            (b"cache-control", b"no-cache"),
            (b"x-accel-buffering", b"no"),
            *cors,
        ]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        left = asyncio.Event()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            left.set()

        watcher = asyncio.create_task(watch())
        token = bearer_token(request.metadata)
        due = self.keys.next_check(token, record)
        heartbeat = self.settings.sync_heartbeat_seconds
        beat = time.monotonic() + heartbeat
        last = request.last_event_id
        position = (env.generation, int(last)) if last.isdigit() and len(last) < 19 else None
        chunk = b"retry: %d\n\n" % SSE_RETRY_MS
        try:
            while not left.is_set() and not self.closing.is_set():
                changed = env.changed  # taken before comparing, so no change is missed
                if position is not None and position != (env.generation, env.revision):
                    data = orjson.dumps({"type": "refetchEvaluation", "etag": f'"{env.revision}"'})
                    chunk += b"id: %d\nevent: message\ndata: %s\n\n" % (env.revision, data)
                position = (env.generation, env.revision)
                if chunk:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                    stream.progress += 1
                    chunk = b""
                    beat = time.monotonic() + heartbeat
                stream.sent = position[1]
                waits = [asyncio.ensure_future(e.wait()) for e in (changed, left, self.closing)]
                timeout = max(0.0, min(beat, due) - time.monotonic())
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                for waiting in waits:
                    waiting.cancel()
                now = time.monotonic()
                if now >= due:
                    try:
                        record = await self.keys.verify(token)
                    except UnauthenticatedError:
                        break
                    except UnavailableError:  # verified when opened; nothing says it was revoked since
                        due = now + max(self.keys.negative_ttl, MIN_RECHECK_SECONDS)
                    else:
                        due = self.keys.next_check(token, record)
                if now >= beat:
                    chunk += b": keep-alive\n\n"
        finally:
            watcher.cancel()
            with contextlib.suppress(Exception):
                await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _health(self, path: str) -> Response:
        ready, degraded = self.follower.ready, self.follower.degraded
        if path == "/healthz":
            return Response(200, orjson.dumps({"status": "ok"}))
        body = orjson.dumps({"status": "ready" if ready else "not ready", "degraded": degraded})
        return Response(200 if ready else 503, body)


async def _read_body(receive: Receive) -> bytes | None:
    """The request body, or None once it exceeds :data:`MAX_BODY_BYTES`."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _DisconnectedError
        chunk: bytes = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _send(send: Send, response: Response, *, head: bool = False) -> None:
    headers = response.headers
    if response.status not in (204, 304):
        headers = [_JSON, (b"content-length", str(len(response.body)).encode()), *headers]
    await send({"type": "http.response.start", "status": response.status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if head else response.body})


# --- the HTTP server ----------------------------------------------------------------------------------------

_TOO_LARGE = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
    b"connection: close\r\ncontent-length: %d\r\n\r\n%s"
)


class _HeadersTooLargeError(Exception):
    pass


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on the request line and headers (llhttp has none).

    Complete headers are measured as they are parsed; headers still incomplete are measured by the bytes
    received for them, so a client never makes this process hold more than the bound plus one read.
    """

    _header_bytes = 0
    _header_count = 0
    _in_headers = True
    _too_large = False

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_bytes = 0
        self._header_count = 0
        self._in_headers = True

    def on_url(self, url: bytes) -> None:
        self._measure(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._measure(len(name) + len(value) + 4, 1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_headers = False
        super().on_headers_complete()

    def _measure(self, size: int, count: int) -> None:
        self._header_bytes += size
        self._header_count += count
        if self._header_bytes > MAX_HEADER_BYTES or self._header_count > MAX_HEADERS:
            self._too_large = True
            raise _HeadersTooLargeError

    def data_received(self, data: bytes) -> None:
        received = self._header_bytes
        super().data_received(data)
        if self._in_headers and not self._too_large and received + len(data) > MAX_HEADER_BYTES:
            self._too_large = True
            self.send_400_response("")

    def send_400_response(self, msg: str) -> None:
        if not self._too_large:
            super().send_400_response(msg)
            return
        problem = f"request line and headers over {MAX_HEADER_BYTES} bytes or {MAX_HEADERS} fields"
        details = orjson.dumps({"errorDetails": problem})
        if not self.transport.is_closing():
            self.transport.write(_TOO_LARGE % (len(details), details))
            self.transport.close()


class _EmbeddedServer(uvicorn.Server):
    """uvicorn in the data plane's event loop: the data plane handles the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening-ready TCP socket with SO_REUSEPORT (several processes share the port, as gRPC's).

    ``[::]``, ``::``, ``*`` and the empty host bind every interface of both families, as gRPC does (IPv4's
    only on a host without IPv6)."""
    bare = host.strip("[]")
    if bare in ("", "*", "::"):
        if not socket.has_ipv6:
            return bind_socket("0.0.0.0", port)  # noqa: S104 - the wildcard asked for
        try:
            return _bind(socket.AF_INET6, "::", port)
        except OSError as exc:
            if exc.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
                raise
            return bind_socket("0.0.0.0", port)  # noqa: S104 - the wildcard asked for
    family = socket.getaddrinfo(bare, port, type=socket.SOCK_STREAM)[0][0]
    return _bind(family, bare, port)


def _bind(family: socket.AddressFamily, address: str, port: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6 and address == "::":
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        sock.bind((address, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class OfrepServer:
    """The OFREP HTTP server of one data-plane process, in its event loop (start/stop in that loop)."""

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
        self.app = OfrepApp(settings, follower, keys, metrics, sampler, streams)
        self.port = 0
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> int:
        s = self.settings
        sock = bind_socket(s.ofrep_host, s.ofrep_port)
        self.port = int(sock.getsockname()[1])
        tls = s.data_plane_tls_cert_file is not None and s.data_plane_tls_key_file is not None
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,
            log_level="warning",  # uvicorn's own start and stop lines; the data plane logs its own
            access_log=False,
            http=BoundedHttpToolsProtocol,
            ws="none",
            server_header=False,
            timeout_keep_alive=s.ofrep_keep_alive_seconds,
            limit_concurrency=s.ofrep_max_connections,
            timeout_graceful_shutdown=max(1, math.ceil(s.grace_seconds)),
            ssl_certfile=s.data_plane_tls_cert_file if tls else None,
            ssl_keyfile=s.data_plane_tls_key_file if tls else None,
        )
        server = _EmbeddedServer(config)
        task = asyncio.create_task(server.serve(sockets=[sock]), name="ofrep.server")
        while not server.started:
            if task.done():
                sock.close()
                task.result()
                raise OSError(f"the OFREP server on port {self.port} stopped while starting")
            await asyncio.sleep(0.005)
        self._server, self._task = server, task
        log.info("ofrep.started", port=self.port, tls=tls)
        return self.port

    async def stop(self) -> None:
        if self._server is None or self._task is None:
            return
        self.app.closing.set()
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._server = self._task = None
        log.info("ofrep.stopped")
