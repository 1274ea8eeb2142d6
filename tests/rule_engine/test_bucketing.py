"""Sticky bucketing: the documented hash, shipped test vectors, distribution and stickiness.

Expected values here never come from the code under test: they come from an independent pure-Python
MurmurHash3 (checked against the algorithm's published reference values) and the formula documented
in ``flagyard.rule_engine.bucketing``.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from flagyard.rule_engine import ErrorCode, Reason, load_flagset

VECTORS = Path(__file__).parent / "data" / "bucketing_vectors.json"


def murmur3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3 x86 32-bit, written from the algorithm's description."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed & mask
    rounded = len(data) - len(data) % 4
    for i in range(0, rounded, 4):
        k = int.from_bytes(data[i : i + 4], "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    k = 0
    tail = data[rounded:]
    if len(tail) >= 3:
        k ^= tail[2] << 16
    if len(tail) >= 2:
        k ^= tail[1] << 8
    if tail:
        k ^= tail[0]
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        k = (k * c2) & mask
        h ^= k
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    h ^= h >> 16
    return h


def documented_variant(
    salt: str, flag_key: str, value: str, weights: list[tuple[str, int]]
) -> tuple[int, int, str]:
    total = sum(w for _, w in weights)
    h = murmur3_32(f"{salt}:{flag_key}:{value}".encode())
    b = (h * total) >> 32
    upper = 0
    for variant, weight in weights:
        upper += weight
        if b < upper:
            return h, b, variant
    raise AssertionError("bucket beyond the last variation")


@pytest.mark.parametrize(
    ("data", "seed", "expected"),
    [
        (b"", 0, 0),
        (b"", 1, 0x514E28B7),
        (b"", 0xFFFFFFFF, 0x81F16F39),
        (b"\0\0\0\0", 0, 0x2362F9DE),
        (b"a", 0x9747B28C, 0x7FA09EA6),
        (b"aaaa", 0x9747B28C, 0x5A97808A),
        (b"Hello, world!", 0x9747B28C, 0x24884CBA),
        (b"The quick brown fox jumps over the lazy dog", 0x9747B28C, 0x2FA826CD),
    ],
)
def test_reference_murmur3__published_vectors__match(data: bytes, seed: int, expected: int) -> None:
    assert murmur3_32(data, seed) == expected


def split_flag(
    key: str, salt: str, weights: list[tuple[str, int]], unit: str, bucket_by: str = "targeting_key"
) -> dict[str, Any]:
    return {
        "key": key,
        "type": "string",
        "variants": {v: v.upper() for v, _ in weights},
        "salt": salt,
        "default_split": {
            "bucket_by": bucket_by,
            "weight_unit": unit,
            "variations": [{"variant": v, "weight": w} for v, w in weights],
        },
    }


def load_vectors() -> list[dict[str, Any]]:
    return json.loads(VECTORS.read_text())["vectors"]  # type: ignore[no-any-return]


def test_vectors_file__every_entry__follows_the_documented_formula() -> None:
    vectors = load_vectors()
    assert len(vectors) >= 20
    for v in vectors:
        weights = [(w["variant"], w["weight"]) for w in v["weights"]]
        h, b, variant = documented_variant(v["salt"], v["flag_key"], v["value"], weights)
        assert (h, b, variant) == (v["hash"], v["bucket"], v["variant"]), v


def test_engine__shipped_vectors__assigns_the_expected_variants() -> None:
    for v in load_vectors():
        weights = [(w["variant"], w["weight"]) for w in v["weights"]]
        unit = "basis_points" if sum(w for _, w in weights) == 10000 else "relative"
        flagset = load_flagset({"flags": [split_flag(v["flag_key"], v["salt"], weights, unit)]})
        result = flagset.evaluate(v["flag_key"], None, {"targeting_key": v["value"]})
        assert (result.variant, result.reason) == (v["variant"], Reason.SPLIT), v


def test_engine__random_keys__agree_with_the_independent_implementation() -> None:
    weights = [("a", 1234), ("b", 0), ("c", 4321), ("d", 4445)]
    flagset = load_flagset({"flags": [split_flag("exp", "s1", weights, "basis_points")]})
    for i in range(2000):
        key = f"user-{i * 7919}"
        assert (
            flagset.evaluate("exp", None, {"targeting_key": key}).variant
            == documented_variant("s1", "exp", key, weights)[2]
        )


def test_split__100k_keys__lands_within_one_percent_of_weights() -> None:
    weights = [("a", 2500), ("b", 7500)]
    flagset = load_flagset({"flags": [split_flag("dist", "", weights, "basis_points")]})
    counts = Counter(
        flagset.evaluate("dist", None, {"targeting_key": f"k{i}"}).variant for i in range(100_000)
    )
    assert abs(counts["a"] / 100_000 - 0.25) <= 0.01
    assert abs(counts["b"] / 100_000 - 0.75) <= 0.01


def test_split__relative_weights__distribute_proportionally() -> None:
    weights = [("a", 1), ("b", 2), ("c", 1)]
    flagset = load_flagset({"flags": [split_flag("rel", "x", weights, "relative")]})
    counts = Counter(flagset.evaluate("rel", None, {"targeting_key": f"k{i}"}).variant for i in range(40_000))
    assert abs(counts["b"] / 40_000 - 0.5) <= 0.01
    assert abs(counts["a"] / 40_000 - 0.25) <= 0.01


def test_split__zero_weight_variant__is_never_served() -> None:
    weights = [("a", 0), ("b", 10000), ("c", 0)]
    flagset = load_flagset({"flags": [split_flag("z", "", weights, "basis_points")]})
    assert {flagset.evaluate("z", None, {"targeting_key": f"k{i}"}).variant for i in range(5000)} == {"b"}


def test_split__same_key__is_sticky_and_salt_reshuffles() -> None:
    weights = [("a", 5000), ("b", 5000)]
    one = load_flagset({"flags": [split_flag("s", "salt-1", weights, "basis_points")]})
    two = load_flagset({"flags": [split_flag("s", "salt-2", weights, "basis_points")]})
    keys = [f"k{i}" for i in range(2000)]
    first = [one.evaluate("s", None, {"targeting_key": k}).variant for k in keys]
    assert first == [one.evaluate("s", None, {"targeting_key": k}).variant for k in keys]
    differ = sum(
        a != two.evaluate("s", None, {"targeting_key": k}).variant for a, k in zip(first, keys, strict=True)
    )
    assert 800 < differ < 1200


def test_split__missing_targeting_key__is_an_error_never_a_random_assignment() -> None:
    flagset = load_flagset({"flags": [split_flag("s", "", [("a", 5000), ("b", 5000)], "basis_points")]})
    result = flagset.evaluate("s", "default", {"country": "DE"})
    assert (result.value, result.variant, result.reason) == ("default", None, Reason.ERROR)
    assert result.error_code is ErrorCode.TARGETING_KEY_MISSING


def test_split__bucket_by_other_attribute__uses_it_and_reports_invalid_context_when_missing() -> None:
    weights = [("a", 5000), ("b", 5000)]
    flagset = load_flagset({"flags": [split_flag("s", "", weights, "basis_points", bucket_by="org.id")]})
    for org in (17, "acme"):
        expected = documented_variant("", "s", str(org), weights)[2]
        assert flagset.evaluate("s", None, {"targeting_key": "u", "org": {"id": org}}).variant == expected
    for bad in ({}, {"org": {"id": 1.5}}, {"org": {"id": True}}):
        assert flagset.evaluate("s", None, bad).error_code is ErrorCode.INVALID_CONTEXT


def test_split__integer_targeting_key__buckets_by_its_decimal_string() -> None:
    weights = [("a", 5000), ("b", 5000)]
    flagset = load_flagset({"flags": [split_flag("s", "", weights, "basis_points")]})
    for key in (0, 42, -7, 10**12):
        assert (
            flagset.evaluate("s", None, {"targeting_key": key}).variant
            == documented_variant("", "s", str(key), weights)[2]
        )
