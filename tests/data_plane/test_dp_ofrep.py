"""OFREP over raw HTTP (httpx) against a real data plane: every status and body shape of the spec, the SDK
key checks shared with gRPC, ETag/304, health, metrics and the bounds, each worst case followed by a
normal evaluation that must still answer."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
from dp_helpers import ENV, FLAGS, META, SDK_KEY, Plane, settings_for, wait_until
from ofrep_helpers import assert_schema, schema_errors

from flagyard.contracts.redis import SdkKeyRecord, apply_change, hash_sdk_key, put_sdk_key, sdkkeys_key
from flagyard.data_plane import ofrep

SINGLE = "/ofrep/v1/evaluate/flags/"
BULK = "/ofrep/v1/evaluate/flags"
HEADERS = {"X-API-Key": SDK_KEY}
EXPIRED_KEY = "sdk-expired-key"
EXTRA_FLAGS: dict[str, dict[str, Any]] = {
    "experiment": {
        "key": "experiment",
        "type": "string",
        "variants": {"a": "A", "b": "B"},
        "default_split": {"variations": [{"variant": "a", "weight": 5000}, {"variant": "b", "weight": 5000}]},
    },
    "gated": {
        "key": "gated",
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "off_variant": "off",
        "default_variant": "on",
        "prerequisites": [{"flag": "new-checkout", "variant": "on"}],
    },
    "no-off": {
        "key": "no-off",
        "type": "boolean",
        "variants": {"on": True},
        "enabled": False,
    },
}


def _seed_extra(rds: redis.Redis, prefix: str) -> None:
    for key, flag in EXTRA_FLAGS.items():
        apply_change(rds, prefix, ENV, "flag", key, 1, flag, META)
    record = SdkKeyRecord(ENV, "shop", "production", time.time() - 60)
    put_sdk_key(rds, prefix, hash_sdk_key(EXPIRED_KEY), record)


def _start(planes: list[Plane], prefix: str, **overrides: Any) -> Plane:
    plane = Plane(settings_for(prefix, **overrides)).start()
    planes.append(plane)
    return plane


def _http(plane: Plane) -> httpx.Client:
    assert plane.plane is not None
    return httpx.Client(base_url=f"http://127.0.0.1:{plane.plane.ofrep_port}", timeout=10)


@pytest.fixture
def http(rds: redis.Redis, seeded: str, planes: list[Plane]) -> Iterator[httpx.Client]:
    _seed_extra(rds, seeded)
    with _http(_start(planes, seeded, sdk_key_cache_seconds=0, sdk_key_negative_cache_seconds=0)) as client:
        yield client


def evaluate(
    http: httpx.Client, key: str, context: dict[str, Any] | None = None, **kw: Any
) -> httpx.Response:
    body = {} if context is None else {"context": context}
    return http.post(SINGLE + key, json=body, headers=kw.pop("headers", HEADERS), **kw)


def bulk(http: httpx.Client, context: dict[str, Any] | None = None, **kw: Any) -> httpx.Response:
    body = {} if context is None else {"context": context}
    return http.post(BULK, json=body, headers=kw.pop("headers", HEADERS), **kw)


def still_answers(http: httpx.Client) -> None:
    r = evaluate(http, "new-checkout", {"targetingKey": "u-vip"})
    assert r.status_code == 200, r.text
    assert r.json()["value"] is True


# --- success bodies ---


@pytest.mark.parametrize(
    ("key", "context", "expected"),
    [
        (
            "new-checkout",
            {"targetingKey": "u-vip"},
            {
                "key": "new-checkout",
                "reason": "TARGETING_MATCH",
                "value": True,
                "variant": "on",
                "metadata": {"owner": "checkout"},
            },
        ),
        ("banner", {}, {"key": "banner", "reason": "STATIC", "value": "Welcome", "variant": "a"}),
        (
            "rate-limit",
            {"targetingKey": "u", "plan": "ent"},
            {"key": "rate-limit", "reason": "TARGETING_MATCH", "value": 500, "variant": "raised"},
        ),
        ("rate-limit", {}, {"key": "rate-limit", "reason": "DEFAULT", "value": 100, "variant": "normal"}),
        ("ratio", {}, {"key": "ratio", "reason": "STATIC", "value": 0.75, "variant": "high"}),
        (
            "theme",
            {},
            {"key": "theme", "reason": "STATIC", "value": {"bg": "#000", "sizes": [1, 2]}, "variant": "dark"},
        ),
        ("no-off", {}, {"key": "no-off", "reason": "DISABLED"}),  # codeDefaultFlag: no value, no variant
        (
            "gated",
            {"targetingKey": "u-vip"},
            {"key": "gated", "reason": "STATIC", "value": True, "variant": "on"},
        ),
        # prerequisite failed: the off variant, reported as DISABLED (the flag is off for this context)
        (
            "gated",
            {"targetingKey": "nobody"},
            {"key": "gated", "reason": "DISABLED", "value": False, "variant": "off"},
        ),
    ],
)
def test_ofrep_single__each_flag_type__success_body_per_spec(
    http: httpx.Client, key: str, context: dict[str, Any], expected: dict[str, Any]
) -> None:
    r = evaluate(http, key, context)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/json"
    assert r.json() == expected
    assert_schema("serverEvaluationSuccess", r.json())


def test_ofrep_single__split_with_and_without_targeting_key__split_or_400_targeting_key_missing(
    http: httpx.Client,
) -> None:
    seen = {evaluate(http, "experiment", {"targetingKey": f"user-{i}"}).json()["variant"] for i in range(40)}
    assert seen == {"a", "b"}
    assert evaluate(http, "experiment", {"targetingKey": "user-1"}).json()["reason"] == "SPLIT"
    r = evaluate(http, "experiment", {"country": "DE"})
    assert r.status_code == 400
    assert r.json()["key"] == "experiment"
    assert r.json()["errorCode"] == "TARGETING_KEY_MISSING"
    assert r.json()["errorDetails"]
    assert_schema("evaluationFailure", r.json())


def test_ofrep_single__targeting_key_is_the_rule_engines_targeting_key(http: httpx.Client) -> None:
    # "u-vip" is included in segment beta by targeting key; "targeting_key" itself is just an attribute
    assert evaluate(http, "new-checkout", {"targetingKey": "u-vip"}).json()["variant"] == "on"
    assert evaluate(http, "new-checkout", {"targetingKey": "someone"}).json()["variant"] == "off"


def test_ofrep_single__missing_body_or_context__evaluates_an_empty_context(http: httpx.Client) -> None:
    for r in (
        http.post(SINGLE + "banner", headers=HEADERS),
        http.post(SINGLE + "banner", json={}, headers=HEADERS),
        http.post(SINGLE + "banner", json={"other": 1}, headers=HEADERS),
    ):
        assert r.status_code == 200, r.text
        assert r.json()["value"] == "Welcome"


def test_ofrep_single__unknown_or_impossible_key__404_flag_not_found(http: httpx.Client) -> None:
    for key in ("nope", "x" * 129, "bad%20key", "a" * 5000):
        r = evaluate(http, key)
        assert r.status_code == 404, (key, r.text)
        assert r.json()["errorCode"] == "FLAG_NOT_FOUND"
        assert r.json()["errorDetails"]
        assert_schema("flagNotFound", r.json())
    still_answers(http)


# --- bulk ---


def test_ofrep_bulk__every_flag__sorted_successes_and_failures_per_spec(http: httpx.Client) -> None:
    r = bulk(http, {"country": "DE"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_schema("bulkEvaluationSuccess", body)
    keys = [f["key"] for f in body["flags"]]
    assert keys == sorted({*FLAGS, *EXTRA_FLAGS})
    by_key = {f["key"]: f for f in body["flags"]}
    assert by_key["new-checkout"]["value"] is True  # DE is in segment beta
    assert by_key["experiment"]["errorCode"] == "TARGETING_KEY_MISSING"  # a failure item, not a 400
    assert_schema("evaluationFailure", by_key["experiment"])
    assert by_key["no-off"] == {"key": "no-off", "reason": "DISABLED"}


def test_ofrep_bulk__etag__304_for_the_same_answer_200_when_context_or_flags_change(
    http: httpx.Client, rds: redis.Redis, seeded: str
) -> None:
    first = bulk(http, {"targetingKey": "u1"})
    etag = first.headers["etag"]
    assert etag.startswith('"')
    assert etag.endswith('"')
    again = bulk(http, {"targetingKey": "u1"}, headers={**HEADERS, "If-None-Match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    for header in (f"W/{etag}", f'"other", {etag}', "*"):
        assert (
            bulk(http, {"targetingKey": "u1"}, headers={**HEADERS, "If-None-Match": header}).status_code
            == 304
        )
    assert bulk(http, {"targetingKey": "u1"}, headers={**HEADERS, "If-None-Match": '"x"'}).status_code == 200
    other = bulk(http, {"targetingKey": "u-vip"}, headers={**HEADERS, "If-None-Match": etag})
    assert other.status_code == 200  # another context's answer differs (u-vip is in beta)
    assert other.headers["etag"] != etag
    apply_change(rds, seeded, ENV, "flag", "banner", 2, {**FLAGS["banner"], "default_variant": "b"}, META)
    changed = wait_until(
        lambda: (
            (r := bulk(http, {"targetingKey": "u1"}, headers={**HEADERS, "If-None-Match": etag})).status_code
            == 200
            and r
        ),
        10,
    )
    assert {f["key"]: f for f in changed.json()["flags"]}["banner"]["value"] == "Hi"
    assert changed.headers["etag"] != etag


def test_ofrep_bulk__sse_metadata_query_parameters__accepted_and_ignored(http: httpx.Client) -> None:
    r = http.post(BULK + "?flagConfigEtag=abc&flagConfigLastModified=1771622898", json={}, headers=HEADERS)
    assert r.status_code == 200


# --- bad requests ---


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"{not json", "PARSE_ERROR"),
        (b"[1, 2]", "INVALID_CONTEXT"),
        (b'{"context": [1]}', "INVALID_CONTEXT"),
        (b'{"context": null}', "INVALID_CONTEXT"),
        (b'{"context": {"targetingKey": 7}}', "INVALID_CONTEXT"),
        (b'{"context": {"a": ' + b"[" * 40 + b"]" * 40 + b"}}", "INVALID_CONTEXT"),
        (b'{"context": {' + b",".join(b'"k%d": 1' % i for i in range(10_001)) + b"}}", "INVALID_CONTEXT"),
        (b'{"context": {"a": [' + b",".join([b"0"] * 10_001) + b"]}}", "INVALID_CONTEXT"),
    ],
)
def test_ofrep__malformed_request__400_with_error_code_single_and_bulk(
    http: httpx.Client, body: bytes, code: str
) -> None:
    single = http.post(SINGLE + "banner", content=body, headers=HEADERS)
    assert single.status_code == 400
    assert single.json()["errorCode"] == code
    assert single.json()["key"] == "banner"
    assert_schema("evaluationFailure", single.json())
    many = http.post(BULK, content=body, headers=HEADERS)
    assert many.status_code == 400
    assert many.json()["errorCode"] == code
    assert "key" not in many.json()
    assert_schema("bulkEvaluationFailure", many.json())
    still_answers(http)


def test_ofrep__context_at_the_bounds__accepted(http: httpx.Client) -> None:
    nested: Any = 1
    for _ in range(ofrep.MAX_CONTEXT_DEPTH - 1):
        nested = [nested]
    members = {f"k{i}": 1 for i in range(ofrep.MAX_CONTEXT_MEMBERS)}
    for context in ({"a": nested}, members):
        assert evaluate(http, "banner", context).status_code == 200


def test_ofrep__wrong_method_or_path__405_or_404(http: httpx.Client) -> None:
    r = http.get(SINGLE + "banner", headers=HEADERS)
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"
    assert http.post("/ofrep/v2/evaluate/flags", json={}, headers=HEADERS).status_code == 404
    assert "errorDetails" in http.post("/other", json={}).json()


# --- authentication ---


def test_ofrep__sdk_key_as_x_api_key_or_bearer__both_accepted(http: httpx.Client) -> None:
    assert evaluate(http, "banner", headers={"X-API-Key": SDK_KEY}).status_code == 200
    assert evaluate(http, "banner", headers={"Authorization": f"Bearer {SDK_KEY}"}).status_code == 200
    assert bulk(http, headers={"authorization": f"bearer  {SDK_KEY}"}).status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-API-Key": ""},
        {"X-API-Key": "not-a-key"},
        {"Authorization": f"Basic {SDK_KEY}"},
        {"Authorization": "Bearer"},
        {"X-API-Key": EXPIRED_KEY},
    ],
)
def test_ofrep__missing_unknown_or_expired_key__401(http: httpx.Client, headers: dict[str, str]) -> None:
    for r in (evaluate(http, "banner", headers=headers), bulk(http, headers=headers)):
        assert r.status_code == 401
        assert r.json()["errorDetails"]
        assert SDK_KEY not in r.text
    still_answers(http)


def test_ofrep__revoked_key__401_once_the_key_cache_runs_out(
    http: httpx.Client, rds: redis.Redis, seeded: str
) -> None:
    assert evaluate(http, "banner").status_code == 200
    rds.hdel(sdkkeys_key(seeded), hash_sdk_key(SDK_KEY))
    assert wait_until(lambda: evaluate(http, "banner").status_code == 401, 10)
    put_sdk_key(rds, seeded, hash_sdk_key(SDK_KEY), SdkKeyRecord(ENV, "shop", "production", None))
    assert wait_until(lambda: evaluate(http, "banner").status_code == 200, 10)


def test_ofrep__rate_limit_per_key__429_with_retry_after_then_answers_again(
    rds: redis.Redis, seeded: str, planes: list[Plane]
) -> None:
    plane = _start(planes, seeded, sdk_key_rate_limit=0.25)
    with _http(plane) as http:
        statuses = [evaluate(http, "banner").status_code for _ in range(5)]
        assert statuses[0] == 200
        assert 429 in statuses
        limited = evaluate(http, "banner")
        assert limited.status_code == 429
        assert int(limited.headers["retry-after"]) >= 1
        assert limited.json()["errorDetails"]
        assert bulk(http).status_code == 429  # one budget per key for both routes
        assert evaluate(http, "banner", headers={"X-API-Key": "unknown"}).status_code == 401
        wait_until(lambda: evaluate(http, "banner").status_code == 200, 20, interval=0.5)


# --- bounds on the transport ---


def test_ofrep__body_over_the_bound__413_declared_or_chunked(http: httpx.Client) -> None:
    big = b'{"context": {"a": "' + b"x" * ofrep.MAX_BODY_BYTES + b'"}}'
    r = http.post(SINGLE + "banner", content=big, headers=HEADERS)
    assert r.status_code == 413
    assert r.json()["errorDetails"]

    def chunks() -> Iterator[bytes]:
        for _ in range(ofrep.MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    r = http.post(BULK, content=chunks(), headers=HEADERS)
    assert r.status_code == 413
    still_answers(http)


def _raw_request(port: int, head: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_ofrep__headers_over_the_bounds__431_and_the_connection_closes(http: httpx.Client) -> None:
    port = http.base_url.port
    assert port is not None
    big = b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * ofrep.MAX_HEADER_BYTES
    many = b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\n" + b"".join(
        b"x-h%d: 1\r\n" % i for i in range(ofrep.MAX_HEADERS + 1)
    )
    endless = b"POST /ofrep/v1/evaluate/flags HTTP/1.1\r\nx-slow: " + b"a" * (4 * ofrep.MAX_HEADER_BYTES)
    for head in (big + b"\r\n\r\n", many + b"\r\n", endless):
        answer = _raw_request(port, head)
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
    long_url = SINGLE + "k" * ofrep.MAX_HEADER_BYTES
    assert http.post(long_url, json={}, headers=HEADERS).status_code == 431
    still_answers(http)


# --- health, readiness, metrics ---


def test_ofrep_health__ready_once_l1_is_hydrated__not_ready_without_redis(
    http: httpx.Client, seeded: str, planes: list[Plane]
) -> None:
    assert http.get("/healthz").status_code == 200
    ready = http.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ready", "degraded": False}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    cold = Plane(settings_for(seeded, redis_url=dead, redis_timeout_seconds=0.2)).start(wait_ready=False)
    planes.append(cold)
    with _http(cold) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 503
        r = evaluate(client, "banner")
        assert r.status_code == 503
        assert r.headers["retry-after"] == "1"


def test_ofrep_metrics__requests_counted_with_protocol_label(http: httpx.Client, planes: list[Plane]) -> None:
    evaluate(http, "banner")
    evaluate(http, "nope")
    bulk(http)
    plane = planes[-1].plane
    assert plane is not None
    registry = plane.metrics.registry

    def requests(method: str, code: str) -> float | None:
        labels = {"protocol": "ofrep", "method": method, "code": code}
        return registry.get_sample_value("flagyard_data_plane_requests_total", labels)

    assert (requests("evaluate", "200"), requests("evaluate", "404"), requests("bulk", "200")) == (1, 1, 1)
    bulk_latency = {"protocol": "ofrep", "method": "bulk"}
    assert registry.get_sample_value("flagyard_data_plane_request_duration_seconds_count", bulk_latency) == 1


def test_ofrep_schema_check__catches_a_body_the_spec_refuses() -> None:
    assert schema_errors("evaluationFailure", {"key": "k", "errorCode": "FLAG_NOT_FOUND"})
    assert schema_errors("serverEvaluationSuccess", {"key": "k", "reason": "BOGUS", "value": 1})
    assert not schema_errors("serverEvaluationSuccess", {"key": "k", "reason": "DEFAULT", "value": 1})


# --- event streams (ADR-0008) ---


def _events(stream: Iterator[str], wanted: int) -> list[dict[str, Any]]:
    """The next ``wanted`` SSE events of ``stream`` (lines), as {id, event, data}; comments skipped."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    for line in stream:
        if not line:
            if "data" in current:
                events.append(current)
                if len(events) == wanted:
                    return events
            current = {}
        elif not line.startswith(":"):
            field, _, value = line.partition(":")
            current[field] = value.removeprefix(" ")
    raise AssertionError(f"the stream ended after {events}")


def test_ofrep_bulk__event_streams__point_at_the_sse_endpoint(http: httpx.Client) -> None:
    body = bulk(http).json()
    assert_schema("bulkEvaluationSuccess", body)
    assert body["eventStreams"] == [
        {"type": "sse", "endpoint": {"requestUri": "/ofrep/v1/events"}, "inactivityDelaySec": 120}
    ]


def test_ofrep_events__a_change__announced_as_refetch_evaluation(
    http: httpx.Client, rds: redis.Redis, seeded: str
) -> None:
    with http.stream("GET", "/ofrep/v1/events", headers=HEADERS) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"] == "text/event-stream"
        lines = stream.iter_lines()
        assert next(lines) == "retry: 5000"
        apply_change(rds, seeded, ENV, "flag", "banner", 2, {**FLAGS["banner"], "default_variant": "b"}, META)
        (event,) = _events(lines, 1)
        assert event["event"] == "message"
        data = json.loads(event["data"])
        assert data["type"] == "refetchEvaluation"
        assert data["etag"] == f'"{event["id"]}"'
        # the refetch the event asks for sees the change
        refetch = http.post(BULK + f"?flagConfigEtag={data['etag']}", json={}, headers=HEADERS)
        assert {f["key"]: f for f in refetch.json()["flags"]}["banner"]["value"] == "Hi"


def test_ofrep_events__resume_from_an_older_id__refetch_at_once(http: httpx.Client) -> None:
    with http.stream("GET", "/ofrep/v1/events", headers={**HEADERS, "Last-Event-ID": "1"}) as stream:
        (event,) = _events(stream.iter_lines(), 1)
        assert json.loads(event["data"])["type"] == "refetchEvaluation"
        assert int(event["id"]) > 1


def test_ofrep_events__streams_per_key_bounded__429_then_normal_evaluation(
    rds: redis.Redis, seeded: str, planes: list[Plane]
) -> None:
    plane = _start(planes, seeded, ofrep_max_streams_per_key=2)
    with _http(plane) as http, contextlib.ExitStack() as open_streams:
        for _ in range(2):
            stream = open_streams.enter_context(http.stream("GET", "/ofrep/v1/events", headers=HEADERS))
            assert stream.status_code == 200
        third = http.get("/ofrep/v1/events", headers=HEADERS)
        assert third.status_code == 429
        assert third.headers["retry-after"] == "5"
        assert http.get("/ofrep/v1/events").status_code == 401
        still_answers(http)
    with _http(plane) as http:  # closed streams free their slots

        def two_open() -> bool:
            with contextlib.ExitStack() as streams:
                return all(
                    streams.enter_context(http.stream("GET", "/ofrep/v1/events", headers=HEADERS)).status_code
                    == 200
                    for _ in range(2)
                )

        assert wait_until(two_open, 10)


def test_ofrep_events__revoked_key__stream_ends(http: httpx.Client, rds: redis.Redis, seeded: str) -> None:
    with http.stream("GET", "/ofrep/v1/events", headers=HEADERS) as stream:
        assert stream.status_code == 200
        rds.hdel(sdkkeys_key(seeded), hash_sdk_key(SDK_KEY))
        rest = list(stream.iter_lines())  # ends once the key check fails (cache TTL 0 here)
    assert rest[0] == "retry: 5000"


# --- the stock provider against this data plane, connections, several processes ---


def test_ofrep_stock_provider__rate_limited__general_error_and_pauses_until_retry_after(
    seeded: str, planes: list[Plane]
) -> None:
    from openfeature.contrib.provider.ofrep import OFREPProvider
    from openfeature.exception import ErrorCode, GeneralError

    plane = _start(planes, seeded, sdk_key_rate_limit=0.25)
    assert plane.plane is not None
    provider = OFREPProvider(
        f"http://127.0.0.1:{plane.plane.ofrep_port}", headers_factory=lambda: {"X-API-Key": SDK_KEY}
    )
    assert provider.resolve_string_details("banner", "x").value == "Welcome"
    limited: GeneralError | None = None
    for _ in range(5):
        try:
            provider.resolve_string_details("banner", "x")
        except GeneralError as exc:
            limited = exc
            break
    assert limited is not None
    assert "Rate limited" in str(limited)
    assert limited.error_code is ErrorCode.GENERAL
    assert provider.retry_after is not None  # it read Retry-After and pauses until then
    with pytest.raises(GeneralError, match="paused"):
        provider.resolve_string_details("banner", "x")


def test_ofrep__connections_over_the_bound__503_then_normal_evaluation(
    seeded: str, planes: list[Plane]
) -> None:
    plane = _start(planes, seeded, ofrep_max_connections=2)
    assert plane.plane is not None
    port = plane.plane.ofrep_port
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    try:
        answer = _raw_request(port, b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]
    finally:
        for sock in held:
            sock.close()
    with _http(plane) as http:
        assert wait_until(lambda: evaluate(http, "banner").status_code == 200, 10)


def _listeners(port: int) -> int:
    """Sockets listening on ``port`` (both families), from /proc/net."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            for line in list(lines)[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    count += 1
    return count


def test_ofrep__several_processes__share_the_port_and_all_answer(seeded: str, tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    from polling_helpers import free_port

    ofrep_port = free_port()
    env = dict(
        os.environ,
        FLAGYARD_REDIS_URL=settings_for(seeded).redis_url.get_secret_value(),
        FLAGYARD_REDIS_PREFIX=seeded,
        FLAGYARD_GRPC_HOST="127.0.0.1",
        FLAGYARD_OFREP_HOST="127.0.0.1",
        FLAGYARD_OFREP_PORT=str(ofrep_port),
        FLAGYARD_METRICS_PORT="0",
        FLAGYARD_LOG_LEVEL="warning",
    )
    log = (tmp_path / "dp.log").open("wb")
    cmd = [sys.executable, "-m", "flagyard.data_plane", "--processes", "2", "--port", str(free_port())]
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log)
    try:
        assert wait_until(lambda: _listeners(ofrep_port) == 2, 60)
        base = f"http://127.0.0.1:{ofrep_port}"

        def answered() -> list[int]:
            statuses = []
            for _ in range(20):  # a new connection each: the kernel spreads them over both
                with httpx.Client(base_url=base, timeout=5) as fresh:
                    statuses.append(evaluate(fresh, "banner").status_code)
            return statuses

        assert wait_until(lambda: set(answered()) == {200}, 60)
    finally:
        proc.terminate()
        proc.wait(30)
    assert proc.returncode == 0


def test_ofrep_cors__configured_origins_only__preflight_and_exposed_etag(
    seeded: str, planes: list[Plane], http: httpx.Client
) -> None:
    app = "https://app.example"
    preflight_headers = {
        "Origin": app,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "x-api-key, content-type",
    }
    # off by default: no CORS headers, OPTIONS is not a method of the routes
    assert http.options(BULK, headers=preflight_headers).status_code == 405
    assert "access-control-allow-origin" not in bulk(http, headers={**HEADERS, "Origin": app}).headers
    plane = _start(planes, seeded, ofrep_cors_origins=f"{app}, https://other.example")
    with _http(plane) as client:
        preflight = client.options(BULK, headers=preflight_headers)
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == app
        assert "x-api-key" in preflight.headers["access-control-allow-headers"]
        assert "POST" in preflight.headers["access-control-allow-methods"]
        answer = bulk(client, headers={**HEADERS, "Origin": app})
        assert answer.headers["access-control-allow-origin"] == app
        assert "etag" in answer.headers["access-control-expose-headers"]
        assert answer.headers["vary"] == "origin"
        denied = bulk(client, headers={**HEADERS, "Origin": "https://evil.example"})
        assert denied.status_code == 200
        assert "access-control-allow-origin" not in denied.headers
        unauthorized = evaluate(client, "banner", headers={"Origin": app})
        assert unauthorized.status_code == 401
        assert unauthorized.headers["access-control-allow-origin"] == app


def test_ofrep_tls__the_data_planes_certificate__https_only(
    seeded: str, planes: list[Plane], tmp_path: Any
) -> None:
    import ssl
    import subprocess

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"),
            *("-days", "1", "-subj", "/CN=flagyard-test", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    plane = _start(planes, seeded, data_plane_tls_cert_file=cert, data_plane_tls_key_file=key)
    assert plane.plane is not None
    port = plane.plane.ofrep_port
    verify = ssl.create_default_context(cafile=str(cert))
    with httpx.Client(base_url=f"https://127.0.0.1:{port}", verify=verify, timeout=10) as secure:
        assert evaluate(secure, "banner").json()["value"] == "Welcome"
    with (
        httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as plain,
        pytest.raises(httpx.HTTPError),
    ):
        evaluate(plain, "banner")


def test_ofrep_events__data_plane_stops__open_streams_end(seeded: str) -> None:
    plane = Plane(settings_for(seeded)).start()
    try:
        with _http(plane) as http, http.stream("GET", "/ofrep/v1/events", headers=HEADERS) as stream:
            lines = stream.iter_lines()
            assert next(lines) == "retry: 5000"
            plane.stop()
            assert list(lines) == [""]  # the blank line ending the retry field, then the end of the stream
    finally:
        plane.stop()
