"""Placeholders (flags and segments held uncompiled until first use) carry the evaluation chain on, so a
cycle or an over-deep chain among flags not yet compiled answers as it does once they are compiled. The
environment is written to a real Redis and built from it as the data plane does at hydration."""

from __future__ import annotations

import asyncio
from typing import Any

import redis

from flagyard.contracts.redis import Change, apply_changes, load_environment_sync
from flagyard.data_plane.l1 import Built, build
from flagyard.rule_engine import ErrorCode, FlagSet, Reason, limits

ENV = "env-lazy-chains"


def flag(key: str, *prerequisites: str) -> dict[str, Any]:
    return {
        "key": key,
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "default_variant": "on",
        "off_variant": "off",
        "prerequisites": [{"flag": p, "variant": "on"} for p in prerequisites],
    }


def segment(key: str, *refers_to: str, included: tuple[str, ...] = ()) -> dict[str, Any]:
    rules = [{"clauses": [{"operator": "segment_match", "values": [r]}]} for r in refers_to]
    return {"key": key, "included": list(included), "rules": rules}


def lazy_env(
    rds: redis.Redis, prefix: str, flags: list[dict[str, Any]], segments: list[dict[str, Any]] | None = None
) -> Built:
    """The definitions written to Redis (past validation, as a change arriving one flag at a time can
    leave them), loaded and built with placeholders only: nothing is compiled yet."""
    segments = segments or []
    changes = [Change("segment", s["key"], 1, s) for s in segments]
    changes += [Change("flag", f["key"], 1, f) for f in flags]
    apply_changes(rds, prefix, ENV, changes)
    data = load_environment_sync(rds, prefix, ENV)
    built = asyncio.run(build(data, lazy=True, on_invalid=lambda *_: None))
    assert len(built.lazy) == len(flags) + len(segments)
    assert all(held.compiled is None for held in built.lazy)
    return built


def test_prerequisite_cycle_among_placeholders__names_the_cycle_headed_by_the_flag_asked(
    rds: redis.Redis, prefix: str
) -> None:
    built = lazy_env(rds, prefix, [flag("a", "b"), flag("b", "c"), flag("c", "a")])

    result = built.flagset.evaluate("a", "d", {})

    assert (result.value, result.reason, result.error_code) == ("d", Reason.ERROR, ErrorCode.GENERAL)
    assert result.error_message == "flag 'a': prerequisite cycle: a -> b -> c -> a"
    assert result.version == 1


def test_chain_past_the_bound_among_placeholders__answers_error_naming_the_bound(
    rds: redis.Redis, prefix: str
) -> None:
    n = limits.MAX_PREREQUISITE_DEPTH + 1
    built = lazy_env(rds, prefix, [flag(f"f{i}", f"f{i + 1}") for i in range(n - 1)] + [flag(f"f{n - 1}")])

    result = built.flagset.evaluate("f0", None, {})

    assert (result.reason, result.error_code) == (Reason.ERROR, ErrorCode.GENERAL)
    assert result.error_message is not None
    assert result.error_message.startswith(
        f"flag 'f0': prerequisite chain deeper than {limits.MAX_PREREQUISITE_DEPTH} flags "
        "(MAX_PREREQUISITE_DEPTH)"
    )
    # Its second flag's chain fits the bound and serves (every placeholder is compiled by now).
    assert built.flagset.evaluate("f1", None, {}).variant == "on"


def test_chain_of_exactly_the_bound_among_placeholders__evaluates(rds: redis.Redis, prefix: str) -> None:
    n = limits.MAX_PREREQUISITE_DEPTH
    built = lazy_env(rds, prefix, [flag(f"f{i}", f"f{i + 1}") for i in range(n - 1)] + [flag(f"f{n - 1}")])

    result = built.flagset.evaluate("f0", None, {})

    assert (result.variant, result.reason) == ("on", Reason.STATIC)


def test_segment_chain_past_the_bound_among_placeholders__answers_error(
    rds: redis.Redis, prefix: str
) -> None:
    n = limits.MAX_SEGMENT_DEPTH + 1
    segments = [segment(f"s{i}", f"s{i + 1}") for i in range(n - 1)]
    segments.append(segment(f"s{n - 1}", included=("u",)))
    asks = {
        **flag("f"),
        "default_variant": "off",
        "rules": [{"id": "r", "clauses": [{"operator": "segment_match", "values": ["s0"]}], "variant": "on"}],
    }
    built = lazy_env(rds, prefix, [asks], segments)
    flagset: FlagSet = built.flagset

    result = flagset.evaluate("f", None, {"targeting_key": "u"})

    assert result.reason is Reason.ERROR
    assert result.error_message is not None
    assert result.error_message.startswith(
        f"flag 'f': segment chain deeper than {limits.MAX_SEGMENT_DEPTH} segments (MAX_SEGMENT_DEPTH)"
    )
