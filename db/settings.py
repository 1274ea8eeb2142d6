"""The database setting group: the PostgreSQL every plane that reads the schema connects to.

Composed by the control plane's and the syncer's settings (``FLAGYARD_DATABASE_URL``, ``FLAGYARD_DB_*``);
:mod:`.engine` builds the engine from it. In production mode the development credentials are refused however
the URL is spelled.
"""

from __future__ import annotations

import sqlalchemy as sa
from pydantic import Field, SecretStr

from flagyard.contracts.settings import PLACEHOLDER_PASSWORD, CommonSettings

DEV_DATABASE_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/flagyard"


def database_url_problem(url: str) -> str | None:
    """Why production mode refuses a database URL, or ``None``.

    The URL is parsed, so any spelling of the development default is caught (``postgres://``,
    ``postgresql://``, ``postgresql+psycopg://``, ``localhost``, no port): the development credentials are
    PostgreSQL's superuser ``postgres`` without a password, trusted by the local server. The Kubernetes
    template's placeholders (password ``REPLACE_ME``, a host under ``.invalid``) are refused too.
    """
    try:
        parsed = sa.make_url(url)
    except (sa.exc.ArgumentError, ValueError):
        return "FLAGYARD_DATABASE_URL is not a database URL"
    if parsed.get_backend_name() not in ("postgresql", "postgres"):
        return "FLAGYARD_DATABASE_URL must be a PostgreSQL URL"
    if parsed.username in (None, "", "postgres") and not parsed.password:
        return "FLAGYARD_DATABASE_URL uses the development credentials (user postgres without a password)"
    if parsed.password == PLACEHOLDER_PASSWORD or (parsed.host or "").lower().endswith(".invalid"):
        return "FLAGYARD_DATABASE_URL is the deployment template's placeholder"
    return None


def psycopg_url(url: str) -> str:
    """A PostgreSQL URL with SQLAlchemy's psycopg 3 driver, whatever scheme was configured."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


class DatabaseSettings(CommonSettings):
    """PostgreSQL: the URL (a secret), the pool's bounds and the timeouts of every connection."""

    database_url: SecretStr = SecretStr(DEV_DATABASE_URL)
    db_pool_size: int = Field(default=10, ge=1, le=200)
    db_max_overflow: int = Field(default=10, ge=0, le=200)
    db_pool_timeout_seconds: float = Field(default=5.0, gt=0)
    db_connect_timeout_seconds: int = Field(default=3, ge=1)
    db_statement_timeout_ms: int = Field(default=15_000, ge=0)

    def production_problems(self) -> list[str]:
        problem = database_url_problem(self.database_url.get_secret_value())
        return [*super().production_problems(), *([problem] if problem else [])]

    @property
    def sqlalchemy_url(self) -> str:
        """The database URL with the psycopg 3 driver (:func:`psycopg_url`)."""
        return psycopg_url(self.database_url.get_secret_value())
