"""Scenario 3: PostgreSQL crashes (immediate shutdown) under a stream of admin writes and evaluations.
Evaluations are unaffected (the data plane serves from memory); writes answer 503 with the documented
error body; once PostgreSQL is back nothing is half-written: every flag's versions, audit rows and outbox
rows agree, and each flag's state is its last successful write."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import psycopg
import pytest
from e2e_stack import Evaluator, Stack
from fault_flows import (
    API,
    boolean_flag,
    create_project,
    elapsed,
    env_config_path,
    pg_versions,
    resolve_all,
    start_data_plane,
    wait_for,
)
from fault_infra import PostgresInstance, free_port

pytestmark = pytest.mark.faults

DOWN_SECONDS = 5.0
KEYS = [f"flag-{i}" for i in range(4)]
CONTEXT = {"targeting_key": "reader", "n": "none"}


class Writer:
    """One thread PATCHing the flags in turn (GET for the ETag, then PATCH with If-Match), each write
    carrying a unique marker; it records every answer."""

    def __init__(self, stack: Stack) -> None:
        self.api = stack.api
        self.ticket = 0
        self.ok: dict[str, list[tuple[str, int, bool]]] = {k: [] for k in KEYS}  # (marker, version, on)
        self.failed: list[
            tuple[str, int, dict[str, Any], str | None]
        ] = []  # (request, status, body, Retry-After)
        self.ok_after_restart: dict[str, int] = dict.fromkeys(KEYS, 0)
        self.restarted = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.ident is not None:
            self._thread.join(30)
            assert not self._thread.is_alive(), "writer did not stop"

    def _fail(self, what: str, r: Any) -> None:
        try:
            body = r.json()
        except ValueError:
            body = {"raw": r.text[:200]}
        self.failed.append((what, r.status_code, body, r.headers.get("retry-after")))

    def _run(self) -> None:
        etags: dict[str, str] = {}
        while not self._stop.is_set():
            key = KEYS[self.ticket % len(KEYS)]
            self.ticket += 1
            marker = f"m{self.ticket}"
            on = self.ticket % 3 != 0
            path = env_config_path(key)
            got = self.api.get(path)
            if got.status_code == 200:
                etags[key] = got.headers["etag"]
            else:
                self._fail("GET", got)  # still try the write, with the last ETag known
            if key not in etags:
                continue
            body = {
                "enabled": True,
                "default_variant": "on" if on else "off",
                "rules": [
                    {
                        "id": "marker",
                        "variant": "on",
                        "clauses": [{"attribute": "n", "operator": "eq", "values": [marker]}],
                    }
                ],
            }
            r = self.api.patch(path, json=body, headers={"If-Match": etags[key]})
            if r.status_code == 200:
                etags[key] = r.headers["etag"]
                self.ok[key].append((marker, int(r.json()["version"]), on))
                if self.restarted:
                    self.ok_after_restart[key] += 1
            elif r.status_code != 412:  # 412: the ETag known was stale (a write answered 503 committed)
                self._fail("PATCH", r)
            self._stop.wait(0.01 if r.status_code == 200 else 0.05)


def _rows(pg: PostgresInstance, database: str, sql: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{pg.port}/{database}", connect_timeout=5) as c:
        return list(c.execute(sql).fetchall())


def test_postgres_down__writes_and_evaluations__503s_nothing_half_written_and_serving_continues(
    fault_stack: Stack, pg: PostgresInstance
) -> None:
    stack = fault_stack
    database = stack.db_url.rsplit("/", 1)[1]
    sdk_key = create_project(stack.api, {key: boolean_flag() for key in KEYS})
    stack.start_syncer()
    port = free_port()
    start_data_plane(stack, "data_plane", port)
    evaluator = Evaluator(port, sdk_key)
    seen: set[tuple[str, int, bool]] = set()  # (flag, version, value) evaluations answered
    evaluation_problems: list[str] = []
    evaluations = {"total": 0, "while_down": 0}
    down = threading.Event()
    stop_evaluating = threading.Event()

    def evaluate() -> None:
        while not stop_evaluating.is_set():
            try:
                flags = resolve_all(evaluator, CONTEXT).flags
            except grpc.RpcError as exc:
                evaluation_problems.append(f"{exc.code()} {exc.details()}")
            else:
                for key, res in flags.items():
                    if res.error_code or not res.HasField("version") or res.WhichOneof("value") is None:
                        evaluation_problems.append(f"{key}: {res}")
                    else:
                        seen.add((key, res.version, res.bool_value))
                if sorted(flags) != KEYS:
                    evaluation_problems.append(f"flags served: {sorted(flags)}")
            evaluations["total"] += 1
            evaluations["while_down"] += down.is_set()
            stop_evaluating.wait(0.005)

    evaluating = threading.Thread(target=evaluate, name="evaluate", daemon=True)
    writer = Writer(stack)
    try:
        wait_for(lambda: len(resolve_all(evaluator, CONTEXT).flags) == len(KEYS), 30)
        evaluating.start()
        writer.start()
        wait_for(lambda: sum(map(len, writer.ok.values())) >= 20, 30)

        pg.kill()  # immediate shutdown: every connection breaks, in-flight transactions are lost
        down.set()
        failed_before = len(writer.failed)
        time.sleep(DOWN_SECONDS / 2)
        ghost = stack.api.post(
            f"{API}/flags",
            json={"key": "ghost", "name": "Ghost", "type": "boolean", "variants": {"on": True, "off": False}},
        )
        toggle = stack.api.post(f"{env_config_path(KEYS[0])}/toggle", json={"enabled": False})
        time.sleep(DOWN_SECONDS / 2)
        pg.start()
        writer.restarted = True
        down.clear()
        restart_started = time.monotonic()
        wait_for(lambda: min(writer.ok_after_restart.values()) >= 2, 30)
        recovered_seconds = elapsed(restart_started)
        writer.stop()
        failures_while_down = len(writer.failed) - failed_before

        expected = pg_versions(stack.api)
        wait_for(
            lambda: {k: r.version for k, r in resolve_all(evaluator, CONTEXT).flags.items()} == expected, 30
        )
        stop_evaluating.set()
        evaluating.join(15)
        assert not evaluating.is_alive()

        # What PostgreSQL holds per flag: its version, and the versions of its version, audit and outbox rows.
        versions = _rows(
            pg,
            database,
            "SELECT f.key, f.version, array_agg(v.version ORDER BY v.version) FROM flags f "
            "JOIN flag_versions v ON v.flag_id = f.id GROUP BY f.key, f.version",
        )
        audits = dict(
            _rows(
                pg,
                database,
                "SELECT resource_key, array_agg(version ORDER BY version) FROM audit_log "
                "WHERE resource_type = 'flag' GROUP BY resource_key",
            )
        )
        outbox = dict(
            _rows(
                pg,
                database,
                "SELECT entity_key, array_agg(version ORDER BY version) FROM outbox "
                "WHERE entity_type = 'flag' GROUP BY entity_key",
            )
        )
        snapshots = {
            (key, version): snapshot
            for key, version, snapshot in _rows(
                pg,
                database,
                "SELECT f.key, v.version, v.snapshot FROM flag_versions v JOIN flags f ON f.id = v.flag_id",
            )
        }
        # A write in flight at the crash may have committed although it was answered 503.
        committed_despite_error = sum(current - 1 - len(writer.ok[key]) for key, current, _ in versions)
        failures = [
            *writer.failed,
            *(("POST", r.status_code, r.json(), r.headers.get("retry-after")) for r in (ghost, toggle)),
        ]
        statuses = sorted({status for _, status, _, _ in failures})
        print(
            "faults.summary",
            {
                "writes_ok": {k: len(v) for k, v in writer.ok.items()},
                "write_failures": len(failures),
                "failures_while_down": failures_while_down,
                "failure_statuses": statuses,
                "committed_despite_error": committed_despite_error,
                "evaluations": evaluations,
                "evaluation_problems": len(evaluation_problems),
                "recovered_seconds": recovered_seconds,
            },
        )

        # Every failed write was a clear 503 (never a 500, never a half-answer).
        assert failures_while_down > 0
        assert any(what == "PATCH" for what, _, _, _ in failures)
        assert statuses == [503], failures[:5]
        for _, _, body, retry_after in failures:
            assert body["code"] == "database_unavailable", body
            assert "database" in body["message"]
            assert body["details"] == []
            assert retry_after is not None
            assert int(retry_after) > 0

        # Evaluations were unaffected: no error, every flag, and each value what its version prescribes.
        assert evaluation_problems == [], evaluation_problems[:5]
        assert evaluations["while_down"] > 50
        for key, version, value in seen:
            config = snapshots[key, version]["environments"]["prod"]
            assert value == (config["default_variant"] == "on"), (key, version, value, config)

        # Nothing half-written: per flag, versions 1..n, each with exactly one version, audit and outbox row.
        assert sorted(k for k, _, _ in versions) == KEYS
        for key, current, numbers in versions:
            assert numbers == list(range(1, current + 1)), (key, numbers)
            assert audits[key] == numbers, (key, audits[key], numbers)
            assert outbox[key] == numbers, (key, outbox[key], numbers)
        assert 0 <= committed_despite_error <= 1

        # Each flag's state is its last successful write (every flag was written again after the restart).
        for key in KEYS:
            marker, version, on = writer.ok[key][-1]
            r = stack.api.get(env_config_path(key))
            assert r.status_code == 200, r.text
            assert (r.json()["version"], r.json()["rules"][0]["clauses"][0]["values"]) == (version, [marker])
            assert r.json()["default_variant"] == ("on" if on else "off")
            assert expected[key] == version
        assert stack.api.get(f"{API}/flags/ghost").status_code == 404
    finally:
        stop_evaluating.set()
        writer.stop()
        evaluator.close()
