"""Reading flag documents: native (``{"flags": [...]}``) or flagd (``{"flags": {...}}``)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from . import limits
from .exceptions import DocumentFormatError, Issue
from .flagset import FlagSet
from .jsontext import nesting
from .validation import pointer, validate_document


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        self.key = key


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKeyError(key)
            seen.add(key)
    return result


_TOKEN = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{},:]', re.DOTALL)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")


def _locate(text: str, duplicate: str | None) -> str:
    """The JSON pointer of the first place nested deeper than the limit, or of the first repeated key
    ``duplicate`` (a scan of the text's tokens; only run on a document that is being refused)."""
    path: list[Any] = []  # per open container: [is_object, index or key, keys seen, awaiting a key]
    for match in _TOKEN.finditer(text):
        part = match.group()
        if part in ("[", "{"):
            if len(path) >= limits.MAX_JSON_DEPTH and duplicate is None:
                return pointer(*(entry[1] for entry in path))
            path.append([part == "{", 0, set(), part == "{"])
        elif part in ("]", "}"):
            if path:
                path.pop()
        elif not path:
            continue
        elif part == ",":
            top = path[-1]
            if top[0]:
                top[3] = True
            else:
                top[1] += 1
        elif part == ":":
            path[-1][3] = False
        elif path[-1][0] and path[-1][3]:
            key = json.loads(part)
            top = path[-1]
            top[1] = key
            if key in top[2] and key == duplicate:
                return pointer(*(entry[1] for entry in path))
            top[2].add(key)
    return ""


def _lone_surrogate(value: Any) -> str | None:
    """The pointer of a string (or key) holding an unpaired surrogate, which no UTF-8 writer accepts."""
    stack: list[tuple[Any, tuple[Any, ...]]] = [(value, ())]
    while stack:
        node, where = stack.pop()
        if type(node) is str:
            try:
                node.encode()
            except UnicodeEncodeError:
                return pointer(*where)
        elif type(node) is dict:
            for key, item in node.items():
                try:
                    key.encode()
                except UnicodeEncodeError:
                    return pointer(*where, key)
                stack.append((item, (*where, key)))
        elif type(node) is list:
            stack += [(item, (*where, i)) for i, item in enumerate(node)]
    return None


def parse_json(text: str | bytes) -> Any:
    """Parse JSON as every plane can write it back: refuse duplicate object keys (which JSON parsers
    otherwise drop silently), nesting deeper than :data:`~.limits.MAX_JSON_DEPTH` (which orjson, the
    syncer's writer, could not serialize) and unpaired surrogates (no UTF-8 writer accepts them).

    Raises :class:`DocumentFormatError` whose ``path`` is the JSON pointer of the offending place.
    Costs one ``json.loads`` with a C-speed duplicate check, plus two ``str.count`` calls on bodies
    that could be deep at all; refused documents are scanned once more to find the pointer.
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = text.decode(json.detect_encoding(text), "surrogatepass")
        except UnicodeDecodeError as exc:
            raise DocumentFormatError(f"not valid JSON: {exc}") from exc
    if text.count("[") + text.count("{") > limits.MAX_JSON_DEPTH and nesting(text) > limits.MAX_JSON_DEPTH:
        limit = limits.MAX_JSON_DEPTH
        raise DocumentFormatError(
            f"JSON nested deeper than {limit} arrays and objects", path=_locate(text, None)
        )
    try:
        value = json.loads(text, object_pairs_hook=_unique)
    except _DuplicateKeyError as exc:
        raise DocumentFormatError(
            f"duplicate key '{exc.key}' in a JSON object", path=_locate(text, exc.key)
        ) from None
    except RecursionError:
        raise DocumentFormatError(
            f"JSON nested deeper than {limits.MAX_JSON_DEPTH} arrays and objects"
        ) from None
    except ValueError as exc:
        raise DocumentFormatError(f"not valid JSON: {exc}") from exc
    if _SURROGATE_ESCAPE.search(text) is not None:
        where = _lone_surrogate(value)
        if where is not None:
            raise DocumentFormatError("a string holds an unpaired UTF-16 surrogate", path=where)
    return value


def detect_format(data: Any) -> str:
    """``"native"`` or ``"flagd"``: flagd keys its flags by name, native lists them."""
    if not isinstance(data, Mapping):
        raise DocumentFormatError("a flag document is a JSON object")
    flags = data.get("flags")
    if isinstance(flags, list):
        return "native"
    if isinstance(flags, Mapping):
        return "flagd"
    raise DocumentFormatError("a flag document has 'flags': a list (native format) or an object (flagd)")


def load_flagset(data: str | bytes | Mapping[str, Any], *, warnings: list[Issue] | None = None) -> FlagSet:
    """Validate and compile a document in either format; raises :class:`~.exceptions.RuleEngineError`.

    With ``warnings``, a flagd document loads leniently, as flagd loads files (see
    :func:`~.flagd.load_flagd`), its problems appended there; a native document is always strict."""
    if isinstance(data, str | bytes):
        data = parse_json(data)
    if detect_format(data) == "flagd":
        from .flagd import load_flagd

        return load_flagd(data, warnings=warnings)
    return FlagSet.from_document(validate_document(data))
