"""Each plane has its own settings class, composed of the shared groups (flagyard.contracts.settings,
flagyard.db.settings) and never another plane's; each reports a bad environment with its own package's
ConfigurationError; one environment (what `flagyard up` hands every child) means the same to all."""

from __future__ import annotations

import os

import pytest
from ops_helpers import PLANE_SETTINGS

from flagyard.contracts.settings import CommonSettings, RedisSettings, SyncQueueSettings
from flagyard.control_plane import exceptions as control_plane_exceptions
from flagyard.control_plane.settings import Settings
from flagyard.data_plane import exceptions as data_plane_exceptions
from flagyard.data_plane.settings import DataPlaneSettings
from flagyard.db.settings import DatabaseSettings
from flagyard.syncer import exceptions as syncer_exceptions
from flagyard.syncer.settings import SyncerSettings

PLANES: dict[type[CommonSettings], type[Exception]] = {
    Settings: control_plane_exceptions.ConfigurationError,
    SyncerSettings: syncer_exceptions.ConfigurationError,
    DataPlaneSettings: data_plane_exceptions.ConfigurationError,
}
GROUPS = {
    Settings: {DatabaseSettings, SyncQueueSettings},
    SyncerSettings: {DatabaseSettings, SyncQueueSettings},
    DataPlaneSettings: {RedisSettings},
}
"""What each plane reads besides its own knobs: the data plane no database and no sync queue."""


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("FLAGYARD_"):
            monkeypatch.delenv(name)


def test_every_deployed_plane__is_listed_here() -> None:
    assert set(PLANE_SETTINGS.values()) == set(PLANES)


@pytest.mark.parametrize("plane", PLANES, ids=lambda c: c.__name__)
def test_plane_settings__compose_the_shared_groups_and_no_other_plane(plane: type[CommonSettings]) -> None:
    assert [other for other in PLANES if other is not plane and issubclass(plane, other)] == []
    groups = {DatabaseSettings, SyncQueueSettings, RedisSettings}
    assert {group for group in groups if issubclass(plane, group)} >= GROUPS[plane]
    if DatabaseSettings not in GROUPS[plane]:
        assert not issubclass(plane, DatabaseSettings)
        assert not (set(DatabaseSettings.model_fields) - set(CommonSettings.model_fields)) & set(
            plane.model_fields
        )
    if SyncQueueSettings not in GROUPS[plane]:
        assert "sync_queue" not in plane.model_fields


@pytest.mark.parametrize(("plane", "error"), PLANES.items(), ids=lambda c: c.__name__)
def test_from_env__bad_setting__the_planes_own_configuration_error(
    plane: type[CommonSettings], error: type[Exception], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLAGYARD_REDIS_PREFIX", "has space")
    monkeypatch.setenv("FLAGYARD_REDIS_URL", "redis://:redisPASSWORDq8w7@127.0.0.1:6379/0")
    with pytest.raises(error, match="FLAGYARD_REDIS_PREFIX: String should match pattern") as caught:
        plane.from_env()
    assert type(caught.value) is error
    assert "redisPASSWORD" not in str(caught.value)


@pytest.mark.parametrize("plane", PLANES, ids=lambda c: c.__name__)
def test_one_environment__means_the_same_to_every_plane(
    plane: type[CommonSettings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`flagyard up` hands every child one environment: a lower-case level (which the data plane has always
    taken) must not stop the control plane."""
    monkeypatch.setenv("FLAGYARD_LOG_LEVEL", "warning")
    monkeypatch.setenv("FLAGYARD_LOG_JSON", "false")
    monkeypatch.setenv("FLAGYARD_REDIS_PREFIX", "tenant-c")
    settings = plane.from_env()
    assert (settings.log_level, settings.log_json, settings.mode) == ("WARNING", False, "development")
    assert isinstance(settings, RedisSettings)
    assert settings.redis_prefix == "tenant-c"


def test_redis_timeout__the_data_plane_keeps_its_request_path_default() -> None:
    assert Settings().redis_timeout_seconds == SyncerSettings().redis_timeout_seconds == 2.0
    assert DataPlaneSettings().redis_timeout_seconds == 0.5
