"""Deployment config and code agree: every FLAGYARD_* variable set anywhere is a setting of the process that
receives it (and parses), and every port and probe path is one the code serves."""

from __future__ import annotations

import os
import re
from typing import Any

import pytest
from ops_helpers import (
    PLANE_SETTINGS,
    REAL_SECRETS,
    ROOT,
    compose,
    compose_env,
    container_env,
    default_of,
    env_names,
    k8s_resource,
    k8s_resources,
    option,
)
from pydantic_settings import BaseSettings

from flagyard.control_plane.api.routes import health
from flagyard.data_plane.settings import DataPlaneSettings
from flagyard.syncer.settings import SyncerSettings

K8S_WORKLOADS = {
    "control-plane": ("Deployment", "flagyard-control-plane"),
    "syncer": ("Deployment", "flagyard-syncer"),
    "data-plane": ("Deployment", "flagyard-data-plane"),
    "migrate": ("Job", "flagyard-migrate"),
}


def _k8s_container(plane: str) -> dict[str, Any]:
    kind, name = K8S_WORKLOADS[plane]
    (container,) = k8s_resource(kind, name)["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _parse(
    settings: type[BaseSettings], env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> BaseSettings:
    """Build the settings class from exactly this environment, as the process would."""
    for name in list(os.environ):
        if name.startswith("FLAGYARD_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return settings()


def _flagyard(env: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in env.items() if k.startswith("FLAGYARD_")}


@pytest.mark.parametrize("plane", sorted(PLANE_SETTINGS))
def test_compose__flagyard_env__is_the_planes_settings_and_parses(
    plane: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = PLANE_SETTINGS[plane]
    env = compose_env(compose()["services"][plane])
    assert _flagyard(env), plane
    assert set(_flagyard(env)) - env_names(settings) == set()
    parsed = _parse(settings, env, monkeypatch)
    assert {name.removeprefix("FLAGYARD_").lower() for name in _flagyard(env)} <= parsed.model_fields_set


@pytest.mark.parametrize("plane", sorted(K8S_WORKLOADS))
def test_k8s__flagyard_env__is_the_planes_settings_and_parses_with_real_secrets(
    plane: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = PLANE_SETTINGS[plane]
    env = _flagyard(container_env(_k8s_container(plane)))
    assert env, plane
    assert set(env) - env_names(settings) == set()
    resolved = {name: REAL_SECRETS.get(name, value) for name, value in env.items()}
    assert None not in resolved.values(), resolved
    parsed = _parse(settings, resolved, monkeypatch)
    assert {name.removeprefix("FLAGYARD_").lower() for name in env} <= parsed.model_fields_set
    if "mode" in type(parsed).model_fields:
        assert parsed.mode == "production"  # type: ignore[attr-defined]


def test_k8s__config_and_secret_keys__each_read_by_some_plane() -> None:
    read: set[str] = set()
    for plane in K8S_WORKLOADS:
        read |= set(container_env(_k8s_container(plane)))
    for _path, doc in k8s_resources():
        if doc["kind"] in {"ConfigMap", "Secret"}:
            keys = set(doc.get("data") or {}) | set(doc.get("stringData") or {})
            assert keys, doc["metadata"]["name"]
            assert keys - read == set(), doc["metadata"]["name"]
            assert all(key.startswith("FLAGYARD_") for key in keys)


def test_k8s__data_plane__gets_no_database_secret() -> None:
    env = container_env(_k8s_container("data-plane"))
    assert "FLAGYARD_DATABASE_URL" not in env
    assert "FLAGYARD_BOOTSTRAP_ADMIN_KEY" not in env


def test_k8s__syncer__gets_the_database_and_redis_but_no_admin_key() -> None:
    env = container_env(_k8s_container("syncer"))
    assert {"FLAGYARD_DATABASE_URL", "FLAGYARD_REDIS_URL"} <= set(env)
    assert "FLAGYARD_BOOTSTRAP_ADMIN_KEY" not in env


def test_dockerfile__flagyard_env__is_a_setting_of_every_plane() -> None:
    names = set(re.findall(r"\b(FLAGYARD_[A-Z0-9_]+)=", (ROOT / "Dockerfile").read_text()))
    assert names
    for settings in set(PLANE_SETTINGS.values()):
        assert names - env_names(settings) == set(), settings.__name__


# --- ports and paths ---------------------------------------------------------------------------------


def _port(container: dict[str, Any], name: str) -> int:
    (port,) = [p["containerPort"] for p in container["ports"] if p["name"] == name]
    return int(port)


def _healthcheck_port(service: dict[str, Any]) -> int:
    (port,) = set(re.findall(r"127\.0\.0\.1:(\d+)", " ".join(service["healthcheck"]["test"])))
    return int(port)


def _published(service: dict[str, Any]) -> set[int]:
    return {int(str(mapping).rsplit(":", 1)[1]) for mapping in service.get("ports", [])}


def test_control_plane__port_and_paths__agree_everywhere() -> None:
    served_paths = {route.path for route in health.router.routes}  # type: ignore[attr-defined]
    container = _k8s_container("control-plane")
    port = int(option(container["command"], "--port"))
    assert _port(container, "http") == port
    pod = k8s_resource("Deployment", "flagyard-control-plane")["spec"]["template"]
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) == port
    assert pod["metadata"]["annotations"]["prometheus.io/path"] in served_paths
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "http"
        assert container[probe]["httpGet"]["path"] in served_paths
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"

    service = compose()["services"]["control-plane"]
    assert int(option(service["command"], "--port")) == port
    assert _published(service) == {port}
    assert _healthcheck_port(service) == port

    dockerfile = (ROOT / "Dockerfile").read_text()
    assert f'"--port", "{port}"' in dockerfile
    assert str(port) in re.search(r"^EXPOSE (.+)$", dockerfile, re.MULTILINE).group(1).split()  # type: ignore[union-attr]


def test_syncer__metrics_port__agrees_everywhere() -> None:
    container = _k8s_container("syncer")
    port = int(container_env(container)["FLAGYARD_SYNCER_METRICS_PORT"] or 0)
    assert port == default_of(SyncerSettings, "syncer_metrics_port")
    assert _port(container, "metrics") == port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "metrics"
    pod = k8s_resource("Deployment", "flagyard-syncer")["spec"]["template"]
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) == port

    service = compose()["services"]["syncer"]
    assert int(compose_env(service)["FLAGYARD_SYNCER_METRICS_PORT"]) == port
    assert _healthcheck_port(service) == port


DATA_PLANE_PORTS = {
    "grpc": "grpc_port",
    "flagd-rpc": "flagd_rpc_port",
    "flagd-sync": "flagd_sync_port",
    "ofrep": "ofrep_port",
}
"""The data plane's serving ports: container and Service port name -> the setting that binds it."""


def _env_name(field: str) -> str:
    return f"FLAGYARD_{field.upper()}"


def test_data_plane__serving_ports__agree_everywhere() -> None:
    """gRPC, flagd's RPC and sync and OFREP: each is its setting's default in k8s and compose, a named
    containerPort, a Service port, published on loopback by compose and EXPOSEd by the image."""
    assert set(DATA_PLANE_PORTS.values()) <= set(DataPlaneSettings.model_fields)
    container = _k8s_container("data-plane")
    env = container_env(container)
    ports = {name: default_of(DataPlaneSettings, field) for name, field in DATA_PLANE_PORTS.items()}
    assert len(set(ports.values())) == len(ports), ports
    for name, field in DATA_PLANE_PORTS.items():
        assert int(env[_env_name(field)] or 0) == ports[name], field
        assert _port(container, name) == ports[name], name
    service_ports = {p["name"]: p for p in k8s_resource("Service", "flagyard-data-plane")["spec"]["ports"]}
    assert set(service_ports) == set(ports)
    for name, port in ports.items():
        assert service_ports[name]["port"] == port, name
        assert service_ports[name]["targetPort"] == name, name

    service = compose()["services"]["data-plane"]
    compose_vars = compose_env(service)
    for name, field in DATA_PLANE_PORTS.items():
        assert int(compose_vars[_env_name(field)]) == ports[name], field
    assert _published(service) == set(ports.values())

    dockerfile = (ROOT / "Dockerfile").read_text()
    exposed = re.search(r"^EXPOSE (.+)$", dockerfile, re.MULTILINE)
    assert exposed is not None
    assert {str(port) for port in ports.values()} <= set(exposed.group(1).split())
    header = dockerfile.split("\nARG ", 1)[0]
    assert all(f":{port}" in header for port in ports.values()), "the header comment lists every port"


def test_data_plane__flagd_and_ofrep__on_by_default_where_deployed() -> None:
    """The published flagd and OFREP ports have something behind them: neither is turned off."""
    assert default_of(DataPlaneSettings, "flagd_enabled") is True
    assert default_of(DataPlaneSettings, "ofrep_enabled") is True
    k8s_env = container_env(_k8s_container("data-plane"))
    compose_vars = compose_env(compose()["services"]["data-plane"])
    for name in ("FLAGYARD_FLAGD_ENABLED", "FLAGYARD_OFREP_ENABLED"):
        assert k8s_env.get(name, "true") == "true", name
        assert compose_vars.get(name, "true") == "true", name


def test_data_plane__grpc_and_metrics_ports__agree_everywhere() -> None:
    container = _k8s_container("data-plane")
    env = container_env(container)
    grpc_port, metrics_port = int(env["FLAGYARD_GRPC_PORT"] or 0), int(env["FLAGYARD_METRICS_PORT"] or 0)
    assert grpc_port == default_of(DataPlaneSettings, "grpc_port")
    assert metrics_port == default_of(DataPlaneSettings, "metrics_port")
    assert _port(container, "grpc") == grpc_port
    assert _port(container, "metrics") == metrics_port
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["grpc"]["port"] == grpc_port
    pod = k8s_resource("Deployment", "flagyard-data-plane")["spec"]["template"]
    assert int(pod["metadata"]["annotations"]["prometheus.io/port"]) == metrics_port
    service_ports = {
        p["name"]: p["port"] for p in k8s_resource("Service", "flagyard-data-plane")["spec"]["ports"]
    }
    assert service_ports["grpc"] == grpc_port

    service = compose()["services"]["data-plane"]
    compose_vars = compose_env(service)
    assert int(compose_vars["FLAGYARD_GRPC_PORT"]) == grpc_port
    assert int(compose_vars["FLAGYARD_METRICS_PORT"]) == metrics_port
    assert grpc_port in _published(service)
    assert _healthcheck_port(service) == grpc_port

    exposed = re.search(r"^EXPOSE (.+)$", (ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert exposed is not None
    assert {str(grpc_port), str(metrics_port)} <= set(exposed.group(1).split())
