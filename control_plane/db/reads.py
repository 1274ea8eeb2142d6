"""Reads on the event loop: single SELECT statements over asyncpg, without a worker thread.

The admin API's hot reads (a flag, a page of flags) are one statement each, consistent without a
transaction. Through the synchronous SQLAlchemy session they paid a worker-thread hop and most of a
request's CPU in the execution layers. Here a statement built once with SQLAlchemy Core (so the schema
stays described in ``db/models.py`` alone) is compiled to SQL once and run by asyncpg on the event loop,
as a prepared statement. asyncpg rather than psycopg's async connections: half the CPU per query here
(74–94 µs against 153–203 µs for one short row), and its pool fails fast when the database is down
(a new connection is attempted on acquire) where psycopg_pool waits out its whole timeout.

Rows come back as named tuples (attribute access, like SQLAlchemy's rows). JSON columns arrive as
:class:`orjson.Fragment`: the database's text, never parsed, which
:func:`~flagyard.control_plane.api.responses.dumps` writes into the response as it is (exact, integers
beyond 64 bits included, and the costliest part of rendering a page saved). A read that loses its
connection (a database restart, say) is retried once.
"""

from __future__ import annotations

import asyncio
from collections import namedtuple
from collections.abc import Mapping
from typing import Any

import asyncpg
import orjson
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg

from flagyard.control_plane.exceptions import map_driver_error
from flagyard.control_plane.settings import Settings
from flagyard.db.engine import session_settings

_DIALECT = pg_asyncpg.dialect()  # type: ignore[no-untyped-call]  # SQLAlchemy leaves it untyped

_LOST = (asyncpg.ConnectionDoesNotExistError, ConnectionResetError)
"""The connection died under the statement (it was not refused): worth one more attempt."""


class ReadQuery:
    """A Core ``SELECT`` compiled once for asyncpg: its SQL text, the order of its parameters, and the
    named tuple its rows become (made from the first result: a statement's columns never change)."""

    __slots__ = ("_order", "_row", "sql")

    def __init__(self, statement: sa.Select[Any]) -> None:
        compiled = statement.compile(dialect=_DIALECT)
        self.sql: str = compiled.string
        self._order: tuple[str, ...] = tuple(compiled.positiontup or ())
        self._row: type[tuple[Any, ...]] | None = None

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        return [values[name] for name in self._order]

    def rows(self, records: list[asyncpg.Record]) -> list[Any]:
        if not records:
            return []
        if self._row is None:
            self._row = namedtuple("Row", records[0].keys())  # type: ignore[misc]
        make = self._row._make  # type: ignore[attr-defined]
        return [make(record) for record in records]


def _dump_json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _setup(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, schema="pg_catalog", encoder=_dump_json, decoder=orjson.Fragment)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """No reset when a connection returns to the pool (asyncpg's default is one more round trip per
    read): these connections only run SELECTs in autocommit, which leave no session state behind."""


class ReadPool:
    """Up to ``size`` connections for :class:`ReadQuery` statements, opened on demand and used on one
    event loop: :meth:`open` and :meth:`close` bracket that loop (the app's lifespan)."""

    def __init__(
        self,
        dsn: str,
        *,
        size: int,
        timeout: float,
        connect_timeout: float,
        server_settings: Mapping[str, str],
        idle_seconds: float = 300.0,
    ) -> None:
        self._dsn = dsn
        self.size = size
        self._timeout = timeout
        self._connect_timeout = connect_timeout
        self._server_settings = dict(server_settings)
        self._idle_seconds = idle_seconds
        self._pool: asyncpg.Pool | None = None

    def __repr__(self) -> str:  # not the DSN: it may hold a password
        return f"<ReadPool size={self.size} open={self._pool is not None}>"

    @property
    def in_use(self) -> int:
        pool = self._pool
        return pool.get_size() - pool.get_idle_size() if pool is not None else 0

    @property
    def idle(self) -> int:
        return self._pool.get_idle_size() if self._pool is not None else 0

    async def open(self) -> None:
        """Start on the running loop (no connection yet: the first reads open them)."""
        await self.close()
        self._pool = await asyncpg.create_pool(
            self._dsn,
            min_size=0,
            max_size=self.size,
            max_inactive_connection_lifetime=self._idle_seconds,
            timeout=self._connect_timeout,
            server_settings=self._server_settings,
            init=_setup,
            reset=_keep_session,
        )

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await asyncio.wait_for(pool.close(), self._timeout)
            except TimeoutError:
                pool.terminate()

    async def fetch(self, query: ReadQuery, values: Mapping[str, Any]) -> list[Any]:
        """The rows of one statement, as named tuples; :class:`~..exceptions.DatabaseUnavailableError`
        (503) when the database cannot answer, another control-plane error for anything else it refuses."""
        if self._pool is None:
            await self.open()
        assert self._pool is not None
        args = query.args(values)
        try:
            try:
                records = await self._fetch(self._pool, query.sql, args)
            except _LOST:
                records = await self._fetch(self._pool, query.sql, args)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError) as exc:
            raise map_driver_error(exc) from exc
        return query.rows(records)

    async def _fetch(self, pool: asyncpg.Pool, sql: str, args: list[Any]) -> list[asyncpg.Record]:
        async with pool.acquire(timeout=self._timeout) as conn:
            return await conn.fetch(sql, *args)


def make_read_pool(settings: Settings) -> ReadPool:
    """The event loop's connections for single-statement reads (the session settings of every
    connection: :func:`flagyard.db.engine.session_settings`)."""
    url = sa.engine.make_url(settings.sqlalchemy_url).set(drivername="postgresql")
    return ReadPool(
        url.render_as_string(hide_password=False),
        size=settings.db_read_pool_size,
        timeout=settings.db_pool_timeout_seconds,
        connect_timeout=settings.db_connect_timeout_seconds,
        server_settings=session_settings(settings),
    )
