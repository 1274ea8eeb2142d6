"""Concurrent prerequisite-graph changes on real PostgreSQL: each write locks only its own flag, so the
cycle check must be serialised per environment (an advisory lock) or two writers each pass it.

The races are made deterministic without touching the code under test: a third connection holds
``audit_log`` (and ``flag_versions``) locked, which every flag write inserts into only after its checks;
the test releases them once both writers wait on a lock, i.e. once each has got as far as it can."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cp_helpers import Api, rows
from fastapi.testclient import TestClient

from flagyard.control_plane.db.flags import graph_lock_key

F = "/api/v1/projects/shop/flags"
ON = "on"


def _prerequisites(engine: sa.Engine) -> dict[str, list[Any]]:
    found = rows(
        engine,
        "SELECT f.key, fe.prerequisites FROM flags f JOIN flag_environments fe ON fe.flag_id = f.id "
        "WHERE f.deleted_at IS NULL",
    )
    return dict(found)


def _waiting_on_locks(engine: sa.Engine, n: int, *, advisory: int = 0) -> None:
    """Return once ``n`` backends of this database wait on a lock (``advisory`` of them on an advisory
    lock); fail after a generous while, rather than hang, if the writers never get there."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = rows(
            engine,
            "SELECT wait_event FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()",
        )
        if len(found) == n and sum(1 for (e,) in found if e == "advisory") >= advisory:
            return
        time.sleep(0.02)
    raise AssertionError(f"expected {n} backends waiting on a lock, found {found}")


def _in_threads(*calls: Callable[[], httpx.Response]) -> tuple[list[threading.Thread], list[Any]]:
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Callable[[], httpx.Response]) -> None:
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    return threads, results


class TableHold:
    """``flag_versions`` and ``audit_log`` locked against writes (reads still pass) from :meth:`hold` to
    :meth:`release`: every flag write (deletes too) inserts an audit entry, after its checks."""

    def __init__(self, engine: sa.Engine) -> None:
        self.conn = engine.connect()

    def hold(self) -> None:
        self.conn.begin()
        self.conn.execute(sa.text("LOCK TABLE flag_versions, audit_log IN EXCLUSIVE MODE"))

    def release(self) -> None:
        self.conn.commit()


@pytest.fixture
def held_table(engine: sa.Engine) -> Iterator[TableHold]:
    holder = TableHold(engine)
    try:
        yield holder
    finally:
        holder.conn.rollback()
        holder.conn.close()


def _set_prerequisite(client: TestClient, etag: str, key: str, on: str) -> Callable[[], httpx.Response]:
    return lambda: client.patch(
        f"{F}/{key}/environments/dev",
        json={"prerequisites": [{"flag": on, "variant": ON}]},
        headers={"If-Match": etag},
    )


def test_two_writers_closing_a_cycle__exactly_one_succeeds(
    client: TestClient, api: Api, engine: sa.Engine, held_table: TableHold
) -> None:
    api.project(envs=("dev",))
    api.flag(key="a")
    api.flag(key="b")
    etag_a, etag_b = api.etag(f"{F}/a"), api.etag(f"{F}/b")
    held_table.hold()
    threads, results = _in_threads(
        _set_prerequisite(client, etag_a, "a", "b"), _set_prerequisite(client, etag_b, "b", "a")
    )
    _waiting_on_locks(engine, 2)  # without the graph lock both have passed the cycle check by now
    held_table.release()
    for t in threads:
        t.join(60)
        assert not t.is_alive()

    statuses = sorted(r.status_code for r in results)
    assert statuses == [200, 422], [r.text for r in results]
    refused = next(r for r in results if r.status_code == 422)
    winner, loser = ("a", "b") if results[0].status_code == 200 else ("b", "a")
    [detail] = refused.json()["details"]
    assert detail["path"] == "/prerequisites"
    assert detail["message"] in {
        f"prerequisite cycle: {loser} -> {winner} -> {loser}",
        f"prerequisite cycle: {winner} -> {loser} -> {winner}",
    }
    stored = _prerequisites(engine)
    assert stored == {winner: [{"flag": loser, "variant": ON}], loser: []}


def test_patch_changing_prerequisites__waits_for_the_environment_graph_lock(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project(envs=("dev",))
    api.flag(key="a")
    api.flag(key="b")
    (env_id,) = rows(engine, "SELECT id FROM environments WHERE key = 'dev'")[0]
    etag_a = api.etag(f"{F}/a")
    with engine.connect() as holder, holder.begin():
        holder.execute(sa.select(sa.func.pg_advisory_xact_lock(graph_lock_key(env_id))))
        threads, results = _in_threads(_set_prerequisite(client, etag_a, "a", "b"))
        _waiting_on_locks(engine, 1, advisory=1)
    threads[0].join(60)
    assert results[0].status_code == 200, results[0].text
    assert _prerequisites(engine)["a"] == [{"flag": "b", "variant": ON}]


def test_patch_leaving_prerequisites_alone__does_not_take_the_graph_lock(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project(envs=("dev",))
    api.flag(key="b")
    api.flag(key="a", environments={"dev": {"prerequisites": [{"flag": "b", "variant": ON}]}})
    (env_id,) = rows(engine, "SELECT id FROM environments WHERE key = 'dev'")[0]
    etag_a = api.etag(f"{F}/a")
    with engine.connect() as holder, holder.begin():
        holder.execute(sa.select(sa.func.pg_advisory_xact_lock(graph_lock_key(env_id))))
        threads, results = _in_threads(
            lambda: client.patch(
                f"{F}/a/environments/dev", json={"default_variant": "off"}, headers={"If-Match": etag_a}
            )
        )
        threads[0].join(60)  # completes while the graph lock is held; a hang here means it waited
        assert not threads[0].is_alive()
    assert results[0].status_code == 200, results[0].text


def test_delete_racing_a_new_dependent__never_leaves_a_dangling_prerequisite(
    client: TestClient, api: Api, engine: sa.Engine, held_table: TableHold
) -> None:
    api.project(envs=("dev",))
    api.flag(key="a")
    api.flag(key="b")
    etag_a, etag_b = api.etag(f"{F}/a"), api.etag(f"{F}/b")

    def delete_b() -> httpx.Response:
        return client.delete(f"{F}/b", headers={"If-Match": etag_b})

    held_table.hold()
    threads, results = _in_threads(_set_prerequisite(client, etag_a, "a", "b"), delete_b)
    _waiting_on_locks(engine, 2)
    held_table.release()
    for t in threads:
        t.join(60)
        assert not t.is_alive()

    patched, deleted = results
    assert sorted([patched.status_code, deleted.status_code]) in ([200, 409], [204, 422]), [
        r.text for r in results
    ]
    live = _prerequisites(engine)
    assert all(p["flag"] in live for prereqs in live.values() for p in prereqs), live


def test_variant_removal_racing_a_new_dependent__one_is_refused(
    client: TestClient, api: Api, engine: sa.Engine, held_table: TableHold
) -> None:
    api.project(envs=("dev",))
    api.flag(key="a")
    api.flag(key="b")
    etag_a, etag_b = api.etag(f"{F}/a"), api.etag(f"{F}/b")

    def rename_variants() -> httpx.Response:
        return client.patch(
            f"{F}/b", json={"variants": {"yes": True, "no": False}}, headers={"If-Match": etag_b}
        )

    held_table.hold()
    threads, results = _in_threads(_set_prerequisite(client, etag_a, "a", "b"), rename_variants)
    _waiting_on_locks(engine, 2)
    held_table.release()
    for t in threads:
        t.join(60)
        assert not t.is_alive()

    assert sorted(r.status_code for r in results) == [200, 422], [r.text for r in results]
    (variants,) = rows(engine, "SELECT variants FROM flags WHERE key = 'b'")[0]
    needed = [p["variant"] for p in _prerequisites(engine)["a"]]
    assert all(v in variants for v in needed), (variants, needed)


def test_import_racing_a_patch_closing_a_cycle__one_is_refused(
    client: TestClient, api: Api, engine: sa.Engine, held_table: TableHold
) -> None:
    api.project(envs=("dev",))
    api.flag(key="a")
    api.flag(key="b")
    etag_a = api.etag(f"{F}/a")
    b_needs_a = {
        "flags": [
            {
                "key": "b",
                "type": "boolean",
                "variants": {"on": True, "off": False},
                "prerequisites": [{"flag": "a", "variant": ON}],
            }
        ]
    }

    def import_b() -> httpx.Response:
        return client.post("/api/v1/projects/shop/environments/dev/import", json=b_needs_a)

    held_table.hold()
    threads, results = _in_threads(_set_prerequisite(client, etag_a, "a", "b"), import_b)
    _waiting_on_locks(engine, 2)
    held_table.release()
    for t in threads:
        t.join(60)
        assert not t.is_alive()

    assert sorted(r.status_code for r in results) == [200, 422], [r.text for r in results]
    stored = _prerequisites(engine)
    assert [] in (stored["a"], stored["b"]), stored
