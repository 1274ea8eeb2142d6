"""deploy/sentinel/k8s/: the Sentinel overlay of k8s/ renders (by the subset of Kustomize it uses, checked
against ``kubectl kustomize`` where kubectl is installed), every rendered object is valid in strict mode,
the Redis servers and Sentinels are hardened and spread like the planes, every plane reads a Sentinel URL
that names exactly the Sentinel pods, the master they monitor and the password they require, and the
configs the start scripts generate are ones Redis and Sentinel accept: a local primary, replica and
Sentinel built from them serve Flagyard's own client through the overlay's URL."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import redis
import yaml
from ops_helpers import (
    KUBERNETES_VERSIONS,
    PLANE_SETTINGS,
    REAL_SECRETS,
    ROOT,
    compose,
    env_names,
    load_yaml,
    load_yaml_documents,
)
from polling_helpers import free_port, wait_until

from flagyard.contracts.redis_connect import parse_sentinel_url, redis_client

OVERLAY = ROOT / "deploy" / "sentinel" / "k8s"
PLANES = {
    "control-plane": ("Deployment", "flagyard-control-plane"),
    "syncer": ("Deployment", "flagyard-syncer"),
    "data-plane": ("Deployment", "flagyard-data-plane"),
    "migrate": ("Job", "flagyard-migrate"),
}
REDIS = ("StatefulSet", "flagyard-redis")
SENTINEL = ("StatefulSet", "flagyard-sentinel")
PASSWORD = "5f1c0a9e7d3b2c4a6e8f0b1d3c5a7e9f2b4d6c8a0e1f3b5d7c9a2e4f6b8d0c1a"
"""What an operator puts into the flagyard-redis Secret (hex, as the README asks)."""


# --- rendering (the subset of Kustomize the overlay and k8s/ use) ---------------------------------


def _merge(original: Any, patch: Any) -> Any:
    """A strategic merge patch as Kustomize applies it to what the overlay patches: maps merge, a null
    deletes, lists of named items (containers, env) merge by name with the patch's items first, in its
    order, then the original's others; any other list is replaced."""
    if isinstance(original, dict) and isinstance(patch, dict):
        merged = dict(original)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            elif key in merged:
                merged[key] = _merge(merged[key], value)
            else:
                merged[key] = copy.deepcopy(value)
        return merged
    if isinstance(original, list) and isinstance(patch, list) and all("name" in i for i in original + patch):
        by_name = {item["name"]: item for item in original}
        first = [_merge(by_name.get(item["name"], {}), item) for item in patch]
        patched = {item["name"] for item in patch}
        return first + [item for item in original if item["name"] not in patched]
    return copy.deepcopy(patch)


def render(directory: Path) -> list[dict[str, Any]]:
    kustomization = load_yaml(directory / "kustomization.yaml")
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = (directory / resource).resolve()
        docs.extend(render(path) if path.is_dir() else load_yaml_documents(path))
    for entry in kustomization.get("patches", []):
        for patch in load_yaml_documents(directory / entry["path"]):
            (index,) = [
                i
                for i, doc in enumerate(docs)
                if (doc["kind"], doc["metadata"]["name"]) == (patch["kind"], patch["metadata"]["name"])
            ]
            docs[index] = _merge(docs[index], patch)
    for doc in docs:
        if "namespace" in kustomization and doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = kustomization["namespace"]
        for label in kustomization.get("labels", []):
            assert label.get("includeSelectors") is False, "only metadata labels are rendered here"
            doc["metadata"].setdefault("labels", {}).update(label["pairs"])
        for image in kustomization.get("images", []):
            for container in _all_containers(doc):
                if container["image"].split(":")[0] == image["name"]:
                    container["image"] = f"{image['name']}:{image['newTag']}"
    return docs


def _all_containers(doc: dict[str, Any]) -> Iterator[dict[str, Any]]:
    spec = doc.get("spec", {}).get("template", {}).get("spec", {})
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


RENDERED = render(OVERLAY)


def _resource(kind: str, name: str) -> dict[str, Any]:
    (doc,) = [d for d in RENDERED if (d["kind"], d["metadata"]["name"]) == (kind, name)]
    return doc


def _container(kind: str, name: str) -> dict[str, Any]:
    (container,) = _resource(kind, name)["spec"]["template"]["spec"]["containers"]
    return dict(container)


def _key(doc: dict[str, Any]) -> tuple[str, str]:
    return doc["kind"], doc["metadata"]["name"]


def test_render__patches_every_plane_and_adds_servers_and_sentinels() -> None:
    base = {_key(doc) for doc in render(ROOT / "k8s")}
    added = {_key(doc) for doc in RENDERED} - base
    assert added == {
        ("ConfigMap", "flagyard-redis-scripts"),
        ("Service", "flagyard-redis"),
        ("Service", "flagyard-sentinel"),
        REDIS,
        SENTINEL,
        ("PodDisruptionBudget", "flagyard-redis"),
        ("PodDisruptionBudget", "flagyard-sentinel"),
    }
    assert len(RENDERED) == len({_key(doc) for doc in RENDERED})
    assert all(
        doc["metadata"].get("namespace") == "flagyard" for doc in RENDERED if doc["kind"] != "Namespace"
    )


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl (its built-in Kustomize) not installed")
def test_render__is_what_kubectl_kustomize_renders() -> None:
    proc = subprocess.run(
        ["kubectl", "kustomize", str(OVERLAY)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    theirs = sorted((doc for doc in yaml.safe_load_all(proc.stdout) if doc), key=_key)
    assert sorted(RENDERED, key=_key) == theirs


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("doc", RENDERED, ids=["/".join(_key(doc)) for doc in RENDERED])
def test_rendered__strict_schema__validates(doc: dict[str, Any], version: str) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


# --- Redis servers and Sentinels ------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "name"), [REDIS, SENTINEL])
def test_statefulset__image__the_pinned_redis_of_docker_compose(kind: str, name: str) -> None:
    image = _container(kind, name)["image"]
    assert image == compose()["services"]["redis"]["image"]
    _repository, _, tag = image.partition(":")
    assert tag, image
    assert tag != "latest", image
    assert "$" not in image


@pytest.mark.parametrize(("kind", "name"), [REDIS, SENTINEL])
def test_statefulset__hardened_like_the_planes(kind: str, name: str) -> None:
    pod = _resource(kind, name)["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert pod["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    for bound in ("requests", "limits"):
        assert set(container["resources"][bound]) == {"cpu", "memory"}
    writable = {
        m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"] if not m.get("readOnly")
    }
    assert set(writable) == {"/tmp", "/data"}
    assert all("emptyDir" in volume for volume in writable.values())
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert "exec" in container[probe], probe


@pytest.mark.parametrize(("kind", "name", "port"), [(*REDIS, 6379), (*SENTINEL, 26379)])
def test_statefulset__headless_service_pdb_and_anti_affinity__match_its_pods(
    kind: str, name: str, port: int
) -> None:
    statefulset = _resource(kind, name)["spec"]
    labels = statefulset["template"]["metadata"]["labels"]
    service = _resource("Service", statefulset["serviceName"])["spec"]
    assert service["clusterIP"] == "None"
    assert service["publishNotReadyAddresses"] is True
    assert service["selector"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in statefulset["template"]["spec"]["containers"][0]["ports"]}
    assert [ports[p["targetPort"]] for p in service["ports"]] == [port]
    pdb = _resource("PodDisruptionBudget", name)["spec"]
    assert pdb["selector"]["matchLabels"].items() <= labels.items()
    assert 0 < pdb["maxUnavailable"] < statefulset["replicas"]
    (term,) = statefulset["template"]["spec"]["affinity"]["podAntiAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"
    ]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"].items() <= labels.items()
    assert statefulset["selector"]["matchLabels"] == term["labelSelector"]["matchLabels"]


def _scripts() -> dict[str, str]:
    return dict(_resource("ConfigMap", "flagyard-redis-scripts")["data"])


def _constant(name: str) -> str:
    match = re.search(rf"^{name}=(\S+)$", _scripts()["find-master.sh"], re.M)
    assert match, name
    return match.group(1)


def test_scripts__names_and_counts__are_the_statefulsets() -> None:
    assert _constant("REDIS_SVC") == _resource(*REDIS)["spec"]["serviceName"] == REDIS[1]
    assert _constant("SENTINEL_SVC") == _resource(*SENTINEL)["spec"]["serviceName"] == SENTINEL[1]
    assert int(_constant("REDIS_SERVERS")) == _resource(*REDIS)["spec"]["replicas"] >= 2
    assert int(_constant("SENTINELS")) == _resource(*SENTINEL)["spec"]["replicas"] == 3
    for kind, name in (REDIS, SENTINEL):
        pod = _resource(kind, name)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        script = container["command"][-1]
        mount = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}["scripts"]
        assert script.startswith(mount + "/")
        assert Path(script).name in _scripts()
        (volume,) = [v for v in pod["volumes"] if v["name"] == "scripts"]
        assert volume["configMap"]["name"] == "flagyard-redis-scripts"


def test_sentinel_quorum__a_majority_that_survives_the_pdb() -> None:
    config = _generated("sentinel.sh", "flagyard-sentinel-0")
    quorum = int(re.search(r"^sentinel monitor \S+ \S+ \d+ (\d+)$", config, re.M).group(1))  # type: ignore[union-attr]
    sentinels = _resource(*SENTINEL)["spec"]["replicas"]
    assert (
        sentinels // 2
        < quorum
        <= sentinels - _resource("PodDisruptionBudget", SENTINEL[1])["spec"]["maxUnavailable"]
    )


# --- the planes' Redis URL ------------------------------------------------------------------------


def _expanded_env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment as the kubelet builds it, with real secrets: envFrom first, then env in
    order, each ``$(NAME)`` replaced when NAME is defined before it (a Kubernetes dependent variable)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(_resource("ConfigMap", source["configMapRef"]["name"])["data"])
        if "secretRef" in source:
            assert source["secretRef"]["name"] == "flagyard-secrets"
            env.update(REAL_SECRETS)
    for item in container.get("env", []):
        if "value" in item:
            value = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            secrets = {"flagyard-redis": {"password": PASSWORD}, "flagyard-secrets": REAL_SECRETS}
            value = secrets[ref["name"]][ref["key"]]
        env[item["name"]] = value
    return env


@pytest.mark.parametrize("plane", sorted(PLANES))
def test_plane__redis_url__names_the_sentinel_pods_their_master_and_password(
    plane: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    container = _container(*PLANES[plane])
    both = [item["name"] for item in container["env"] if {"value", "valueFrom"} <= set(item)]
    assert both == [], "the API refuses an env entry with both value and valueFrom"
    env = _expanded_env(container)
    flagyard = {k: v for k, v in env.items() if k.startswith("FLAGYARD_")}
    assert set(flagyard) - env_names(PLANE_SETTINGS[plane]) == set()
    urls = {
        name: flagyard[name] for name in ("FLAGYARD_REDIS_URL", "FLAGYARD_REDIS_READ_URL") if name in flagyard
    }
    assert ("FLAGYARD_REDIS_READ_URL" in urls) == (plane == "data-plane")
    statefulset = _resource(*SENTINEL)["spec"]
    pods = {
        (f"{SENTINEL[1]}-{i}.{statefulset['serviceName']}", 26379) for i in range(statefulset["replicas"])
    }
    for url in urls.values():
        assert "$(" not in url, url
        target = parse_sentinel_url(url)
        assert set(target.sentinels) == pods
        assert target.master == _constant("MASTER_NAME")
        assert target.password == target.sentinel_password == PASSWORD
    for name in list(os.environ):
        if name.startswith("FLAGYARD_"):
            monkeypatch.delenv(name)
    for name, value in flagyard.items():
        monkeypatch.setenv(name, value)
    parsed = PLANE_SETTINGS[plane]()
    assert parsed.redis_url.get_secret_value() == urls["FLAGYARD_REDIS_URL"]  # type: ignore[attr-defined]


# --- the generated configs, run ---------------------------------------------------------------------


_RESOLVER = """\
import json, os, subprocess, sys
hosts = json.loads(os.environ["TEST_HOSTS"])
args = sys.argv[1:]
if "-h" in args:
    name = args[args.index("-h") + 1]
    if name not in hosts:
        sys.exit(1)  # does not resolve
    args[args.index("-h") + 1] = "127.0.0.1"
    args[args.index("-p") + 1] = str(hosts[name])
out = subprocess.run([os.environ["REAL_REDIS_CLI"], *args], capture_output=True, text=True).stdout
lines = out.splitlines()
if "get-master-addr-by-name" in args and len(lines) == 2:
    names = {str(port): name for name, port in hosts.items()}
    lines[0] = names.get(lines[1], lines[0])
print("\\n".join(lines))
"""
"""The pods' DNS, for scripts run here: ``redis-cli -h <pod name>`` reaches the loopback port the test
gave that pod (other names do not resolve), and a Sentinel's answer names the pod, not 127.0.0.1."""


def _generated(script: str, pod: str, hosts: dict[str, int] | None = None) -> str:
    """The config ``script`` writes in pod ``pod``: run with sh, ``hostname`` answering ``pod`` and
    ``redis-server`` replaced by a copy of its config file. Without ``hosts`` no other Redis or Sentinel
    answers (the set's first start); with them, ``redis-cli`` reaches the real servers and Sentinels the
    test runs on loopback under those pod names (``_RESOLVER``)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name, text in _scripts().items():
            (root / name).write_text(text)
        stubs = root / "bin"
        stubs.mkdir()
        (stubs / "hostname").write_text(f"#!/bin/sh\necho {pod}\n")
        (stubs / "redis-server").write_text(f'#!/bin/sh\ncp "$1" {root}/generated.conf\n')
        env = {"PATH": f"{stubs}:{os.environ['PATH']}", "REDIS_PASSWORD": PASSWORD, "DATA_DIR": str(root)}
        if hosts is not None:
            real = shutil.which("redis-cli")
            assert real
            (stubs / "redis-cli").write_text(f"#!{sys.executable}\n{_RESOLVER}")
            env |= {
                "TEST_HOSTS": json.dumps(
                    {f"{name}.{name.rsplit('-', 1)[0]}": port for name, port in hosts.items()}
                ),
                "REAL_REDIS_CLI": real,
            }
        for stub in stubs.iterdir():
            stub.chmod(0o755)
        proc = subprocess.run(
            ["sh", str(root / script)], env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert proc.returncode == 0, proc.stderr
        return (root / "generated.conf").read_text()


def test_generated_configs__first_start__pod_0_primary_pod_1_its_replica_sentinels_monitor_pod_0() -> None:
    primary = _generated("redis.sh", "flagyard-redis-0")
    replica = _generated("redis.sh", "flagyard-redis-1")
    sentinel = _generated("sentinel.sh", "flagyard-sentinel-2")
    assert "replicaof" not in primary
    assert "replica-announce-ip flagyard-redis-0.flagyard-redis" in primary
    assert "replicaof flagyard-redis-0.flagyard-redis 6379" in replica
    assert "replica-announce-ip flagyard-redis-1.flagyard-redis" in replica
    assert "sentinel monitor flagyard flagyard-redis-0.flagyard-redis 6379 2" in sentinel
    assert "sentinel announce-ip flagyard-sentinel-2.flagyard-sentinel" in sentinel
    lines = sentinel.splitlines()
    assert lines.index("sentinel resolve-hostnames yes") < lines.index(
        next(line for line in lines if line.startswith("sentinel monitor"))
    )
    assert "sentinel announce-hostnames yes" in lines
    for config in (primary, replica):
        assert f'requirepass "{PASSWORD}"' in config
        assert f'masterauth "{PASSWORD}"' in config
    assert f'sentinel auth-pass flagyard "{PASSWORD}"' in sentinel
    assert f'sentinel sentinel-pass "{PASSWORD}"' in sentinel


class _LocalSet:
    """The overlay's pods as processes on loopback: each runs the config its start script generated, the
    pods' DNS names swapped for 127.0.0.1 and a port of its own."""

    PODS = ("flagyard-redis-0", "flagyard-redis-1", "flagyard-sentinel-0")

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.ports = {pod: free_port() for pod in self.PODS}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.clients: list[redis.Redis] = []

    def local(self, config: str, pod: str) -> str:
        config = re.sub(r"^port \d+$", f"port {self.ports[pod]}\nbind 127.0.0.1", config, flags=re.M)
        config = re.sub(r"^dir .*$", f"dir {self.tmp}", config, flags=re.M)
        for name, port in self.ports.items():
            kind = name.rsplit("-", 1)[0]
            config = config.replace(
                f"{name}.{kind} {6379 if kind.endswith('redis') else 26379}", f"127.0.0.1 {port}"
            )
        return re.sub(r"flagyard-(redis|sentinel)-\d\.flagyard-(redis|sentinel)", "127.0.0.1", config)

    def start(self, pod: str, config: str) -> None:
        path = self.tmp / f"{pod}.conf"
        path.write_text(self.local(config, pod) + "\n")
        argv = ["redis-server", str(path)] + (["--sentinel"] if "sentinel" in pod else [])
        self.procs[pod] = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def start_first_time(self) -> None:
        for pod in self.PODS:
            self.start(pod, _generated("sentinel.sh" if "sentinel" in pod else "redis.sh", pod))
        sentinel = self.client("flagyard-sentinel-0")

        def replica_known() -> bool:
            try:
                return len(sentinel.execute_command("SENTINEL", "REPLICAS", "flagyard")) == 1
            except redis.RedisError:
                return False

        wait_until(replica_known, timeout=30)

    def client(self, pod: str) -> redis.Redis:
        client = redis.Redis(port=self.ports[pod], password=PASSWORD, socket_timeout=2, decode_responses=True)
        self.clients.append(client)
        return client

    def overlay_url(self, name: str) -> str:
        url = _expanded_env(_container(*PLANES["data-plane"]))[name]
        return url.replace(
            url.split("@", 1)[1].split("/", 1)[0], f"127.0.0.1:{self.ports['flagyard-sentinel-0']}"
        )

    def stop(self) -> None:
        for client in self.clients:
            client.close()
        for proc in self.procs.values():
            proc.kill()
            proc.wait(10)


@pytest.fixture
def local_set() -> Iterator[_LocalSet]:
    with tempfile.TemporaryDirectory() as tmp:
        pods = _LocalSet(Path(tmp))
        try:
            yield pods
        finally:
            pods.stop()


def test_generated_configs__run_locally__serve_flagyard_through_the_overlay_url(local_set: _LocalSet) -> None:
    """Redis and Sentinel accept the generated configs, the replica syncs with the primary's password, and
    Flagyard's client reaches the master and the replica through the data plane's URLs (passwords for the
    servers and the Sentinel)."""
    local_set.start_first_time()
    master = redis_client(
        local_set.overlay_url("FLAGYARD_REDIS_URL"), socket_timeout=2, decode_responses=True
    )
    replica = redis_client(
        local_set.overlay_url("FLAGYARD_REDIS_READ_URL"),
        replica=True,
        socket_timeout=2,
        decode_responses=True,
    )
    local_set.clients += [master, replica]
    wait_until(lambda: _quiet(lambda: master.set("flagyard:k8s-sentinel", "1")), timeout=30)
    assert master.execute_command("ROLE")[0] == "master"
    assert wait_until(lambda: _quiet(lambda: replica.get("flagyard:k8s-sentinel")), timeout=30) == "1"
    assert replica.execute_command("ROLE")[0] == "slave"
    unauthenticated = redis.Redis(port=local_set.ports["flagyard-redis-0"], socket_timeout=1)
    local_set.clients.append(unauthenticated)
    with pytest.raises(redis.AuthenticationError):
        unauthenticated.get("flagyard:k8s-sentinel")


def test_redis_sh__master_restarts_before_detection__hands_over_and_resyncs_from_the_replica(
    local_set: _LocalSet,
) -> None:
    """The master's process dies and its pod restarts it at once, empty, while the Sentinels still name
    it: redis.sh forces a failover to the replica and starts the server as the replica's replica, so the
    data comes back to it instead of the empty set replacing the replica's."""
    local_set.start_first_time()
    local_set.client("flagyard-redis-0").set("flagyard:k8s-sentinel", "kept")
    replica = local_set.client("flagyard-redis-1")
    assert wait_until(lambda: _quiet(lambda: replica.get("flagyard:k8s-sentinel")), timeout=30) == "kept"
    local_set.procs["flagyard-redis-0"].kill()
    local_set.procs["flagyard-redis-0"].wait(10)

    config = _generated("redis.sh", "flagyard-redis-0", local_set.ports)

    assert "replicaof flagyard-redis-1.flagyard-redis 6379" in config
    sentinel = local_set.client("flagyard-sentinel-0")
    _host, port = sentinel.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", "flagyard")
    assert int(port) == local_set.ports["flagyard-redis-1"]
    local_set.start("flagyard-redis-0", config)
    restarted = local_set.client("flagyard-redis-0")
    assert wait_until(lambda: _quiet(lambda: restarted.get("flagyard:k8s-sentinel")), timeout=30) == "kept"
    assert restarted.execute_command("ROLE")[0] == "slave"
    assert replica.get("flagyard:k8s-sentinel") == "kept"


def _quiet(call: Any) -> Any:
    try:
        return call()
    except redis.RedisError:
        return None


def test_k8s_readme__documents_the_overlay_files_and_its_apply_command() -> None:
    readme = (ROOT / "k8s" / "README.md").read_text()
    assert "kubectl apply -k deploy/sentinel/k8s/" in readme
    for path in OVERLAY.glob("*.yaml"):
        assert f"`{path.name}`" in readme, path.name
    for (kind, name), unit in ((REDIS, "pods"), (SENTINEL, "Sentinels")):
        assert f"`{name}` ({_resource(kind, name)['spec']['replicas']} {unit}" in readme
    assert "down-after-milliseconds` 5000" in readme
    assert "down-after-milliseconds flagyard 5000" in _generated("sentinel.sh", "flagyard-sentinel-0")
