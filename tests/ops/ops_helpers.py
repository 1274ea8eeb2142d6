"""Helpers of the operations tests (a uniquely named module, importable next to conftest).

They read the deployment artifacts (Dockerfile, docker-compose.yml, k8s/, deploy/) as data and relate
them to the code: settings classes, served ports and paths, exported metrics.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import yaml
from grpc_health.v1 import health_pb2, health_pb2_grpc
from polling_helpers import free_port as free_port
from polling_helpers import wait_until as wait_until
from prometheus_client.parser import text_string_to_metric_families
from pydantic_settings import BaseSettings

from flagyard.control_plane.settings import Settings
from flagyard.data_plane.settings import DataPlaneSettings
from flagyard.syncer.settings import SyncerSettings

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
PROMTOOL = VENV_BIN / "promtool"
PROMETHEUS_DIR = ROOT / "deploy" / "prometheus"
GRAFANA_DIR = ROOT / "deploy" / "grafana"
DASHBOARD = GRAFANA_DIR / "dashboards" / "flagyard.json"
K8S_DIR = ROOT / "k8s"
RUNBOOK = ROOT / "docs" / "runbook.md"
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")
"""The oldest Kubernetes the manifests promise to support and the newest with bundled schemas."""

PLANE_SETTINGS: dict[str, type[BaseSettings]] = {
    "control-plane": Settings,
    "migrate": Settings,
    "syncer": SyncerSettings,
    "data-plane": DataPlaneSettings,
}
"""Each compose service / k8s component of Flagyard's image → the settings class its process reads."""

REAL_SECRETS = {
    "FLAGYARD_DATABASE_URL": "postgresql+psycopg://flagyard:s3cret@db.example:5432/flagyard",
    "FLAGYARD_REDIS_URL": "redis://:s3cret@redis.example:6379/0",
    "FLAGYARD_BOOTSTRAP_ADMIN_KEY": "fy_admin_q7Hn2Kx9Wp4Tz6Lm8Rv3Bc5Yd1Fg0Js-Ua_Ne2Qk7Xo",
    "FLAGYARD_WEBHOOK_SECRET_KEY": "Vd3kQ9xL2mP7wR4tY8bN1cF6hJ0sZ5gA-Ue_Ko2Xi7",
}
"""What an operator puts into the Secret instead of the template's placeholders."""

METRIC_NAME = re.compile(r"\bflagyard_[a-z0-9_]*[a-z0-9]\b")


# --- files ------------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def compose() -> dict[str, Any]:
    return dict(load_yaml(ROOT / "docker-compose.yml"))


def k8s_manifest_files() -> list[Path]:
    return sorted(p for p in K8S_DIR.glob("*.yaml") if p.name != "kustomization.yaml")


def k8s_resources() -> list[tuple[Path, dict[str, Any]]]:
    return [(path, doc) for path in k8s_manifest_files() for doc in load_yaml_documents(path)]


def k8s_resource(kind: str, name: str) -> dict[str, Any]:
    for _path, doc in k8s_resources():
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"no {kind} {name} in k8s/")


def alert_rules() -> list[dict[str, Any]]:
    rules = load_yaml(PROMETHEUS_DIR / "alerts.yml")
    return [rule for group in rules["groups"] for rule in group["rules"] if "alert" in rule]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in _panels(dashboard["panels"]) for target in panel.get("targets", [])]


def _panels(panels: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def metric_names_in(expressions: Iterable[str]) -> set[str]:
    """Every ``flagyard_*`` metric name a set of PromQL expressions selects."""
    return {name for expr in expressions for name in METRIC_NAME.findall(expr)}


# --- settings ---------------------------------------------------------------------------------------


def env_names(settings: type[BaseSettings]) -> set[str]:
    """The environment variables a settings class reads (its prefix + each field, no aliases in use)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    names = set()
    for name, field in settings.model_fields.items():
        assert field.alias is None, f"{settings.__name__}.{name}"
        assert field.validation_alias is None, f"{settings.__name__}.{name}"
        names.add(f"{prefix}{name}".upper())
    return names


def default_of(settings: type[BaseSettings], field: str) -> Any:
    return settings.model_fields[field].default


def container_env(container: dict[str, Any]) -> dict[str, str | None]:
    """A k8s container's environment: envFrom ConfigMaps/Secrets (from k8s/) then env; None for values
    that come from a key reference."""
    env: dict[str, str | None] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(k8s_resource("ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            secret = k8s_resource("Secret", source["secretRef"]["name"])
            env.update(secret.get("stringData", {}))
            env.update(dict.fromkeys(secret.get("data", {})))
    for item in container.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def compose_env(service: dict[str, Any]) -> dict[str, str]:
    environment = service.get("environment", {})
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return {str(k): str(v) for k, v in environment.items()}


def bind_mounts(service: dict[str, Any]) -> dict[str, Path]:
    """A compose service's bind mounts of repository folders: container path → host path."""
    mounts = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        if host.startswith("./"):
            mounts[container] = ROOT / host
    return mounts


def option(command: list[str], flag: str) -> str:
    """The value after ``flag`` in an argv list."""
    assert flag in command, f"{flag} not in {command}"
    return command[command.index(flag) + 1]


# --- metrics ----------------------------------------------------------------------------------------

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
    "stateset": ("",),
}


def exported_names(exposition: str) -> set[str]:
    """Every series name a Prometheus server stores from this exposition text (text format 0.0.4), for
    families with and without samples (a labelled metric not yet used still has HELP and TYPE lines)."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ("",)))
        names.update(sample.name for sample in family.samples)
    return names


# --- processes --------------------------------------------------------------------------------------


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a Markdown heading."""
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


@dataclass(frozen=True)
class Backing:
    db_url: str
    redis_url: str
    prefix: str
    queue: str


@dataclass(frozen=True)
class Running:
    """A plane started as a subprocess, with its ports and log file."""

    proc: subprocess.Popen[bytes]
    log: Path
    metrics_port: int
    grpc_port: int = 0
    flagd_rpc_port: int = 0
    flagd_sync_port: int = 0
    ofrep_port: int = 0

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5) as r:
            return str(r.read().decode())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""


def grpc_health(port: int, service: str) -> int | None:
    """The status the gRPC health service reports for ``service`` (what a k8s ``grpc:`` probe asks)."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=2
            )
        except grpc.RpcError:
            return None
        return int(reply.status)
