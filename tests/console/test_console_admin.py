"""Everything the console offers an admin besides the core flow (test_console_flow.py), proved in headless
Chromium against one real stack: projects and environments (switchers, typed confirmations, empty
states), the flags list (search, tag and type filters, state per environment, stale badge from a real SDK's
reports), segments (edit, rules in the structured editor, where used, refused delete, history), the audit
log's filters and diffs, keys (secret shown once, rotate with overlap, revoke; hidden from writers),
operations (a really failed sync job requeued, usage counts, propagation by data-plane id), a concurrent
edit's 412 flow, keyboard-only use and the layout at two laptop sizes, light and dark."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from browser_helpers import shot, sign_in
from console_stack import ConsoleStack
from playwright.sync_api import Locator, Page, expect
from polling_helpers import wait_until
from rq import Queue
from rq.job import Job
from rq.registry import FailedJobRegistry

BOOL_VARIANTS = {"on": True, "off": False}
_FOCUSED_STYLE = """() => {
  const s = getComputedStyle(document.activeElement);
  return {outline: s.outlineStyle, width: s.outlineWidth, shadow: s.boxShadow};
}"""


_WIDEST = """() => [...document.querySelectorAll("body *")]
  .filter((el) => el.getBoundingClientRect().right > window.innerWidth + 0.5)
  .slice(0, 6)
  .map((el) => `${el.tagName.toLowerCase()}.${el.className} right=${Math.round(el.getBoundingClientRect().right)}`)"""
"""What sticks out past the viewport's right edge, for the failure message."""


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.text}"
    )
    return response.json() if response.content else None


def _flag(stack: ConsoleStack, project: str, key: str, **fields: Any) -> dict[str, Any]:
    body = {"key": key, "name": key.replace("-", " ").title(), "type": "boolean", "variants": BOOL_VARIANTS}
    return dict(_ok(stack.api.post(f"/api/v1/projects/{project}/flags", json={**body, **fields}), 201))


def _rows(page: Page, prefix: str) -> Locator:
    return page.locator(f"[data-testid^='{prefix}']")


def _tab_to(page: Page, selector: str, limit: int = 60) -> None:
    """Press Tab until the element matching ``selector`` has the focus (fails after ``limit`` presses)."""
    for _ in range(limit):
        if page.evaluate("(sel) => document.activeElement?.matches(sel) ?? false", selector):
            return
        page.keyboard.press("Tab")
    raise AssertionError(f"{limit} Tab presses never reached {selector}")


def _assert_focus_visible(page: Page) -> None:
    style = page.evaluate(_FOCUSED_STYLE)
    visible = (style["outline"] != "none" and style["width"] != "0px") or style["shadow"] != "none"
    assert visible, f"the focused element shows no focus ring: {style}"


def test_projects_and_environments__create_switch_delete_with_empty_states(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    api = console_stack.api
    assert _ok(api.get("/api/v1/projects"))["items"] == [], "this test is the module's first: no projects yet"
    sign_in(page, console_stack.admin_key)
    empty = page.locator(".empty")
    expect(empty).to_contain_text("No projects yet")
    empty.get_by_role("button", name="Create a project").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Key", exact=True).fill("alpha")
    dialog.get_by_label("Name", exact=True).fill("Alpha")
    dialog.get_by_role("button", name="Create project").click()

    expect(page).to_have_url(re.compile(r"#/p/alpha/environments$"))
    expect(empty).to_contain_text("No environments yet")
    empty.get_by_role("button", name="Create an environment").click()
    dialog.get_by_label("Key", exact=True).fill("staging")
    dialog.get_by_label("Name", exact=True).fill("Staging")
    dialog.get_by_role("button", name="Create environment").click()

    expect(page).to_have_url(re.compile(r"#/p/alpha/e/staging/flags$"))
    expect(empty).to_contain_text("No flags yet")
    create_flag = empty.get_by_role("link", name="Create flag")
    expect(create_flag).to_have_attribute("href", "#/p/alpha/e/staging/flags/new")

    page.get_by_role("link", name="Environments").click()
    page.get_by_role("button", name="New environment").click()
    dialog.get_by_label("Key", exact=True).fill("production")
    dialog.get_by_label("Name", exact=True).fill("Production")
    dialog.get_by_role("button", name="Create environment").click()
    expect(page).to_have_url(re.compile(r"#/p/alpha/e/production/flags$"))

    console_stack.create_project("beta", ("dev",))
    page.reload()  # the switcher lists projects made elsewhere after a reload
    page.locator("#project-switcher").select_option("beta")
    expect(page).to_have_url(re.compile(r"#/p/beta/e/dev/flags$"))
    page.locator("#project-switcher").select_option("alpha")
    expect(page).to_have_url(re.compile(r"#/p/alpha/e/production/flags$"))  # the environment last shown
    page.locator("#env-switcher").select_option("staging")
    expect(page).to_have_url(re.compile(r"#/p/alpha/e/staging/flags$"))
    expect(page.get_by_role("heading", name="Flags")).to_be_visible()

    page.get_by_role("link", name="Environments").click()
    page.get_by_role("button", name="Delete environment staging").click()
    confirm = dialog.get_by_role("button", name="Confirm")
    expect(dialog.get_by_label(re.compile("to confirm"))).to_have_count(0)  # staging: no typing needed
    confirm.click()
    expect(page.get_by_test_id("env-row-staging")).to_have_count(0)

    page.get_by_role("button", name="Delete environment production").click()
    expect(confirm).to_be_disabled()  # production-like: type its key first
    dialog.get_by_label("Type production to confirm").fill("productio")
    expect(confirm).to_be_disabled()
    dialog.get_by_label("Type production to confirm").fill("production")
    confirm.click()
    expect(page.locator(".empty")).to_contain_text("No environments yet")
    assert _ok(api.get("/api/v1/projects/alpha/environments"))["items"] == []

    page.get_by_role("link", name="Projects").click()
    page.get_by_role("button", name="Delete project beta").click()
    expect(confirm).to_be_disabled()
    dialog.get_by_label("Type beta to confirm").fill("beta")
    confirm.click()
    expect(page.get_by_test_id("project-row-beta")).to_have_count(0)
    expect(page.get_by_test_id("project-row-alpha")).to_be_visible()
    assert api.get("/api/v1/projects/beta").status_code == 404
    assert page_errors == []


def test_flags_list__search_tag_type_state_and_stale_badge_from_a_real_sdk(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    console_stack.create_project("catalog", ("staging", "production"))
    on_in_prod = {"production": {"enabled": True, "default_variant": "on", "off_variant": "off"}}
    _flag(console_stack, "catalog", "checkout-v2", tags=["payments", "beta"], environments=on_in_prod)
    _flag(
        console_stack,
        "catalog",
        "banner-text",
        type="string",
        variants={"a": "Hi", "b": "Yo"},
        tags=["marketing"],
    )
    _flag(
        console_stack,
        "catalog",
        "max-items",
        type="integer",
        variants={"few": 3, "many": 30},
        tags=["payments"],
    )

    # A real SDK evaluates checkout-v2 in production and reports the counts (flushed at once, not in 30 s).
    sdk = console_stack.sdk_client("catalog", "production", report_interval=3600)
    assert sdk.details("checkout-v2", False).variant == "on"
    assert sdk.reporter is not None
    assert sdk.reporter.flush(), "the evaluation report was not accepted"
    usage = _ok(console_stack.api.get("/api/v1/projects/catalog/environments/production/evaluations"))
    assert {f["key"]: f["stale"] for f in usage["flags"]}["checkout-v2"] is False

    sign_in(page, console_stack.admin_key)
    page.goto("/ui/#/p/catalog/e/production/flags")
    rows = _rows(page, "flag-row-")
    expect(rows).to_have_count(3)
    checkout = page.get_by_test_id("flag-row-checkout-v2")
    expect(checkout.get_by_test_id("env-state-production")).to_have_text("On")
    expect(checkout.get_by_test_id("env-state-staging")).to_have_text("Off")
    expect(page.get_by_test_id("flag-row-max-items").get_by_role("cell", name="integer")).to_be_visible()
    expect(page.get_by_test_id("flag-row-banner-text").get_by_role("cell", name="string")).to_be_visible()
    expect(checkout.get_by_role("cell", name="boolean")).to_be_visible()
    expect(page.get_by_test_id("stale-banner-text")).to_be_visible()  # never evaluated
    expect(page.get_by_test_id("stale-checkout-v2")).to_have_count(0)  # evaluated by the SDK
    expect(checkout.locator("td.num")).to_have_text("1")  # evaluations in production
    expect(page.get_by_test_id("flag-row-banner-text").locator("td.num")).to_contain_text("0")

    page.get_by_label("Search").fill("banner")
    expect(rows).to_have_count(1)
    expect(page.get_by_test_id("flag-row-banner-text")).to_be_visible()
    page.get_by_label("Search").fill("")
    expect(rows).to_have_count(3)
    page.get_by_label("Filter by tag").select_option("payments")
    expect(rows).to_have_count(2)
    expect(page.get_by_test_id("flag-row-banner-text")).to_have_count(0)
    page.get_by_label("Filter by type").select_option("integer")
    expect(rows).to_have_count(1)
    expect(page.get_by_test_id("flag-row-max-items")).to_be_visible()
    page.get_by_label("Search").fill("nothing-like-this")
    expect(page.locator(".empty")).to_contain_text("No flag matches these filters")
    page.get_by_role("button", name="Clear filters").click()
    expect(rows).to_have_count(3)
    assert page_errors == []


def test_segment__edit_keys_where_used_and_delete_refused_while_used(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    console_stack.create_project("seg", ("staging", "production"))
    sign_in(page, console_stack.admin_key)
    page.goto("/ui/#/p/seg/e/production/segments")
    expect(page.locator(".empty")).to_contain_text("No segments yet")
    page.get_by_role("button", name="New segment").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Key", exact=True).fill("beta-testers")
    dialog.get_by_label("Name", exact=True).fill("Beta testers")
    dialog.get_by_role("button", name="Create segment").click()
    expect(page).to_have_url(re.compile(r"#/p/seg/e/production/segments/beta-testers$"))

    page.get_by_label("Included keys").fill("alice\nbob\n")
    page.get_by_label("Excluded keys").fill("mallory")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("v2, changed")).to_be_visible()
    saved = _ok(console_stack.api.get("/api/v1/projects/seg/segments/beta-testers"))
    assert (saved["included"], saved["excluded"], saved["version"]) == (["alice", "bob"], ["mallory"], 2)

    rule = {
        "id": "beta",
        "clauses": [{"operator": "segment_match", "values": ["beta-testers"]}],
        "variant": "on",
    }
    _flag(
        console_stack,
        "seg",
        "new-search",
        environments={"production": {"rules": [rule], "default_variant": "off"}},
    )
    page.reload()
    used = page.get_by_test_id("where-used")
    expect(used).to_contain_text("new-search")
    expect(used).to_contain_text("production")

    page.get_by_role("button", name="Delete segment").click()
    dialog.get_by_label("Type beta-testers to confirm").fill("beta-testers")
    dialog.get_by_role("button", name="Confirm").click()
    refusal = page.get_by_role("alert").filter(has_text="Could not delete beta-testers")
    expect(refusal).to_contain_text("in use")
    expect(refusal).to_contain_text("new-search")
    assert console_stack.api.get("/api/v1/projects/seg/segments/beta-testers").status_code == 200
    assert page_errors == []


def test_segment_rules__built_in_the_structured_editor__server_errors_inline__read_only_for_readers(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    api = console_stack.api
    console_stack.create_project("segrules", ("production",))
    base = "/api/v1/projects/segrules/segments"
    _ok(api.post(base, json={"key": "staff", "name": "Staff", "included": ["ann"]}), 201)
    _ok(api.post(base, json={"key": "vips", "name": "VIPs", "included": ["zed"]}), 201)
    sign_in(page, console_stack.admin_key)
    page.goto("/ui/#/p/segrules/e/production/segments/vips")
    editor = page.get_by_test_id("segment-rules")
    expect(editor).to_contain_text("No rules")
    expect(editor.get_by_role("textbox", name="Rules (JSON)")).to_have_count(0)

    editor.get_by_role("button", name="+ Add rule").click()
    first = editor.locator(".fy-re-rule").first
    first.get_by_label("Clause 1 attribute").fill("plan")
    first.get_by_label("Value 1", exact=True).fill("gold")
    first.get_by_role("button", name="+ value").click()
    first.get_by_label("Value 2", exact=True).fill("platinum")
    first.get_by_role("button", name="+ clause (AND)").click()
    first.get_by_label("Clause 2 attribute").fill("app_version")
    first.get_by_label("Clause 2 operator").select_option("semver_gte")
    first.locator(".fy-re-clause").nth(1).get_by_label("Value 1", exact=True).fill("2.0.0")
    editor.get_by_role("button", name="+ Add rule").click()
    second = editor.locator(".fy-re-rule").nth(1)
    second.get_by_label("Clause 1 operator").select_option("segment_match")
    expect(second.locator(".fy-re-segments input")).to_have_count(1)  # staff; never vips itself
    second.get_by_role("checkbox", name="staff — Staff").check()
    page.get_by_label("Comment").fill("rules from the console")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_text("v2, changed")).to_be_visible()

    saved = _ok(api.get(f"{base}/vips"))
    expected = [
        {
            "clauses": [
                {"attribute": "plan", "operator": "in", "values": ["gold", "platinum"], "negate": False},
                {"attribute": "app_version", "operator": "semver_gte", "values": ["2.0.0"], "negate": False},
            ]
        },
        {"clauses": [{"attribute": None, "operator": "segment_match", "values": ["staff"], "negate": False}]},
    ]
    assert (saved["rules"], saved["included"], saved["version"]) == (expected, ["zed"], 2)

    # An invalid value is sent as typed; the server's 422 lands at that input, and nothing is stored.
    bad_rules = [
        {"clauses": [expected[0]["clauses"][0], {**expected[0]["clauses"][1], "values": ["two"]}]},
        expected[1],
    ]
    refused = api.patch(f"{base}/vips", json={"rules": bad_rules}, headers={"If-Match": '"2"'})
    assert refused.status_code == 422, refused.text
    message = next(
        d["message"] for d in refused.json()["details"] if d["path"] == "/rules/0/clauses/1/values/0"
    )
    first = editor.locator(".fy-re-rule").first
    version = first.locator(".fy-re-clause").nth(1).get_by_label("Value 1", exact=True)
    expect(version).to_have_value("2.0.0")
    version.fill("two")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(first.locator(".fy-re-clause").nth(1).locator(".fy-re-error")).to_contain_text(message)
    expect(version).to_have_attribute("aria-invalid", "true")
    expect(version).to_be_focused()
    expect(page.get_by_role("alert").filter(has_text="The segment was not saved")).to_be_visible()
    assert _ok(api.get(f"{base}/vips"))["version"] == 2

    # A reader sees the same rules and no control that could change them.
    page.get_by_role("button", name="Sign out").click()
    sign_in(page, console_stack.create_api_key("reader", project="segrules"))
    page.goto("/ui/#/p/segrules/e/production/segments/vips")
    editor = page.get_by_test_id("segment-rules")
    expect(editor.locator(".fy-re-rule")).to_have_count(2)
    expect(editor.get_by_label("Clause 1 attribute").first).to_have_value("plan")
    expect(editor.locator("button")).to_have_count(0)
    expect(
        editor.locator("input:not([disabled]), select:not([disabled]), textarea:not([disabled])")
    ).to_have_count(0)
    expect(page.get_by_role("button", name="Save", exact=True)).to_have_count(0)
    assert page_errors == []


def test_segment_history__compare_two_versions_and_roll_back(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    api = console_stack.api
    console_stack.create_project("hist", ("staging",))
    base = "/api/v1/projects/hist/segments"
    _ok(api.post(base, json={"key": "staff", "name": "Staff", "included": ["ann"]}), 201)
    _ok(api.patch(f"{base}/staff", json={"included": ["ann", "carl"]}, headers={"If-Match": '"1"'}))

    sign_in(page, console_stack.admin_key)
    page.goto("/ui/#/p/hist/e/staging/segments/staff")
    page.get_by_role("button", name="Show history").click()
    expect(_rows(page, "version-row-")).to_have_count(2)
    page.get_by_label("Select version 1").check()
    page.get_by_label("Select version 2").check()
    page.get_by_role("button", name="Compare").click()
    diff = page.get_by_test_id("diff")
    expect(diff).to_contain_text("Changes from v1 to v2")
    expect(diff).to_contain_text("carl")

    page.get_by_role("button", name="Rollback to version 1").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.get_by_text("v3, changed")).to_be_visible()
    segment = _ok(api.get(f"{base}/staff"))
    assert (segment["version"], segment["included"]) == (3, ["ann"])
    expect(page.get_by_label("Included keys")).to_have_value("ann")
    assert page_errors == []


def test_audit_log__filters_by_actor_resource_action_and_shows_a_diff(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    api = console_stack.api
    console_stack.create_project("audited", ("staging",))
    writer = _ok(
        api.post("/api/v1/api-keys", json={"name": "auditor-w", "role": "writer", "project": None}), 201
    )
    as_writer = console_stack.api_as(writer["key"])
    _ok(
        as_writer.post(
            "/api/v1/projects/audited/flags",
            json={"key": "w-flag", "name": "W", "type": "boolean", "variants": BOOL_VARIANTS},
        ),
        201,
    )
    _ok(api.post("/api/v1/projects/audited/segments", json={"key": "vips", "name": "VIPs"}), 201)
    _ok(api.post("/api/v1/projects/audited/flags/w-flag/environments/staging/toggle", json={"enabled": True}))
    path = "/api/v1/projects/audited/audit"
    total = len(_ok(api.get(path, params={"limit": 200}))["items"])

    def expected(**query: Any) -> int:
        n = len(_ok(api.get(path, params={"limit": 200, **query}))["items"])
        assert 0 < n < total, f"the filter {query} should narrow {total} entries, it keeps {n}"
        return n

    sign_in(page, console_stack.admin_key)
    page.goto("/ui/#/p/audited/e/staging/audit")
    rows = _rows(page, "audit-row-")
    expect(rows).to_have_count(total)
    apply = page.get_by_role("button", name="Apply filters")

    page.get_by_label("Actor key id").fill(str(writer["id"]))
    apply.click()
    expect(rows).to_have_count(expected(actor_key_id=writer["id"]))
    for row in rows.all():
        expect(row).to_contain_text(f"#{writer['id']}")
    page.get_by_role("button", name="Clear", exact=True).click()
    expect(rows).to_have_count(total)

    page.get_by_label("Resource", exact=True).select_option("segment")
    apply.click()
    expect(rows).to_have_count(expected(resource_type="segment"))
    expect(rows.first).to_contain_text("vips")
    page.get_by_role("button", name="Clear", exact=True).click()

    page.get_by_label("Action").fill("toggled")
    apply.click()
    expect(rows).to_have_count(expected(action="toggled"))
    toggled = rows.first
    expect(toggled).to_contain_text("w-flag")
    toggled.locator("summary").click()
    expect(toggled.locator("details")).to_contain_text("enabled")
    expect(toggled.locator("details")).to_contain_text("true")
    assert page_errors == []


def test_keys__api_key_once_copy_rotate_overlap_revoke__sdk_key__hidden_from_writers(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    api = console_stack.api
    console_stack.create_project("keys", ("staging",))
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    sign_in(page, console_stack.admin_key)
    page.goto("/ui/#/p/keys/e/staging/keys")
    dialog = page.get_by_role("dialog")

    page.get_by_role("button", name="New API key").click()
    dialog.get_by_label("Name", exact=True).fill("ci-writer")
    dialog.get_by_label("Role").select_option("writer")
    dialog.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("new-secret")
    first = secret.input_value()
    assert first, "no secret shown"
    dialog.get_by_role("button", name="Copy").click()
    expect(dialog.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("() => navigator.clipboard.readText()") == first
    dialog.get_by_role("button", name="Done").click()
    expect(page.get_by_test_id("new-secret")).to_have_count(0)
    assert first not in page.content(), "the secret is still in the page after the dialog closed"
    old_client = console_stack.api_as(first)
    _ok(old_client.get("/api/v1/projects/keys/flags"))

    row = page.locator("[data-testid^='api-key-row-'][data-key-name='ci-writer']")
    expect(row).to_have_count(1)
    old_id = int((row.get_attribute("data-testid") or "").rsplit("-", 1)[1])
    row.get_by_role("button", name="Rotate").click()
    dialog.get_by_role("button", name="Confirm").click()
    second = secret.input_value()
    assert second
    assert second != first
    dialog.get_by_role("button", name="Done").click()
    expect(page.get_by_test_id(f"api-key-row-{old_id}")).to_contain_text("rotating out")
    new_client = console_stack.api_as(second)
    _ok(new_client.get("/api/v1/projects/keys/flags"))
    _ok(old_client.get("/api/v1/projects/keys/flags"))  # the overlap: the old key still works

    keys = _ok(api.get("/api/v1/api-keys", params={"limit": 200}))["items"]
    new_id = next(k["id"] for k in keys if k["replaces_key_id"] == old_id)
    page.get_by_test_id(f"api-key-row-{new_id}").get_by_role("button", name="Revoke").click()
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.get_by_test_id(f"api-key-row-{new_id}")).to_have_count(0)
    assert new_client.get("/api/v1/projects/keys/flags").status_code == 401

    page.get_by_role("button", name="New SDK key").click()
    dialog.get_by_label("Name", exact=True).fill("checkout-svc")
    dialog.get_by_role("button", name="Create key").click()
    sdk_secret = secret.input_value()
    assert sdk_secret
    dialog.get_by_role("button", name="Done").click()
    sdk_row = page.locator("[data-testid^='sdk-key-row-'][data-key-name='checkout-svc']")
    expect(sdk_row).to_have_count(1)
    sdk_row.get_by_role("button", name="Rotate").click()
    dialog.get_by_role("button", name="Confirm").click()
    sdk_second = secret.input_value()
    assert sdk_second
    assert sdk_second != sdk_secret
    dialog.get_by_role("button", name="Done").click()
    expect(sdk_row.filter(has_text="rotating out")).to_have_count(1)
    expect(sdk_row.filter(has_text="active")).to_have_count(1)
    sdk_keys = _ok(api.get("/api/v1/projects/keys/environments/staging/sdk-keys"))["items"]
    assert len([k for k in sdk_keys if k["name"] == "checkout-svc" and k["replaces_key_id"]]) == 1

    page.get_by_role("button", name="Sign out").click()
    writer = console_stack.create_api_key("writer", project="keys")
    sign_in(page, writer)
    page.goto("/ui/#/p/keys/e/staging/flags")
    expect(page.get_by_role("link", name="Audit log")).to_be_visible()
    expect(page.get_by_role("link", name="Keys")).to_have_count(0)
    page.goto("/ui/#/p/keys/e/staging/keys")
    expect(page.get_by_text("Managing keys needs an admin key")).to_be_visible()
    expect(page.get_by_role("button", name="New API key")).to_have_count(0)
    assert page_errors == []


def test_operations__requeue_a_really_failed_job__usage_counts__propagation_by_data_plane_id(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    console_stack.create_project("ops", ("staging",))
    vip = {
        "id": "vip",
        "clauses": [{"attribute": "plan", "operator": "in", "values": ["vip"]}],
        "variant": "on",
    }
    _flag(
        console_stack,
        "ops",
        "fast-path",
        environments={"staging": {"enabled": True, "rules": [vip], "default_variant": "off"}},
    )
    sdk = console_stack.sdk_client("ops", "staging", report_interval=3600)
    # Ready may come with a snapshot taken before the new flag reached the data plane: wait for the flag
    # with explain, which is not counted, so the usage below stays exactly these five evaluations.
    wait_until(lambda: sdk.explain("fast-path", {"plan": "vip"}).result.variant == "on", 30)
    served = [sdk.boolean("fast-path", False, {"plan": k}) for k in ("vip", "vip", "vip", "ann", "bo")]
    assert served == [True, True, True, False, False]
    assert sdk.reporter is not None
    assert sdk.reporter.flush()

    # A sync job the stack's own syncer worker really runs and fails (an entity type it does not know).
    rds = redis.Redis.from_url(console_stack.redis_url)
    queue = Queue(_sync_queue(console_stack), connection=rds)
    job = queue.enqueue(
        "flagyard.syncer.jobs.sync_change",
        outbox_id=0,
        environment_id=1,
        entity_type="bogus",
        entity_key="x",
        version=1,
    )
    registry = FailedJobRegistry(queue=queue)
    wait_until(lambda: job.id in registry.get_job_ids(), 30)
    first_end = Job.fetch(job.id, connection=rds).ended_at

    sign_in(page, console_stack.admin_key)
    page.goto("/ui/#/p/ops/e/staging/operations")
    usage = page.get_by_test_id("usage-row-fast-path")
    expect(usage.locator("td.num")).to_have_text("5")
    # By variant, then by reason, each most frequent first.
    expect(usage.get_by_role("listitem")).to_have_text(["on 3", "off 2", "TARGETING_MATCH 3", "DEFAULT 2"])

    detail = page.get_by_test_id("propagation-detail")
    expect(detail).to_contain_text("in sync")
    expect(detail).to_contain_text(_data_plane_id(console_stack))

    job_row = page.get_by_test_id(f"job-row-{job.id}")
    expect(job_row).to_contain_text("unknown entity type")
    job_row.get_by_role("button", name="Requeue").click()
    expect(page.locator(".toast")).to_contain_text("Requeued 1 job")
    # The worker ran it again (and it failed again: the bogus type is still bogus).
    wait_until(lambda: (Job.fetch(job.id, connection=rds).ended_at or first_end) > first_end, 30)
    rds.close()
    assert page_errors == []


def _sync_queue(stack: ConsoleStack) -> str:
    """The stack's sync queue, read from the environment its syncer worker was started with (Linux)."""
    pid = stack.children.processes["syncer"].pid
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    [queue] = [v.split(b"=", 1)[1].decode() for v in environ if v.startswith(b"FLAGYARD_SYNC_QUEUE=")]
    return queue


def _data_plane_id(stack: ConsoleStack) -> str:
    """How the stack's data plane names itself (no instance id set: hostname-pid)."""
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())
    return f"{host[:52]}-{stack.children.processes['data_plane'].pid}"


def test_concurrent_edit__412_shows_their_change__reload_and_reapply_keeps_both(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    api = console_stack.api
    console_stack.create_project("race", ("staging",))
    variants = {"a": "A", "b": "B", "c": "C"}
    config = {"staging": {"default_variant": "a", "off_variant": "a"}}
    _flag(console_stack, "race", "theme", type="string", variants=variants, environments=config)
    sign_in(page, console_stack.admin_key)
    page.goto("/ui/#/p/race/e/staging/flags/theme")
    page.get_by_label("Default variant").select_option("b")

    path = "/api/v1/projects/race/flags/theme/environments/staging"
    etag = api.get(path).headers["etag"]
    _ok(api.patch(path, json={"off_variant": "c"}, headers={"If-Match": etag}))

    page.get_by_role("button", name="Save", exact=True).click()
    conflict = page.get_by_test_id("conflict")
    expect(conflict).to_contain_text("Someone else changed this flag")
    expect(conflict).to_contain_text("off_variant")
    conflict.get_by_role("button", name="Reload and re-apply").click()
    expect(conflict).to_be_hidden()
    final = _ok(api.get(path))
    assert (final["default_variant"], final["off_variant"]) == ("b", "c"), final
    assert page_errors == []


def test_keyboard_only__sign_in_and_toggle_with_visible_focus(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    console_stack.create_project("keys-only", ("staging",))
    _flag(
        console_stack,
        "keys-only",
        "dark-launch",
        environments={"staging": {"default_variant": "on", "off_variant": "off"}},
    )
    page.goto("/ui/#/p/keys-only/e/staging/flags/dark-launch")
    _tab_to(page, "input[type=password]")
    page.keyboard.type(console_stack.admin_key)
    _tab_to(page, "button[type=submit]")
    _assert_focus_visible(page)
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page).to_have_url(re.compile(r"#/p/keys-only/e/staging/flags/dark-launch$"))  # back where asked

    _tab_to(page, "[data-testid='toggle-staging']")
    _assert_focus_visible(page)
    page.keyboard.press("Space")
    expect(page.get_by_test_id("env-state-staging")).to_have_text("On")
    expect(page.get_by_test_id("toggle-staging")).to_be_focused()
    config = _ok(console_stack.api.get("/api/v1/projects/keys-only/flags/dark-launch/environments/staging"))
    assert config["enabled"] is True
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("env-state-staging")).to_have_text("Off")
    assert page_errors == []


@pytest.mark.parametrize("size", [(1280, 800), (1024, 700)])
def test_layout__no_horizontal_overflow_at_laptop_sizes__dark_flags_list(
    console_stack: ConsoleStack, page: Page, page_errors: list[str], size: tuple[int, int]
) -> None:
    project = f"wide-{size[0]}"
    console_stack.create_project(project, ("staging", "production"))
    long_tags = ["payments", "checkout", "experiment", "q3-launch"]
    for i in range(4):
        desc = "A fairly long description that a real team writes to explain why this flag exists. " * 3
        _flag(console_stack, project, f"flag-with-a-longer-key-{i}", description=desc, tags=long_tags)
    console_stack.create_sdk_key(project, "staging")
    width, height = size
    page.set_viewport_size({"width": width, "height": height})
    sign_in(page, console_stack.admin_key)
    base = f"/ui/#/p/{project}/e/staging"
    pages = {
        "flags": ("flags", "Flags"),
        "flag": ("flags/flag-with-a-longer-key-0", "flag-with-a-longer-key-0"),
        "keys": ("keys", "Keys"),
        "audit": ("audit", "Audit log"),
        "operations": ("operations", "Operations"),
    }
    for name, (route, heading) in pages.items():
        page.goto(f"{base}/{route}")
        expect(page.get_by_role("heading", name=heading, level=1)).to_be_visible()
        widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert widths[0] <= widths[1], (
            f"{name} at {width}×{height} overflows horizontally {widths}: {page.evaluate(_WIDEST)}"
        )
    if size == (1280, 800):
        page.emulate_media(color_scheme="dark")
        page.goto(f"{base}/flags")
        expect(_rows(page, "flag-row-")).to_have_count(4)
        background = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        channels = [int(c) for c in re.findall(r"\d+", background)[:3]]
        assert sum(channels) < 3 * 128, f"dark mode left the page light: {background}"
        shot(page, "flags-list-dark")
    assert page_errors == []
