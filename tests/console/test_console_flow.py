"""The console's core flow (issue 15), proved in headless Chromium against one real stack: an admin signs
in, creates a flag on the "new flag" page, writes rules in production and meets the server's own 422 at
the clause it concerns, fixes and saves it, turns the flag on in production through the confirmation
dialog, compares two versions in the history and rolls back, creates and revokes an SDK key, and signs
out. Each step is checked where the user sees it and where it lands: the REST API, Redis, and a
local-mode SDK client that streams the environment from the data plane.

Beside it: a reader key sees every page but no control that changes anything, and markup planted in a
flag's name, description and tag and in a segment is shown as text, never run.

The flow's screenshots (``ui-screenshots/``) include the two the README shows: ``flags-list`` (copied to
``docs/images/console-flags.png``) and ``flag-rule-error`` (``docs/images/console-rules.png``)."""

from __future__ import annotations

import re
from typing import Any

import httpx
import redis
from browser_helpers import VIEWPORT, png_size, shot, sign_in
from console_stack import ConsoleStack
from playwright.sync_api import Locator, Page, expect
from polling_helpers import wait_until

from flagyard.contracts.redis import hash_sdk_key, sdkkeys_key
from flagyard.sdk import FlagyardClient

PROJECT = "demo"
ENVIRONMENTS = ("development", "staging", "production")
FLAG = "onboarding-flow"
INVALID_PATTERN = r"^(?!test\+).*@acme\.com$"
"""Valid for the browser's RegExp, refused by RE2 (no lookahead): only the server can say it is wrong."""
FIXED_PATTERN = r"^[^+]*@acme\.com$"
ACME = {"targeting_key": "ann", "email": "ann@acme.com", "country": "US"}
DUTCH = {"targeting_key": "bram", "email": "bram@example.nl", "country": "NL"}
OTHER = {"targeting_key": "cy", "email": "cy@example.com", "country": "US"}
XSS_SCRIPT = "<script>window.__pwned=1</script>"
XSS_IMG = '<img src=x onerror="window.__pwned=1">'


_SCROLL_TO_RULES = """() => {
  const top = document.querySelector(".fy-re-rules").getBoundingClientRect().top + window.scrollY;
  const error = document.querySelector(".fy-re-error").getBoundingClientRect().bottom + window.scrollY;
  const header = document.querySelector(".topbar").getBoundingClientRect().height;
  window.scrollTo(0, Math.max(top - header - 12, error + 24 - window.innerHeight));
}"""


_COLUMN_WIDTHS = (
    "(ths) => ths.map((th) => `${th.textContent}: ${Math.round(th.getBoundingClientRect().width)}`)"
)


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
    )
    return response.json() if response.content else None


def _on(*envs: str, default: str, off: str) -> dict[str, dict[str, Any]]:
    return {env: {"enabled": True, "default_variant": default, "off_variant": off} for env in envs}


def _seed_demo(stack: ConsoleStack) -> None:
    """A project as a team has it after a few weeks: flags of every type, tagged, on in some
    environments, and a segment."""
    stack.create_project(PROJECT, ENVIRONMENTS, name="Demo shop")
    flags: list[dict[str, Any]] = [
        {
            "key": "checkout-v2",
            "name": "Checkout v2",
            "description": "One-page checkout with saved cards; replaces the three-step flow.",
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "tags": ["checkout", "payments"],
            "environments": _on("staging", "production", default="on", off="off"),
        },
        {
            "key": "search-ranking",
            "name": "Search ranking",
            "description": "Which ranker orders search results.",
            "type": "string",
            "variants": {"bm25": "bm25", "semantic": "semantic"},
            "tags": ["search", "experiment"],
            "environments": _on("development", "staging", default="semantic", off="bm25"),
        },
        {
            "key": "max-cart-items",
            "name": "Max cart items",
            "description": "How many items a cart may hold (raised for the holiday sale).",
            "type": "integer",
            "variants": {"standard": 50, "holiday": 200},
            "tags": ["checkout"],
            "environments": _on("production", default="standard", off="standard"),
        },
        {
            "key": "dark-mode",
            "name": "Dark mode",
            "description": "Follow the system's colour scheme.",
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "tags": ["ui"],
            "environments": _on(*ENVIRONMENTS, default="on", off="off"),
        },
        {
            "key": "recommendation-weight",
            "name": "Recommendation weight",
            "description": "Share of personalised items in the home page carousel.",
            "type": "float",
            "variants": {"low": 0.2, "high": 0.6},
            "tags": ["search", "experiment"],
            "environments": _on("development", default="high", off="low"),
        },
        {
            "key": "spring-sale-banner",
            "name": "Spring sale banner",
            "description": "The banner of the spring campaign; off since the campaign ended.",
            "type": "object",
            "variants": {"none": {}, "sale": {"text": "Spring sale: 20% off", "color": "green"}},
            "tags": ["marketing"],
        },
    ]
    for flag in flags:
        _ok(stack.api.post(f"/api/v1/projects/{PROJECT}/flags", json=flag), 201)
    segment = {
        "key": "beta-testers",
        "name": "Beta testers",
        "description": "Staff and customers who opted in to early features.",
        "included": ["ann", "bram", "cy"],
    }
    _ok(stack.api.post(f"/api/v1/projects/{PROJECT}/segments", json=segment), 201)


def _evaluate_like_an_app(sdk: FlagyardClient) -> None:
    """Evaluations a storefront makes, reported at once, so the flags list shows real usage."""
    for i in range(240):
        ctx = {"targeting_key": f"user-{i}", "country": "NL" if i % 3 else "US"}
        sdk.boolean("checkout-v2", False, ctx)
        sdk.boolean("dark-mode", False, ctx)
        if i % 2:
            sdk.integer("max-cart-items", 50, ctx)
    assert sdk.reporter is not None
    assert sdk.reporter.flush(), "the evaluation report was not accepted"


def _config(stack: ConsoleStack, env: str) -> dict[str, Any]:
    return dict(_ok(stack.api.get(f"/api/v1/projects/{PROJECT}/flags/{FLAG}/environments/{env}")))


def _nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def _settled(page: Page) -> None:
    """Before a screenshot people will read: the last change has reached the data plane and the
    notices of earlier steps (they leave after 5 s) are gone."""
    expect(page.get_by_test_id("propagation")).to_contain_text("Live", timeout=20_000)
    expect(page.locator(".toast")).to_have_count(0)


def _rule(page: Page, index: int) -> Locator:
    return page.locator("fieldset.fy-re-rule").nth(index)


def test_core_flow__create__422_at_the_clause__fix__toggle__sdk__diff__rollback__sdk_key__sign_out(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    stack = console_stack
    _seed_demo(stack)
    sdk = stack.sdk_client(PROJECT, "production", report_interval=3600)
    _evaluate_like_an_app(sdk)

    # --- sign in, the flags list, the "new flag" page ------------------------------------------------
    sign_in(page, stack.admin_key)
    page.goto(f"/ui/#/p/{PROJECT}/e/production/flags")
    expect(page.locator("[data-testid^='flag-row-']")).to_have_count(6)
    page.get_by_role("button", name="New flag").click()
    expect(page).to_have_url(re.compile(rf"#/p/{PROJECT}/e/production/flags/new$"))
    page.get_by_label("Key", exact=True).fill(FLAG)
    page.get_by_label("Name", exact=True).fill("Onboarding flow")
    page.get_by_label("Description", exact=True).fill("Which first-run experience new accounts get.")
    page.get_by_label("Tags", exact=True).fill("growth, experiment")
    page.get_by_label("Type", exact=True).select_option("string")
    for i, name in ((1, "classic"), (2, "guided")):
        page.get_by_label(f"Variant {i} name").fill(name)
        page.get_by_label(f"Variant {i} value").fill(name)
    page.get_by_role("button", name="+ Add variant").click()
    page.get_by_label("Variant 3 name").fill("video")
    page.get_by_label("Variant 3 value").fill("video-tour")
    page.get_by_role("button", name="Create flag").click()
    expect(page).to_have_url(re.compile(rf"#/p/{PROJECT}/e/production/flags/{FLAG}$"))
    expect(page.get_by_test_id("flag-name")).to_have_text("Onboarding flow")
    created = _ok(stack.api.get(f"/api/v1/projects/{PROJECT}/flags/{FLAG}"))
    assert (created["type"], created["version"], created["tags"]) == ("string", 1, ["growth", "experiment"])
    assert created["variants"] == {"classic": "classic", "guided": "guided", "video": "video-tour"}
    for env in ENVIRONMENTS:
        expect(page.get_by_test_id(f"env-state-{env}")).to_have_text("Off")

    # --- rules in production: the server's 422 at the clause -----------------------------------------
    page.get_by_label("When off, serve").select_option("classic")
    page.get_by_role("button", name="+ Add rule").click()
    dutch = _rule(page, 0)
    dutch.get_by_label("Description").fill("Dutch and Belgian accounts get the video tour")
    dutch.get_by_label("Clause 1 attribute").fill("country")
    dutch.get_by_label("Value 1", exact=True).fill("NL")
    dutch.get_by_role("button", name="+ value").click()
    dutch.get_by_label("Value 2", exact=True).fill("BE")
    dutch.get_by_label("Rule 1 variant").select_option("video")
    page.get_by_role("button", name="+ Add rule").click()
    staff = _rule(page, 1)
    staff.get_by_label("Description").fill("Acme staff try the guided tour first")
    staff.get_by_label("Clause 1 attribute").fill("email")
    staff.get_by_label("Clause 1 operator").select_option("matches")
    pattern = staff.get_by_label("Value 1", exact=True)
    pattern.fill(INVALID_PATTERN)
    staff.get_by_label("Rule 2 variant").select_option("guided")
    page.get_by_label("Default variant").select_option("classic")
    expect(staff.locator(".fy-re-hint:visible")).to_have_count(0)  # the browser sees nothing wrong
    page.get_by_role("button", name="Save", exact=True).click()

    error = staff.locator(".fy-re-error")
    expect(error).to_contain_text("lookahead is not supported")
    # At the clause's value: the message follows the value's row, which the pattern input is marked by.
    expect(staff.locator(".fy-re-value", has=page.locator(".fy-re-error"))).to_have_count(1)
    expect(pattern).to_have_attribute("aria-invalid", "true")
    described = pattern.get_attribute("aria-describedby") or ""
    assert error.get_attribute("id") in described.split(), "the input is not described by its error"
    expect(dutch.locator(".fy-re-error")).to_have_count(0)
    assert _config(stack, "production")["rules"] == [], "a refused configuration was saved"
    _settled(page)
    # Both rules and the message in view: the rules' heading at the top, unless the message would not fit.
    page.evaluate(_SCROLL_TO_RULES)
    shot(page, "flag-rule-error")

    pattern.fill(FIXED_PATTERN)
    page.get_by_label("Comment", exact=True).fill("video tour for NL/BE, guided tour for Acme staff")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".toast").filter(has_text="is now v2")).to_be_visible()
    expect(staff.locator(".fy-re-error")).to_have_count(0)
    config = _config(stack, "production")
    assert config["version"] == 2
    assert (config["enabled"], config["off_variant"], config["default_variant"]) == (
        False,
        "classic",
        "classic",
    )
    assert [r["variant"] for r in config["rules"]] == ["video", "guided"]
    assert config["rules"][0]["clauses"][0]["values"] == ["NL", "BE"]
    assert config["rules"][1]["clauses"][0] == {
        "attribute": "email",
        "operator": "matches",
        "values": [FIXED_PATTERN],
        "negate": False,
    }
    wait_until(lambda: sdk.string(FLAG, "code-default", ACME) == "classic", 20)  # off: the off variant

    # --- on in production, behind the confirmation ----------------------------------------------------
    page.get_by_test_id("toggle-production").click()
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text(f"Turn on {FLAG} in Production?")
    expect(dialog).to_contain_text("looks like a production environment")
    dialog.get_by_label("Comment (optional)").fill("launch to everyone")
    dialog.get_by_role("button", name="Confirm").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_test_id("env-state-production")).to_have_text("On")
    expect(page.get_by_test_id("env-state-staging")).to_have_text("Off")
    wait_until(lambda: sdk.string(FLAG, "code-default", ACME) == "guided", 20)
    assert sdk.string(FLAG, "code-default", DUTCH) == "video-tour"
    assert sdk.string(FLAG, "code-default", OTHER) == "classic"
    assert _config(stack, "production")["enabled"] is True

    # --- history: the readable diff of v2 → v3, then roll back to v2 ---------------------------------
    page.get_by_role("link", name="History").click()
    expect(page.get_by_role("heading", name=f"History of {FLAG}")).to_be_visible()
    expect(page.locator("[data-testid^='version-row-']")).to_have_count(3)
    page.get_by_label("Select version 2").check()
    page.get_by_label("Select version 3").check()
    page.get_by_role("button", name="Compare").click()
    diff = page.get_by_test_id("diff")
    expect(diff).to_contain_text("Changes from v2 to v3")
    change = diff.locator(".fy-diff-change")
    expect(change).to_have_count(1)
    expect(change.locator(".fy-diff-op")).to_have_text("changed")
    expect(change.locator(".fy-diff-crumbs")).to_have_text(re.compile(r"production\s*›\s*enabled$"))
    expect(change.locator(".fy-diff-old")).to_contain_text("false")
    expect(change.locator(".fy-diff-new")).to_contain_text("true")
    shot(page, "flag-history-diff")

    page.get_by_role("button", name="Rollback to version 2").click()
    expect(dialog).to_contain_text(f"Roll back flag {FLAG} to version 2?")
    dialog.get_by_role("button", name="Confirm").click()
    expect(page.get_by_role("heading", name=f"History of {FLAG}")).to_be_visible()
    expect(page.locator("[data-testid^='version-row-']")).to_have_count(4)
    expect(page.get_by_test_id("version-row-4")).to_contain_text("current")
    rolled = _config(stack, "production")
    assert (rolled["version"], rolled["enabled"]) == (4, False)
    wait_until(lambda: sdk.string(FLAG, "code-default", ACME) == "classic", 20)

    # --- the flags list the README shows --------------------------------------------------------------
    _nav(page, "Flags")
    rows = page.locator("[data-testid^='flag-row-']")
    expect(rows).to_have_count(7)
    expect(page.get_by_test_id(f"flag-row-{FLAG}").get_by_test_id("env-state-production")).to_have_text("Off")
    expect(page.get_by_test_id("flag-row-dark-mode").locator("td.num")).to_have_text("240")
    expect(page.get_by_test_id("flag-row-checkout-v2").get_by_test_id("env-state-production")).to_have_text(
        "On"
    )
    expect(page.get_by_test_id("stale-spring-sale-banner")).to_be_visible()
    # Three environments, usage and the stale badge fit a 1280-pixel window: no sideways scrolling.
    widths = page.locator(".results .table-wrap").evaluate("(el) => [el.scrollWidth, el.clientWidth]")
    columns = page.locator(".results thead th").evaluate_all(_COLUMN_WIDTHS)
    assert widths[0] <= widths[1], f"the flags table scrolls sideways at 1280 px: {widths}, {columns}"
    _settled(page)
    path = shot(page, "flags-list")
    assert png_size(path.read_bytes()) == (VIEWPORT["width"], VIEWPORT["height"])

    # --- an SDK key: shown once, then revoked ---------------------------------------------------------
    _nav(page, "Keys")
    page.get_by_role("button", name="New SDK key").click()
    dialog.get_by_label("Name", exact=True).fill("storefront-web")
    dialog.get_by_role("button", name="Create key").click()
    secret = page.get_by_test_id("new-secret")
    sdk_secret = secret.input_value()
    assert sdk_secret, "no secret shown"
    dialog.get_by_role("button", name="Done").click()
    expect(secret).to_have_count(0)
    assert sdk_secret not in page.content(), "the secret is still in the page after the dialog closed"
    row = page.locator("[data-testid^='sdk-key-row-'][data-key-name='storefront-web']")
    expect(row).to_contain_text("active")
    rds = redis.Redis.from_url(stack.redis_url)
    published = (sdkkeys_key(stack.prefix), hash_sdk_key(sdk_secret))
    try:
        wait_until(lambda: rds.hexists(*published), 20)  # the data planes accept it
        shot(page, "keys")
        row.get_by_role("button", name="Revoke storefront-web").click()
        expect(dialog).to_contain_text("stops working immediately")
        dialog.get_by_role("button", name="Confirm").click()
        expect(row).to_have_count(0)  # revoked keys are hidden by default
        page.get_by_label(re.compile("Show revoked and expired keys")).check()
        expect(row).to_contain_text("revoked")
        keys = _ok(stack.api.get(f"/api/v1/projects/{PROJECT}/environments/production/sdk-keys"))["items"]
        [listed] = [k for k in keys if k["name"] == "storefront-web"]
        assert listed["revoked_at"] is not None
        wait_until(lambda: not rds.hexists(*published), 20)  # and the data planes refuse it
    finally:
        rds.close()

    # --- the other pages, as they look after the flow -------------------------------------------------
    _nav(page, "Segments")
    expect(page.get_by_test_id("segment-row-beta-testers")).to_contain_text("Beta testers")
    shot(page, "segments")
    _nav(page, "Audit log")
    audit = page.locator("[data-testid^='audit-row-']")
    expect(audit.filter(has_text=FLAG).first).to_be_visible()
    shot(page, "audit")
    _nav(page, "Operations")
    expect(page.get_by_test_id("usage-row-dark-mode").locator("td.num")).to_have_text("240")
    shot(page, "operations")

    # --- sign out: the cookie is gone, and so is the session on the server -------------------------------
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    assert cookies, "signed in without a session cookie"
    with httpx.Client(base_url=stack.base_url, cookies=cookies, timeout=10) as old:
        _ok(old.get("/api/v1/sessions/current"))
        page.get_by_role("button", name="Sign out").click()
        expect(page.get_by_label("API key")).to_be_visible()
        assert page.context.cookies() == [], "the session cookie outlived sign-out"
        page.goto("/ui/")
        expect(page.get_by_role("button", name="Sign in")).to_be_visible()
        expect(page.get_by_role("button", name="Sign out")).to_have_count(0)
        assert old.get("/api/v1/sessions/current").status_code == 401
        assert old.get(f"/api/v1/projects/{PROJECT}/flags").status_code == 401
    assert page_errors == []


def test_reader__sees_every_page_but_no_control_that_changes_anything(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    stack = console_stack
    stack.create_project("readonly", ("staging", "production"))
    rule = {
        "id": "nl",
        "clauses": [{"attribute": "country", "operator": "in", "values": ["NL"]}],
        "variant": "on",
    }
    flag = {
        "key": "audit-banner",
        "name": "Audit banner",
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "environments": {"production": {"enabled": True, "rules": [rule], "default_variant": "off"}},
    }
    _ok(stack.api.post("/api/v1/projects/readonly/flags", json=flag), 201)
    other = {"key": "new-nav", "name": "New nav", "type": "boolean", "variants": {"on": True, "off": False}}
    _ok(stack.api.post("/api/v1/projects/readonly/flags", json=other), 201)  # a prerequisite to offer
    _ok(stack.api.post("/api/v1/projects/readonly/segments", json={"key": "staff", "name": "Staff"}), 201)
    reader = stack.create_api_key("reader", name="read-only-dashboard")
    sign_in(page, reader)
    expect(page.get_by_test_id("role-badge")).to_have_text("reader")
    base = "/ui/#/p/readonly/e/production"

    page.goto(f"{base}/flags")
    expect(page.get_by_test_id("flag-row-audit-banner")).to_be_visible()
    expect(page.get_by_role("button", name="New flag")).to_have_count(0)
    expect(page.locator("main button")).to_have_count(0)
    expect(page.get_by_role("link", name="Create flag")).to_have_count(0)
    shot(page, "reader-flags-list")

    page.goto(f"{base}/flags/audit-banner")
    expect(page.get_by_test_id("env-state-production")).to_have_text("On")
    expect(page.get_by_text("Read-only: your role (reader) cannot change targeting.")).to_be_visible()
    expect(page.locator("[data-testid^='toggle-']")).to_have_count(0)
    for name in (
        "Turn on",
        "Turn off",
        "Save",
        "Edit details",
        "Delete flag",
        "+ Add rule",
        "+ Add prerequisite",
    ):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    # The only control left is Explain, which changes nothing (the API lets a reader explain).
    expect(page.locator("main button")).to_have_text(["Explain"])
    editor = page.locator(".fy-re")
    expect(editor.locator("input, select, textarea")).not_to_have_count(0)
    expect(editor.locator(":is(input, select, textarea):enabled")).to_have_count(0)
    expect(editor.get_by_label("Rule 1 variant")).to_be_disabled()
    expect(editor.get_by_label("Clause 1 attribute")).to_be_disabled()
    expect(editor.get_by_label("Default variant")).to_be_disabled()
    shot(page, "reader-flag")

    page.get_by_role("link", name="History").click()
    expect(page.locator("[data-testid^='version-row-']")).to_have_count(1)
    expect(page.get_by_role("button", name=re.compile("^Rollback"))).to_have_count(0)

    page.goto(f"{base}/flags/new")
    expect(page.get_by_text("Your role (reader) cannot create flags.")).to_be_visible()
    expect(page.get_by_role("button", name="Create flag")).to_have_count(0)

    page.goto(f"{base}/segments")
    expect(page.get_by_test_id("segment-row-staff")).to_be_visible()
    expect(page.get_by_role("button", name="New segment")).to_have_count(0)
    page.goto(f"{base}/segments/staff")
    expect(page.get_by_text("Read-only: your role (reader) cannot change segments.")).to_be_visible()
    expect(page.get_by_label("Included keys")).not_to_be_editable()
    for name in ("Save", "Delete segment"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)

    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Keys")).to_have_count(0)
    page.goto(f"{base}/keys")
    expect(page.get_by_text("Managing keys needs an admin key")).to_be_visible()
    expect(page.get_by_role("button", name="New SDK key")).to_have_count(0)
    page.goto(f"{base}/operations")
    expect(page.get_by_role("heading", name="Operations", level=1)).to_be_visible()
    expect(page.get_by_role("button", name="Requeue")).to_have_count(0)
    assert page_errors == []


def _assert_not_run(page: Page) -> None:
    assert page.evaluate("() => typeof window.__pwned") == "undefined", "planted markup ran"
    assert page.locator("img[src='x']").count() == 0, "planted markup became an element"


def test_markup_in_names_descriptions_and_tags__is_shown_as_text_and_never_runs(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    stack = console_stack
    stack.create_project("xss", ("staging",))
    flag = {
        "key": "planted",
        "name": XSS_IMG,
        "description": f"Before {XSS_SCRIPT} after",
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "tags": [XSS_IMG, "safe-tag"],
    }
    _ok(stack.api.post("/api/v1/projects/xss/flags", json=flag), 201)
    segment = {"key": "planted-seg", "name": XSS_SCRIPT, "description": f"Segment {XSS_IMG} text"}
    _ok(stack.api.post("/api/v1/projects/xss/segments", json=segment), 201)
    path = "/api/v1/projects/xss/flags/planted"
    _ok(stack.api.patch(path, json={"description": XSS_IMG}, headers={"If-Match": '"1"'}))

    sign_in(page, stack.admin_key)
    page.goto("/ui/#/p/xss/e/staging/flags")
    row = page.get_by_test_id("flag-row-planted")
    expect(row).to_contain_text(XSS_IMG)  # the name and the new description
    expect(row.locator(".badge", has_text=XSS_IMG)).to_have_text(XSS_IMG)
    _assert_not_run(page)

    page.goto("/ui/#/p/xss/e/staging/flags/planted")
    expect(page.get_by_test_id("flag-name")).to_have_text(XSS_IMG)
    expect(page.get_by_test_id("flag-description")).to_have_text(XSS_IMG)
    expect(page.get_by_role("heading", level=1)).to_contain_text("planted")
    _assert_not_run(page)

    page.get_by_role("link", name="History").click()
    page.get_by_label("Select version 1").check()
    page.get_by_label("Select version 2").check()
    page.get_by_role("button", name="Compare").click()
    diff = page.get_by_test_id("diff")
    expect(diff.locator(".fy-diff-old")).to_contain_text(XSS_SCRIPT)
    expect(diff.locator(".fy-diff-new")).to_contain_text(XSS_IMG.replace('"', '\\"'))  # a JSON string
    _assert_not_run(page)

    page.goto("/ui/#/p/xss/e/staging/segments")
    seg_row = page.get_by_test_id("segment-row-planted-seg")
    expect(seg_row).to_contain_text(XSS_SCRIPT)
    expect(seg_row).to_contain_text(f"Segment {XSS_IMG} text")
    page.goto("/ui/#/p/xss/e/staging/segments/planted-seg")
    expect(page.get_by_label("Name", exact=True)).to_have_value(XSS_SCRIPT)
    expect(page.get_by_label("Description", exact=True)).to_have_value(f"Segment {XSS_IMG} text")
    _assert_not_run(page)

    page.goto("/ui/#/p/xss/e/staging/audit")
    entry = page.locator("[data-testid^='audit-row-']").filter(has_text="planted-seg")
    entry.locator("summary").click()
    expect(entry.locator("details")).to_contain_text("Segment <img src=x")
    _assert_not_run(page)

    page.goto("/ui/#/p/xss/e/staging/flags/planted")  # the rule editor lists segments by name
    page.get_by_role("button", name="+ Add rule").click()
    page.get_by_label("Clause 1 operator").select_option("segment_match")
    expect(page.locator(".fy-re-segment")).to_have_text(f"planted-seg — {XSS_SCRIPT}")
    _assert_not_run(page)
    assert page_errors == []
