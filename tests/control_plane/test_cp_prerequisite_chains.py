"""A flag written through the API is held to MAX_PREREQUISITE_DEPTH: a prerequisite chain through it
longer than that is refused with 422 naming the chain, and nothing is written."""

from __future__ import annotations

from cp_helpers import Api
from fastapi.testclient import TestClient

from flagyard.rule_engine import limits

F = "/api/v1/projects/shop/flags"
DEPTH = limits.MAX_PREREQUISITE_DEPTH


def on(key: str) -> dict[str, object]:
    return {"dev": {"prerequisites": [{"flag": key, "variant": "on"}]}}


def test_prerequisite_chain__exactly_the_bound_accepted__one_more_refused_naming_the_chain(
    client: TestClient, api: Api
) -> None:
    api.project()
    api.flag(key=f"f{DEPTH}")
    for i in reversed(range(1, DEPTH)):
        api.flag(key=f"f{i}", environments=on(f"f{i + 1}"))  # f1 … f64: exactly the bound

    body = {"key": "f0", "name": "F0", "type": "boolean", "variants": {"on": True, "off": False}}
    r = client.post(F, json={**body, "environments": on("f1")})

    assert r.status_code == 422, r.text
    (detail,) = r.json()["details"]
    assert detail["path"] == "/environments/dev/prerequisites"
    assert detail["message"] == (
        f"prerequisite chain of {DEPTH + 1} flags through 'f0' is longer than the limit of {DEPTH} "
        f"(MAX_PREREQUISITE_DEPTH): f0 -> f1 -> f2 -> … -> f{DEPTH - 1} -> f{DEPTH}"
    )
    assert client.get(f"{F}/f0").status_code == 404
