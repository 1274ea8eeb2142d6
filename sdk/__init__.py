"""The Flagyard SDK: what applications import (re-exported as ``flagyard``)."""

# The folder is the source layout; under a second name every module would be loaded a second time.
if not __name__.startswith("flagyard."):
    raise ImportError(f"import this package as 'flagyard.{__name__}', not '{__name__}'")

from flagyard.rule_engine import ErrorCode, EvaluationResult, Explanation, FlagType, Reason

from ._resolver import ProviderEvent
from ._status import ProviderStatus
from .async_client import AsyncFlagyardClient
from .client import FlagyardClient
from .exceptions import ConfigurationError, FlagyardError
from .provider import FlagyardProvider

__all__ = [
    "AsyncFlagyardClient",
    "ConfigurationError",
    "ErrorCode",
    "EvaluationResult",
    "Explanation",
    "FlagType",
    "FlagyardClient",
    "FlagyardError",
    "FlagyardProvider",
    "ProviderEvent",
    "ProviderStatus",
    "Reason",
]
