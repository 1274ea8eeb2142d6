"""Explain and impact preview on the console's flag page (issue 17, the admin's view), in headless Chromium
against one real stack.

- Explain: an admin explains contexts of a flag with a prerequisite, two rules (one on a segment) and a
  default split, and reads the served variant, the result line and the trace (prerequisite met with its own
  trace, each rule and clause with the value seen, the segment's decision, the split's bucket of 10000 and
  the owning variant); the environment picker and the caller's default reach the request; bad JSON is an
  inline error naming the field and sends nothing; an archived flag explains as FLAG_NOT_FOUND with no trace
  and nothing breaks.
- Preview: an unsaved edit of the rule editor (a rule's variant) previewed over contexts pasted into the
  textarea says how many would change and shows the transition; nothing is saved until Save, which still
  saves; with no contexts and no stored sample the server's note is shown; bad contexts JSON sends nothing.
- A context value with markup is shown as text in the trace and never runs.
- A reader explains too (it only reads) and gets no Preview impact (the editor is read-only).
"""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from browser_helpers import shot, sign_in
from console_stack import ConsoleStack
from playwright.sync_api import Page, Request, expect

PROJECT = "insight"
XSS_SCRIPT = "<script>window.__pwned=1</script>"
XSS_IMG = '<img src=x onerror="window.__pwned=1">'
EUROPE = {
    "id": "europe",
    "clauses": [{"attribute": "country", "operator": "in", "values": ["de", "fr"]}],
    "variant": "b",
}
BETA = {"id": "beta", "clauses": [{"operator": "segment_match", "values": ["beta"]}], "variant": "c"}
HALVES = {"variations": [{"variant": "a", "weight": 5000}, {"variant": "b", "weight": 5000}]}
VARIANTS = {"a": "A", "b": "B", "c": "C"}


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url}: {response.status_code} {response.text}"
    )
    return response.json() if response.content else None


@pytest.fixture(scope="module")
def world(console_stack: ConsoleStack) -> str:
    """The module's world, made once: ``checkout`` in production has a prerequisite (``auth`` serving
    ``on``), a rule on ``country``, a rule on the segment ``beta`` and a 50/50 default split; ``banner`` in
    staging has the rule on ``country`` and default ``a``; ``old`` is archived. Returns a reader key."""
    stack = console_stack
    api = stack.api
    stack.create_project(PROJECT, ("staging", "production"))
    flags = f"/api/v1/projects/{PROJECT}/flags"
    _ok(
        api.post(
            f"/api/v1/projects/{PROJECT}/segments",
            json={"key": "beta", "name": "Beta", "included": ["u-beta"]},
        ),
        201,
    )
    auth = {"production": {"enabled": True, "default_variant": "on", "off_variant": "off"}}
    boolean = {"type": "boolean", "variants": {"on": True, "off": False}}
    _ok(api.post(flags, json={"key": "auth", "name": "Auth", **boolean, "environments": auth}), 201)
    checkout = {
        "enabled": True,
        "off_variant": "a",
        "prerequisites": [{"flag": "auth", "variant": "on"}],
        "rules": [EUROPE, BETA],
        "default_split": HALVES,
    }
    body = {"key": "checkout", "name": "Checkout", "type": "string", "variants": VARIANTS}
    _ok(api.post(flags, json={**body, "environments": {"production": checkout}}), 201)
    banner = {"enabled": True, "off_variant": "a", "rules": [EUROPE], "default_variant": "a"}
    body = {"key": "banner", "name": "Banner", "type": "string", "variants": VARIANTS}
    _ok(api.post(flags, json={**body, "environments": {"staging": banner}}), 201)
    _ok(api.post(flags, json={"key": "old", "name": "Old", **boolean}), 201)
    _ok(api.post(f"{flags}/old/archive", json={}, headers={"If-Match": '"1"'}))
    return stack.create_api_key("reader", project=PROJECT)


def _explain(page: Page, context: str) -> None:
    page.get_by_label("Context (JSON)").fill(context)
    page.get_by_test_id("explain-run").click()


def _explain_api(stack: ConsoleStack, context: dict[str, Any]) -> Any:
    path = f"/api/v1/projects/{PROJECT}/flags/checkout/environments/production/explain"
    return _ok(stack.api.post(path, json={"context": context}))


def _posts(page: Page, ending: str) -> list[Request]:
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.method == "POST" and r.url.endswith(ending) else None)
    return sent


def _assert_not_run(page: Page) -> None:
    assert page.evaluate("() => typeof window.__pwned") == "undefined", "planted markup ran"
    assert page.locator("img[src='x']").count() == 0, "planted markup became an element"


@pytest.mark.usefixtures("world")
def test_explain__result_line_and_trace__env_and_default__bad_json_sends_nothing__archived_no_trace(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    sign_in(page, console_stack.admin_key)
    page.goto(f"/ui/#/p/{PROJECT}/e/production/flags/checkout")
    panel = page.get_by_test_id("explain-panel")
    expect(panel.get_by_label("Context (JSON)")).to_have_value('{"targeting_key": "user-1"}')
    expect(panel.get_by_label("Environment")).to_have_value("production")
    sent = _posts(page, "/explain")

    # --- a rule on an attribute, behind a prerequisite ---------------------------------------------
    _explain(page, '{"targeting_key": "u1", "country": "de"}')
    output = page.get_by_test_id("explain-output")
    expect(output.get_by_test_id("explain-variant")).to_have_text("b")
    expect(output.get_by_test_id("explain-value")).to_have_text('"B"')
    expect(output.get_by_test_id("explain-result")).to_contain_text(
        "reason TARGETING_MATCH, rule europe, version 1"
    )
    expect(output.get_by_test_id("explain-error")).to_have_count(0)
    prereq = output.get_by_test_id("trace-prerequisite-auth")
    expect(prereq).to_contain_text("auth must serve on: evaluated — met")
    expect(prereq).to_contain_text("auth (version 1, on): served by fallthrough → on (STATIC)")
    rule = output.get_by_test_id("trace-rule-0")
    expect(rule).to_contain_text("Rule 0 europe: matched")
    expect(rule.get_by_test_id("trace-clause")).to_have_text(
        'country in ["de","fr"] — value seen "de" — matched'
    )
    expect(output.get_by_test_id("trace-rule-1")).to_have_count(0)  # not evaluated after the match
    assert json.loads(sent[-1].post_data or "") == {"context": {"targeting_key": "u1", "country": "de"}}

    # --- the segment rule --------------------------------------------------------------------------
    _explain(page, '{"targeting_key": "u-beta", "country": "us"}')
    expect(output.get_by_test_id("explain-variant")).to_have_text("c")
    expect(output.get_by_test_id("trace-rule-0")).to_contain_text("Rule 0 europe: no match")
    expect(output.get_by_test_id("trace-rule-0")).to_contain_text('value seen "us" — no')
    beta = output.get_by_test_id("trace-rule-1")
    expect(beta).to_contain_text("Rule 1 beta: matched")
    expect(beta).to_contain_text('segment_match ["beta"] — matched')
    expect(beta.get_by_test_id("trace-segment")).to_have_text(
        "Segment beta: the targeting key is listed as included — in"
    )

    # --- the default split: bucket of total, the owning variant, the ranges ------------------------
    _explain(page, '{"targeting_key": "u-split", "country": "us"}')
    expected = _explain_api(console_stack, {"targeting_key": "u-split", "country": "us"})
    split = expected["trace"]["split"]
    expect(output.get_by_test_id("explain-variant")).to_have_text(expected["result"]["variant"])
    expect(output.get_by_test_id("explain-result")).to_contain_text("reason SPLIT")
    trace_split = output.get_by_test_id("trace-split")
    expect(trace_split).to_contain_text(
        f'Split by targeting_key = "u-split": bucket {split["bucket"]} of 10000 → {split["variant"]}'
    )
    expect(trace_split.locator("li")).to_have_text(
        [re.compile(r"^a \[0, 5000\)"), re.compile(r"^b \[5000, 10000\)")]
    )
    expect(trace_split.locator("li.owner")).to_contain_text(f"{split['variant']} [")
    panel.evaluate("(el) => el.scrollIntoView()")  # the panel and its answer in the screenshot
    shot(page, "flag-explain")

    # --- bad JSON: an inline error naming the field, no request --------------------------------------
    before = len(sent)
    _explain(page, '{"targeting_key": ')
    expect(page.get_by_test_id("explain-panel").locator(".field-error:visible")).to_contain_text(
        "Context: not valid JSON"
    )
    expect(panel.get_by_label("Context (JSON)")).to_have_attribute("aria-invalid", "true")
    _explain(page, '["u1"]')
    expect(panel.locator(".field-error:visible")).to_have_text("Context: expected a JSON object, not array")
    panel.get_by_label("Caller's default (JSON, optional)").fill("nope")
    _explain(page, '{"targeting_key": "u1"}')
    expect(panel.locator(".field-error:visible")).to_contain_text("Caller's default: not valid JSON")
    assert len(sent) == before, "bad JSON was sent"

    # --- another environment, with the caller's default: staging has no configuration (off) ----------
    panel.get_by_label("Environment").select_option("staging")
    panel.get_by_label("Caller's default (JSON, optional)").fill('"fallback"')
    _explain(page, '{"targeting_key": "u1"}')
    expect(output).to_contain_text("checkout in staging, for this context:")
    expect(output.get_by_test_id("explain-reason")).to_have_text("DISABLED")
    expect(output.get_by_test_id("explain-value")).to_have_text('"fallback"')
    assert sent[-1].url.endswith("/flags/checkout/environments/staging/explain")
    assert json.loads(sent[-1].post_data or "")["default"] == "fallback"

    # --- an archived flag: what SDKs get, no trace, nothing breaks -----------------------------------
    page.goto(f"/ui/#/p/{PROJECT}/e/production/flags/old")
    expect(page.get_by_test_id("archived-banner")).to_be_visible()
    _explain(page, '{"targeting_key": "u1"}')
    expect(output.get_by_test_id("explain-reason")).to_have_text("ERROR")
    expect(output.get_by_test_id("explain-error")).to_contain_text("Error FLAG_NOT_FOUND")
    expect(output.get_by_test_id("explain-no-trace")).to_be_visible()
    expect(page.get_by_test_id("preview-impact")).to_have_count(0)  # archived: nothing to edit
    assert page_errors == []


@pytest.mark.usefixtures("world")
def test_preview__unsaved_rule_edit_over_pasted_contexts__counts_and_transition__save_still_saves(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    config_path = f"/api/v1/projects/{PROJECT}/flags/banner/environments/staging"
    version = _ok(console_stack.api.get(config_path))["version"]
    sign_in(page, console_stack.admin_key)
    page.goto(f"/ui/#/p/{PROJECT}/e/staging/flags/banner")
    sent = _posts(page, "/preview")

    page.get_by_label("Rule 1 variant").select_option("c")  # europe: b → c, not saved
    page.get_by_text("Preview over contexts of your own").click()
    contexts = [
        {"targeting_key": "u1", "country": "de"},
        {"targeting_key": "u2", "country": "fr"},
        {"targeting_key": "u3", "country": "de"},
        {"targeting_key": "u4", "country": "us"},
        {"targeting_key": "u5"},
    ]
    page.get_by_label("Contexts to preview over (JSON array, optional)").fill(json.dumps(contexts))
    page.get_by_test_id("preview-impact").click()
    output = page.get_by_test_id("preview-output")
    expect(output.get_by_test_id("preview-summary")).to_contain_text("3 of 5 contexts would change")
    expect(output.get_by_test_id("preview-summary")).to_contain_text(
        "(2 would not), over the contexts you supplied"
    )
    expect(output.get_by_test_id("preview-transitions").locator("tbody tr")).to_have_count(1)
    expect(output.get_by_test_id("transition-b-c")).to_have_text("bc3")
    expect(output.get_by_test_id("preview-errors")).to_contain_text("Evaluation errors: 0 now, 0 after")
    expect(output.get_by_test_id("preview-note")).to_have_count(0)
    body = json.loads(sent[-1].post_data or "")
    assert body["contexts"] == contexts
    assert [r["variant"] for r in body["config"]["rules"]] == ["c"]
    assert _ok(console_stack.api.get(config_path))["version"] == version, "the preview saved something"
    shot(page, "flag-preview")

    # --- editing again marks the answer stale; no contexts and no stored sample: the server's note ----
    page.get_by_label("Rule 1 variant").select_option("a")
    expect(output.get_by_test_id("preview-stale")).to_be_visible()
    page.get_by_label("Contexts to preview over (JSON array, optional)").fill("")
    page.get_by_test_id("preview-impact").click()
    expect(output.get_by_test_id("preview-summary")).to_contain_text("0 of 0 contexts would change")
    expect(output.get_by_test_id("preview-summary")).to_contain_text("over the stored sample")
    expect(output.get_by_test_id("preview-note")).to_contain_text("holds no sample of evaluated contexts")
    expect(output.get_by_test_id("preview-stale")).to_have_count(0)
    assert "contexts" not in json.loads(sent[-1].post_data or "")

    # --- bad contexts: an inline error naming the field, nothing sent --------------------------------
    before = len(sent)
    field = page.get_by_label("Contexts to preview over (JSON array, optional)")
    field.fill('[{"targeting_key": "u1"}, "u2"]')
    page.get_by_test_id("preview-impact").click()
    expect(page.get_by_test_id("preview-panel").locator(".field-error:visible")).to_have_text(
        "Contexts: item 1 is string, not an object"
    )
    field.fill("[{")
    page.get_by_test_id("preview-impact").click()
    expect(page.get_by_test_id("preview-panel").locator(".field-error:visible")).to_contain_text(
        "Contexts: not valid JSON"
    )
    assert len(sent) == before, "bad contexts were sent"

    # --- Save is what it was: it saves the edit, and the preview's answer goes --------------------------
    page.get_by_label("Rule 1 variant").select_option("c")
    page.get_by_role("button", name="Save", exact=True).click()
    expect(page.locator(".toast").filter(has_text=f"is now v{version + 1}")).to_be_visible()
    saved = _ok(console_stack.api.get(config_path))
    assert [r["variant"] for r in saved["rules"]] == ["c"]
    expect(output).to_be_empty()

    # --- the PATCH's own 422 (under /config) is shown at the clause in the editor, as Save shows it -----
    page.get_by_role("button", name="+ Add rule").click()
    staff = page.locator("fieldset.fy-re-rule").nth(1)
    staff.get_by_label("Clause 1 attribute").fill("email")
    staff.get_by_label("Clause 1 operator").select_option("matches")
    staff.get_by_label("Value 1", exact=True).fill(r"^(?!test\+).*@acme\.com$")  # RE2 has no lookahead
    staff.get_by_label("Rule 2 variant").select_option("b")
    field.fill("[]")
    page.get_by_test_id("preview-impact").click()
    expect(staff.locator(".fy-re-error")).to_contain_text("lookahead is not supported")
    expect(page.get_by_test_id("preview-panel").locator(".banner.error")).to_contain_text(
        "Could not preview the change"
    )
    assert _ok(console_stack.api.get(config_path))["version"] == version + 1
    assert page_errors == []


@pytest.mark.usefixtures("world")
def test_explain__markup_in_a_context_value__is_shown_as_text_and_never_runs(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    sign_in(page, console_stack.admin_key)
    page.goto(f"/ui/#/p/{PROJECT}/e/production/flags/checkout")
    _explain(page, json.dumps({"targeting_key": XSS_IMG, "country": XSS_SCRIPT}))
    output = page.get_by_test_id("explain-output")
    expect(output.get_by_test_id("explain-result")).to_contain_text("reason SPLIT")
    expect(output.get_by_test_id("trace-rule-0").get_by_test_id("trace-clause")).to_have_text(
        f'country in ["de","fr"] — value seen {json.dumps(XSS_SCRIPT)} — no'
    )
    expect(output.get_by_test_id("trace-split")).to_contain_text(
        f"Split by targeting_key = {json.dumps(XSS_IMG, separators=(',', ':'))}"
    )
    expect(output.locator("pre.json")).to_contain_text(XSS_SCRIPT)
    _assert_not_run(page)
    assert page.locator("main script").count() == 0
    assert page_errors == []


def test_reader__explains__and_gets_no_preview(world: str, page: Page, page_errors: list[str]) -> None:
    sign_in(page, world)
    page.goto(f"/ui/#/p/{PROJECT}/e/production/flags/checkout")
    expect(page.get_by_text("Read-only: your role (reader) cannot change targeting.")).to_be_visible()
    _explain(page, '{"targeting_key": "u1", "country": "fr"}')
    expect(page.get_by_test_id("explain-variant")).to_have_text("b")
    expect(page.get_by_test_id("preview-impact")).to_have_count(0)
    expect(page.locator("main button")).to_have_text(["Explain"])
    assert page_errors == []
