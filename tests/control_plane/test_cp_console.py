"""The web console under ``/ui``: served by the control plane with its security headers, its page free of
inline script and style (the CSP forbids them), every module it imports present and served, no API for
building markup from strings in its code, and every asset shipped in the wheel."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from posixpath import normpath

import pytest
from fastapi.testclient import TestClient

from flagyard.control_plane.console import CSP, STATIC_DIR
from flagyard.control_plane.webhook_events import EVENTS

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-cache",
}
# The shared editor components: the pages load them with import() and a fallback when absent
# (js/fallbacks.js, js/variants.js), and the page links their stylesheet; a page works without them.
OPTIONAL_MODULES = {
    "js/components/rule-editor.js",
    "js/components/diff.js",
    "js/components/variant-editor.js",
}
OPTIONAL_ASSETS = {"components.css"}
IMPORT = re.compile(r"""(?:\bimport\s*(?:[\w*{}\s,]+\s*from\s*)?|\bimport\s*\(\s*)["']([^"']+)["']""")


def assert_security_headers(response: object) -> None:
    headers = response.headers  # type: ignore[attr-defined]
    for name, value in EXPECTED_HEADERS.items():
        assert headers.get(name) == value, (name, headers.get(name))


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.script_bodies: list[str] = []
        self.links: list[dict[str, str | None]] = []
        self.inline_attributes: list[tuple[str, str]] = []
        self.style_elements = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, _ in attrs:
            if name == "style" or name.startswith("on"):
                self.inline_attributes.append((tag, name))
        if tag == "script":
            self.scripts.append(dict(attrs))
            self._in_script = True
        elif tag == "link":
            self.links.append(dict(attrs))
        elif tag == "style":
            self.style_elements += 1

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.script_bodies.append(data)


def parsed_index() -> PageParser:
    parser = PageParser()
    parser.feed((STATIC_DIR / "index.html").read_text())
    return parser


def module_graph() -> dict[str, list[str]]:
    """Every JS module reachable from index.html → the modules it imports (static and dynamic), as paths
    relative to the static directory."""
    entry = [s["src"] for s in parsed_index().scripts if s.get("src")]
    graph: dict[str, list[str]] = {}
    todo = [str(src).removeprefix("static/") for src in entry]
    while todo:
        path = todo.pop()
        if path in graph or (path in OPTIONAL_MODULES and not (STATIC_DIR / path).exists()):
            continue
        source = (STATIC_DIR / path).read_text()
        base = path.rsplit("/", 1)[0]
        imports = [normpath(f"{base}/{spec}") for spec in IMPORT.findall(source)]
        graph[path] = imports
        todo.extend(imports)
    return graph


def test_ui__redirects_to_the_slash_page_with_the_security_headers(client: TestClient) -> None:
    response = client.get("/ui", follow_redirects=False)

    assert response.status_code == 307
    assert response.headers["location"] == "/ui/"
    assert_security_headers(response)


def test_index__html_with_every_security_header(client: TestClient) -> None:
    response = client.get("/ui/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert_security_headers(response)
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    assert '<div id="app"' in response.text


def test_index__no_inline_script_style_or_handler_and_nothing_from_another_origin() -> None:
    page = parsed_index()
    html = (STATIC_DIR / "index.html").read_text()

    assert page.scripts, "the page loads its module"
    assert all(s.get("src") and s.get("type") == "module" for s in page.scripts), page.scripts
    assert "".join(page.script_bodies).strip() == ""
    assert page.style_elements == 0
    assert page.inline_attributes == []
    assert re.findall(r"(?:https?:)?//[\w.-]+", html) == []


def test_modules__every_import_exists_and_is_served_as_javascript_with_the_headers(
    client: TestClient,
) -> None:
    graph = module_graph()
    referenced = set(graph) | {m for imports in graph.values() for m in imports}
    required = referenced - OPTIONAL_MODULES

    assert {"js/app.js", "js/api.js", "js/dom.js", "js/pages/signin.js", "js/pages/flag.js"} <= set(graph)
    missing = sorted(m for m in required if not (STATIC_DIR / m).is_file())
    assert missing == []
    for module in sorted(graph):
        response = client.get(f"/ui/static/{module}")
        assert response.status_code == 200, module
        assert "javascript" in response.headers["content-type"], (module, response.headers["content-type"])
        assert_security_headers(response)
    stylesheets = [
        str(link["href"]).removeprefix("static/")
        for link in parsed_index().links
        if link.get("rel") == "stylesheet"
    ]
    assert "console.css" in stylesheets
    for sheet in stylesheets:
        if sheet in OPTIONAL_ASSETS and not (STATIC_DIR / sheet).exists():
            continue
        css = client.get(f"/ui/static/{sheet}")
        assert css.status_code == 200, sheet
        assert css.headers["content-type"].startswith("text/css")


def test_modules__every_js_file_under_js_is_reachable_from_the_page() -> None:
    graph = module_graph()
    files = {p.relative_to(STATIC_DIR).as_posix() for p in (STATIC_DIR / "js").rglob("*.js")}

    assert files - set(graph) == set()


@pytest.mark.parametrize(
    "pattern",
    [
        r"\.innerHTML\b",
        r"\.outerHTML\b",
        r"insertAdjacentHTML",
        r"document\.write",
        r"\beval\s*\(",
        r"new\s+Function\b",
        r"\.style\.cssText",
        r"setAttribute\(\s*[\"']on",
        r"setAttribute\(\s*[\"']style",
        r"localStorage|sessionStorage|indexedDB|document\.cookie",
        r"https?://",
    ],
)
def test_modules__no_markup_from_strings_no_storage_no_external_url(pattern: str) -> None:
    offenders = [
        p.relative_to(STATIC_DIR).as_posix()
        for p in STATIC_DIR.rglob("*.js")
        if re.search(pattern, p.read_text())
    ]

    assert offenders == []


def test_static__missing_file_is_404_with_the_headers(client: TestClient) -> None:
    response = client.get("/ui/static/js/nope.js")

    assert response.status_code == 404
    assert_security_headers(response)


def test_console__not_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert [p for p in paths if p.startswith("/ui")] == []


def test_api__responses_carry_no_console_csp(client: TestClient) -> None:
    response = client.get("/api/v1/projects")

    assert response.status_code == 200
    assert "content-security-policy" not in response.headers


def test_webhook_events__the_console_offers_exactly_the_server_event_table_in_order() -> None:
    source = (STATIC_DIR / "js" / "webhook-events.js").read_text()
    match = re.search(r"export const WEBHOOK_EVENTS = (\[.*?\]);\n", source, re.DOTALL)

    assert match, "js/webhook-events.js declares WEBHOOK_EVENTS as a JSON list"
    assert json.loads(match.group(1)) == [[name, text] for name, text in EVENTS.items()]
