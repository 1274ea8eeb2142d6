"""Change requests and approval policies on the real stack (PostgreSQL, Redis): every direct route past a
policy refused, the request's life (diff, reviews, apply as its author, audit), and the bypass attempts
refused: self-approval (same key, same owner, rotation chain), stale base, editing after approval, a
stale review, readers, a writer lowering the policy, two applies at once, scheduling directly.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from cp_helpers import Api, auth, rows
from fastapi import FastAPI
from fastapi.testclient import TestClient

from flagyard.control_plane.scheduler import Outcome, run_once
from flagyard.control_plane.services import change_requests

P = "/api/v1/projects/shop"
E = f"{P}/environments/prod"
R = f"{E}/change-requests"
F = f"{P}/flags/checkout"


def _key(client: TestClient, role: str = "writer", owner: str = "") -> tuple[int, str]:
    r = client.post("/api/v1/api-keys", json={"name": f"{role} {owner}", "role": role, "owner": owner})
    assert r.status_code == 201, r.text
    return int(r.json()["id"]), str(r.json()["key"])


def _policy(client: TestClient, n: int, env: str = "prod") -> None:
    path = f"{P}/environments/{env}"
    r = client.patch(
        path, json={"approvals_required": n}, headers={"If-Match": client.get(path).headers["etag"]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["approvals_required"] == n


@pytest.fixture
def shop(api: Api, client: TestClient) -> Api:
    api.project()
    api.flag()
    _policy(client, 2)
    return api


@pytest.fixture
def people(client: TestClient, shop: Api) -> dict[str, tuple[int, str]]:
    return {
        "alice": _key(client, owner="alice@example.com"),
        "bob": _key(client, owner="bob@example.com"),
        "carol": _key(client, owner="Carol"),
    }


def _as(people: dict[str, tuple[int, str]], who: str) -> dict[str, str]:
    return auth(people[who][1])


def _request(client: TestClient, headers: dict[str, str], **body: Any) -> dict[str, Any]:
    payload = {"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "title": "turn it on"}
    r = client.post(R, json={**payload, **body}, headers=headers)
    assert r.status_code == 201, r.text
    return dict(r.json())


def _approve(client: TestClient, headers: dict[str, str], cr: dict[str, Any], revision: int = 1) -> Any:
    return client.post(f"{R}/{cr['id']}/approve", json={"revision": revision}, headers=headers)


def _approved(client: TestClient, people: dict[str, tuple[int, str]], **body: Any) -> dict[str, Any]:
    cr = _request(client, _as(people, "alice"), **body)
    assert _approve(client, _as(people, "bob"), cr).status_code == 200
    r = _approve(client, _as(people, "carol"), cr)
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "approved"
    return dict(r.json())


def _enabled(client: TestClient) -> bool:
    return bool(client.get(f"{F}/environments/prod").json()["enabled"])


# --- the policy --------------------------------------------------------------------------------


def test_policy_off__direct_writes_work(client: TestClient, api: Api) -> None:
    api.project()
    api.flag()
    assert client.get(E).json()["approvals_required"] == 0
    assert client.post(f"{F}/environments/prod/toggle", json={"enabled": True}).status_code == 200


def test_policy__every_direct_write_reaching_the_environment_is_refused(
    client: TestClient, shop: Api
) -> None:
    shop.segment()
    v1 = client.get(F).json()["version"]
    _policy(client, 0)
    assert client.post(f"{F}/environments/prod/toggle", json={"enabled": True}).status_code == 200
    _policy(client, 2)
    # A change that moves only other environments is not the policy's business.
    assert client.post(f"{F}/environments/dev/toggle", json={"enabled": True}).status_code == 200
    refused = [
        client.post(f"{F}/environments/prod/toggle", json={"enabled": False}),
        client.patch(
            f"{F}/environments/prod", json={"default_variant": "on"}, headers={"If-Match": shop.etag(F)}
        ),
        client.post(f"{F}/rollback", json={"version": v1}),
        # A definition change that moves what prod serves (a variant's value).
        client.patch(F, json={"variants": {"on": True, "off": True}}, headers={"If-Match": shop.etag(F)}),
        client.post(f"{F}/archive", json={}),
        client.delete(F, headers={"If-Match": shop.etag(F)}),
        # Segments are project-wide: prod serves them too.
        client.patch(
            f"{P}/segments/beta",
            json={"included": ["u2"]},
            headers={"If-Match": shop.etag(f"{P}/segments/beta")},
        ),
        # Scheduling is not a way around it.
        client.post(
            f"{E}/scheduled-changes",
            json={
                "kind": "toggle",
                "target": "checkout",
                "body": {"enabled": False},
                "apply_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            },
        ),
        # Nor is an import into the environment.
        client.post(
            f"{E}/import",
            content=b'{"flags": {"checkout": {"state": "ENABLED", "variants": {"on": true, "off": false}, '
            b'"defaultVariant": "on"}}}',
            params={"format": "flagd"},
            headers={"Content-Type": "application/json"},
        ),
        # Nor a new flag configured in it.
        client.post(
            f"{P}/flags",
            json={
                "key": "other",
                "name": "Other",
                "type": "boolean",
                "variants": {"on": True, "off": False},
                "environments": {"prod": {"enabled": True}},
            },
        ),
    ]
    for r in refused:
        assert (r.status_code, r.json().get("code")) == (409, "approval_required"), (r.request.url, r.text)
    assert client.get(F).json()["environments"]["prod"]["enabled"] is True
    assert client.get(f"{P}/segments/beta").json()["included"] == ["u1"]
    # A new flag served off in prod changes nothing the policy guards.
    assert shop.flag(key="fresh")["environments"]["prod"]["enabled"] is False


def test_policy__set_at_creation(client: TestClient, shop: Api) -> None:
    r = client.post(f"{P}/environments", json={"key": "eu", "name": "EU", "approvals_required": 1})
    assert r.status_code == 201, r.text
    assert r.json()["approvals_required"] == 1
    r = client.post(f"{F}/environments/eu/toggle", json={"enabled": True})
    assert (r.status_code, r.json()["code"]) == (409, "approval_required")


def test_policy__only_an_admin_sets_it__audited(client: TestClient, shop: Api) -> None:
    _, writer = _key(client, "writer")
    r = client.patch(E, json={"approvals_required": 0}, headers={**auth(writer), "If-Match": shop.etag(E)})
    assert r.status_code == 403
    assert client.get(E).json()["approvals_required"] == 2
    r = client.patch(E, json={"approvals_required": 11}, headers={"If-Match": shop.etag(E)})
    assert r.status_code == 422
    assert r.json()["details"][0]["path"] == "/approvals_required"
    # Every change of the policy is audited with its old and new value.
    _policy(client, 10)
    entry = client.get(f"{P}/audit", params={"resource_type": "environment"}).json()["items"][0]
    assert {"op": "replace", "path": "/approvals_required", "old": 2, "value": 10} in entry["diff"]


# --- the request's life ------------------------------------------------------------------------


def test_request__reviewed_then_applied_as_its_author(
    client: TestClient, people: dict[str, tuple[int, str]], engine: sa.Engine
) -> None:
    alice, bob = _as(people, "alice"), _as(people, "bob")
    cr = _request(client, alice)
    assert (cr["status"], cr["revision"], cr["base_version"]) == ("open", 1, 1)
    assert (cr["approvals_required"], cr["approvals"]) == (2, 0)
    assert not _enabled(client)  # the dry run left nothing
    detail = client.get(f"{R}/{cr['id']}").json()
    assert detail["diff"] == [
        {"op": "replace", "path": "/environments/prod/enabled", "old": False, "value": True}
    ]
    assert client.post(f"{R}/{cr['id']}/comments", json={"body": "why now?"}, headers=bob).status_code == 201
    assert _approve(client, bob, cr).json()["approvals"] == 1
    # One approval of two: neither the author nor the approver can apply it yet.
    r = client.post(f"{R}/{cr['id']}/apply", json={}, headers=alice)
    assert (r.status_code, r.json()["code"]) == (409, "approval_required")
    assert _approve(client, _as(people, "carol"), cr).json()["status"] == "approved"
    # Under a policy only the author or an approver applies it.
    bystander = auth(_key(client, owner="dora")[1])
    assert client.post(f"{R}/{cr['id']}/apply", json={}, headers=bystander).status_code == 403
    r = client.post(f"{R}/{cr['id']}/apply", json={}, headers=bob)
    assert r.status_code == 200, r.text
    applied = r.json()
    assert (applied["status"], applied["applied_version"]) == ("applied", 2)
    assert applied["applied_by_key_id"] == people["bob"][0]
    assert _enabled(client)
    # The new version is the author's change.
    version = client.get(f"{F}/versions/2").json()
    assert version["author_key_id"] == people["alice"][0]
    assert version["comment"] == f"change request #{cr['id']}: turn it on"
    audit = rows(
        engine,
        "SELECT resource_type, action, actor_key_id FROM audit_log "
        "WHERE resource_type IN ('change_request', 'flag') AND version IS DISTINCT FROM 1 ORDER BY id",
    )
    steps = [(a.resource_type, a.action, a.actor_key_id) for a in audit]
    a, b, c = (people[n][0] for n in ("alice", "bob", "carol"))
    assert steps[:4] == [
        ("change_request", "created", a),
        ("change_request", "commented", b),
        ("change_request", "approved", b),
        ("change_request", "approved", c),
    ]
    # One transaction: the change, as its author, and the request's apply, by the approver who applied it.
    assert sorted(steps[4:]) == [("change_request", "applied", b), ("flag", "toggled", a)]
    by_type = client.get(f"{P}/audit", params={"resource_type": "change_request"}).json()["items"]
    assert len(by_type) == 5
    # Final: applied once.
    assert client.post(f"{R}/{cr['id']}/apply", json={}, headers=alice).status_code == 409
    listed = client.get(R, params={"status": "applied"}).json()["items"]
    assert [x["id"] for x in listed] == [cr["id"]]


def test_request__bad_body__422_under_body(client: TestClient, people: dict[str, tuple[int, str]]) -> None:
    r = client.post(
        R,
        json={"kind": "env_config", "target": "checkout", "body": {"default_variant": "nope"}, "title": "x"},
        headers=_as(people, "alice"),
    )
    assert r.status_code == 422
    assert all(d["path"].startswith("/body") for d in r.json()["details"])
    r = client.post(
        R,
        json={"kind": "toggle", "target": "checkout", "body": {"enabled": "x", "extra": 1}, "title": "x"},
        headers=_as(people, "alice"),
    )
    assert r.status_code == 422
    assert {d["path"] for d in r.json()["details"]} == {"/body/enabled", "/body/extra"}
    reader = _key(client, "reader")[1]
    assert (
        client.post(
            R,
            json={"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "title": "x"},
            headers=auth(reader),
        ).status_code
        == 403
    )


# --- bypass attempts ---------------------------------------------------------------------------


def test_self_approval__same_key_same_owner_rotation_chain__refused(
    client: TestClient, people: dict[str, tuple[int, str]]
) -> None:
    cr = _request(client, _as(people, "alice"))
    r = _approve(client, _as(people, "alice"), cr)
    assert (r.status_code, r.json()["code"]) == (403, "self_approval")
    # Another key of the same owner (trimmed, any case).
    _, alias = _key(client, owner="  ALICE@example.com ")
    r = _approve(client, auth(alias), cr)
    assert (r.status_code, r.json()["code"]) == (403, "self_approval")
    # An ownerless key's rotation successor is the same person; so is its predecessor.
    solo_id, solo = _key(client)
    mine = _request(client, auth(solo))
    r = client.post(f"/api/v1/api-keys/{solo_id}/rotate", json={})
    assert r.status_code == 201, r.text
    successor = r.json()["key"]
    r = _approve(client, auth(successor), mine)
    assert (r.status_code, r.json()["code"]) == (403, "self_approval")
    theirs = _request(client, auth(successor))
    r = _approve(client, auth(solo), theirs)
    assert (r.status_code, r.json()["code"]) == (403, "self_approval")
    # A rotated owned key keeps its owner.
    r = client.post(f"/api/v1/api-keys/{people['bob'][0]}/rotate", json={})
    assert r.json()["owner"] == "bob@example.com"
    # Two keys of one other owner count once.
    assert _approve(client, _as(people, "bob"), cr).status_code == 200
    r = _approve(client, auth(r.json()["key"]), cr)
    assert r.status_code == 409
    assert client.get(f"{R}/{cr['id']}").json()["approvals"] == 1
    # Readers cannot approve.
    r = _approve(client, auth(_key(client, "reader", owner="dora")[1]), cr)
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


def test_editing_after_approval__clears_approvals(
    client: TestClient, people: dict[str, tuple[int, str]]
) -> None:
    alice = _as(people, "alice")
    cr = _approved(client, people)
    r = client.patch(
        f"{R}/{cr['id']}",
        json={"body": {"enabled": True}, "title": "turn it on, really"},
        headers={**alice, "If-Match": f'"{cr["revision"]}"'},
    )
    assert r.status_code == 200, r.text
    edited = r.json()
    assert (edited["status"], edited["revision"], edited["approvals"]) == ("open", 2, 0)
    r = client.post(f"{R}/{cr['id']}/apply", json={}, headers=alice)
    assert (r.status_code, r.json()["code"]) == (409, "approval_required")
    assert not _enabled(client)
    # An approval of the revision the reviewer saw does not count for the edited one.
    r = _approve(client, _as(people, "bob"), cr, revision=1)
    assert r.status_code == 409
    assert r.json()["details"][0]["path"] == "/revision"
    # Only the author edits, and only with the current revision.
    r = client.patch(
        f"{R}/{cr['id']}", json={"title": "x"}, headers={**_as(people, "bob"), "If-Match": '"2"'}
    )
    assert r.status_code == 403
    r = client.patch(f"{R}/{cr['id']}", json={"title": "x"}, headers={**alice, "If-Match": '"1"'})
    assert r.status_code == 412


def test_stale_base__apply_refused_until_rebased_and_reapproved(
    client: TestClient, people: dict[str, tuple[int, str]], engine: sa.Engine
) -> None:
    alice = _as(people, "alice")
    stale = _approved(client, people)
    other = _approved(client, people, kind="env_config", body={"enabled": True, "default_variant": "on"})
    assert client.post(f"{R}/{other['id']}/apply", json={}, headers=alice).status_code == 200
    version = client.get(F).json()["version"]
    r = client.post(f"{R}/{stale['id']}/apply", json={}, headers=alice)
    assert (r.status_code, r.json()["code"]) == (409, "rebase_required")
    assert [d["path"] for d in r.json()["details"]] == ["/environments/prod/enabled"]
    assert client.get(F).json()["version"] == version  # nothing written
    assert client.get(f"{R}/{stale['id']}").json()["status"] == "approved"
    # Rebasing is an edit: a new revision on the current state, approvals cleared.
    r = client.post(f"{R}/{stale['id']}/rebase", headers=alice)
    assert r.status_code == 200, r.text
    assert (r.json()["revision"], r.json()["base_version"], r.json()["approvals"]) == (2, version, 0)
    assert client.post(f"{R}/{stale['id']}/apply", json={}, headers=alice).status_code == 409
    actions = [
        a.action
        for a in rows(
            engine,
            "SELECT action FROM audit_log WHERE resource_type = 'change_request' AND resource_key = :k "
            "ORDER BY id",
            k=str(stale["id"]),
        )
    ]
    assert actions == ["created", "approved", "approved", "rebased"]


def test_reject_and_withdraw__final(client: TestClient, people: dict[str, tuple[int, str]]) -> None:
    alice, bob = _as(people, "alice"), _as(people, "bob")
    rejected = _request(client, alice)
    r = client.post(f"{R}/{rejected['id']}/reject", json={"revision": 1, "comment": "no"}, headers=bob)
    assert r.json()["status"] == "rejected"
    assert _approve(client, _as(people, "carol"), rejected).status_code == 409
    assert client.post(f"{R}/{rejected['id']}/apply", json={}, headers=alice).status_code == 409
    withdrawn = _approved(client, people)
    assert client.post(f"{R}/{withdrawn['id']}/withdraw", headers=bob).status_code == 403
    assert client.post(f"{R}/{withdrawn['id']}/withdraw", headers=alice).json()["status"] == "withdrawn"
    assert client.post(f"{R}/{withdrawn['id']}/apply", json={}, headers=alice).status_code == 409
    r = client.patch(f"{R}/{withdrawn['id']}", json={"title": "x"}, headers={**alice, "If-Match": '"1"'})
    assert r.status_code == 409
    assert not _enabled(client)


def _run(app: FastAPI, now: datetime) -> list[Outcome]:
    state = app.state.flagyard
    return run_once(state.sessions, state.dispatcher, now=now, metrics=state.metrics)


def test_apply_at__scheduler_applies_it_then(client: TestClient, people: dict[str, tuple[int, str]]) -> None:
    alice = _as(people, "alice")
    cr = _approved(client, people)
    at = datetime.now(UTC) + timedelta(hours=1)
    r = client.post(f"{R}/{cr['id']}/apply", json={"apply_at": at.isoformat()}, headers=alice)
    assert r.status_code == 202, r.text
    assert r.json()["status"] == "scheduled"
    schedule_id = r.json()["scheduled_change_id"]
    # Scheduled: no longer editable, its schedule cancelled only by withdrawing the request.
    assert (
        client.patch(f"{R}/{cr['id']}", json={"title": "x"}, headers={**alice, "If-Match": '"1"'}).status_code
        == 409
    )
    assert client.post(f"{E}/scheduled-changes/{schedule_id}/cancel").status_code == 409
    assert _run(client.app, at - timedelta(minutes=1)) == []  # type: ignore[arg-type]
    assert not _enabled(client)
    [outcome] = _run(client.app, at + timedelta(seconds=1))  # type: ignore[arg-type]
    assert (outcome.status, outcome.version) == ("applied", 2)
    assert _enabled(client)
    done = client.get(f"{R}/{cr['id']}").json()
    assert (done["status"], done["applied_version"]) == ("applied", 2)
    assert client.get(f"{F}/versions/2").json()["author_key_id"] == people["alice"][0]


def test_apply_at__base_moved_before_its_time__fails_without_writing(
    client: TestClient, people: dict[str, tuple[int, str]]
) -> None:
    alice = _as(people, "alice")
    cr = _approved(client, people)
    at = datetime.now(UTC) + timedelta(hours=1)
    assert (
        client.post(f"{R}/{cr['id']}/apply", json={"apply_at": at.isoformat()}, headers=alice).status_code
        == 202
    )
    other = _approved(client, people, kind="env_config", body={"default_variant": "on"})
    assert client.post(f"{R}/{other['id']}/apply", json={}, headers=alice).status_code == 200
    [outcome] = _run(client.app, at + timedelta(seconds=1))  # type: ignore[arg-type]
    assert (outcome.status, outcome.failure_code) == ("failed", "rebase_required")
    assert not _enabled(client)
    assert client.get(f"{R}/{cr['id']}").json()["status"] == "failed"


def test_two_applies_at_once__one_applies(client: TestClient, people: dict[str, tuple[int, str]]) -> None:
    cr = _approved(client, people)
    statuses: list[int] = []

    def apply(who: str) -> None:
        statuses.append(client.post(f"{R}/{cr['id']}/apply", json={}, headers=_as(people, who)).status_code)

    threads = [threading.Thread(target=apply, args=(who,)) for who in ("alice", "bob", "carol")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 409, 409]
    assert client.get(F).json()["version"] == 2


def test_apply_at__policy_raised_before_its_time__fails_unapplied(
    client: TestClient, people: dict[str, tuple[int, str]]
) -> None:
    cr = _approved(client, people)
    at = datetime.now(UTC) + timedelta(hours=1)
    r = client.post(f"{R}/{cr['id']}/apply", json={"apply_at": at.isoformat()}, headers=_as(people, "alice"))
    assert r.status_code == 202
    _policy(client, 3)
    [outcome] = _run(client.app, at + timedelta(seconds=1))  # type: ignore[arg-type]
    assert (outcome.status, outcome.failure_code) == ("failed", "approval_required")
    assert not _enabled(client)
    assert client.get(f"{R}/{cr['id']}").json()["status"] == "failed"


def test_withdraw__cancels_its_scheduled_apply(
    client: TestClient, people: dict[str, tuple[int, str]]
) -> None:
    alice = _as(people, "alice")
    cr = _approved(client, people)
    at = datetime.now(UTC) + timedelta(hours=1)
    schedule = client.post(f"{R}/{cr['id']}/apply", json={"apply_at": at.isoformat()}, headers=alice).json()
    assert client.post(f"{R}/{cr['id']}/withdraw", headers=alice).json()["status"] == "withdrawn"
    change = client.get(f"{E}/scheduled-changes/{schedule['scheduled_change_id']}").json()
    assert change["status"] == "cancelled"
    assert _run(client.app, at + timedelta(seconds=1)) == []  # type: ignore[arg-type]
    assert not _enabled(client)


def test_segment_request__needs_the_strictest_policy_of_the_project(
    client: TestClient, people: dict[str, tuple[int, str]], api: Api
) -> None:
    api.segment()
    _policy(client, 1, env="dev")
    dev_requests = f"{P}/environments/dev/change-requests"
    r = client.post(
        dev_requests,
        json={"kind": "segment", "target": "beta", "body": {"included": ["u2"]}, "title": "widen"},
        headers=_as(people, "alice"),
    )
    assert r.status_code == 201, r.text
    cr = r.json()
    assert cr["approvals_required"] == 2  # prod's policy: a segment reaches every environment
    r = client.get(f"{dev_requests}/{cr['id']}").json()
    assert r["diff"] == [{"op": "replace", "path": "/included/0", "old": "u1", "value": "u2"}]
    r = client.post(f"{dev_requests}/{cr['id']}/approve", json={"revision": 1}, headers=_as(people, "bob"))
    assert r.json()["status"] == "open"
    r = client.post(f"{dev_requests}/{cr['id']}/approve", json={"revision": 1}, headers=_as(people, "carol"))
    assert r.json()["status"] == "approved"
    r = client.post(f"{dev_requests}/{cr['id']}/apply", json={}, headers=_as(people, "alice"))
    assert r.status_code == 200, r.text
    assert client.get(f"{P}/segments/beta").json()["included"] == ["u2"]


def test_rollback_request__diff_shows_what_it_restores(
    client: TestClient, people: dict[str, tuple[int, str]]
) -> None:
    first = _approved(client, people)
    assert client.post(f"{R}/{first['id']}/apply", json={}, headers=_as(people, "alice")).status_code == 200
    cr = _request(client, _as(people, "alice"), kind="rollback", body={"version": 1}, title="undo")
    diff = client.get(f"{R}/{cr['id']}").json()["diff"]
    assert {"op": "replace", "path": "/environments/prod/enabled", "old": True, "value": False} in diff


def test_key_owner__set_by_admins_only_and_audited(
    client: TestClient, people: dict[str, tuple[int, str]], engine: sa.Engine
) -> None:
    dora_id, dora = _key(client)
    r = client.patch(f"/api/v1/api-keys/{dora_id}", json={"owner": "x"}, headers=_as(people, "bob"))
    assert r.status_code == 403
    assert client.patch(f"/api/v1/api-keys/{dora_id}", json={"owner": "x" * 201}).status_code == 422
    cr = _request(client, _as(people, "alice"))
    r = client.patch(f"/api/v1/api-keys/{dora_id}", json={"owner": " alice@EXAMPLE.com"})
    assert (r.status_code, r.json()["owner"]) == (200, "alice@EXAMPLE.com")
    r = _approve(client, auth(dora), cr)
    assert (r.status_code, r.json()["code"]) == (403, "self_approval")
    audit = rows(
        engine,
        "SELECT action FROM audit_log WHERE resource_type = 'api_key' AND resource_key = :k",
        k=str(dora_id),
    )
    assert [a.action for a in audit] == ["created", "updated"]


def test_metrics__requests_by_status(client: TestClient, people: dict[str, tuple[int, str]]) -> None:
    _approved(client, people)
    _request(client, _as(people, "alice"))
    text = client.get("/metrics").text
    assert 'flagyard_change_requests{status="approved"} 1.0' in text
    assert 'flagyard_change_requests{status="open"} 1.0' in text
    assert 'flagyard_change_requests{status="applied"} 0.0' in text


def test_policy_check__costs_a_flag_write_no_statement(client: TestClient, shop: Api, app: FastAPI) -> None:
    """The policies come with the flag's locking read; only other writers (segments, imports) ask."""
    engine = app.state.flagyard.engine
    seen: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        seen.append(statement)

    sa.event.listen(engine, "before_cursor_execute", record)
    try:
        assert client.post(f"{F}/environments/dev/toggle", json={"enabled": True}).status_code == 200
        assert client.post(f"{F}/environments/prod/toggle", json={"enabled": True}).status_code == 409
    finally:
        sa.event.remove(engine, "before_cursor_execute", record)
    locking = [s for s in seen if "approvals_required" in s]
    assert len(locking) == 2  # one locking read per toggle
    assert all("FOR UPDATE" in s for s in locking), locking


def test_author_revoked__apply_refused_as_a_conflict(
    client: TestClient, people: dict[str, tuple[int, str]]
) -> None:
    cr = _approved(client, people)
    assert client.delete(f"/api/v1/api-keys/{people['alice'][0]}").status_code == 204
    r = client.post(f"{R}/{cr['id']}/apply", json={}, headers=_as(people, "bob"))
    assert r.status_code == 409
    assert "its author" in r.json()["message"]
    assert not _enabled(client)


def test_target_deleted__request_still_readable(
    client: TestClient, people: dict[str, tuple[int, str]], shop: Api
) -> None:
    cr = _request(client, _as(people, "alice"))
    _policy(client, 0)
    assert client.delete(F, headers={"If-Match": shop.etag(F)}).status_code == 204
    shown = client.get(f"{R}/{cr['id']}").json()
    assert (shown["current_version"], shown["diff"]) == (None, [])
    r = client.post(f"{R}/{cr['id']}/apply", json={}, headers=_as(people, "alice"))
    assert r.status_code == 404


def test_bounds__open_requests_per_environment(
    client: TestClient, people: dict[str, tuple[int, str]], engine: sa.Engine
) -> None:
    """The real bound: 999 live requests written directly, one more through the API fits, the next is
    refused; final ones do not count."""
    cap = change_requests.MAX_OPEN_PER_ENVIRONMENT
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO change_requests (project_id, environment_id, title, kind, target_key, payload,"
                " status, base_version, base, author_key_id, author_key_prefix)"
                " SELECT e.project_id, e.id, 't', 'toggle', 'checkout', '{\"enabled\": true}',"
                " CASE WHEN n <= :live THEN 'open' ELSE 'withdrawn' END, 1, '{}', 1, 'fy_admin_x'"
                " FROM environments e, generate_series(1, :total) n WHERE e.key = 'prod'"
            ),
            {"live": cap - 1, "total": cap + 20},
        )
    _request(client, _as(people, "alice"))
    r = client.post(
        R,
        json={"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "title": "one more"},
        headers=_as(people, "alice"),
    )
    assert r.status_code == 422
    assert "MAX_OPEN_PER_ENVIRONMENT" in r.json()["message"]


def test_bounds__events_per_request_and_text_sizes(
    client: TestClient, people: dict[str, tuple[int, str]], engine: sa.Engine
) -> None:
    cr = _request(client, _as(people, "alice"), title="t" * 256, description="d" * 10_000)
    cap = change_requests.MAX_EVENTS_PER_REQUEST
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO change_request_events (request_id, action, revision, body, key_id, key_prefix, owner)"
                " SELECT :id, 'comment', 1, 'x', 1, 'fy_admin_x', 'key:1' FROM generate_series(1, :n)"
            ),
            {"id": cr["id"], "n": cap - 1},
        )
    bob = _as(people, "bob")
    assert (
        client.post(f"{R}/{cr['id']}/comments", json={"body": "c" * 10_000}, headers=bob).status_code == 201
    )
    r = client.post(f"{R}/{cr['id']}/comments", json={"body": "one more"}, headers=bob)
    assert r.status_code == 422
    r = client.post(f"{R}/{cr['id']}/comments", json={"body": "c" * 10_001}, headers=bob)
    assert (r.status_code, r.json()["details"][0]["path"]) == (422, "/body")
    r = client.post(
        R,
        json={"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "title": "t" * 257},
        headers=_as(people, "alice"),
    )
    assert (r.status_code, r.json()["details"][0]["path"]) == (422, "/title")


def test_bounds__body_size(client: TestClient, people: dict[str, tuple[int, str]], api: Api) -> None:
    """A request's body is bounded like every request's (4 MiB); within it, by the direct change's bounds."""
    api.segment()
    big = [f"user-{i:07d}-" + "x" * 40 for i in range(90_000)]  # about 5 MiB as JSON
    r = client.post(
        R,
        json={"kind": "segment", "target": "beta", "body": {"included": big}, "title": "huge"},
        headers=_as(people, "alice"),
    )
    assert r.status_code == 413, r.text
    over = [f"user-{i:07d}" for i in range(50_001)]  # within 4 MiB, past MAX_SEGMENT_TARGETS
    r = client.post(
        R,
        json={"kind": "segment", "target": "beta", "body": {"included": over}, "title": "huge"},
        headers=_as(people, "alice"),
    )
    assert r.status_code == 422, r.text
    assert r.json()["details"][0]["path"].startswith("/body/included")


def test_withdraw__while_a_scheduler_holds_its_schedule__no_deadlock_nothing_applied(
    client: TestClient, people: dict[str, tuple[int, str]], engine: sa.Engine
) -> None:
    alice = _as(people, "alice")
    cr = _approved(client, people)
    at = datetime.now(UTC) + timedelta(hours=1)
    schedule = client.post(f"{R}/{cr['id']}/apply", json={"apply_at": at.isoformat()}, headers=alice).json()
    with engine.connect() as held:  # a scheduler that has claimed the schedule row
        held.execute(
            sa.text("SELECT id FROM scheduled_changes WHERE id = :id FOR UPDATE"),
            {"id": schedule["scheduled_change_id"]},
        )
        assert client.post(f"{R}/{cr['id']}/withdraw", headers=alice).json()["status"] == "withdrawn"
        held.rollback()
    [outcome] = _run(client.app, at + timedelta(seconds=1))  # type: ignore[arg-type]
    assert (outcome.status, outcome.failure_code) == ("failed", "conflict")
    assert not _enabled(client)
    assert client.get(f"{R}/{cr['id']}").json()["status"] == "withdrawn"


def test_schedule_made_before_the_policy__fails_at_its_time(client: TestClient, shop: Api) -> None:
    _policy(client, 0)
    at = datetime.now(UTC) + timedelta(hours=1)
    r = client.post(
        f"{E}/scheduled-changes",
        json={"kind": "toggle", "target": "checkout", "body": {"enabled": True}, "apply_at": at.isoformat()},
    )
    assert r.status_code == 201, r.text
    _policy(client, 2)
    [outcome] = _run(client.app, at + timedelta(seconds=1))  # type: ignore[arg-type]
    assert (outcome.status, outcome.failure_code) == ("failed", "approval_required")
    assert not _enabled(client)
