"""The gRPC evaluation user: an app's SDK in remote mode, calling the data plane through the generated stubs.

Each user holds one channel (like one SDK client) with the SDK key in the ``authorization`` metadata and
makes one call at a time: unary ``Resolve<Type>`` of a random flag of that type 85 % of the time (boolean
35, string 15, integer 15, float 10, object 10) and a bulk ``ResolveAll`` of every flag 15 %, each with a
random context. Every call is reported to locust as ``request_type="grpc"`` under its method's name; a
transport error, or an evaluation error (an error code: the flag was not found, a type mismatch, …), is a
failure.

Because a user's calls are sequential, the versions it is served must never go backwards: it keeps the
highest version it has seen per flag (and the highest revision of ``ResolveAll``) and reports a
``version regression`` failure if one ever does. ``TRACKER`` counts evaluations, versions and regressions
for the mixed scenario's summary.

Run alone: ``locust -f loadtests/locustfile_grpc.py`` with ``FLAGYARD_LOADTEST_SDK_KEY`` and
``FLAGYARD_LOADTEST_GRPC_TARGET`` set (see loadtests/settings.py).
"""

from __future__ import annotations

# grpc must cooperate with gevent (locust's users are greenlets) before any channel exists.
from grpc.experimental import gevent as grpc_gevent  # type: ignore[attr-defined]

grpc_gevent.init_gevent()

import random  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import grpc  # noqa: E402
from google.protobuf import struct_pb2  # noqa: E402
from locust import User, task  # noqa: E402
from locust.env import Environment  # noqa: E402
from locust.exception import StopUser  # noqa: E402

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb  # noqa: E402
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2_grpc as pb_grpc  # noqa: E402
from loadtests import common as c  # noqa: E402
from loadtests import final_stats  # noqa: E402
from loadtests.settings import FlagTypeName, settings  # noqa: E402

PB_TYPES: dict[int, FlagTypeName] = {
    pb.FLAG_TYPE_BOOLEAN: "boolean",
    pb.FLAG_TYPE_STRING: "string",
    pb.FLAG_TYPE_INTEGER: "integer",
    pb.FLAG_TYPE_FLOAT: "float",
    pb.FLAG_TYPE_OBJECT: "object",
}

final_stats.register()


class GrpcCallError(Exception):
    """A gRPC call failed (its status) or an evaluation came back with an error code."""


class VersionRegressionError(Exception):
    """A user was served an older version of a flag (or an older revision) than it had seen before."""


@dataclass
class VersionTracker:
    """What every evaluation user of this process saw (greenlets: no lock needed)."""

    evaluations: int = 0
    calls: int = 0
    version_changes: int = 0
    regressions: int = 0
    versions: set[tuple[str, int]] = field(default_factory=set)
    highest: dict[str, int] = field(default_factory=dict)
    examples: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "calls": self.calls,
            "evaluations": self.evaluations,
            "flags_seen": len(self.highest),
            "versions_seen": len(self.versions),
            "version_changes": self.version_changes,
            "regressions": self.regressions,
            "regression_examples": self.examples[:20],
            "highest_versions": dict(sorted(self.highest.items())),
        }


TRACKER = VersionTracker()


class EvaluationUser(User):
    def __init__(self, environment: Environment) -> None:
        super().__init__(environment)
        self.cfg = settings()
        self.rng = random.Random()  # noqa: S311 - load, not secrets
        self.metadata = (("authorization", f"Bearer {self.cfg.sdk_key.get_secret_value()}"),)
        self.by_type: dict[FlagTypeName, list[str]] = {}
        self.highest: dict[str, int] = {}
        self.revision = -1
        self.channel: grpc.Channel | None = None

    def wait_time(self) -> float:
        return self.rng.uniform(0, self.cfg.eval_wait_seconds)

    def on_start(self) -> None:
        self.channel = grpc.insecure_channel(self.cfg.grpc_target)
        self.stub = pb_grpc.EvaluationServiceStub(self.channel)
        flags = dict(self.cfg.flags) or self._discover()
        for key, flag_type in flags.items():
            self.by_type.setdefault(flag_type, []).append(key)
        if not self.by_type:
            raise StopUser("the environment has no flags to evaluate")

    def on_stop(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def _discover(self) -> dict[str, FlagTypeName]:
        response = self._call(c.RESOLVE_ALL, self.stub.ResolveAll, pb.ResolveAllRequest(), check=None)
        if response is None:
            return {}
        return {key: PB_TYPES[r.type] for key, r in response.flags.items() if r.type in PB_TYPES}

    def _context(self) -> struct_pb2.Struct:
        context = struct_pb2.Struct()
        context.update(c.random_context(self.rng))
        return context

    # --- one call, reported to locust ----------------------------------------------------------------

    def _call(
        self, name: str, method: Any, request: Any, *, check: Callable[[Any], str | None] | None
    ) -> Any:
        start_time = time.time()
        start = time.perf_counter()
        response: Any = None
        exception: Exception | None = None
        try:
            response = method(request, metadata=self.metadata, timeout=self.cfg.grpc_timeout_seconds)
        except grpc.RpcError as exc:
            exception = GrpcCallError(c.grpc_status(exc))
        elapsed_ms = (time.perf_counter() - start) * 1000
        if response is not None and check is not None:
            problem = check(response)
            if problem is not None:
                exception = GrpcCallError(problem)
        self.environment.events.request.fire(
            request_type="grpc",
            name=name,
            response_time=elapsed_ms,
            response_length=response.ByteSize() if response is not None else 0,
            response=response,
            context={},
            exception=exception,
            start_time=start_time,
            url=None,
        )
        TRACKER.calls += 1
        return response

    # --- versions only go up -------------------------------------------------------------------------

    def _saw(self, flag: str, version: int) -> None:
        TRACKER.evaluations += 1
        TRACKER.versions.add((flag, version))
        TRACKER.highest[flag] = max(TRACKER.highest.get(flag, 0), version)
        before = self.highest.get(flag)
        if before is None or version > before:
            if before is not None:
                TRACKER.version_changes += 1
            self.highest[flag] = version
        elif version < before:
            self._regression(f"{flag}: served version {version} after version {before}")

    def _saw_revision(self, revision: int) -> None:
        if revision < self.revision:
            self._regression(f"ResolveAll: revision {revision} after revision {self.revision}")
        self.revision = max(self.revision, revision)

    def _regression(self, message: str) -> None:
        TRACKER.regressions += 1
        TRACKER.examples.append(message)
        self.environment.events.request.fire(
            request_type="grpc",
            name=c.VERSION_REGRESSION,
            response_time=0,
            response_length=0,
            response=None,
            context={},
            exception=VersionRegressionError(message),
        )

    # --- tasks ---------------------------------------------------------------------------------------

    def _resolve(self, flag_type: FlagTypeName) -> None:
        keys = self.by_type.get(flag_type)
        if not keys:
            return
        flag = self.rng.choice(keys)
        method_name = c.RESOLVE_METHODS[flag_type]
        request = pb.ResolveRequest(flag_key=flag, context=self._context())

        def check(response: Any) -> str | None:
            if response.error_code != pb.ERROR_CODE_UNSPECIFIED:
                code = pb.ErrorCode.Name(response.error_code)
                return f"{flag}: {code}: {response.error_message}"
            if not response.HasField("version"):
                return f"{flag}: no version in the response"
            return None

        response = self._call(method_name, getattr(self.stub, method_name), request, check=check)
        if response is not None and response.HasField("version"):
            self._saw(flag, response.version)

    @task(35)
    def resolve_boolean(self) -> None:
        self._resolve("boolean")

    @task(15)
    def resolve_string(self) -> None:
        self._resolve("string")

    @task(15)
    def resolve_integer(self) -> None:
        self._resolve("integer")

    @task(10)
    def resolve_float(self) -> None:
        self._resolve("float")

    @task(10)
    def resolve_object(self) -> None:
        self._resolve("object")

    @task(15)
    def resolve_all(self) -> None:
        request = pb.ResolveAllRequest(context=self._context())

        def check(response: Any) -> str | None:
            broken = [key for key, r in response.flags.items() if r.error_code != pb.ERROR_CODE_UNSPECIFIED]
            if broken:
                return f"{len(broken)} flag(s) with an error code, e.g. {sorted(broken)[:3]}"
            missing = [key for keys in self.by_type.values() for key in keys if key not in response.flags]
            if missing:
                return f"{len(missing)} flag(s) missing, e.g. {sorted(missing)[:3]}"
            return None

        response = self._call(c.RESOLVE_ALL, self.stub.ResolveAll, request, check=check)
        if response is None:
            return
        self._saw_revision(response.revision)
        for key, resolution in response.flags.items():
            if resolution.HasField("version"):
                self._saw(key, resolution.version)
