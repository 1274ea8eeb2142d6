"""What the locustfiles read from the environment (``FLAGYARD_LOADTEST_*``); ``loadtests.run`` sets it.

The locustfiles also run on their own against any stack (``locust -f loadtests/locustfile_admin.py
--host http://127.0.0.1:8000``) with these variables set; without ``FLAGYARD_LOADTEST_FLAGS`` the users
find the flags themselves (the admin user lists them, the evaluation user asks ``ResolveAll``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

FlagTypeName = Literal["boolean", "string", "integer", "float", "object"]


class LoadTestSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FLAGYARD_LOADTEST_", extra="ignore", frozen=True)

    admin_key: SecretStr = SecretStr("")
    """Admin API key (``Authorization: Bearer …``) of the admin user."""
    sdk_key: SecretStr = SecretStr("")
    """SDK key of the evaluated environment (gRPC metadata ``authorization: Bearer …``)."""
    grpc_target: str = "127.0.0.1:50051"
    """The data plane's address."""
    project: str = "demo"
    environment: str = "production"
    """The environment the admin user changes and whose SDK key the evaluation user holds."""
    flags: dict[str, FlagTypeName] = Field(default_factory=dict)
    """Flag key → type (JSON); empty: every flag of the project / environment."""
    admin_wait_seconds: float = Field(default=0.1, ge=0)
    """An admin user waits up to this long (uniformly random) between tasks."""
    eval_wait_seconds: float = Field(default=0.01, ge=0)
    """An evaluation user waits up to this long between calls."""
    grpc_timeout_seconds: float = Field(default=2.0, gt=0)
    http_timeout_seconds: float = Field(default=10.0, gt=0)
    mixed_admin_users: int = Field(default=1, ge=1)
    """Admin users of the mixed scenario (the other users evaluate)."""
    summary_file: Path | None = None
    """Where the mixed scenario writes its version summary (JSON) at test stop."""


@lru_cache(maxsize=1)
def settings() -> LoadTestSettings:
    return LoadTestSettings()
