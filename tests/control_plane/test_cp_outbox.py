"""The transactional outbox: a row per change in the same transaction, RQ jobs after commit, the relay."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
import sqlalchemy as sa
from contract_helpers import CheckedClient
from cp_helpers import ADMIN_KEY, Api, rows
from fastapi.testclient import TestClient
from polling_helpers import wait_until
from rq import Queue

from flagyard.contracts.queue import SYNC_JOB_FUNCTION
from flagyard.control_plane.db.deferred import Template
from flagyard.control_plane.main import create_app
from flagyard.control_plane.outbox import MARK_DELAY, Dispatcher, OutboxMessage, relay_once
from flagyard.control_plane.security import Role
from flagyard.control_plane.services.common import Actor, Tx
from flagyard.control_plane.settings import Settings
from flagyard.db.engine import make_sessionmaker
from flagyard.db.models import Flag, Project

F = "/api/v1/projects/shop/flags/checkout"


def _jobs(conn: redis.Redis) -> list[dict[str, object]]:
    q = Queue("flagyard-sync", connection=conn)
    jobs = [q.fetch_job(job_id) for job_id in q.get_job_ids()]
    return [{"func": j.func_name, **change} for j in jobs if j is not None for change in j.kwargs["changes"]]


def test_change__committed__outbox_row_enqueued_as_rq_job(
    client: TestClient, api: Api, engine: sa.Engine, redis_conn: redis.Redis
) -> None:
    api.project()
    api.flag()
    redis_conn.flushdb()
    assert client.post(f"{F}/environments/prod/toggle", json={"enabled": True}).status_code == 200
    outbox = rows(
        engine,
        "SELECT id, environment_id, entity_type, entity_key, version, enqueued_at FROM outbox "
        "WHERE version = 2",
    )
    assert len(outbox) == 1
    row = outbox[0]
    assert row.enqueued_at is not None
    assert _jobs(redis_conn) == [
        {
            "func": SYNC_JOB_FUNCTION,
            "outbox_id": row.id,
            "environment_id": row.environment_id,
            "entity_type": "flag",
            "entity_key": "checkout",
            "version": 2,
        }
    ]


def test_change__transaction_fails_after_outbox_insert__no_outbox_row(
    app: object, settings: Settings, api: Api, engine: sa.Engine
) -> None:
    api.project()
    api.flag()
    with engine.begin() as conn:  # a real database failure late in the transaction
        conn.execute(
            sa.text(
                "CREATE FUNCTION fail_audit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN IF NEW.action = 'toggled' THEN RAISE EXCEPTION 'audit write failed'; END IF; RETURN NULL; END $$"
            )
        )
        # Deferred: it fires at COMMIT, after every row of the change (the outbox row included) was written.
        conn.execute(
            sa.text(
                "CREATE CONSTRAINT TRIGGER fail_audit AFTER INSERT ON audit_log DEFERRABLE INITIALLY "
                "DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_audit()"
            )
        )
    try:
        before = rows(engine, "SELECT last_value FROM outbox_id_seq")[0][0]
        with CheckedClient(
            create_app(settings),
            raise_server_exceptions=False,
            headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        ) as c:
            r = c.post(f"{F}/environments/prod/toggle", json={"enabled": True})
        assert r.status_code == 500
        assert r.json()["code"] == "internal_error"
        assert rows(engine, "SELECT last_value FROM outbox_id_seq")[0][0] > before  # the row was written...
        assert rows(engine, "SELECT count(*) FROM outbox WHERE version = 2")[0][0] == 0  # ...and rolled back
        assert rows(engine, "SELECT count(*) FROM flag_versions WHERE version = 2")[0][0] == 0
        assert rows(engine, "SELECT version FROM flags")[0][0] == 1
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TRIGGER fail_audit ON audit_log"))
            conn.execute(sa.text("DROP FUNCTION fail_audit()"))


@pytest.fixture
def redis_down_client(settings: Settings) -> Iterator[TestClient]:
    down = settings.model_copy(
        update={
            "redis_url": settings.redis_url.__class__("redis://127.0.0.1:1/0"),
            "redis_timeout_seconds": 0.2,
        }
    )
    with CheckedClient(create_app(down), headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as c:
        yield c


def test_relay__enqueue_lost__re_enqueued_once(
    redis_down_client: TestClient, api: Api, engine: sa.Engine, redis_conn: redis.Redis
) -> None:
    api.project()
    api.flag()
    redis_conn.flushdb()
    r = redis_down_client.post(f"{F}/environments/prod/toggle", json={"enabled": True})
    assert r.status_code == 200  # the change is committed even though Redis is down
    pending = rows(engine, "SELECT id FROM outbox WHERE enqueued_at IS NULL")
    assert len(pending) == 1
    assert _jobs(redis_conn) == []
    sessions = make_sessionmaker(engine)
    assert relay_once(sessions, redis_conn, "flagyard-sync", grace_seconds=3600) == 0  # still within grace
    assert relay_once(sessions, redis_conn, "flagyard-sync", grace_seconds=0) == 1
    jobs = _jobs(redis_conn)
    assert [(j["outbox_id"], j["version"], j["entity_key"]) for j in jobs] == [(pending[0].id, 2, "checkout")]
    assert rows(engine, "SELECT count(*) FROM outbox WHERE enqueued_at IS NULL")[0][0] == 0
    assert relay_once(sessions, redis_conn, "flagyard-sync", grace_seconds=0) == 0


def test_relay__redis_down__rows_stay_pending(engine: sa.Engine, api: Api) -> None:
    api.project()
    api.flag()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE outbox SET enqueued_at = NULL"))
    down = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    with pytest.raises(redis.ConnectionError):
        relay_once(make_sessionmaker(engine), down, "flagyard-sync", grace_seconds=0)
    assert rows(engine, "SELECT count(*) FROM outbox WHERE enqueued_at IS NULL")[0][0] == 2


@pytest.fixture
def unqueued(engine: sa.Engine, api: Api, redis_conn: redis.Redis) -> list[OutboxMessage]:
    """A flag's committed outbox rows, as if their enqueue had been lost (no job, no mark)."""
    api.project()
    api.flag()
    redis_conn.flushdb()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE outbox SET enqueued_at = NULL"))
    ids = rows(engine, "SELECT id, environment_id FROM outbox ORDER BY id")
    return [OutboxMessage(i, e, "flag", "checkout", 1) for i, e in ids]


def _unmarked(engine: sa.Engine) -> int:
    return int(rows(engine, "SELECT count(*) FROM outbox WHERE enqueued_at IS NULL")[0][0])


def _queued_ids(conn: redis.Redis) -> list[int]:
    return sorted(int(str(j["outbox_id"])) for j in _jobs(conn))


def test_dispatcher__background__flush_enqueues_and_marks(
    engine: sa.Engine, unqueued: list[OutboxMessage], redis_conn: redis.Redis
) -> None:
    dispatcher = Dispatcher(make_sessionmaker(engine), redis_conn, "flagyard-sync", background=True)
    try:
        dispatcher.dispatch(unqueued)
        assert dispatcher.flush(5.0)
    finally:
        dispatcher.close()
    assert _queued_ids(redis_conn) == [m.outbox_id for m in unqueued]
    assert _unmarked(engine) == 0


def test_dispatcher__background_without_flush__queues_jobs_then_marks_rows_by_itself(
    engine: sa.Engine, unqueued: list[OutboxMessage], redis_conn: redis.Redis
) -> None:
    dispatcher = Dispatcher(make_sessionmaker(engine), redis_conn, "flagyard-sync", background=True)
    try:
        # When the rows are dispatched one at a time and nobody flushes
        for message in unqueued:
            dispatcher.dispatch([message])
        # Then every job is queued, and within the mark delay every row is marked
        wait_until(lambda: len(_jobs(redis_conn)) == len(unqueued), timeout=5)
        wait_until(lambda: _unmarked(engine) == 0, timeout=MARK_DELAY + 5)
    finally:
        dispatcher.close()
    assert _queued_ids(redis_conn) == [m.outbox_id for m in unqueued]


def test_dispatcher__closed_before_mark_delay__marks_what_it_queued(
    engine: sa.Engine, unqueued: list[OutboxMessage], redis_conn: redis.Redis
) -> None:
    dispatcher = Dispatcher(make_sessionmaker(engine), redis_conn, "flagyard-sync", background=True)
    dispatcher.dispatch(unqueued)
    dispatcher.close()
    assert _queued_ids(redis_conn) == [m.outbox_id for m in unqueued]
    assert _unmarked(engine) == 0


def test_outbox__flag_create_in_two_envs__one_row_each(api: Api, engine: sa.Engine) -> None:
    api.project()
    api.flag()
    got = rows(
        engine,
        "SELECT e.key, o.entity_type, o.entity_key, o.version, o.deleted FROM outbox o "
        "JOIN environments e ON e.id = o.environment_id ORDER BY e.key",
    )
    assert [tuple(r) for r in got] == [
        ("dev", "flag", "checkout", 1, False),
        ("prod", "flag", "checkout", 1, False),
    ]


def test_outbox__invalid_change__no_row(client: TestClient, api: Api, engine: sa.Engine) -> None:
    api.project()
    api.flag()
    before = rows(engine, "SELECT count(*) FROM outbox")[0][0]
    r = client.patch(f"{F}/environments/prod", json={"default_variant": "nope"}, headers={"If-Match": '"1"'})
    assert r.status_code == 422
    assert rows(engine, "SELECT count(*) FROM outbox")[0][0] == before


def test_outbox__sdk_key_created_rotated_revoked__sdk_key_rows(
    client: TestClient, api: Api, engine: sa.Engine
) -> None:
    api.project()
    base = "/api/v1/projects/shop/environments/prod/sdk-keys"
    key_id = client.post(base, json={"name": "svc"}).json()["id"]
    new_id = client.post(f"{base}/{key_id}/rotate", json={"overlap_seconds": 60}).json()["id"]
    assert client.delete(f"{base}/{new_id}").status_code == 204
    got = rows(engine, "SELECT entity_key, deleted FROM outbox WHERE entity_type = 'sdk_key' ORDER BY id")
    assert [tuple(r) for r in got] == [
        (str(key_id), False),
        (str(new_id), False),
        (str(key_id), False),
        (str(new_id), True),
    ]


_RENAME = Template("test_rename", lambda p: sa.update(Flag).where(Flag.id == p("id")).values(name=p("name")))
_SET_VERSION = Template(
    "test_set_version", lambda p: sa.update(Flag).where(Flag.id == p("id")).values(version=p("version"))
)


def _flag_row(engine: sa.Engine) -> tuple[int, int]:
    return rows(engine, "SELECT id, project_id FROM flags WHERE key = 'checkout'")[0]  # type: ignore[no-any-return]


def test_tx_deferred__session_committed_outside_the_api__version_audit_and_outbox_written(
    api: Api, engine: sa.Engine
) -> None:
    # Given a Tx used directly (as a seeding script would), with a version bump, an audit entry and outbox rows
    api.project()
    api.flag()
    flag_id, project_id = _flag_row(engine)
    env_ids = [r[0] for r in rows(engine, "SELECT id FROM environments ORDER BY key")]
    with make_sessionmaker(engine)() as session:
        tx = Tx(session, Actor(key_id=1, prefix="fy_admin_x", role=Role.ADMIN, project_id=None))
        project = session.get_one(Project, project_id)
        tx.defer(_SET_VERSION, {"id": flag_id, "version": 2}, ("flags", (flag_id,)))
        tx.audit(project, "flag", "checkout", "updated", {"a": 1}, {"a": 2}, version=2)
        tx.emit(env_ids, "flag", "checkout", 2)
        assert tx.messages() == []  # nothing sent before commit
        # When the session commits
        session.commit()
    # Then everything deferred was written in that transaction, and the outbox rows came back as messages
    assert rows(engine, "SELECT version FROM flags WHERE id = :i", i=flag_id)[0][0] == 2
    assert rows(engine, "SELECT count(*) FROM audit_log WHERE version = 2 AND action = 'updated'")[0][0] == 1
    outbox = rows(engine, "SELECT id, environment_id FROM outbox WHERE version = 2 ORDER BY id")
    assert sorted((m.outbox_id, m.environment_id) for m in tx.messages()) == [tuple(r) for r in outbox]
    assert len(outbox) == len(env_ids) == 2


def test_tx_deferred__same_row_updated_twice__both_applied_in_order(api: Api, engine: sa.Engine) -> None:
    api.project()
    api.flag()
    flag_id, _ = _flag_row(engine)
    with make_sessionmaker(engine)() as session:
        tx = Tx(session, Actor(key_id=1, prefix="fy_admin_x", role=Role.ADMIN, project_id=None))
        for name in ("first", "second"):
            tx.defer(_RENAME, {"id": flag_id, "name": name}, ("flags", (flag_id,)))
        session.commit()
    assert rows(engine, "SELECT name FROM flags WHERE id = :i", i=flag_id)[0][0] == "second"


def test_tx_deferred__transaction_rolled_back__nothing_sent(api: Api, engine: sa.Engine) -> None:
    api.project()
    api.flag()
    flag_id, project_id = _flag_row(engine)
    before = rows(engine, "SELECT count(*) FROM audit_log")[0][0]
    with make_sessionmaker(engine)() as session:
        tx = Tx(session, Actor(key_id=1, prefix="fy_admin_x", role=Role.ADMIN, project_id=None))
        tx.audit(session.get_one(Project, project_id), "flag", "checkout", "updated", {}, {"a": 1})
        tx.defer(_RENAME, {"id": flag_id, "name": "never"}, ("flags", (flag_id,)))
        session.rollback()
    assert rows(engine, "SELECT count(*) FROM audit_log")[0][0] == before
    assert rows(engine, "SELECT name FROM flags WHERE id = :i", i=flag_id)[0][0] != "never"
