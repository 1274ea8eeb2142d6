"""The resolver protocol every mode implements, and provider events."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from flagyard.rule_engine import ErrorCode, EvaluationResult, Explanation, FlagSet, FlagType
from flagyard.rule_engine.result import error_result

if TYPE_CHECKING:
    from ._status import ProviderStatus


class ProviderEvent(StrEnum):
    READY = "READY"
    CONFIGURATION_CHANGED = "CONFIGURATION_CHANGED"
    ERROR = "ERROR"
    STALE = "STALE"


Listener = Callable[[ProviderEvent, list[str], str | None], None]
"""Called with the event, the changed flag keys (for CONFIGURATION_CHANGED) and a message."""


class Resolver(Protocol):
    """Where flag values come from: a file (offline), the data plane (remote) or a streamed copy (local).

    ``resolve`` and ``resolve_all`` never raise. ``status`` is where the source stands
    (:class:`~flagyard.sdk._status.ProviderStatus`); listeners hear of each change of it once.
    """

    def resolve(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType
    ) -> EvaluationResult: ...

    def resolve_all(self, context: Mapping[str, Any]) -> dict[str, EvaluationResult]: ...

    @property
    def status(self) -> ProviderStatus: ...

    def wait_ready(self, timeout: float) -> bool: ...

    def add_listener(self, listener: Listener) -> None: ...

    def close(self) -> None: ...


@runtime_checkable
class Explaining(Protocol):
    """A resolver that evaluates in process (local and offline modes) and so can explain an evaluation
    with the very flags it serves."""

    def explain(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType | None
    ) -> Explanation: ...


REMOTE_EXPLAIN = "explain needs local or offline mode"


def explain_with(
    resolver: object, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType | None
) -> Explanation:
    """``resolver``'s explanation; a resolver that does not evaluate in process (remote mode) answers the
    default with ERROR/GENERAL and no trace, as the data plane holds the flags there."""
    if isinstance(resolver, Explaining):
        return resolver.explain(key, default, context, flag_type)
    return Explanation(error_result(default, ErrorCode.GENERAL, REMOTE_EXPLAIN), None)


def changed_flags(old: FlagSet, new: FlagSet) -> list[str]:
    """Keys of flags added, removed or changed between two flag sets (segments count for all flags)."""
    if {k: s.source for k, s in old.segments.items()} != {k: s.source for k, s in new.segments.items()}:
        return sorted(set(old.flags) | set(new.flags))
    keys = set(old.flags) | set(new.flags)
    return sorted(
        k
        for k in keys
        if k not in old.flags or k not in new.flags or old.flags[k].source != new.flags[k].source
    )
