"""Settings: production mode parses the database URL and measures the bootstrap key; errors never quote a
secret; the RQ queue follows the Redis prefix."""

from __future__ import annotations

import secrets

import pytest
from pydantic import ValidationError

from flagyard.control_plane.exceptions import ConfigurationError
from flagyard.control_plane.settings import (
    MIN_BOOTSTRAP_SECRET_BITS,
    MIN_BOOTSTRAP_SECRET_CHARS,
    Settings,
    estimated_bits,
)

GOOD_URL = "postgresql://flagyard:s3cret-pw@db.internal:5432/flagyard"
WEBHOOK_KEY = secrets.token_urlsafe(32)


def good_key() -> str:
    return "fy_admin_" + secrets.token_urlsafe(32)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://postgres@127.0.0.1:5432/flagyard",
        "postgresql://postgres@127.0.0.1:5432/flagyard",
        "postgres://postgres@localhost/flagyard",
        "postgresql://postgres@127.0.0.1/flagyard?sslmode=disable",
        "postgresql+psycopg://127.0.0.1/flagyard",
        "POSTGRESQL://postgres@[::1]:5432/flagyard",
        "postgresql+psycopg://flagyard:REPLACE_ME@postgres.invalid:5432/flagyard",
        "mysql://root:pw@db/flagyard",
        "not a url",
    ],
)
def test_production__development_database_credentials_in_any_spelling__refused(url: str) -> None:
    with pytest.raises(ValidationError, match="FLAGYARD_DATABASE_URL"):
        Settings(mode="production", database_url=url, bootstrap_admin_key=good_key())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url", [GOOD_URL, "postgres://app:pw@10.0.0.5/flags", "postgresql+psycopg://app:x@h/d"]
)
def test_production__real_database_credentials__accepted(url: str) -> None:
    s = Settings(
        mode="production", database_url=url, bootstrap_admin_key=good_key(), webhook_secret_key=WEBHOOK_KEY
    )  # type: ignore[arg-type]
    assert s.sqlalchemy_url.startswith("postgresql+psycopg://")


def test_production__bootstrap_key_length_boundary__42_refused_43_accepted() -> None:
    assert MIN_BOOTSTRAP_SECRET_CHARS == 43
    secret = secrets.token_urlsafe(32)
    assert len(secret) == 43
    with pytest.raises(ValidationError, match="at least 43 random characters"):
        Settings(mode="production", database_url=GOOD_URL, bootstrap_admin_key="fy_admin_" + secret[:42])  # type: ignore[arg-type]
    s = Settings(
        mode="production",
        database_url=GOOD_URL,
        bootstrap_admin_key="fy_admin_" + secret,
        webhook_secret_key=WEBHOOK_KEY,
    )  # type: ignore[arg-type]
    assert s.bootstrap_admin_key is not None


def test_production__bootstrap_key_entropy_boundary__below_128_bits_refused() -> None:
    # 43 characters cycling over 7 symbols show ~121 bits; over 8 symbols ~128.8: the bar lies between.
    low = ("abcdefg" * 7)[:43]
    high = ("abcdefgh" * 6)[:43]
    assert estimated_bits(low) < MIN_BOOTSTRAP_SECRET_BITS <= estimated_bits(high)
    with pytest.raises(ValidationError, match="not random enough"):
        Settings(mode="production", database_url=GOOD_URL, bootstrap_admin_key="fy_admin_" + low)  # type: ignore[arg-type]
    Settings(
        mode="production",
        database_url=GOOD_URL,
        bootstrap_admin_key="fy_admin_" + high,
        webhook_secret_key=WEBHOOK_KEY,
    )  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="not random enough"):
        Settings(mode="production", database_url=GOOD_URL, bootstrap_admin_key="fy_admin_" + "k" * 60)  # type: ignore[arg-type]
    # A generated key shows far more than the bar.
    assert estimated_bits(secrets.token_urlsafe(32)) > 160


def test_production__bootstrap_key_not_admin_format__refused() -> None:
    for key in ("fy_writer_" + secrets.token_urlsafe(32), secrets.token_urlsafe(40), "fy_admin_" + "é" * 50):
        with pytest.raises(ValidationError, match="fy_admin_"):
            Settings(mode="production", database_url=GOOD_URL, bootstrap_admin_key=key)  # type: ignore[arg-type]


def test_from_env__model_level_error__names_settings_never_values(monkeypatch: pytest.MonkeyPatch) -> None:
    key = "fy_admin_Zq9HIDDENfragmentXy"  # no "SECRET": FLAGYARD_WEBHOOK_SECRET_KEY is named in the message
    monkeypatch.setenv("FLAGYARD_MODE", "production")
    monkeypatch.setenv("FLAGYARD_BOOTSTRAP_ADMIN_KEY", key)
    monkeypatch.setenv("FLAGYARD_DATABASE_URL", "postgresql://app:hunter2hunter2@db/x")
    monkeypatch.setenv("FLAGYARD_REDIS_URL", "redis://:redispassword99@r/0")
    with pytest.raises(ValidationError) as raw:
        Settings()
    assert "DDENfragmentXy" in str(raw.value)  # what pydantic's own message leaks
    with pytest.raises(ConfigurationError) as exc:
        Settings.from_env()
    message = str(exc.value)
    assert "FLAGYARD_BOOTSTRAP_ADMIN_KEY" in message
    assert "FLAGYARD_WEBHOOK_SECRET_KEY is not set" in message
    for secret in (key.removeprefix("fy_admin_"), "hunter2hunter2", "redispassword99"):
        for i in range(len(secret) - 5):
            assert secret[i : i + 6] not in message
    assert exc.value.__cause__ is None
    assert exc.value.__suppress_context__


def test_from_env__field_error__names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGYARD_DB_POOL_SIZE", "lots")
    with pytest.raises(ConfigurationError, match="FLAGYARD_DB_POOL_SIZE: Input should be a valid integer"):
        Settings.from_env()


def test_sync_queue__follows_the_redis_prefix_unless_set() -> None:
    assert Settings().sync_queue == "flagyard-sync"
    assert Settings(redis_prefix="tenant-a").sync_queue == "tenant-a-sync"
    assert Settings(redis_prefix="tenant-a", sync_queue="mine").sync_queue == "mine"
