"""docker-compose.yml: every service of the stack, ordered by health, scraped and graphed consistently.

No Docker engine runs in the tests: the file is read as data (PyYAML, merge keys resolved as Compose does).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from ops_helpers import (
    DASHBOARD,
    GRAFANA_DIR,
    PROMETHEUS_DIR,
    ROOT,
    bind_mounts,
    compose,
    compose_env,
    default_of,
    load_yaml,
    option,
)

from flagyard.data_plane.settings import DataPlaneSettings
from flagyard.syncer.settings import SyncerSettings

SERVICES = {
    "postgres",
    "redis",
    "migrate",
    "control-plane",
    "syncer",
    "data-plane",
    "prometheus",
    "grafana",
}
FLAGYARD_IMAGE_SERVICES = {"migrate", "control-plane", "syncer", "data-plane"}


@pytest.fixture(scope="module")
def services() -> dict[str, Any]:
    return dict(compose()["services"])


def metrics_port(name: str, service: dict[str, Any]) -> int:
    """The port a Flagyard service serves Prometheus metrics on, from its command and environment."""
    env = compose_env(service)
    if name == "control-plane":
        return int(option(service["command"], "--port"))
    if name == "syncer":
        return int(env.get("FLAGYARD_SYNCER_METRICS_PORT", default_of(SyncerSettings, "syncer_metrics_port")))
    if name == "data-plane":
        return int(env.get("FLAGYARD_METRICS_PORT", default_of(DataPlaneSettings, "metrics_port")))
    raise AssertionError(f"{name} serves no metrics")


def test_compose__services__are_the_whole_stack(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES


def test_compose__flagyard_services__run_the_dockerfile_image_with_the_plane_commands(
    services: dict[str, Any],
) -> None:
    for name in FLAGYARD_IMAGE_SERVICES:
        assert services[name]["build"]["context"] == "."
        assert (ROOT / services[name]["build"]["dockerfile"]).is_file()
        assert services[name]["image"] == "flagyard:dev"
    assert services["migrate"]["command"] == ["alembic", "upgrade", "head"]
    assert services["control-plane"]["command"][:3] == [
        "uvicorn",
        "--factory",
        "flagyard.control_plane.main:app_from_env",
    ]
    assert services["syncer"]["command"] == ["python", "-m", "flagyard.syncer", "worker"]
    assert services["data-plane"]["command"] == ["python", "-m", "flagyard.data_plane"]


def test_compose__depends_on__conditions_are_satisfiable(services: dict[str, Any]) -> None:
    conditions = []
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, spec in depends.items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = spec["condition"]
            conditions.append(condition)
            if condition == "service_healthy":
                assert "test" in services[target].get("healthcheck", {}), f"{name} → {target}: no healthcheck"
            elif condition == "service_completed_successfully":
                assert services[target].get("restart", "no") == "no", f"{target} must be one-shot"
            else:
                assert condition == "service_started", f"{name} → {target}: {condition}"
    assert "service_completed_successfully" in conditions


def test_compose__planes_that_read_postgres__wait_for_the_migrations(services: dict[str, Any]) -> None:
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("control-plane", "syncer"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["data-plane"]["depends_on"]["redis"]["condition"] == "service_healthy"


def test_compose__long_running_services__have_healthchecks(services: dict[str, Any]) -> None:
    for name in SERVICES - {"migrate"}:
        assert services[name]["healthcheck"]["test"][0] in {"CMD", "CMD-SHELL"}, name


def test_compose__syncer__is_scalable(services: dict[str, Any]) -> None:
    syncer = services["syncer"]
    assert "container_name" not in syncer
    assert "ports" not in syncer


def test_prometheus__scrape_targets__are_compose_services_on_their_metrics_ports(
    services: dict[str, Any],
) -> None:
    config = load_yaml(PROMETHEUS_DIR / "prometheus.yml")
    scraped: dict[str, int] = {}
    for job in config["scrape_configs"]:
        assert job.get("metrics_path", "/metrics") == "/metrics"
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                scraped[host] = int(port)
        for dns in job.get("dns_sd_configs", []):
            for host in dns["names"]:
                scraped[host] = int(dns["port"])
    assert set(scraped) == {"control-plane", "syncer", "data-plane"}
    for host, port in scraped.items():
        assert host in services
        assert port == metrics_port(host, services[host]), host


def test_prometheus__compose_mount__holds_the_config_and_its_rule_files(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    config_flag = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
    container_config = Path(config_flag.split("=", 1)[1])
    host_dir = bind_mounts(prometheus)[str(container_config.parent)]
    assert host_dir == PROMETHEUS_DIR
    for rule_file in load_yaml(host_dir / container_config.name)["rule_files"]:
        assert (host_dir / rule_file).is_file()


def test_grafana__provisioning__loads_the_dashboard_from_the_mounted_folder(services: dict[str, Any]) -> None:
    mounts = bind_mounts(services["grafana"])
    provisioning = mounts["/etc/grafana/provisioning"]
    assert provisioning == GRAFANA_DIR / "provisioning"
    (provider,) = load_yaml(provisioning / "dashboards" / "flagyard.yml")["providers"]
    assert mounts[provider["options"]["path"]] == DASHBOARD.parent
    (datasource,) = load_yaml(provisioning / "datasources" / "prometheus.yml")["datasources"]
    assert datasource["url"] == "http://prometheus:9090"
    assert services["prometheus"]["ports"] == ["127.0.0.1:9090:9090"]
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {
        target["datasource"]["uid"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    }
    assert uids == {datasource["uid"]}


def test_dashboard__panels__cover_the_issue_list() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    titles = " | ".join(p["title"].lower() for p in panels)
    for topic in (
        "evaluation rate",
        "evaluation latency",
        "propagation lag",
        "l1 size",
        "syncer throughput",
        "syncer failures",
        "request rate",
        "5xx",
        "db pool",
    ):
        assert topic in titles
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip(), panel["title"]


def test_compose__published_ports__are_on_loopback_only(services: dict[str, Any]) -> None:
    published = {name: service["ports"] for name, service in services.items() if "ports" in service}
    assert set(published) == {"postgres", "redis", "control-plane", "data-plane", "prometheus", "grafana"}
    for name, ports in published.items():
        for port in ports:
            host, _, container = str(port).partition(":")
            assert host == "127.0.0.1", f"{name} publishes {port} on every interface of the host"
            assert container.count(":") == 1, port


def test_compose__services_inside_the_network__listen_on_every_interface(services: dict[str, Any]) -> None:
    """Only the host side is loopback: the planes and Prometheus reach each other by service name."""
    every = {"0.0.0.0", "[::]"}
    assert option(services["control-plane"]["command"], "--host") in every
    data_plane = compose_env(services["data-plane"])
    assert data_plane.get("FLAGYARD_GRPC_HOST", default_of(DataPlaneSettings, "grpc_host")) in every
    assert data_plane.get("FLAGYARD_OFREP_HOST", default_of(DataPlaneSettings, "ofrep_host")) in every
    assert data_plane.get("FLAGYARD_METRICS_HOST", default_of(DataPlaneSettings, "metrics_host")) in every
    syncer = compose_env(services["syncer"])
    assert (
        syncer.get("FLAGYARD_SYNCER_METRICS_HOST", default_of(SyncerSettings, "syncer_metrics_host")) in every
    )
