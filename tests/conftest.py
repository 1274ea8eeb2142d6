"""The suites' shared root. Being here puts ``tests/`` on the import path (pytest's default ``prepend``
import mode), so every suite imports ``polling_helpers`` and the other helpers of this folder by name.

The repository root is deliberately not on the import path: there ``import sdk`` would find the bare
source folder. ``benchmarks`` and ``loadtests`` are not installed, so their tests run them as children in
the repository root (``python -m benchmarks.x``), as their users do; ``stack_processes`` loads the one
file of ``loadtests`` the ``flagyard up`` suites share.

Also here, because one process can run only one Playwright at a time (its sync API refuses a second while
the first is open): the ``playwright`` and ``browser`` fixtures of every suite that drives Chromium
(``tests/console``, the console editor's tests). They live for one module, not the session: while
Playwright's sync API is open its event loop runs in the main thread, so any later test calling
``asyncio.run()`` would fail with "cannot be called from a running event loop". The browser is Debian's ``/usr/bin/chromium``
(``scripts/ensure-browser``); Playwright never downloads one. A missing Chromium skips those tests on a
developer's machine and fails them in CI (``CI`` set), so CI never passes without them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Playwright

CHROMIUM = Path("/usr/bin/chromium")
BROWSER_TIMEOUT_MS = 10_000
"""Playwright's default for actions, navigations and ``expect``."""
# As root (CI) Chromium needs --no-sandbox; the rest keep it off this machine's closed network, where its
# background connections are refused by the dozen and slow every start.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
]


def browser_unavailable(why: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{why} (CI must run the browser tests: scripts/test runs scripts/ensure-browser)")
    pytest.skip(f"{why}: run scripts/ensure-browser and scripts/bootstrap")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    # Imported here, not at the top: a conftest that fails to import would stop every suite.
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=BROWSER_TIMEOUT_MS)
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        browser_unavailable(f"{CHROMIUM} is missing")
    instance = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
    yield instance
    instance.close()
