"""A segment written through the API is held to MAX_SEGMENT_DEPTH: a chain of segments (each matching
the next) through it longer than that is refused with 422 at ``/rules``, as a document's would be."""

from __future__ import annotations

from cp_helpers import Api
from fastapi.testclient import TestClient

from flagyard.rule_engine import limits

S = "/api/v1/projects/shop/segments"
DEPTH = limits.MAX_SEGMENT_DEPTH


def refers_to(key: str) -> list[dict[str, object]]:
    return [{"clauses": [{"operator": "segment_match", "values": [key]}]}]


def test_segment_chain__exactly_the_bound_accepted__one_more_refused_naming_the_chain(
    client: TestClient, api: Api
) -> None:
    api.project()
    api.segment(key=f"s{DEPTH}")
    for i in reversed(range(2, DEPTH)):
        api.segment(key=f"s{i}", rules=refers_to(f"s{i + 1}"))
    api.segment(key="s1", rules=refers_to("s2"))  # s1 … s64: exactly the bound

    r = client.post(S, json={"key": "s0", "name": "S0", "rules": refers_to("s1")})

    assert r.status_code == 422, r.text
    assert r.json()["details"] == [
        {
            "path": "/rules",
            "message": f"segment chain of {DEPTH + 1} segments through 's0' is longer than the limit of "
            f"{DEPTH} (MAX_SEGMENT_DEPTH): s0 -> s1 -> s2 -> … -> s{DEPTH - 1} -> s{DEPTH}",
        }
    ]
    assert client.get(f"{S}/s0").status_code == 404
