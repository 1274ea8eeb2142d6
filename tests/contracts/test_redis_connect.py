"""The Redis URL forms every plane connects with (flagyard.contracts.redis_connect): ``redis+sentinel://``
parses into what redis-py's Sentinel needs, a malformed one is refused when the settings are read (naming
the part at fault, never quoting the URL), production mode looks for the template's placeholders in every
part of it, and ``FLAGYARD_REDIS_READ_URL`` is held to the same rules. A plain URL still gives a plain
client. (The clients against a real Sentinel set, across a failover: tests/faults/test_fault_redis_sentinel.py.)"""

from __future__ import annotations

import os
import secrets

import pytest
import redis
import redis.sentinel
from polling_helpers import free_port
from pydantic import ValidationError

from flagyard.cli.up_setup import check_redis
from flagyard.contracts.redis_connect import (
    RedisUrlError,
    SentinelTarget,
    close_client,
    parse_sentinel_url,
    redis_client,
    url_problem,
)
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


def test_parse__full_form__every_part() -> None:
    target = parse_sentinel_url(
        "rediss+sentinel://app:pw%40x@s1.internal:26380,s2.internal,[fd00::3]:26381/flagyard/4"
        "?sentinel_password=sp&sentinel_username=su"
    )
    assert target == SentinelTarget(
        sentinels=(("s1.internal", 26380), ("s2.internal", 26379), ("fd00::3", 26381)),
        master="flagyard",
        db=4,
        username="app",
        password="pw@x",
        sentinel_username="su",
        sentinel_password="sp",
        ssl=True,
    )


def test_parse__short_form__defaults() -> None:
    target = parse_sentinel_url("redis+sentinel://10.0.0.1/mymaster")
    assert (target.sentinels, target.master, target.db, target.password, target.ssl) == (
        (("10.0.0.1", 26379),),
        "mymaster",
        0,
        None,
        False,
    )


def test_target__repr_and_masked__no_password() -> None:
    target = parse_sentinel_url("redis+sentinel://:hunter2@s1:26379,s2:26379/m/1?sentinel_password=hunter3")
    for text in (repr(target), target.masked()):
        assert "hunter" not in text
    assert target.masked() == "redis+sentinel://:***@s1:26379,s2:26379/m/1"


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("redis+sentinel://:hunter2@/flagyard/0", "no Sentinel"),
        ("redis+sentinel://:hunter2@s1:26379", "no master"),
        ("redis+sentinel://:hunter2@s1:26379/flagyard/zero", "the db a number"),
        ("redis+sentinel://:hunter2@s1:26379/a/0/extra", "/<master-name>[/<db>]"),
        ("redis+sentinel://:hunter2@s1:port/flagyard", "port that is not a number"),
        ("redis+sentinel://:hunter2@s1:70000/flagyard", "port that is not a number"),
        (
            "redis+sentinel://:hunter2@s1/flagyard?socket_timeout=1",
            "unknown Sentinel URL parameter(s): socket_timeout",
        ),
    ],
)
def test_malformed_sentinel_url__every_plane__refused_naming_the_part_not_the_url(url: str, why: str) -> None:
    with pytest.raises(RedisUrlError) as caught:
        parse_sentinel_url(url)
    assert why in str(caught.value)
    assert url_problem(url) == str(caught.value)
    for build in (
        lambda: DataPlaneSettings.from_env(redis_url=url),
        lambda: DataPlaneSettings.from_env(redis_read_url=url),
        lambda: SyncerSettings.from_env(redis_url=url, database_url=DB),
        lambda: Settings.from_env(redis_url=url, database_url=DB),
    ):
        with pytest.raises(Exception, match="bad settings") as refused:
            build()
        assert why in str(refused.value)
        assert "hunter2" not in str(refused.value)


def test_url_problem__foreign_scheme__named() -> None:
    assert url_problem("http://redis:6379/0") is not None
    assert url_problem("redis://redis:6379/0") is None
    assert url_problem("redis+sentinel://s1,s2,s3/flagyard/0") is None


def _production_data_plane(**urls: str) -> DataPlaneSettings:
    return DataPlaneSettings(mode="production", **urls)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "url",
    [
        "redis+sentinel://:REPLACE_ME@s1:26379,s2:26379/flagyard/0",
        "redis+sentinel://:good-pw-4f2a@s1:26379,s2:26379/flagyard/0?sentinel_password=REPLACE_ME",
        "redis+sentinel://:good-pw-4f2a@s1:26379,sentinel.invalid:26379/flagyard/0",
    ],
)
def test_production__sentinel_url_with_template_placeholder__refused(url: str) -> None:
    with pytest.raises(ValidationError, match="FLAGYARD_REDIS_URL is the deployment template") as caught:
        _production_data_plane(redis_url=url)
    assert "good-pw" not in str(caught.value)
    with pytest.raises(ValidationError, match="FLAGYARD_REDIS_READ_URL is the deployment template"):
        _production_data_plane(redis_url="redis://redis:6379/0", redis_read_url=url)


def test_production__real_sentinel_urls__accepted_by_every_plane() -> None:
    url = "redis+sentinel://:pw-4f2a9c@s1:26379,s2:26379,s3:26379/flagyard/0"
    read = "redis+sentinel://:pw-4f2a9c@s1:26379/flagyard/0"
    dp = _production_data_plane(redis_url=url, redis_read_url=read)
    assert dp.redis_read_url is not None
    assert dp.redis_read_url.get_secret_value() == read
    assert (
        SyncerSettings(mode="production", redis_url=url, database_url=DB).redis_url.get_secret_value() == url
    )  # type: ignore[arg-type]
    settings = Settings(
        mode="production",
        redis_url=url,  # type: ignore[arg-type]
        database_url=DB,  # type: ignore[arg-type]
        bootstrap_admin_key=ADMIN_KEY,  # type: ignore[arg-type]
        webhook_secret_key="Vd3kQ9xL2mP7wR4tY8bN1cF6hJ0sZ5gA-Ue_Ko2Xi7",  # type: ignore[arg-type]
    )
    assert settings.redis_url.get_secret_value() == url


def test_production__foreign_read_url__refused() -> None:
    with pytest.raises(ValidationError, match="FLAGYARD_REDIS_READ_URL"):
        _production_data_plane(redis_url="redis://redis:6379/0", redis_read_url="http://replica:6379/0")


def test_clients__plain_url__plain_pool__sentinel_url__sentinel_pool_with_the_options() -> None:
    plain = redis_client("redis://127.0.0.1:6379/15", socket_timeout=1.5)
    assert type(plain.connection_pool) is redis.ConnectionPool
    assert plain.connection_pool.connection_kwargs["socket_timeout"] == 1.5
    master = redis_client("redis+sentinel://:hunter2@s1:26379,s2:26380/flagyard/3", socket_timeout=1.5)
    replica = redis_client("redis+sentinel://:hunter2@s1:26379,s2:26380/flagyard/3", replica=True)
    try:
        for client, is_master in ((master, True), (replica, False)):
            pool = client.connection_pool
            assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
            assert (pool.service_name, pool.is_master) == ("flagyard", is_master)
            assert pool.connection_kwargs["db"] == 3
            assert pool.connection_kwargs["password"] == "hunter2"
        assert master.connection_pool.connection_kwargs["socket_timeout"] == 1.5
        # Discovery asks each Sentinel once: redis-py's default retries would hold every new connection
        # for seconds (backoff per Sentinel) while the Sentinels are unreachable.
        for sentinel in master.connection_pool.sentinel_manager.sentinels:
            assert sentinel.connection_pool.connection_kwargs["retry"].get_retries() == 0
            assert sentinel.connection_pool.connection_kwargs["socket_timeout"] == 1.5
    finally:
        for client in (plain, master, replica):
            client.close()


def test_sentinels_unreachable__error__names_no_password() -> None:
    """What every plane logs while no Sentinel answers (redis-py's MasterNotFoundError quotes each Sentinel
    client's repr): the Redis password and the Sentinels' password stay out."""
    url = f"redis+sentinel://:hunter2@127.0.0.1:{free_port()},127.0.0.1:{free_port()}/flagyard/0?sentinel_password=hunter3"
    for replica in (False, True):
        client = redis_client(url, replica=replica, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            with pytest.raises(redis.ConnectionError) as caught:
                client.ping()
        finally:
            close_client(client)
        assert "flagyard" in str(caught.value)
        assert "hunter" not in str(caught.value)
        assert "hunter" not in repr(caught.value)


def test_up_check_redis__sentinel_set_unreachable__names_the_sentinels_not_the_password() -> None:
    ports = (free_port(), free_port())
    url = f"redis+sentinel://:hunter2@127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}/flagyard/0"
    problem = check_redis(DataPlaneSettings(redis_url=url, redis_timeout_seconds=0.5))  # type: ignore[arg-type]
    assert problem is not None
    assert f"the master 'flagyard' of the Sentinels 127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}" in problem
    assert "No master found for 'flagyard'" in problem
    assert "hunter2" not in problem
