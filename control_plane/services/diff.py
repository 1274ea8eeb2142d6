"""A structural diff between two JSON documents, as a list of add/remove/replace changes."""

from __future__ import annotations

from typing import Any

from flagyard.rule_engine.validation import pointer


def json_diff(old: Any, new: Any, path: str = "") -> list[dict[str, Any]]:
    """The changes turning ``old`` into ``new``; each has ``op``, ``path`` (JSON pointer), ``old``, ``value``.

    Objects are compared key by key and lists element by element (extra elements are added or removed
    at the end), so a change deep inside a rule shows as one small entry.
    """
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[dict[str, Any]] = []
        for key in old:
            at = path + pointer(key)
            if key not in new:
                changes.append({"op": "remove", "path": at, "old": old[key], "value": None})
            else:
                changes += json_diff(old[key], new[key], at)
        changes += [
            {"op": "add", "path": path + pointer(key), "old": None, "value": new[key]}
            for key in new
            if key not in old
        ]
        return changes
    if isinstance(old, list) and isinstance(new, list):
        changes = []
        for i, (a, b) in enumerate(zip(old, new, strict=False)):
            changes += json_diff(a, b, f"{path}/{i}")
        changes += [
            {"op": "remove", "path": f"{path}/{i}", "old": old[i], "value": None}
            for i in range(len(old) - 1, len(new) - 1, -1)
        ]
        changes += [
            {"op": "add", "path": f"{path}/{i}", "old": None, "value": new[i]}
            for i in range(len(old), len(new))
        ]
        return changes
    if type(old) is not type(new) or old != new:
        return [{"op": "replace", "path": path, "old": old, "value": new}]
    return []
