"""The syncer's settings: its own class over the shared groups, with none of the control plane's knobs, its
own ConfigurationError, and production mode still refusing the development database credentials."""

from __future__ import annotations

import os
import pkgutil

import pytest

from flagyard.contracts.queue import SYNC_JOB_FUNCTION
from flagyard.control_plane.settings import Settings
from flagyard.syncer import jobs
from flagyard.syncer.exceptions import ConfigurationError, SyncerError
from flagyard.syncer.settings import SyncerSettings

REAL_URL = "postgresql://syncer:s3cret-pw@db.internal:5432/flagyard"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FLAGYARD_"):
            monkeypatch.delenv(name)


def test_fields__none_of_the_control_planes_own_knobs() -> None:
    fields = set(SyncerSettings.model_fields)
    for knob in (
        "bootstrap_admin_key",
        "rate_limit_requests",
        "auth_failure_limit",
        "auth_cache_seconds",
        "idempotency_ttl_seconds",
        "outbox_dispatch",
        "outbox_grace_seconds",
        "db_read_pool_size",
        "access_log",
    ):
        assert knob in Settings.model_fields
        assert knob not in fields
    assert {"database_url", "redis_url", "redis_prefix", "sync_queue", "mode", "stream_max_length"} <= fields
    assert not issubclass(SyncerSettings, Settings)


def test_production__development_database_credentials__refused_with_the_syncers_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLAGYARD_MODE", "production")
    monkeypatch.setenv("FLAGYARD_DATABASE_URL", "postgres://postgres@localhost/flagyard")
    with pytest.raises(
        ConfigurationError, match="FLAGYARD_DATABASE_URL uses the development credentials"
    ) as exc:
        SyncerSettings.from_env()
    assert isinstance(exc.value, SyncerError)
    assert exc.value.__suppress_context__


def test_production__real_database_and_no_bootstrap_key__accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    """The syncer needs no admin key: a weak one in its environment is none of its business."""
    monkeypatch.setenv("FLAGYARD_MODE", "production")
    monkeypatch.setenv("FLAGYARD_DATABASE_URL", REAL_URL)
    monkeypatch.setenv("FLAGYARD_BOOTSTRAP_ADMIN_KEY", "fy_admin_weak")
    settings = SyncerSettings.from_env()
    assert settings.mode == "production"
    assert settings.sqlalchemy_url == "postgresql+psycopg://syncer:s3cret-pw@db.internal:5432/flagyard"


def test_from_env__field_error__names_the_variable_never_the_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGYARD_SYNCER_WORKERS", "lots")
    monkeypatch.setenv("FLAGYARD_DATABASE_URL", "postgresql://syncer:hunter2hunter2@db/x")
    with pytest.raises(ConfigurationError) as exc:
        SyncerSettings.from_env()
    assert "FLAGYARD_SYNCER_WORKERS: Input should be a valid integer" in str(exc.value)
    assert "hunter2" not in str(exc.value)


def test_sync_queue__the_control_planes_for_the_same_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLAGYARD_REDIS_PREFIX", "tenant-b")
    assert SyncerSettings().sync_queue == Settings().sync_queue == "tenant-b-sync"
    monkeypatch.setenv("FLAGYARD_SYNC_QUEUE", "mine")
    assert SyncerSettings().sync_queue == Settings().sync_queue == "mine"


def test_sync_job_function__names_the_syncers_job() -> None:
    assert pkgutil.resolve_name(SYNC_JOB_FUNCTION) is jobs.sync_changes
