"""The console's governance screens in headless Chromium against one real stack (its control plane runs the
scheduler thread every second and the webhook delivery worker): a toggle scheduled from a flag's page is
listed as pending, applied by the scheduler and seen by a local SDK; the rule editor's configuration saved
at a time (a past time refused at its field); a reschedule (a refused time shown at
its field first) and a cancel reach the API; a schedule that met a newer change shows its conflict; a
webhook created in the page shows its secret once, and that secret verifies the signature of the test
event the receiver gets; the delivery log shows the receiver's answer; markup in a description or an
answer stays text; a reader sees the lists and no control.

The browser runs in Asia/Kolkata (UTC+05:30) so a time typed into a date-time field is proved to reach the
API with the browser's offset, not as UTC."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from browser_helpers import TIMEOUT_MS, VIEWPORT, shot, sign_in
from console_stack import ConsoleStack
from playwright.sync_api import Page, expect
from polling_helpers import wait_until
from standardwebhooks.webhooks import Webhook
from webhook_receiver import MARKUP, start_receiver

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

ZONE = ZoneInfo("Asia/Kolkata")
PROJECT = "gov"
BOOL_VARIANTS = {"on": True, "off": False}
APPLY_TIMEOUT_MS = 30_000
"""How long the page may take to show an outcome: the scheduler's second plus the page's 3 s poll, on a
busy machine."""
_STICKING_OUT = """() => [...document.querySelectorAll("main *")]
  .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
  .slice(0, 6)
  .map((el) => `${el.tagName.toLowerCase()}.${el.className}`)"""
"""What sticks out past the viewport's right edge (even where a scrolling table clips it)."""


@pytest.fixture
def context(browser: Browser, console_stack: ConsoleStack) -> Iterator[BrowserContext]:
    """conftest's context, in a time zone with a non-whole-hour offset."""
    ctx = browser.new_context(viewport=VIEWPORT, base_url=console_stack.base_url, timezone_id=str(ZONE))
    ctx.set_default_timeout(TIMEOUT_MS)
    ctx.set_default_navigation_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.text}"
    )
    return response.json() if response.content else None


def _project(stack: ConsoleStack) -> None:
    if stack.api.get(f"/api/v1/projects/{PROJECT}").status_code == 404:
        stack.create_project(PROJECT, ("staging", "production"))


def _flag(stack: ConsoleStack, key: str) -> None:
    config = {"enabled": False, "default_variant": "on", "off_variant": "off"}
    body = {"key": key, "name": key.title(), "type": "boolean", "variants": BOOL_VARIANTS}
    _ok(
        stack.api.post(
            f"/api/v1/projects/{PROJECT}/flags", json={**body, "environments": {"staging": config}}
        ),
        201,
    )


def _scheduled(stack: ConsoleStack, path: str = "", **query: str) -> Any:
    return _ok(
        stack.api.get(
            f"/api/v1/projects/{PROJECT}/environments/staging/scheduled-changes{path}", params=query
        )
    )


def _schedule(stack: ConsoleStack, flag: str, at: datetime, enabled: bool = True) -> int:
    body = {"kind": "toggle", "target": flag, "body": {"enabled": enabled}, "apply_at": at.isoformat()}
    created = _ok(
        stack.api.post(f"/api/v1/projects/{PROJECT}/environments/staging/scheduled-changes", json=body), 201
    )
    return int(created["id"])


def _local(at: datetime) -> str:
    """What a person types into a date-time field of the browser (Asia/Kolkata) for the instant ``at``."""
    return at.astimezone(ZONE).strftime("%Y-%m-%dT%H:%M:%S")


def _whole_seconds_ahead(seconds: float) -> datetime:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).replace(microsecond=0)


def test_schedule_toggle_from_the_flag_page__pending_then_applied_and_the_sdk_sees_it(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    _project(console_stack)
    _flag(console_stack, "launch")
    sdk = console_stack.sdk_client(PROJECT, "staging")
    wait_until(lambda: sdk.boolean("launch", True) is False, 20)  # off: the off variant, once synced
    sign_in(page, console_stack.admin_key)
    page.goto(f"/ui/#/p/{PROJECT}/e/staging/flags/launch")

    page.get_by_test_id("schedule-staging").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Change", exact=True)).to_have_value(
        "on"
    )  # the flag is off: turning it on is offered
    at = _whole_seconds_ahead(10)  # time to see it pending first
    dialog.get_by_label("At", exact=True).fill(_local(at))
    dialog.get_by_role("button", name="Schedule").click()
    expect(dialog).to_have_count(0)

    [change] = _scheduled(console_stack, status="pending")["items"]
    assert (change["kind"], change["target"], change["body"]) == ("toggle", "launch", {"enabled": True})
    assert datetime.fromisoformat(change["apply_at"]) == at  # typed in +05:30, sent with that offset
    page.get_by_role("link", name="Scheduled").click()
    row = page.get_by_test_id(f"scheduled-row-{change['id']}")
    expect(row.get_by_test_id(f"does-{change['id']}")).to_have_text("turn on")
    expect(row.get_by_role("link", name="launch")).to_have_attribute(
        "href", f"#/p/{PROJECT}/e/staging/flags/launch"
    )
    expect(row).to_contain_text(change["created_by_key_prefix"])
    status = row.get_by_test_id(f"status-{change['id']}")
    if _scheduled(console_stack, f"/{change['id']}")["status"] == "pending":
        expect(status).to_have_text("pending")

    expect(status).to_have_text("applied", timeout=APPLY_TIMEOUT_MS)  # the page reads the list again
    assert _scheduled(console_stack, f"/{change['id']}")["status"] == "applied"
    wait_until(lambda: sdk.boolean("launch", False) is True, 20)
    assert page_errors == []


def test_reschedule_with_a_refused_time_at_its_field_cancel_and_a_conflict_shown(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    _project(console_stack)
    for key in ("promo", "banner", "clash"):
        _flag(console_stack, key)
    promo = _schedule(console_stack, "promo", _whole_seconds_ahead(86400))
    banner = _schedule(console_stack, "banner", _whole_seconds_ahead(86400), enabled=True)
    clash = _schedule(console_stack, "clash", _whole_seconds_ahead(2))
    toggle = f"/api/v1/projects/{PROJECT}/flags/clash/environments/staging/toggle"
    _ok(console_stack.api.post(toggle, json={"enabled": True}))  # the field it sets changes first
    wait_until(lambda: _scheduled(console_stack, f"/{clash}")["status"] == "failed", 30)

    sign_in(page, console_stack.admin_key)
    page.goto(f"/ui/#/p/{PROJECT}/e/staging/scheduled")
    expect(page.get_by_test_id(f"scheduled-row-{promo}")).to_be_visible()
    expect(page.get_by_test_id(f"scheduled-row-{clash}")).to_have_count(0)  # pending only by default

    page.get_by_test_id(f"reschedule-{promo}").click()
    dialog = page.get_by_role("dialog")
    when = dialog.get_by_label("Apply at", exact=True)
    when.fill(_local(datetime.now(UTC) - timedelta(hours=1)))
    dialog.get_by_role("button", name="Reschedule").click()
    expect(when).to_have_attribute("aria-invalid", "true")
    expect(dialog.locator(".field-error")).to_contain_text("in the past")
    later = _whole_seconds_ahead(2 * 86400)
    when.fill(_local(later))
    dialog.get_by_role("button", name="Reschedule").click()
    expect(dialog).to_have_count(0)
    assert datetime.fromisoformat(_scheduled(console_stack, f"/{promo}")["apply_at"]) == later

    page.get_by_test_id(f"cancel-{banner}").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel the change").click()
    expect(page.get_by_test_id(f"scheduled-row-{banner}")).to_have_count(0)
    assert _scheduled(console_stack, f"/{banner}")["status"] == "cancelled"

    page.get_by_label("Status").select_option("failed")
    failure = page.get_by_test_id(f"failure-{clash}")
    expect(failure).to_contain_text("conflict")
    expect(failure).to_contain_text(_scheduled(console_stack, f"/{clash}")["failure"]["message"])
    expect(page.get_by_test_id(f"reschedule-{clash}")).to_have_count(0)  # only pending ones change
    page.get_by_label("Status").select_option(label="All")
    expect(page.get_by_test_id(f"status-{banner}")).to_have_text("cancelled")
    shot(page, "scheduled")
    assert page.evaluate(_STICKING_OUT) == []
    assert page_errors == []


def test_save_at_a_time__schedules_the_editors_configuration_a_past_time_refused_at_its_field(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    _project(console_stack)
    _flag(console_stack, "later")
    sign_in(page, console_stack.admin_key)
    page.goto(f"/ui/#/p/{PROJECT}/e/staging/flags/later")

    page.get_by_test_id("save-later").click()
    dialog = page.get_by_role("dialog")
    when = dialog.get_by_label("At", exact=True)
    when.fill(_local(datetime.now(UTC) - timedelta(minutes=10)))
    dialog.get_by_role("button", name="Schedule").click()
    expect(when).to_have_attribute("aria-invalid", "true")
    expect(dialog.locator(".field-error:visible")).to_contain_text("in the past")
    at = _whole_seconds_ahead(3600)
    when.fill(_local(at))
    dialog.get_by_role("button", name="Schedule").click()
    expect(dialog).to_have_count(0)

    [change] = [c for c in _scheduled(console_stack, status="pending")["items"] if c["target"] == "later"]
    assert change["kind"] == "env_config"
    assert datetime.fromisoformat(change["apply_at"]) == at
    assert (change["body"]["default_variant"], change["body"]["off_variant"]) == ("on", "off")
    assert "enabled" not in change["body"]  # the editor's fields only: on/off is the toggle's
    page.goto(f"/ui/#/p/{PROJECT}/e/staging/scheduled")
    expect(page.get_by_test_id(f"does-{change['id']}")).to_contain_text("default variant")
    assert page_errors == []


def test_webhooks__create_secret_once_test_event_signed_deliveries_markup_as_text_edit_rotate_delete(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    _project(console_stack)
    receiver = start_receiver()
    try:
        sign_in(page, console_stack.admin_key)
        page.goto(f"/ui/#/p/{PROJECT}/e/staging/flags")
        page.get_by_role("link", name="Webhooks").click()
        expect(page.locator(".empty")).to_contain_text(f"No webhooks in {PROJECT} yet")
        page.get_by_role("button", name="New webhook").click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("URL", exact=True).fill(receiver.url("/markup"))
        dialog.get_by_label("Description (optional)").fill(MARKUP.decode())
        dialog.get_by_role("button", name="Create webhook").click()
        expect(
            dialog.locator("fieldset.event-choices .field-error")
        ).to_be_visible()  # no event: 422 at /events
        dialog.locator("[data-event='flag.toggled']").check()
        dialog.get_by_role("button", name="Create webhook").click()

        secret_input = dialog.get_by_test_id("new-secret")
        expect(secret_input).to_have_value(re.compile(r"^whsec_"))
        secret = secret_input.input_value()
        [hook] = _ok(console_stack.api.get(f"/api/v1/projects/{PROJECT}/webhooks"))["items"]
        assert secret.startswith(hook["secret_prefix"])
        assert "secret" not in hook
        dialog.get_by_role("button", name="Done").click()
        expect(dialog).to_have_count(0)
        assert secret not in page.content()  # shown once: gone with the dialog

        row = page.get_by_test_id(f"webhook-row-{hook['id']}")
        expect(row.get_by_test_id(f"webhook-description-{hook['id']}")).to_have_text(MARKUP.decode())
        expect(row.get_by_test_id(f"webhook-state-{hook['id']}")).to_have_text("enabled")
        row.get_by_test_id(f"test-{hook['id']}").click()
        wait_until(lambda: receiver.received("/markup"), 20)
        [got] = receiver.received("/markup")
        Webhook(secret).verify(got.body, got.headers)  # the secret the page showed signs the deliveries
        assert b'"webhook.test"' in got.body

        row.get_by_role("link", name=f"Deliveries of webhook {hook['id']}").click()
        delivery = _ok(console_stack.api.get(f"/api/v1/projects/{PROJECT}/webhooks/{hook['id']}/deliveries"))
        delivery_id = delivery["items"][0]["id"]
        expect(page.get_by_test_id(f"delivery-status-{delivery_id}")).to_have_text(
            "delivered", timeout=APPLY_TIMEOUT_MS
        )
        expect(page.get_by_test_id(f"delivery-http-{delivery_id}")).to_have_text("200")
        expect(page.get_by_test_id(f"delivery-excerpt-{delivery_id}")).to_have_text(MARKUP.decode())
        expect(page.get_by_test_id("webhook-description")).to_have_text(MARKUP.decode())
        assert page.locator("main img").count() == 0
        assert page.evaluate("() => window.__pwned") is None

        page.get_by_role("link", name="Webhooks", exact=True).first.click()
        page.get_by_test_id(f"edit-{hook['id']}").click()
        dialog.get_by_label("Description (optional)").fill("Billing receiver")
        dialog.get_by_label("Enabled", exact=True).uncheck()
        dialog.get_by_role("button", name="Save webhook").click()
        expect(page.get_by_test_id(f"webhook-state-{hook['id']}")).to_have_text("disabled")
        edited = _ok(console_stack.api.get(f"/api/v1/projects/{PROJECT}/webhooks/{hook['id']}"))
        assert (edited["enabled"], edited["description"], edited["events"]) == (
            False,
            "Billing receiver",
            ["flag.toggled"],
        )

        page.get_by_test_id(f"rotate-{hook['id']}").click()
        dialog.get_by_role("button", name="Rotate secret").click()
        expect(dialog.get_by_test_id("new-secret")).to_have_value(re.compile(r"^whsec_"))
        rotated = dialog.get_by_test_id("new-secret").input_value()
        assert rotated != secret
        dialog.get_by_role("button", name="Done").click()
        shot(page, "webhooks")
        assert page.evaluate(_STICKING_OUT) == []

        page.get_by_test_id(f"delete-{hook['id']}").click()
        dialog.get_by_role("button", name="Delete webhook").click()
        expect(page.locator(".empty")).to_contain_text(f"No webhooks in {PROJECT} yet")
        assert _ok(console_stack.api.get(f"/api/v1/projects/{PROJECT}/webhooks"))["items"] == []
    finally:
        receiver.close()
    assert page_errors == []


def test_reader__sees_scheduled_changes_but_no_control_and_no_webhooks(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    _project(console_stack)
    _flag(console_stack, "quiet")
    change = _schedule(console_stack, "quiet", _whole_seconds_ahead(86400))
    reader = console_stack.create_api_key("reader", project=PROJECT)
    sign_in(page, reader)

    page.goto(f"/ui/#/p/{PROJECT}/e/staging/scheduled")
    expect(page.get_by_test_id(f"does-{change}")).to_have_text("turn on")
    expect(page.get_by_test_id(f"reschedule-{change}")).to_have_count(0)
    expect(page.get_by_test_id(f"cancel-{change}")).to_have_count(0)
    expect(page.get_by_role("link", name="Webhooks")).to_have_count(0)
    page.goto(f"/ui/#/p/{PROJECT}/e/staging/flags/quiet")
    expect(page.get_by_test_id("env-state-staging")).to_be_visible()
    expect(page.get_by_test_id("schedule-staging")).to_have_count(0)
    expect(page.get_by_test_id("save-later")).to_have_count(0)
    page.goto(f"/ui/#/p/{PROJECT}/webhooks")
    expect(page.get_by_test_id("needs-writer")).to_contain_text("needs a writer or admin key")
    expect(page.get_by_role("button", name="New webhook")).to_have_count(0)
    assert page_errors == []
