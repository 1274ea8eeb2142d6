"""``flagyard requests`` (and ``envs update --approvals``, ``keys create --owner``) against a real control
plane (uvicorn over TCP, PostgreSQL, Redis): a policy refuses the direct toggle, the request is approved by
another person and applied as its author; self-approval is refused."""

from __future__ import annotations

from admin_cli_stack import Cli


def _key(cli: Cli, owner: str) -> str:
    created = cli.json("keys", "create", f"{owner} key", "--role", "writer", "--owner", owner)
    assert created["owner"] == owner
    return str(created["key"])


def test_requests__policy_review_apply(cli: Cli, project: str) -> None:
    cli.ok("flags", "create", "checkout", "-p", project)
    env = cli.json("envs", "update", "prod", "-p", project, "--approvals", "1")
    assert env["approvals_required"] == 1
    alice, bob = _key(cli, "alice@example.com"), _key(cli, "bob@example.com")

    refused = cli.run("flags", "toggle", "checkout", "on", "-p", project, "-e", "prod", key=alice)
    assert refused.exit_code != 0
    assert "approval" in refused.stderr

    request = cli.json(
        "requests", "create", "toggle", "checkout", "--on", "-p", project, "-e", "prod", "-t", "launch",
        key=alice,
    )  # fmt: skip
    assert (request["status"], request["approvals_required"]) == ("open", 1)
    rid = str(request["id"])
    shown = cli.json("requests", "show", rid, "-p", project, "-e", "prod", key=bob)
    assert shown["diff"][0]["path"] == "/environments/prod/enabled"

    own = cli.run("requests", "approve", rid, "-p", project, "-e", "prod", key=alice)
    assert own.exit_code != 0
    assert "self_approval" in own.stderr or "its author" in own.stderr

    cli.ok("requests", "comment", rid, "-p", project, "-e", "prod", "-m", "ship it", key=bob)
    approved = cli.json("requests", "approve", rid, "-p", project, "-e", "prod", key=bob)
    assert approved["status"] == "approved"
    listed = cli.ok("requests", "list", "-p", project, "-e", "prod", "--status", "approved").stdout
    assert "launch" in listed

    applied = cli.json("requests", "apply", rid, "-p", project, "-e", "prod", key=alice)
    assert applied["status"] == "applied"
    assert cli.json("keys", "update", str(applied["author_key_id"]), "--owner", "Alice")["owner"] == "Alice"
    flag = cli.json("flags", "show", "checkout", "-p", project)
    assert flag["environments"]["prod"]["enabled"] is True
