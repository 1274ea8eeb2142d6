"""The console's editor components against the real API: what the rule editor builds in headless
Chromium is a PATCH body the control plane accepts, and the server's 422 lands at the field its JSON
pointer names.

The components are driven through their dev harness (``tests/control_plane/console_harness/``, served as ``/dev/``), served to
the browser beside the package's static directory by Playwright's request routing, so no port is
opened; the API is the real control plane over PostgreSQL (the ``api``/``client`` fixtures). The
browser is Debian's ``/usr/bin/chromium`` (``scripts/ensure-browser``); Playwright downloads none.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cp_helpers import Api
from fastapi.testclient import TestClient

from flagyard.rule_engine.limits import MAX_CLAUSES, MAX_SEGMENT_RULES

STATIC = Path(__file__).resolve().parents[2] / "control_plane" / "console" / "static"
HARNESS_DIR = Path(__file__).resolve().parent / "console_harness"
"""The development harness: served as ``/dev/`` beside the shipped assets, but not shipped itself."""
ORIGIN = "http://console.test"
HARNESS = f"{ORIGIN}/dev/harness.html"
F = "/api/v1/projects/shop/flags"
ENV = f"{F}/checkout-flow/environments/prod"

CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'"
"""The console's policy: no inline script, handler or style attribute, so the components must not need one."""

XSS = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>'


def _serve_static(route: Any) -> None:
    """Answer a request to ORIGIN from the static directory (never outside it)."""
    path = route.request.url[len(ORIGIN) :].split("?", 1)[0].lstrip("/")
    root = STATIC
    if path.startswith("dev/"):
        root, path = HARNESS_DIR, path.removeprefix("dev/")
    file = (root / path).resolve()
    if root not in file.parents or not file.is_file():
        route.fulfill(status=404, body="not found")
        return
    kind = "text/javascript" if file.suffix == ".js" else mimetypes.guess_type(file.name)[0] or "text/plain"
    headers = {"Content-Type": f"{kind}; charset=utf-8", "Content-Security-Policy": CSP}
    route.fulfill(status=200, body=file.read_bytes(), headers=headers)


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    problems: list[str] = []
    pg.on("pageerror", lambda exc: problems.append(str(exc)))
    pg.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    pg.route(f"{ORIGIN}/**", _serve_static)
    pg.goto(HARNESS)
    pg.wait_for_selector("body[data-ready='1']")
    yield pg
    context.close()
    assert problems == [], f"the page reported errors: {problems}"


@pytest.fixture
def shop(api: Api) -> Api:
    """A project with a three-variant string flag, two segments and a boolean prerequisite candidate."""
    api.project("shop", envs=("dev", "prod"))
    api.segment(key="beta")
    api.segment(key="staff", name="Staff " + XSS)
    api.flag(key="new-cart")
    api.flag(
        key="checkout-flow",
        type="string",
        variants={"control": "v1", "treatment": "v2", "holdout": "none"},
    )
    return api


def _mount(
    page: Any, client: TestClient, flag: str = "checkout-flow", env: str = "prod", **extra: Any
) -> None:
    """Mount the rule editor with what the console's flag page would load from the API."""
    body = client.get(f"{F}/{flag}").json()
    data = {
        "flag": body,
        "environment": env,
        "config": body["environments"][env],
        "segments": client.get("/api/v1/projects/shop/segments").json()["items"],
        "flags": [f for f in client.get(F).json()["items"] if f["key"] != flag],
        **extra,
    }
    page.evaluate("data => { window.fyHarness.mount(data); }", data)


def _patch(client: TestClient, body: dict[str, Any], path: str = ENV) -> Any:
    etag = client.get(path.split("/environments/")[0]).headers["etag"]
    return client.patch(path, json={**body, "comment": "from the console editor"}, headers={"If-Match": etag})


def _value(page: Any) -> dict[str, Any]:
    return dict(page.evaluate("() => window.fyHarness.value()"))


def _add_rule(page: Any) -> Any:
    page.get_by_role("button", name="+ Add rule").click()
    return page.locator(".fy-re-rule").last


# One clause per operator, set through the UI: (operator, how to fill its values, expected values).
def _fill_text(*texts: str) -> Any:
    def fill(rule: Any) -> None:
        for i, text in enumerate(texts):
            if i:
                rule.get_by_role("button", name="+ value").click()
            rule.get_by_label(f"Value {i + 1}", exact=True).fill(text)

    return fill


def _typed(kind: str, text: str) -> Any:
    def fill(rule: Any) -> None:
        rule.get_by_label("Type of value 1").select_option(kind)
        if kind == "boolean":
            rule.get_by_label("Value 1", exact=True).select_option(text)
        else:
            rule.get_by_label("Value 1", exact=True).fill(text)

    return fill


def _when(text: str) -> Any:
    return lambda rule: rule.get_by_label("Date and time (UTC)").fill(text)


def _segments(*keys: str) -> Any:
    def fill(rule: Any) -> None:
        for key in keys:
            rule.locator(f"input[type=checkbox][value='{key}']").check()

    return fill


def _nothing(rule: Any) -> None:
    return None


OPERATOR_CASES: list[tuple[str, Any, list[Any]]] = [
    ("eq", _fill_text("gold"), ["gold"]),
    ("neq", _typed("number", "3"), [3]),
    ("in", _fill_text("DE", "FR"), ["DE", "FR"]),
    ("not_in", _typed("boolean", "true"), [True]),
    ("contains", _fill_text("@"), ["@"]),
    ("starts_with", _fill_text("adm", "root"), ["adm", "root"]),
    ("ends_with", _fill_text("@example.com"), ["@example.com"]),
    ("matches", _fill_text(r"^[a-z]+\.(io|dev)$"), [r"^[a-z]+\.(io|dev)$"]),
    ("lt", _fill_text("10"), [10]),
    ("lte", _fill_text("2.5"), [2.5]),
    ("gt", _fill_text("-1"), [-1]),
    ("gte", _fill_text("1e3"), [1000]),
    ("semver_eq", _fill_text("1.2.3"), ["1.2.3"]),
    ("semver_lt", _fill_text("v2.0.0-rc.1"), ["v2.0.0-rc.1"]),
    ("semver_lte", _fill_text("2.1"), ["2.1"]),
    ("semver_gt", _fill_text("0.9.0"), ["0.9.0"]),
    ("semver_gte", _fill_text("3"), ["3"]),
    ("before", _when("2027-01-31T12:30"), ["2027-01-31T12:30:00Z"]),
    ("after", _when("2026-06-01T00:00"), ["2026-06-01T00:00:00Z"]),
    ("exists", _nothing, []),
    ("not_exists", _nothing, []),
    ("segment_match", _segments("beta", "staff"), ["beta", "staff"]),
]


def test_rules_built_in_the_browser_with_every_operator_are_accepted(
    page: Any, shop: Api, client: TestClient
) -> None:
    _mount(page, client)
    for n, (operator, fill, _) in enumerate(OPERATOR_CASES):
        rule = _add_rule(page)
        rule.get_by_label("Description").fill(f"{operator} rule")
        rule.get_by_label("Clause 1 operator").select_option(operator)
        if operator != "segment_match":
            rule.get_by_label("Clause 1 attribute").fill(f"attr{n}")
        fill(rule)
        rule.get_by_label(f"Rule {n + 1} variant").select_option("treatment" if n % 2 else "control")
    # The last rule serves a split instead, negated, with a second clause.
    rule = page.locator(".fy-re-rule").last
    rule.get_by_role("button", name="+ clause (AND)").click()
    rule = page.locator(".fy-re-rule").last
    rule.get_by_label("Clause 2 attribute").fill("plan")
    rule.get_by_label("Clause 2 operator").select_option("in")
    rule.locator(".fy-re-clause").nth(1).get_by_label("Value 1", exact=True).fill("pro")
    rule.locator(".fy-re-negate input").nth(1).check()
    rule.get_by_label("a percentage split").check()
    for variant, pct in (("control", "33.33"), ("treatment", "33.33"), ("holdout", "33.34")):
        rule.get_by_label(f"Weight of {variant} (%)").fill(pct)
    assert "100.00% of 100%" in rule.locator(".fy-re-split-total").inner_text()
    # The default: a relative split; the off variant; a prerequisite picked from the other flags.
    page.get_by_label("When off, serve").select_option("holdout")
    default = page.locator(".fy-re-default")
    default.get_by_label("a percentage split").check()
    default.get_by_label("Weights").select_option("relative")
    default.get_by_label("Weight of control").fill("3")
    default.get_by_label("Weight of treatment").fill("1")
    default.get_by_label("Weight of holdout").fill("0")
    page.get_by_role("button", name="+ Add prerequisite").click()
    page.get_by_label("Prerequisite 1 flag").select_option("new-cart")
    page.get_by_label("Prerequisite 1 variant").fill("on")
    assert page.evaluate("() => window.fyHarness.clientErrors()") == []

    body = _value(page)
    assert set(body) == {
        "off_variant",
        "default_variant",
        "default_split",
        "rules",
        "prerequisites",
        "targeting",
    }
    r = _patch(client, body)
    assert r.status_code == 200, r.text
    saved = r.json()
    assert [rule["clauses"][0]["operator"] for rule in saved["rules"]] == [c[0] for c in OPERATOR_CASES]
    assert [rule["clauses"][0]["values"] for rule in saved["rules"]] == [c[2] for c in OPERATOR_CASES]
    assert saved["rules"][-1]["split"]["variations"] == [
        {"variant": "control", "weight": 3333},
        {"variant": "treatment", "weight": 3333},
        {"variant": "holdout", "weight": 3334},
    ]
    assert saved["rules"][-1]["clauses"][1] == {
        "attribute": "plan",
        "operator": "in",
        "values": ["pro"],
        "negate": True,
    }
    assert saved["default_split"]["weight_unit"] == "relative"
    assert {v["variant"]: v["weight"] for v in saved["default_split"]["variations"]} == {
        "control": 3,
        "treatment": 1,
    }
    assert saved["default_variant"] is None
    assert saved["off_variant"] == "holdout"
    assert saved["prerequisites"] == [{"flag": "new-cart", "variant": "on"}]

    # Loaded back, the editor shows the same configuration: its value() is what was saved.
    _mount(page, client)
    again = _value(page)
    r = _patch(client, again)
    assert r.status_code == 200, r.text
    assert r.json()["version"] == saved["version"], "re-saving an unchanged configuration made a new version"


def test_server_errors_land_at_the_field_their_pointer_names(
    page: Any, shop: Api, client: TestClient
) -> None:
    _mount(page, client)
    rule = _add_rule(page)
    rule.get_by_label("Clause 1 attribute").fill("age")
    rule.get_by_label("Clause 1 operator").select_option("gt")
    number = rule.get_by_label("Value 1", exact=True)
    number.fill("forty")
    assert "Not a number." in rule.locator(".fy-re-hint").all_inner_texts()
    rule = _add_rule(page)
    rule.get_by_label("Clause 1 attribute").fill("email")
    rule.get_by_label("Clause 1 operator").select_option("matches")
    rule.get_by_label("Value 1", exact=True).fill("a{2000}")
    rule.get_by_label("a percentage split").check()
    rule.get_by_label("Weight of control (%)").fill("10")
    rule.get_by_label("Weight of treatment (%)").fill("10")

    r = _patch(client, _value(page))
    assert r.status_code == 422, r.text
    details = r.json()["details"]
    paths = {d["path"] for d in details}
    assert "/rules/0/clauses/0/values/0" in paths
    assert "/rules/1/split/variations" in paths

    unplaced = page.evaluate("details => window.fyHarness.showErrors(details)", details)
    assert unplaced == []
    first = page.locator(".fy-re-rule").first.get_by_label("Value 1", exact=True)
    assert first.get_attribute("aria-invalid") == "true"
    described = first.get_attribute("aria-describedby") or ""
    messages = [page.locator(f"[id='{i}']").inner_text() for i in described.split()]
    server_message = next(d["message"] for d in details if d["path"] == "/rules/0/clauses/0/values/0")
    assert any(server_message in m for m in messages), messages
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Value 1"
    assert page.evaluate(
        "() => document.activeElement.closest('.fy-re-rule') === document.querySelector('.fy-re-rule')"
    )
    split_error = page.locator(".fy-re-rule").nth(1).locator(".fy-re-split .fy-re-error")
    assert "10000" in split_error.inner_text()

    # A pointer no field claims is handed back to the page; clearErrors removes every message.
    assert page.evaluate("() => window.fyHarness.showErrors([{path: '/comment', message: 'too long'}])") == [
        {"path": "/comment", "message": "too long"}
    ]
    page.evaluate("() => window.fyHarness.clearErrors()")
    assert page.locator(".fy-re-error").count() == 0

    # Fixed in the browser, the same editor's body is accepted.
    page.evaluate("() => window.fyHarness.showErrors([])")
    page.locator(".fy-re-rule").first.get_by_label("Value 1", exact=True).fill("40")
    second = page.locator(".fy-re-rule").nth(1)
    second.get_by_label("Value 1", exact=True).fill("^[a-z]+@example\\.com$")
    second.get_by_label("Weight of control (%)").fill("56.67")
    assert page.evaluate("() => window.fyHarness.clientErrors()") == []
    r = _patch(client, _value(page))
    assert r.status_code == 200, r.text


def test_a_missing_segment_and_an_unknown_prerequisite_variant_are_placed(
    page: Any, shop: Api, client: TestClient
) -> None:
    _mount(page, client)
    rule = _add_rule(page)
    rule.get_by_label("Clause 1 operator").select_option("segment_match")
    rule.locator("input[type=checkbox][value='staff']").check()
    page.get_by_role("button", name="+ Add prerequisite").click()
    page.get_by_label("Prerequisite 1 flag").select_option("new-cart")
    page.get_by_label("Prerequisite 1 variant").fill("maybe")
    assert (
        client.delete("/api/v1/projects/shop/segments/staff", headers={"If-Match": '"1"'}).status_code == 204
    )
    r = _patch(client, _value(page))
    assert r.status_code == 422, r.text
    details = r.json()["details"]
    assert page.evaluate("details => window.fyHarness.showErrors(details)", details) == []
    staff = page.locator("input[type=checkbox][value='staff']")
    assert staff.get_attribute("aria-invalid") == "true"
    assert page.get_by_label("Prerequisite 1 variant").get_attribute("aria-invalid") == "true"


def test_jsonlogic_targeting_is_edited_as_json(page: Any, shop: Api, client: TestClient) -> None:
    _mount(page, client)
    switch = page.get_by_role("button", name="Use a JsonLogic expression instead")
    assert switch.is_enabled(), "with no rules and no default split, the editor may switch to JsonLogic"
    switch.click()
    area = page.get_by_label("JsonLogic targeting expression")
    area.fill('{"if": [{"$ref": "beta"}, "treatment", null')
    assert "Not valid JSON" in page.locator(".fy-re-targeting .fy-re-hint").inner_text()
    assert area.get_attribute("aria-invalid") == "true"
    area.fill('{"if": [{"$ref": "beta"}, "treatment", null]}')
    assert area.get_attribute("aria-invalid") is None
    assert not page.get_by_role("button", name="Use ordered rules instead").is_enabled()
    page.get_by_label("Default variant").select_option("control")
    body = _value(page)
    assert body["targeting"] == {"if": [{"$ref": "beta"}, "treatment", None]}
    assert body["rules"] == []
    r = _patch(client, body)
    assert r.status_code == 200, r.text
    assert r.json()["targeting"] == body["targeting"]

    # A flag whose configuration has targeting opens in the JSON editor; an unknown segment is refused
    # by the server and shown at the textarea.
    _mount(page, client)
    area = page.get_by_label("JsonLogic targeting expression")
    assert json.loads(area.input_value()) == body["targeting"]
    area.fill('{"if": [{"$ref": "gamma"}, "treatment", null]}')
    r = _patch(client, _value(page))
    assert r.status_code == 422, r.text
    assert page.evaluate("details => window.fyHarness.showErrors(details)", r.json()["details"]) == []
    assert area.get_attribute("aria-invalid") == "true"


def test_the_harness_sample_is_a_body_the_api_accepts(page: Any, shop: Api, client: TestClient) -> None:
    body = _value(page)
    r = _patch(client, body)
    assert r.status_code == 200, r.text
    assert [rule["id"] for rule in r.json()["rules"]] == ["beta-testers", "new-apps"]
    assert r.json()["rules"][1]["clauses"][1]["values"] == ["DE", "FR", 7]
    assert page.evaluate("() => window.__pwned") is None, "a description or segment name ran as markup"


def test_rules_are_reordered_and_removed(page: Any, shop: Api, client: TestClient) -> None:
    _mount(page, client)
    for n in range(3):
        rule = _add_rule(page)
        rule.get_by_label("Rule id").fill(f"r{n}")
        rule.get_by_label("Clause 1 attribute").fill("country")
        rule.get_by_label("Value 1", exact=True).fill(f"C{n}")
    page.get_by_role("button", name="Move rule 3 up").click()
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Move rule 2 up"
    page.locator(".fy-re-rule").first.get_by_role("button", name="Remove rule").click()
    body = _value(page)
    assert [r["id"] for r in body["rules"]] == ["r2", "r1"]
    assert [r["clauses"][0]["values"] for r in body["rules"]] == [["C2"], ["C1"]]
    r = _patch(client, body)
    assert r.status_code == 200, r.text
    assert [rule["id"] for rule in r.json()["rules"]] == ["r2", "r1"]


def test_read_only_shows_the_configuration_without_controls(page: Any, shop: Api, client: TestClient) -> None:
    _mount(page, client, readOnly=True)
    editor = page.locator(".fy-re")
    assert editor.locator("button").count() == 0
    enabled = editor.locator("input:not([disabled]), select:not([disabled]), textarea:not([disabled])")
    assert enabled.count() == 0
    assert page.get_by_label("When off, serve").is_disabled()


def test_variant_editor_values_create_a_flag_and_errors_land_on_the_variant(
    page: Any, shop: Api, client: TestClient
) -> None:
    page.evaluate("() => { window.fyHarness.mountVariants({type: 'integer', variants: {small: 1}}); }")
    editor = page.locator(".fy-ve")
    editor.get_by_role("button", name="+ Add variant").click()
    editor.get_by_label("Variant 2 name").fill("large")
    editor.get_by_label("Variant 2 value").fill("12.5")
    assert "Not a whole number." in editor.locator(".fy-ve-hint").all_inner_texts()
    variants = page.evaluate("() => window.fyHarness.variants().value()")
    assert variants == {"small": 1, "large": "12.5"}
    r = client.post(F, json={"key": "limit", "name": "Limit", "type": "integer", "variants": variants})
    assert r.status_code == 422, r.text
    unplaced = page.evaluate("d => window.fyHarness.variants().showErrors(d)", r.json()["details"])
    assert unplaced == []
    assert editor.get_by_label("Variant 2 value").get_attribute("aria-invalid") == "true"
    editor.get_by_label("Variant 2 value").fill("12")
    variants = page.evaluate("() => window.fyHarness.variants().value()")
    r = client.post(F, json={"key": "limit", "name": "Limit", "type": "integer", "variants": variants})
    assert r.status_code == 201, r.text
    assert r.json()["variants"] == {"small": 1, "large": 12}


def test_diff_shows_attacker_strings_as_text(page: Any) -> None:
    diff = page.locator(".fy-diff")
    assert json.dumps(XSS) in diff.inner_text()
    assert diff.locator("img, script").count() == 0
    assert page.evaluate("() => window.__pwned") is None
    assert "variants › a/b" in diff.locator(".fy-diff-remove .fy-diff-crumbs").inner_text()
    page.evaluate("() => window.fyHarness.diff([])")
    assert page.locator(".fy-diff").inner_text().strip() == "No differences."


# --- the segment-rules editor --------------------------------------------------------------------

SEG = "/api/v1/projects/shop/segments"

SEGMENT_RULES: list[dict[str, Any]] = [
    {
        "clauses": [
            {"attribute": "email", "operator": "ends_with", "values": ["@a.io", "@b.io"], "negate": False},
            {"attribute": "plan", "operator": "in", "values": ["pro", 3, True], "negate": True},
        ]
    },
    {"clauses": [{"attribute": None, "operator": "segment_match", "values": ["beta"], "negate": False}]},
    {
        "clauses": [
            {"attribute": "app.version", "operator": "semver_gte", "values": ["2.4.0"], "negate": False},
            {"attribute": "seen", "operator": "before", "values": ["2026-01-31T12:00:00Z"], "negate": False},
            {"attribute": "beta_opt_in", "operator": "exists", "values": [], "negate": False},
            {"attribute": "age", "operator": "lt", "values": [18.5], "negate": True},
            {"attribute": "name", "operator": "matches", "values": ["^[a-z]+$"], "negate": False},
        ]
    },
]
"""Several rules of several clauses, one per kind of values editor."""


@pytest.fixture
def gamma(shop: Api, client: TestClient) -> Api:
    """Segment gamma to edit; staff matches gamma, so gamma's rules may not match staff (a cycle)."""
    shop.segment(key="gamma")
    staff = {"clauses": [{"operator": "segment_match", "values": ["gamma"]}]}
    r = client.patch(f"{SEG}/staff", json={"rules": [staff]}, headers={"If-Match": shop.etag(f"{SEG}/staff")})
    assert r.status_code == 200, r.text
    return shop


def _mount_segment(page: Any, client: TestClient, key: str = "gamma", **extra: Any) -> Any:
    """Mount the segment-rules editor with what the console's segment page loads; returns its box."""
    data = {
        "segment": key,
        "rules": client.get(f"{SEG}/{key}").json()["rules"],
        "segments": client.get(SEG).json()["items"],
        **extra,
    }
    page.evaluate("data => { window.fyHarness.mountSegment(data); }", data)
    return page.locator("#segment-rules")


def _segment_value(page: Any) -> list[dict[str, Any]]:
    return list(page.evaluate("() => window.fyHarness.segment().value()"))


def _patch_segment(client: TestClient, rules: Any, key: str = "gamma") -> Any:
    etag = client.get(f"{SEG}/{key}").headers["etag"]
    return client.patch(f"{SEG}/{key}", json={"rules": rules}, headers={"If-Match": etag})


def test_segment_rules_round_trip_and_the_server_stores_them(
    page: Any, gamma: Api, client: TestClient
) -> None:
    r = _patch_segment(client, SEGMENT_RULES)
    assert r.status_code == 200, r.text
    assert r.json()["rules"] == SEGMENT_RULES
    version = r.json()["version"]

    box = _mount_segment(page, client)
    assert box.locator(".fy-re-rule").count() == 3
    assert _segment_value(page) == SEGMENT_RULES
    # segment_match offers beta only: not gamma itself, not staff (it matches gamma: a cycle).
    assert [c.get_attribute("value") for c in box.locator(".fy-re-segments input").all()] == ["beta"]
    r = _patch_segment(client, _segment_value(page))
    assert r.status_code == 200, r.text
    assert r.json()["rules"] == SEGMENT_RULES
    assert r.json()["version"] == version, "re-saving unchanged rules made a new version"


def test_segment_rules_typed_in_the_browser_are_what_is_saved(
    page: Any, gamma: Api, client: TestClient
) -> None:
    box = _mount_segment(page, client)
    assert "No rules" in box.inner_text()
    add = box.get_by_role("button", name="+ Add rule")
    add.click()
    first = box.locator(".fy-re-rule").nth(0)
    first.get_by_label("Clause 1 attribute").fill("country")
    first.get_by_label("Value 1", exact=True).fill("DE")
    first.get_by_role("button", name="+ value").click()
    first.get_by_label("Value 2", exact=True).fill("FR")
    first.get_by_role("button", name="+ clause (AND)").click()
    first.get_by_label("Clause 2 attribute").fill("age")
    first.get_by_label("Clause 2 operator").select_option("gte")
    first.locator(".fy-re-clause").nth(1).get_by_label("Value 1", exact=True).fill("18")
    first.locator(".fy-re-negate input").nth(1).check()
    add.click()
    second = box.locator(".fy-re-rule").nth(1)
    second.get_by_label("Clause 1 operator").select_option("segment_match")
    second.locator("input[type=checkbox][value='beta']").check()
    add.click()
    box.locator(".fy-re-rule").nth(2).get_by_label("Clause 1 attribute").fill("dropped")
    box.locator(".fy-re-rule").nth(2).get_by_role("button", name="Remove rule").click()
    box.get_by_role("button", name="Move rule 2 up").click()
    assert page.evaluate("() => document.activeElement.getAttribute('aria-label')") == "Move rule 1 down"
    assert page.evaluate("() => window.fyHarness.segment().clientErrors()") == []

    expected = [
        {"clauses": [{"operator": "segment_match", "negate": False, "attribute": None, "values": ["beta"]}]},
        {
            "clauses": [
                {"operator": "in", "negate": False, "attribute": "country", "values": ["DE", "FR"]},
                {"operator": "gte", "negate": True, "attribute": "age", "values": [18]},
            ]
        },
    ]
    assert _segment_value(page) == expected
    r = _patch_segment(client, _segment_value(page))
    assert r.status_code == 200, r.text
    assert client.get(f"{SEG}/gamma").json()["rules"] == expected


def test_segment_server_errors_land_at_the_field_their_pointer_names(
    page: Any, gamma: Api, client: TestClient
) -> None:
    box = _mount_segment(page, client)
    box.get_by_role("button", name="+ Add rule").click()
    rule = box.locator(".fy-re-rule").first
    rule.get_by_label("Clause 1 attribute").fill("plan")
    rule.get_by_label("Value 1", exact=True).fill("pro")
    rule.get_by_role("button", name="+ clause (AND)").click()
    rule.get_by_label("Clause 2 attribute").fill("email")
    rule.get_by_label("Clause 2 operator").select_option("matches")
    bad = rule.locator(".fy-re-clause").nth(1).get_by_label("Value 1", exact=True)
    bad.fill("a{2000}")

    r = _patch_segment(client, _segment_value(page))
    assert r.status_code == 422, r.text
    details = r.json()["details"]
    assert "/rules/0/clauses/1/values/0" in {d["path"] for d in details}, details
    assert page.evaluate("d => window.fyHarness.segment().showErrors(d)", details) == []
    assert bad.get_attribute("aria-invalid") == "true"
    assert rule.get_by_label("Value 1", exact=True).first.get_attribute("aria-invalid") is None
    described = bad.get_attribute("aria-describedby") or ""
    messages = [page.locator(f"[id='{i}']").inner_text() for i in described.split()]
    server_message = next(d["message"] for d in details if d["path"] == "/rules/0/clauses/1/values/0")
    assert any(server_message in m for m in messages), messages
    assert page.evaluate("() => document.activeElement.closest('.fy-re-clause:nth-child(2)') !== null")

    # A pointer to the list itself (a cycle) lands on the Rules heading; one outside the rules (the page's
    # name field) is handed back; clearErrors removes them all.
    cycle = {"path": "/rules", "message": "segment cycle: gamma -> staff -> gamma"}
    name = {"path": "/name", "message": "String should have at least 1 character"}
    assert page.evaluate("d => window.fyHarness.segment().showErrors(d)", [cycle, name]) == [name]
    assert "segment cycle" in box.locator(".fy-re-rules > .fy-re-error").inner_text()
    page.evaluate("() => window.fyHarness.segment().clearErrors()")
    assert box.locator(".fy-re-error").count() == 0

    bad.fill("^[a-z]+@example\\.com$")
    r = _patch_segment(client, _segment_value(page))
    assert r.status_code == 200, r.text


def test_segment_rules_read_only_show_the_rules_without_controls(
    page: Any, gamma: Api, client: TestClient
) -> None:
    assert _patch_segment(client, SEGMENT_RULES).status_code == 200
    box = _mount_segment(page, client, readOnly=True)
    assert box.locator(".fy-re-rule").count() == 3
    assert box.locator("button").count() == 0
    assert box.locator("input:not([disabled]), select:not([disabled]), textarea:not([disabled])").count() == 0
    assert _segment_value(page) == SEGMENT_RULES


def test_segment_rules_editor_stops_adding_at_the_server_limits(
    page: Any, gamma: Api, client: TestClient
) -> None:
    """The worst case: MAX_SEGMENT_RULES rules, one of MAX_CLAUSES clauses, are shown and saved whole;
    the editor offers no way past either bound (the server would refuse it)."""
    wide = {
        "clauses": [
            {"attribute": f"a{c}", "operator": "exists", "values": [], "negate": False}
            for c in range(MAX_CLAUSES)
        ]
    }
    one = {"clauses": [{"attribute": "plan", "operator": "eq", "values": ["x"], "negate": False}]}
    rules = [wide] + [one] * (MAX_SEGMENT_RULES - 1)
    r = _patch_segment(client, rules)
    assert r.status_code == 200, r.text

    box = _mount_segment(page, client)
    # CSS locators, not roles: an accessibility query over this page's ~50,000 elements takes seconds.
    add_rule = box.locator("button", has_text="+ Add rule")
    add_clause = "button:text-is('+ clause (AND)')"
    assert box.locator(".fy-re-rule").count() == MAX_SEGMENT_RULES
    assert add_rule.count() == 0
    assert box.locator(".fy-re-rule").first.locator(add_clause).count() == 0
    assert box.locator(".fy-re-rule").nth(1).locator(add_clause).count() == 1
    assert _segment_value(page) == rules

    box.locator(".fy-re-rule").last.locator("button", has_text="Remove rule").click()
    add_rule.click()
    assert add_rule.count() == 0
    assert len(_segment_value(page)) == MAX_SEGMENT_RULES
