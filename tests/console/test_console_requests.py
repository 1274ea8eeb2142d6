"""The console's change requests in headless Chromium against one real stack: with a policy of one approval
on production, alice (a writer key owned by "alice") turning a flag on meets 409 approval_required and
proposes the same change from the flag page; the request's page shows the diff; alice's own approval is
refused with the self_approval message; a comment with markup stays text; bob (another owner) approves the
revision shown; Apply makes the change and a local SDK sees it; the list shows the request; a reader sees
the request and no control; an approved request applied at a local time (the browser in Asia/Kolkata, UTC+05:30)
becomes a scheduled change at that instant, and its author withdraws another; the rule editor's refused Save
is proposed as an env_config request; an admin sets an environment's approvals from the Environments page."""

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

if TYPE_CHECKING:
    from playwright.sync_api import Browser, BrowserContext

PROJECT = "crq"
ZONE = ZoneInfo("Asia/Kolkata")
MARKUP = "<img src=x onerror=window.__pwned=1>"


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


def _policy(stack: ConsoleStack, project: str) -> None:
    path = f"/api/v1/projects/{project}/environments/production"
    env = _ok(stack.api.get(path))
    _ok(stack.api.patch(path, json={"approvals_required": 1}, headers={"If-Match": f'"{env["revision"]}"'}))


def _setup(stack: ConsoleStack, flag: str, project: str = PROJECT, *, policy: bool = True) -> None:
    stack.create_project(project, ("staging", "production"))
    config = {"enabled": False, "default_variant": "on", "off_variant": "off"}
    body = {"key": flag, "name": flag.title(), "type": "boolean", "variants": {"on": True, "off": False}}
    _ok(
        stack.api.post(
            f"/api/v1/projects/{project}/flags",
            json={**body, "environments": {"staging": config, "production": config}},
        ),
        201,
    )
    if policy:
        _policy(stack, project)


def _key(stack: ConsoleStack, role: str, owner: str, project: str = PROJECT) -> str:
    body = {"name": f"{owner}-{role}", "role": role, "project": project, "owner": owner}
    return str(_ok(stack.api.post("/api/v1/api-keys", json=body), 201)["key"])


def _banner(page: Page) -> Any:
    return page.locator("main .banner.error:visible")


def test_propose_from_the_flag_page__self_approval_refused_another_owner_approves_apply_the_sdk_sees_it(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    _setup(console_stack, "launch", policy=False)
    alice = _key(console_stack, "writer", "alice")
    bob = _key(console_stack, "writer", "bob")
    reader = console_stack.create_api_key("reader", project=PROJECT)
    sdk = console_stack.sdk_client(PROJECT, "production")
    wait_until(lambda: sdk.boolean("launch", True) is False, 20)

    sign_in(page, alice)
    page.goto(f"/ui/#/p/{PROJECT}/e/production/flags/launch")
    expect(page.get_by_test_id("toggle-production")).to_have_text("Turn on")
    _policy(console_stack, PROJECT)  # set while the page shows none: the direct write meets the 409
    page.get_by_test_id("toggle-production").click()
    page.get_by_role("dialog").get_by_role("button", name="Confirm").click()
    expect(_banner(page)).to_contain_text("approval_required")
    page.get_by_test_id("propose-change").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Title")).to_have_value("Turn on launch in production")
    dialog.get_by_label("Description").fill("Launch day")
    dialog.get_by_role("button", name="Propose").click()
    expect(page).to_have_url(re.compile(r"#/p/crq/e/production/requests/\d+$"))
    request_id = int(page.url.rsplit("/", 1)[1])
    api_path = f"/api/v1/projects/{PROJECT}/environments/production/change-requests/{request_id}"
    cr = _ok(console_stack.api.get(api_path))
    assert (cr["kind"], cr["target"], cr["body"], cr["status"]) == (
        "toggle",
        "launch",
        {"enabled": True},
        "open",
    )
    expect(page.get_by_role("heading", name="Turn on launch in production")).to_be_visible()
    expect(page.get_by_test_id("cr-description")).to_have_text("Launch day")
    expect(page.get_by_test_id("cr-author")).to_contain_text("(you) · opened")
    expect(page.get_by_test_id("cr-author")).not_to_contain_text("[object")
    expect(page.get_by_test_id("cr-diff")).to_contain_text("enabled")
    expect(page.get_by_test_id("cr-diff")).to_contain_text("true")
    assert (
        _ok(console_stack.api.get(f"/api/v1/projects/{PROJECT}/flags/launch"))["environments"]["production"][
            "enabled"
        ]
        is False
    )  # nothing applied by proposing

    page.get_by_test_id("cr-approve").click()  # the author's own approval
    expect(_banner(page)).to_contain_text("You cannot approve your own change request")
    expect(_banner(page)).to_contain_text("self_approval")
    page.get_by_label("Comment").fill(MARKUP)
    page.get_by_test_id("cr-send-comment").click()
    expect(page.locator("[data-testid^=cr-event-body-]")).to_have_text(MARKUP)
    assert page.evaluate("() => typeof window.__pwned") == "undefined", "planted markup ran"
    assert page.locator("main img").count() == 0
    assert _ok(console_stack.api.get(api_path))["approvals"] == 0

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, bob)
    page.goto(f"/ui/#/p/{PROJECT}/e/production/requests")
    row = page.get_by_test_id(f"cr-row-{request_id}")
    expect(row.get_by_test_id(f"cr-approvals-{request_id}")).to_have_text("0/1")
    expect(row.get_by_role("link", name="launch", exact=True)).to_have_attribute(
        "href", f"#/p/{PROJECT}/e/production/flags/launch"
    )
    row.get_by_test_id(f"cr-link-{request_id}").click()
    expect(page.get_by_test_id("cr-withdraw")).to_have_count(0)  # bob is not the author
    page.get_by_label("Comment").fill("Looks right")
    page.get_by_test_id("cr-approve").click()
    expect(page.get_by_test_id(f"cr-status-{request_id}")).to_have_text("approved")
    expect(page.get_by_test_id("cr-approvals")).to_contain_text("1 of 1")
    expect(page.get_by_test_id("cr-events")).to_contain_text("bob")
    expect(page.get_by_test_id("cr-events")).to_contain_text("approved revision 1")
    expect(page.get_by_test_id("cr-events")).to_contain_text("Looks right")
    shot(page, "change-request")

    page.get_by_test_id("cr-apply").click()
    expect(page.get_by_test_id(f"cr-status-{request_id}")).to_have_text("applied")
    assert _ok(console_stack.api.get(api_path))["status"] == "applied"
    wait_until(lambda: sdk.boolean("launch", False) is True, 20)

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, reader)
    page.goto(f"/ui/#/p/{PROJECT}/e/production/requests/{request_id}")
    expect(page.get_by_test_id("cr-read-only")).to_be_visible()
    expect(page.get_by_test_id("cr-events")).to_contain_text(MARKUP)
    for action in ("cr-approve", "cr-reject", "cr-apply", "cr-withdraw", "cr-send-comment", "cr-rebase"):
        expect(page.get_by_test_id(action)).to_have_count(0)
    assert page_errors == []


def test_admin_sets_approvals_required_on_the_environments_page(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    console_stack.create_project("crq2", ("staging",))
    sign_in(page, console_stack.admin_key)
    page.goto("/ui/#/p/crq2/environments")
    expect(page.get_by_test_id("env-approvals-staging")).to_have_text("none")
    page.get_by_test_id("env-set-approvals-staging").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Approvals required").fill("11")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator(".field-error:visible")).to_have_count(1)  # over the bound of 10: refused (422)
    dialog.get_by_label("Approvals required").fill("2")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0)
    expect(page.get_by_test_id("env-approvals-staging")).to_have_text("2")
    assert _ok(console_stack.api.get("/api/v1/projects/crq2/environments/staging"))["approvals_required"] == 2
    assert page_errors == []


def test_rule_editor_save_refused_by_the_policy__proposed_as_an_env_config_request(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    _setup(console_stack, "saver", "crq3")
    carol = _key(console_stack, "writer", "carol", "crq3")
    sign_in(page, carol)
    page.goto("/ui/#/p/crq3/e/production/flags/saver")
    page.get_by_label("Default variant").select_option("off")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(_banner(page)).to_contain_text("approval_required")
    page.get_by_test_id("propose-change").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Title")).to_have_value("Change the targeting of saver in production")
    dialog.get_by_role("button", name="Propose").click()
    expect(page).to_have_url(re.compile(r"#/p/crq3/e/production/requests/\d+$"))
    request_id = int(page.url.rsplit("/", 1)[1])
    cr = _ok(
        console_stack.api.get(f"/api/v1/projects/crq3/environments/production/change-requests/{request_id}")
    )
    assert (cr["kind"], cr["target"], cr["body"]["default_variant"]) == ("env_config", "saver", "off")
    expect(page.get_by_test_id("cr-diff")).to_contain_text("default_variant")
    page.get_by_role("link", name="Requests", exact=True).click()
    expect(page.get_by_test_id(f"cr-row-{request_id}")).to_contain_text("default variant")
    assert page_errors == []


def test_apply_at_a_local_time_schedules_it_at_that_instant_and_the_author_withdraws_another(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    _setup(console_stack, "later", "crq4")
    alice = _key(console_stack, "writer", "alice", "crq4")
    bob = _key(console_stack, "writer", "bob", "crq4")
    base = "/api/v1/projects/crq4/environments/production/change-requests"
    proposal = {"kind": "toggle", "target": "later", "body": {"enabled": True}, "title": "Later"}
    first = _ok(console_stack.api_as(alice).post(base, json=proposal), 201)
    _ok(console_stack.api_as(bob).post(f"{base}/{first['id']}/approve", json={"revision": first["revision"]}))
    second = _ok(console_stack.api_as(alice).post(base, json={**proposal, "title": "Never"}), 201)

    sign_in(page, alice)
    page.goto(f"/ui/#/p/crq4/e/production/requests/{first['id']}")
    page.get_by_test_id("cr-apply-later").click()
    dialog = page.get_by_role("dialog")
    at = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0)
    dialog.get_by_label("Apply at").fill(at.astimezone(ZONE).strftime("%Y-%m-%dT%H:%M:%S"))
    dialog.get_by_role("button", name="Schedule").click()
    expect(dialog).to_have_count(0)
    expect(page.get_by_test_id(f"cr-status-{first['id']}")).to_have_text("scheduled")
    scheduled_id = _ok(console_stack.api.get(f"{base}/{first['id']}"))["scheduled_change_id"]
    change = _ok(
        console_stack.api.get(
            f"/api/v1/projects/crq4/environments/production/scheduled-changes/{scheduled_id}"
        )
    )
    assert datetime.fromisoformat(change["apply_at"]) == at  # typed in +05:30, sent with that offset

    page.goto("/ui/#/p/crq4/e/production/flags/later")  # the policy known: the toggle proposes
    expect(page.get_by_test_id("env-policy-production")).to_have_text("1 approval")
    page.get_by_test_id("toggle-production").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.get_by_label("Title")).to_have_value("Turn on later in production")
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_have_count(0)

    page.goto(f"/ui/#/p/crq4/e/production/requests/{second['id']}")
    page.get_by_test_id("cr-withdraw").click()
    page.get_by_role("dialog").get_by_role("button", name="Withdraw").click()
    expect(page.get_by_test_id(f"cr-status-{second['id']}")).to_have_text("withdrawn")
    assert _ok(console_stack.api.get(f"{base}/{second['id']}"))["status"] == "withdrawn"
    expect(page.get_by_test_id("cr-approve")).to_have_count(0)
    assert page_errors == []
