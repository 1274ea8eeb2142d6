"""JsonLogic targeting set over the admin API is served by the data plane like rules are."""

from __future__ import annotations

from e2e_stack import Evaluator, Stack, wait_until

TARGETING = {"if": [{"$ref": "dutch"}, "on", None]}


def test_propagation__targeting_change__served_by_the_data_plane(stack: Stack) -> None:
    api = stack.api
    assert api.post("/api/v1/projects", json={"key": "shop", "name": "Shop"}).status_code == 201
    r = api.post("/api/v1/projects/shop/environments", json={"key": "prod", "name": "Prod"})
    assert r.status_code == 201
    segment = {
        "key": "dutch",
        "name": "Dutch",
        "rules": [{"clauses": [{"attribute": "country", "operator": "eq", "values": ["NL"]}]}],
    }
    assert api.post("/api/v1/projects/shop/segments", json=segment).status_code == 201
    flag = {"key": "checkout", "name": "Checkout", "type": "boolean", "variants": {"on": True, "off": False}}
    flag["environments"] = {"prod": {"enabled": True, "default_variant": "off"}}
    assert api.post("/api/v1/projects/shop/flags", json=flag).status_code == 201
    r = api.post("/api/v1/projects/shop/environments/prod/sdk-keys", json={"name": "backend"})
    assert r.status_code == 201, r.text
    sdk_key = str(r.json()["key"])
    stack.start_syncer()
    stack.start_data_plane()
    client = Evaluator(stack.grpc_port, sdk_key)
    try:
        before = wait_until(
            lambda: client.try_boolean("checkout", {"targeting_key": "u", "country": "NL"}), 30
        )
        assert (before.value, before.variant) == (False, "off")
        path = "/api/v1/projects/shop/flags/checkout/environments/prod"
        r = api.patch(
            path, json={"targeting": TARGETING}, headers={"If-Match": api.get(path).headers["etag"]}
        )
        assert r.status_code == 200, r.text
        after = wait_until(
            lambda: (
                (got := client.boolean("checkout", {"targeting_key": "u", "country": "NL"})).value is True
                and got
            ),
            15,
        )
        assert (after.variant, after.reason) == ("on", 2)  # REASON_TARGETING_MATCH
        other = client.boolean("checkout", {"targeting_key": "u", "country": "DE"})
        assert (other.value, other.variant) == (False, "off")
    finally:
        client.close()
