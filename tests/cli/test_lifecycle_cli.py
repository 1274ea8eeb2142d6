"""``flagyard flags`` lifecycle commands against a real control plane (uvicorn over TCP, PostgreSQL,
Redis): owner/kind/removal date on create and update, archive and unarchive, the stale report."""

from __future__ import annotations

from admin_cli_stack import Cli


def test_flags_create_update__lifecycle_options__stored_and_shown(cli: Cli, project: str) -> None:
    created = cli.json(
        "flags", "create", "checkout", "-p", project, "--owner", "payments", "--removal-date", "2027-06-30"
    )
    assert (created["owner"], created["kind"], created["removal_date"]) == (
        "payments",
        "temporary",
        "2027-06-30",
    )

    updated = cli.json(
        "flags", "update", "checkout", "-p", project, "--kind", "permanent", "--no-removal-date"
    )

    assert (updated["owner"], updated["kind"], updated["removal_date"]) == ("payments", "permanent", None)
    assert updated["version"] == 2
    table = cli.ok("flags", "list", "-p", project).stdout
    assert "payments" in table
    assert "permanent" in table


def test_flags_update__bad_removal_date__refused_with_its_pointer(cli: Cli, project: str) -> None:
    cli.ok("flags", "create", "checkout", "-p", project)

    result = cli.run("flags", "update", "checkout", "-p", project, "--removal-date", "2027-02-30")

    assert result.exit_code != 0
    assert "/removal_date" in result.stderr
    assert cli.json("flags", "show", "checkout", "-p", project)["version"] == 1


def test_flags_archive_unarchive__hidden_then_listed_again(cli: Cli, project: str) -> None:
    cli.ok("flags", "create", "checkout", "-p", project)
    cli.ok("flags", "create", "other", "-p", project)

    note = cli.ok("flags", "archive", "checkout", "-p", project, "-m", "done").stderr

    assert "archived flag checkout (version 2)" in note
    assert [f["key"] for f in cli.json("flags", "list", "-p", project)] == ["other"]
    archived = cli.json("flags", "list", "-p", project, "--archived", "true")
    assert [(f["key"], f["archived"]) for f in archived] == [("checkout", True)]
    refused = cli.run("flags", "toggle", "checkout", "on", "-p", project, "-e", "prod")
    assert refused.exit_code != 0
    assert "archived" in refused.stderr

    cli.ok("flags", "unarchive", "checkout", "-p", project)

    assert [f["key"] for f in cli.json("flags", "list", "-p", project)] == ["checkout", "other"]
    assert [v["action"] for v in cli.json("flags", "versions", "checkout", "-p", project)][:2] == [
        "unarchived",
        "archived",
    ]


def test_flags_stale__past_removal_date__listed_with_reason(cli: Cli, project: str) -> None:
    cli.ok("flags", "create", "overdue", "-p", project, "--removal-date", "2020-01-01", "--owner", "ana")
    cli.ok("flags", "create", "fresh", "-p", project)  # never evaluated, but changed just now
    cli.ok("flags", "create", "kept", "-p", project, "--kind", "permanent", "--removal-date", "2020-01-01")

    stale = cli.json("flags", "stale", "-p", project, "-e", "prod", "--evaluated-days", "7")
    table = cli.ok("flags", "stale", "-p", project, "-e", "prod").stdout

    assert [(f["key"], f["owner"], f["reasons"]) for f in stale] == [
        ("overdue", "ana", ["past_removal_date"])
    ]
    assert "past_removal_date" in table
    bad = cli.run("flags", "stale", "-p", project, "-e", "prod", "--changed-days", "0")
    assert bad.exit_code != 0
