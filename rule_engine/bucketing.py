"""Sticky bucketing, reproducible by any SDK.

The hash input is the UTF-8 encoding of ``f"{salt}:{flag_key}:{value}"`` where ``value`` is the bucket-by
attribute: a string as is, an integer in decimal (no other type buckets). The hash is MurmurHash3
x86 32-bit, seed 0, read as unsigned. With ``total`` the sum of the split's weights (10000 for basis
points), the bucket is ``(hash * total) >> 32``, an integer in ``[0, total)``; variations own consecutive
ranges of buckets in the order they are listed, each as wide as its weight.
"""

from __future__ import annotations

from typing import Any

import mmh3


def bucket_value(raw: Any) -> str | None:
    """The string a context value buckets by, or ``None`` if it cannot bucket."""
    t = type(raw)
    if t is str:
        return raw  # type: ignore[no-any-return]
    if t is int:
        return str(raw)
    return None


def bucket_hash(salt: str, flag_key: str, value: str) -> int:
    """MurmurHash3 x86 32-bit (seed 0, unsigned) of ``salt:flag_key:value``."""
    return mmh3.hash(f"{salt}:{flag_key}:{value}", 0, False)


def bucket(salt: str, flag_key: str, value: str, total: int) -> int:
    """The bucket in ``[0, total)`` that ``value`` falls into for this flag."""
    return (bucket_hash(salt, flag_key, value) * total) >> 32
