"""The published OpenAPI document is the contract: every 2xx has a schema the bodies match (the test
client checks each one, see ``cp_helpers.CheckedClient``), Idempotency-Key is advertised exactly where a
retry is replayed, a 405 lists every method of its path, and /readyz documents its 503."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from contract_helpers import CheckedClient, ResponseContract, ResponseContractError
from cp_helpers import Api
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from flagyard.control_plane.api.routes.insight import READ_ONLY_POSTS
from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import Settings

SPEC = create_app(
    Settings(outbox_relay_interval_seconds=0, outbox_dispatch="inline", access_log=False)
).openapi()
OPERATIONS = [
    (method.upper(), path, operation)
    for path, operations in SPEC["paths"].items()
    for method, operation in operations.items()
]
WRITES = [
    (method, path)
    for method, path, _ in OPERATIONS
    # Console sign-in and sign-out act on the session cookie, not on a resource (test_cp_sessions.py);
    # explain and preview are POSTs only for their bodies and write nothing (test_cp_insight.py).
    if method != "GET" and not path.startswith("/api/v1/sessions") and not path.endswith(READ_ONLY_POSTS)
]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


def _concrete(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", template)


# --- every 2xx is described -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "operation"), OPERATIONS, ids=[f"{m} {p}" for m, p, _ in OPERATIONS]
)
def test_openapi__every_operation__declares_its_2xx_with_a_json_schema(
    method: str, path: str, operation: dict[str, Any]
) -> None:
    successes = {status: r for status, r in operation["responses"].items() if status.startswith("2")}
    assert successes, f"{method} {path} declares no 2xx"
    for status, response in successes.items():
        content = response.get("content", {})
        if status == "204":
            assert not content
            continue
        schema = content.get("application/json", {}).get("schema")
        assert schema, f"{method} {path} → {status} has no JSON schema"
        assert schema.get("$ref") or schema.get("type") or schema.get("anyOf"), schema


def _response(status: int, body: Any, path: str = "/api/v1/projects/shop") -> httpx.Response:
    return httpx.Response(status, json=body, request=httpx.Request("GET", "http://testserver" + path))


PROJECT = {
    "key": "shop",
    "name": "Shop",
    "description": "",
    "revision": 1,
    "created_at": "2026-01-01T00:00:00+00:00",
    "updated_at": "2026-01-01T00:00:00Z",
}


@pytest.mark.parametrize(
    "response",
    [
        _response(200, {k: v for k, v in PROJECT.items() if k != "revision"}),  # a field missing
        _response(200, {**PROJECT, "secret": "x"}),  # a field the schema does not have
        _response(200, {**PROJECT, "created_at": "2026-01-01T00:00:00"}),  # no offset
        _response(200, {**PROJECT, "revision": "1"}),  # wrong type
        _response(202, PROJECT),  # a status the operation does not declare
        _response(404, {"code": "not_found"}),  # a declared error body without its fields
        _response(200, {"items": [PROJECT], "next_cursor": 3}, "/api/v1/projects"),
    ],
    ids=["missing", "extra", "naive-time", "type", "undeclared-status", "error-body", "cursor-type"],
)
def test_contract__body_off_its_schema__refused(app: FastAPI, response: httpx.Response) -> None:
    with pytest.raises(ResponseContractError):
        ResponseContract(app).check(response)


def test_contract__matching_bodies__accepted(app: FastAPI) -> None:
    contract = ResponseContract(app)
    contract.check(_response(200, PROJECT))
    contract.check(_response(200, {"items": [PROJECT], "next_cursor": None}, "/api/v1/projects"))
    contract.check(_response(405, {"anything": "undeclared errors are not checked"}))


# --- /readyz --------------------------------------------------------------------------------------


def test_readyz__openapi__declares_200_and_503_bodies() -> None:
    responses = SPEC["paths"]["/readyz"]["get"]["responses"]
    assert responses["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ReadyOut"
    }
    unavailable = responses["503"]
    assert unavailable["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/NotReadyBody"
    }
    assert "database" in unavailable["description"]
    not_ready = SPEC["components"]["schemas"]["NotReadyBody"]
    assert set(not_ready["required"]) == {"code", "message", "details", "checks"}


def test_readyz__database_down__503_body_matches_its_schema(settings: Settings) -> None:
    down = settings.model_copy(
        update={
            "database_url": SecretStr("postgresql+psycopg://postgres@127.0.0.1:1/flagyard"),
            "db_connect_timeout_seconds": 1,
        }
    )
    with CheckedClient(create_app(down)) as c:
        r = c.get("/readyz")
        c.contract.check(r)  # the client checks it already; this names the point of the test
    assert r.status_code == 503
    assert r.json() == {
        "code": "not_ready",
        "message": "the database is unavailable",
        "details": [{"path": "/checks/database", "message": "unreachable"}],
        "checks": {"database": "unavailable", "redis": "ok"},
    }


# --- 405 ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", list(SPEC["paths"]))
def test_wrong_method__any_path__405_allow_lists_every_method(client: TestClient, path: str) -> None:
    allowed = {method.upper() for method in SPEC["paths"][path]}
    for method in sorted(set(METHODS) - allowed):
        r = client.request(method, _concrete(path))
        assert r.status_code == 405, (method, path, r.text)
        assert set(r.headers["allow"].split(", ")) == allowed, (method, path)
        assert r.json()["code"] == "method_not_allowed"
        assert r.headers["allow"] in r.json()["message"]


# --- Idempotency-Key ------------------------------------------------------------------------------


def _advertises(method: str, path: str, header: str) -> bool:
    parameters = SPEC["paths"][path][method.lower()].get("parameters", [])
    return any(p["in"] == "header" and p["name"].lower() == header.lower() for p in parameters)


BODIES: dict[tuple[str, str], Any] = {
    ("POST", "/api/v1/projects"): {"key": "p2", "name": "P2"},
    ("PATCH", "/api/v1/projects/{project}"): {"name": "Shop 2"},
    ("POST", "/api/v1/projects/{project}/environments"): {"key": "qa", "name": "QA"},
    ("PATCH", "/api/v1/projects/{project}/environments/{env}"): {"name": "Dev 2"},
    ("POST", "/api/v1/projects/{project}/flags"): {
        "key": "f2",
        "name": "F2",
        "type": "boolean",
        "variants": {"on": True, "off": False},
    },
    ("PATCH", "/api/v1/projects/{project}/flags/{flag}"): {"name": "Checkout 2"},
    ("PATCH", "/api/v1/projects/{project}/flags/{flag}/environments/{env}"): {"enabled": False},
    ("POST", "/api/v1/projects/{project}/flags/{flag}/environments/{env}/toggle"): {"enabled": False},
    ("POST", "/api/v1/projects/{project}/flags/{flag}/rollback"): {"version": 1},
    ("POST", "/api/v1/projects/{project}/flags/{flag}/archive"): {"comment": "done"},
    ("POST", "/api/v1/projects/{project}/flags/{flag}/unarchive"): {},
    ("POST", "/api/v1/projects/{project}/segments"): {"key": "s2", "name": "S2"},
    ("PATCH", "/api/v1/projects/{project}/segments/{segment}"): {"name": "Beta 3"},
    ("POST", "/api/v1/projects/{project}/segments/{segment}/rollback"): {"version": 1},
    ("POST", "/api/v1/api-keys"): {"name": "k2", "role": "reader"},
    ("POST", "/api/v1/api-keys/{key_id}/rotate"): None,
    ("PATCH", "/api/v1/api-keys/{key_id}"): {"owner": "someone@example.com"},
    ("POST", "/api/v1/projects/{project}/environments/{env}/sdk-keys"): {"name": "sdk 2"},
    ("POST", "/api/v1/projects/{project}/environments/{env}/sdk-keys/{key_id}/rotate"): None,
    ("POST", "/api/v1/projects/{project}/environments/{env}/import"): {"flags": [], "segments": []},
    ("POST", "/api/v1/jobs/failed/requeue"): None,
    ("POST", "/api/v1/projects/{project}/environments/{env}/scheduled-changes"): {
        "kind": "toggle",
        "target": "checkout",
        "body": {"enabled": False},
        "apply_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
    },
    ("PATCH", "/api/v1/projects/{project}/environments/{env}/scheduled-changes/{change_id}"): {
        "apply_at": (datetime.now(UTC) + timedelta(days=2)).isoformat()
    },
    ("POST", "/api/v1/projects/{project}/environments/{env}/scheduled-changes/{change_id}/cancel"): None,
    ("POST", "/api/v1/projects/{project}/webhooks"): {
        "url": "https://example.com/h",
        "events": ["flag.toggled"],
    },
    ("PATCH", "/api/v1/projects/{project}/webhooks/{webhook_id}"): {"description": "changed"},
    ("POST", "/api/v1/projects/{project}/webhooks/{webhook_id}/rotate-secret"): None,
    ("POST", "/api/v1/projects/{project}/webhooks/{webhook_id}/test"): None,
    ("POST", "/api/v1/projects/{project}/environments/{env}/change-requests"): {
        "kind": "toggle",
        "target": "checkout",
        "body": {"enabled": False},
        "title": "off",
    },
    ("PATCH", "/api/v1/projects/{project}/environments/{env}/change-requests/{request_id}"): {
        "title": "off, really"
    },
    ("POST", "/api/v1/projects/{project}/environments/{env}/change-requests/{request_id}/rebase"): None,
    ("POST", "/api/v1/projects/{project}/environments/{env}/change-requests/{request_id}/comments"): {
        "body": "looks fine"
    },
    ("POST", "/api/v1/projects/{project}/environments/{env}/change-requests/{request_id}/approve"): {
        "revision": 1
    },
    ("POST", "/api/v1/projects/{project}/environments/{env}/change-requests/{request_id}/reject"): {
        "revision": 1
    },
    ("POST", "/api/v1/projects/{project}/environments/{env}/change-requests/{request_id}/withdraw"): None,
    ("POST", "/api/v1/projects/{project}/environments/{env}/change-requests/{request_id}/apply"): {},
}
"""A valid request for each write that has a body (a DELETE has none)."""


def _world(client: TestClient, api: Api) -> dict[str, str]:
    """shop (dev, prod) with flag checkout and segment beta, each at version 2 (so rollback to 1 is a
    change), a reader API key and an SDK key of dev: every write has something to act on."""
    api.project("shop", envs=("dev", "prod"))
    api.flag()
    api.segment()
    r = client.post("/api/v1/projects/shop/flags/checkout/environments/dev/toggle", json={"enabled": True})
    assert r.status_code == 200, r.text
    etag = api.etag("/api/v1/projects/shop/segments/beta")
    r = client.patch(
        "/api/v1/projects/shop/segments/beta", json={"name": "Beta 2"}, headers={"If-Match": etag}
    )
    assert r.status_code == 200, r.text
    api_key = client.post("/api/v1/api-keys", json={"name": "reader", "role": "reader"}).json()["id"]
    sdk_key = client.post("/api/v1/projects/shop/environments/dev/sdk-keys", json={"name": "sdk"}).json()[
        "id"
    ]
    change = client.post(
        "/api/v1/projects/shop/environments/dev/scheduled-changes",
        json={
            "kind": "toggle",
            "target": "checkout",
            "body": {"enabled": False},
            "apply_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        },
    ).json()["id"]
    webhook = client.post(
        "/api/v1/projects/shop/webhooks", json={"url": "https://example.com/w", "events": ["flag.changed"]}
    ).json()["id"]
    request = {"kind": "toggle", "target": "checkout", "body": {"enabled": False}, "title": "off"}
    requests = "/api/v1/projects/shop/environments/dev/change-requests"
    mine = client.post(requests, json=request).json()["id"]
    writer = client.post("/api/v1/api-keys", json={"name": "w", "role": "writer", "owner": "w"}).json()["key"]
    theirs = client.post(requests, json=request, headers={"Authorization": f"Bearer {writer}"}).json()["id"]
    return {
        "api_key": str(api_key),
        "sdk_key": str(sdk_key),
        "webhook": str(webhook),
        "change_id": str(change),
        "request_id": str(mine),
        "review_id": str(theirs),
    }


def _request(client: TestClient, api: Api, method: str, path: str) -> tuple[str, dict[str, Any]]:
    """A valid request for a write in a fresh world, with the current ETag where If-Match is required."""
    world = _world(client, api)
    key_id = world["sdk_key"] if "sdk-keys" in path else world["api_key"]
    url = path.format(
        project="shop",
        env="dev",
        flag="checkout",
        segment="beta",
        key_id=key_id,
        change_id=world["change_id"],
        webhook_id=world["webhook"],
        # A request of the admin key for its author's steps; another key's for the admin to review.
        request_id=world["review_id" if path.endswith(("/approve", "/reject")) else "request_id"],
    )
    headers = {}
    if method in ("PATCH", "DELETE") and _advertises(method, path, "If-Match"):
        headers["If-Match"] = api.etag(url)
    kwargs: dict[str, Any] = {"headers": headers}
    if method != "DELETE" and BODIES[method, path] is not None:
        kwargs["json"] = BODIES[method, path]
    return url, kwargs


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_idempotency_key__advertised_exactly_where_a_retry_is_replayed(
    client: TestClient, api: Api, method: str, path: str
) -> None:
    url, kwargs = _request(client, api, method, path)
    kwargs["headers"]["Idempotency-Key"] = f"retry-{method}-{path}"

    first = client.request(method, url, **kwargs)
    assert first.status_code < 300, (method, path, first.text)
    retry = client.request(method, url, **kwargs)

    replayed = retry.headers.get("idempotent-replayed") == "true"
    secret_withheld = retry.status_code == 409 and retry.json()["code"] == "secret_not_replayable"
    if replayed and not secret_withheld:
        assert (retry.status_code, retry.content) == (first.status_code, first.content)
    assert replayed or secret_withheld or "idempotent-replayed" not in retry.headers
    assert (replayed or secret_withheld) == _advertises(method, path, "Idempotency-Key"), (method, path)


def test_idempotency_key__advertised__on_every_post_and_nothing_else() -> None:
    advertised = {(m, p) for m, p in WRITES if _advertises(m, p, "Idempotency-Key")}
    assert advertised == {(m, p) for m, p in WRITES if m == "POST"}
    assert not any(_advertises(m, p, "Idempotency-Key") for m, p, _ in OPERATIONS if m == "GET")


# --- If-Match -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path"), WRITES, ids=[f"{m} {p}" for m, p in WRITES])
def test_if_match__advertised_exactly_where_a_stale_one_is_refused(
    client: TestClient, api: Api, method: str, path: str
) -> None:
    url, kwargs = _request(client, api, method, path)
    kwargs["headers"]["If-Match"] = '"999999"'
    r = client.request(method, url, **kwargs)
    refused = r.status_code == 412
    assert refused or r.status_code < 300, (method, path, r.text)
    advertised = _advertises(method, path, "If-Match")
    assert refused == advertised, (method, path)
    responses = SPEC["paths"][path][method.lower()]["responses"]
    assert ("412" in responses) == advertised
    assert ("428" in responses) == (advertised and method in ("PATCH", "DELETE"))


def test_if_match__never_advertised_on_reads() -> None:
    assert not any(_advertises(m, p, "If-Match") for m, p, _ in OPERATIONS if m == "GET")
