"""How the contract's ``google.protobuf.Value``/``Struct`` read as Python, for both sides of it.

A Value carries every number as a double; integral numbers within ±2**53 read as ``int``, as JSON would
give them, so the data plane (reading a context) and the SDK (reading a result) agree: ``{"age": 30}``
compares and buckets as 30, and an integer flag's object values stay integers.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2

EXACT_INT = 2**53
"""Doubles hold every integer up to this magnitude exactly."""


def value_to_python(value: struct_pb2.Value) -> Any:
    """A Value as JSON-like Python (see the module docstring for numbers)."""
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if number.is_integer() and -EXACT_INT <= number <= EXACT_INT:
            return int(number)
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return struct_to_dict(value.struct_value)
    if kind == "list_value":
        return [value_to_python(v) for v in value.list_value.values]
    return None


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a dict of JSON-like Python values."""
    return {key: value_to_python(value) for key, value in struct.fields.items()}
