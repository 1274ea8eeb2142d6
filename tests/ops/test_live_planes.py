"""The observability artifacts against the planes running for real: every metric the dashboard and the
alert rules query is exported, and every probe the manifests declare is answered as they expect."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest
from fastapi.testclient import TestClient
from grpc_health.v1 import health_pb2
from ops_helpers import (
    Running,
    alert_rules,
    compose,
    dashboard_expressions,
    exported_names,
    free_port,
    grpc_health,
    k8s_resource,
    metric_names_in,
)

PROBES = ("startupProbe", "livenessProbe", "readinessProbe")


@pytest.fixture(scope="module")
def exported(control_plane: TestClient, syncer: Running, data_plane: Running) -> dict[str, set[str]]:
    """Series names in each plane's exposition text, as its /metrics serves it."""
    assert control_plane.get("/api/v1/projects").status_code == 200
    response = control_plane.get("/metrics")
    assert response.status_code == 200
    return {
        "control-plane": exported_names(response.text),
        "syncer": exported_names(syncer.metrics()),
        "data-plane": exported_names(data_plane.metrics()),
    }


def _queried(source: str) -> set[str]:
    if source == "dashboard":
        return metric_names_in(dashboard_expressions())
    return metric_names_in(rule["expr"] for rule in alert_rules())


@pytest.mark.parametrize("source", ["dashboard", "alerts"])
def test_queried_metrics__against_the_running_planes__every_name_is_exported(
    source: str, exported: dict[str, set[str]]
) -> None:
    queried = _queried(source)
    every = set().union(*exported.values())
    assert len(queried) >= 8, queried
    assert queried - every == set()


def test_dashboard__each_plane__has_panels_on_its_own_metrics(exported: dict[str, set[str]]) -> None:
    queried = _queried("dashboard")
    for plane, names in exported.items():
        assert queried & names, f"no dashboard panel shows a metric of the {plane}"


def test_exported_names__of_every_plane__carry_the_flagyard_prefix(exported: dict[str, set[str]]) -> None:
    for plane, names in exported.items():
        own = {n for n in names if not n.startswith(("python_", "process_", "gc_"))}
        assert own, plane
        assert {n for n in own if not n.startswith("flagyard_")} == set(), plane


def test_control_plane__k8s_and_compose_probe_paths__answer_200(control_plane: TestClient) -> None:
    container = k8s_resource("Deployment", "flagyard-control-plane")["spec"]["template"]["spec"][
        "containers"
    ][0]
    paths = {container[probe]["httpGet"]["path"] for probe in PROBES if probe in container}
    healthcheck = " ".join(compose()["services"]["control-plane"]["healthcheck"]["test"])
    paths.add(healthcheck.split("http://127.0.0.1:8000", 1)[1].split("'", 1)[0])
    assert paths == {"/healthz", "/readyz"}
    for path in paths:
        assert control_plane.get(path).status_code == 200, path


def test_data_plane__k8s_grpc_probes__report_serving(data_plane: Running) -> None:
    container = k8s_resource("Deployment", "flagyard-data-plane")["spec"]["template"]["spec"]["containers"][0]
    services = {container[probe]["grpc"].get("service", "") for probe in PROBES}
    assert services == {""}
    for service in services:
        assert grpc_health(data_plane.grpc_port, service) == health_pb2.HealthCheckResponse.SERVING


def test_data_plane__flagd_ports__answer_the_probes_health_service(data_plane: Running) -> None:
    """flagd's ports are listeners of the same server: the readiness the probe reads on the gRPC port is
    theirs too (what a mesh or load balancer health-checking 8013/8015 sees)."""
    for port in (data_plane.flagd_rpc_port, data_plane.flagd_sync_port):
        assert port
        assert grpc_health(port, "") == health_pb2.HealthCheckResponse.SERVING, port


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_data_plane__ofrep_health_paths__answer_200_once_serving(data_plane: Running, path: str) -> None:
    """OFREP's port (published by compose, a Service port in k8s) answers its health paths with the same
    readiness as the gRPC probe, so the one readiness probe on the gRPC port covers it."""
    assert data_plane.ofrep_port
    url = f"http://127.0.0.1:{data_plane.ofrep_port}{path}"
    with urllib.request.urlopen(url, timeout=5) as response:
        assert response.status == 200


def test_syncer__k8s_probe_path__serves_the_syncer_metrics(syncer: Running) -> None:
    container = k8s_resource("Deployment", "flagyard-syncer")["spec"]["template"]["spec"]["containers"][0]
    paths = {container[probe]["httpGet"]["path"] for probe in PROBES}
    assert paths == {"/metrics"}
    with urllib.request.urlopen(f"http://127.0.0.1:{syncer.metrics_port}/metrics", timeout=5) as response:
        assert response.status == 200
        assert "flagyard_syncer_queue_jobs" in response.read().decode()


@pytest.mark.parametrize("service", ["syncer", "data-plane"])
def test_compose_healthcheck__against_the_running_plane__exits_zero(
    service: str, syncer: Running, data_plane: Running
) -> None:
    test = compose()["services"][service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    running, port = (syncer, "9102") if service == "syncer" else (data_plane, "50051")
    actual = str(running.metrics_port if service == "syncer" else running.grpc_port)
    script = test[3].replace(f"127.0.0.1:{port}", f"127.0.0.1:{actual}")
    assert script != test[3]
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize(("service", "port"), [("syncer", "9102"), ("data-plane", "50051")])
def test_compose_healthcheck__nothing_listening__exits_non_zero(service: str, port: str) -> None:
    script = compose()["services"][service]["healthcheck"]["test"][3]
    script = script.replace(f"127.0.0.1:{port}", f"127.0.0.1:{free_port()}")
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert proc.returncode != 0
