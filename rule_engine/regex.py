"""``matches`` on RE2: every accepted pattern matches in time linear in the attribute's length.

Python's ``re`` backtracks, so a pattern such as ``(a?){28}a{28}`` took seconds on a few hundred
characters and stalled whatever thread evaluated it. RE2 (the ``google-re2`` binding) runs a DFA or an
NFA simulation instead, never backtracking. Its syntax is Perl's without what needs backtracking:
no backreferences, lookahead/lookbehind, possessive quantifiers or atomic groups, and ``\\z`` rather
than ``\\Z``. Unlike Python's ``re`` on ``str``, ``\\w``, ``\\d``, ``\\s`` and ``\\b`` are ASCII
(``\\pL``, ``\\p{Greek}``, ``[[:alpha:]]`` name Unicode classes) and ``$`` without ``(?m)`` matches only
at the very end (Python's also matches before a final newline).

Every plane (the control plane validating, the data plane and the SDK evaluating) compiles through
:func:`compile_pattern` with the same options, so a pattern is accepted, and means the same, everywhere.
The binding ships no type information; this module is the one place that touches it.
"""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Callable
from typing import Any

import re2  # type: ignore[import-untyped]

from . import limits
from .exceptions import PatternError

# RE2::Match through pybind11, without the ``re2`` module's offset translation: about 0.5 µs a call
# against 1.5-3.7 µs for ``re2.compile(...).search``.
_RE2: Any = re2._re2.RE2
_UNANCHORED: Any = _RE2.Anchor.UNANCHORED
_NO_MATCH = (-1, -1)

_HINTS = (
    ("invalid escape sequence: \\Z", "RE2 has no \\Z: use \\z for the end of the text"),
    ("invalid perl operator: (?=", "lookahead is not supported (RE2 never backtracks)"),
    ("invalid perl operator: (?!", "lookahead is not supported (RE2 never backtracks)"),
    ("invalid perl operator: (?<=", "lookbehind is not supported (RE2 never backtracks)"),
    ("invalid perl operator: (?<!", "lookbehind is not supported (RE2 never backtracks)"),
    ("invalid perl operator: (?>", "atomic groups are not supported; RE2 never backtracks anyway"),
    ("invalid perl operator: (?#", "comments are not supported"),
    ("invalid perl operator: (?x", "verbose mode (?x) is not supported"),
    ("invalid escape sequence: \\u", "write a code point as \\x{00e9}"),
    ("invalid escape sequence: \\U", "write a code point as \\x{1F600}"),
    ("invalid escape sequence: \\N", "write a code point as \\x{2013}"),
    ("bad repetition operator: *+", "possessive quantifiers are not supported"),
    ("bad repetition operator: ++", "possessive quantifiers are not supported"),
    ("bad repetition operator: ?+", "possessive quantifiers are not supported"),
    ("invalid repetition size", "a counted repeat is at most {1000}"),
    ("pattern too large", f"it needs more than RE2's {limits.MAX_PATTERN_MEMORY} bytes"),
)


def _options() -> Any:
    options = re2.Options()
    options.log_errors = False  # RE2 would otherwise write every rejected pattern to stderr
    options.max_mem = limits.MAX_PATTERN_MEMORY
    options.never_capture = True  # only whether it matches is wanted: no submatch bookkeeping
    return options


_OPTIONS: Any = _options()


def _explain(error: str, pattern: str) -> str:
    hint = next((h for prefix, h in _HINTS if error.startswith(prefix)), None)
    backreference = error.startswith("invalid escape sequence: \\") and error[-1:].isdigit()
    if hint is None and (backreference or (error.endswith("(?P") and "(?P=" in pattern)):
        hint = "backreferences are not supported (RE2 never backtracks)"
    return f"invalid regular expression (RE2 syntax): {error}" + (f"; {hint}" if hint else "")


def compile_pattern(pattern: str) -> Callable[[str], bool]:
    """The search function of ``pattern`` (true where it matches anywhere in the text).

    Raises :class:`PatternError` for a pattern over :data:`~.limits.MAX_PATTERN_LENGTH` characters,
    one RE2 refuses, or one whose program exceeds :data:`~.limits.MAX_PATTERN_PROGRAM_SIZE`.
    """
    return _compile(pattern).search


def pattern_size(pattern: str) -> int:
    """The RE2 program size of ``pattern`` (its cost per byte matched); raises :class:`PatternError`."""
    return _compile(pattern).size


class _Compiled:
    """One compiled pattern and its search function, shared by every clause that uses the same text: a
    data plane holding the same rule in 10,000 flags x 5 environments holds one RE2 program and one
    closure, not 50,000 of each (about 2.4 KB and 0.6 KB)."""

    __slots__ = ("__weakref__", "match", "search", "size", "token")

    def __init__(self, match: Callable[[Any, bytes, int, int], list[tuple[int, int]]], size: int) -> None:
        self.match = match
        self.size = size
        self.token = next(_patterns)
        self.search = _searcher(self)


_patterns = itertools.count()
_compiled: weakref.WeakValueDictionary[str, _Compiled] = weakref.WeakValueDictionary()
"""Patterns some compiled clause still uses; one that no flag uses any more is dropped with it."""


def _compile(pattern: str) -> _Compiled:
    known = _compiled.get(pattern)
    if known is not None:
        return known
    if len(pattern) > limits.MAX_PATTERN_LENGTH:
        raise PatternError(
            f"pattern is {len(pattern)} characters long; the limit is {limits.MAX_PATTERN_LENGTH}"
        )
    try:
        encoded = pattern.encode()
    except UnicodeEncodeError as exc:
        raise PatternError("pattern is not valid Unicode (it holds an unpaired surrogate)") from exc
    compiled = _RE2(encoded, _OPTIONS)
    if not compiled.ok():
        raise PatternError(_explain(compiled.error().decode(errors="replace"), pattern))
    size: int = compiled.ProgramSize()
    if size > limits.MAX_PATTERN_PROGRAM_SIZE:
        raise PatternError(
            f"pattern is too complex: it compiles to {size} RE2 instructions; the limit is "
            f"{limits.MAX_PATTERN_PROGRAM_SIZE} (large counted repeats such as a{{0,1000}} multiply it)"
        )
    entry = _compiled[pattern] = _Compiled(compiled.Match, size)
    return entry


_MEMO_ENTRIES = 4096
_MEMO_SUBJECT_LENGTH = 128
_memo: dict[tuple[int, str], bool] = {}


def _searcher(pattern: _Compiled) -> Callable[[str], bool]:
    """A search of one compiled pattern. Calling RE2 costs about 0.5-1 µs however short the text
    (several times Python's ``re``), so the answers for recent short attributes are remembered: the
    same user or email is evaluated again and again. The memo is one for the process, shared by every
    pattern and emptied when full, so its memory is bounded (about 1 MB) however many patterns are
    compiled and whatever attribute values callers send."""
    unanchored = _UNANCHORED
    no_match = _NO_MATCH
    memo = _memo
    remembered = memo.get
    match = pattern.match
    token = pattern.token

    def search(text: str, _shared: _Compiled = pattern) -> bool:  # the default keeps the program alive
        key = (token, text)
        known = remembered(key)
        if known is not None:
            return known
        try:
            data = text.encode()
        except UnicodeEncodeError:  # an unpaired surrogate: RE2 sees the bytes Python's ``re`` would
            data = text.encode("utf-8", "surrogatepass")
        found = match(unanchored, data, 0, len(data))[0] != no_match
        if len(text) <= _MEMO_SUBJECT_LENGTH:
            if len(memo) >= _MEMO_ENTRIES:
                memo.clear()
            memo[key] = found
        return found

    return search


def check_pattern(pattern: str) -> str | None:
    """Why ``pattern`` cannot be used with ``matches``, or ``None`` when it can."""
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        return str(exc)
    return None
