"""Helpers for the control-plane tests (a uniquely named module, importable next to conftest)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import psycopg
import sqlalchemy as sa
from alembic.config import Config
from fastapi.testclient import TestClient

from flagyard.control_plane.settings import DEV_BOOTSTRAP_ADMIN_KEY

ADMIN_KEY = DEV_BOOTSTRAP_ADMIN_KEY
ROOT = Path(__file__).resolve().parents[2]
PG_ADMIN_URL = os.environ.get("FLAGYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS_URL = os.environ.get("FLAGYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/13")


def create_database(prefix: str = "flagyard_cp_test") -> str:
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_url(name: str) -> str:
    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    return f"{base}/{name}".replace("postgresql://", "postgresql+psycopg://", 1)


def alembic_config(url: str) -> Config:
    config = Config(str(ROOT / "alembic.ini"))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["configure_logging"] = False
    return config


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


class Api:
    """Small helpers over the admin API for building test state."""

    def __init__(self, client: TestClient) -> None:
        self.c = client

    def project(self, key: str = "shop", envs: tuple[str, ...] = ("dev", "prod")) -> None:
        r = self.c.post("/api/v1/projects", json={"key": key, "name": key.title()})
        assert r.status_code == 201, r.text
        for env in envs:
            r = self.c.post(f"/api/v1/projects/{key}/environments", json={"key": env, "name": env.upper()})
            assert r.status_code == 201, r.text

    def flag(self, project: str = "shop", key: str = "checkout", **extra: Any) -> dict[str, Any]:
        body = {
            "key": key,
            "name": key.title(),
            "type": "boolean",
            "variants": {"on": True, "off": False},
            **extra,
        }
        r = self.c.post(f"/api/v1/projects/{project}/flags", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def segment(self, project: str = "shop", key: str = "beta", **extra: Any) -> dict[str, Any]:
        body = {"key": key, "name": key.title(), "included": ["u1"], **extra}
        r = self.c.post(f"/api/v1/projects/{project}/segments", json=body)
        assert r.status_code == 201, r.text
        return dict(r.json())

    def key(self, role: str, project: str | None = None) -> str:
        r = self.c.post("/api/v1/api-keys", json={"name": f"{role} key", "role": role, "project": project})
        assert r.status_code == 201, r.text
        return str(r.json()["key"])

    def etag(self, path: str) -> str:
        r = self.c.get(path)
        assert r.status_code == 200, r.text
        return r.headers["etag"]


def rows(engine: sa.Engine, sql: str, **params: Any) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params).all())
