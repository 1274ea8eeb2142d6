"""deploy/sentinel/docker-compose.sentinel.yml (Redis HA over docker-compose.yml) agrees with the base file
and the code: every plane that reads Redis gets a ``redis+sentinel://`` URL whose Sentinels are services of
the override and whose master is the one they monitor; the merged environment parses as each plane's
settings; the Sentinel config the services generate is one ``redis-server --sentinel`` accepts (run here,
on loopback, with the service names swapped for a local Redis). The k8s Secret template's Sentinel example
parses too."""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from ops_helpers import PLANE_SETTINGS, ROOT, compose, compose_env, load_yaml
from polling_helpers import free_port

from flagyard.contracts.redis_connect import parse_sentinel_url

OVERRIDE = ROOT / "deploy" / "sentinel" / "docker-compose.sentinel.yml"
SENTINELS = {"sentinel-1", "sentinel-2", "sentinel-3"}


@pytest.fixture(scope="module")
def override() -> dict[str, Any]:
    return dict(load_yaml(OVERRIDE)["services"])


def _sentinel_config(service: dict[str, Any]) -> str:
    script = service["command"][0]
    match = re.search(r"<<'CONF'\n(.*?)\nCONF\n", script, re.S)
    assert match, "the Sentinel service generates its config with a CONF heredoc"
    return match.group(1)


def test_override__adds_a_replica_and_three_sentinels(override: dict[str, Any]) -> None:
    assert SENTINELS | {"redis-replica"} <= set(override)
    assert set(override) - SENTINELS - {"redis-replica"} <= set(compose()["services"])
    replica = override["redis-replica"]["command"]
    assert replica[replica.index("--replicaof") + 1 :][:2] == ["redis", "6379"]


@pytest.mark.parametrize("plane", sorted(PLANE_SETTINGS))
def test_override__every_plane_reading_redis__a_sentinel_url_that_parses(
    plane: str, override: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    base = compose_env(compose()["services"][plane])
    if "FLAGYARD_REDIS_URL" not in base:
        assert plane not in override
        return
    env = {**base, **compose_env(override[plane])}
    config = _sentinel_config(override["sentinel-1"])
    monitored = re.search(r"sentinel monitor (\S+) (\S+) (\d+) (\d+)", config)
    assert monitored
    for name in ("FLAGYARD_REDIS_URL", "FLAGYARD_REDIS_READ_URL"):
        if name not in env:
            continue
        target = parse_sentinel_url(env[name])
        assert {host for host, _port in target.sentinels} == SENTINELS
        assert {port for _host, port in target.sentinels} == {26379}
        assert target.master == monitored.group(1)
    for name in list(os.environ):
        if name.startswith("FLAGYARD_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    parsed = PLANE_SETTINGS[plane]()
    assert parsed.redis_url.get_secret_value() == env["FLAGYARD_REDIS_URL"]  # type: ignore[attr-defined]


def test_sentinel_config__quorum_is_a_majority_of_the_sentinels(override: dict[str, Any]) -> None:
    configs = {_sentinel_config(override[name]) for name in SENTINELS}
    assert len(configs) == 1
    monitored = re.search(r"sentinel monitor \S+ (\S+) (\d+) (\d+)", configs.pop())
    assert monitored
    assert monitored.group(1) == "redis"
    assert len(SENTINELS) // 2 < int(monitored.group(3)) <= len(SENTINELS)


def test_sentinel_config__accepted_by_redis_sentinel(override: dict[str, Any]) -> None:
    config = _sentinel_config(override["sentinel-1"])
    redis_port, sentinel_port = free_port(), free_port()
    local = config.replace("port 26379", f"port {sentinel_port}\nbind 127.0.0.1").replace(
        "flagyard redis 6379", f"flagyard 127.0.0.1 {redis_port}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sentinel.conf"
        path.write_text(local + "\n")
        server = subprocess.Popen(
            ["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""],
            stdout=subprocess.DEVNULL,
        )
        sentinel = subprocess.Popen(
            ["redis-server", str(path), "--sentinel"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        client = redis.Redis(port=sentinel_port, socket_timeout=1, decode_responses=True)
        try:
            deadline = time.monotonic() + 10
            state: Any = None
            while time.monotonic() < deadline and sentinel.poll() is None:
                try:
                    state = client.execute_command("SENTINEL", "MASTER", "flagyard")
                    break
                except redis.RedisError:
                    time.sleep(0.1)
            assert sentinel.poll() is None, sentinel.communicate()[0].decode()[-2000:]
            fields = dict(zip(state[::2], state[1::2], strict=True)) if isinstance(state, list) else state
            assert fields["quorum"] == "2"
            assert fields["down-after-milliseconds"] == "5000"
            assert fields["failover-timeout"] == "30000"
        finally:
            client.close()
            for proc in (sentinel, server):
                proc.kill()
                proc.wait(10)


def test_k8s_secret_template__sentinel_example__parses() -> None:
    text = (ROOT / "k8s" / "secret.template.yaml").read_text()
    (url,) = re.findall(r"FLAGYARD_REDIS_URL='(redis\+sentinel://[^']+)'", text)
    target = parse_sentinel_url(url)
    assert len(target.sentinels) == 3
    assert (target.master, target.db) == ("flagyard", 0)
