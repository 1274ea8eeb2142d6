"""The browser tests' own footing: the stack comes up, headless Chromium renders a page of it, screenshots
are real 1280×800 PNGs, and a change made over REST reaches a local-mode SDK client of the stack. The
console's sign-in page is the target of the last test (the console is not merged yet)."""

from __future__ import annotations

from browser_helpers import SCREENSHOTS, VIEWPORT, png_size, shot, sign_in
from console_stack import ConsoleStack
from playwright.sync_api import Page, expect
from polling_helpers import wait_until


def test_stack_serves_rest_and_a_local_sdk_sees_a_change(console_stack: ConsoleStack) -> None:
    console_stack.create_project("smoke", ("production",))
    flag = {"key": "beacon", "name": "Beacon", "type": "boolean", "variants": {"on": True, "off": False}}
    flag["environments"] = {"production": {"enabled": True, "default_variant": "off"}}
    r = console_stack.api.post("/api/v1/projects/smoke/flags", json=flag)
    assert r.status_code == 201, r.text
    sdk = console_stack.sdk_client("smoke", "production")
    wait_until(lambda: sdk.details("beacon", True).variant == "off", 20)

    path = "/api/v1/projects/smoke/flags/beacon/environments/production"
    etag = console_stack.api.get(path).headers["etag"]
    r = console_stack.api.patch(path, json={"default_variant": "on"}, headers={"If-Match": etag})
    assert r.status_code == 200, r.text
    wait_until(lambda: sdk.boolean("beacon", False) is True, 20)


def test_chromium_renders_swagger_ui_and_a_screenshot_is_a_1280x800_png(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    response = page.goto("/docs")
    assert response is not None
    assert response.status == 200
    # Swagger UI renders the OpenAPI document with the browser's JavaScript: the page title is in the DOM.
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Flagyard control plane")
    path = shot(page, "smoke-swagger-ui")
    assert path == SCREENSHOTS / "smoke-swagger-ui.png"
    assert png_size(path.read_bytes()) == (VIEWPORT["width"], VIEWPORT["height"])
    assert page_errors == []


def test_a_fresh_context_per_test_starts_without_cookies(page: Page) -> None:
    page.goto("/healthz")
    assert page.context.cookies() == []
    page.context.add_cookies([{"name": "leak", "value": "1", "url": page.url}])
    assert [c["name"] for c in page.context.cookies()] == ["leak"]


def test_the_cookie_of_the_previous_test_is_gone(page: Page) -> None:
    page.goto("/healthz")
    assert page.context.cookies() == []


def test_console_sign_in_page(console_stack: ConsoleStack, page: Page, page_errors: list[str]) -> None:
    response = page.goto("/ui/")
    assert response is not None
    assert response.status == 200
    csp = response.headers.get("content-security-policy", "")
    assert "script-src" in csp or "default-src" in csp, f"no CSP on /ui/: {csp!r}"
    assert "unsafe-inline" not in csp.split("script-src", 1)[-1].split(";", 1)[0]
    expect(page.get_by_label("API key")).to_be_visible()
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    shot(page, "sign-in")
    assert page_errors == []


def test_signing_in_keeps_the_key_out_of_the_browser(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    sign_in(page, console_stack.admin_key)
    cookies = page.context.cookies()
    assert cookies, "signed in without a session cookie"
    for cookie in cookies:
        assert cookie["httpOnly"], f"cookie {cookie['name']} is readable by scripts"
        assert cookie["sameSite"] == "Strict", f"cookie {cookie['name']} is SameSite={cookie['sameSite']}"
        assert console_stack.admin_key not in cookie["value"]
    storage = page.evaluate("() => JSON.stringify([{...localStorage}, {...sessionStorage}])")
    assert console_stack.admin_key not in storage
    assert console_stack.admin_key not in page.url
    assert console_stack.admin_key not in page.content()
    shot(page, "signed-in")
    assert page_errors == []


def test_a_toggle_in_the_browser_reaches_a_local_sdk(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    console_stack.create_project("launch", ("staging", "production"))
    flag = {
        "key": "new-checkout",
        "name": "New checkout",
        "type": "boolean",
        "variants": {"on": True, "off": False},
    }
    flag["environments"] = {"production": {"enabled": False, "default_variant": "on", "off_variant": "off"}}
    r = console_stack.api.post("/api/v1/projects/launch/flags", json=flag)
    assert r.status_code == 201, r.text
    sdk = console_stack.sdk_client("launch", "production")
    wait_until(lambda: sdk.details("new-checkout", True).variant == "off", 20)

    sign_in(page, console_stack.admin_key)
    page.goto("/ui/#/p/launch/e/production/flags/new-checkout")
    expect(page.get_by_test_id("env-state-production")).to_have_text("Off")
    page.get_by_test_id("toggle-production").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("production")
    dialog.get_by_label("Comment (optional)").fill("launch day")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.get_by_test_id("env-state-production")).to_have_text("On")
    wait_until(lambda: sdk.boolean("new-checkout", False) is True, 20)
    shot(page, "flag-toggled-on")
    assert page_errors == []
