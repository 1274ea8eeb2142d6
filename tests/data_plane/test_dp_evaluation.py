"""Evaluation over real gRPC against a data plane following a real Redis."""

from __future__ import annotations

import time
from typing import Any

import grpc
import pytest
import redis
from dp_helpers import (
    ENV,
    FLAGS,
    META,
    SDK_KEY,
    Client,
    Plane,
    seed,
    settings_for,
    wait_until,
)
from google.protobuf import json_format
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from flagyard.contracts.redis import (
    EnvKeys,
    SdkKeyRecord,
    apply_change,
    delete_sdk_key,
    hash_sdk_key,
    put_sdk_key,
    read_evaluations,
)
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb


def test_resolve_boolean__segment_rule_matches__targeting_match_with_metadata(client: Client) -> None:
    response = client.resolve("ResolveBoolean", "new-checkout", {"targeting_key": "u-1", "country": "DE"})

    assert response.value is True
    assert response.variant == "on"
    assert response.reason == pb.REASON_TARGETING_MATCH
    assert response.error_code == pb.ERROR_CODE_UNSPECIFIED
    assert response.version == 1
    assert json_format.MessageToDict(response.flag_metadata) == {"owner": "checkout"}


@pytest.mark.parametrize(
    ("method", "flag_key", "context", "value", "variant", "reason"),
    [
        ("ResolveString", "banner", {}, "Welcome", "a", pb.REASON_STATIC),
        ("ResolveInteger", "rate-limit", {"plan": "ent"}, 500, "raised", pb.REASON_TARGETING_MATCH),
        ("ResolveInteger", "rate-limit", {"plan": "free"}, 100, "normal", pb.REASON_DEFAULT),
        ("ResolveFloat", "ratio", {}, 0.75, "high", pb.REASON_STATIC),
        ("ResolveFloat", "rate-limit", {}, 100.0, "normal", pb.REASON_DEFAULT),
    ],
)
def test_resolve_typed__each_scalar_type__typed_value(
    client: Client, method: str, flag_key: str, context: dict[str, Any], value: Any, variant: str, reason: int
) -> None:
    response = client.resolve(method, flag_key, context)

    assert response.HasField("value")
    assert response.value == value
    assert type(response.value) is type(value)
    assert (response.variant, response.reason, response.error_code) == (variant, reason, 0)


def test_resolve_object__object_variant__json_value(client: Client) -> None:
    response = client.resolve("ResolveObject", "theme", {})

    assert json_format.MessageToDict(response.value) == {"bg": "#000", "sizes": [1, 2]}
    assert response.variant == "dark"


def test_resolve__unknown_flag__flag_not_found_result_not_an_error_status(client: Client) -> None:
    response = client.resolve("ResolveBoolean", "does-not-exist", {})

    assert response.reason == pb.REASON_ERROR
    assert response.error_code == pb.ERROR_CODE_FLAG_NOT_FOUND
    assert not response.HasField("value")
    assert not response.HasField("variant")
    assert not response.HasField("version")


def test_resolve__wrong_type__type_mismatch_result(client: Client) -> None:
    response = client.resolve("ResolveString", "new-checkout", {"targeting_key": "u-1"})

    assert response.reason == pb.REASON_ERROR
    assert response.error_code == pb.ERROR_CODE_TYPE_MISMATCH
    assert not response.HasField("value")
    assert response.version == 1


def test_resolve__disabled_without_off_variant__no_value_so_caller_default(client: Client) -> None:
    response = client.resolve("ResolveBoolean", "no-default", {})

    assert response.reason == pb.REASON_DISABLED
    assert response.error_code == 0
    assert not response.HasField("value")
    assert not response.HasField("variant")


def test_resolve__numbers_in_struct__integral_ones_compare_as_integers(
    rds: redis.Redis, seeded: str, client: Client
) -> None:
    apply_change(
        rds,
        seeded,
        ENV,
        "flag",
        "age-gate",
        1,
        {
            "key": "age-gate",
            "type": "boolean",
            "variants": {"yes": True, "no": False},
            "default_variant": "no",
            "rules": [
                {
                    "id": "r",
                    "clauses": [{"attribute": "age", "operator": "in", "values": [30]}],
                    "variant": "yes",
                }
            ],
        },
    )
    wait_until(lambda: client.resolve("ResolveBoolean", "age-gate", {}).error_code == 0)

    assert client.resolve("ResolveBoolean", "age-gate", {"age": 30}).value is True
    assert client.resolve("ResolveBoolean", "age-gate", {"age": 30.5}).value is False


def test_resolve_all__context__every_flag_typed(client: Client) -> None:
    response = client.resolve_all({"targeting_key": "u-vip", "plan": "ent"})

    flags = response.flags
    assert set(flags) == set(FLAGS)
    assert flags["new-checkout"].bool_value is True
    assert flags["new-checkout"].reason == pb.REASON_TARGETING_MATCH
    assert flags["banner"].string_value == "Welcome"
    assert flags["rate-limit"].integer_value == 500
    assert flags["rate-limit"].type == pb.FLAG_TYPE_INTEGER
    assert flags["ratio"].float_value == 0.75
    assert json_format.MessageToDict(flags["theme"].object_value) == {"bg": "#000", "sizes": [1, 2]}
    assert flags["no-default"].WhichOneof("value") is None
    assert flags["no-default"].reason == pb.REASON_DISABLED
    assert response.revision == len(FLAGS) + 1


def test_resolve_all__repeated_calls__same_answer_from_cached_encoding(client: Client) -> None:
    first = client.resolve_all({"targeting_key": "u-1", "country": "DE"})
    second = client.resolve_all({"targeting_key": "u-1", "country": "DE"})
    other = client.resolve_all({"targeting_key": "u-1", "country": "FR"})

    assert first == second
    assert first.flags["new-checkout"].bool_value is True
    assert other.flags["new-checkout"].bool_value is False


def test_resolve_all__flag_keys__only_those_and_unknown_not_found(client: Client) -> None:
    response = client.resolve_all({}, keys=["banner", "missing", "banner"])

    assert set(response.flags) == {"banner", "missing"}
    assert response.flags["missing"].error_code == pb.ERROR_CODE_FLAG_NOT_FOUND
    assert response.flags["missing"].type == pb.FLAG_TYPE_UNSPECIFIED


@pytest.mark.parametrize(
    ("metadata", "detail"),
    [
        ((), "missing"),
        ((("authorization", "Bearer wrong-key"),), "unknown"),
        ((("authorization", "Basic abc"),), "Bearer"),
        ((("authorization", "Bearer expired-key"),), "expired"),
    ],
)
def test_auth__bad_key__unauthenticated(
    rds: redis.Redis, seeded: str, client: Client, metadata: tuple[tuple[str, str], ...], detail: str
) -> None:
    put_sdk_key(rds, seeded, hash_sdk_key("expired-key"), SdkKeyRecord(ENV, "shop", "prod", time.time() - 1))

    with pytest.raises(grpc.RpcError) as caught:
        client.evaluation.ResolveBoolean(
            pb.ResolveRequest(flag_key="new-checkout"), metadata=metadata, timeout=5
        )

    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert detail in caught.value.details()


def test_auth__key_expires_while_cached__unauthenticated(
    rds: redis.Redis, seeded: str, client: Client
) -> None:
    put_sdk_key(
        rds, seeded, hash_sdk_key("short-lived"), SdkKeyRecord(ENV, "shop", "prod", time.time() + 1.0)
    )
    short = Client(client.port, "short-lived")
    try:
        assert short.resolve("ResolveBoolean", "new-checkout").reason != pb.REASON_ERROR

        def rejected() -> bool:
            try:
                short.resolve("ResolveBoolean", "new-checkout")
            except grpc.RpcError as exc:
                return exc.code() == grpc.StatusCode.UNAUTHENTICATED
            return False

        wait_until(rejected, timeout=5)
    finally:
        short.close()


def test_resolve__empty_flag_key__invalid_argument(client: Client) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        client.resolve("ResolveBoolean", "", {})

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_resolve__undecodable_request__invalid_argument_or_internal_not_a_crash(client: Client) -> None:
    call = client.channel.unary_unary(
        "/flagyard.v1.EvaluationService/ResolveBoolean",
        request_serializer=lambda b: b,
        response_deserializer=lambda b: b,
    )
    with pytest.raises(grpc.RpcError) as caught:
        call(b"\xff\xff\xff", metadata=client.metadata, timeout=5)

    assert caught.value.code() in (grpc.StatusCode.INTERNAL, grpc.StatusCode.INVALID_ARGUMENT)
    assert client.resolve("ResolveString", "banner").value == "Welcome"  # still serving


def test_change__applied_through_apply_change__reaches_the_next_evaluation(
    rds: redis.Redis, seeded: str, client: Client
) -> None:
    changed = {**FLAGS["banner"], "default_variant": "b"}

    apply_change(rds, seeded, ENV, "flag", "banner", 2, changed)

    response = wait_until(
        lambda: (r := client.resolve("ResolveString", "banner")).version == 2 and r, timeout=5
    )
    assert response.value == "Hi"


def test_change__delete_then_new_flag__not_found_then_found(
    rds: redis.Redis, seeded: str, client: Client
) -> None:
    apply_change(rds, seeded, ENV, "flag", "banner", 2, None)
    apply_change(rds, seeded, ENV, "flag", "fresh", 1, {**FLAGS["banner"], "key": "fresh"})

    wait_until(lambda: client.resolve("ResolveString", "fresh").value == "Welcome", timeout=5)
    assert client.resolve("ResolveString", "banner").error_code == pb.ERROR_CODE_FLAG_NOT_FOUND


def test_change__out_of_order_and_duplicate_applies__never_regress(
    rds: redis.Redis, seeded: str, plane: Plane, client: Client
) -> None:
    def version_of(v: int) -> dict[str, Any]:
        return {**FLAGS["banner"], "variants": {"a": f"v{v}", "b": "x"}}

    for v in (4, 2, 4, 3, 5, 1, 5):
        apply_change(rds, seeded, ENV, "flag", "banner", v, version_of(v))
    rev = int(rds.get(EnvKeys(seeded, ENV).rev))  # type: ignore[arg-type]

    wait_until(lambda: plane.call(lambda: plane.plane.follower.envs[ENV].revision) == rev, timeout=5)  # type: ignore[union-attr]
    response = client.resolve("ResolveString", "banner")
    assert (response.value, response.version) == ("v5", 5)


def test_stream_gap__revision_jump__environment_reloaded(
    rds: redis.Redis, seeded: str, plane: Plane, client: Client
) -> None:
    keys = EnvKeys(seeded, ENV)
    # Simulate events lost to trimming: a value written and a revision skipped without their event.
    rds.hset(
        keys.flags,
        "banner",
        b'{"version": 9, "definition": '
        + (b'{"key": "banner", "type": "string", "variants": {"a": "gap"}, "default_variant": "a"}}'),
    )
    rds.hset(keys.versions, "flag:banner", 9)
    rds.incr(keys.rev)
    apply_change(rds, seeded, ENV, "flag", "ratio", 2, FLAGS["ratio"])

    wait_until(lambda: client.resolve("ResolveString", "banner").value == "gap", timeout=5)
    assert plane.call(lambda: plane.plane.follower.envs[ENV].revision) == int(rds.get(keys.rev))  # type: ignore[union-attr,arg-type]


def test_bad_definition_in_redis__skipped_and_counted__others_still_served(
    rds: redis.Redis, seeded: str, plane: Plane, client: Client
) -> None:
    apply_change(
        rds, seeded, ENV, "flag", "broken", 1, {"key": "broken", "type": "boolean", "variants": "nope"}
    )
    apply_change(rds, seeded, ENV, "flag", "banner", 2, {**FLAGS["banner"], "default_variant": "b"})

    wait_until(lambda: client.resolve("ResolveString", "banner").value == "Hi", timeout=5)
    assert client.resolve("ResolveBoolean", "broken").error_code == pb.ERROR_CODE_FLAG_NOT_FOUND
    registry = plane.plane.metrics.registry  # type: ignore[union-attr]
    assert registry.get_sample_value("flagyard_data_plane_invalid_definitions_total", {"kind": "flag"}) == 1


def test_new_environment__created_after_start__served_on_first_use(
    rds: redis.Redis, seeded: str, client: Client
) -> None:
    apply_change(rds, seeded, "env-2", "flag", "only-here", 1, {**FLAGS["banner"], "key": "only-here"}, META)
    put_sdk_key(rds, seeded, hash_sdk_key("key-2"), SdkKeyRecord("env-2", "shop", "staging", None))
    other = Client(client.port, "key-2")
    try:
        assert other.resolve("ResolveString", "only-here").value == "Welcome"
        assert other.resolve("ResolveString", "banner").error_code == pb.ERROR_CODE_FLAG_NOT_FOUND
    finally:
        other.close()


@pytest.mark.parametrize("followed_before", ["another environment", "nothing"])
def test_new_environment__changed_right_after_first_use__applied_without_waiting_out_the_stream_block(
    rds: redis.Redis, prefix: str, planes: list[Plane], followed_before: str
) -> None:
    # Given a data plane whose follower waits 30 s at a time, following one environment or none
    if followed_before == "another environment":
        seed(rds, prefix)
    plane = Plane(settings_for(prefix, stream_block_ms=30_000, env_refresh_seconds=60)).start()
    planes.append(plane)
    # and an environment created after it started, loaded by its first evaluation
    flag = {**FLAGS["banner"], "key": "only-here"}
    apply_change(rds, prefix, "env-2", "flag", "only-here", 1, flag, META)
    put_sdk_key(rds, prefix, hash_sdk_key("key-2"), SdkKeyRecord("env-2", "shop", "staging", None))
    other = Client(plane.port, "key-2")
    try:
        assert other.resolve("ResolveString", "only-here").value == "Welcome"
        # When that environment changes at once
        apply_change(rds, prefix, "env-2", "flag", "only-here", 2, {**flag, "default_variant": "b"}, META)
        # Then the change is served long before the follower's 30 s wait would have ended
        wait_until(lambda: other.resolve("ResolveString", "only-here").value == "Hi", timeout=10)
    finally:
        other.close()


def test_health_and_reflection__hydrated__serving_and_services_listed(client: Client) -> None:
    health = health_pb2_grpc.HealthStub(client.channel)
    for service in (
        "",
        "flagyard.v1.EvaluationService",
        "flagyard.v1.SyncService",
        "flagyard.data_plane.Redis",
    ):
        status = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5).status
        assert status == health_pb2.HealthCheckResponse.SERVING, service

    reflection = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    [answer] = list(
        reflection.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
    )
    names = {s.name for s in answer.list_services_response.service}
    assert {"flagyard.v1.EvaluationService", "flagyard.v1.SyncService", "grpc.health.v1.Health"} <= names


def test_metrics__evaluations__counted_by_method_code_and_flag(plane: Plane, client: Client) -> None:
    client.resolve("ResolveBoolean", "new-checkout", {"targeting_key": "u-1", "country": "DE"})
    client.resolve_all({"targeting_key": "u-1", "country": "DE"})
    client.resolve("ResolveBoolean", "unknown-1")
    registry = plane.plane.metrics.registry  # type: ignore[union-attr]

    def evaluations() -> float | None:
        return registry.get_sample_value(
            "flagyard_data_plane_evaluations_total",
            {"flag": "new-checkout", "variant": "on", "reason": "TARGETING_MATCH"},
        )

    assert wait_until(lambda: evaluations() == 2, timeout=5)
    assert (
        registry.get_sample_value(
            "flagyard_data_plane_requests_total",
            {"protocol": "flagyard", "method": "ResolveBoolean", "code": "OK"},
        )
        == 2
    )
    assert registry.get_sample_value("flagyard_data_plane_degraded") == 0
    assert registry.get_sample_value("flagyard_data_plane_l1_flags") == len(FLAGS)
    assert (
        registry.get_sample_value(
            "flagyard_data_plane_evaluations_total", {"flag": "unknown-1", "variant": "", "reason": "ERROR"}
        )
        is None
    )


def test_metrics__more_flags_than_the_cap__rest_counted_as_other(
    rds: redis.Redis, seeded: str, planes: list[Plane]
) -> None:
    plane = Plane(settings_for(seeded, metrics_flag_label_cap=2)).start()
    planes.append(plane)
    c = Client(plane.port, SDK_KEY)
    try:
        c.resolve_all({"targeting_key": "u"})
        registry = plane.plane.metrics.registry  # type: ignore[union-attr]

        def flags_labelled() -> set[str]:
            return {
                s.labels["flag"]
                for m in registry.collect()
                if m.name == "flagyard_data_plane_evaluations"
                for s in m.samples
                if s.name.endswith("_total")
            }

        labelled = wait_until(lambda: len(flags_labelled()) == 3 and flags_labelled(), timeout=5)
        assert "other" in labelled
    finally:
        c.close()


@pytest.mark.parametrize("lazy", [True, False])
def test_hydration__bad_value_in_redis_at_start__skipped_counted_others_served(
    rds: redis.Redis, seeded: str, planes: list[Plane], lazy: bool
) -> None:
    keys = EnvKeys(seeded, ENV)
    rds.hset(keys.flags, "broken", b'{"version": 1, "definition": {"key": "broken", "type": "boolean"}}')
    rds.hset(keys.flags, "garbage", b"not json")
    plane = Plane(settings_for(seeded, lazy_compile=lazy)).start()
    planes.append(plane)
    client = Client(plane.port)
    registry = plane.plane.metrics.registry  # type: ignore[union-attr]
    try:
        assert client.resolve("ResolveString", "banner").value == "Welcome"
        assert client.resolve_all({"targeting_key": "u-vip"}).flags["new-checkout"].bool_value is True

        def invalid() -> float | None:
            return registry.get_sample_value(
                "flagyard_data_plane_invalid_definitions_total", {"kind": "flag"}
            )

        wait_until(lambda: invalid() == 2, timeout=5)
        assert client.resolve("ResolveBoolean", "broken").error_code == pb.ERROR_CODE_FLAG_NOT_FOUND
        assert client.resolve("ResolveBoolean", "garbage").error_code == pb.ERROR_CODE_FLAG_NOT_FOUND
    finally:
        client.close()


def test_auth__key_revoked__unauthenticated_within_the_cache_lifetime(
    rds: redis.Redis, seeded: str, planes: list[Plane]
) -> None:
    plane = Plane(settings_for(seeded, sdk_key_cache_seconds=0.2)).start()
    planes.append(plane)
    client = Client(plane.port)
    try:
        assert client.resolve("ResolveString", "banner").value == "Welcome"

        delete_sdk_key(rds, seeded, hash_sdk_key(SDK_KEY))

        def rejected() -> bool:
            try:
                client.resolve("ResolveString", "banner")
            except grpc.RpcError as exc:
                return exc.code() == grpc.StatusCode.UNAUTHENTICATED
            return False

        wait_until(rejected, timeout=5)
    finally:
        client.close()


def test_lazy_compile__without_compile_ahead__compiled_on_first_use(seeded: str, planes: list[Plane]) -> None:
    plane = Plane(settings_for(seeded, compile_ahead=False)).start()
    planes.append(plane)
    client = Client(plane.port)
    try:
        response = client.resolve("ResolveBoolean", "new-checkout", {"targeting_key": "u-vip"})

        assert (response.value, response.reason) == (True, pb.REASON_TARGETING_MATCH)
        assert client.resolve_all({"country": "AT"}).flags["new-checkout"].bool_value is True
    finally:
        client.close()


def test_report_evaluations__valid_report__counts_land_in_the_environments_usage(
    client: Client, rds: redis.Redis, seeded: str
) -> None:
    request = pb.ReportEvaluationsRequest(
        counts=[
            pb.EvaluationCount(flag_key="banner", variant="a", reason=pb.REASON_STATIC, count=3),
            pb.EvaluationCount(flag_key="banner", variant="", reason=pb.REASON_ERROR, count=2),
        ],
        last_evaluated_at=int(time.time()) - 60,
    )
    response = client.evaluation.ReportEvaluations(request, metadata=client.metadata, timeout=5)
    assert response.recorded == 5
    usage = read_evaluations(rds, seeded, ENV)["banner"]
    assert (usage.evaluations, usage.variants, usage.reasons) == (
        5,
        {"a": 3, "": 2},
        {"STATIC": 3, "ERROR": 2},
    )
    assert usage.last_evaluated_at == request.last_evaluated_at


@pytest.mark.parametrize(
    ("count", "metadata", "code"),
    [
        (pb.EvaluationCount(flag_key="banner", count=0), True, grpc.StatusCode.INVALID_ARGUMENT),
        (
            pb.EvaluationCount(flag_key="banner", count=1, reason=pb.REASON_STATIC),
            False,
            grpc.StatusCode.UNAUTHENTICATED,
        ),
    ],
)
def test_report_evaluations__bad_report_or_key__rejected_with_status(
    client: Client, count: pb.EvaluationCount, metadata: bool, code: grpc.StatusCode
) -> None:
    request = pb.ReportEvaluationsRequest(counts=[count])
    with pytest.raises(grpc.RpcError) as caught:
        client.evaluation.ReportEvaluations(request, metadata=client.metadata if metadata else (), timeout=5)
    assert caught.value.code() == code
