"""The data plane's exceptions.

Redis errors never travel past :mod:`.store`: they become :class:`StoreUnavailableError` (Redis could not be
reached or timed out) or :class:`StoreCorruptError` (a value that does not follow the Redis contract). gRPC
handlers turn :class:`RequestError` subclasses into status codes; evaluation problems are results, never
exceptions.

    DataPlaneError
    ├── ConfigurationError        bad settings; the process does not start
    ├── StoreError
    │   ├── StoreUnavailableError      Redis unreachable or timing out (serve from L1, report degraded)
    │   └── StoreCorruptError          a value in Redis breaks the contract (log, count, skip it)
    └── RequestError              a call that cannot be served; carries its gRPC status code
        ├── UnauthenticatedError       missing, unknown or expired SDK key → UNAUTHENTICATED
        ├── InvalidRequestError        malformed request, or over a bound of limits → INVALID_ARGUMENT
        ├── ResponseTooLargeError      the answer would exceed MAX_GRPC_MESSAGE_BYTES → RESOURCE_EXHAUSTED
        ├── RateLimitedError           the SDK key is over sdk_key_rate_limit → RESOURCE_EXHAUSTED
        ├── StreamLimitError           over max_streams / max_streams_per_key → RESOURCE_EXHAUSTED
        └── UnavailableError           cannot answer right now (key unverifiable, not hydrated) → UNAVAILABLE
"""

from __future__ import annotations

import grpc


class DataPlaneError(Exception):
    """Base of every data-plane exception."""


class ConfigurationError(DataPlaneError):
    """The settings are unusable."""


class StoreError(DataPlaneError):
    """Reading Redis failed."""


class StoreUnavailableError(StoreError):
    """Redis could not be reached, or did not answer in time."""


class StoreCorruptError(StoreError):
    """A value in Redis does not follow the Redis contract."""


class RequestError(DataPlaneError):
    """A request that cannot be served; ``code`` is the gRPC status to answer with."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class UnauthenticatedError(RequestError):
    code = grpc.StatusCode.UNAUTHENTICATED


class InvalidRequestError(RequestError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class ResponseTooLargeError(RequestError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class RateLimitedError(RequestError):
    """The call's SDK key used up ``sdk_key_rate_limit``; it may call again in ``retry_after`` seconds."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED

    def __init__(self, retry_after: float) -> None:
        super().__init__(
            f"SDK key over its rate limit in this data-plane process; retry in {retry_after:.2f} s"
        )
        self.retry_after = retry_after


class UnavailableError(RequestError):
    code = grpc.StatusCode.UNAVAILABLE


class StreamLimitError(RequestError):
    """A stream refused because this process, or the SDK key here, holds as many streams as allowed
    (``max_streams``, ``max_streams_per_key``; :mod:`.streams`)."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
