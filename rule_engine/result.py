"""Evaluation results, reasons and error codes (OpenFeature vocabulary)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class FlagType(StrEnum):
    """The type every variant of a flag shares."""

    BOOLEAN = "boolean"
    STRING = "string"
    INTEGER = "integer"
    FLOAT = "float"
    OBJECT = "object"


class Reason(StrEnum):
    """Why a value was served; the first six are OpenFeature's well-known reasons."""

    STATIC = "STATIC"
    TARGETING_MATCH = "TARGETING_MATCH"
    SPLIT = "SPLIT"
    DEFAULT = "DEFAULT"
    DISABLED = "DISABLED"
    ERROR = "ERROR"
    PREREQUISITE_FAILED = "PREREQUISITE_FAILED"


class ErrorCode(StrEnum):
    """OpenFeature error codes."""

    PROVIDER_NOT_READY = "PROVIDER_NOT_READY"
    FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
    PARSE_ERROR = "PARSE_ERROR"
    TYPE_MISMATCH = "TYPE_MISMATCH"
    TARGETING_KEY_MISSING = "TARGETING_KEY_MISSING"
    INVALID_CONTEXT = "INVALID_CONTEXT"
    GENERAL = "GENERAL"


_NO_METADATA: dict[str, Any] = {}


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """The outcome of evaluating one flag for one context.

    Results of successful evaluations are built once at compile time and shared, so treat them as
    read-only. ``value`` is the caller's default whenever ``variant`` is ``None``.
    """

    value: Any
    variant: str | None
    reason: Reason
    error_code: ErrorCode | None = None
    error_message: str | None = None
    rule_id: str | None = None
    flag_metadata: dict[str, Any] = field(default_factory=lambda: _NO_METADATA)
    version: int | None = None

    @property
    def is_error(self) -> bool:
        return self.error_code is not None


def error_result(
    default: Any, code: ErrorCode, message: str, *, version: int | None = None
) -> EvaluationResult:
    """The caller's default with reason ERROR; what every failure path returns."""
    return EvaluationResult(
        value=default,
        variant=None,
        reason=Reason.ERROR,
        error_code=code,
        error_message=message,
        version=version,
    )
