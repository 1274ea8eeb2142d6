"""The setting groups every plane shares, read from ``FLAGYARD_*`` environment variables.

Each plane's settings class composes the groups it reads (they are pydantic-settings classes, so one flat
environment fills them all) and adds its own knobs; no plane's class inherits another plane's, so a plane
neither reads nor validates what only another plane needs. The groups: :class:`CommonSettings` (mode and
logging, how a settings error is reported, how production mode refuses weak secrets),
:class:`RedisSettings` (the Redis the planes meet on and the contract's key prefix) and
:class:`SyncQueueSettings` (the RQ queue between the control plane and the syncer). The database group is
:class:`flagyard.db.settings.DatabaseSettings`.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .redis_connect import is_sentinel_url, parse_sentinel_url, url_problem

ENV_PREFIX = "FLAGYARD_"


def describe_errors(exc: ValidationError, env_prefix: str = ENV_PREFIX) -> str:
    """A settings error as lines ``FLAGYARD_NAME: why``, without the input values pydantic would quote
    (its default message shows the value, or for a model-level error every value: all the secrets)."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        loc = "_".join(str(part) for part in error.get("loc", ())).upper()
        where = f"{env_prefix}{loc}" if loc else "settings"
        lines.append(f"{where}: {error.get('msg', 'invalid')}")
    return "\n".join(lines)


class CommonSettings(BaseSettings):
    """What every Flagyard process reads: the mode and the logging.

    A plane's class names its own ``configuration_error``, so :meth:`from_env` raises the plane's
    exception (each package keeps its errors in its own ``exceptions.py``). Production mode asks every
    group for :meth:`production_problems` and refuses them all in one error, so an operator sees every weak
    secret at once, not one per restart.
    """

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_file=None, extra="ignore", frozen=True)

    configuration_error: ClassVar[type[Exception]]
    """What :meth:`from_env` raises: the plane's own ``ConfigurationError``."""

    mode: Literal["development", "production"] = "development"
    """``production`` refuses default and weak secrets and changes secure defaults."""
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_json: bool = True
    """JSON lines (else human-readable console lines)."""

    @field_validator("log_level", mode="before")
    @classmethod
    def _level_in_any_case(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @classmethod
    def from_env(cls, **overrides: Any) -> Self:
        """The settings of the ``FLAGYARD_*`` environment; the plane's ``configuration_error`` (naming each
        bad setting and why, never its value) instead of pydantic's message."""
        try:
            return cls(**overrides)
        except ValidationError as exc:
            raise cls.configuration_error(f"bad settings:\n{describe_errors(exc)}") from None

    def production_problems(self) -> list[str]:
        """Why production mode refuses these settings (each group adds its own; never quotes a value)."""
        return []

    @model_validator(mode="after")
    def _refuse_weak_secrets(self) -> Self:
        if self.mode == "production":
            problems = self.production_problems()
            if problems:
                raise ValueError("production mode refuses default secrets: " + "; ".join(problems))
        return self


class RedisSettings(CommonSettings):
    """The Redis of the contract (``flagyard.contracts.redis``) and the prefix of its every key."""

    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    """A secret: it may carry a password."""
    redis_timeout_seconds: float = Field(default=2.0, gt=0)
    """Socket timeout of Redis calls."""
    redis_prefix: str = Field(default="flagyard", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    """Prefix of every key of the Redis contract (ARCHITECTURE.md); the same in every plane."""

    @field_validator("redis_url")
    @classmethod
    def _sentinel_url_well_formed(cls, value: SecretStr) -> SecretStr:
        check_sentinel_url(value)
        return value

    def production_problems(self) -> list[str]:
        problem = redis_url_problem(self.redis_url.get_secret_value())
        return [*super().production_problems(), *([problem] if problem else [])]


def check_sentinel_url(value: SecretStr | None) -> SecretStr | None:
    """A malformed ``redis+sentinel://`` URL is refused in every mode, when the settings are read (naming
    the part at fault, never the URL); other schemes are left to production mode and redis-py as before."""
    if value is not None and is_sentinel_url(value.get_secret_value()):
        problem = url_problem(value.get_secret_value())
        if problem:
            raise ValueError(problem)
    return value


PLACEHOLDER_PASSWORD = "REPLACE_ME"  # noqa: S105 - the placeholder refused, not a credential
"""The password the Kubernetes secret template holds until an operator replaces it (with ``*.invalid``
hosts); production mode refuses a URL that still carries either."""


def redis_url_problem(url: str, setting: str = "FLAGYARD_REDIS_URL") -> str | None:
    """Why production mode refuses a Redis URL (of ``setting``), or ``None``.

    A Redis without a password is allowed (a private network may be its protection); the deployment
    template's placeholders and a URL that is not a Redis URL are not: a data plane or syncer started with
    them would only fail later, at its first Redis call. A Sentinel URL's placeholders are looked for in
    its password, its ``sentinel_password`` and every Sentinel host.
    """
    problem = url_problem(url)
    if problem:
        return f"{setting}: {problem}"
    if is_sentinel_url(url):
        target = parse_sentinel_url(url)
        passwords = (target.password, target.sentinel_password)
        hosts = [host for host, _port in target.sentinels]
    else:
        parsed = urlsplit(url)
        passwords, hosts = (parsed.password, None), [parsed.hostname or ""]
    if PLACEHOLDER_PASSWORD in passwords or any(host.lower().endswith(".invalid") for host in hosts):
        return f"{setting} is the deployment template's placeholder"
    return None


class SyncQueueSettings(RedisSettings):
    """The RQ queue through which the control plane's outbox hands changes to the syncer."""

    sync_queue: str = Field(default="", pattern=r"^[A-Za-z0-9_.:-]*$")
    """The RQ queue of outbox jobs; by default ``<redis_prefix>-sync``, so deployments that share a Redis
    with different prefixes never consume each other's jobs (RQ's own keys, ``rq:…``, are not under the
    prefix; only the queue name tells them apart)."""

    @model_validator(mode="before")
    @classmethod
    def _queue_follows_prefix(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("sync_queue"):
            return {**data, "sync_queue": f"{data.get('redis_prefix') or 'flagyard'}-sync"}
        return data
