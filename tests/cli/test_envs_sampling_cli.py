"""``flagyard envs update --sample-attributes/--sample-hashed/--no-sampling`` and ``envs show``/``list``
against a real control plane (uvicorn over TCP, PostgreSQL, Redis): the policy round-trips, a list left out
is kept, a bad attribute is refused with its pointer, and the salt is never printed."""

from __future__ import annotations

import sqlalchemy as sa
from admin_cli_stack import Cli, ControlPlane


def salt(cp: ControlPlane, project: str) -> str:
    engine = sa.create_engine(cp.settings.database_url.get_secret_value())
    try:
        with engine.connect() as conn:
            value = conn.execute(
                sa.text(
                    "SELECT e.sampling_salt FROM environments e JOIN projects p ON p.id = e.project_id "
                    "WHERE p.key = :p AND e.key = 'prod'"
                ),
                {"p": project},
            ).scalar_one()
    finally:
        engine.dispose()
    assert isinstance(value, str)
    return value


def test_envs_sampling__set_shown_changed_and_turned_off(cli: Cli, cp: ControlPlane, project: str) -> None:
    env = cli.json(
        "envs", "update", "prod", "-p", project,
        "--sample-attributes", "plan, country", "--sample-hashed", "targeting_key,user.email",
    )  # fmt: skip
    assert env["sampling"] == {"attributes": ["plan", "country"], "hashed": ["targeting_key", "user.email"]}
    secret = salt(cp, project)

    shown = cli.ok("envs", "show", "prod", "-p", project).stdout
    assert "plan, country; hashed: targeting_key, user.email" in shown
    listed = cli.ok("envs", "list", "-p", project).stdout
    assert "plan, country; hashed: targeting_key, user.email" in listed
    assert "off" in listed  # dev does not sample

    # A list left out is kept; '' empties one.
    env = cli.json("envs", "update", "prod", "-p", project, "--sample-hashed", "")
    assert env["sampling"] == {"attributes": ["plan", "country"], "hashed": []}
    env = cli.json("envs", "update", "prod", "-p", project, "--sample-attributes", "plan")
    assert env["sampling"] == {"attributes": ["plan"], "hashed": []}
    assert salt(cp, project) == secret

    json_out = cli.ok("--json", "envs", "show", "prod", "-p", project).stdout
    for text in (shown, listed, json_out):
        assert secret not in text

    env = cli.json("envs", "update", "prod", "-p", project, "--no-sampling")
    assert env["sampling"] is None
    assert "off" in cli.ok("envs", "show", "prod", "-p", project).stdout


def test_envs_sampling__bad_attribute__refused_with_pointer(cli: Cli, project: str) -> None:
    refused = cli.run("envs", "update", "prod", "-p", project, "--sample-attributes", "plan,bad attr")
    assert refused.exit_code == 1
    assert "422 validation_error" in refused.stderr
    assert "/sampling/attributes/1" in refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout
    assert cli.json("envs", "show", "prod", "-p", project)["sampling"] is None


def test_envs_sampling__off_and_on_at_once__usage_error_before_any_request(cli: Cli, project: str) -> None:
    refused = cli.run("envs", "update", "prod", "-p", project, "--no-sampling", "--sample-attributes", "plan")
    assert refused.exit_code == 2
    assert "--no-sampling" in refused.stderr
    assert cli.json("envs", "show", "prod", "-p", project)["revision"] == 1
