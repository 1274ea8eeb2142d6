"""Request bodies at the edge: size (413 while streaming), strict JSON (duplicate keys, depth; 422 with a
pointer), parsed once; per-environment counts of flags and segments."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from cp_helpers import Api, rows
from fastapi.testclient import TestClient

from flagyard.control_plane.api import body as body_module
from flagyard.rule_engine import limits

P = "/api/v1/projects"
F = f"{P}/shop/flags"
JSON = {"Content-Type": "application/json"}


def _counts(engine: sa.Engine) -> tuple[int, int, int]:
    return (
        rows(engine, "SELECT count(*) FROM flags")[0][0],
        rows(engine, "SELECT count(*) FROM audit_log")[0][0],
        rows(engine, "SELECT count(*) FROM outbox")[0][0],
    )


def test_body__declared_over_the_limit__413_before_reading(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    before = _counts(engine)
    big = b'{"key": "f", "name": "' + b"x" * limits.MAX_REQUEST_BODY_BYTES + b'"}'
    r = client.post(F, content=big, headers=JSON)
    assert r.status_code == 413
    message = f"the request body is larger than {limits.MAX_REQUEST_BODY_BYTES} bytes"
    assert r.json() == {
        "code": "payload_too_large",
        "message": message,
        "details": [{"path": "", "message": message}],
    }
    assert _counts(engine) == before


def test_body__chunked_over_the_limit__413_counted_as_it_arrives(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    before = _counts(engine)
    sent = []

    def chunks() -> Iterator[bytes]:
        yield b'{"key": "f", "name": "'
        for _ in range(limits.MAX_REQUEST_BODY_BYTES // 65536 + 2):
            sent.append(1)
            yield b"x" * 65536
        yield b'"}'

    r = client.post(F, content=chunks(), headers=JSON)  # no Content-Length: chunked
    assert r.status_code == 413
    assert r.json()["code"] == "payload_too_large"
    assert _counts(engine) == before


def test_body__import_route__has_the_import_limit(client: TestClient, api: Api) -> None:
    api.project()
    assert limits.MAX_IMPORT_BODY_BYTES > limits.MAX_REQUEST_BODY_BYTES
    padding = "x" * (limits.MAX_REQUEST_BODY_BYTES + 10)
    document = b'{"flags": [], "segments": [], "metadata": {"note": "' + padding.encode() + b'"}}'
    r = client.post(f"{P}/shop/environments/prod/import", content=document, headers=JSON)
    assert r.status_code != 413, r.text
    over = b" " * (limits.MAX_IMPORT_BODY_BYTES + 1)
    r = client.post(f"{P}/shop/environments/prod/import", content=over, headers=JSON)
    assert r.status_code == 413
    assert str(limits.MAX_IMPORT_BODY_BYTES) in r.json()["message"]


def test_body__duplicate_object_key__422_with_pointer_nothing_written(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    before = _counts(engine)
    text = '{"key": "f", "name": "F", "type": "boolean", "variants": {"on": true, "on": false}}'
    r = client.post(F, content=text, headers=JSON)
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "validation_error"
    (detail,) = body["details"]
    assert "duplicate key 'on'" in detail["message"]
    assert _counts(engine) == before


def test_body__top_level_duplicate__422_not_last_one_wins(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    text = '{"key": "f", "key": "g", "name": "F", "type": "boolean", "variants": {"on": true}}'
    r = client.post(F, content=text, headers=JSON)
    assert r.status_code == 422
    assert rows(engine, "SELECT count(*) FROM flags")[0][0] == 0


def test_body__nested_far_too_deep__422_not_500(client: TestClient, api: Api, engine: sa.Engine) -> None:
    api.project()
    deep = '{"key": "f", "name": "F", "type": "object", "variants": {"on": ' + "[" * 5000 + "]" * 5000 + "}}"
    r = client.post(F, content=deep, headers=JSON)
    assert r.status_code == 422
    assert r.json()["code"] == "validation_error"
    assert rows(engine, "SELECT count(*) FROM flags")[0][0] == 0


def test_body__parsed_once(client: TestClient, api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    api.project()
    calls = []
    real = body_module.parse_json

    def counting(text: str | bytes) -> object:
        calls.append(len(text))
        return real(text)

    monkeypatch.setattr(body_module, "parse_json", counting)
    r = client.post(
        F,
        json={"key": "f", "name": "F", "type": "boolean", "variants": {"on": True}},
        headers={"Idempotency-Key": "once"},
    )
    assert r.status_code == 201, r.text
    assert len(calls) == 1
    # An empty body is not JSON to parse: a route whose body is optional still takes none.
    key_id = client.post("/api/v1/api-keys", json={"name": "k", "role": "reader"}).json()["id"]
    assert client.post(f"/api/v1/api-keys/{key_id}/rotate").status_code == 201
    assert len(calls) == 2


def test_counts__flags_per_environment__422_at_the_bound(
    client: TestClient, api: Api, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.project()
    monkeypatch.setattr(limits, "MAX_FLAGS_PER_ENVIRONMENT", 2)
    api.flag(key="a")
    api.flag(key="b")
    r = client.post(F, json={"key": "c", "name": "C", "type": "boolean", "variants": {"on": True}})
    assert r.status_code == 422
    assert "at most 2" in r.json()["message"]
    assert "MAX_FLAGS_PER_ENVIRONMENT" in r.json()["details"][0]["message"]
    client.delete(f"{F}/a", headers={"If-Match": api.etag(f"{F}/a")})
    api.flag(key="c")  # a deleted flag no longer counts
    assert rows(engine, "SELECT count(*) FROM flags WHERE deleted_at IS NULL")[0][0] == 2


def test_counts__segments_per_environment__422_at_the_bound(
    client: TestClient, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.project()
    monkeypatch.setattr(limits, "MAX_SEGMENTS_PER_ENVIRONMENT", 1)
    api.segment(key="s1")
    r = client.post(f"{P}/shop/segments", json={"key": "s2", "name": "S2", "included": ["u"]})
    assert r.status_code == 422
    assert "MAX_SEGMENTS_PER_ENVIRONMENT" in r.json()["message"]


def test_counts__import_beyond_the_bound__422_at_flags_nothing_applied(
    client: TestClient, api: Api, engine: sa.Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    api.project()
    api.flag(key="kept")
    monkeypatch.setattr(limits, "MAX_FLAGS_PER_ENVIRONMENT", 2)
    flag = {"type": "boolean", "variants": {"on": True, "off": False}, "default_variant": "on"}
    document = {"flags": [{"key": "n1", **flag}, {"key": "n2", **flag}], "segments": []}
    r = client.post(f"{P}/shop/environments/prod/import", json=document)
    assert r.status_code == 422
    (detail,) = r.json()["details"]
    assert detail["path"] == "/flags"
    assert "would hold 3 flags (2 imported, 1 kept)" in detail["message"]
    assert rows(engine, "SELECT key FROM flags") == [("kept",)]
    document["flags"] = document["flags"][:1]
    assert client.post(f"{P}/shop/environments/prod/import", json=document).status_code == 200
