"""Alembic: upgrade from scratch, downgrade to nothing, upgrade again; the models match the migrations."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from cp_helpers import alembic_config, create_database, database_url, drop_database

from flagyard.db.models import Base


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


SEED_0001 = (
    "INSERT INTO projects (key, name) VALUES ('shop', 'Shop')",
    "INSERT INTO environments (project_id, key, name) "
    "SELECT id, e, e FROM projects, (VALUES ('dev'), ('prod')) AS v(e)",
    "INSERT INTO flags (project_id, key, name, tags, type, variants, salt, version) "
    "SELECT id, k, k, '[]', 'boolean', '{\"on\": true}', 's', n FROM projects, (VALUES ('a', 7), ('b', 2)) AS v(k, n)",
    "INSERT INTO flag_environments (flag_id, environment_id, enabled, rules, prerequisites) "
    "SELECT f.id, e.id, false, '[]', '[]' FROM flags f, environments e",
)
"""Two flags at versions 7 and 2, each configured in two environments, as schema 0001 stores them."""

ENV_VERSIONS = (
    "SELECT f.key, e.key, fe.version FROM flag_environments fe JOIN flags f ON f.id = fe.flag_id "
    "JOIN environments e ON e.id = fe.environment_id ORDER BY 1, 2"
)


def test_migration_environment_change_version__existing_rows__get_their_flags_version() -> None:
    """Nothing is rewritten at upgrade: each environment's version starts at what Redis already holds,
    the flag's current version."""
    name = create_database("flagyard_cp_migrations")
    url = database_url(name)
    engine = sa.create_engine(url)
    try:
        config = alembic_config(url)
        command.upgrade(config, "0001")
        with engine.begin() as conn:
            for sql in SEED_0001:
                conn.execute(sa.text(sql))
        command.upgrade(config, "0002_environment_change_version")
        with engine.connect() as conn:
            found = conn.execute(sa.text(ENV_VERSIONS)).all()
        assert [tuple(r) for r in found] == [
            ("a", "dev", 7),
            ("a", "prod", 7),
            ("b", "dev", 2),
            ("b", "prod", 2),
        ]
        command.downgrade(config, "0001")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("flag_environments")}
        assert "version" not in columns
    finally:
        engine.dispose()
        drop_database(name)


def test_migration_environment_sampling__existing_environments_off__salt_required_with_a_policy() -> None:
    """Existing environments do not sample after the upgrade; the schema refuses a policy without its salt
    (or a salt without a policy); the downgrade removes both columns."""
    name = create_database("flagyard_cp_migrations")
    url = database_url(name)
    engine = sa.create_engine(url)
    try:
        config = alembic_config(url)
        command.upgrade(config, "0009_change_requests")
        with engine.begin() as conn:
            conn.execute(sa.text(SEED_0001[0]))
            conn.execute(sa.text(SEED_0001[1]))
        command.upgrade(config, "0010_environment_sampling")
        with engine.connect() as conn:
            found = conn.execute(
                sa.text("SELECT key, sampling, sampling_salt FROM environments ORDER BY key")
            )
            assert [tuple(r) for r in found] == [("dev", None, None), ("prod", None, None)]
        policy = '{"attributes": ["plan"], "hashed": []}'
        for sql in (
            f"UPDATE environments SET sampling = '{policy}' WHERE key = 'dev'",
            "UPDATE environments SET sampling_salt = repeat('a', 32) WHERE key = 'dev'",
        ):
            with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
                conn.execute(sa.text(sql))
        with engine.begin() as conn:
            conn.execute(
                sa.text(f"UPDATE environments SET sampling = '{policy}', sampling_salt = repeat('a', 32)")
            )
        command.downgrade(config, "0009_change_requests")
        with engine.connect() as conn:
            columns = {c["name"] for c in sa.inspect(conn).get_columns("environments")}
        assert {"sampling", "sampling_salt"}.isdisjoint(columns)
        assert "approvals_required" in columns
    finally:
        engine.dispose()
        drop_database(name)
