"""The SQLAlchemy engine and sessions (psycopg 3, a bounded connection pool)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from flagyard.db.settings import DatabaseSettings


def make_engine(settings: DatabaseSettings) -> sa.Engine:
    """An engine with a bounded pool and connect and statement timeouts.

    JSON is written with orjson but read with the standard library: orjson reads integers beyond
    64 bits as floats, and a flag's JSON variants may hold them.

    No pre-ping (it costs a round trip per request): a connection found dead fails that one request
    with 503 and is discarded with the rest of the pool.
    """
    return sa.create_engine(
        settings.sqlalchemy_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_seconds,
        pool_recycle=1800,
        connect_args={
            "connect_timeout": settings.db_connect_timeout_seconds,
            "options": session_options(settings),
        },
        json_serializer=_json_dumps,
    )


def session_settings(settings: DatabaseSettings) -> dict[str, str]:
    """Every connection's session settings: the statement timeout, times in UTC, and
    synchronous_commit=on whatever the server's default (an acknowledged change survives a crash)."""
    return {
        "statement_timeout": str(settings.db_statement_timeout_ms),
        "TimeZone": "UTC",
        "synchronous_commit": "on",
    }


def session_options(settings: DatabaseSettings) -> str:
    """:func:`session_settings` as libpq's ``options``."""
    return " ".join(f"-c {name}={value}" for name, value in session_settings(settings).items())


def _json_dumps(value: object) -> str:
    """orjson, or the standard library for what orjson refuses (integers beyond 64 bits, int keys)."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return json.dumps(value)


def make_sessionmaker(engine: sa.Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False, autoflush=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any error."""
    with factory() as session, session.begin():
        yield session
