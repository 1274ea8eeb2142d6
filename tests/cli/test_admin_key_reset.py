"""``flagyard admin-key reset`` against a real PostgreSQL, and the key it prints against a real control plane."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import ExitStack

import admin_cli_stack
import httpx
import psycopg
import pytest
from admin_cli_stack import ControlPlane, control_plane, free_port, fresh_database, run_script


@pytest.fixture(scope="module")
def db_url() -> Iterator[str]:
    with fresh_database() as url:
        yield url


@pytest.fixture(scope="module")
def cp(db_url: str) -> Iterator[ControlPlane]:
    with ExitStack() as stack:
        saved, admin_cli_stack.REDIS_DB = admin_cli_stack.REDIS_DB, 8  # read once, when the plane starts
        try:
            plane = stack.enter_context(control_plane(db_url))
        finally:
            admin_cli_stack.REDIS_DB = saved
        yield plane


def _psycopg(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def test_reset__prints_a_key_once__stored_only_as_its_sha256_and_audited(
    cp: ControlPlane, db_url: str
) -> None:
    proc = run_script("admin-key", "reset", "--name", "ops recovery", env={"FLAGYARD_DATABASE_URL": db_url})
    assert proc.returncode == 0, proc.stderr
    key = proc.stdout.strip()
    assert proc.stdout == key + "\n"
    assert key.startswith("fy_admin_")
    assert key not in proc.stderr
    assert "shown this once" in proc.stderr
    with psycopg.connect(_psycopg(db_url)) as conn:
        row = conn.execute(
            "SELECT id, role, project_id, key_hash, prefix FROM api_keys WHERE name = 'ops recovery'"
        ).fetchone()
        assert row is not None
        key_id, role, project_id, key_hash, prefix = row
        assert (role, project_id) == ("admin", None)
        assert key_hash == hashlib.sha256(key.encode()).hexdigest()
        assert key.startswith(prefix)
        assert prefix != key
        dump = conn.execute("SELECT string_agg(t::text, ' ') FROM api_keys t").fetchone()
        assert dump is not None
        assert key not in dump[0]
        audit = conn.execute(
            "SELECT actor_key_id, action FROM audit_log WHERE resource_type = 'api_key' AND resource_key = %s",
            (str(key_id),),
        ).fetchall()
        assert audit == [(key_id, "created")]
    listed = httpx.get(f"{cp.url}/api/v1/api-keys", headers={"Authorization": f"Bearer {key}"})
    assert listed.status_code == 200
    assert "ops recovery" in [k["name"] for k in listed.json()["items"]]


def test_reset__database_not_reachable__exit_3_names_it_without_the_password() -> None:
    url = f"postgresql://postgres:s3cret-pw@127.0.0.1:{free_port()}/flagyard"
    proc = run_script("admin-key", "reset", env={"FLAGYARD_DATABASE_URL": url})
    assert proc.returncode == 3
    assert "did not answer" in proc.stderr
    assert "FLAGYARD_DATABASE_URL" in proc.stderr
    assert "s3cret-pw" not in proc.stderr + proc.stdout
    assert "fy_admin_" not in proc.stdout


def test_reset__database_not_migrated__exit_1_says_to_migrate() -> None:
    proc = run_script("admin-key", "reset", env={"FLAGYARD_DATABASE_URL": admin_cli_stack.PG_ADMIN_URL})
    assert proc.returncode == 1
    assert "not a migrated Flagyard database" in proc.stderr
    assert proc.stdout == ""


def test_unreachable_control_plane__error_names_a_command_that_exists() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    proc = run_script("--url", url, "projects", "list", env={"FLAGYARD_API_KEY": admin_cli_stack.ADMIN_KEY})
    assert proc.returncode == 3
    assert "`flagyard up`" in proc.stderr
    assert "`./scripts/run`" in proc.stderr
    assert "run up" not in proc.stderr
