"""The Flagyard SDK: what applications import (re-exported as ``flagyard``)."""

from flagyard.rule_engine import ErrorCode, EvaluationResult, FlagType, Reason

from ._resolver import ProviderEvent
from ._status import ProviderStatus
from .async_client import AsyncFlagyardClient
from .client import FlagyardClient
from .exceptions import ConfigurationError, FlagyardError
from .provider import FlagyardProvider

__all__ = [
    "AsyncFlagyardClient", "ConfigurationError", "ErrorCode", "EvaluationResult", "FlagType",
    "FlagyardClient", "FlagyardError", "FlagyardProvider", "ProviderEvent", "ProviderStatus", "Reason",
]  # fmt: skip
