"""k8s/: valid against the Kubernetes schemas (strict: unknown fields fail), hardened, and wired together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from ops_helpers import (
    K8S_DIR,
    KUBERNETES_VERSIONS,
    ROOT,
    k8s_manifest_files,
    k8s_resource,
    k8s_resources,
    load_yaml,
)
from pydantic import ValidationError

from flagyard.control_plane.settings import Settings

WORKLOADS = {
    ("Deployment", "flagyard-control-plane"),
    ("Deployment", "flagyard-syncer"),
    ("Deployment", "flagyard-data-plane"),
    ("Job", "flagyard-migrate"),
}
SECRET_TEMPLATE = "secret.template.yaml"


def _documents() -> list[tuple[str, dict[str, Any]]]:
    return [(f"{path.name}:{doc['kind']}/{doc['metadata']['name']}", doc) for path, doc in k8s_resources()]


def _pod(kind: str, name: str) -> dict[str, Any]:
    return dict(k8s_resource(kind, name)["spec"]["template"])


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(("where", "doc"), _documents(), ids=[where for where, _ in _documents()])
def test_manifest__strict_schema__validates(where: str, doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation__unknown_field__is_refused() -> None:
    deployment = k8s_resource("Deployment", "flagyard-syncer")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)


def test_k8s__issue_resources__are_all_present() -> None:
    kinds = {(doc["kind"], doc["metadata"]["name"]) for _path, doc in k8s_resources()}
    assert kinds >= WORKLOADS
    assert {
        ("Service", "flagyard-control-plane"),
        ("Service", "flagyard-data-plane"),
        ("HorizontalPodAutoscaler", "flagyard-data-plane"),
        ("PodDisruptionBudget", "flagyard-data-plane"),
        ("ConfigMap", "flagyard-config"),
        ("Secret", "flagyard-secrets"),
    } <= kinds


def test_kustomization__resources__every_manifest_but_the_secret_template() -> None:
    kustomization = load_yaml(K8S_DIR / "kustomization.yaml")
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert {K8S_DIR / name for name in listed} == {
        p for p in k8s_manifest_files() if p.name != SECRET_TEMPLATE
    }
    assert kustomization["namespace"] == "flagyard"
    images = {
        container["image"].split(":")[0] for kind, name in WORKLOADS for container in _containers(kind, name)
    }
    assert images == {image["name"] for image in kustomization["images"]}


def _containers(kind: str, name: str) -> list[dict[str, Any]]:
    return list(_pod(kind, name)["spec"]["containers"])


@pytest.mark.parametrize(("kind", "name"), sorted(WORKLOADS))
def test_workload__security_context__non_root_read_only_no_capabilities(kind: str, name: str) -> None:
    pod = _pod(kind, name)["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for container in pod["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"]["drop"] == ["ALL"]
        tmp = [m for m in container.get("volumeMounts", []) if m["mountPath"] == "/tmp"]
        assert len(tmp) == 1
        assert "emptyDir" in volumes[tmp[0]["name"]]


@pytest.mark.parametrize(("kind", "name"), sorted(WORKLOADS))
def test_workload__resources__requests_and_limits_for_cpu_and_memory(kind: str, name: str) -> None:
    for container in _containers(kind, name):
        for bound in ("requests", "limits"):
            assert set(container["resources"][bound]) == {"cpu", "memory"}, (name, bound)


@pytest.mark.parametrize("name", ["flagyard-control-plane", "flagyard-syncer", "flagyard-data-plane"])
def test_deployment__probes__liveness_and_readiness_of_the_planes_kind(name: str) -> None:
    (container,) = _containers("Deployment", name)
    kind = "grpc" if name == "flagyard-data-plane" else "httpGet"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert kind in container[probe], (name, probe)


def test_data_plane__hpa_and_pdb__target_its_pods() -> None:
    deployment = k8s_resource("Deployment", "flagyard-data-plane")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
    hpa = k8s_resource("HorizontalPodAutoscaler", "flagyard-data-plane")["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "flagyard-data-plane",
    }
    assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
    pdb = k8s_resource("PodDisruptionBudget", "flagyard-data-plane")["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["maxUnavailable"] < hpa["minReplicas"]


@pytest.mark.parametrize("name", ["flagyard-control-plane", "flagyard-data-plane"])
def test_service__selector_and_target_port__match_the_deployment(name: str) -> None:
    service = k8s_resource("Service", name)["spec"]
    pod = _pod("Deployment", name)
    assert service["selector"].items() <= pod["metadata"]["labels"].items()
    port_names = {p["name"] for c in pod["spec"]["containers"] for p in c["ports"]}
    for port in service["ports"]:
        assert port["targetPort"] in port_names


@pytest.mark.parametrize("name", ["flagyard-control-plane", "flagyard-syncer", "flagyard-data-plane"])
def test_deployment__prometheus_annotations__scrape_a_declared_port(name: str) -> None:
    pod = _pod("Deployment", name)
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"
    ports = {p["containerPort"] for c in pod["spec"]["containers"] for p in c["ports"]}
    assert int(annotations["prometheus.io/port"]) in ports


def test_migrate_job__runs_alembic_once_in_the_image_workdir() -> None:
    job = k8s_resource("Job", "flagyard-migrate")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["alembic", "upgrade", "head"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
    assert container["workingDir"] == "/app"
    assert "WORKDIR /app" in (ROOT / "Dockerfile").read_text()


def test_secret_template__placeholders__are_refused_by_production_mode() -> None:
    secret = load_yaml(K8S_DIR / SECRET_TEMPLATE)
    values = secret["stringData"]
    assert all("REPLACE_ME" in value for value in values.values())
    with pytest.raises(ValidationError, match="FLAGYARD_BOOTSTRAP_ADMIN_KEY"):
        Settings(
            mode="production",
            database_url=values["FLAGYARD_DATABASE_URL"],
            bootstrap_admin_key=values["FLAGYARD_BOOTSTRAP_ADMIN_KEY"],
        )


def test_readme__k8s_folder__documents_every_manifest() -> None:
    readme = (K8S_DIR / "README.md").read_text()
    for path in [*k8s_manifest_files(), K8S_DIR / "kustomization.yaml"]:
        assert f"`{Path(path).name}`" in readme
