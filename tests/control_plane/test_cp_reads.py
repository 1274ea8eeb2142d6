"""Reads served on the event loop (flags, segments, a flag's environment) over asyncpg: the same answers as the rest of
the API, errors as control-plane errors, a dead connection survived, the database down answered at once."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import orjson
import pytest
import sqlalchemy as sa
from contract_helpers import CheckedClient
from cp_helpers import ADMIN_KEY, Api, auth
from fastapi.testclient import TestClient
from sqlalchemy.dialects.postgresql import JSONB

from flagyard.control_plane.db.reads import ReadPool, ReadQuery, make_read_pool
from flagyard.control_plane.exceptions import DatabaseUnavailableError
from flagyard.control_plane.main import create_app
from flagyard.control_plane.settings import Settings

F = "/api/v1/projects/shop/flags"
RULE = {
    "id": "r1",
    "clauses": [{"attribute": "country", "operator": "in", "values": ["NL"]}],
    "variant": "on",
}
PID = ReadQuery(sa.select(sa.func.pg_backend_pid().label("pid")))
SLEEP = ReadQuery(sa.select(sa.func.pg_sleep(sa.bindparam("seconds", type_=sa.Float)).label("slept")))
ECHO_JSON = ReadQuery(
    sa.select(
        sa.cast(sa.bindparam("doc", type_=JSONB), JSONB).label("doc"),
        sa.literal_column("'{\"n\": 18446744073709551616123}'::jsonb").label("huge"),
    )
)


def run(coro: object) -> object:
    return asyncio.run(coro)  # type: ignore[arg-type]


@pytest.fixture
def pool_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"db_read_pool_size": 1, "db_pool_timeout_seconds": 0.3})


def test_get_flag__after_create__same_body_as_the_create_response(client: TestClient, api: Api) -> None:
    """Given a flag created through the transactional path (ORM objects rendered), when it is read on
    the event loop (asyncpg rows, JSON passed through), then both bodies are identical, timestamps too."""
    api.project(envs=("prod", "dev", "staging"))
    created = client.post(
        F,
        json={
            "key": "checkout",
            "name": "Checkout",
            "type": "object",
            "tags": ["web", "b"],
            "variants": {"big": {"n": 9223372036854775807, "xs": [1.5, "x", None, True]}, "small": {}},
            "environments": {"prod": {"enabled": True, "default_variant": "big"}},
        },
    )
    assert created.status_code == 201, created.text

    read = client.get(f"{F}/checkout")

    assert read.status_code == 200
    assert read.json() == created.json()
    assert read.headers["etag"] == created.headers["etag"]
    assert list(read.json()["environments"]) == ["dev", "prod", "staging"]


def test_list_flags__environments_created_out_of_order__enabled_map_sorted(
    client: TestClient, api: Api
) -> None:
    api.project(envs=("prod", "dev", "staging"))
    api.flag(key="a")
    client.post(f"{F}/a/environments/staging/toggle", json={"enabled": True})

    items = client.get(F).json()["items"]

    assert [(i["key"], list(i["enabled"].items())) for i in items] == [
        ("a", [("dev", False), ("prod", False), ("staging", True)])
    ]


def test_list_flags__project_without_environments__empty_enabled_map(client: TestClient, api: Api) -> None:
    api.project(envs=())
    api.flag(key="lonely")

    assert client.get(F).json()["items"][0]["enabled"] == {}


def test_get_flag__key_scoped_to_other_project__403_and_missing_flag_404(
    client: TestClient, api: Api
) -> None:
    api.project("shop")
    api.project("other")
    api.flag(key="a")
    other_reader = api.key("reader", project="other")

    forbidden = client.get(f"{F}/a", headers=auth(other_reader))
    missing = client.get(f"{F}/nope")
    no_project = client.get("/api/v1/projects/ghost/flags/a")

    assert (forbidden.status_code, forbidden.json()["code"]) == (403, "forbidden")
    assert (missing.status_code, missing.json()["message"]) == (
        404,
        "flag 'nope' does not exist in project 'shop'",
    )
    assert (no_project.status_code, no_project.json()["message"]) == (404, "project 'ghost' does not exist")


def test_get_flag__rate_limited_key__429_on_the_event_loop_path(settings: Settings, api: Api) -> None:
    api.project()
    api.flag(key="a")
    limited = settings.model_copy(update={"rate_limit_requests": 2, "rate_limit_window_seconds": 60})
    with CheckedClient(create_app(limited), headers=auth(ADMIN_KEY)) as c:
        statuses = [c.get(f"{F}/a").status_code for _ in range(3)]
        listed = c.get(F)
    assert statuses == [200, 200, 429]
    assert listed.status_code == 429
    assert 1 <= int(listed.headers["retry-after"]) <= 60


def test_read_pool__json_parameter_and_columns__round_trip_exactly(pool_settings: Settings) -> None:
    """JSON parameters are encoded for the database; JSON columns come back as the database's text,
    unparsed, so even an integer beyond 64 bits survives into the response."""
    doc = {"n": 2**63 - 1, "s": "é", "xs": [1.5, None, True]}

    async def scenario() -> bytes:
        pool = make_read_pool(pool_settings)
        await pool.open()
        try:
            row = (await pool.fetch(ECHO_JSON, {"doc": doc}))[0]
        finally:
            await pool.close()
        return orjson.dumps({"doc": row.doc, "huge": row.huge})

    rendered = json.loads(run(scenario()))  # type: ignore[arg-type]
    assert rendered == {"doc": doc, "huge": {"n": 18446744073709551616123}}


def test_read_pool__its_connection_killed__next_read_answers_on_a_new_one(
    pool_settings: Settings, engine: sa.Engine
) -> None:
    """Given a pool whose only connection the server terminates (as in a restart), when the next read
    comes, then it is answered, on a different backend."""

    async def scenario() -> tuple[int, int]:
        pool = make_read_pool(pool_settings)
        await pool.open()
        try:
            first = (await pool.fetch(PID, {}))[0].pid
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
            await asyncio.sleep(0.2)
            second = (await pool.fetch(PID, {}))[0].pid
        finally:
            await pool.close()
        return first, second

    first, second = run(scenario())  # type: ignore[misc]
    assert first != second


def test_read_pool__all_connections_busy__503_from_the_pool_timeout(pool_settings: Settings) -> None:
    """Given a pool of one connection busy with a long statement, when another read comes, then it gives
    up waiting for a connection (the pool timeout) with a 503, and the busy read still completes."""

    async def scenario() -> tuple[BaseException | None, list[Any]]:
        pool = make_read_pool(pool_settings)  # one connection, 0.3 s to get it
        await pool.open()
        try:
            busy = asyncio.create_task(pool.fetch(SLEEP, {"seconds": 1.5}))
            while pool.in_use == 0:
                await asyncio.sleep(0.01)
            try:
                await pool.fetch(PID, {})
                error = None
            except DatabaseUnavailableError as exc:
                error = exc
            slept = await busy
        finally:
            await pool.close()
        return error, slept

    error, slept = run(scenario())  # type: ignore[misc]
    assert isinstance(error, DatabaseUnavailableError)
    assert isinstance(error.__cause__, TimeoutError)
    assert len(slept) == 1


def test_read_pool__statement_timeout__503(pool_settings: Settings) -> None:
    short = pool_settings.model_copy(update={"db_statement_timeout_ms": 100})

    async def scenario() -> BaseException | None:
        pool = make_read_pool(short)
        await pool.open()
        try:
            await pool.fetch(SLEEP, {"seconds": 2})
        except DatabaseUnavailableError as exc:
            return exc
        finally:
            await pool.close()
        return None

    error = run(scenario())
    assert isinstance(error, DatabaseUnavailableError)
    assert isinstance(error.__cause__, asyncpg.QueryCanceledError)


def test_read_pool__database_unreachable__503_from_the_refusal_not_a_pool_wait() -> None:
    """The refused connection itself is the 503's cause (psycopg_pool would wait out its timeout)."""
    down = Settings(
        database_url="postgresql://postgres@127.0.0.1:1/flagyard",  # type: ignore[arg-type]
        db_pool_timeout_seconds=30,
    )

    async def scenario() -> tuple[list[DatabaseUnavailableError], ReadPool]:
        pool = make_read_pool(down)
        await pool.open()
        errors: list[DatabaseUnavailableError] = []
        for _ in range(2):
            try:
                await pool.fetch(PID, {})
            except DatabaseUnavailableError as exc:
                errors.append(exc)
        await pool.close()
        return errors, pool

    errors, pool = run(scenario())  # type: ignore[misc]
    assert [type(e.__cause__) for e in errors] == [ConnectionRefusedError, ConnectionRefusedError]
    assert {e.message for e in errors} == {"the database is unavailable; try again later"}
    assert "postgres@" not in repr(pool)


S = "/api/v1/projects/shop/segments"


def test_segments__read_and_paged_list__same_bodies_as_written(client: TestClient, api: Api) -> None:
    """Given three segments (one deleted), when they are read one by one and two per page, then the pages
    hold the live ones in key order with the bodies the writes returned, and the last page has no cursor."""
    api.project()
    written = {}
    for key in ("c", "a", "b", "gone"):
        r = client.post(S, json={"key": key, "name": key.upper(), "included": [f"user-{key}"]})
        assert r.status_code == 201, r.text
        written[key] = r.json()
    assert client.delete(f"{S}/gone", headers={"If-Match": '"1"'}).status_code == 204

    first = client.get(S, params={"limit": 2}).json()
    second = client.get(S, params={"limit": 2, "cursor": first["next_cursor"]}).json()
    one = client.get(f"{S}/b")

    assert first["items"] == [written["a"], written["b"]]
    assert second == {"items": [written["c"]], "next_cursor": None}
    assert (one.status_code, one.json(), one.headers["etag"]) == (200, written["b"], '"1"')


def test_segments__missing_segment_project_or_scope__404_404_403(client: TestClient, api: Api) -> None:
    api.project("shop")
    api.project("other")
    other_reader = api.key("reader", project="other")

    assert client.get(S).json() == {"items": [], "next_cursor": None}
    missing = client.get(f"{S}/nope")
    no_project = client.get("/api/v1/projects/ghost/segments")
    forbidden = client.get(S, headers=auth(other_reader))

    assert (missing.status_code, missing.json()["message"]) == (
        404,
        "segment 'nope' does not exist in project 'shop'",
    )
    assert (no_project.status_code, no_project.json()["message"]) == (404, "project 'ghost' does not exist")
    assert (forbidden.status_code, forbidden.json()["code"]) == (403, "forbidden")


def test_env_config_get__after_patch__body_and_etag_of_the_patch(client: TestClient, api: Api) -> None:
    api.project()
    api.flag(key="a")
    path = f"{F}/a/environments/prod"
    patched = client.patch(
        path, json={"enabled": True, "rules": [RULE]}, headers={"If-Match": client.get(path).headers["etag"]}
    )
    assert patched.status_code == 200, patched.text

    read = client.get(path)

    assert (read.status_code, read.json(), read.headers["etag"]) == (
        200,
        patched.json(),
        patched.headers["etag"],
    )


def test_env_config_get__missing_flag_or_environment__404_naming_which(client: TestClient, api: Api) -> None:
    api.project()
    api.flag(key="a")

    no_flag = client.get(f"{F}/nope/environments/prod")
    no_env = client.get(f"{F}/a/environments/qa")

    assert (no_flag.status_code, no_flag.json()["message"]) == (
        404,
        "flag 'nope' does not exist in project 'shop'",
    )
    assert (no_env.status_code, no_env.json()["message"]) == (
        404,
        "environment 'qa' does not exist in project 'shop'",
    )
