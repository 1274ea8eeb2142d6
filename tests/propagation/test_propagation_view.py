"""The propagation view over a real stack: the syncer and a data plane in their own processes, the admin
API's GET .../propagation showing a change reach Redis and then the data plane."""

from __future__ import annotations

from typing import Any

from e2e_stack import Stack, wait_until

PROPAGATION = "/api/v1/projects/shop/environments/prod/propagation"


def view(stack: Stack) -> dict[str, Any]:
    r = stack.api.get(PROPAGATION)
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_propagation_view__change__reaches_redis_then_the_data_plane(stack: Stack) -> None:
    api = stack.api
    assert api.post("/api/v1/projects", json={"key": "shop", "name": "Shop"}).status_code == 201
    r = api.post("/api/v1/projects/shop/environments", json={"key": "prod", "name": "Prod"})
    assert r.status_code == 201
    body = {"key": "checkout", "name": "Checkout", "type": "boolean", "variants": {"on": True, "off": False}}
    assert api.post("/api/v1/projects/shop/flags", json=body).status_code == 201
    assert view(stack)["stored_revision"] is None
    stack.start_syncer()
    stack.env["FLAGYARD_INSTANCE_ID"] = "dp-e2e"
    stack.start_data_plane()
    synced = wait_until(lambda: (v := view(stack))["in_sync"] and v["data_planes"] and v, 30)
    assert synced["data_planes"][0]["id"] == "dp-e2e"
    assert synced["data_planes"][0]["revision"] == synced["revision"] == synced["stored_revision"]

    stack.kill("syncer")  # the change waits in the queue: Redis and the data plane lag PostgreSQL
    r = api.post("/api/v1/projects/shop/flags/checkout/environments/prod/toggle", json={"enabled": True})
    assert r.status_code == 200, r.text
    pending = view(stack)
    assert pending["revision"] == synced["revision"] + 1
    assert pending["stored_revision"] == synced["revision"]
    assert pending["in_sync"] is False
    stack.start_syncer()
    caught_up = wait_until(
        lambda: (
            (v := view(stack))["in_sync"] and v["data_planes"][0]["revision"] == pending["revision"] and v
        ),
        30,
    )
    assert caught_up["stored_revision"] == pending["revision"]

    stack.stop_all()  # a data plane stopping withdraws its report
    assert view(stack)["data_planes"] == []
