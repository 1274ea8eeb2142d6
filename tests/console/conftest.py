"""Fixtures of the console's browser tests: a real stack per module, one headless Chromium per module, and
a fresh browser context (no cookies, no storage) per test.

- ``console_stack`` (module): a :class:`console_stack.ConsoleStack`, see there.
- ``browser`` (module, from ``tests/conftest.py``, like every suite that drives Chromium): Playwright's ``Browser``, Debian's ``/usr/bin/chromium`` headless (installed by
  ``scripts/ensure-browser``; Playwright never downloads a browser here). A missing Chromium skips the tests
  on a developer's machine and fails them in CI (``CI`` set), so CI never passes without them. Playwright
  is a locked dependency (``scripts/bootstrap``): without it the test modules fail to import.
- ``context`` / ``page`` (test): a new context at 1280×800 whose ``base_url`` is the stack's
  (``page.goto("/ui/")``), default timeouts of 10 s for actions and ``expect``. When a test fails its page
  is saved to ``ui-screenshots/failures/<test>.png`` beside the browser's errors (``<test>.txt``).
- ``page_errors`` (test): what went wrong inside the page so far (uncaught exceptions, console errors such
  as CSP violations, failed requests), one line each; a test asserts it is empty.
- ``browser_helpers.shot(page, name)`` writes ``ui-screenshots/<name>.png`` for people to look at (the
  folder is ignored by git).

Every test of this folder is marked ``console`` (``scripts/test -m console`` runs only them).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from browser_helpers import FAILURES, TIMEOUT_MS, VIEWPORT, watch_page_errors
from console_stack import ConsoleStack, running_console_stack

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext, Page

STACK_TIMEOUT = 240
"""Seconds a console test may take, its fixtures' setup included (pytest-timeout)."""
_FAILED = pytest.StashKey[bool]()
_ERRORS = pytest.StashKey[list[str]]()
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this folder's tests ``console``; a module's first test also pays for starting its stack (and
    for starting Chromium), which pytest-timeout counts, so they get more than the default."""
    for item in items:
        if _HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.console)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(STACK_TIMEOUT))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    """Remember a failure for the ``page`` fixture's teardown; show the page's errors with it."""
    report = yield
    if report.failed:
        item.stash[_FAILED] = True
        errors = item.stash.get(_ERRORS, [])
        if errors:
            report.sections.append(("errors in the page", "\n".join(errors)))
    return report


@pytest.fixture(scope="module")
def console_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConsoleStack]:
    with running_console_stack(tmp_path_factory.mktemp("console-stack")) as stack:
        yield stack


@pytest.fixture
def page_errors(request: pytest.FixtureRequest) -> list[str]:
    return request.node.stash.setdefault(_ERRORS, [])


@pytest.fixture
def context(browser: Browser, console_stack: ConsoleStack) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport=VIEWPORT, base_url=console_stack.base_url)
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.set_default_navigation_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext, page_errors: list[str], request: pytest.FixtureRequest) -> Iterator[Page]:
    tab = context.new_page()
    watch_page_errors(tab, page_errors)
    yield tab
    if request.node.stash.get(_FAILED, False):
        _save_failure(tab, request.node.nodeid, page_errors)


def _save_failure(tab: Page, nodeid: str, errors: list[str]) -> None:
    """The failed test's page and the browser's errors, for the person reading the CI log."""
    FAILURES.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("/")[-1]).strip("_")[:150]
    try:
        tab.screenshot(path=str(FAILURES / f"{name}.png"))
    except Exception as exc:  # a crashed page: the errors still say something
        errors.append(f"screenshot failed: {exc}")
    lines = [f"url: {tab.url}", *errors]
    (FAILURES / f"{name}.txt").write_text("\n".join(lines) + "\n")
