"""The client apps use: typed getters that never raise."""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from types import TracebackType
from typing import Any, Literal, Self

import grpc

from flagyard.rule_engine import ErrorCode, EvaluationResult, Explanation, FlagSet, FlagType, Reason

from ._local import LocalResolver
from ._offline import OfflineResolver
from ._remote import RemoteResolver
from ._report import EvaluationReporter
from ._resolver import Listener, Resolver, explain_with
from ._status import SERVING, ProviderStatus
from .exceptions import ConfigurationError

Mode = Literal["remote", "local"]

_EMPTY: Mapping[str, Any] = {}
_BOOLEAN, _STRING, _INTEGER, _FLOAT, _OBJECT = (
    FlagType.BOOLEAN,
    FlagType.STRING,
    FlagType.INTEGER,
    FlagType.FLOAT,
    FlagType.OBJECT,
)


def _failure(default: Any, exc: BaseException) -> EvaluationResult:
    return EvaluationResult(default, None, Reason.ERROR, ErrorCode.GENERAL, f"{type(exc).__name__}: {exc}")


def load_bootstrap(path: str | os.PathLike[str] | None) -> FlagSet | None:
    """The flags of a bootstrap file (native or flagd JSON); raises ConfigurationError if unusable."""
    return None if path is None else OfflineResolver(path).flagset


class FlagyardClient:
    """Evaluate flags. Every getter returns the caller's ``default`` on any failure, never raises.

    ``context`` is a mapping of attributes; ``targeting_key`` is the OpenFeature targeting key.
    The client is thread-safe, fork-safe and a context manager.

    - ``mode="remote"``: each evaluation is one call to the data plane at ``target`` (deadline
      ``timeout`` s including ``retries`` of UNAVAILABLE with jittered backoff); ``cache_ttl`` > 0 keeps
      results per (flag, context) that long.
    - ``mode="local"``: the environment's flags are streamed from the data plane and evaluated in
      process; changes arrive as CONFIGURATION_CHANGED, a connection lost for ``stale_after`` s as STALE.
    - :meth:`offline`: a flags file.

    The constructor waits up to ``ready_timeout`` s for the data plane (0: not at all); until it answers,
    the flags of ``bootstrap_file`` are served if given, else defaults with PROVIDER_NOT_READY (local) or
    the failure's error code (remote). A rejected SDK key is reported once (ERROR) and retried slowly.
    """

    def __init__(
        self,
        resolver: Resolver | None = None,
        *,
        target: str | None = None,
        sdk_key: str | None = None,
        mode: Mode = "remote",
        bootstrap_file: str | os.PathLike[str] | None = None,
        ready_timeout: float = 5.0,
        timeout: float = 0.5,
        retries: int = 2,
        cache_ttl: float = 0.0,
        cache_size: int = 10_000,
        stale_after: float = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        channel_options: Mapping[str, Any] | None = None,
        report_interval: float = 30.0,
    ) -> None:
        self._reporter: EvaluationReporter | None = None
        if resolver is not None:
            if target is not None or sdk_key is not None:
                raise ConfigurationError("give either a resolver or target and sdk_key, not both")
            self._resolver: Resolver = resolver
            return
        if target is None or sdk_key is None:
            raise ConfigurationError("give target and sdk_key (or use FlagyardClient.offline)")
        bootstrap = load_bootstrap(bootstrap_file)
        if mode == "remote":
            self._resolver = RemoteResolver(
                target,
                sdk_key,
                timeout=timeout,
                retries=retries,
                cache_ttl=cache_ttl,
                cache_size=cache_size,
                bootstrap=bootstrap,
                ready_timeout=ready_timeout,
                credentials=credentials,
                options=channel_options,
            )
        elif mode == "local":
            self._resolver = LocalResolver(
                target,
                sdk_key,
                bootstrap=bootstrap,
                ready_timeout=ready_timeout,
                stale_after=stale_after,
                credentials=credentials,
                options=channel_options,
            )
        else:
            raise ConfigurationError(f"mode must be 'remote' or 'local', not {mode!r}")
        if report_interval > 0:
            self._reporter = EvaluationReporter(
                target,
                sdk_key,
                interval=report_interval,
                credentials=credentials,
                options=channel_options,
                sample_contexts=mode == "local",  # remote: the data plane samples what it receives
            )

    @classmethod
    def offline(
        cls, path: str | os.PathLike[str], *, watch: bool = False, poll_interval: float = 1.0
    ) -> FlagyardClient:
        """A client over a flags file (native or flagd JSON); ``watch`` reloads it when it changes.

        Raises :class:`~flagyard.sdk.exceptions.ConfigurationError` if the file is unreadable or invalid.
        """
        return cls(OfflineResolver(path, watch=watch, poll_interval=poll_interval))

    def details(
        self,
        key: str,
        default: Any,
        context: Mapping[str, Any] | None = None,
        flag_type: FlagType | None = None,
    ) -> EvaluationResult:
        """Value, variant, reason and error code; ``flag_type`` defaults to the type of ``default``."""
        if flag_type is None:
            flag_type = _type_of(default)
        try:
            return self._evaluate(key, default, context, flag_type)
        except Exception as exc:  # a resolver bug must not reach the app
            return _failure(default, exc)

    def _evaluate(
        self, key: str, default: Any, context: Mapping[str, Any] | None, flag_type: FlagType
    ) -> EvaluationResult:
        result = self._resolver.resolve(key, default, context or _EMPTY, flag_type)
        reporter = self._reporter
        if reporter is not None:
            reporter.record(key, result, context)
        return result

    def boolean(self, key: str, default: bool, context: Mapping[str, Any] | None = None) -> bool:
        try:
            return self._evaluate(key, default, context, _BOOLEAN).value  # type: ignore[no-any-return]
        except Exception:
            return default

    def string(self, key: str, default: str, context: Mapping[str, Any] | None = None) -> str:
        try:
            return self._evaluate(key, default, context, _STRING).value  # type: ignore[no-any-return]
        except Exception:
            return default

    def integer(self, key: str, default: int, context: Mapping[str, Any] | None = None) -> int:
        try:
            return self._evaluate(key, default, context, _INTEGER).value  # type: ignore[no-any-return]
        except Exception:
            return default

    def float(self, key: str, default: float, context: Mapping[str, Any] | None = None) -> float:
        try:
            return self._evaluate(key, default, context, _FLOAT).value  # type: ignore[no-any-return]
        except Exception:
            return default

    def object(self, key: str, default: Any, context: Mapping[str, Any] | None = None) -> Any:
        try:
            return self._evaluate(key, default, context, _OBJECT).value
        except Exception:
            return default

    def explain(
        self,
        key: str,
        context: Mapping[str, Any] | None = None,
        default: Any = None,
        flag_type: FlagType | None = None,
    ) -> Explanation:
        """Evaluate ``key`` and say why: the result :meth:`details` would give (``flag_type`` checked only
        when given) and the trace of the prerequisites, rules, clauses, segments and split that decided it
        (:mod:`flagyard.rule_engine.explain`), recorded around the flag's own compiled code.

        Local and offline modes only, the flags being in process; never raises. In remote mode the result
        is ``default`` with reason ERROR (GENERAL), before any flags arrived ERROR (PROVIDER_NOT_READY),
        both without a trace. A diagnostic: it is not counted in the evaluation reports.
        """
        try:
            return explain_with(self._resolver, key, default, context or _EMPTY, flag_type)
        except Exception as exc:  # a resolver bug must not reach the app
            return Explanation(_failure(default, exc), None)

    def all_flags(self, context: Mapping[str, Any] | None = None) -> dict[str, EvaluationResult]:
        """Every flag evaluated for ``context`` (remote: one ResolveAll call); values are ``None`` where the
        caller's default would be served. Empty (or the bootstrap file's flags) when the source fails."""
        try:
            return self._resolver.resolve_all(context or _EMPTY)
        except Exception:
            return {}

    @property
    def status(self) -> ProviderStatus:
        """Where the source stands (OpenFeature's provider statuses; offline: READY unless the file broke)."""
        return self._resolver.status

    @property
    def ready(self) -> bool:
        """Values come from the live source (READY, or STALE: the last known flags of a live source)."""
        return self._resolver.status in SERVING

    def wait_ready(self, timeout: builtins.float) -> bool:
        """Wait up to ``timeout`` s for the live source; whether it is ready."""
        return self._resolver.wait_ready(timeout)

    @property
    def resolver(self) -> Resolver:
        return self._resolver

    def add_listener(self, listener: Listener) -> None:
        """Be told of READY, CONFIGURATION_CHANGED (with the changed flag keys), ERROR and STALE."""
        self._resolver.add_listener(listener)

    def close(self) -> None:
        """Stop the live source and send the evaluation counts not yet reported."""
        if self._reporter is not None:
            self._reporter.close()
        self._resolver.close()

    @property
    def reporter(self) -> EvaluationReporter | None:
        """The evaluation-count reporter (remote and local modes)."""
        return self._reporter

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _type_of(default: Any) -> FlagType:
    t = type(default)
    if t is bool:
        return _BOOLEAN
    if t is str:
        return _STRING
    if t is int:
        return _INTEGER
    if t is float:
        return _FLOAT
    return _OBJECT
