"""Alembic: upgrade from scratch, downgrade to nothing, upgrade again; the models match the migrations."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cp_helpers import alembic_config, create_database, database_url, drop_database

from flagyard.control_plane.db.models import Base


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_migrations__up_down_up__schema_created_removed_recreated() -> None:
    name = create_database("flagyard_cp_migrations")
    url = database_url(name)
    try:
        config = alembic_config(url)
        command.upgrade(config, "head")
        assert set(Base.metadata.tables) <= _tables(url)
        command.downgrade(config, "base")
        assert _tables(url) == {"alembic_version"}
        command.upgrade(config, "head")
        assert set(Base.metadata.tables) <= _tables(url)
    finally:
        drop_database(name)


def test_migrations__head__match_the_orm_models(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []
