"""Local mode: the environment's configuration streamed by SyncFlags, evaluated in process.

One daemon thread (``flagyard-sync``) holds the stream: it builds a FlagSet from the snapshot, applies
each change to it (``put_flag``/``remove_flag``/``put_segment``/``remove_segment``; evaluations read it
lock-free meanwhile) and remembers the position (revision, event id) of the last message. When the
stream breaks it reconnects with exponential backoff and jitter, resuming from that position, so only the
missed changes come (or a snapshot, if the data plane no longer knows the position). A timer marks the
resolver STALE once it has been disconnected for ``stale_after`` seconds; the last known flags keep being
served, and READY follows the reconnection. A rejected SDK key (UNAUTHENTICATED, at connection or when the
data plane ends an open stream because the key was revoked or expired) is fatal: reported once (ERROR,
which the provider forwards as PROVIDER_FATAL; no STALE after it), the streamed flags are no longer served
(only the bootstrap file's, else defaults), and it is retried on a slow schedule, never in a hot loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import grpc
import orjson

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc
from flagyard.rule_engine import (
    CompiledFlag,
    CompiledSegment,
    ErrorCode,
    EvaluationResult,
    Flag,
    FlagSet,
    FlagType,
    Operator,
    Segment,
    compile_flag,
    compile_segment,
)
from flagyard.rule_engine.result import error_result
from flagyard.rule_engine.targeting import referenced_segments

from ._grpc import Backoff, channel_options, check_target, metadata_for, on_fork_in_child, status_message
from ._resolver import Listener, Listeners, ProviderEvent, changed_flags, notify
from .exceptions import ConfigurationError

_REJECTED = "SDK key rejected by the data plane"


class _ResyncError(Exception):
    """The stream said something this client cannot apply: reconnect for a snapshot."""


class LocalResolver:
    """Local mode. Thread-safe; fork-safe (the child opens its own channel and stream and resumes from the
    parent's position, keeping the parent's flags meanwhile)."""

    def __init__(
        self,
        target: str,
        sdk_key: str,
        *,
        bootstrap: FlagSet | None = None,
        ready_timeout: float = 0.0,
        stale_after: float = 10.0,
        backoff: Backoff = Backoff(0.5, 30.0),  # noqa: B008 - frozen
        auth_backoff: Backoff = Backoff(30.0, 300.0),  # noqa: B008 - frozen
        credentials: grpc.ChannelCredentials | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        if stale_after < 0:
            raise ConfigurationError("stale_after must be >= 0")
        self._target = check_target(target)
        self._metadata = metadata_for(sdk_key)
        self._bootstrap = bootstrap
        self._stale_after = stale_after
        self._backoff = backoff
        self._auth_backoff = auth_backoff
        self._credentials = credentials
        self._options = channel_options(options)
        self._listeners = Listeners()
        self._flagset: FlagSet | None = None
        self._revision: int | None = None
        self._event_id = ""
        self._chunks: list[pb.Definition] = []
        self._pending_changed: list[str] = []
        self._ready = threading.Event()
        self._fatal = False
        self._connected = False
        self._stale = False
        self._disconnected_at: float | None = None
        self._error_reported = False
        self._last_error: str | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._call: Any = None
        self._stale_timer: threading.Timer | None = None
        self._channel: grpc.Channel
        self._stub: pb_grpc.SyncServiceStub
        self._thread: threading.Thread
        self._start()
        on_fork_in_child(self, LocalResolver._after_fork)
        if ready_timeout > 0:
            self.wait_ready(ready_timeout)

    # --- the app's side ---

    @property
    def ready(self) -> bool:
        return self._ready.is_set() and not self._fatal

    @property
    def fatal(self) -> bool:
        return self._fatal

    @property
    def stale(self) -> bool:
        return self._stale

    @property
    def flagset(self) -> FlagSet | None:
        """The live flags (``None`` before the first snapshot); read-only for callers."""
        return self._flagset

    @property
    def revision(self) -> int | None:
        """The environment revision of the flags served (``None`` before the first snapshot)."""
        return self._revision

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the first snapshot (less if the key is rejected); whether it came."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if self._fatal or self._closed or time.monotonic() >= deadline:
                return False
        return True

    def resolve(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType
    ) -> EvaluationResult:
        flagset = self._flagset
        if flagset is not None and not self._fatal:
            return flagset.evaluate(key, default, context, flag_type)
        if self._bootstrap is not None:
            return self._bootstrap.evaluate(key, default, context, flag_type)
        if self._fatal:
            return error_result(default, ErrorCode.GENERAL, _REJECTED)
        return error_result(default, ErrorCode.PROVIDER_NOT_READY, "no configuration received yet")

    def resolve_all(self, context: Mapping[str, Any]) -> dict[str, EvaluationResult]:
        flagset = self._bootstrap if self._fatal else self._flagset or self._bootstrap
        return flagset.evaluate_all(context) if flagset is not None else {}

    def add_listener(self, listener: Listener) -> None:
        self._listeners.add(listener)
        if self._ready.is_set() and not self._fatal:
            notify(listener, ProviderEvent.STALE if self._stale else ProviderEvent.READY)
        elif self._error_reported:
            notify(listener, ProviderEvent.ERROR, self._last_error)

    def close(self) -> None:
        self._closed = True
        self._stop.set()
        with self._lock:
            call, self._call = self._call, None
            timer, self._stale_timer = self._stale_timer, None
        if call is not None:
            call.cancel()
        if timer is not None:
            timer.cancel()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._channel.close()

    # --- the stream ---

    def _start(self) -> None:
        if self._credentials is not None:
            self._channel = grpc.secure_channel(self._target, self._credentials, self._options)
        else:
            self._channel = grpc.insecure_channel(self._target, self._options)
        self._stub = pb_grpc.SyncServiceStub(self._channel)
        self._thread = threading.Thread(target=self._run, name="flagyard-sync", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            self._chunks = []  # a snapshot cut short by a broken stream comes again whole
            request = pb.SyncFlagsRequest(event_id=self._event_id)
            if self._revision is not None:
                request.revision = self._revision
            backoff = self._backoff
            try:
                call: Any = self._stub.SyncFlags(request, metadata=self._metadata)
                with self._lock:
                    if self._stop.is_set():
                        call.cancel()
                        return
                    self._call = call
                for message in call:
                    self._handle(message)
                    attempt = 0
                reason = "the data plane ended the stream"
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                code, reason = status_message(exc)
                if code is grpc.StatusCode.UNAUTHENTICATED:
                    backoff = self._auth_backoff
                    self._rejected(reason)
                elif code is grpc.StatusCode.INVALID_ARGUMENT:
                    self._forget_position()
            except Exception as exc:  # a message this client could not apply: start over from a snapshot
                reason = f"resynchronising: {type(exc).__name__}: {exc}"
                self._forget_position()
            finally:
                with self._lock:
                    self._call = None
            if self._stop.is_set():
                return
            self._disconnected(reason)
            self._stop.wait(backoff.delay(attempt))
            attempt += 1

    def _forget_position(self) -> None:
        self._revision, self._event_id, self._chunks = None, "", []

    def _handle(self, message: pb.SyncFlagsResponse) -> None:
        payload = message.WhichOneof("payload")
        if payload == "snapshot":
            self._chunks.extend(message.snapshot.definitions)
            if message.snapshot.more:
                return
            definitions, self._chunks = self._chunks, []
            self._apply_snapshot(definitions, message.snapshot.metadata)
        elif payload == "change":
            self._apply_change(message.change)
        elif self._flagset is None:
            raise _ResyncError("a heartbeat before any snapshot")
        self._revision, self._event_id = message.revision, message.event_id
        self._connected_now()
        if payload == "snapshot" and not self._ready.is_set():
            self._ready.set()
            self._listeners.emit(ProviderEvent.READY)
            before = self._bootstrap
            if before is not None and self._flagset is not None:
                self._emit_changed(changed_flags(before, self._flagset))
        elif payload in ("snapshot", "change"):
            self._emit_changed(self._pending_changed)

    def _apply_snapshot(self, definitions: Iterable[pb.Definition], metadata: Mapping[str, str]) -> None:
        flags: list[CompiledFlag] = []
        segments: list[CompiledSegment] = []
        problems: list[str] = []
        for definition in definitions:
            try:
                compiled = _compile(definition)
            except Exception as exc:  # one bad definition must not cost the whole environment
                problems.append(f"{definition.key}: {exc}")
                continue
            if isinstance(compiled, CompiledFlag):
                flags.append(compiled)
            elif compiled is not None:
                segments.append(compiled)
        flagset = FlagSet(flags, segments, dict(metadata))
        old = self._flagset
        self._pending_changed = changed_flags(old, flagset) if old is not None else []
        self._flagset = flagset
        if problems:
            self._listeners.emit(ProviderEvent.ERROR, message="definitions skipped: " + "; ".join(problems))

    def _apply_change(self, change: pb.Change) -> None:
        flagset = self._flagset
        if flagset is None:
            raise _ResyncError("a change before any snapshot")
        definition = change.definition
        kind, key = definition.kind, definition.key
        if change.operation == pb.OPERATION_PUT:
            compiled = _compile(definition)
            if isinstance(compiled, CompiledFlag):
                flagset.put_flag(compiled)
            elif compiled is not None:
                flagset.put_segment(compiled)
        elif change.operation == pb.OPERATION_DELETE:
            if kind == pb.DEFINITION_KIND_FLAG:
                flagset.remove_flag(key)
            elif kind == pb.DEFINITION_KIND_SEGMENT:
                flagset.remove_segment(key)
        self._pending_changed = affected_flags(flagset, kind, key)

    def _emit_changed(self, keys: list[str]) -> None:
        if keys:
            self._listeners.emit(ProviderEvent.CONFIGURATION_CHANGED, keys)

    # --- connection state ---

    def _connected_now(self) -> None:
        if self._connected:
            return
        with self._lock:
            self._connected = True
            self._disconnected_at = None
            timer, self._stale_timer = self._stale_timer, None
            was_stale, self._stale = self._stale, False
            was_failing = self._fatal or self._error_reported
            self._fatal = self._error_reported = False
        if timer is not None:
            timer.cancel()
        if (was_stale or was_failing) and self._ready.is_set():
            self._listeners.emit(ProviderEvent.READY)

    def _disconnected(self, reason: str) -> None:
        with self._lock:
            self._connected = False
            if self._disconnected_at is None:
                self._disconnected_at = time.monotonic()
            report = not self._ready.is_set() and not self._error_reported
            self._last_error = reason
            self._error_reported = self._error_reported or report
            if self._ready.is_set() and not self._stale and not self._fatal and self._stale_timer is None:
                delay = max(0.0, self._disconnected_at + self._stale_after - time.monotonic())
                timer = threading.Timer(delay, self._mark_stale, (reason,))
                timer.daemon = True
                timer.name = "flagyard-stale"
                self._stale_timer = timer
                timer.start()
        if report:  # never connected yet: tell the app once why it gets defaults
            self._listeners.emit(ProviderEvent.ERROR, message=reason)

    def _mark_stale(self, reason: str) -> None:
        with self._lock:
            if self._connected or self._stale or self._closed or self._fatal:
                return
            self._stale = True
            self._stale_timer = None
        self._listeners.emit(ProviderEvent.STALE, message=f"disconnected from the data plane: {reason}")

    def _rejected(self, reason: str) -> None:
        with self._lock:
            first = not self._fatal
            self._fatal = self._error_reported = True
            self._last_error = reason
            timer, self._stale_timer = self._stale_timer, None
        if timer is not None:
            timer.cancel()
        if first:
            self._listeners.emit(ProviderEvent.ERROR, message=reason)

    def _after_fork(self) -> None:
        if self._closed:
            return
        self._listeners.reset_after_fork()
        ready = self._ready.is_set()
        self._ready = threading.Event()
        if ready:
            self._ready.set()
        self._connected = False
        self._chunks = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._call = None
        self._stale_timer = None
        self._start()  # the parent's channel, stream and threads stay the parent's


def _compile(definition: pb.Definition) -> CompiledFlag | CompiledSegment | None:
    """A definition as the data plane sent it (validated when it was written); ``None`` if of unknown kind."""
    if definition.kind == pb.DEFINITION_KIND_FLAG:
        return compile_flag(Flag.model_validate(orjson.loads(definition.json)))
    if definition.kind == pb.DEFINITION_KIND_SEGMENT:
        return compile_segment(Segment.model_validate(orjson.loads(definition.json)))
    return None


def affected_flags(flagset: FlagSet, kind: int, key: str) -> list[str]:
    """Flags whose evaluation a change of flag or segment ``key`` may change: the flag itself, flags
    matching the segment (directly or through other segments) and flags having any of those as a
    prerequisite."""
    segments = {key} if kind == pb.DEFINITION_KIND_SEGMENT else set()
    flags = {key} if kind == pb.DEFINITION_KIND_FLAG else set()
    grown = True
    while grown:
        grown = False
        for segment in flagset.segments.values():
            source = segment.source
            if segment.key not in segments and (
                not isinstance(source, Segment)
                or _matched_segments(c for r in source.rules for c in r.clauses) & segments
            ):
                segments.add(segment.key)
                grown = True
        for flag in flagset.flags.values():
            source = flag.source
            if flag.key not in flags and (
                not isinstance(source, Flag)
                or _matched_segments(c for r in source.rules for c in r.clauses) & segments
                or (source.targeting is not None and referenced_segments(source.targeting) & segments)
                or any(p.flag in flags for p in source.prerequisites)
            ):
                flags.add(flag.key)
                grown = True
    return sorted(flags)


def _matched_segments(clauses: Iterable[Any]) -> set[str]:
    return {
        str(value)
        for clause in clauses
        if clause.operator is Operator.SEGMENT_MATCH
        for value in clause.values
    }
