"""What the console's browser tests share besides fixtures (a uniquely named module, importable next to
conftest): where screenshots go, the viewport, :func:`shot`, :func:`png_size` and :func:`watch_page_errors`."""

from __future__ import annotations

import re
import struct
from pathlib import Path
from typing import TYPE_CHECKING

from stack_helpers import ROOT

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Request

SCREENSHOTS = ROOT / "ui-screenshots"
"""Screenshots for people to look at (ignored by git); ``failures/`` holds those of failed tests."""
FAILURES = SCREENSHOTS / "failures"
VIEWPORT = {"width": 1280, "height": 800}
TIMEOUT_MS = 10_000
"""Playwright's default for actions, navigations and ``expect`` in these tests."""
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
    popup, is watched the same way). A request the page itself abandoned (navigating away) is no error."""

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(f"console.error: {msg.text}")

    def on_request_failed(req: Request) -> None:
        if req.failure != "net::ERR_ABORTED":
            errors.append(f"request failed: {req.method} {req.url} ({req.failure})")

    tab.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
    tab.on("console", on_console)
    tab.on("requestfailed", on_request_failed)
