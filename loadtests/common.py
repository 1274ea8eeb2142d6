"""What the runner and the locustfiles share: the seeded flags, random rules and contexts, request names."""

from __future__ import annotations

import random
from typing import Any

from .settings import FlagTypeName

FLAG_PREFIX = "lt-"
FLAG_TYPES: tuple[FlagTypeName, ...] = ("boolean", "string", "integer", "float", "object")
VARIANTS: dict[FlagTypeName, dict[str, Any]] = {
    "boolean": {"a": True, "b": False},
    "string": {"a": "alpha", "b": "beta"},
    "integer": {"a": 10, "b": 20},
    "float": {"a": 0.25, "b": 1.5},
    "object": {"a": {"limit": 10, "tier": "a"}, "b": {"limit": 20, "tier": "b"}},
}
"""Every seeded flag has the variants ``a`` and ``b``, so any rule the admin user writes is valid."""
COUNTRIES = ("DE", "FR", "US", "GB", "JP", "BR", "IN", "ES")
PLANS = ("free", "pro", "enterprise")

# Request names (locust groups its statistics by them).
GET_FLAG = "GET /flags/{flag}"
LIST_FLAGS = "GET /flags"
GET_ENV_CONFIG = "GET /flags/{flag}/environments/{env}"
PATCH_ENV_CONFIG = "PATCH /flags/{flag}/environments/{env}"
PATCH_STALE = "PATCH /flags/{flag}/environments/{env} [412 stale ETag]"
REREAD_AFTER_412 = "GET /flags/{flag}/environments/{env} [re-read after 412]"
PATCH_RETRY = "PATCH /flags/{flag}/environments/{env} [retry after 412]"
TOGGLE = "POST /flags/{flag}/environments/{env}/toggle"
ROLLBACK = "POST /flags/{flag}/rollback"
ROLLBACK_NOOP = "POST /flags/{flag}/rollback [409 same state]"
RESOLVE_METHODS: dict[FlagTypeName, str] = {
    "boolean": "ResolveBoolean",
    "string": "ResolveString",
    "integer": "ResolveInteger",
    "float": "ResolveFloat",
    "object": "ResolveObject",
}
RESOLVE_ALL = "ResolveAll"
VERSION_REGRESSION = "version regression"
"""A failure event of the evaluation user: a flag's version (or the revision) went backwards."""


def seed_flags(count: int) -> dict[str, FlagTypeName]:
    """``count`` flag keys → type, the types taking turns."""
    return {
        f"{FLAG_PREFIX}{FLAG_TYPES[i % len(FLAG_TYPES)]}-{i:03d}": FLAG_TYPES[i % len(FLAG_TYPES)]
        for i in range(count)
    }


def flag_body(key: str, flag_type: FlagTypeName, environment: str) -> dict[str, Any]:
    """The POST /flags body of a seeded flag: on in ``environment``, a rule for two countries."""
    return {
        "key": key,
        "name": f"Load test {key}",
        "description": "Created by loadtests.run",
        "tags": ["loadtest"],
        "type": flag_type,
        "variants": VARIANTS[flag_type],
        "environments": {
            environment: {
                "enabled": True,
                "off_variant": "b",
                "default_variant": "a",
                "rules": random_rules(random.Random(key)),  # noqa: S311 - test data
            }
        },
        "comment": "load test seed",
    }


def random_rules(rng: random.Random) -> list[dict[str, Any]]:
    """One to three rules over ``country`` and ``plan``, each serving ``a`` or ``b`` (or a split)."""
    rules: list[dict[str, Any]] = []
    for i in range(rng.randint(1, 3)):
        clause = (
            {"attribute": "country", "operator": "in", "values": rng.sample(COUNTRIES, rng.randint(1, 3))}
            if rng.random() < 0.7
            else {"attribute": "plan", "operator": "eq", "values": [rng.choice(PLANS)]}
        )
        rule: dict[str, Any] = {"id": f"r{i}", "clauses": [clause]}
        if rng.random() < 0.2:
            weight = rng.randrange(0, 10_001, 500)
            variations = [{"variant": "a", "weight": weight}, {"variant": "b", "weight": 10_000 - weight}]
            rule["split"] = {"variations": variations}
        else:
            rule["variant"] = rng.choice("ab")
        rules.append(rule)
    return rules


def grpc_status(exc: BaseException) -> str:
    """``CODE: details`` of a failed gRPC call."""
    code = getattr(exc, "code", None)
    details = getattr(exc, "details", None)
    name = getattr(code(), "name", "RPC error") if callable(code) else type(exc).__name__
    return f"{name}: {details() if callable(details) else exc}"


def random_context(rng: random.Random) -> dict[str, Any]:
    return {
        "targeting_key": f"user-{rng.randrange(100_000)}",
        "country": rng.choice(COUNTRIES),
        "plan": rng.choice(PLANS),
    }
