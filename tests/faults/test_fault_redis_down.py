"""Scenario 2: Redis down for 30 s under continuous evaluation. The data plane answers every evaluation of
its hydrated flags from L1, correctly and without an error; once Redis is back (same port, empty), a
change made through the control plane is served within 5 s."""

from __future__ import annotations

import threading
import time
from typing import Any

import grpc
import pytest
from e2e_stack import Evaluator, Stack
from fault_flows import (
    create_project,
    elapsed,
    env_config_path,
    pg_versions,
    resolve_all,
    start_data_plane,
    struct,
    wait_for,
)
from fault_infra import RedisInstance, free_port
from google.protobuf import struct_pb2

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.proto.values import value_to_python

pytestmark = pytest.mark.faults

DOWN_SECONDS = 30.0
CONTEXT = {"targeting_key": "user-7", "country": "DE", "plan": "ent"}
FLAGS: dict[str, dict[str, Any]] = {
    "checkout": {
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "config": {
            "enabled": True,
            "off_variant": "off",
            "default_variant": "off",
            "rules": [
                {
                    "id": "de",
                    "variant": "on",
                    "clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}],
                }
            ],
        },
    },
    "killed": {
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "config": {"enabled": False, "off_variant": "off", "default_variant": "on"},
    },
    "banner": {
        "type": "string",
        "variants": {"a": "Welcome", "b": "Hi"},
        "config": {"enabled": True, "default_variant": "b"},
    },
    "rate-limit": {
        "type": "integer",
        "variants": {"normal": 100, "raised": 500},
        "config": {
            "enabled": True,
            "default_variant": "normal",
            "rules": [
                {
                    "id": "ent",
                    "variant": "raised",
                    "clauses": [{"attribute": "plan", "operator": "eq", "values": ["ent"]}],
                }
            ],
        },
    },
    "ratio": {
        "type": "float",
        "variants": {"low": 0.25, "high": 0.75},
        "config": {"enabled": True, "default_variant": "low"},
    },
    "theme": {
        "type": "object",
        "variants": {"dark": {"bg": "#000", "sizes": [1, 2]}, "light": {"bg": "#fff"}},
        "config": {"enabled": True, "default_variant": "dark"},
    },
}
EXPECTED: dict[str, Any] = {
    "checkout": True,
    "killed": False,
    "banner": "Hi",
    "rate-limit": 500,
    "ratio": 0.25,
    "theme": {"bg": "#000", "sizes": [1, 2]},
}
METHODS = {
    "boolean": "ResolveBoolean",
    "string": "ResolveString",
    "integer": "ResolveInteger",
    "float": "ResolveFloat",
    "object": "ResolveObject",
}


def _value(response: Any) -> Any:
    if not response.HasField("value"):
        return None
    value = response.value
    return value_to_python(value) if isinstance(value, struct_pb2.Value) else value


class Evaluations:
    """A thread evaluating every flag (typed Resolve calls and ResolveAll) in a loop. Each answer is checked
    against the values acceptable for its flag (``accept``), and counted in the phase the test sets
    (``up``, ``down``, ``back``): transport errors apart from wrong answers (an error code, or a value
    not acceptable)."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.accept: dict[str, list[Any]] = {key: [value] for key, value in EXPECTED.items()}
        self.phase = "up"
        self.counts: dict[str, int] = {}
        self.rpc_errors: dict[str, list[str]] = {}
        self.wrong: dict[str, list[str]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="evaluations", daemon=True)

    def start(self) -> Evaluations:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)
        assert not self._thread.is_alive()

    def figures(self) -> dict[str, Any]:
        return {
            "evaluations": dict(self.counts),
            "rpc_errors": {phase: len(e) for phase, e in self.rpc_errors.items()},
            "wrong_answers": {phase: len(e) for phase, e in self.wrong.items()},
        }

    def _count(self, phase: str, failures: dict[str, list[str]] | None, what: str) -> None:
        self.counts[phase] = self.counts.get(phase, 0) + 1
        if failures is not None:
            failures.setdefault(phase, []).append(what)

    def _run(self) -> None:
        ctx = struct(CONTEXT)
        stub, metadata = self.evaluator.stub, self.evaluator.metadata
        while not self._stop.is_set():
            for key, spec in FLAGS.items():
                phase = self.phase
                method = getattr(stub, METHODS[spec["type"]])
                try:
                    r = method(pb.ResolveRequest(flag_key=key, context=ctx), metadata=metadata, timeout=5)
                except grpc.RpcError as exc:
                    self._count(phase, self.rpc_errors, f"{key}: {exc.code()} {exc.details()}")
                    continue
                value = _value(r)
                ok = r.error_code == pb.ERROR_CODE_UNSPECIFIED and value in self.accept[key]
                what = f"{key}: value={value!r} error={r.error_code} {r.error_message}"
                self._count(phase, None if ok else self.wrong, what)
            phase = self.phase
            try:
                every = resolve_all(self.evaluator, CONTEXT).flags
            except grpc.RpcError as exc:
                self._count(phase, self.rpc_errors, f"ResolveAll: {exc.code()} {exc.details()}")
            else:
                values = {k: _value_of_resolution(res) for k, res in every.items()}
                ok = values.keys() == self.accept.keys() and all(
                    v in self.accept[k] for k, v in values.items()
                )
                self._count(phase, None if ok else self.wrong, f"ResolveAll: {values!r}")
            self._stop.wait(0.005)


def _value_of_resolution(res: Any) -> Any:
    case = res.WhichOneof("value")
    if case is None:
        return None
    value = getattr(res, case)
    return value_to_python(value) if case == "object_value" else value


def test_redis_down_30s__data_plane_hydrated__serves_every_evaluation_then_a_new_change(
    fault_stack: Stack, own_redis: RedisInstance
) -> None:
    stack = fault_stack
    sdk_key = create_project(stack.api, FLAGS)
    stack.start_syncer()
    port = free_port()
    start_data_plane(stack, "data_plane", port)
    evaluator = Evaluator(port, sdk_key)
    evaluations: Evaluations | None = None
    try:
        expected_versions = pg_versions(stack.api)
        wait_for(
            lambda: (
                {k: r.version for k, r in resolve_all(evaluator, CONTEXT).flags.items()} == expected_versions
            ),
            30,
        )
        evaluations = Evaluations(evaluator).start()
        time.sleep(1.0)

        own_redis.kill()
        evaluations.phase = "down"
        down_started = time.monotonic()
        time.sleep(DOWN_SECONDS)
        evaluations.phase = "back"
        own_redis.start()  # same port, empty
        down_seconds = elapsed(down_started)

        changed_started = time.monotonic()
        path = env_config_path("banner")
        evaluations.accept["banner"] = ["Hi", "Welcome"]  # until the change is served
        r = stack.api.patch(
            path, json={"default_variant": "a"}, headers={"If-Match": stack.api.get(path).headers["etag"]}
        )
        assert r.status_code == 200, r.text

        def served() -> bool:
            response = evaluator.stub.ResolveString(
                pb.ResolveRequest(flag_key="banner", context=struct(CONTEXT)),
                metadata=evaluator.metadata,
                timeout=1,
            )
            return bool(response.value == "Welcome")

        wait_for(served, 5.0, interval=0.02)
        change_seconds = elapsed(changed_started)
        evaluations.accept["banner"] = ["Welcome"]
        evaluations.phase = "after"
        time.sleep(0.5)
        evaluations.stop()
        print(
            "faults.summary",
            {"down_seconds": down_seconds, "change_served_seconds": change_seconds, **evaluations.figures()},
        )
        assert evaluations.counts.get("down", 0) > 100
        assert evaluations.wrong.get("down", []) == [], evaluations.wrong["down"][:5]
        assert evaluations.rpc_errors == {}, {p: e[:5] for p, e in evaluations.rpc_errors.items()}
        assert evaluations.wrong.get("after", []) == [], evaluations.wrong["after"][:5]
    finally:
        if evaluations is not None:
            evaluations.stop()
        evaluator.close()
