"""``flagyard schedule`` against a real control plane (uvicorn over TCP, PostgreSQL, Redis) whose own
scheduler thread applies the changes (``FLAGYARD_SCHEDULER_INTERVAL_SECONDS`` default, 1 s)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from admin_cli_stack import Cli, new_project
from polling_helpers import wait_until

from flagyard.cli.exceptions import InputError
from flagyard.cli.schedules_cmd import parse_time


@pytest.fixture
def project(cli: Cli) -> str:
    key = new_project(cli)
    cli.ok("flags", "create", "checkout", "-p", key)
    return key


def test_schedule_toggle__applied_by_the_running_control_plane(cli: Cli, project: str) -> None:
    change = cli.json(
        "schedule", "create", "toggle", "checkout", "--on", "-p", project, "-e", "prod", "--at", "+2s",
        "-m", "launch",
    )  # fmt: skip
    assert change["status"] == "pending"
    assert change["body"] == {"enabled": True}
    listed = cli.ok("schedule", "list", "-p", project, "-e", "prod").stdout
    assert str(change["id"]) in listed
    assert "pending" in listed

    def applied() -> bool:
        shown = cli.json("schedule", "show", str(change["id"]), "-p", project, "-e", "prod")
        return bool(shown["status"] == "applied")

    wait_until(applied, timeout=20, interval=0.3)
    flag = cli.json("flags", "show", "checkout", "-p", project)
    assert flag["environments"]["prod"]["enabled"] is True
    assert flag["environments"]["dev"]["enabled"] is False
    versions = cli.json("flags", "versions", "checkout", "-p", project)
    assert versions[0]["comment"] == f"scheduled change #{change['id']}: launch"


def test_schedule_reschedule_cancel__listed_by_status(cli: Cli, project: str) -> None:
    change = cli.json(
        "schedule", "create", "env_config", "checkout", "--body", '{"default_variant": "on"}',
        "-p", project, "-e", "dev", "--at", "+1h",
    )  # fmt: skip
    day = (datetime.now(UTC) + timedelta(days=30)).date()
    moved = cli.json(
        "schedule",
        "reschedule",
        str(change["id"]),
        "-p",
        project,
        "-e",
        "dev",
        "--at",
        f"{day}T09:00:00+01:00",
    )
    assert datetime.fromisoformat(moved["apply_at"]) == datetime(day.year, day.month, day.day, 8, tzinfo=UTC)
    cancelled = cli.json("schedule", "cancel", str(change["id"]), "-p", project, "-e", "dev")
    assert cancelled["status"] == "cancelled"
    assert [
        c["id"] for c in cli.json("schedule", "list", "-p", project, "-e", "dev", "--status", "cancelled")
    ] == [change["id"]]
    assert cli.json("schedule", "list", "-p", project, "-e", "dev", "--status", "pending") == []
    again = cli.run("schedule", "cancel", str(change["id"]), "-p", project, "-e", "dev")
    assert again.exit_code == 1
    assert "409" in again.stderr
    assert "cancelled" in again.stderr


def test_schedule_create__refused_with_pointer_or_before_any_request(cli: Cli, project: str) -> None:
    bad = cli.run(
        "schedule", "create", "env_config", "checkout", "--body", '{"default_variant": "purple"}',
        "-p", project, "-e", "dev", "--at", "+1h",
    )  # fmt: skip
    assert bad.exit_code == 1
    assert "/body/default_variant" in bad.stderr
    naive = cli.run(
        "schedule",
        "create",
        "toggle",
        "checkout",
        "--on",
        "-p",
        project,
        "-e",
        "dev",
        "--at",
        "2030-01-01T09:00",
    )
    assert naive.exit_code == 2
    assert "offset" in naive.stderr
    empty = cli.run("schedule", "create", "toggle", "checkout", "-p", project, "-e", "dev", "--at", "+1h")
    assert empty.exit_code == 2
    assert cli.json("schedule", "list", "-p", project, "-e", "dev") == []


def test_parse_time__relative_absolute_and_refused() -> None:
    now = datetime(2027, 1, 1, 12, tzinfo=UTC)
    assert parse_time("+90s", now) == (now + timedelta(seconds=90)).isoformat()
    assert parse_time("+3d", now) == (now + timedelta(days=3)).isoformat()
    assert parse_time("2027-01-31T09:00:00Z") == "2027-01-31T09:00:00+00:00"
    for bad in ("tomorrow", "+5y", "2027-01-31T09:00:00", "+"):
        with pytest.raises(InputError):
            parse_time(bad, now)
