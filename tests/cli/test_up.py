"""``flagyard up`` as a real process: preflight, database, demo seed, the supervised group, shutdown."""

from __future__ import annotations

import json
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from stack_processes import alive, descendants
from up_stack import (
    Isolation,
    database_exists,
    database_url,
    free_port,
    listening,
    query,
    run_to_exit,
    running_up,
    wait_until,
)

from flagyard import FlagyardClient

pytestmark = pytest.mark.timeout(400)


@pytest.fixture
def isolation() -> Iterator[Isolation]:
    iso = Isolation()
    try:
        yield iso
    finally:
        iso.cleanup()


def test_up__first_run__seeds_a_demo_whose_printed_keys_serve_and_follow_a_rest_change(
    isolation: Isolation, tmp_path: Path
) -> None:
    with running_up(isolation, tmp_path) as up:
        banner = up.wait_ready()
        assert banner.admin_key is not None
        assert set(banner.sdk_keys) == {"development", "production"}
        target = f"127.0.0.1:{isolation.grpc_port}"
        client = FlagyardClient(
            target=target, sdk_key=banner.sdk_keys["production"], mode="remote", timeout=2
        )
        try:
            assert client.boolean("payments-enabled", False, {"targeting_key": "u-1"}) is True
            germany = client.object("checkout-config", {}, {"targeting_key": "u-1", "country": "DE"})
            assert germany["currency"] == "EUR"
            reply = httpx.post(
                f"http://127.0.0.1:{isolation.http_port}/api/v1/projects/demo/flags/payments-enabled"
                "/environments/production/toggle",
                json={"enabled": False},
                headers={"Authorization": f"Bearer {banner.admin_key}"},
                timeout=10,
            )
            assert reply.status_code == 200, reply.text
            wait_until(
                lambda: client.boolean("payments-enabled", True, {"targeting_key": "u-1"}) is False, 30
            )
            # The console the banner offers first is served, and its printed key signs in to it.
            page = httpx.get(f"http://127.0.0.1:{isolation.http_port}/ui/", timeout=10)
            assert page.status_code == 200
            assert "script-src 'self'" in page.headers["content-security-policy"]
            session = httpx.post(
                f"http://127.0.0.1:{isolation.http_port}/api/v1/sessions",
                json={"api_key": banner.admin_key},
                timeout=10,
            )
            assert session.status_code == 201
            assert session.json()["role"] == "admin"
        finally:
            client.close()
        dev = FlagyardClient(target=target, sdk_key=banner.sdk_keys["development"], mode="remote", timeout=2)
        try:
            assert dev.boolean("payments-enabled", False, {"targeting_key": "u-1"}) is True  # production only
        finally:
            dev.close()
        up.stop()
    # The keys were printed, never stored: only hashes in the database.
    stored = query(isolation.database, "SELECT key_hash FROM api_keys")
    assert banner.admin_key not in {row[0] for row in stored}
    assert "created the database" in up.output
    # The demo was written like any change: a version, an audit entry and outbox rows per flag.
    created = query(
        isolation.database,
        "SELECT resource_key, actor_key_prefix FROM audit_log WHERE resource_type = 'flag' AND action = 'created'",
    )
    assert sorted(key for key, _ in created) == ["checkout-config", "payments-enabled", "search-v2"]
    assert {prefix for _, prefix in created} == {banner.admin_key[:15]}
    assert query(isolation.database, "SELECT count(*) FROM flag_versions WHERE action = 'created'") == [(3,)]
    assert query(isolation.database, "SELECT count(*) FROM outbox WHERE entity_type = 'flag'")[0][0] >= 6


def test_up__second_run_on_the_same_database__does_not_seed_again(
    isolation: Isolation, tmp_path: Path
) -> None:
    with running_up(isolation, tmp_path) as first:
        first.wait_ready()
        first.stop()
    counts_sql = (
        "SELECT (SELECT count(*) FROM projects), (SELECT count(*) FROM flags), (SELECT count(*) FROM api_keys),"
        " (SELECT count(*) FROM flag_versions)"
    )
    before = query(isolation.database, counts_sql)
    keys_file = tmp_path / "keys.json"
    with running_up(isolation, tmp_path, "--write-keys", str(keys_file)) as second:
        banner = second.wait_ready()
        assert banner.admin_key is None
        assert banner.sdk_keys == {}
        assert "project 'demo' exists" in banner.text
        second.stop()
    assert query(isolation.database, counts_sql) == before
    assert before[0][:2] == (1, 3)
    assert not keys_file.exists()


def test_up__write_keys__writes_the_printed_keys_to_a_private_file(
    isolation: Isolation, tmp_path: Path
) -> None:
    keys_file = tmp_path / "keys.json"
    with running_up(isolation, tmp_path, "--write-keys", str(keys_file), "--syncer-workers", "1") as up:
        banner = up.wait_ready()
        up.stop()
    written = json.loads(keys_file.read_text())
    assert written["admin_key"] == banner.admin_key
    assert written["sdk_keys"] == banner.sdk_keys
    assert keys_file.stat().st_mode & 0o777 == 0o600


def test_up__sigterm__stops_every_process_it_started_and_exits_0(
    isolation: Isolation, tmp_path: Path
) -> None:
    with running_up(isolation, tmp_path, "--syncer-workers", "2", "--data-plane-processes", "2") as up:
        banner = up.wait_ready()
        started = descendants(up.proc.pid)
        assert set(banner.pids) == {"control-plane", "syncer-1", "syncer-2", "data-plane"}
        assert set(banner.pids.values()) <= started
        assert len(started) > len(banner.pids)  # the data plane's own workers and the watchdog
        up.stop()
        wait_until(lambda: not any(alive(pid) for pid in started), 10)
    order = [line.split("|", 1)[1].split()[0] for line in up.lines if "|" in line and " stopped (" in line]
    assert order == ["control-plane", "data-plane", "syncer-1", "syncer-2"]


def test_up__development_mode__binds_rest_grpc_and_every_metrics_port_on_loopback_only(
    isolation: Isolation, tmp_path: Path
) -> None:
    ports = {
        "REST": isolation.http_port,
        "gRPC": isolation.grpc_port,
        "data-plane metrics": isolation.metrics_port,
        "syncer metrics": isolation.syncer_metrics_port,
        "flagd RPC": isolation.flagd_rpc_port,
        "flagd sync": isolation.flagd_sync_port,
        "OFREP": isolation.ofrep_port,
    }
    with running_up(isolation, tmp_path) as up:
        banner = up.wait_ready()
        bound = {name: listening(port) for name, port in ports.items()}
        up.stop()
    # before: gRPC on [::] and both metrics servers on 0.0.0.0, every interface of the machine
    assert bound == {name: {"127.0.0.1"} for name in ports}
    listed = ", ".join(f"{name} 127.0.0.1:{port}" for name, port in ports.items())
    assert f"listening  {listed}" in banner.text


def test_up__child_killed_after_ready__is_restarted_and_serves_again(
    isolation: Isolation, tmp_path: Path
) -> None:
    with running_up(isolation, tmp_path) as up:
        banner = up.wait_ready()
        os.kill(banner.pids["data-plane"], signal.SIGKILL)
        index, _ = up.wait_for(r"data-plane exited unexpectedly \(by SIGKILL\); restarting", 30)
        _, match = up.wait_for(r"data-plane started \(pid (\d+)\)", 30, after=index)
        assert int(match.group(1)) != banner.pids["data-plane"]
        target = f"127.0.0.1:{isolation.grpc_port}"
        client = FlagyardClient(
            target=target, sdk_key=banner.sdk_keys["production"], mode="remote", timeout=2
        )
        try:
            wait_until(lambda: client.boolean("payments-enabled", False, {"targeting_key": "u"}) is True, 60)
        finally:
            client.close()
        up.stop()


def test_up__redis_unreachable__exits_non_zero_naming_redis_and_its_address(
    isolation: Isolation, tmp_path: Path
) -> None:
    port = free_port()
    proc = run_to_exit(isolation, tmp_path, FLAGYARD_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    assert proc.returncode != 0
    assert f"Redis is not reachable at 127.0.0.1:{port}" in proc.stderr
    assert "redis-server --daemonize yes" in proc.stderr
    assert "PostgreSQL is not reachable" not in proc.stderr
    assert not database_exists(isolation.database)


def test_up__postgres_unreachable__exits_non_zero_naming_postgres_and_its_address_without_the_password(
    isolation: Isolation, tmp_path: Path
) -> None:
    port = free_port()
    url = database_url(isolation.database, f"postgresql://postgres:s3cret-pw@127.0.0.1:{port}/postgres")
    proc = run_to_exit(isolation, tmp_path, FLAGYARD_DATABASE_URL=url)
    assert proc.returncode != 0
    assert f"PostgreSQL is not reachable at 127.0.0.1:{port}" in proc.stderr
    assert "pg_ctlcluster" in proc.stderr or "docker compose up -d postgres" in proc.stderr
    assert "s3cret-pw" not in proc.stderr + proc.stdout
    assert "Redis is not reachable" not in proc.stderr


def test_up__rest_port_in_use__exits_non_zero_naming_the_port(isolation: Isolation, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_to_exit(isolation, tmp_path, "--port", str(port))
    assert proc.returncode != 0
    assert f"port {port} (the REST API) is already in use" in proc.stderr


def test_up__invalid_settings__exits_2_with_the_problem_and_no_secret(
    isolation: Isolation, tmp_path: Path
) -> None:
    url = database_url(isolation.database, "postgresql://postgres:s3cret-pw@127.0.0.1:5432/postgres")
    proc = run_to_exit(isolation, tmp_path, FLAGYARD_MODE="production", FLAGYARD_DATABASE_URL=url)
    assert proc.returncode == 2
    assert "production mode refuses default secrets" in proc.stderr
    assert "s3cret-pw" not in proc.stderr + proc.stdout
    assert not database_exists(isolation.database)
