"""Production mode in every plane that reads Redis refuses the deployment template's Redis URL (and a URL
that is not Redis's) when it starts, not at its first Redis call; a Redis without a password is allowed.
Neither the error nor its message quotes the URL."""

from __future__ import annotations

import os
import secrets
from typing import Any

import pytest
from pydantic import ValidationError

from flagyard.control_plane.settings import Settings
from flagyard.data_plane.settings import DataPlaneSettings
from flagyard.syncer.settings import SyncerSettings

DB = "postgresql://flagyard:s3cret-pw@db.internal:5432/flagyard"
ADMIN_KEY = "fy_admin_" + secrets.token_urlsafe(32)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FLAGYARD_"):
            monkeypatch.delenv(name)


def planes(redis_url: str) -> list[Any]:
    return [
        lambda: DataPlaneSettings(mode="production", redis_url=redis_url),  # type: ignore[arg-type]
        lambda: SyncerSettings(mode="production", redis_url=redis_url, database_url=DB),  # type: ignore[arg-type]
        lambda: Settings(
            mode="production",
            redis_url=redis_url,  # type: ignore[arg-type]
            database_url=DB,  # type: ignore[arg-type]
            bootstrap_admin_key=ADMIN_KEY,  # type: ignore[arg-type]
            webhook_secret_key="Vd3kQ9xL2mP7wR4tY8bN1cF6hJ0sZ5gA-Ue_Ko2Xi7",  # type: ignore[arg-type]
        ),
    ]


@pytest.mark.parametrize(
    "url",
    [
        "redis://:REPLACE_ME@redis.invalid:6379/0",
        "redis://:s3cret@cache.invalid:6379/0",
        "http://redis:6379/0",
    ],
)
@pytest.mark.parametrize("plane", range(3))
def test_production__template_or_foreign_redis_url__refused_without_quoting_it(url: str, plane: int) -> None:
    with pytest.raises(ValidationError, match="FLAGYARD_REDIS_URL") as caught:
        planes(url)[plane]()
    assert "REPLACE_ME" not in str(caught.value)
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    "url", ["redis://redis:6379/0", "rediss://:pw-4f2a9c@cache.internal:6380/1", "unix:///run/redis.sock"]
)
@pytest.mark.parametrize("plane", range(3))
def test_production__real_redis_url__accepted(url: str, plane: int) -> None:
    assert planes(url)[plane]().redis_url.get_secret_value() == url
