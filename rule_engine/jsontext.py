"""Measuring JSON text without parsing it: how deeply it nests, at C speed and without recursion.

Used before anything recursive (``json.loads``, pydantic, a JSON writer) sees a document or a value,
so nesting past the limits is refused instead of ending in a RecursionError somewhere later.
"""

from __future__ import annotations

import re
from itertools import accumulate

STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
"""A JSON string literal (escapes included)."""
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def nesting(text: str) -> int:
    """How deeply arrays and objects nest in JSON ``text`` (``{"a":[1]}`` is 2, a scalar 0); brackets
    inside strings do not count."""
    if "[" not in text and "{" not in text:
        return 0
    brackets = _NOT_BRACKET.sub("", STRING.sub("", text) if '"' in text else text)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def pointer(*parts: str | int) -> str:
    """A JSON pointer (RFC 6901) from path parts."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)
