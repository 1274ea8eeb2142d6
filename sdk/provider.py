"""The OpenFeature provider: Flagyard behind ``openfeature.api``."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import ProviderEventDetails
from openfeature.exception import ErrorCode as OFErrorCode
from openfeature.exception import ProviderFatalError, ProviderNotReadyError
from openfeature.flag_evaluation import FlagResolutionDetails, FlagValueType
from openfeature.provider import AbstractProvider, Metadata

from flagyard.rule_engine import ErrorCode, FlagType, Reason

from ._remote import RemoteResolver
from ._resolver import ProviderEvent
from ._status import SERVING, ProviderStatus
from .client import FlagyardClient, Mode, _failure
from .exceptions import ConfigurationError

_BOOLEAN, _STRING, _INTEGER, _FLOAT, _OBJECT = (
    FlagType.BOOLEAN,
    FlagType.STRING,
    FlagType.INTEGER,
    FlagType.FLOAT,
    FlagType.OBJECT,
)
_REASONS: dict[Reason, str] = {reason: reason.value for reason in Reason}
"""Built once: ``Reason.X.value`` is an enum property lookup on every call otherwise."""
_ERROR_CODES: dict[ErrorCode, OFErrorCode] = {
    code: OFErrorCode(code.value) for code in ErrorCode if code.value in OFErrorCode._value2member_map_
}


def context_of(evaluation_context: EvaluationContext | None) -> dict[str, Any]:
    """OpenFeature's context as the attribute mapping the rule engine reads (a fresh dict: the caller
    may keep mutating its EvaluationContext)."""
    if evaluation_context is None:
        return {}
    targeting_key = evaluation_context.targeting_key
    if targeting_key is None:
        return dict(evaluation_context.attributes)
    return {**evaluation_context.attributes, "targeting_key": targeting_key}


class FlagyardProvider(AbstractProvider):
    """Use Flagyard through OpenFeature::

        api.set_provider(FlagyardProvider(target="localhost:50051", sdk_key="…", mode="local"))
        api.set_provider(FlagyardProvider(offline_file="flags.json"))

    ``initialize`` waits up to ``ready_timeout`` s for the data plane; its outcome is the first status
    OpenFeature records (it emits that READY or ERROR itself). After it, every change of the client's
    status that OpenFeature has not been told is emitted once: STALE, ERROR (PROVIDER_FATAL for a
    rejected SDK key), READY after a recovery; CONFIGURATION_CHANGED carries ``flags_changed``. Other
    keyword arguments go to :class:`~flagyard.sdk.client.FlagyardClient`.
    """

    def __init__(
        self,
        *,
        target: str | None = None,
        sdk_key: str | None = None,
        mode: Mode = "remote",
        offline_file: str | os.PathLike[str] | None = None,
        watch: bool = False,
        client: FlagyardClient | None = None,
        bootstrap_file: str | os.PathLike[str] | None = None,
        ready_timeout: float = 5.0,
        timeout: float = 0.5,
        retries: int = 2,
        cache_ttl: float = 0.0,
        stale_after: float = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        channel_options: Mapping[str, Any] | None = None,
    ) -> None:
        sources = (
            (offline_file is not None) + (client is not None) + (target is not None or sdk_key is not None)
        )
        if sources != 1:
            raise ConfigurationError("give exactly one of offline_file, client, or target and sdk_key")
        self._ready_timeout = ready_timeout
        self._lock = threading.Lock()
        self._subscribed = False
        self._told: ProviderStatus | None = None
        """The status OpenFeature holds for this provider as far as it was told; None before initialize."""
        if client is not None:
            self._client = client
        elif offline_file is not None:
            self._client = FlagyardClient.offline(offline_file, watch=watch)
        else:
            self._client = FlagyardClient(
                target=target,
                sdk_key=sdk_key,
                mode=mode,
                bootstrap_file=bootstrap_file,
                ready_timeout=0,
                timeout=timeout,
                retries=retries,
                cache_ttl=cache_ttl,
                stale_after=stale_after,
                credentials=credentials,
                channel_options=channel_options,
            )

    @property
    def client(self) -> FlagyardClient:
        return self._client

    def get_metadata(self) -> Metadata:
        return Metadata(name="flagyard")

    def initialize(self, evaluation_context: EvaluationContext) -> None:
        """Subscribe to the client's events and wait for the live source. OpenFeature emits READY when this
        returns and ERROR when it raises, so the status that outcome reports is recorded as told: a READY
        the client announces meanwhile (or just after) is not emitted a second time."""
        with self._lock:
            subscribe, self._subscribed = not self._subscribed, True
        if subscribe:
            self._client.add_listener(self._forward)
        self._client.wait_ready(self._ready_timeout)
        with self._lock:
            status = self._client.status
            self._told = ProviderStatus.READY if status in SERVING else status
        if status is ProviderStatus.FATAL:
            raise ProviderFatalError("the data plane rejected the SDK key")
        if status not in SERVING:
            raise ProviderNotReadyError(f"no answer from the data plane within {self._ready_timeout}s")

    def shutdown(self) -> None:
        self._client.close()

    def _forward(self, event: ProviderEvent, flags: list[str], message: str | None) -> None:
        """The client's listener. It runs while the client's status cannot change (see
        :class:`~flagyard.sdk._status.StatusMachine`), so the status read here is the one ``event``
        announces."""
        if event is ProviderEvent.CONFIGURATION_CHANGED:
            self.emit_provider_configuration_changed(
                ProviderEventDetails(flags_changed=flags, message=message)
            )
            return
        with self._lock:
            status = self._client.status
            if self._told is None or status is self._told or status is ProviderStatus.NOT_READY:
                return  # before initialize's outcome, or OpenFeature already holds this status
            self._told = status
        if status is ProviderStatus.READY:
            self.emit_provider_ready(ProviderEventDetails(message=message))
        elif status is ProviderStatus.STALE:
            self.emit_provider_stale(ProviderEventDetails(message=message))
        else:
            code = OFErrorCode.PROVIDER_FATAL if status is ProviderStatus.FATAL else OFErrorCode.GENERAL
            self.emit_provider_error(ProviderEventDetails(message=message, error_code=code))

    def _resolve(
        self, key: str, default: Any, evaluation_context: EvaluationContext | None, flag_type: FlagType
    ) -> FlagResolutionDetails[Any]:
        """One evaluation, the client's ``details`` inlined: every call through OpenFeature pays this, so
        it is kept to the context's conversion, the evaluation and one positional construction."""
        if evaluation_context is None:
            context: dict[str, Any] = {}
        else:  # context_of, inlined: a fresh dict, as the caller may keep mutating its EvaluationContext
            targeting_key = evaluation_context.targeting_key
            if targeting_key is None:
                context = dict(evaluation_context.attributes)
            else:
                context = {**evaluation_context.attributes, "targeting_key": targeting_key}
        try:
            result = self._client._evaluate(key, default, context, flag_type)
        except Exception as exc:  # a resolver bug must not reach the app
            result = _failure(default, exc)
        code = result.error_code
        return FlagResolutionDetails(  # positional: the keyword form costs three times as much
            result.value,
            None if code is None else (_ERROR_CODES.get(code) or OFErrorCode(code.value)),
            result.error_message,
            _REASONS[result.reason],
            result.variant,
            dict(result.flag_metadata),
        )

    async def _resolve_async(
        self, key: str, default: Any, evaluation_context: EvaluationContext | None, flag_type: FlagType
    ) -> FlagResolutionDetails[Any]:
        """Local and offline modes evaluate in process (microseconds, no I/O), right in the coroutine; remote
        mode's blocking gRPC call runs in a worker thread so that it never stalls the event loop."""
        if isinstance(self._client.resolver, RemoteResolver):
            return await asyncio.to_thread(self._resolve, key, default, evaluation_context, flag_type)
        return self._resolve(key, default, evaluation_context, flag_type)

    def resolve_boolean_details(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        return self._resolve(flag_key, default_value, evaluation_context, _BOOLEAN)

    def resolve_string_details(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return self._resolve(flag_key, default_value, evaluation_context, _STRING)

    def resolve_integer_details(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return self._resolve(flag_key, default_value, evaluation_context, _INTEGER)

    def resolve_float_details(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return self._resolve(flag_key, default_value, evaluation_context, _FLOAT)

    def resolve_object_details(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return self._resolve(flag_key, default_value, evaluation_context, _OBJECT)

    async def resolve_boolean_details_async(
        self, flag_key: str, default_value: bool, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[bool]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, _BOOLEAN)

    async def resolve_string_details_async(
        self, flag_key: str, default_value: str, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[str]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, _STRING)

    async def resolve_integer_details_async(
        self, flag_key: str, default_value: int, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[int]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, _INTEGER)

    async def resolve_float_details_async(
        self, flag_key: str, default_value: float, evaluation_context: EvaluationContext | None = None
    ) -> FlagResolutionDetails[float]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, _FLOAT)

    async def resolve_object_details_async(
        self,
        flag_key: str,
        default_value: Sequence[FlagValueType] | Mapping[str, FlagValueType],
        evaluation_context: EvaluationContext | None = None,
    ) -> FlagResolutionDetails[Sequence[FlagValueType] | Mapping[str, FlagValueType]]:
        return await self._resolve_async(flag_key, default_value, evaluation_context, _OBJECT)
