"""Webhooks on the real stack: subscriptions over the API, deliveries written by the change's transaction,
sent by the delivery worker to a real local HTTP receiver, verified there by an independent Standard
Webhooks implementation (the ``standardwebhooks`` package)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from cp_helpers import Api, rows
from fastapi import FastAPI
from fastapi.testclient import TestClient
from standardwebhooks.webhooks import Webhook
from webhook_receiver import Receiver, start_receiver

from flagyard.control_plane import schemas
from flagyard.control_plane.exceptions import ConfigurationError
from flagyard.control_plane.scheduler import run_once
from flagyard.control_plane.services.webhooks import MAX_WEBHOOKS_PER_PROJECT
from flagyard.control_plane.settings import DEV_WEBHOOK_SECRET_KEY, Settings
from flagyard.control_plane.webhook_events import EVENTS
from flagyard.control_plane.webhooks import EXCERPT_BYTES, LOG_KEEP_PER_SUBSCRIPTION, Worker, backoff_seconds

W = "/api/v1/projects/shop/webhooks"
TOGGLE = "/api/v1/projects/shop/flags/checkout/environments/prod/toggle"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = start_receiver()
    yield r
    r.close()


def worker(app: FastAPI, settings: Settings, **overrides: Any) -> Worker:
    """A delivery worker on the app's database, with settings changed for the test."""
    return Worker(app.state.flagyard.sessions, settings.model_copy(update=overrides))


def subscribe(client: TestClient, url: str, events: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    r = client.post(W, json={"url": url, "events": events or ["flag.toggled", "flag.changed"], **extra})
    assert r.status_code == 201, r.text
    return dict(r.json())


def deliveries(client: TestClient, webhook_id: int) -> list[dict[str, Any]]:
    r = client.get(f"{W}/{webhook_id}/deliveries")
    assert r.status_code == 200, r.text
    return list(r.json()["items"])


def later(seconds: float) -> datetime:
    return datetime.now(UTC) + timedelta(seconds=seconds)


def toggle(client: TestClient, enabled: bool = True) -> None:
    """Switch checkout on in prod (a new flag is off: switching it off would change nothing)."""
    r = client.post(TOGGLE, json={"enabled": enabled, "comment": "ship it"})
    assert r.status_code == 200, r.text


# --- the API --------------------------------------------------------------------------------------


def test_event_table__same_as_the_published_enum() -> None:
    assert tuple(EVENTS) == schemas.WebhookEvent.__args__


def test_crud__create_shows_secret_once_get_list_patch_delete(client: TestClient, api: Api) -> None:
    api.project()
    created = subscribe(client, "https://hooks.example.com/flagyard", ["flag.toggled"], description="ops")
    secret = created["secret"]
    assert secret.startswith("whsec_")
    assert created["secret_prefix"] == secret[:10]
    assert created["enabled"] is True
    assert created["events"] == ["flag.toggled"]
    wid = created["id"]
    got = client.get(f"{W}/{wid}")
    assert got.status_code == 200
    assert "secret" not in got.json()
    listed = client.get(W).json()["items"]
    assert [w["id"] for w in listed] == [wid]
    assert "secret" not in listed[0]
    r = client.patch(f"{W}/{wid}", json={"events": ["segment.changed", "key.created"], "enabled": False})
    assert r.status_code == 200, r.text
    assert r.json()["events"] == ["segment.changed", "key.created"]
    assert r.json()["enabled"] is False
    rotated = client.post(f"{W}/{wid}/rotate-secret")
    assert rotated.status_code == 201
    assert rotated.json()["secret"] != secret
    assert client.delete(f"{W}/{wid}").status_code == 204
    assert client.get(f"{W}/{wid}").status_code == 404
    actions = [
        e["action"] for e in client.get("/api/v1/projects/shop/audit?resource_type=webhook").json()["items"]
    ]
    assert actions == ["deleted", "secret_rotated", "updated", "created"]


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"url": "ftp://example.com/x", "events": ["flag.toggled"]}, "/url"),
        ({"url": "https://example.com/" + "a" * 2029, "events": ["flag.toggled"]}, "/url"),  # 2049 chars
        ({"url": "https://example.com/x", "events": ["flag.toggled", "flag.exploded"]}, "/events/1"),
        ({"url": "https://example.com/x", "events": []}, "/events"),
        (
            {"url": "https://example.com/x", "events": ["flag.toggled"], "description": "d" * 1001},
            "/description",
        ),
        ({"url": "https://user:pw@example.com/x", "events": ["flag.toggled"]}, "/url"),
        ({"events": ["flag.toggled"]}, "/url"),
    ],
)
def test_create__invalid__422_with_pointer(
    client: TestClient, api: Api, body: dict[str, Any], pointer: str
) -> None:
    api.project()
    r = client.post(W, json=body)
    assert r.status_code == 422, r.text
    assert pointer in [d["path"] for d in r.json()["details"]], r.json()


def test_create__url_at_the_length_bound__accepted(client: TestClient, api: Api) -> None:
    api.project()
    url = "https://example.com/"
    url += "a" * (schemas.MAX_WEBHOOK_URL_LENGTH - len(url))
    assert subscribe(client, url)["url"] == url


def test_create__beyond_subscriptions_per_project__422(client: TestClient, api: Api) -> None:
    api.project()
    for i in range(MAX_WEBHOOKS_PER_PROJECT):
        subscribe(client, f"https://example.com/{i}")
    r = client.post(W, json={"url": "https://example.com/one-more", "events": ["flag.toggled"]})
    assert r.status_code == 422
    assert "at most 50" in r.json()["message"]


def test_private_literal_address__refused_at_creation_by_default(settings: Settings, api: Api) -> None:
    from contract_helpers import CheckedClient
    from cp_helpers import ADMIN_KEY

    from flagyard.control_plane.main import create_app

    api.project()
    strict = create_app(settings.model_copy(update={"webhook_allow_private": False}))
    with CheckedClient(strict, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        for url in (
            "http://127.0.0.1:9/x",
            "http://10.1.2.3/x",
            "http://169.254.169.254/latest",
            "http://[::1]/x",
        ):
            r = c.post(W, json={"url": url, "events": ["flag.toggled"]})
            assert r.status_code == 422, url
            assert r.json()["details"][0]["path"] == "/url"


def test_reader_key__403(client: TestClient, api: Api) -> None:
    api.project()
    r = client.post("/api/v1/api-keys", json={"name": "ro", "role": "reader", "project": "shop"})
    reader = r.json()["key"]
    r = client.get(W, headers={"Authorization": f"Bearer {reader}"})
    assert r.status_code == 403


def test_secret__retry_with_idempotency_key__409_not_replayed(client: TestClient, api: Api) -> None:
    api.project()
    body = {"url": "https://example.com/x", "events": ["flag.toggled"]}
    first = client.post(W, json=body, headers={"Idempotency-Key": "w1"})
    assert first.status_code == 201
    again = client.post(W, json=body, headers={"Idempotency-Key": "w1"})
    assert again.status_code == 409
    assert again.json()["code"] == "secret_not_replayable"
    assert first.json()["secret"] not in again.text
    assert len(client.get(W).json()["items"]) == 1


# --- deliveries ------------------------------------------------------------------------------------


def test_toggle__signed_delivery_verified_by_receiver(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/ok"), ["flag.toggled"])
    toggle(client)
    assert worker(app, settings).run_once() == ["delivered"]
    [request] = receiver.received("/ok")
    # An independent implementation of Standard Webhooks checks signature, id and timestamp.
    verified = Webhook(created["secret"]).verify(request.body, request.headers)
    assert verified["type"] == "flag.toggled"
    data = verified["data"]
    assert (data["project"], data["environment"], data["key"], data["action"]) == (
        "shop",
        "prod",
        "checkout",
        "toggled",
    )
    assert data["version"] == 2
    assert data["resource_type"] == "flag"
    assert data["comment"] == "ship it"
    assert data["actor"]["key_id"] == 1
    assert data["actor"]["key_prefix"]
    assert request.headers["webhook-id"] == f"msg_{deliveries(client, created['id'])[0]['id']}"
    assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 300
    # A tampered body, or another secret, does not verify.
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        Webhook(created["secret"]).verify(request.body + b" ", request.headers)
    [log] = deliveries(client, created["id"])
    assert log["status"] == "delivered"
    assert log["http_status"] == 200
    assert log["attempts"] == 1
    assert log["response_excerpt"] == "thanks"
    assert log["latency_ms"] is not None
    assert log["error"] is None


def test_delivery_rows__written_in_the_change_transaction_only_for_matching_enabled_subscriptions(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    toggled = subscribe(client, "https://example.com/t", ["flag.toggled"])
    changed = subscribe(client, "https://example.com/c", ["flag.changed"])
    off = subscribe(client, "https://example.com/off", ["flag.toggled"], enabled=False)
    toggle(client)
    r = client.patch(
        "/api/v1/projects/shop/flags/checkout", json={"description": "new"}, headers={"If-Match": '"2"'}
    )
    assert r.status_code == 200, r.text
    events = rows(engine, "SELECT subscription_id, event FROM webhook_deliveries ORDER BY id")
    assert [tuple(e) for e in events] == [(toggled["id"], "flag.toggled"), (changed["id"], "flag.changed")]
    assert off["id"] not in [e[0] for e in events]
    # A change refused (stale If-Match) writes nothing.
    r = client.patch(
        "/api/v1/projects/shop/flags/checkout", json={"description": "x"}, headers={"If-Match": '"1"'}
    )
    assert r.status_code == 412
    assert rows(engine, "SELECT count(*) FROM webhook_deliveries")[0][0] == 2


def test_key_and_segment_events__delivered(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    created = subscribe(client, receiver.url("/ok"), ["key.created", "key.revoked", "segment.changed"])
    api.segment()
    r = client.post("/api/v1/projects/shop/environments/prod/sdk-keys", json={"name": "app"})
    assert r.status_code == 201
    assert (
        client.delete(f"/api/v1/projects/shop/environments/prod/sdk-keys/{r.json()['id']}").status_code == 204
    )
    assert (
        sorted(worker(app, settings, webhook_concurrency_per_subscription=3).run_once()) == ["delivered"] * 3
    )
    types = sorted(
        Webhook(created["secret"]).verify(q.body, q.headers)["type"] for q in receiver.received("/ok")
    )
    assert types == ["key.created", "key.revoked", "segment.changed"]


def test_receiver_fails_twice__delivered_on_third_attempt_after_backoff(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/fail/2"), ["flag.toggled"])
    toggle(client)
    w = worker(app, settings, webhook_backoff_base_seconds=60, webhook_backoff_max_seconds=600)
    assert w.run_once() == ["retrying"]
    [log] = deliveries(client, created["id"])
    assert (log["status"], log["attempts"], log["http_status"], log["error"]) == (
        "pending",
        1,
        500,
        "HTTP 500",
    )
    due = datetime.fromisoformat(log["next_attempt_at"])
    assert later(29) <= due <= later(61)  # 60 s with jitter in [0.5, 1)
    assert w.run_once() == []  # not due yet: nothing is sent before the backoff
    assert w.run_once(now=due + timedelta(seconds=1)) == ["retrying"]
    [log] = deliveries(client, created["id"])
    second = datetime.fromisoformat(log["next_attempt_at"])
    assert second - due >= timedelta(seconds=59)  # doubled: 120 s with jitter after the second failure
    assert w.run_once(now=second + timedelta(seconds=1)) == ["delivered"]
    [log] = deliveries(client, created["id"])
    assert (log["status"], log["attempts"], log["http_status"]) == ("delivered", 3, 200)
    bodies = [q.body for q in receiver.received("/fail/2")]
    assert len(bodies) == 3
    assert len(set(bodies)) == 1
    ids = {q.headers["webhook-id"] for q in receiver.received("/fail/2")}
    assert len(ids) == 1  # the same id, for the receiver's deduplication
    last = receiver.received("/fail/2")[-1]
    assert Webhook(created["secret"]).verify(last.body, last.headers)["type"] == "flag.toggled"
    assert client.get(f"{W}/{created['id']}").json()["consecutive_failures"] == 0


def test_attempts_exhausted__failed(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/status/503"), ["flag.toggled"])
    toggle(client)
    w = worker(app, settings, webhook_max_attempts=3, webhook_backoff_base_seconds=1)
    outcomes = [w.run_once(now=later(3600 * i)) for i in range(4)]
    assert outcomes == [["retrying"], ["retrying"], ["failed"], []]
    [log] = deliveries(client, created["id"])
    assert (log["status"], log["attempts"], log["http_status"]) == ("failed", 3, 503)
    assert log["next_attempt_at"] is None
    assert log["completed_at"] is not None


def test_backoff__doubles_up_to_the_cap_with_jitter() -> None:
    assert [backoff_seconds(n, 10, 3600, rand=lambda: 0.999999) for n in (1, 2, 3)] == pytest.approx(
        [10, 20, 40]
    )
    assert backoff_seconds(1, 10, 3600, rand=lambda: 0.0) == 5
    assert backoff_seconds(30, 10, 3600, rand=lambda: 0.999999) == pytest.approx(3600)


def test_hanging_receiver__holds_one_slot_until_the_timeout_others_delivered_meanwhile(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    hang = subscribe(client, receiver.url("/hang"), ["flag.toggled"])
    toggle(client, True)
    toggle(client, False)
    ok = subscribe(client, receiver.url("/ok"), ["flag.toggled"])
    toggle(client, True)  # the hanging receiver has 3 deliveries due, the other one 1
    w = worker(
        app,
        settings,
        webhook_timeout_seconds=3.0,
        webhook_poll_interval_seconds=0.1,
        webhook_concurrency=2,
        webhook_concurrency_per_subscription=1,
    )
    w.start()
    try:
        assert receiver.hanging.wait(20)
        deadline = time.monotonic() + 20
        while deliveries(client, ok["id"])[0]["status"] != "delivered":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # Delivered while one hanging request is held open, and only one: the hanging receiver's other
        # deliveries wait for its slot instead of taking the worker's second one.
        assert not receiver.release.is_set()
        assert receiver.hits["/hang"] == 1
        while deliveries(client, hang["id"])[-1]["error"] is None:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        w.stop()
    first = deliveries(client, hang["id"])[-1]
    assert first["status"] == "pending"
    assert first["error"] == "timed out after 3 s"
    assert first["http_status"] is None
    assert not receiver.release.is_set()  # cut by the worker, not by the receiver letting go


def test_huge_response__read_only_up_to_the_excerpt_cap(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/huge"), ["flag.toggled"])
    toggle(client)
    assert worker(app, settings).run_once() == ["delivered"]
    [log] = deliveries(client, created["id"])
    assert log["response_excerpt"] == "x" * EXCERPT_BYTES
    assert receiver.huge_bytes_sent < 64 * 1024 * 1024  # the worker stopped reading; the receiver gave up


def test_dripping_receiver__cut_by_the_whole_attempt_deadline(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/drip"), ["flag.toggled"])
    toggle(client)
    # Each read gets a byte within 0.3 s, so only the deadline of the whole attempt can end it.
    assert worker(app, settings, webhook_timeout_seconds=1.5).run_once() == ["retrying"]
    [log] = deliveries(client, created["id"])
    assert log["error"] == "timed out after 1.5 s"
    assert not receiver.release.is_set()


def test_redirect__not_followed_recorded_as_failure(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/redirect"), ["flag.toggled"])
    toggle(client)
    assert worker(app, settings).run_once() == ["retrying"]
    [log] = deliveries(client, created["id"])
    assert log["http_status"] == 302
    assert "redirects are not followed" in log["error"]
    assert receiver.received("/ok") == []


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_private_destination__refused_by_default_at_delivery(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver, host: str
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/ok", host=host), ["flag.toggled"])
    toggle(client)
    assert worker(app, settings, webhook_allow_private=False).run_once() == ["failed"]  # not retried
    [log] = deliveries(client, created["id"])
    assert log["status"] == "failed"
    assert log["http_status"] is None
    assert log["error"].startswith(f"refused: {host} resolves to ")
    assert "127.0.0.1" in log["error"] or "::1" in log["error"]  # localhost may resolve to ::1 first
    assert "FLAGYARD_WEBHOOK_ALLOW_PRIVATE" in log["error"]
    assert receiver.requests == []


def test_sustained_failures__subscription_disabled_audited_reenabled_by_patch(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/status/500"), ["flag.toggled"])
    for enabled in (True, False, True):
        toggle(client, enabled)
    w = worker(
        app,
        settings,
        webhook_disable_after_failures=2,
        webhook_disable_after_seconds=0,
        webhook_max_attempts=5,
        webhook_concurrency_per_subscription=3,
    )
    # The first failure is retried; the second disables the subscription: it and every other pending
    # delivery of the subscription fail (the first one too, though it had been scheduled for a retry).
    assert sorted(w.run_once()) == ["failed", "failed", "retrying"]
    sub = client.get(f"{W}/{created['id']}").json()
    assert sub["enabled"] is False
    assert "2 consecutive failed" in sub["disabled_reason"]
    assert [d["status"] for d in deliveries(client, created["id"])] == ["failed"] * 3
    assert w.run_once(now=later(86400)) == []  # a disabled subscription gets nothing
    toggle(client, False)
    assert rows(engine, "SELECT count(*) FROM webhook_deliveries")[0][0] == 3  # none while disabled
    [entry] = client.get("/api/v1/projects/shop/audit?resource_type=webhook&action=disabled").json()["items"]
    assert entry["actor_key_id"] is None
    assert entry["resource_key"] == str(created["id"])
    r = client.patch(f"{W}/{created['id']}", json={"enabled": True, "url": receiver.url("/ok")})
    assert r.status_code == 200
    assert (r.json()["enabled"], r.json()["consecutive_failures"], r.json()["disabled_reason"]) == (
        True,
        0,
        None,
    )
    toggle(client, True)
    assert "delivered" in w.run_once(now=later(86400))


def test_failures__disable_only_once_they_last(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/status/500"), ["flag.toggled"])
    for enabled in (True, False, True):
        toggle(client, enabled)
    w = worker(
        app,
        settings,
        webhook_disable_after_failures=2,
        webhook_disable_after_seconds=3600,
        webhook_backoff_base_seconds=60,
        webhook_max_attempts=10,
        webhook_concurrency_per_subscription=3,
    )
    assert w.run_once() == ["retrying"] * 3  # a burst of 3 failures within a second: not sustained
    assert client.get(f"{W}/{created['id']}").json()["consecutive_failures"] == 3
    assert client.get(f"{W}/{created['id']}").json()["enabled"] is True
    outcomes = w.run_once(now=later(3601))  # still failing an hour later: disabled
    assert sorted(outcomes) == ["failed", "failed", "failed"]
    sub = client.get(f"{W}/{created['id']}").json()
    assert sub["enabled"] is False
    assert "over at least 3600 s" in sub["disabled_reason"]


def test_success__ends_the_failure_streak(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/fail/1"), ["flag.toggled"])
    toggle(client)
    w = worker(app, settings, webhook_disable_after_failures=2, webhook_disable_after_seconds=0)
    assert w.run_once() == ["retrying"]
    assert w.run_once(now=later(3600)) == ["delivered"]
    sub = client.get(f"{W}/{created['id']}").json()
    assert (sub["enabled"], sub["consecutive_failures"]) == (True, 0)


def test_send_test_event__delivered_and_logged(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    created = subscribe(client, receiver.url("/ok"), ["flag.toggled"])
    r = client.post(f"{W}/{created['id']}/test")
    assert r.status_code == 202
    assert r.json()["event"] == "webhook.test"
    assert worker(app, settings).run_once() == ["delivered"]
    [request] = receiver.received("/ok")
    assert Webhook(created["secret"]).verify(request.body, request.headers)["type"] == "webhook.test"
    [log] = deliveries(client, created["id"])
    assert (log["id"], log["event"], log["status"]) == (r.json()["delivery_id"], "webhook.test", "delivered")


def test_dead_receiver__write_commits_delivery_waits(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, "http://127.0.0.1:9/nobody-listens", ["flag.toggled"])
    toggle(client)  # 200: the receiver is never contacted by the request
    r = client.get("/api/v1/projects/shop/flags/checkout/environments/prod")
    assert r.json()["enabled"] is True
    assert worker(app, settings).run_once() == ["retrying"]
    [log] = deliveries(client, created["id"])
    assert log["status"] == "pending"
    assert log["error"].startswith("ConnectError")


def test_rotated_secret__signs_the_next_attempt(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/ok"), ["flag.toggled"])
    new = client.post(f"{W}/{created['id']}/rotate-secret").json()["secret"]
    toggle(client)
    worker(app, settings).run_once()
    [request] = receiver.received("/ok")
    Webhook(new).verify(request.body, request.headers)
    with pytest.raises(Exception, match=r"[Ss]ignature"):
        Webhook(created["secret"]).verify(request.body, request.headers)


def test_secret__never_in_reads_audit_logs_or_database_in_clear(
    app: FastAPI,
    settings: Settings,
    client: TestClient,
    api: Api,
    receiver: Receiver,
    engine: sa.Engine,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api.project()
    api.flag()
    caplog.set_level(logging.DEBUG)
    r = client.post(
        W, json={"url": receiver.url("/ok"), "events": ["flag.toggled"]}, headers={"Idempotency-Key": "s1"}
    )
    created = r.json()
    rotated = client.post(f"{W}/{created['id']}/rotate-secret", headers={"Idempotency-Key": "s2"}).json()
    toggle(client)
    worker(app, settings).run_once()
    assert rows(engine, "SELECT count(*) FROM idempotency_records")[0][0] == 2  # both kept, as 409s
    seen = [
        json.dumps([list(map(str, row)) for row in rows(engine, "SELECT * FROM idempotency_records")]),
        client.get(W).text,
        client.get(f"{W}/{created['id']}").text,
        client.get(f"{W}/{created['id']}/deliveries").text,
        client.get("/api/v1/projects/shop/audit").text,
        caplog.text,
        capsys.readouterr().out,
        json.dumps([list(map(str, row)) for row in rows(engine, "SELECT * FROM webhook_subscriptions")]),
        json.dumps([list(map(str, row)) for row in rows(engine, "SELECT * FROM audit_log")]),
        json.dumps([list(map(str, row)) for row in rows(engine, "SELECT * FROM webhook_deliveries")]),
    ]
    for secret in (created["secret"], rotated["secret"]):
        body = secret.removeprefix("whsec_")
        for text in seen:
            assert body[:12] not in text
    assert "**" in repr(
        Worker(app.state.flagyard.sessions, settings).box.open(  # type: ignore[union-attr]
            rows(engine, "SELECT secret_encrypted FROM webhook_subscriptions")[0][0]
        )
    )


def test_deliveries__paged_newest_first(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/ok"), ["flag.toggled"])
    for enabled in (True, False, True):
        toggle(client, enabled)
    r = client.get(f"{W}/{created['id']}/deliveries?limit=2")
    page = r.json()
    assert len(page["items"]) == 2
    assert page["next_cursor"] is not None
    rest = client.get(f"{W}/{created['id']}/deliveries?limit=2&cursor={page['next_cursor']}").json()
    ids = [d["id"] for d in page["items"] + rest["items"]]
    assert ids == sorted(ids, reverse=True)
    assert len(ids) == 3
    assert client.get(f"{W}/{created['id']}/deliveries?status=delivered").json()["items"] == []


def test_prune__finished_deliveries_past_retention_dropped_pending_kept(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    done = subscribe(client, receiver.url("/ok"), ["flag.toggled"])
    toggle(client)
    w = worker(app, settings)
    w.run_once()
    waiting = subscribe(client, "http://127.0.0.1:9/x", ["flag.toggled"])
    toggle(client, False)
    assert w.prune(later(3600)) == 0
    assert w.prune(later(settings.webhook_retention_hours * 3600 + 60)) == 1  # the one delivered
    assert [d["status"] for d in deliveries(client, done["id"])] == ["pending"]
    assert [d["status"] for d in deliveries(client, waiting["id"])] == ["pending"]


# --- settings, processes, concurrency ---------------------------------------------------------------

GOOD_DB_URL = "postgresql://flagyard:s3cret-pw@db.internal:5432/flagyard"


def production(**overrides: Any) -> Settings:
    return Settings(
        mode="production",
        database_url=GOOD_DB_URL,  # type: ignore[arg-type]
        bootstrap_admin_key="fy_admin_" + secrets.token_urlsafe(32),  # type: ignore[arg-type]
        **overrides,
    )


@pytest.mark.parametrize(
    "key",
    [DEV_WEBHOOK_SECRET_KEY, "k" * 64, secrets.token_urlsafe(32)[:31], "REPLACE_ME"],
    ids=["development-default", "low-entropy", "31-characters", "template-placeholder"],
)
def test_production__weak_webhook_secret_key__refused_without_quoting_it(key: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Settings.from_env(
            mode="production",
            database_url=GOOD_DB_URL,
            bootstrap_admin_key="fy_admin_" + secrets.token_urlsafe(32),
            webhook_secret_key=key,
        )
    assert "FLAGYARD_WEBHOOK_SECRET_KEY" in str(raised.value)
    assert key not in str(raised.value)


def test_production__strong_webhook_secret_key__accepted_and_used() -> None:
    key = secrets.token_urlsafe(32)
    assert production(webhook_secret_key=key).webhook_key() == key
    assert key not in repr(production(webhook_secret_key=key))


def test_production__no_webhook_secret_key__refused() -> None:
    with pytest.raises(ConfigurationError, match="FLAGYARD_WEBHOOK_SECRET_KEY is not set"):
        Settings.from_env(
            mode="production",
            database_url=GOOD_DB_URL,
            bootstrap_admin_key="fy_admin_" + secrets.token_urlsafe(32),
        )


def test_without_a_key__webhooks_answer_503_never_encrypt_with_a_known_one(
    settings: Settings, api: Api
) -> None:
    """Settings built without validation (``model_copy``) in production mode without a key."""
    from contract_helpers import CheckedClient
    from cp_helpers import ADMIN_KEY

    from flagyard.control_plane.main import create_app

    api.project()
    unset = create_app(settings.model_copy(update={"mode": "production", "webhook_secret_key": None}))
    with CheckedClient(unset, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        r = c.post(W, json={"url": "https://example.com/x", "events": ["flag.toggled"]})
    assert r.status_code == 503
    assert "FLAGYARD_WEBHOOK_SECRET_KEY" in r.json()["message"]


def test_in_app_worker__delivers_without_being_driven_and_counts_metrics(
    settings: Settings, api: Api, receiver: Receiver
) -> None:
    from contract_helpers import CheckedClient
    from cp_helpers import ADMIN_KEY

    from flagyard.control_plane.main import create_app

    running = create_app(settings.model_copy(update={"webhook_poll_interval_seconds": 0.1}))
    with CheckedClient(running, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        Api(c).project()
        Api(c).flag()
        created = subscribe(c, receiver.url("/ok"), ["flag.toggled"])
        toggle(c)
        deadline = time.monotonic() + 20
        while not receiver.received("/ok"):
            assert time.monotonic() < deadline, "the in-app worker never delivered"
            time.sleep(0.05)
        while deliveries(c, created["id"])[0]["status"] != "delivered":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        metrics = c.get("/metrics").text
    assert 'flagyard_webhook_deliveries_total{outcome="delivered"} 1.0' in metrics
    assert "flagyard_webhook_deliveries_pending 0.0" in metrics
    assert "flagyard_webhook_delivery_duration_seconds_count 1.0" in metrics


def test_in_app_worker__woken_by_the_commit_not_the_poll(
    settings: Settings, api: Api, receiver: Receiver
) -> None:
    from contract_helpers import CheckedClient
    from cp_helpers import ADMIN_KEY

    from flagyard.control_plane.main import create_app

    # A poll every minute (the bound): what is delivered sooner was found because a commit woke the worker.
    running = create_app(settings.model_copy(update={"webhook_poll_interval_seconds": 60}))
    with CheckedClient(running, headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        Api(c).project()
        Api(c).flag()
        created = subscribe(c, receiver.url("/ok"), ["flag.toggled"])
        deadline = time.monotonic() + 30
        for n, enabled in enumerate((True, False), start=1):
            toggle(c, enabled)  # the first may also meet the worker's start-up look; the second cannot
            while len(receiver.received("/ok")) < n:
                assert time.monotonic() < deadline, "not woken by the commit"
                time.sleep(0.05)
        test = c.post(f"{W}/{created['id']}/test").json()
        while len(receiver.received("/ok")) < 3:
            assert time.monotonic() < deadline, "not woken by the test event"
            time.sleep(0.05)
    types = [Webhook(created["secret"]).verify(q.body, q.headers)["type"] for q in receiver.received("/ok")]
    assert types == ["flag.toggled", "flag.toggled", "webhook.test"]
    assert receiver.received("/ok")[-1].headers["webhook-id"] == f"msg_{test['delivery_id']}"


def test_standalone_worker_process__once__delivers(
    settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/ok"), ["flag.toggled"])
    toggle(client)
    env = {
        **os.environ,
        "FLAGYARD_DATABASE_URL": settings.database_url.get_secret_value(),
        "FLAGYARD_REDIS_URL": settings.redis_url.get_secret_value(),
        "FLAGYARD_WEBHOOK_ALLOW_PRIVATE": "true",
        "FLAGYARD_LOG_LEVEL": "INFO",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "flagyard.control_plane.webhooks", "--once"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    [request] = receiver.received("/ok")
    Webhook(created["secret"]).verify(request.body, request.headers)
    assert '"event": "webhook.attempt"' in proc.stdout or '"event":"webhook.attempt"' in proc.stdout
    assert created["secret"].removeprefix("whsec_")[:12] not in proc.stdout + proc.stderr


def test_claim__at_most_the_per_subscription_concurrency_in_flight(
    app: FastAPI, settings: Settings, client: TestClient, api: Api
) -> None:
    api.project()
    api.flag()
    busy = subscribe(client, "https://example.com/busy", ["flag.toggled"])
    for enabled in (True, False, True, False, True):
        toggle(client, enabled)
    quiet = subscribe(client, "https://example.com/quiet", ["flag.toggled"])
    toggle(client, False)
    w = worker(app, settings, webhook_concurrency_per_subscription=2)
    now = later(1)
    first = w.claim(100, now)
    assert sorted(c.subscription_id for c in first) == [busy["id"], busy["id"], quiet["id"]]
    assert (
        w.claim(100, now) == []
    )  # the busy one has 2 in flight (leased), the quiet one 1 of 2 but no more due
    assert len(w.claim(100, later(3600))) == 3  # leases ended: the slots count as free again


def test_two_workers__claim_disjoint_deliveries(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    for i in range(6):
        subscribe(client, f"https://example.com/{i}", ["flag.toggled"])
    for enabled in (True, False, True, False):
        toggle(client, enabled)
    a, b = (worker(app, settings, webhook_concurrency_per_subscription=4) for _ in range(2))
    now = later(1)
    with ThreadPoolExecutor(2) as pool:
        claims = list(pool.map(lambda w: w.claim(100, now), [a, b, a, b]))
    ids = [c.id for claim in claims for c in claim]
    assert len(ids) == len(set(ids)) == 24  # every delivery claimed once, none twice
    assert a.claim(100, now) == []  # leased: nobody takes them again before the lease ends
    assert len(b.claim(100, later(3600))) == 24  # a dead worker's lease ends: they are taken again


def test_dns_name__connection_to_the_checked_address_with_the_name_as_host(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    if socket.getaddrinfo("localhost", receiver.port, type=socket.SOCK_STREAM)[0][4][0] != "127.0.0.1":
        pytest.skip("localhost resolves to another address first; the receiver listens on 127.0.0.1")
    created = subscribe(client, receiver.url("/ok", host="localhost"), ["flag.toggled"])
    toggle(client)
    assert worker(app, settings).run_once() == ["delivered"]  # the test settings allow private addresses
    [request] = receiver.received("/ok")
    assert request.headers["host"] == f"localhost:{receiver.port}"
    assert request.headers["user-agent"] == "Flagyard-Webhooks/1"
    Webhook(created["secret"]).verify(request.body, request.headers)


def test_prune__beyond_the_per_subscription_count__oldest_finished_dropped(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    created = subscribe(client, "https://example.com/x", ["flag.toggled"])
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO webhook_deliveries (subscription_id, event, payload, status, completed_at)"
                " SELECT :id, 'flag.toggled', '{}', 'delivered', now() FROM generate_series(1, :n)"
            ),
            {"id": created["id"], "n": LOG_KEEP_PER_SUBSCRIPTION + 5},
        )
    assert worker(app, settings).prune(later(0)) == 5
    kept = rows(engine, "SELECT min(id), count(*) FROM webhook_deliveries")[0]
    assert tuple(kept) == (6, LOG_KEEP_PER_SUBSCRIPTION)  # the newest are kept


def test_scheduled_change_applied_and_failed__delivered_as_their_events(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    """The scheduler's outcomes reach subscribers through the same audit-derived path as direct changes."""
    api.project()
    api.flag()
    created = subscribe(client, receiver.url("/ok"), ["scheduled_change.applied", "scheduled_change.failed"])
    schedules = "/api/v1/projects/shop/environments/prod/scheduled-changes"
    soon = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()
    ok = client.post(
        schedules, json={"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "apply_at": soon}
    )
    assert ok.status_code == 201, ok.text
    doomed = client.post(
        schedules,
        json={
            "kind": "env_config",
            "target": "checkout",
            "body": {"default_variant": "on"},
            "apply_at": soon,
        },
    )
    assert doomed.status_code == 201, doomed.text
    # Someone changes the field the second one writes: at its time it fails with a conflict.
    r = client.patch(
        "/api/v1/projects/shop/flags/checkout/environments/prod",
        json={"default_variant": "on"},
        headers={"If-Match": '"1"'},
    )
    assert r.status_code == 200, r.text
    state = app.state.flagyard
    outcomes = run_once(state.sessions, state.dispatcher, now=later(600), metrics=state.metrics)
    assert sorted(o.status for o in outcomes) == ["applied", "failed"]

    assert (
        sorted(worker(app, settings, webhook_concurrency_per_subscription=2).run_once()) == ["delivered"] * 2
    )
    verified = [Webhook(created["secret"]).verify(q.body, q.headers) for q in receiver.received("/ok")]
    by_type = {v["type"]: v["data"] for v in verified}
    assert set(by_type) == {"scheduled_change.applied", "scheduled_change.failed"}
    assert by_type["scheduled_change.applied"]["key"] == str(ok.json()["id"])
    assert by_type["scheduled_change.applied"]["environment"] == "prod"
    assert by_type["scheduled_change.failed"]["key"] == str(doomed.json()["id"])


def test_change_request_opened_approved_applied__delivered_as_their_events(
    app: FastAPI, settings: Settings, client: TestClient, api: Api, receiver: Receiver
) -> None:
    api.project()
    api.flag()
    env = "/api/v1/projects/shop/environments/prod"
    r = client.patch(
        env, json={"approvals_required": 1}, headers={"If-Match": client.get(env).headers["etag"]}
    )
    assert r.status_code == 200, r.text
    reviewer = client.post("/api/v1/api-keys", json={"name": "r", "role": "writer", "owner": "reviewer"})
    assert reviewer.status_code == 201, reviewer.text
    events = ["change_request.opened", "change_request.approved", "change_request.applied"]
    created = subscribe(client, receiver.url("/ok"), events)
    body = {"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "title": "on"}
    cr = client.post(f"{env}/change-requests", json=body)
    assert cr.status_code == 201, cr.text
    path = f"{env}/change-requests/{cr.json()['id']}"
    approved = client.post(
        f"{path}/approve",
        json={"revision": 1},
        headers={"Authorization": f"Bearer {reviewer.json()['key']}"},
    )
    assert approved.status_code == 200, approved.text
    applied = client.post(f"{path}/apply", json={})
    assert applied.status_code == 200, applied.text

    assert (
        sorted(worker(app, settings, webhook_concurrency_per_subscription=3).run_once()) == ["delivered"] * 3
    )
    verified = [Webhook(created["secret"]).verify(q.body, q.headers) for q in receiver.received("/ok")]
    assert sorted(v["type"] for v in verified) == sorted(events)
    assert {v["data"]["key"] for v in verified} == {str(cr.json()["id"])}
