"""``/docs`` works offline: Swagger UI's files come from the control plane itself, never from a CDN."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_docs__references_no_external_url__every_asset_served(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    assert re.findall(r"(?:https?:)?//[\w.-]+", html) == []
    assets = re.findall(r"""(?:src|href)=["']([^"']+)["']""", html)
    assert sorted(assets) == [
        "/docs/assets/favicon-32x32.png",
        "/docs/assets/swagger-ui-bundle.js",
        "/docs/assets/swagger-ui.css",
    ]
    for asset in assets:
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert len(answer.content) > 500, asset
    assert (
        client.get("/docs/assets/swagger-ui-bundle.js").headers["content-type"].startswith("text/javascript")
    )
    assert "'/openapi.json'" in html or '"/openapi.json"' in html
    assert client.get("/openapi.json").json()["openapi"].startswith("3.1")


def test_redoc__not_served__it_would_need_a_cdn(client: TestClient) -> None:
    assert client.get("/redoc").status_code == 404
