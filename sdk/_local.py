"""Local mode: the environment's configuration streamed by SyncFlags, evaluated in process.

Three parts, each with one job:

- :class:`~flagyard.sdk._sync_state.SyncState` holds the flags and the stream position and applies each
  message (no transport, no threads);
- :class:`SyncConnector` holds the stream in one daemon thread (``flagyard-sync``): it opens it from the
  state's position, hands every message over, and when the stream breaks reconnects with exponential
  backoff and jitter, so only the missed changes come (or a snapshot, if the data plane no longer knows the
  position);
- :class:`LocalResolver` evaluates from the state and keeps the status
  (:class:`~flagyard.sdk._status.ProviderStatus`): READY at the first snapshot, ERROR when the data plane
  cannot be reached before it, STALE once disconnected for ``stale_after`` seconds after it (the last known
  flags keep being served), READY again at the reconnection. A rejected SDK key (UNAUTHENTICATED, at
  connection or when the data plane ends an open stream because the key was revoked or expired) is FATAL:
  the streamed flags are no longer served (only the bootstrap file's, else defaults), and the key is retried
  on a slow schedule, never in a hot loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import Any, Protocol

import grpc

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc
from flagyard.rule_engine import ErrorCode, EvaluationResult, Explanation, FlagSet, FlagType, explain
from flagyard.rule_engine.result import error_result

from ._grpc import Backoff, channel_options, check_target, metadata_for, on_fork_in_child, status_message
from ._resolver import Listener, changed_flags
from ._status import ProviderStatus, StatusMachine
from ._sync_state import SyncState
from .exceptions import ConfigurationError

_REJECTED = "SDK key rejected by the data plane"


class StreamHandler(Protocol):
    """What the connector feeds: it asks where to resume, hands over messages, reports breaks."""

    def request(self) -> pb.SyncFlagsRequest:
        """The request opening the next stream (called once per stream, from the connector's thread)."""
        ...

    def received(self, message: pb.SyncFlagsResponse) -> None:
        """One message, in order; raising makes the connector reconnect and report ``resync``."""
        ...

    def broken(self, code: grpc.StatusCode | None, reason: str, *, resync: bool) -> None:
        """The stream ended (``code`` its status, if any); ``resync``: a message could not be applied."""
        ...


class SyncConnector:
    """The SyncFlags stream to the data plane, held by one daemon thread and reopened with backoff
    (``auth_backoff`` after UNAUTHENTICATED). Fork-safe: the child opens its own channel and thread."""

    def __init__(
        self,
        target: str,
        metadata: tuple[tuple[str, str], ...],
        handler: StreamHandler,
        *,
        backoff: Backoff,
        auth_backoff: Backoff,
        credentials: grpc.ChannelCredentials | None,
        options: list[tuple[str, Any]],
    ) -> None:
        self._target = target
        self._metadata = metadata
        self._handler = handler
        self._backoff = backoff
        self._auth_backoff = auth_backoff
        self._credentials = credentials
        self._options = options
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._call: Any = None
        self._channel: grpc.Channel
        self._stub: pb_grpc.SyncServiceStub
        self._thread: threading.Thread

    def start(self) -> None:
        if self._credentials is not None:
            self._channel = grpc.secure_channel(self._target, self._credentials, self._options)
        else:
            self._channel = grpc.insecure_channel(self._target, self._options)
        self._stub = pb_grpc.SyncServiceStub(self._channel)
        self._thread = threading.Thread(target=self._run, name="flagyard-sync", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            call, self._call = self._call, None
        if call is not None:
            call.cancel()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._channel.close()

    def restart_after_fork(self) -> None:
        """New locks, channel and thread in a forked child; the parent's stay the parent's."""
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._call = None
        self.start()

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            backoff = self._backoff
            code: grpc.StatusCode | None = None
            resync = False
            try:
                call: Any = self._stub.SyncFlags(self._handler.request(), metadata=self._metadata)
                with self._lock:
                    if self._stop.is_set():
                        call.cancel()
                        return
                    self._call = call
                for message in call:
                    self._handler.received(message)
                    attempt = 0
                reason = "the data plane ended the stream"
            except grpc.RpcError as exc:
                if self._stop.is_set():
                    return
                code, reason = status_message(exc)
                if code is grpc.StatusCode.UNAUTHENTICATED:
                    backoff = self._auth_backoff
            except Exception as exc:  # a message this client could not apply: start over from a snapshot
                reason = f"resynchronising: {type(exc).__name__}: {exc}"
                resync = True
            finally:
                with self._lock:
                    self._call = None
            if self._stop.is_set():
                return
            self._handler.broken(code, reason, resync=resync)
            self._stop.wait(backoff.delay(attempt))
            attempt += 1


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
        self._bootstrap = bootstrap
        self._stale_after = stale_after
        self._state = SyncState()
        self._status = StatusMachine()
        self._serving: FlagSet | None = None
        """The streamed flags while they may be served (not before the first snapshot, not while FATAL):
        the one attribute an evaluation reads."""
        self._ready = threading.Event()
        """Set at the first snapshot (for :meth:`wait_ready`)."""
        self._connected = False
        self._disconnected_at: float | None = None
        self._stale_timer: threading.Timer | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._connector = SyncConnector(
            check_target(target),
            metadata_for(sdk_key),
            self,
            backoff=backoff,
            auth_backoff=auth_backoff,
            credentials=credentials,
            options=channel_options(options),
        )
        self._connector.start()
        on_fork_in_child(self, LocalResolver._after_fork)
        if ready_timeout > 0:
            self.wait_ready(ready_timeout)

    # --- the app's side ---

    @property
    def status(self) -> ProviderStatus:
        return self._status.status

    @property
    def flagset(self) -> FlagSet | None:
        """The live flags (``None`` before the first snapshot); read-only for callers."""
        return self._state.flagset

    @property
    def revision(self) -> int | None:
        """The environment revision of the flags served (``None`` before the first snapshot)."""
        return self._state.revision

    def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the first snapshot (less if the key is rejected); whether it came."""
        deadline = time.monotonic() + timeout
        while not self._ready.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
            if self._status.status is ProviderStatus.FATAL or self._closed or time.monotonic() >= deadline:
                return False
        return True

    def resolve(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType
    ) -> EvaluationResult:
        flagset = self._serving
        if flagset is not None:
            return flagset.evaluate(key, default, context, flag_type)
        if self._bootstrap is not None:
            return self._bootstrap.evaluate(key, default, context, flag_type)
        if self._status.status is ProviderStatus.FATAL:
            return error_result(default, ErrorCode.GENERAL, _REJECTED)
        return error_result(default, ErrorCode.PROVIDER_NOT_READY, "no configuration received yet")

    def explain(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType | None
    ) -> Explanation:
        """The evaluation of ``key`` with its trace, from the flags :meth:`resolve` would use (the streamed
        ones, else the bootstrap file's); before any, the default with the error :meth:`resolve` gives."""
        flagset = self._serving
        if flagset is None:
            flagset = self._bootstrap
        if flagset is not None:
            return explain(flagset, key, context, default, flag_type)
        if self._status.status is ProviderStatus.FATAL:
            return Explanation(error_result(default, ErrorCode.GENERAL, _REJECTED), None)
        return Explanation(
            error_result(default, ErrorCode.PROVIDER_NOT_READY, "no configuration received yet"), None
        )

    def resolve_all(self, context: Mapping[str, Any]) -> dict[str, EvaluationResult]:
        flagset = self._serving or self._bootstrap
        return flagset.evaluate_all(context) if flagset is not None else {}

    def add_listener(self, listener: Listener) -> None:
        self._status.add_listener(listener)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            timer, self._stale_timer = self._stale_timer, None
        if timer is not None:
            timer.cancel()
        self._connector.close()

    # --- fed by the connector (its thread) ---

    def request(self) -> pb.SyncFlagsRequest:
        self._state.restart_stream()
        return self._state.request()

    def received(self, message: pb.SyncFlagsResponse) -> None:
        applied = self._state.apply(message)
        if applied is None:
            return
        self._connected_now()
        flagset = self._state.flagset
        assert flagset is not None  # SyncState.apply raises before any snapshot
        note = "definitions skipped: " + "; ".join(applied.skipped) if applied.skipped else None
        changed = applied.changed
        if applied.first:
            changed = changed_flags(self._bootstrap, flagset) if self._bootstrap is not None else []
            self._ready.set()
        self._serving = flagset
        self._status.move(ProviderStatus.READY, note)
        self._status.changed(changed, note)

    def broken(self, code: grpc.StatusCode | None, reason: str, *, resync: bool) -> None:
        if code is grpc.StatusCode.UNAUTHENTICATED:
            self._serving = None
            self._cancel_stale_timer()
            self._status.move(ProviderStatus.FATAL, reason)
        elif resync or code is grpc.StatusCode.INVALID_ARGUMENT:
            self._state.forget_position()
        self._disconnected(reason)

    # --- connection state ---

    def _connected_now(self) -> None:
        if self._connected:
            return
        with self._lock:
            self._connected = True
            self._disconnected_at = None
        self._cancel_stale_timer()

    def _cancel_stale_timer(self) -> None:
        with self._lock:
            timer, self._stale_timer = self._stale_timer, None
        if timer is not None:
            timer.cancel()

    def _disconnected(self, reason: str) -> None:
        if self._state.flagset is None:  # never connected yet: tell the app once why it gets defaults
            self._status.move(ProviderStatus.ERROR, reason)
        with self._lock:
            self._connected = False
            if self._disconnected_at is None:
                self._disconnected_at = time.monotonic()
            if self._status.status is ProviderStatus.READY and self._stale_timer is None:
                delay = max(0.0, self._disconnected_at + self._stale_after - time.monotonic())
                timer = threading.Timer(delay, self._mark_stale, (reason,))
                timer.daemon = True
                timer.name = "flagyard-stale"
                self._stale_timer = timer
                timer.start()

    def _mark_stale(self, reason: str) -> None:
        with self._lock:
            if self._stale_timer is threading.current_thread():
                self._stale_timer = None
        message = f"disconnected from the data plane: {reason}"
        # Checked in turn with the READY of a reconnection (which sets _connected first), so a timer that
        # fires as the stream comes back cannot leave STALE behind it.
        self._status.move(ProviderStatus.STALE, message, when=lambda: not (self._connected or self._closed))

    def _after_fork(self) -> None:
        if self._closed:
            return
        self._status.reset_after_fork()
        ready = self._ready.is_set()
        self._ready = threading.Event()
        if ready:
            self._ready.set()
        self._connected = False
        self._lock = threading.Lock()
        self._stale_timer = None
        self._connector.restart_after_fork()
