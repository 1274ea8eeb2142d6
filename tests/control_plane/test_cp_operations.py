"""Health, readiness, metrics, database down (503), rate limiting (429) and the error body everywhere."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from contract_helpers import CheckedClient
from cp_helpers import ADMIN_KEY, Api, auth
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr

from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import Settings


def test_healthz__always__200(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_readyz__database_up__200_with_checks(client: TestClient) -> None:
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json()["checks"] == {"database": "ok", "redis": "ok"}


def test_metrics__after_requests__route_templates_latency_pool_backlog(
    client: TestClient, api: Api, settings: Settings
) -> None:
    api.project()
    client.get("/api/v1/projects/shop/flags/nope")
    text = client.get("/metrics").text
    series = 'flagyard_http_requests_total{method="GET",route="/api/v1/projects/{project}/flags/{flag}",status="404"}'
    assert series in text
    assert "shop" not in text  # labels are route templates, never concrete paths
    assert (
        'flagyard_http_request_duration_seconds_bucket{le="0.05",method="POST",route="/api/v1/projects"'
        in text
    )
    assert 'flagyard_db_pool_connections{state="checked_out"}' in text
    assert f'flagyard_db_read_pool_connections{{state="size"}} {float(settings.db_read_pool_size)}' in text
    assert 'flagyard_db_read_pool_connections{state="in_use"} 0.0' in text  # the 404 read gave it back
    assert "flagyard_outbox_backlog 0.0" in text


@pytest.fixture(scope="module")
def down_client(settings: Settings) -> TestClient:
    down = settings.model_copy(
        update={
            "database_url": SecretStr("postgresql+psycopg://postgres@127.0.0.1:1/flagyard"),
            "db_connect_timeout_seconds": 1,
        }
    )
    return CheckedClient(create_app(down), headers=auth(ADMIN_KEY))


def test_database_down__read__503_clear_body(down_client: TestClient) -> None:
    with down_client as c:
        r = c.get("/api/v1/projects")
    assert r.status_code == 503
    assert r.json() == {
        "code": "database_unavailable",
        "message": "the database is unavailable; try again later",
        "details": [],
    }
    assert r.headers["retry-after"] == "5"


def test_database_down__write__503_and_readyz_503_healthz_200(down_client: TestClient) -> None:
    with down_client as c:
        r = c.post("/api/v1/projects", json={"key": "x", "name": "X"})
        assert r.status_code == 503
        assert r.json()["code"] == "database_unavailable"
        assert r.json()["message"] == "the database is unavailable; the change was not applied"
        ready = c.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["database"] == "unavailable"
        assert c.get("/healthz").status_code == 200


def test_rate_limit__over_limit__429_with_retry_after(settings: Settings, api: Api) -> None:
    limited = settings.model_copy(update={"rate_limit_requests": 3, "rate_limit_window_seconds": 60})
    with CheckedClient(create_app(limited), headers=auth(ADMIN_KEY)) as c:
        statuses = [c.get("/api/v1/projects").status_code for _ in range(4)]
        r = c.get("/api/v1/projects")
    assert statuses == [200, 200, 200, 429]
    assert r.status_code == 429
    assert r.json()["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60


def test_rate_limit__per_key__other_key_unaffected(settings: Settings, api: Api) -> None:
    reader = api.key("reader")
    limited = settings.model_copy(update={"rate_limit_requests": 1})
    with CheckedClient(create_app(limited), headers=auth(ADMIN_KEY)) as c:
        c.get("/api/v1/projects")
        assert c.get("/api/v1/projects").status_code == 429
        assert c.get("/api/v1/projects", headers=auth(reader)).status_code == 200


def test_unknown_route__404_error_body(client: TestClient) -> None:
    r = client.get("/api/v1/nothing-here")
    assert r.status_code == 404
    assert r.json() == {"code": "not_found", "message": "no such route", "details": []}


def test_invalid_json__422_error_body(client: TestClient) -> None:
    r = client.post("/api/v1/projects", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422
    assert r.json()["details"][0]["message"].startswith("the body is not valid JSON")


def test_bad_query_param__422_pointer(client: TestClient) -> None:
    r = client.get("/api/v1/projects", params={"limit": 0})
    assert r.status_code == 422
    assert r.json()["details"][0]["path"] == "/query/limit"


def test_openapi__published__versioned_paths_and_bearer_scheme(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    assert all(p.startswith("/api/v1/") for p in spec["paths"] if p not in ("/healthz", "/readyz"))
    assert "HTTPBearer" in json.dumps(spec["components"]["securitySchemes"])
    assert "If-Match" in json.dumps(spec["paths"]["/api/v1/projects/{project}/flags/{flag}"]["patch"])


@pytest.mark.parametrize("sessions", ["sessions", "autocommit_sessions"])
def test_database_sessions__any_server_default__commits_are_synchronous(
    client: TestClient, sessions: str
) -> None:
    # This machine's PostgreSQL defaults to synchronous_commit=off; an acknowledged change must survive a crash.
    state = client.app.state.flagyard  # type: ignore[attr-defined]
    with getattr(state, sessions)() as session:
        assert session.execute(sa.text("SHOW synchronous_commit")).scalar() == "on"


def test_connection_lost_during_commit__503_says_the_outcome_is_unknown(
    app: FastAPI, client: TestClient, api: Api, engine: sa.Engine
) -> None:
    """Given a change whose connection the server drops as its COMMIT is sent, then the answer is a 503
    that does not claim the change was not applied (the database may have applied it)."""
    api.project()
    state = app.state.flagyard

    def drop_connection(conn: sa.Connection) -> None:
        pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with engine.connect() as killer:
            killer.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})

    sa.event.listen(state.engine, "commit", drop_connection)
    try:
        r = client.post(
            "/api/v1/projects/shop/flags",
            json={"key": "f", "name": "F", "type": "boolean", "variants": {"on": True, "off": False}},
        )
    finally:
        sa.event.remove(state.engine, "commit", drop_connection)

    assert r.status_code == 503
    assert r.json()["code"] == "database_unavailable"
    assert "may or may not have been applied" in r.json()["message"]
    # Here the server died before the COMMIT reached it, so nothing was applied, and the API answers again.
    assert client.get("/api/v1/projects/shop/flags/f").status_code == 404
