"""A field added to flags after versions were recorded: rolling back across it reads the declared default.

The versions are recorded at the schema's head; then the column is added as a migration would add it
(in a database of the test's own), and a rollback to a version recorded before the field existed runs
with the field declared (``added_field_rollback.py``, in its own interpreter).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import orjson
import sqlalchemy as sa
from added_field_rollback import DEFAULT, EDITS, FIELD
from alembic import command
from alembic.migration import MigrationContext
from alembic.operations import Operations
from cp_helpers import alembic_config, create_database, database_url, drop_database
from sqlalchemy.orm import Session

from flagyard.control_plane import schemas
from flagyard.control_plane.security import Role
from flagyard.control_plane.services import flags, projects
from flagyard.control_plane.services.common import Actor, Tx
from flagyard.db.models import Flag, FlagVersion

ACTOR = Actor(1, "fy_admin_test", Role.ADMIN, None)
HELPER = Path(__file__).with_name("added_field_rollback.py")


def _record_two_versions(engine: sa.Engine) -> None:
    with Session(engine) as session, session.begin():
        tx = Tx(session, ACTOR)
        projects.create_project(tx, schemas.ProjectCreate(key="shop", name="Shop"))
        projects.create_environment(tx, "shop", schemas.EnvironmentCreate(key="prod", name="Prod"))
        body = {"key": "checkout", "name": "Checkout", "description": "first", "type": "boolean"}
        flags.create_flag(tx, "shop", schemas.FlagCreate.model_validate({**body, "variants": {"on": True}}))
    with Session(engine) as session, session.begin():
        tx = Tx(session, ACTOR, if_match='"1"')
        flags.update_flag(tx, "shop", "checkout", schemas.FlagUpdate(description="second"))


def test_added_field__rollback_to_a_version_from_before_it__reads_the_declared_default() -> None:
    name = create_database("flagyard_cp_added_field")
    url = database_url(name)
    engine = sa.create_engine(url)
    try:
        command.upgrade(alembic_config(url), "head")
        _record_two_versions(engine)
        with engine.begin() as conn:
            Operations(MigrationContext.configure(conn)).add_column(
                "flags", sa.Column(FIELD, sa.Text(), nullable=False, server_default=DEFAULT)
            )
            conn.execute(sa.text(f"UPDATE flags SET {FIELD} = 'team-a'"))  # set after the field existed

        run = subprocess.run(
            [sys.executable, str(HELPER), url], capture_output=True, text=True, timeout=120, check=False
        )

        assert run.returncode == 0, run.stderr
        body = orjson.loads(run.stdout)
        assert (body[FIELD], body["description"], body["version"]) == (DEFAULT, "first", 3)
        with engine.connect() as conn:
            stored = conn.scalar(sa.select(sa.column(FIELD)).select_from(Flag.__table__))
            snapshots = dict(conn.execute(sa.select(FlagVersion.version, FlagVersion.snapshot)).all())
        assert stored == DEFAULT
        assert FIELD not in snapshots[1]
        assert (snapshots[3][FIELD], snapshots[3]["description"]) == (DEFAULT, "first")
    finally:
        engine.dispose()
        drop_database(name)


def test_checklist__places__exist_are_counted_and_include_the_tests_edits() -> None:
    """``docs/adding-a-field.md`` names real files, as many as it says, first the ones this test edits."""
    root = Path(__file__).resolve().parents[2]
    checklist = (root / "docs" / "adding-a-field.md").read_text()
    places = re.findall(r"^\d+\. `([^`]+)`", checklist, flags=re.MULTILINE)
    stated = re.search(r"\*\*(\d+) places\*\*", checklist)

    assert stated is not None
    assert len(places) == int(stated.group(1))
    assert [p for p in places if not (root / p).exists()] == []
    assert places[:2] == [path for path, _, _ in EDITS.values()]
    assert places[2] == "control_plane/migrations/versions/"
