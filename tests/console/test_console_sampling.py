"""The Environments page's context sampling, in headless Chromium against one real stack: an admin turns it
on (a bad attribute is refused at its field first), the running syncer publishes the policy to Redis, and
emptying both lists turns it off and withdraws the policy."""

from __future__ import annotations

from typing import Any

import httpx
import redis
import sqlalchemy as sa
from browser_helpers import sign_in
from console_stack import ConsoleStack
from playwright.sync_api import Page, expect
from polling_helpers import wait_until

from flagyard.contracts.sampling import SamplingPolicy, parse_policy, policy_key

PROJECT = "smp"
ENV_PATH = f"/api/v1/projects/{PROJECT}/environments/staging"


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()


def _published(stack: ConsoleStack, env_id: str) -> SamplingPolicy | None:
    """The policy as a data plane reads it (synchronously: Playwright's loop runs in this thread)."""
    client = redis.Redis.from_url(stack.redis_url)
    try:
        raw = client.get(policy_key(stack.prefix, env_id))
    finally:
        client.close()
    return None if raw is None else parse_policy(raw)


def _env_id(stack: ConsoleStack) -> str:
    engine = sa.create_engine(stack.db_url)
    try:
        with engine.connect() as conn:
            return str(
                conn.execute(
                    sa.text(
                        "SELECT e.id FROM environments e JOIN projects p ON p.id = e.project_id "
                        "WHERE p.key = :p AND e.key = 'staging'"
                    ),
                    {"p": PROJECT},
                ).scalar_one()
            )
    finally:
        engine.dispose()


def test_environments_page__sampling_set_published_and_turned_off(
    console_stack: ConsoleStack, page: Page, page_errors: list[str]
) -> None:
    console_stack.create_project(PROJECT, ("staging",))
    sign_in(page, console_stack.admin_key)
    page.goto(f"/ui/#/p/{PROJECT}/environments")
    expect(page.get_by_test_id("env-sampling-staging")).to_have_text("off")

    page.get_by_test_id("env-set-sampling-staging").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Kept in clear").fill("plan, bad attr")
    dialog.get_by_label("Kept hashed").fill("targeting_key")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog.locator(".field-error:visible")).to_contain_text("attributes/1")  # 422, at its field
    dialog.get_by_label("Kept in clear").fill("plan, country")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0)
    expect(page.get_by_test_id("env-sampling-staging")).to_have_text("plan, country, targeting_key (hashed)")
    env = _ok(console_stack.api.get(ENV_PATH))
    assert env["sampling"] == {"attributes": ["plan", "country"], "hashed": ["targeting_key"]}

    # The stack's own syncer publishes it.
    env_id = _env_id(console_stack)
    policy = wait_until(lambda: _published(console_stack, env_id), 30.0)
    assert (policy.attributes, policy.hashed) == (("plan", "country"), ("targeting_key",))

    page.get_by_test_id("env-set-sampling-staging").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Kept in clear").fill("")
    dialog.get_by_label("Kept hashed").fill("")
    dialog.get_by_role("button", name="Save").click()
    expect(dialog).to_have_count(0)
    expect(page.get_by_test_id("env-sampling-staging")).to_have_text("off")
    assert _ok(console_stack.api.get(ENV_PATH))["sampling"] is None
    wait_until(lambda: _published(console_stack, env_id) is None, 30.0)
    assert page_errors == []
