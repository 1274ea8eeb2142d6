"""Console sessions: an API key exchanged for an HttpOnly cookie, CSRF on every change, sign-out, expiry,
and the session ending with its key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cp_helpers import ADMIN_KEY, Api, auth
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flagyard.control_plane.services.sessions import COOKIE, CSRF_HEADER, MAX_SESSIONS_PER_KEY, csrf_token

S = "/api/v1/sessions"
P = "/api/v1/projects"


class Browser:
    """The suite's client as a browser: no ``Authorization`` header and a cookie jar of its own.

    One client per app: a second one would run the app's lifespan again on another event loop."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.cookies: dict[str, str] = {}

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": "", **kwargs.pop("headers", {})}
        self.client.cookies.clear()
        for name, value in self.cookies.items():
            self.client.cookies.set(name, value)
        try:
            response = self.client.request(method, url, headers=headers, **kwargs)
            self.cookies = {cookie.name: cookie.value or "" for cookie in self.client.cookies.jar}
        finally:
            self.client.cookies.clear()
        return response

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)


@pytest.fixture
def browser(client: TestClient) -> Browser:
    return Browser(client)


def sign_in(browser: Browser, key: str = ADMIN_KEY) -> dict[str, str]:
    r = browser.post(S, json={"api_key": key})
    assert r.status_code == 201, r.text
    return {CSRF_HEADER: r.json()["csrf_token"]}


def test_sign_in__cookie_is_httponly_strict_and_the_key_is_not_stored(
    browser: Browser, engine: sa.Engine
) -> None:
    r = browser.post(S, json={"api_key": ADMIN_KEY})
    assert r.status_code == 201
    body = r.json()
    assert body["role"] == "admin"
    assert body["project"] is None
    assert body["key_prefix"].startswith("fy_admin_")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/" in cookie
    assert "Max-Age=" in cookie
    assert "Secure" not in cookie
    token = cookie.split(";")[0].split("=", 1)[1]
    assert body["csrf_token"] == csrf_token(token)
    assert body["csrf_token"] != token
    with engine.connect() as conn:
        stored = conn.execute(sa.text("SELECT token_hash FROM console_sessions")).scalars().all()
    assert len(stored) == 1
    assert token not in stored[0]
    assert ADMIN_KEY not in str(stored)


def test_sign_in__over_tls__cookie_is_secure(browser: Browser) -> None:
    r = browser.post("https://testserver" + S, json={"api_key": ADMIN_KEY})
    assert r.status_code == 201
    assert "Secure" in r.headers["set-cookie"]


def test_session__reads_with_the_cookie_alone(browser: Browser, api: Api) -> None:
    api.project("shop")
    sign_in(browser)
    r = browser.get(P)
    assert r.status_code == 200
    assert [p["key"] for p in r.json()["items"]] == ["shop"]
    current = browser.get(f"{S}/current")
    assert current.status_code == 200
    assert current.json()["role"] == "admin"


@pytest.mark.parametrize("csrf", [None, "", "wrong", "x" * 43])
def test_session__change_without_its_csrf_token__403_and_nothing_written(
    browser: Browser, csrf: str | None
) -> None:
    sign_in(browser)
    headers = {} if csrf is None else {CSRF_HEADER: csrf}
    r = browser.post(P, json={"key": "shop", "name": "Shop"}, headers=headers)
    assert r.status_code == 403
    assert r.json()["code"] == "csrf_failed"
    assert browser.get(P).json()["items"] == []


def test_session__change_with_its_csrf_token__written(browser: Browser) -> None:
    headers = sign_in(browser)
    r = browser.post(P, json={"key": "shop", "name": "Shop"}, headers=headers)
    assert r.status_code == 201
    assert [p["key"] for p in browser.get(P).json()["items"]] == ["shop"]


def test_session__csrf_token_of_another_session__refused(browser: Browser, client: TestClient) -> None:
    sign_in(browser)
    other_csrf = sign_in(Browser(client))
    r = browser.post(P, json={"key": "shop", "name": "Shop"}, headers=other_csrf)
    assert r.status_code == 403
    assert r.json()["code"] == "csrf_failed"


def test_session__bearer_key_requests_need_no_csrf(client: TestClient) -> None:
    assert client.post(P, json={"key": "shop", "name": "Shop"}).status_code == 201


def test_session__reader_key__session_is_a_reader(browser: Browser, api: Api) -> None:
    api.project("shop")
    reader = api.key("reader")
    headers = sign_in(browser, reader)
    assert browser.get(f"{S}/current").json()["role"] == "reader"
    assert browser.get(P).status_code == 200
    r = browser.post(P, json={"key": "other", "name": "Other"}, headers=headers)
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"


def test_sign_out__session_ends_and_cookie_cleared(browser: Browser, client: TestClient) -> None:
    headers = sign_in(browser)
    token = browser.cookies[COOKIE]
    assert browser.delete(f"{S}/current", headers={}).json()["code"] == "csrf_failed"
    r = browser.delete(f"{S}/current", headers=headers)
    assert r.status_code == 204
    assert f'{COOKIE}=""' in r.headers["set-cookie"]
    assert "Max-Age=0" in r.headers["set-cookie"]
    replay = Browser(client)
    replay.cookies[COOKIE] = token
    assert replay.get(P).status_code == 401
    assert replay.get(f"{S}/current").status_code == 401


def test_session__revoking_its_key_ends_it(browser: Browser, client: TestClient, api: Api) -> None:
    writer = api.key("writer")
    sign_in(browser, writer)
    assert browser.get(P).status_code == 200
    key_id = browser.get(f"{S}/current").json()["key_id"]
    assert client.delete(f"/api/v1/api-keys/{key_id}").status_code == 204
    r = browser.get(P)
    assert r.status_code == 401
    assert "revoked" in r.json()["message"]


def test_session__expired__401(browser: Browser, engine: sa.Engine, app: FastAPI) -> None:
    sign_in(browser)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE console_sessions SET expires_at = now() - interval '1 second'"))
    app.state.flagyard.key_cache.clear()
    r = browser.get(P)
    assert r.status_code == 401
    assert "expired" in r.json()["message"]


def test_session__never_outlives_its_key(browser: Browser, client: TestClient) -> None:
    soon = datetime.now(UTC) + timedelta(minutes=10)
    r = client.post(
        "/api/v1/api-keys", json={"name": "short", "role": "reader", "expires_at": soon.isoformat()}
    )
    assert r.status_code == 201
    sign_in(browser, r.json()["key"])
    expires = datetime.fromisoformat(browser.get(f"{S}/current").json()["expires_at"])
    assert abs((expires - soon).total_seconds()) < 1


@pytest.mark.parametrize(
    "key", ["fy_admin_not-a-real-key-000000000000", "hello", "fy_sdk_abcdef", "", "fy_admin_" + "a" * 300]
)
def test_sign_in__bad_key__refused_without_a_cookie_or_the_key_echoed(browser: Browser, key: str) -> None:
    r = browser.post(S, json={"api_key": key})
    assert r.status_code in (401, 403, 422)
    assert "set-cookie" not in r.headers
    if key:
        assert key not in r.text


def test_sign_in__sdk_key__403(browser: Browser, client: TestClient, api: Api) -> None:
    api.project("shop")
    sdk = client.post(f"{P}/shop/environments/prod/sdk-keys", json={"name": "app"}).json()["key"]
    r = browser.post(S, json={"api_key": sdk})
    assert r.status_code == 403
    assert "set-cookie" not in r.headers


def test_session__forged_or_malformed_cookie__401(client: TestClient) -> None:
    for token in ["A" * 43, "short", "script", "x" * 5000]:
        forged = Browser(client)
        forged.cookies[COOKIE] = token
        assert forged.get(P).status_code == 401


def test_session__bearer_header_wins_over_the_cookie(browser: Browser, api: Api) -> None:
    sign_in(browser)
    reader = api.key("reader")
    r = browser.post(P, json={"key": "shop", "name": "Shop"}, headers=auth(reader))
    assert r.status_code == 403
    assert r.json()["code"] == "forbidden"


def test_sign_in__beyond_the_per_key_limit__oldest_session_ends(app: FastAPI, client: TestClient) -> None:
    browsers = [Browser(client) for _ in range(MAX_SESSIONS_PER_KEY + 1)]
    for b in browsers:
        sign_in(b)
    app.state.flagyard.key_cache.clear()
    assert browsers[0].get(P).status_code == 401
    assert all(b.get(P).status_code == 200 for b in browsers[1:])


def test_openapi__cookie_scheme_published_and_sign_in_needs_no_credentials(app: FastAPI) -> None:
    doc = app.openapi()
    scheme = doc["components"]["securitySchemes"]["ConsoleSession"]
    assert scheme == {**scheme, "type": "apiKey", "in": "cookie", "name": COOKIE}
    assert "security" not in doc["paths"][S]["post"]
    assert {"ConsoleSession": []} in doc["paths"][P]["get"]["security"]
