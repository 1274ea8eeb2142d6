"""Conversions between protobuf messages and the rule engine's values and results.

The bulk path (:class:`BulkEncoder`) caches the serialized map entry of each result object: successful
results are built once when a flag is compiled and shared by every evaluation, so a ResolveAll response is
mostly a join of cached bytes (concatenated protobuf messages merge, and map entries are a repeated field).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from google.protobuf import struct_pb2

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.rule_engine import ErrorCode, EvaluationResult, FlagSet, FlagType, Reason
from flagyard.rule_engine.exceptions import EvaluationChainError
from flagyard.rule_engine.result import error_result

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

REASONS: dict[Reason | None, pb.Reason.ValueType] = {
    Reason.STATIC: pb.REASON_STATIC,
    Reason.TARGETING_MATCH: pb.REASON_TARGETING_MATCH,
    Reason.SPLIT: pb.REASON_SPLIT,
    Reason.DEFAULT: pb.REASON_DEFAULT,
    Reason.DISABLED: pb.REASON_DISABLED,
    Reason.ERROR: pb.REASON_ERROR,
    Reason.PREREQUISITE_FAILED: pb.REASON_PREREQUISITE_FAILED,
}
ERROR_CODES: dict[ErrorCode | None, pb.ErrorCode.ValueType] = {
    None: pb.ERROR_CODE_UNSPECIFIED,
    ErrorCode.PROVIDER_NOT_READY: pb.ERROR_CODE_PROVIDER_NOT_READY,
    ErrorCode.FLAG_NOT_FOUND: pb.ERROR_CODE_FLAG_NOT_FOUND,
    ErrorCode.PARSE_ERROR: pb.ERROR_CODE_PARSE_ERROR,
    ErrorCode.TYPE_MISMATCH: pb.ERROR_CODE_TYPE_MISMATCH,
    ErrorCode.TARGETING_KEY_MISSING: pb.ERROR_CODE_TARGETING_KEY_MISSING,
    ErrorCode.INVALID_CONTEXT: pb.ERROR_CODE_INVALID_CONTEXT,
    ErrorCode.GENERAL: pb.ERROR_CODE_GENERAL,
}
FLAG_TYPES: dict[FlagType | None, pb.FlagType.ValueType] = {
    None: pb.FLAG_TYPE_UNSPECIFIED,
    FlagType.BOOLEAN: pb.FLAG_TYPE_BOOLEAN,
    FlagType.STRING: pb.FLAG_TYPE_STRING,
    FlagType.INTEGER: pb.FLAG_TYPE_INTEGER,
    FlagType.FLOAT: pb.FLAG_TYPE_FLOAT,
    FlagType.OBJECT: pb.FLAG_TYPE_OBJECT,
}


# --- context --------------------------------------------------------------------------------------------


# --- results ---------------------------------------------------------------------------------------------


def _metadata(struct: struct_pb2.Struct, metadata: Mapping[str, Any]) -> None:
    if metadata:
        struct.update(metadata)


class ValueOutOfRangeError(ValueError):
    """A flag value the response type cannot carry (an integer beyond int64)."""


def _set_bool(msg: Any, value: Any) -> None:
    msg.value = bool(value)


def _set_string(msg: Any, value: Any) -> None:
    msg.value = str(value)


def _set_integer(msg: Any, value: Any) -> None:
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueOutOfRangeError(f"integer value {value} does not fit int64")
    msg.value = int(value)


def _set_float(msg: Any, value: Any) -> None:
    msg.value = float(value)


def _set_object(msg: Any, value: Any) -> None:
    set_json_value(msg.value, value)


def set_json_value(target: struct_pb2.Value, value: Any) -> None:
    """Write a JSON value (object, array, scalar) into a google.protobuf.Value."""
    if isinstance(value, dict):
        target.struct_value.update(value)
    elif isinstance(value, list):
        target.list_value.extend(value)
    elif value is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int | float):
        target.number_value = value
    else:
        target.string_value = str(value)


Response = (
    pb.ResolveBooleanResponse
    | pb.ResolveStringResponse
    | pb.ResolveIntegerResponse
    | pb.ResolveFloatResponse
    | pb.ResolveObjectResponse
)


class TypedResolver:
    """How one typed Resolve RPC turns an :class:`EvaluationResult` into its response."""

    __slots__ = ("cache", "flag_type", "max_entries", "message", "method", "set_value")

    def __init__(
        self,
        method: str,
        flag_type: FlagType,
        message: type[Response],
        set_value: Callable[[Any, Any], None],
        max_entries: int = 20_000,
    ) -> None:
        self.method = method
        self.flag_type = flag_type
        self.message = message
        self.set_value = set_value
        self.cache: dict[int, tuple[EvaluationResult, bytes]] = {}
        self.max_entries = max_entries

    def encode(self, result: EvaluationResult) -> bytes:
        """The serialized response, cached per result object (as :class:`BulkEncoder` does)."""
        cached = self.cache.get(id(result))
        if cached is not None and cached[0] is result:
            return cached[1]
        if len(self.cache) >= self.max_entries:
            self.cache.clear()
        data = self.response(result).SerializeToString()
        self.cache[id(result)] = (result, data)
        return data

    def response(self, result: EvaluationResult) -> Response:
        msg = self.message(
            reason=REASONS[result.reason],
            error_code=ERROR_CODES[result.error_code],
            error_message=result.error_message or "",
        )
        if result.variant is not None:
            try:
                self.set_value(msg, result.value)
            except (ValueOutOfRangeError, TypeError, ValueError) as exc:
                return self.message(
                    reason=pb.REASON_ERROR,
                    error_code=pb.ERROR_CODE_PARSE_ERROR,
                    error_message=f"flag value cannot be sent as {self.flag_type}: {exc}",
                    version=result.version,
                )
            msg.variant = result.variant
        if result.version is not None:
            msg.version = result.version
        _metadata(msg.flag_metadata, result.flag_metadata)
        return msg


RESOLVERS = {
    r.method: r
    for r in (
        TypedResolver("ResolveBoolean", FlagType.BOOLEAN, pb.ResolveBooleanResponse, _set_bool),
        TypedResolver("ResolveString", FlagType.STRING, pb.ResolveStringResponse, _set_string),
        TypedResolver("ResolveInteger", FlagType.INTEGER, pb.ResolveIntegerResponse, _set_integer),
        TypedResolver("ResolveFloat", FlagType.FLOAT, pb.ResolveFloatResponse, _set_float),
        TypedResolver("ResolveObject", FlagType.OBJECT, pb.ResolveObjectResponse, _set_object),
    )
}


def flag_resolution(result: EvaluationResult, flag_type: FlagType | None) -> pb.FlagResolution:
    """One flag of a bulk evaluation."""
    msg = pb.FlagResolution(
        reason=REASONS[result.reason],
        error_code=ERROR_CODES[result.error_code],
        error_message=result.error_message or "",
        type=FLAG_TYPES[flag_type],
    )
    if result.variant is not None:
        value = result.value
        if flag_type is FlagType.BOOLEAN:
            msg.bool_value = bool(value)
        elif flag_type is FlagType.STRING:
            msg.string_value = str(value)
        elif flag_type is FlagType.INTEGER:
            if not INT64_MIN <= value <= INT64_MAX:
                return pb.FlagResolution(
                    reason=pb.REASON_ERROR,
                    error_code=pb.ERROR_CODE_PARSE_ERROR,
                    error_message=f"integer value {value} does not fit int64",
                    type=FLAG_TYPES[flag_type],
                    version=result.version,
                )
            msg.integer_value = int(value)
        elif flag_type is FlagType.FLOAT:
            msg.float_value = float(value)
        else:
            set_json_value(msg.object_value, value)
        msg.variant = result.variant
    if result.version is not None:
        msg.version = result.version
    _metadata(msg.flag_metadata, result.flag_metadata)
    return msg


class BulkEncoder:
    """Serialized ``ResolveAllResponse.flags`` entries, cached per result object, with evaluation counts.

    An entry is ``[result, bytes, flag key, pending count]``; keeping the result in the entry keeps its
    ``id`` from being reused while cached. When the cache holds more than ``max_entries`` its counts are
    set aside and it is cleared: results built per call (errors, the caller's default) churn it, the
    shared ones are encoded again once after a clear.
    """

    __slots__ = ("cache", "max_entries", "spilled")

    def __init__(self, max_entries: int = 50_000) -> None:
        self.cache: dict[int, list[Any]] = {}
        self.max_entries = max_entries
        self.spilled: list[tuple[str, str | None, str, int]] = []

    def entry(self, key: str, result: EvaluationResult, flag_type: FlagType | None) -> list[Any]:
        """The cache entry of ``result``; the caller increments ``entry[3]`` and uses ``entry[1]``."""
        entry = self.cache.get(id(result))
        if entry is not None and entry[0] is result:
            return entry
        if len(self.cache) >= self.max_entries:
            self.spilled += self._counts()
            self.cache.clear()
        data = pb.ResolveAllResponse(flags={key: flag_resolution(result, flag_type)}).SerializeToString()
        entry = [result, data, key, 0]
        self.cache[id(result)] = entry
        return entry

    def _counts(self) -> list[tuple[str, str | None, str, int]]:
        counts = []
        for entry in self.cache.values():
            if entry[3]:
                result: EvaluationResult = entry[0]
                flag = "other" if result.error_code is ErrorCode.FLAG_NOT_FOUND else entry[2]
                counts.append((flag, result.variant, str(result.reason), entry[3]))
                entry[3] = 0
        return counts

    def take_counts(self) -> list[tuple[str, str | None, str, int]]:
        """(flag, variant, reason, count) of the evaluations since the last call."""
        counts, self.spilled = self.spilled, []
        return counts + self._counts()


def revision_field(revision: int) -> bytes:
    return pb.ResolveAllResponse(revision=revision).SerializeToString()


def resolve_all(
    flagset: FlagSet, context: dict[str, Any], keys: Sequence[str], revision: int, encoder: BulkEncoder
) -> bytes:
    """A serialized ResolveAllResponse: every flag (or the ``keys`` given) evaluated for ``context``.

    Every flag is evaluated as ``FlagSet.evaluate(key, None, context)`` would, but calling the compiled
    flag directly (the caller's default is None and the context a dict, so FlagSet's checks and the
    default substitution are moot: a value is only encoded when a variant is served).
    """
    parts: list[bytes] = []
    append = parts.append
    cache = encoder.cache
    entry = encoder.entry
    flags = flagset.flags
    items = flags.items() if not keys else [(k, flags.get(k)) for k in dict.fromkeys(keys)]
    for key, flag in items:
        if flag is None:
            result = flagset.evaluate(key, None, context)
        else:
            try:
                result = flag.evaluate(context, flagset)
            except EvaluationChainError as exc:  # segments in a cycle, held mid-change
                result = error_result(None, ErrorCode.GENERAL, f"flag '{key}': {exc}")
            except Exception as exc:  # evaluation never raises into the caller
                result = error_result(None, ErrorCode.GENERAL, f"flag '{key}': {type(exc).__name__}: {exc}")
        e = cache.get(id(result))
        if e is None or e[0] is not result:
            e = entry(key, result, None if flag is None else flag.type)
        e[3] += 1
        append(e[1])
    append(revision_field(revision))
    return b"".join(parts)
