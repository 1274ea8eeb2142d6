"""Roll a flag back in an interpreter where a field was added as ``docs/adding-a-field.md`` says.

Run by ``test_cp_added_field.py`` (``python added_field_rollback.py <database url>``): every field list
is derived when its module is imported, so the edited declaration and ORM model must be the first
versions of those modules this interpreter sees. The edits are the checklist's, applied to the real
sources in memory (nothing on disk changes); the database already has the column. Prints the rollback's
response body as JSON.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

ROOT = Path(__file__).resolve().parents[2]
FIELD = "team"
DEFAULT = "unassigned"
EDITS = {
    "flagyard.db.fields": (
        "db/fields.py",
        '    Field("salt", editable=False, served=True, in_body=False),\n',
        f'    Field("{FIELD}", default="{DEFAULT}"),\n',
    ),
    "flagyard.db.models": (
        "db/models.py",
        "    salt: Mapped[str] = mapped_column(sa.String(128))\n",
        f'    {FIELD}: Mapped[str] = mapped_column(sa.Text, server_default="{DEFAULT}")\n',
    ),
}
"""Module → (its file, the line the new one follows, the new line)."""


def load_edited(name: str, path: str, after: str, line: str) -> None:
    source = (ROOT / path).read_text()
    if source.count(after) != 1:
        raise SystemExit(f"{path}: the line to add after is not there once: {after!r}")
    spec = importlib.util.spec_from_loader(name, loader=None, origin=str(ROOT / path))
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__file__ = str(ROOT / path)
    sys.modules[name] = module
    exec(compile(source.replace(after, after + line), str(ROOT / path), "exec"), module.__dict__)
    package, _, attribute = name.rpartition(".")
    setattr(importlib.import_module(package), attribute, module)


def main(url: str) -> None:
    for name, edit in EDITS.items():
        load_edited(name, *edit)
    from flagyard.control_plane import schemas
    from flagyard.control_plane.security import Role
    from flagyard.control_plane.services import flags
    from flagyard.control_plane.services.common import Actor, Tx

    engine = sa.create_engine(url)
    try:
        with Session(engine) as session, session.begin():
            tx = Tx(session, Actor(1, "fy_admin_test", Role.ADMIN, None))
            result = flags.rollback(tx, "shop", "checkout", schemas.RollbackIn(version=1))
    finally:
        engine.dispose()
    sys.stdout.write(orjson.dumps(result.body, default=str).decode())


if __name__ == "__main__":
    main(sys.argv[1])
