"""The admin CLI against a real control plane (uvicorn over TCP, PostgreSQL, Redis, RQ); see admin_cli_stack.py."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from admin_cli_stack import ADMIN_KEY, Cli, ControlPlane, free_port, run_script
from pydantic import SecretStr
from rq import Queue, Retry, SimpleWorker
from rq.registry import FailedJobRegistry, FinishedJobRegistry

from flagyard.cli import rest
from flagyard.cli.admin import Target
from flagyard.cli.app import app
from flagyard.contracts.queue import SYNC_JOB_FUNCTION
from flagyard.db.engine import make_engine, make_sessionmaker
from flagyard.syncer import jobs
from flagyard.syncer.core import Syncer

INVALID_RULES = {
    "rules": [
        {"id": "r", "variant": "on", "clauses": [{"attribute": "age", "operator": "gt", "values": ["ten"]}]}
    ]
}
GERMANY_YAML = """\
enabled: true
default_variant: "off"
rules:
  - id: germany
    variant: "on"
    clauses:
      - {attribute: country, operator: eq, values: [DE]}
"""


def flag_versions(cli: Cli, project: str, flag: str) -> list[int]:
    return [v["version"] for v in cli.json("flags", "versions", flag, "-p", project)]


def test_projects_envs_flags__created__listed_as_table_and_json(cli: Cli, project: str) -> None:
    cli.ok("flags", "create", "checkout", "-p", project, "--tag", "web", "-m", "first")

    assert project in cli.ok("projects", "list").stdout
    assert project in [p["key"] for p in cli.json("projects", "list")]
    shown = cli.json("projects", "show", project)
    assert (shown["name"], [e["key"] for e in shown["environments"]]) == ("Shop", ["dev", "prod"])
    assert [e["key"] for e in cli.json("envs", "list", "-p", project)] == ["dev", "prod"]
    table = cli.ok("flags", "list", "-p", project).stdout
    assert "checkout" in table
    assert "dev:off prod:off" in table
    (flag,) = cli.json("flags", "list", "-p", project)
    assert (flag["key"], flag["type"], flag["tags"], flag["enabled"]) == (
        "checkout",
        "boolean",
        ["web"],
        {"dev": False, "prod": False},
    )


def test_flags_toggle__on_in_one_env__flags_show_reports_it(cli: Cli, project: str) -> None:
    cli.ok("flags", "create", "checkout", "-p", project)

    toggled = cli.run("flags", "toggle", "checkout", "on", "-p", project, "--env", "prod")

    assert toggled.exit_code == 0, toggled.stderr
    assert "checkout is on in prod (version 2)" in toggled.stderr
    shown = cli.json("flags", "show", "checkout", "-p", project)
    assert {env: c["enabled"] for env, c in shown["environments"].items()} == {"dev": False, "prod": True}
    table = cli.ok("flags", "show", "checkout", "-p", project).stdout
    assert [line.split()[:2] for line in table.splitlines() if line.strip().startswith(("dev", "prod"))] == [
        ["dev", "off"],
        ["prod", "on"],
    ]


def test_flags_set_rules__valid_then_invalid_file__applied_then_refused_with_pointer(
    cli: Cli, project: str, tmp_path: Path
) -> None:
    cli.ok("flags", "create", "checkout", "-p", project)
    good = tmp_path / "germany.yaml"
    good.write_text(
        GERMANY_YAML + "  - {id: until-2030, variant: 'off', clauses: [{attribute: now, operator: before, "
        "values: [2030-01-01]}]}\n"
    )
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(INVALID_RULES))

    cli.ok("flags", "set-rules", "checkout", str(good), "-p", project, "-e", "prod", "-m", "launch DE")
    refused = cli.run("flags", "set-rules", "checkout", str(bad), "-p", project, "-e", "prod")

    config = cli.json("flags", "show", "checkout", "-p", project, "--env", "prod")
    assert (config["enabled"], [r["id"] for r in config["rules"]], config["version"]) == (
        True,
        ["germany", "until-2030"],
        2,
    )
    assert config["rules"][1]["clauses"][0]["values"] == ["2030-01-01"]
    assert refused.exit_code == 1
    assert len(refused.stderr.strip().splitlines()) == 1
    assert f"PATCH {cli.url}/api/v1/projects/{project}/flags/checkout/environments/prod" in refused.stderr
    assert "422 validation_error" in refused.stderr
    assert "/rules/0/clauses/0/values/0: operator gt compares numbers" in refused.stderr
    assert "Traceback" not in refused.stderr + refused.stdout
    assert flag_versions(cli, project, "checkout") == [2, 1]


def test_flags_set_rules__malformed_file__input_error_before_any_request(
    cli: Cli, project: str, tmp_path: Path
) -> None:
    cli.ok("flags", "create", "checkout", "-p", project)
    broken = tmp_path / "broken.json"
    broken.write_text('{"rules": [')

    result = cli.run("flags", "set-rules", "checkout", str(broken), "-p", project, "-e", "dev")

    assert result.exit_code == 2
    assert f"{broken}: not valid JSON" in result.stderr
    assert flag_versions(cli, project, "checkout") == [1]


def test_flags_set_rules__changed_between_read_and_write__says_someone_else_changed_it(
    cli: Cli, project: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli.ok("flags", "create", "checkout", "-p", project)
    rules = tmp_path / "rules.json"
    rules.write_text(json.dumps({"enabled": True, "default_variant": "on"}))
    read_etag = rest.Rest.etag

    def etag_then_concurrent_change(self: rest.Rest, api_path: str) -> str:
        tag = read_etag(self, api_path)
        httpx.post(
            f"{cli.url}/api/v1/projects/{project}/flags/checkout/environments/dev/toggle",
            json={"enabled": True},
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ).raise_for_status()
        return tag

    monkeypatch.setattr(rest.Rest, "etag", etag_then_concurrent_change)
    result = cli.run("flags", "set-rules", "checkout", str(rules), "-p", project, "-e", "prod")

    assert result.exit_code == 1
    assert "someone else changed it since it was read" in result.stderr
    assert "412 precondition_failed" in result.stderr
    monkeypatch.undo()
    assert cli.json("flags", "show", "checkout", "-p", project, "-e", "prod")["enabled"] is False


def test_flags_versions_diff_rollback__after_changes__earlier_state_restored_as_new_version(
    cli: Cli, project: str, tmp_path: Path
) -> None:
    cli.ok("flags", "create", "checkout", "-p", project)
    cli.ok("flags", "toggle", "checkout", "on", "-p", project, "-e", "prod")
    rules = tmp_path / "rules.yaml"
    rules.write_text(GERMANY_YAML)
    cli.ok("flags", "set-rules", "checkout", str(rules), "-p", project, "-e", "prod")

    versions = cli.json("flags", "versions", "checkout", "-p", project)
    diff = cli.json("flags", "diff", "checkout", "1", "3", "-p", project)
    diff_table = cli.ok("flags", "diff", "checkout", "1", "-p", project).stdout
    rolled = cli.run("flags", "rollback", "checkout", "1", "-p", project, "-m", "undo launch")

    assert [(v["version"], v["action"]) for v in versions] == [(3, "updated"), (2, "toggled"), (1, "created")]
    paths = {c["path"] for c in diff["changes"]}
    assert {"/environments/prod/enabled", "/environments/prod/rules/0"} <= paths
    assert "version 1 → 3" in diff_table
    assert "/environments/prod/enabled" in diff_table
    assert rolled.exit_code == 0, rolled.stderr
    assert "back at version 1's state, as version 4" in rolled.stderr
    prod = cli.json("flags", "show", "checkout", "-p", project, "-e", "prod")
    assert (prod["version"], prod["enabled"], prod["rules"]) == (4, False, [])
    assert cli.json("flags", "versions", "checkout", "-p", project)[0]["comment"] == "undo launch"


def test_flags_delete__then_show__not_found_with_url(cli: Cli, project: str) -> None:
    cli.ok("flags", "create", "checkout", "-p", project)

    cli.ok("flags", "delete", "checkout", "-p", project)
    result = cli.run("flags", "show", "checkout", "-p", project)

    assert result.exit_code == 1
    assert f"GET {cli.url}/api/v1/projects/{project}/flags/checkout → 404 not_found" in result.stderr


def test_segments__create_update_delete__reflected_in_show_and_list(
    cli: Cli, project: str, tmp_path: Path
) -> None:
    rules = tmp_path / "segment.json"
    rules.write_text(
        json.dumps({"rules": [{"clauses": [{"attribute": "plan", "operator": "eq", "values": ["pro"]}]}]})
    )

    created = cli.json("segments", "create", "beta", "-p", project, "--include", "u1", "--include", "u2")
    cli.ok("segments", "update", "beta", "-p", project, "-f", str(rules), "--exclude", "u3")
    shown = cli.json("segments", "show", "beta", "-p", project)
    listed = cli.ok("segments", "list", "-p", project).stdout
    cli.ok("segments", "delete", "beta", "-p", project)

    assert (created["included"], created["version"]) == (["u1", "u2"], 1)
    assert (shown["included"], shown["excluded"], len(shown["rules"]), shown["version"]) == (
        ["u1", "u2"],
        ["u3"],
        1,
        2,
    )
    assert "beta" in listed
    assert cli.json("segments", "list", "-p", project) == []


def test_keys__created_then_revoked__key_works_then_gets_401(cli: Cli, project: str) -> None:
    created = cli.ok("keys", "create", "ci", "--role", "writer", "--project", project)
    (secret,) = re.findall(r"fy_writer_[A-Za-z0-9_-]{43}", created.stdout)
    key_id = next(k["id"] for k in cli.json("keys", "list", "--project", project) if k["name"] == "ci")

    works = cli.run("flags", "list", "-p", project, key=secret)
    cli.ok("keys", "revoke", str(key_id))
    refused = cli.run("flags", "list", "-p", project, key=secret)

    assert "shown once" in created.stdout
    assert works.exit_code == 0, works.stderr
    assert refused.exit_code == 1
    assert f"GET {cli.url}/api/v1/projects/{project}/flags" in refused.stderr
    assert "401 unauthenticated: the API key was revoked" in refused.stderr
    assert "FLAGYARD_API_KEY" in refused.stderr
    assert secret not in refused.stdout + refused.stderr


def test_keys__sdk_key_created_and_rotated__listed_for_its_environment(cli: Cli, project: str) -> None:
    created = cli.json("keys", "create", "checkout", "--role", "sdk", "-p", project, "-e", "prod")
    rotated = cli.json("keys", "rotate", str(created["id"]), "-p", project, "-e", "prod", "--overlap", "60")

    listed = cli.json("keys", "list", "-p", project, "-e", "prod")

    assert created["key"].startswith("fy_sdk_")
    assert rotated["key"].startswith("fy_sdk_")
    assert rotated["key"] != created["key"]
    assert rotated["replaces_key_id"] == created["id"]
    assert [(k["id"], k["environment"]) for k in listed] == [(created["id"], "prod"), (rotated["id"], "prod")]
    assert listed[0]["expires_at"] is not None


def test_webhooks__create_list_update_test_deliveries_delete(cli: Cli, project: str) -> None:
    created = cli.ok(
        "webhooks",
        "create",
        "https://hooks.example.com/flagyard",
        "-p",
        project,
        "--event",
        "flag.toggled",
        "--event",
        "key.created",
        "--description",
        "ops",
    )
    (secret,) = re.findall(r"whsec_[A-Za-z0-9+/=]{44}", created.stdout)
    assert "shown once" in created.stdout
    [listed] = cli.json("webhooks", "list", "-p", project)
    assert listed["events"] == ["flag.toggled", "key.created"]
    assert "secret" not in listed
    wid = str(listed["id"])
    assert secret not in cli.ok("webhooks", "show", wid, "-p", project).stdout
    updated = cli.json("webhooks", "update", wid, "-p", project, "--disable", "--event", "flag.changed")
    assert (updated["enabled"], updated["events"]) == (False, ["flag.changed"])
    queued = cli.json("webhooks", "test", wid, "-p", project)
    [delivery] = cli.json("webhooks", "deliveries", wid, "-p", project)
    assert (delivery["id"], delivery["event"]) == (queued["delivery_id"], "webhook.test")
    rotated = cli.json("webhooks", "rotate-secret", wid, "-p", project)
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != secret
    bad = cli.run("webhooks", "create", "ftp://x", "-p", project, "--event", "flag.toggled")
    assert bad.exit_code == 1
    assert "/url" in bad.stderr
    cli.ok("webhooks", "delete", wid, "-p", project)
    assert cli.json("webhooks", "list", "-p", project) == []


def test_api_key__wrong_key__one_line_401_without_the_key(cli: Cli) -> None:
    wrong = "fy_admin_" + "x" * 43

    result = cli.run("projects", "list", key=wrong)

    assert result.exit_code == 1
    assert result.stderr.strip() == (
        f"flagyard: GET {cli.url}/api/v1/projects?limit=200 → 401 unauthenticated: unknown API key; "
        "check --api-key / FLAGYARD_API_KEY"
    )
    assert wrong not in result.stdout + result.stderr


def test_api_key__help_and_reprs__never_show_it(cli: Cli) -> None:
    secret = "fy_admin_" + "s" * 43

    shown = cli.runner.invoke(app, ["--help"], env={"FLAGYARD_API_KEY": secret, "COLUMNS": "200"})

    assert shown.exit_code == 0
    assert "--api-key" in shown.stdout
    assert secret not in shown.stdout
    assert secret not in repr(Target(cli.url, secret, False))
    with rest.Rest(cli.url, secret) as client:
        assert secret not in repr(client)


def test_import_export__native_round_trip__same_flags_and_segments(
    cli: Cli, project: str, tmp_path: Path
) -> None:
    cli.ok("segments", "create", "beta", "-p", project, "--include", "u1")
    cli.ok("flags", "create", "checkout", "-p", project)
    rules = tmp_path / "rules.yaml"
    rules.write_text(GERMANY_YAML)
    cli.ok("flags", "set-rules", "checkout", str(rules), "-p", project, "-e", "prod")
    cli.ok(
        "flags",
        "create",
        "limit",
        "-p",
        project,
        "--type",
        "integer",
        "--variants",
        '{"low": 10, "high": 500}',
    )
    exported = tmp_path / "native.json"
    other = f"q{uuid.uuid4().hex[:8]}"
    cli.ok("projects", "create", other)
    cli.ok("envs", "create", "prod", "-p", other)

    cli.ok("export", "-p", project, "-e", "prod", "-o", str(exported))
    imported = cli.ok("import", str(exported), "-p", other, "-e", "prod")
    again = json.loads(cli.ok("export", "-p", other, "-e", "prod").stdout)

    assert "checkout limit" in imported.stdout
    original = json.loads(exported.read_text())

    def content(document: dict[str, Any]) -> Any:
        drop = {"version", "salt"}
        flags = [{k: v for k, v in f.items() if k not in drop} for f in document["flags"]]
        segments = [{k: v for k, v in s.items() if k not in drop} for s in document["segments"]]
        return flags, segments

    assert [f["key"] for f in original["flags"]] == ["checkout", "limit"]
    assert content(again) == content(original)
    assert cli.json("flags", "show", "checkout", "-p", other, "-e", "prod")["rules"][0]["id"] == "germany"


def test_import_export__flagd_round_trip__same_document(cli: Cli, project: str, tmp_path: Path) -> None:
    cli.ok("flags", "create", "checkout", "-p", project)
    cli.ok("flags", "toggle", "checkout", "on", "-p", project, "-e", "dev")
    cli.ok("flags", "create", "color", "-p", project, "--type", "string", "--variants", '{"red": "#f00"}')
    exported = tmp_path / "flagd.json"
    exported.write_text(cli.ok("export", "--format", "flagd", "-p", project, "-e", "dev").stdout)
    other = f"q{uuid.uuid4().hex[:8]}"
    cli.ok("projects", "create", other)
    cli.ok("envs", "create", "dev", "-p", other)

    result = cli.json("import", "--format", "flagd", str(exported), "-p", other, "-e", "dev")
    again = json.loads(cli.ok("export", "--format", "flagd", "-p", other, "-e", "dev").stdout)

    assert result["created"] == ["checkout", "color"]
    original = json.loads(exported.read_text())
    assert set(original["flags"]) == {"checkout", "color"}
    assert again["flags"] == original["flags"]


def test_import__invalid_native_document__refused_with_pointer_and_nothing_applied(
    cli: Cli, project: str, tmp_path: Path
) -> None:
    document = {
        "flags": [
            {"key": "ok", "type": "boolean", "variants": {"on": True, "off": False}},
            {"key": "broken", "type": "boolean", "variants": {"on": True}, "default_variant": "missing"},
        ],
        "segments": [],
    }
    file = tmp_path / "bad.json"
    file.write_text(json.dumps(document))
    wrong_shape = tmp_path / "flagd-as-native.json"
    wrong_shape.write_text(json.dumps({"flags": {"x": {}}}))

    refused = cli.run("import", str(file), "-p", project, "-e", "dev")
    misshapen = cli.run("import", str(wrong_shape), "-p", project, "-e", "dev")

    assert refused.exit_code == 1
    assert "422 validation_error" in refused.stderr
    assert "/flags/1/default_variant" in refused.stderr
    assert misshapen.exit_code == 2
    assert "'flags' must be a list in the native format" in misshapen.stderr
    assert cli.json("flags", "list", "-p", project) == []


def test_jobs_failed__real_failed_sync_job__listed_requeued_then_succeeds(
    cli: Cli, cp: ControlPlane, project: str
) -> None:
    cli.ok("flags", "create", "checkout", "-p", project)
    queue = Queue(cp.queue, connection=cp.redis)
    queue.empty()
    engine = make_engine(cp.settings)
    with engine.connect() as conn:
        env_id = conn.execute(
            sa.text(
                "SELECT e.id FROM environments e JOIN projects p ON p.id = e.project_id "
                "WHERE p.key = :p AND e.key = 'prod'"
            ),
            {"p": project},
        ).scalar_one()
    change = {"outbox_id": None, "environment_id": env_id, "entity_type": "flag", "entity_key": "checkout"}
    job = queue.enqueue(SYNC_JOB_FUNCTION, changes=[{**change, "version": 1}], retry=Retry(max=1))
    gone = SecretStr(cp.settings.database_url.get_secret_value() + "_gone")
    down = cp.settings.model_copy(update={"database_url": gone})
    worker_name = f"{cp.queue}-worker"
    jobs.configure(Syncer(make_sessionmaker(make_engine(down)), cp.redis, cp.prefix))
    try:
        SimpleWorker([queue], connection=cp.redis, name=worker_name).work(burst=True)
        assert job.id in FailedJobRegistry(queue=queue)

        listed = cli.json("jobs", "failed", "list")
        table = cli.ok("jobs", "failed", "list").stdout
        unknown = cli.run("jobs", "failed", "requeue", "no-such-job")
        requeued = cli.json("jobs", "failed", "requeue", job.id)

        jobs.configure(Syncer(make_sessionmaker(engine), cp.redis, cp.prefix))
        SimpleWorker([queue], connection=cp.redis, name=worker_name + "-2").work(burst=True)
    finally:
        jobs.configure(None)
        engine.dispose()

    assert [j["id"] for j in listed] == [job.id]
    assert "StoreUnavailableError" in listed[0]["error"]
    assert job.id in table
    assert unknown.exit_code == 1
    assert "404 not_found" in unknown.stderr
    assert "/job_ids/0: job no-such-job is not in the failed registry" in unknown.stderr
    assert requeued == {"requeued": [job.id]}
    assert cli.json("jobs", "failed", "list") == []
    assert job.id in FinishedJobRegistry(queue=queue)


def test_jobs_failed__writer_key__forbidden(cli: Cli, project: str) -> None:
    writer = cli.json("keys", "create", "w", "--role", "writer")["key"]

    result = cli.run("jobs", "failed", "list", key=writer)

    assert result.exit_code == 1
    assert "403 forbidden: the sync queue's failed jobs need a global admin key" in result.stderr


def test_projects_delete__without_confirmation__kept_then_deleted_with_yes(cli: Cli, project: str) -> None:
    declined = cli.run("projects", "delete", project, stdin="n\n")
    kept = [p["key"] for p in cli.json("projects", "list")]
    cli.ok("envs", "delete", "dev", "-p", project, "--yes")
    cli.ok("projects", "delete", project, "--yes")

    assert declined.exit_code == 1
    assert project in kept
    assert project not in [p["key"] for p in cli.json("projects", "list")]


def test_cli__unreachable_url__clear_error_and_exit_code_without_traceback() -> None:
    url = f"http://127.0.0.1:{free_port()}"

    result = run_script("--url", url, "projects", "list")

    assert result.returncode == 3
    assert f"the control plane is not reachable at {url}" in result.stderr
    assert "flagyard up" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout == ""


def test_cli__installed_script_with_env__lists_projects_as_json(
    cp: ControlPlane, cli: Cli, project: str
) -> None:
    result = run_script(
        "--json", "projects", "list", env={"FLAGYARD_URL": cp.url, "FLAGYARD_API_KEY": ADMIN_KEY}
    )

    assert result.returncode == 0, result.stderr
    assert project in [p["key"] for p in json.loads(result.stdout)]


def test_cli_imports__admin_cli_and_sdk__no_server_library_and_no_typer_in_sdk() -> None:
    code = (
        "import sys, json; import flagyard; sdk = sorted(m for m in ('typer', 'rich', 'httpx') if m in sys.modules);"
        "import flagyard.cli.app; servers = ('fastapi', 'starlette', 'sqlalchemy', 'psycopg', 'alembic', 'rq',"
        " 'uvicorn', 'redis'); print(json.dumps([sdk, sorted(m for m in servers if m in sys.modules)]))"
    )

    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )

    assert json.loads(result.stdout) == [[], []]
