"""A change made through the admin API reaches evaluations on the data plane, in order and never lost."""

from __future__ import annotations

from typing import Any

import redis
from e2e_stack import Evaluator, Stack, wait_until

from flagyard import FlagyardClient
from flagyard.contracts.redis import EnvKeys, load_environment_sync, parse_stored

DE_RULE = {
    "id": "de",
    "clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}],
    "variant": "on",
}


def make_project(stack: Stack) -> str:
    """Project shop with environment prod, flag checkout on for DE; returns an SDK key of prod."""
    api = stack.api
    assert api.post("/api/v1/projects", json={"key": "shop", "name": "Shop"}).status_code == 201
    assert (
        api.post("/api/v1/projects/shop/environments", json={"key": "prod", "name": "Prod"}).status_code
        == 201
    )
    body = {"key": "checkout", "name": "Checkout", "type": "boolean", "variants": {"on": True, "off": False}}
    assert api.post("/api/v1/projects/shop/flags", json=body).status_code == 201
    configure(stack, enabled=True, off_variant="off", default_variant="off", rules=[DE_RULE])
    r = api.post("/api/v1/projects/shop/environments/prod/sdk-keys", json={"name": "backend"})
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def configure(stack: Stack, **config: Any) -> None:
    path = "/api/v1/projects/shop/flags/checkout/environments/prod"
    etag = stack.api.get(path).headers["etag"]
    r = stack.api.patch(path, json=config, headers={"If-Match": etag})
    assert r.status_code == 200, r.text


def test_propagation__admin_change__is_served_by_the_data_plane(stack: Stack) -> None:
    sdk_key = make_project(stack)
    stack.start_syncer()
    stack.start_data_plane()
    client = Evaluator(stack.grpc_port, sdk_key)
    try:
        first = wait_until(
            lambda: client.try_boolean("checkout", {"targeting_key": "u1", "country": "DE"}), 30
        )
        assert (first.value, first.variant, first.reason) == (True, "on", 2)  # REASON_TARGETING_MATCH
        configure(stack, rules=[{**DE_RULE, "variant": "off"}])
        changed = wait_until(
            lambda: (
                (r := client.boolean("checkout", {"targeting_key": "u1", "country": "DE"})).value is False
                and r
            ),
            15,
        )
        assert changed.variant == "off"
        assert changed.version > first.version
    finally:
        client.close()


def test_propagation__syncer_killed_while_changes_queue__loses_nothing(stack: Stack) -> None:
    make_project(stack)
    stack.start_syncer()
    for i in range(30):
        configure(stack, default_variant="on" if i % 2 else "off", enabled=True)
    stack.kill("syncer")  # SIGKILL, wherever it was
    for i in range(30):
        configure(stack, default_variant="on" if i % 2 else "off")
    final_version = stack.api.get("/api/v1/projects/shop/flags/checkout").json()["version"]
    stack.start_syncer()
    rds = redis.Redis.from_url(stack.redis_url)
    env_id = wait_until(lambda: next((m.decode() for m in rds.smembers(f"{stack.prefix}:envs")), None), 30)

    def synced_version() -> int:
        raw = load_environment_sync(rds, stack.prefix, env_id).flags.get("checkout")
        return parse_stored(raw).version if raw else -1

    assert wait_until(lambda: synced_version() == final_version, 30)
    stored = parse_stored(load_environment_sync(rds, stack.prefix, env_id).flags["checkout"]).definition
    assert stored["default_variant"] == "on"
    versions = [int(fields[b"version"]) for _, fields in rds.xrange(EnvKeys(stack.prefix, env_id).events)]
    assert versions == sorted(versions), "the stream never carries a version going backwards"
    rds.close()


def test_evaluation_counts__reported_by_sdks__show_used_and_stale_flags(stack: Stack) -> None:
    sdk_key = make_project(stack)
    body = {
        "key": "forgotten",
        "name": "Forgotten",
        "type": "boolean",
        "variants": {"on": True, "off": False},
    }
    assert stack.api.post("/api/v1/projects/shop/flags", json=body).status_code == 201
    stack.start_syncer()
    stack.start_data_plane()
    probe = Evaluator(stack.grpc_port, sdk_key)
    wait_until(lambda: probe.try_boolean("checkout", {"targeting_key": "u1", "country": "DE"}), 30)
    probe.close()
    client = FlagyardClient(
        target=f"127.0.0.1:{stack.grpc_port}",
        sdk_key=sdk_key,
        mode="local",
        ready_timeout=30,
        report_interval=60,
    )
    try:
        assert client.wait_ready(30)
        wait_until(lambda: client.boolean("checkout", False, {"targeting_key": "u1", "country": "DE"}), 30)
        before = sum(client.reporter.pending().values()) if client.reporter else 0
        for i in range(40):
            client.boolean("checkout", False, {"targeting_key": f"u{i}", "country": "DE" if i % 4 else "FR"})
    finally:
        client.close()  # flushes what is left
    usage = stack.api.get("/api/v1/projects/shop/environments/prod/evaluations")
    assert usage.status_code == 200, usage.text
    flags = {f["key"]: f for f in usage.json()["flags"]}
    assert flags["checkout"]["evaluations"] == before + 40
    assert flags["checkout"]["variants"]["off"] == 10
    assert flags["checkout"]["stale"] is False
    assert flags["checkout"]["last_evaluated_at"] is not None
    assert flags["forgotten"] == {
        **flags["forgotten"],
        "evaluations": 0,
        "stale": True,
        "last_evaluated_at": None,
    }
