"""The flag lifecycle in the console, in headless Chromium against a real stack: owner, kind and removal
date edited with the details; Archive (confirmed) takes the flag away from a local-mode SDK and from the
list, the archived filter shows it again; Unarchive (confirmed) brings it back."""

from __future__ import annotations

from typing import Any

from browser_helpers import sign_in
from console_stack import ConsoleStack
from playwright.sync_api import Page, expect
from polling_helpers import wait_until

BOOL_VARIANTS = {"on": True, "off": False}


def _flag(stack: ConsoleStack, project: str, key: str, **fields: Any) -> None:
    body = {"key": key, "name": key, "type": "boolean", "variants": BOOL_VARIANTS, **fields}
    r = stack.api.post(f"/api/v1/projects/{project}/flags", json=body)
    assert r.status_code == 201, r.text


def test_flag_lifecycle__edit_owner_kind_date__archive_hides_it_from_sdk_and_list__unarchive(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    console_stack.create_project("life", ("staging", "production"))
    on = {"production": {"enabled": True, "default_variant": "on", "off_variant": "off"}}
    _flag(console_stack, "life", "old-banner", owner="team-a", environments=on)
    _flag(console_stack, "life", "keep")
    sdk = console_stack.sdk_client("life", "production")
    assert wait_until(lambda: sdk.details("old-banner", False).variant == "on", 30)

    sign_in(page, console_stack.admin_key)
    page.goto("/ui/#/p/life/e/production/flags/old-banner")
    expect(page.get_by_test_id("flag-owner")).to_have_text("team-a")
    expect(page.get_by_test_id("flag-kind")).to_have_text("temporary")

    page.get_by_role("button", name="Edit details").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Owner").fill("team-b <b>bold</b>")
    dialog.get_by_label("Kind").select_option("permanent")
    dialog.get_by_label("Removal date").fill("2027-05-31")
    dialog.get_by_role("button", name="Save details").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("flag-owner")).to_have_text("team-b <b>bold</b>")  # text, never markup
    expect(page.get_by_test_id("flag-kind")).to_have_text("permanent")
    expect(page.get_by_test_id("flag-removal-date")).to_have_text("2027-05-31")

    page.get_by_test_id("archive-flag").click()
    expect(dialog).to_contain_text("Archive flag old-banner?")
    dialog.get_by_label("Comment (optional)").fill("banner campaign over")
    dialog.get_by_role("button", name="Archive").click()
    expect(page.get_by_test_id("archived-banner")).to_be_visible()
    expect(page.get_by_test_id("toggle-production")).to_have_count(0)
    assert wait_until(lambda: sdk.details("old-banner", False).error_code is not None, 30)
    assert str(sdk.details("old-banner", False).error_code).upper().endswith("FLAG_NOT_FOUND")

    page.goto("/ui/#/p/life/e/production/flags")
    rows = page.locator("[data-testid^='flag-row-']")
    expect(rows).to_have_count(1)
    expect(page.get_by_test_id("flag-row-keep")).to_be_visible()
    page.get_by_label("Archived").select_option("true")
    expect(rows).to_have_count(1)
    expect(page.get_by_test_id("archived-old-banner")).to_be_visible()

    page.get_by_test_id("flag-row-old-banner").get_by_role("link", name="old-banner").click()
    page.get_by_test_id("unarchive-flag").click()
    dialog.get_by_role("button", name="Unarchive").click()
    expect(page.get_by_test_id("archived-banner")).to_have_count(0)
    expect(page.get_by_test_id("toggle-production")).to_be_visible()
    assert wait_until(lambda: sdk.details("old-banner", False).variant == "on", 30)
    assert page_errors == []
