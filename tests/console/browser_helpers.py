"""What the console's browser tests share besides fixtures (a uniquely named module, importable next to
conftest): where screenshots go, the viewport, :func:`shot`, :func:`png_size`, :func:`watch_page_errors` and
:func:`sign_in`."""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from stack_helpers import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Request, Response

SCREENSHOTS = ROOT / "ui-screenshots"
"""Screenshots for people to look at (ignored by git); ``failures/`` holds those of failed tests."""
FAILURES = SCREENSHOTS / "failures"
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 10_000
"""Playwright's default for actions, navigations and ``expect`` in these tests."""
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HTTP_STATUS_LINE = "Failed to load resource: the server responded with a status of"
_API_PATH = "/api/v1/"


def shot(page: Page, name: str) -> Path:
    """Save the page's viewport as ``ui-screenshots/<name>.png`` (1280×800) and return its path."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
        raise ValueError(f"screenshot name {name!r}: use lower-case letters, digits, '-' and '_'")
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk; fails if ``data`` is not a PNG."""
    assert data[:8] == _PNG_SIGNATURE, "not a PNG file"
    assert data[12:16] == b"IHDR", "a PNG starts with its IHDR chunk"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


def watch_page_errors(tab: Page, errors: list[str]) -> None:
    """Append to ``errors`` what goes wrong inside ``tab`` from now on (a second page of a test, e.g. a
    popup, is watched the same way): uncaught exceptions, ``console.error`` lines (CSP violations among
    them), requests that failed below HTTP, a 5xx anywhere and a 4xx outside the API (a missing asset).

    Not errors: a 4xx of the API, which the console handles (401 before sign-in, 412, 422 shown inline;
    Chromium's own "Failed to load resource" line for it is dropped too), and a request the page abandoned
    by navigating away."""

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error" and not msg.text.startswith(_HTTP_STATUS_LINE):
            errors.append(f"console.error: {msg.text}")

    def on_response(response: Response) -> None:
        status = response.status
        if status >= 500 or (status >= 400 and _API_PATH not in response.url):
            errors.append(f"HTTP {status}: {response.request.method} {response.url}")

    def on_request_failed(req: Request) -> None:
        if req.failure != "net::ERR_ABORTED":
            errors.append(f"request failed: {req.method} {req.url} ({req.failure})")

    tab.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    tab.on("console", on_console)
    tab.on("response", on_response)
    tab.on("requestfailed", on_request_failed)


def sign_in(page: Page, key: str) -> None:
    """Sign in to the console with an API key as a person does: open ``/ui/``, type the key into the "API
    key" field, press "Sign in", and wait for the "Sign out" button of the signed-in header."""
    from playwright.sync_api import expect

    response = page.goto("/ui/")
    assert response is not None, "no response for /ui/"
    assert response.status == 200, f"/ui/ answered {response.status}"
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
