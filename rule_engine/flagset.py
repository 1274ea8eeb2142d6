"""A compiled environment: every flag and segment, ready to evaluate."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from .compiler import CompiledFlag, CompiledSegment, compile_flag, compile_segment
from .exceptions import EvaluationChainError
from .model import Document
from .result import ErrorCode, EvaluationResult, FlagType, error_result


def _is_context(context: object) -> bool:
    return type(context) is dict or isinstance(context, Mapping)


_FLOAT = FlagType.FLOAT
_INTEGER = FlagType.INTEGER


class FlagSet:
    """The flags and segments of one environment, compiled.

    Reads are lock-free; :meth:`put_flag` and friends replace one entry atomically, so a FlagSet may be
    updated while other threads evaluate.
    """

    __slots__ = ("flags", "metadata", "segments")

    def __init__(
        self,
        flags: Iterable[CompiledFlag] = (),
        segments: Iterable[CompiledSegment] = (),
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.flags: dict[str, CompiledFlag] = {f.key: f for f in flags}
        """Compiled flags by key; read-only for callers (use :meth:`put_flag`)."""
        self.segments: dict[str, CompiledSegment] = {s.key: s for s in segments}
        """Compiled segments by key; read-only for callers (use :meth:`put_segment`)."""
        self.metadata: dict[str, Any] = dict(metadata or {})

    @classmethod
    def from_document(cls, document: Document) -> FlagSet:
        """Compile a validated native document (see :func:`~.validation.validate_document`)."""
        return cls(
            (compile_flag(f) for f in document.flags),
            (compile_segment(s) for s in document.segments),
            document.metadata,
        )

    def put_flag(self, flag: CompiledFlag) -> None:
        self.flags[flag.key] = flag

    def remove_flag(self, key: str) -> None:
        self.flags.pop(key, None)

    def put_segment(self, segment: CompiledSegment) -> None:
        self.segments[segment.key] = segment

    def remove_segment(self, key: str) -> None:
        self.segments.pop(key, None)

    def evaluate(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType | None = None
    ) -> EvaluationResult:
        """Evaluate flag ``key`` for ``context``. Never raises.

        ``flag_type`` is the type the caller expects; a flag of another type gives TYPE_MISMATCH (an
        integer flag may be read as float). Any failure returns ``default`` with reason ERROR.
        """
        flag = self.flags.get(key)
        if flag is None:
            return error_result(default, ErrorCode.FLAG_NOT_FOUND, f"flag '{key}' not found")
        if (
            flag_type is not None
            and flag_type is not flag.type
            and (flag_type is not _FLOAT or flag.type is not _INTEGER)
        ):
            return error_result(
                default,
                ErrorCode.TYPE_MISMATCH,
                f"flag '{key}' is of type {flag.type}, not {flag_type}",
                version=flag.version,
            )
        if not _is_context(context):
            return error_result(
                default, ErrorCode.INVALID_CONTEXT, "context must be a mapping", version=flag.version
            )
        try:
            result = flag.evaluate(context, self)
        except EvaluationChainError as exc:
            return error_result(default, ErrorCode.GENERAL, f"flag '{key}': {exc}", version=flag.version)
        except Exception as exc:  # evaluation must never raise into the caller
            return error_result(
                default, ErrorCode.GENERAL, f"flag '{key}': {type(exc).__name__}: {exc}", version=flag.version
            )
        if result.variant is None:
            return replace(result, value=default)
        if flag_type is _FLOAT and flag.type is _INTEGER:
            return replace(result, value=float(result.value))
        return result

    def evaluate_all(self, context: Mapping[str, Any]) -> dict[str, EvaluationResult]:
        """Every flag for ``context``; flags that fail carry ``None`` as their value."""
        return {key: self.evaluate(key, None, context) for key in list(self.flags)}

    def __len__(self) -> int:
        return len(self.flags)

    def __repr__(self) -> str:
        return f"FlagSet(flags={len(self.flags)}, segments={len(self.segments)})"
