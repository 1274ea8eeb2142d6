"""``flagyard admin-key reset``: a new global admin key written straight into PostgreSQL.

Every admin-API route needs a key, and the bootstrap key is only inserted into an empty key table, so
whoever lost every admin key has no way back through the API. Whoever can reach the database can already
change anything, so this asks only for its URL: it inserts a key as the control plane issues one (only its
SHA-256 and display prefix stored, plus an audit entry) and prints it once.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from flagyard.control_plane.services.common import Actor, Tx

app = typer.Typer(
    help="Recover admin access with database access (no admin key needed).", no_args_is_help=True
)


def insert_admin_key(session: Session, name: str) -> tuple[Actor, str]:
    """A new global admin key in ``session``'s transaction: the actor it is, and the key (never stored)."""
    from flagyard.control_plane.security import Role, display_prefix, generate_key, hash_key
    from flagyard.control_plane.services.common import Actor
    from flagyard.db.models import ApiKey

    key = generate_key(Role.ADMIN)
    row = ApiKey(name=name, role=Role.ADMIN.value, key_hash=hash_key(key), prefix=display_prefix(key))
    session.add(row)
    session.flush()
    return Actor(key_id=row.id, prefix=row.prefix, role=Role.ADMIN, project_id=None), key


def audit_created(tx: Tx, name: str) -> None:
    """The key's own audit entry: it is the first actor of its transaction, so it records itself."""
    after = {"name": name, "role": tx.actor.role.value, "prefix": tx.actor.prefix}
    tx.audit(None, "api_key", str(tx.actor.key_id), "created", {}, after)


@app.command("reset")
def reset(
    name: Annotated[
        str, typer.Option(help="Name of the new key (shown in `keys list`).")
    ] = "admin (recovered)",
) -> None:
    """Mint a new global admin key in the database FLAGYARD_DATABASE_URL names; printed once.

    Needs the ``[server]`` extra (imported here, so the rest of the CLI works with ``[cli]`` alone).
    The lost keys keep working until revoked: with the new key, `flagyard keys list` and
    `flagyard keys revoke ID`.
    """
    try:
        import sqlalchemy as sa

        from flagyard.control_plane.services.common import Tx
        from flagyard.db.engine import make_sessionmaker
        from flagyard.db.settings import DEV_DATABASE_URL, psycopg_url

        from .up_setup import masked
    except ImportError as exc:
        typer.secho(
            f"flagyard admin-key reset: needs the server extra: pip install 'flagyard[server]' "
            f"(missing: {exc.name or exc})",
            fg=typer.colors.RED,
            err=True,
        )
        raise typer.Exit(2) from None
    url = os.environ.get("FLAGYARD_DATABASE_URL") or DEV_DATABASE_URL
    if not name.strip() or len(name) > 256:
        raise typer.BadParameter("must be 1 to 256 characters", param_hint="--name")
    engine = sa.create_engine(psycopg_url(url), connect_args={"connect_timeout": 5}, poolclass=sa.NullPool)
    try:
        with make_sessionmaker(engine)() as session, session.begin():
            actor, key = insert_admin_key(session, name)
            audit_created(Tx(session, actor, request_id="flagyard-admin-key-reset"), name)
    except (sa.exc.OperationalError, sa.exc.ProgrammingError) as exc:
        reason = " ".join(str(exc.orig or exc).split())
        unreachable = isinstance(exc, sa.exc.OperationalError)
        problem = (
            f"PostgreSQL at {masked(url)} did not answer ({reason}); "
            "set FLAGYARD_DATABASE_URL to the control plane's database"
            if unreachable
            else f"{masked(url)} is not a migrated Flagyard database ({reason}); "
            "run `flagyard up` or `alembic upgrade head` first"
        )
        typer.secho(f"flagyard admin-key reset: {problem}", fg=typer.colors.RED, err=True)
        raise typer.Exit(3 if unreachable else 1) from None
    finally:
        engine.dispose()
    typer.echo(
        f"flagyard admin-key reset: new admin key {actor.key_id} ({actor.prefix}…) in {masked(url)}; "
        "shown this once, only its SHA-256 is stored",
        err=True,
    )
    typer.echo(key)
