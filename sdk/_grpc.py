"""What the remote and local modes share: the channel, the context and result conversions, the mapping
of gRPC statuses to OpenFeature error codes (errors from gRPC stop here), backoff with jitter."""

from __future__ import annotations

import datetime
import os
import random
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import struct_pb2

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.values import struct_to_dict, value_to_python
from flagyard.rule_engine import ErrorCode, EvaluationResult, FlagType, Reason, limits
from flagyard.rule_engine.result import error_result

from .exceptions import ConfigurationError

REASONS: dict[int, Reason] = {
    pb.REASON_STATIC: Reason.STATIC,
    pb.REASON_TARGETING_MATCH: Reason.TARGETING_MATCH,
    pb.REASON_SPLIT: Reason.SPLIT,
    pb.REASON_DEFAULT: Reason.DEFAULT,
    pb.REASON_DISABLED: Reason.DISABLED,
    pb.REASON_ERROR: Reason.ERROR,
    pb.REASON_PREREQUISITE_FAILED: Reason.PREREQUISITE_FAILED,
}
ERROR_CODES: dict[int, ErrorCode | None] = {
    pb.ERROR_CODE_UNSPECIFIED: None,
    pb.ERROR_CODE_PROVIDER_NOT_READY: ErrorCode.PROVIDER_NOT_READY,
    pb.ERROR_CODE_FLAG_NOT_FOUND: ErrorCode.FLAG_NOT_FOUND,
    pb.ERROR_CODE_PARSE_ERROR: ErrorCode.PARSE_ERROR,
    pb.ERROR_CODE_TYPE_MISMATCH: ErrorCode.TYPE_MISMATCH,
    pb.ERROR_CODE_TARGETING_KEY_MISSING: ErrorCode.TARGETING_KEY_MISSING,
    pb.ERROR_CODE_INVALID_CONTEXT: ErrorCode.INVALID_CONTEXT,
    pb.ERROR_CODE_GENERAL: ErrorCode.GENERAL,
}
FLAG_TYPES: dict[int, FlagType | None] = {
    pb.FLAG_TYPE_UNSPECIFIED: None,
    pb.FLAG_TYPE_BOOLEAN: FlagType.BOOLEAN,
    pb.FLAG_TYPE_STRING: FlagType.STRING,
    pb.FLAG_TYPE_INTEGER: FlagType.INTEGER,
    pb.FLAG_TYPE_FLOAT: FlagType.FLOAT,
    pb.FLAG_TYPE_OBJECT: FlagType.OBJECT,
}
METHODS: dict[FlagType, str] = {
    FlagType.BOOLEAN: "ResolveBoolean",
    FlagType.STRING: "ResolveString",
    FlagType.INTEGER: "ResolveInteger",
    FlagType.FLOAT: "ResolveFloat",
    FlagType.OBJECT: "ResolveObject",
}

RETRYABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
"""Codes an evaluation is retried on. UNAVAILABLE means the call never reached a handler or the server
went away (refused, reset, shutting down, Redis unreachable for a key not cached yet): an idempotent read
may safely go again. DEADLINE_EXCEEDED is not retried: the deadline is the caller's whole budget for
the evaluation, so none is left, and retrying a slow server on a fresh deadline multiplies the latency the
app sees and the load on an overloaded data plane. UNAUTHENTICATED and INVALID_ARGUMENT never succeed on
a retry."""

CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    # The data plane sends no larger message (snapshots come in chunks), and accepts no larger one.
    ("grpc.max_receive_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
    ("grpc.max_send_message_length", limits.MAX_GRPC_MESSAGE_BYTES),
    # Pings find a dead connection under an idle stream; the data plane allows one every 10 s.
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 10_000),
    ("grpc.keepalive_permit_without_calls", 1),
    # gRPC's own reconnect backoff (up to 120 s by default) would outlast ours: keep it short.
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 5_000),
    # A connection of its own: after a fork, or beside another client in the process, nothing is shared.
    ("grpc.use_local_subchannel_pool", 1),
]


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with "equal jitter": attempt ``n`` waits between half and all of
    ``min(maximum, initial * multiplier**n)``, so clients spread out and never retry with no wait."""

    initial: float
    maximum: float
    multiplier: float = 2.0

    def delay(self, attempt: int) -> float:
        cap = min(self.maximum, self.initial * self.multiplier ** min(attempt, 64))
        return random.uniform(cap / 2, cap)  # noqa: S311 - jitter, not cryptography


def metadata_for(sdk_key: str) -> tuple[tuple[str, str], ...]:
    if not sdk_key or any(c in sdk_key for c in "\r\n"):
        raise ConfigurationError("sdk_key must be a non-empty single-line string")
    return (("authorization", f"Bearer {sdk_key}"),)


def channel_options(extra: Mapping[str, Any] | None) -> list[tuple[str, Any]]:
    options = dict(CHANNEL_OPTIONS)
    options.update(extra or {})
    return list(options.items())


def check_target(target: str | None) -> str:
    if not target or not isinstance(target, str):
        raise ConfigurationError("target must be the data plane's address, e.g. 'localhost:50051'")
    return target


# --- context -------------------------------------------------------------------------------------------


def to_struct(context: Mapping[str, Any]) -> struct_pb2.Struct:
    """The context as a Struct. Values JSON cannot carry become JSON: tuples and sets lists, datetimes
    ISO 8601, anything else its ``str``. Numbers travel as doubles (exact up to 2**53).

    ValueError if it encodes to more than ``MAX_CONTEXT_BYTES``: the data plane would refuse it
    (INVALID_ARGUMENT), so it is not sent and the caller's default is served with INVALID_CONTEXT.
    """
    struct = struct_pb2.Struct()
    if context:
        try:
            struct.update(context)
        except (ValueError, TypeError, AttributeError):
            struct = struct_pb2.Struct()
            struct.update(_jsonable(dict(context)))
        size = struct.ByteSize()
        if size > limits.MAX_CONTEXT_BYTES:
            raise ValueError(
                f"context is {size} bytes encoded, over the data plane's limit of {limits.MAX_CONTEXT_BYTES}"
            )
    return struct


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime.datetime | datetime.date):
        return value.isoformat()
    return str(value)


# --- results -------------------------------------------------------------------------------------------


def result_of(response: Any, default: Any, flag_type: FlagType) -> EvaluationResult:
    """A typed Resolve response as an EvaluationResult; the caller's default when no value is set."""
    if flag_type is FlagType.OBJECT:
        has_value = response.HasField("value")
        value = value_to_python(response.value) if has_value else default
    elif response.HasField("value"):
        has_value = True
        value = response.value
    else:
        has_value = False
        value = default
    return EvaluationResult(
        value,
        response.variant if has_value and response.HasField("variant") else None,
        REASONS.get(response.reason, Reason.ERROR),
        ERROR_CODES.get(response.error_code, ErrorCode.GENERAL),
        response.error_message or None,
        None,
        struct_to_dict(response.flag_metadata) if response.flag_metadata.fields else {},
        response.version if response.HasField("version") else None,
    )


def resolution_of(resolution: pb.FlagResolution) -> EvaluationResult:
    """One flag of a ResolveAll response; ``None`` as the value when the default is to be served."""
    case = resolution.WhichOneof("value")
    if case is None:
        value = None
    elif case == "object_value":
        value = value_to_python(resolution.object_value)
    else:
        value = getattr(resolution, case)
    return EvaluationResult(
        value,
        resolution.variant if case is not None and resolution.HasField("variant") else None,
        REASONS.get(resolution.reason, Reason.ERROR),
        ERROR_CODES.get(resolution.error_code, ErrorCode.GENERAL),
        resolution.error_message or None,
        None,
        struct_to_dict(resolution.flag_metadata) if resolution.flag_metadata.fields else {},
        resolution.version if resolution.HasField("version") else None,
    )


def status_of(exc: BaseException) -> grpc.StatusCode | None:
    """The status code of a failed call (sync or grpc.aio); ``None`` if it has none."""
    code = getattr(exc, "code", None)
    if not callable(code):
        return None
    value = code()
    return value if isinstance(value, grpc.StatusCode) else None


def status_message(exc: BaseException) -> tuple[grpc.StatusCode | None, str]:
    """The status code and a one-line description of a failed call."""
    code = status_of(exc)
    get_details = getattr(exc, "details", None)
    details = get_details() if callable(get_details) else str(exc)
    name = code.name if code is not None else type(exc).__name__
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return code, f"SDK key rejected by the data plane (UNAUTHENTICATED: {details})"
    return code, f"data plane call failed ({name}: {details})"


def failure(default: Any, message: str, code: ErrorCode = ErrorCode.GENERAL) -> EvaluationResult:
    return error_result(default, code, message)


# --- fork ----------------------------------------------------------------------------------------------


def on_fork_in_child(owner: object, method: Callable[[Any], None]) -> None:
    """Run ``method(owner)`` in the child after every ``os.fork`` while ``owner`` is alive (weakly held:
    ``os.register_at_fork`` cannot unregister)."""
    ref = weakref.ref(owner)

    def hook() -> None:
        target = ref()
        if target is not None:
            method(target)

    os.register_at_fork(after_in_child=hook)
