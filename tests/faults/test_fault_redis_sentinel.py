"""Scenario: Redis high availability through Sentinel. A primary, a replica and three Sentinels (quorum 2,
down after 1 s) on loopback; every plane connects with the ``redis+sentinel://`` URL: the control plane (in
process), the syncer, a data plane reading the primary and a data plane reading the replica
(``FLAGYARD_REDIS_READ_URL``), and a local-mode SDK following the first. Evaluations and writes run before,
during and after the primary is SIGKILLed.

Asserted: every evaluation of every data plane answers, with the right value (counted); every write the
control plane acknowledged, before and after the kill, reaches both data planes and the SDK within a bounded
wait, at PostgreSQL's version (a write that reached only the dead primary is restored by the syncer's
reconcile from PostgreSQL); no reader ever sees a flag's version go back; the replica reader's own writes
(served revisions) go to the primary. Reported (printed, with a generous
bound asserted): the time from the kill to the first change written after it being served."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import datetime
from typing import Any

import grpc
import pytest
from e2e_stack import Evaluator, Stack
from fault_flows import (
    Poller,
    VersionWatch,
    create_project,
    elapsed,
    env_config_path,
    pg_versions,
    resolve_all,
    served_versions,
    struct,
    wait_for,
)
from fault_infra import SentinelSet, free_port

from flagyard import FlagyardClient
from flagyard.contracts.redis import EnvKeys
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb

pytestmark = pytest.mark.faults

CONTEXT = {"targeting_key": "user-7", "plan": "ent"}
STABLE: dict[str, Any] = {"stable-on": True, "stable-off": False}
"""Flags never written during the scenario: each evaluation must answer exactly these values."""
WRITTEN = [f"written-{i}" for i in range(3)]
"""Flags the writer toggles: versions only grow, values alternate."""
BEFORE_SECONDS = 2.0
AFTER_SECONDS = 8.0
PROPAGATION_BOUND_SECONDS = 30.0
"""A sane bound on kill → first change served (Sentinel's down-after is 1 s; it takes about 2–5 s here)."""


def _flags() -> dict[str, dict[str, Any]]:
    flags: dict[str, dict[str, Any]] = {
        key: {
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "config": {"enabled": True, "off_variant": "off", "default_variant": "on" if value else "off"},
        }
        for key, value in STABLE.items()
    }
    for key in WRITTEN:
        flags[key] = {
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "config": {"enabled": True, "off_variant": "off", "default_variant": "off"},
        }
    return flags


class Seen(VersionWatch):
    """A version watch that also remembers when each (flag, version) was first seen."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.first_seen: dict[tuple[str, int], float] = {}

    def observe(self, versions: dict[str, int]) -> None:  # type: ignore[override]
        now = time.monotonic()
        for key, version in versions.items():
            self.first_seen.setdefault((key, version), now)
        super().observe(versions)

    def served_at(self, key: str, version: int) -> float | None:
        """When this reader first saw ``key`` at ``version`` or later."""
        times = [t for (k, v), t in self.first_seen.items() if k == key and v >= version]
        return min(times) if times else None


class Evaluations:
    """A thread evaluating on one data plane: typed calls of the stable flags and a ResolveAll (its stable
    values checked, its versions fed to a :class:`Seen`). Counts answers, RPC errors and wrong answers."""

    def __init__(self, name: str, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.watch = Seen(name)
        self.count = 0
        self.rpc_errors: list[str] = []
        self.wrong: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"eval-{name}", daemon=True)

    def start(self) -> Evaluations:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        ctx = struct(CONTEXT)
        stub, metadata = self.evaluator.stub, self.evaluator.metadata
        while not self._stop.is_set():
            for key, value in STABLE.items():
                self.count += 1
                try:
                    r = stub.ResolveBoolean(
                        pb.ResolveRequest(flag_key=key, context=ctx), metadata=metadata, timeout=5
                    )
                except grpc.RpcError as exc:
                    self.rpc_errors.append(f"{key}: {exc.code()} {exc.details()}")
                    continue
                if r.error_code != pb.ERROR_CODE_UNSPECIFIED or r.value is not value:
                    self.wrong.append(f"{key}: value={r.value!r} error={r.error_code} {r.error_message}")
            self.count += 1
            try:
                flags = resolve_all(self.evaluator, CONTEXT).flags
            except grpc.RpcError as exc:
                self.rpc_errors.append(f"ResolveAll: {exc.code()} {exc.details()}")
                continue
            values = {k: res.bool_value for k, res in flags.items()}
            if set(values) != set(STABLE) | set(WRITTEN) or any(
                values[k] is not v for k, v in STABLE.items()
            ):
                self.wrong.append(f"ResolveAll: {values!r}")
            self.watch.observe({k: int(res.version) for k, res in flags.items()})
            self._stop.wait(0.005)


class Writer:
    """A thread toggling the written flags through the control plane's API, one PATCH every ~50 ms. Records
    each acknowledged write (flag, version, when) and every other answer."""

    def __init__(self, stack: Stack) -> None:
        self.api = stack.api
        self.acked: list[tuple[str, int, float, float]] = []
        """(flag, version, sent at, acknowledged at), monotonic seconds."""
        self.refused: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="writer", daemon=True)

    def start(self) -> Writer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        assert not self._thread.is_alive()

    def _run(self) -> None:
        turn = 0
        while not self._stop.is_set():
            key = WRITTEN[turn % len(WRITTEN)]
            turn += 1
            path = env_config_path(key)
            sent = time.monotonic()
            try:
                current = self.api.get(path)
                variant = "on" if current.json()["default_variant"] == "off" else "off"
                r = self.api.patch(
                    path, json={"default_variant": variant}, headers={"If-Match": current.headers["etag"]}
                )
            except Exception as exc:
                self.refused.append(f"{key}: {type(exc).__name__}: {exc}"[:300])
            else:
                if r.status_code == 200:
                    self.acked.append((key, int(r.json()["version"]), sent, time.monotonic()))
                else:
                    self.refused.append(f"{key}: {r.status_code} {r.text[:200]}")
            self._stop.wait(0.05)

    def latest(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for key, version, _sent, _acked in self.acked:
            out[key] = max(out.get(key, 0), version)
        return out


@pytest.mark.timeout(180)
def test_sentinel_failover__primary_killed__every_evaluation_served_every_acked_write_propagates(
    sentinel_stack: Stack, sentinel_set: SentinelSet
) -> None:
    stack = sentinel_stack
    scenario_started = time.monotonic()
    sdk_key = create_project(stack.api, _flags())
    stack.start_syncer()
    ports = {"dp-primary": free_port(), "dp-replica": free_port()}
    stack.children.start(
        "dp-primary",
        {**stack.env, "FLAGYARD_INSTANCE_ID": "dp-primary"},
        "flagyard.data_plane",
        "--port",
        str(ports["dp-primary"]),
    )
    replica_env = {
        **stack.env,
        "FLAGYARD_INSTANCE_ID": "dp-replica",
        "FLAGYARD_REDIS_READ_URL": sentinel_set.url(),
    }
    stack.children.start("dp-replica", replica_env, "flagyard.data_plane", "--port", str(ports["dp-replica"]))
    evaluators = {name: Evaluator(port, sdk_key) for name, port in ports.items()}
    evaluations: list[Evaluations] = []
    writer: Writer | None = None
    sdk: FlagyardClient | None = None
    sdk_stop = threading.Event()
    sdk_watch = Seen("sdk-local")
    sdk_wrong: list[str] = []
    sdk_thread: threading.Thread | None = None
    try:
        expected = pg_versions(stack.api)
        for evaluator in evaluators.values():
            wait_for(
                lambda ev=evaluator: (
                    {k: r.version for k, r in resolve_all(ev, CONTEXT).flags.items()} == expected
                ),  # type: ignore[misc]
                60,
            )
        # The replica reader's writes (its served revision) reach the primary: a replica would refuse them.
        primary = sentinel_set.primary.client(socket_timeout=2)
        (env_id,) = {m.decode() for m in primary.smembers(f"{stack.prefix}:envs")}
        served_key = EnvKeys(stack.prefix, env_id).served
        wait_for(lambda: {b"dp-primary", b"dp-replica"} <= set(primary.hkeys(served_key)), 30)
        primary.close()
        sdk = FlagyardClient(
            target=f"127.0.0.1:{ports['dp-primary']}",
            sdk_key=sdk_key,
            mode="local",
            ready_timeout=30,
            report_interval=0,
        )
        assert sdk.wait_ready(30)
        local = sdk

        def follow_sdk() -> None:
            while not sdk_stop.is_set():
                results = local.all_flags(CONTEXT)
                for key, value in STABLE.items():
                    if results[key].value is not value:
                        sdk_wrong.append(f"{key}: {results[key]!r}")
                sdk_watch.observe({k: r.version for k, r in results.items() if r.version is not None})
                sdk_stop.wait(0.01)

        sdk_thread = threading.Thread(target=follow_sdk, name="sdk-local", daemon=True)
        sdk_thread.start()
        evaluations = [Evaluations(name, ev).start() for name, ev in evaluators.items()]
        writer = Writer(stack).start()
        time.sleep(BEFORE_SECONDS)

        old_master = sentinel_set.master_address()
        killed_at = time.monotonic()
        sentinel_set.primary.kill()
        wait_for(lambda: sentinel_set.master_address() not in (None, old_master), 30, interval=0.1)
        promoted_seconds = elapsed(killed_at)
        assert sentinel_set.master_address() == ("127.0.0.1", sentinel_set.replica.port)
        time.sleep(AFTER_SECONDS)
        writer.stop()

        # Every acknowledged write, and PostgreSQL's final state, reaches every reader.
        final = pg_versions(stack.api)
        latest = writer.latest()
        assert all(final[key] >= version for key, version in latest.items()), (final, latest)
        readers = [e.watch for e in evaluations] + [sdk_watch]
        converged_started = time.monotonic()
        for watch in readers:
            wait_for(lambda w=watch: {k: w.high.get(k) for k in final} == final, 30, interval=0.1)  # type: ignore[misc]
        converged_seconds = elapsed(converged_started)
        time.sleep(0.3)
        for e in evaluations:
            e.stop()
        sdk_stop.set()
        sdk_thread.join(15)

        after_kill = [(k, v, acked) for k, v, sent, acked in writer.acked if sent > killed_at]
        assert after_kill, f"no write was acknowledged after the kill: {writer.refused[:5]}"
        first_key, first_version, _ = after_kill[0]
        propagation = {
            w.name: round(t - killed_at, 2)
            for w in readers
            if (t := w.served_at(first_key, first_version)) is not None
        }
        summary = {
            "promoted_seconds": promoted_seconds,
            "kill_to_first_change_served_seconds": propagation,
            "converged_after_writes_seconds": converged_seconds,
            "writes_acked": len(writer.acked),
            "writes_acked_after_kill": len(after_kill),
            "writes_refused": len(writer.refused),
            "evaluations": {e.watch.name: e.count for e in evaluations},
            "sdk_reads": sdk_watch.reads,
            "scenario_seconds": elapsed(scenario_started),
        }
        print("faults.summary", summary)

        for e in evaluations:
            assert e.count > 200, (e.watch.name, e.count)
            assert e.rpc_errors == [], (e.watch.name, e.rpc_errors[:5])
            assert e.wrong == [], (e.watch.name, e.wrong[:5])
        assert sdk_wrong == [], sdk_wrong[:5]
        for watch in readers:
            assert watch.regressions == [], (watch.name, watch.regressions[:5])
            assert watch.vanished == 0, (watch.name, watch.vanished_reads)
            for key, version, _sent, _acked in writer.acked:
                assert watch.served_at(key, version) is not None, (watch.name, key, version)
        assert set(propagation) == {w.name for w in readers}
        assert all(0 < seconds < PROPAGATION_BOUND_SECONDS for seconds in propagation.values()), propagation
        assert len(writer.acked) > 20
        for name in ("syncer", "dp-primary", "dp-replica"):
            assert stack.processes[name].poll() is None, (name, stack.log_text(name))
    finally:
        sdk_stop.set()
        if writer is not None:
            writer.stop()
        for e in evaluations:
            e.stop()
        if sdk is not None:
            sdk.close()
        for evaluator in evaluators.values():
            evaluator.close()


@pytest.mark.timeout(180)
def test_sentinel_failover__write_only_on_the_dead_primary__restored_from_postgres(
    sentinel_stack: Stack, sentinel_set: SentinelSet
) -> None:
    """A write acknowledged, synced to the primary and served, but never replicated: the replica is stopped
    (SIGSTOP, shorter than Sentinel's down-after) and its link cut while it is made, the primary is killed,
    the replica resumes without it and is promoted. The write is restored on the new master from PostgreSQL and served
    by both data planes; the replica reader never goes back."""
    stack = sentinel_stack
    sdk_key = create_project(stack.api, _flags())
    # INFO: the syncer's reconcile says when it repaired something.
    stack.children.start("syncer", {**stack.env, "FLAGYARD_LOG_LEVEL": "INFO"}, "flagyard.syncer", "worker")
    ports = {"dp-primary": free_port(), "dp-replica": free_port()}
    stack.children.start("dp-primary", stack.env, "flagyard.data_plane", "--port", str(ports["dp-primary"]))
    replica_env = {**stack.env, "FLAGYARD_REDIS_READ_URL": sentinel_set.url()}
    stack.children.start("dp-replica", replica_env, "flagyard.data_plane", "--port", str(ports["dp-replica"]))
    evaluators = {name: Evaluator(port, sdk_key) for name, port in ports.items()}
    watches = {name: Seen(name) for name in evaluators}
    readers: list[Poller] = []
    replica_proc = sentinel_set.replica.proc
    assert replica_proc is not None
    try:
        expected = pg_versions(stack.api)
        for evaluator in evaluators.values():
            wait_for(
                lambda ev=evaluator: (
                    {k: r.version for k, r in resolve_all(ev, CONTEXT).flags.items()} == expected
                ),  # type: ignore[misc]
                60,
            )
        readers = [
            Poller(watches[name], lambda ev=ev: served_versions(ev, CONTEXT), 0.01).start()  # type: ignore[misc]
            for name, ev in evaluators.items()
        ]
        key = WRITTEN[0]
        path = env_config_path(key)

        # Stop the replica, then cut its link: what the primary writes from now on never reaches it (SIGSTOP
        # alone would not do: the kernel would still buffer the replication stream for it).
        replica_proc.send_signal(signal.SIGSTOP)
        try:
            primary = sentinel_set.primary.client(socket_timeout=2)
            assert primary.client_kill_filter(_type="replica") == 1
            primary.close()
            r = stack.api.patch(
                path,
                json={"default_variant": "on"},
                headers={"If-Match": stack.api.get(path).headers["etag"]},
            )
            assert r.status_code == 200, r.text
            version = int(r.json()["version"])
            # Synced to the primary: the data plane reading it serves the write.
            wait_for(lambda: watches["dp-primary"].high.get(key, 0) >= version, 0.8, interval=0.01)
            killed_wall = time.time()
            sentinel_set.primary.kill()
        finally:
            replica_proc.send_signal(signal.SIGCONT)
        replica = sentinel_set.replica.client(socket_timeout=2)
        held = replica.hget(f"{stack.prefix}:env:{_env_id(replica, stack.prefix)}:versions", f"flag:{key}")
        assert held is not None
        assert int(held) < version, "the replica got the write: nothing was lost"

        wait_for(
            lambda: sentinel_set.master_address() == ("127.0.0.1", sentinel_set.replica.port),
            30,
            interval=0.1,
        )
        restored_started = time.monotonic()
        wait_for(
            lambda: (
                int(
                    replica.hget(
                        f"{stack.prefix}:env:{_env_id(replica, stack.prefix)}:versions", f"flag:{key}"
                    )
                    or 0
                )
                >= version
            ),
            30,
            interval=0.1,
        )
        for watch in watches.values():
            wait_for(lambda w=watch: w.high.get(key, 0) >= version and w.reads > 0, 30, interval=0.05)  # type: ignore[misc]
        # Served again after the failover, at the restored version.
        for evaluator in evaluators.values():
            wait_for(lambda ev=evaluator: served_versions(ev, CONTEXT).get(key) == version, 30, interval=0.05)  # type: ignore[misc]
        restored_seconds = elapsed(restored_started)
        replica.close()
        for reader in readers:
            reader.stop()
        readers = []
        # The reconcile from PostgreSQL did it (its hydration at start is a repair too: only later ones count).
        repaired = [
            event
            for line in (stack.logs / "syncer.log").read_text().splitlines()
            if line.startswith("{")
            and (event := json.loads(line)).get("event") == "reconcile.repaired"
            and datetime.fromisoformat(event["timestamp"]).timestamp() > killed_wall
        ]
        print(
            "faults.summary",
            {
                "restored_after_promotion_seconds": restored_seconds,
                "regressions": {name: w.regressions[:3] for name, w in watches.items()},
                "reads": {name: w.reads for name, w in watches.items()},
                "reconcile_repairs_after_kill": [event.get("repairs") for event in repaired],
            },
        )
        assert repaired, "no reconcile repair after the kill: " + stack.log_text("syncer")[-2000:]
        assert watches["dp-replica"].regressions == []
        assert watches["dp-replica"].high.get(key) == version
        assert pg_versions(stack.api)[key] == version
    finally:
        for reader in readers:
            reader.stop()
        for evaluator in evaluators.values():
            evaluator.close()


def _env_id(client: Any, prefix: str) -> str:
    (env_id,) = {m.decode() for m in client.smembers(f"{prefix}:envs")}
    return str(env_id)
