"""Reading flag documents: native (``{"flags": [...]}``) or flagd (``{"flags": {...}}``)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from .exceptions import DocumentFormatError
from .flagset import FlagSet
from .validation import validate_document


def parse_json(text: str | bytes) -> Any:
    """Parse JSON, rejecting duplicate object keys (which JSON parsers otherwise drop silently)."""

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, value in pairs:
            if key in result:
                raise DocumentFormatError(f"duplicate key '{key}' in a JSON object")
            result[key] = value
        return result

    try:
        return json.loads(text, object_pairs_hook=no_duplicates)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DocumentFormatError(f"not valid JSON: {exc}") from exc


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


def load_flagset(data: str | bytes | Mapping[str, Any]) -> FlagSet:
    """Validate and compile a document in either format; raises :class:`~.exceptions.RuleEngineError`."""
    if isinstance(data, str | bytes):
        data = parse_json(data)
    if detect_format(data) == "flagd":
        from .flagd import load_flagd

        return load_flagd(data)
    return FlagSet.from_document(validate_document(data))
