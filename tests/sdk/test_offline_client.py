"""The SDK in offline mode: typed getters, details, never raising, file watching, fork safety."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from flagyard import (
    ConfigurationError,
    ErrorCode,
    EvaluationResult,
    FlagType,
    FlagyardClient,
    ProviderEvent,
    Reason,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flags.json"


def write_flags(path: Path, flags: list[dict[str, Any]]) -> None:
    path.write_text(json.dumps({"flags": flags}))


def boolean_flag(key: str, default: str) -> dict[str, Any]:
    return {"key": key, "type": "boolean", "variants": {"on": True, "off": False}, "default_variant": default}


def test_offline_client__typed_getters__serve_the_files_values() -> None:
    with FlagyardClient.offline(EXAMPLE) as client:
        assert client.boolean("new-checkout", False, {"targeting_key": "u-1", "country": "DE"}) is True
        assert client.integer("rate-limit", 1, {"account": {"plan": "enterprise"}}) == 500
        assert client.float("rate-limit", 1.5, {}) == 100.0
        assert client.string("banner-text", "x", {"targeting_key": "u-2", "country": "DE"}) == "Welcome"
        assert client.boolean("legacy-path", True) is False


def test_offline_client__details__carry_variant_reason_and_rule() -> None:
    client = FlagyardClient.offline(EXAMPLE)
    result = client.details("new-checkout", False, {"targeting_key": "u-1", "country": "DE"})
    assert (result.value, result.variant, result.reason, result.rule_id) == (
        True,
        "on",
        Reason.TARGETING_MATCH,
        "beta",
    )
    assert result.flag_metadata == {"owner": "checkout-team"}


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda c: c.details("missing", "d"), ErrorCode.FLAG_NOT_FOUND),
        (lambda c: c.details("rate-limit", "d"), ErrorCode.TYPE_MISMATCH),
        (lambda c: c.details("new-checkout", False, {"country": "FR"}), ErrorCode.TARGETING_KEY_MISSING),
    ],
)
def test_offline_client__failure__returns_default_with_error_code(call: Any, code: ErrorCode) -> None:
    result = call(FlagyardClient.offline(EXAMPLE))
    assert result.reason is Reason.ERROR
    assert result.error_code is code


def test_offline_client__typed_getter_on_wrong_type__returns_default() -> None:
    client = FlagyardClient.offline(EXAMPLE)
    assert client.string("rate-limit", "fallback") == "fallback"
    assert client.boolean("no-such-flag", True) is True


class ExplodingResolver:
    def resolve(
        self, key: str, default: Any, context: Mapping[str, Any], flag_type: FlagType
    ) -> EvaluationResult:
        raise RuntimeError("boom")

    def add_listener(self, listener: Any) -> None:
        raise RuntimeError("boom")

    def close(self) -> None:
        pass


def test_client__resolver_raises__getters_return_default_and_details_say_general() -> None:
    client = FlagyardClient(ExplodingResolver())
    assert client.boolean("f", True) is True
    assert client.object("f", {"a": 1}) == {"a": 1}
    result = client.details("f", 3)
    assert (result.value, result.reason, result.error_code) == (3, Reason.ERROR, ErrorCode.GENERAL)
    assert "boom" in (result.error_message or "")


def test_offline__missing_or_invalid_file__raises_configuration_error_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read"):
        FlagyardClient.offline(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"flags": [{"key": "f", "type": "boolean", "variants": {"on": 1}}]}')
    with pytest.raises(ConfigurationError, match="/flags/0/variants/on"):
        FlagyardClient.offline(bad)


def test_offline__flagd_file__loads_like_a_native_one(tmp_path: Path) -> None:
    path = tmp_path / "flagd.json"
    path.write_text(
        json.dumps(
            {
                "flags": {
                    "f": {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}
                }
            }
        )
    )
    assert FlagyardClient.offline(path).details("f", False).reason is Reason.STATIC


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[ProviderEvent, list[str], str | None]] = []
        self.changed = threading.Event()

    def __call__(self, event: ProviderEvent, flags: list[str], message: str | None) -> None:
        self.events.append((event, flags, message))
        if event is not ProviderEvent.READY:
            self.changed.set()


def test_offline_watch__file_changes__serves_new_values_and_reports_changed_keys(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    write_flags(path, [boolean_flag("a", "off"), boolean_flag("b", "off")])
    recorder = Recorder()
    with FlagyardClient.offline(path, watch=True, poll_interval=0.05) as client:
        client.add_listener(recorder)
        assert client.boolean("a", True) is False
        write_flags(path, [boolean_flag("a", "on"), boolean_flag("b", "off")])
        assert recorder.changed.wait(10)
        assert client.boolean("a", False) is True
    assert recorder.events[0][0] is ProviderEvent.READY
    assert recorder.events[1][:2] == (ProviderEvent.CONFIGURATION_CHANGED, ["a"])


def test_offline_watch__invalid_new_content__keeps_serving_and_reports_error(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    write_flags(path, [boolean_flag("a", "on")])
    recorder = Recorder()
    with FlagyardClient.offline(path, watch=True, poll_interval=0.05) as client:
        client.add_listener(recorder)
        path.write_text('{"flags": [{"key": "a", "type": "boolean"}]}')
        assert recorder.changed.wait(10)
        assert client.boolean("a", False) is True
    assert recorder.events[-1][0] is ProviderEvent.ERROR
    assert "variants" in (recorder.events[-1][2] or "")


def test_offline_watch__forked_child__keeps_watching_the_file(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    write_flags(path, [boolean_flag("a", "off")])
    client = FlagyardClient.offline(path, watch=True, poll_interval=0.05)
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: wait for the parent's edit to be picked up by the child's own watcher
        os.close(read_fd)
        import time

        deadline = time.monotonic() + 10
        value = False
        while time.monotonic() < deadline and not value:
            value = client.boolean("a", False)
            time.sleep(0.02)
        os.write(write_fd, b"1" if value else b"0")
        os._exit(0)
    os.close(write_fd)
    write_flags(path, [boolean_flag("a", "on")])
    answer = os.read(read_fd, 1)
    os.waitpid(pid, 0)
    client.close()
    assert answer == b"1"


def test_offline_client__flagd_file_with_a_broken_flag__others_serve_broken_is_parse_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "flags.flagd.json"
    on = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}
    broken = {**on, "targeting": {"if": [{"no_such_operator": []}, "on", "off"]}}
    path.write_text(json.dumps({"flags": {"good": on, "broken": broken}}))
    with FlagyardClient.offline(path) as client:
        assert client.boolean("good", False) is True
        result = client.details("broken", False)
        assert (result.value, result.reason, result.error_code) == (
            False,
            Reason.ERROR,
            ErrorCode.PARSE_ERROR,
        )
    assert any("/flags/broken/targeting/if/0" in r.getMessage() for r in caplog.records)
