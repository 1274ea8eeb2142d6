"""Regex checks that keep ``matches`` bounded.

Python's ``re`` backtracks, so a hostile or careless pattern can take exponential time. Patterns are
checked once, when a definition is validated, and rejected when they contain what causes that blow-up:
a quantifier inside a repeated group (``(a+)+``), an alternation inside a repeated group (``(a|ab)*``),
or a backreference. Pattern length and the number of unbounded quantifiers are capped, and at evaluation
an attribute longer than :data:`MAX_SUBJECT_LENGTH` characters never matches.
"""

from __future__ import annotations

import re
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

MAX_PATTERN_LENGTH = 512
MAX_SUBJECT_LENGTH = 1024
MAX_UNBOUNDED_QUANTIFIERS = 6

_REPEATS = {sre_parse.MAX_REPEAT, sre_parse.MIN_REPEAT, sre_parse.POSSESSIVE_REPEAT}
_MAXREPEAT = sre_parse.MAXREPEAT


def check_pattern(pattern: str) -> str | None:
    """Return why ``pattern`` is unsafe or invalid, or ``None`` when it may be used."""
    if len(pattern) > MAX_PATTERN_LENGTH:
        return f"pattern is longer than {MAX_PATTERN_LENGTH} characters"
    try:
        re.compile(pattern)
        parsed = sre_parse.parse(pattern)
    except re.error as exc:
        return f"invalid regular expression: {exc}"
    except RecursionError:
        return "pattern is nested too deeply"
    unbounded = [0]
    problem = _walk(list(parsed), inside_repeat=False, unbounded=unbounded)
    if problem is None and unbounded[0] > MAX_UNBOUNDED_QUANTIFIERS:
        problem = f"more than {MAX_UNBOUNDED_QUANTIFIERS} unbounded quantifiers"
    return problem


def _walk(items: list[tuple[Any, Any]], *, inside_repeat: bool, unbounded: list[int]) -> str | None:
    for op, arg in items:
        if op in _REPEATS:
            _low, high, body = arg
            if high == _MAXREPEAT:
                unbounded[0] += 1
            if inside_repeat and high > 1:
                return "nested quantifier inside a repeated group can backtrack catastrophically"
            problem = _walk(list(body), inside_repeat=inside_repeat or high > 1, unbounded=unbounded)
            if problem:
                return problem
        elif op is sre_parse.BRANCH:
            if inside_repeat:
                return "alternation inside a repeated group can backtrack catastrophically"
            for branch in arg[1]:
                problem = _walk(list(branch), inside_repeat=inside_repeat, unbounded=unbounded)
                if problem:
                    return problem
        elif op is sre_parse.SUBPATTERN:
            problem = _walk(list(arg[-1]), inside_repeat=inside_repeat, unbounded=unbounded)
            if problem:
                return problem
        elif op in (sre_parse.ASSERT, sre_parse.ASSERT_NOT):
            problem = _walk(list(arg[1]), inside_repeat=inside_repeat, unbounded=unbounded)
            if problem:
                return problem
        elif op in (sre_parse.GROUPREF, sre_parse.GROUPREF_EXISTS):
            return "backreferences are not supported"
        elif op is sre_parse.ATOMIC_GROUP:
            problem = _walk(list(arg), inside_repeat=inside_repeat, unbounded=unbounded)
            if problem:
                return problem
    return None
