"""Errors of the rule engine.

Evaluation never raises; these come from loading, validating and compiling definitions (and one,
internal to evaluation, that :class:`~.flagset.FlagSet` turns into an ERROR result)::

    RuleEngineError
    ├── DefinitionError        a definition is invalid; ``issues`` says where and why
    ├── DocumentFormatError    a document is not JSON, or is neither native nor flagd format
    ├── PatternError           a ``matches`` pattern RE2 refuses (validation reports it as an Issue)
    └── EvaluationChainError   a segment chain loops or is too deep (never leaves FlagSet.evaluate)
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem in a definition: ``path`` is a JSON pointer into the submitted document."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '/'}: {self.message}"


class RuleEngineError(Exception):
    """Base of every error the rule engine raises."""


class DefinitionError(RuleEngineError):
    """A flag, segment or document failed validation."""

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = issues
        shown = "; ".join(str(i) for i in issues[:5])
        more = f" (+{len(issues) - 5} more)" if len(issues) > 5 else ""
        super().__init__(f"invalid definition: {shown}{more}")


class DocumentFormatError(RuleEngineError):
    """A document could not be parsed at all; ``path`` is a JSON pointer to where, when known ("": root)."""

    def __init__(self, message: str, path: str = "") -> None:
        self.path = path
        super().__init__(message)


class PatternError(RuleEngineError, ValueError):
    """A ``matches`` pattern that RE2 does not accept or that exceeds the pattern limits; ``str()`` says
    why. Validation turns it into an :class:`Issue`; only compiling an unvalidated flag raises it."""


class EvaluationChainError(RuleEngineError):
    """Segments referring to segments in a cycle, or deeper than ``MAX_SEGMENT_DEPTH``, met while
    evaluating: validation refuses both, but a data plane may hold them while a change arrives piece by
    piece. Raised from deep inside a compiled flag, so the flag answers ERROR at once with ``str()``
    naming the segments; :meth:`~.flagset.FlagSet.evaluate` catches it."""
