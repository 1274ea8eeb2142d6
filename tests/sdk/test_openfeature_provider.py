"""FlagyardProvider through the OpenFeature API: all five types, reasons, errors, hooks and events."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.event import EventDetails, ProviderEvent
from openfeature.exception import ErrorCode
from openfeature.flag_evaluation import FlagEvaluationDetails, Reason
from openfeature.hook import Hook, HookContext

from flagyard import ConfigurationError, FlagyardProvider

FLAGS: dict[str, Any] = {
    "flags": [
        {
            "key": "bool",
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "default_variant": "off",
            "rules": [
                {
                    "id": "de",
                    "variant": "on",
                    "clauses": [{"attribute": "country", "operator": "eq", "values": ["DE"]}],
                }
            ],
        },
        {"key": "str", "type": "string", "variants": {"a": "alpha"}, "default_variant": "a"},
        {"key": "int", "type": "integer", "variants": {"lo": 10, "hi": 99}, "default_variant": "lo"},
        {"key": "float", "type": "float", "variants": {"x": 0.25}, "default_variant": "x"},
        {"key": "obj", "type": "object", "variants": {"cfg": {"limits": [1, 2]}}, "default_variant": "cfg"},
        {
            "key": "split",
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "default_split": {
                "variations": [{"variant": "on", "weight": 5000}, {"variant": "off", "weight": 5000}]
            },
        },
    ]
}


@pytest.fixture
def flags_file(tmp_path: Path) -> Path:
    path = tmp_path / "flags.json"
    path.write_text(json.dumps(FLAGS))
    return path


@pytest.fixture
def provider(flags_file: Path) -> Iterator[FlagyardProvider]:
    provider = FlagyardProvider(offline_file=flags_file, watch=True)
    api.set_provider_and_wait(provider)
    yield provider
    api.shutdown()
    api.clear_providers()


def test_provider__all_five_types__resolve_through_openfeature(provider: FlagyardProvider) -> None:
    client = api.get_client()
    ctx = EvaluationContext("u-1", {"country": "DE"})
    assert client.get_boolean_value("bool", False, ctx) is True
    assert client.get_string_value("str", "", ctx) == "alpha"
    assert client.get_integer_value("int", 0, ctx) == 10
    assert client.get_float_value("float", 0.0, ctx) == 0.25
    assert client.get_object_value("obj", {}, ctx) == {"limits": [1, 2]}


def test_provider__details__carry_variant_and_reason(provider: FlagyardProvider) -> None:
    client = api.get_client()
    details = client.get_boolean_details("bool", False, EvaluationContext("u-1", {"country": "DE"}))
    assert (details.value, details.variant, details.reason) == (True, "on", Reason.TARGETING_MATCH)
    assert client.get_boolean_details("bool", True, EvaluationContext("u-1")).reason == Reason.DEFAULT
    assert client.get_string_details("str", "").reason == Reason.STATIC


def test_provider__targeting_key__is_used_for_bucketing(provider: FlagyardProvider) -> None:
    client = api.get_client()
    variants = {
        client.get_boolean_details("split", False, EvaluationContext(f"user-{i}")).variant for i in range(200)
    }
    assert variants == {"on", "off"}
    missing = client.get_boolean_details("split", False, EvaluationContext())
    assert missing.error_code == ErrorCode.TARGETING_KEY_MISSING


@pytest.mark.parametrize(
    ("call", "code"),
    [
        (lambda c: c.get_boolean_details("nope", True), ErrorCode.FLAG_NOT_FOUND),
        (lambda c: c.get_string_details("int", "d"), ErrorCode.TYPE_MISMATCH),
    ],
)
def test_provider__failure__default_value_with_openfeature_error_code(
    provider: FlagyardProvider, call: Any, code: ErrorCode
) -> None:
    details = call(api.get_client())
    assert details.reason == Reason.ERROR
    assert details.error_code == code
    assert details.value in (True, "d")


def test_provider__async_resolvers__answer_what_the_sync_ones_do(provider: FlagyardProvider) -> None:
    """The native ``resolve_*_details_async`` (in process for offline and local modes), directly and
    through OpenFeature's async client, give the sync resolvers' details, errors included."""
    ctx = EvaluationContext("u-1", {"country": "DE"})
    calls = [
        ("boolean", "bool", False),
        ("string", "str", ""),
        ("integer", "int", 0),
        ("float", "float", 0.0),
        ("object", "obj", {}),
        ("boolean", "nope", True),
        ("string", "int", "d"),
    ]

    async def run() -> list[Any]:
        client = api.get_client()
        out = []
        for kind, key, default in calls:
            direct = await getattr(provider, f"resolve_{kind}_details_async")(key, default, ctx)
            through = await getattr(client, f"get_{kind}_details_async")(key, default, ctx)
            out.append((direct, through))
        return out

    client = api.get_client()
    for (kind, key, default), (direct, through) in zip(calls, asyncio.run(run()), strict=True):
        assert direct == getattr(provider, f"resolve_{kind}_details")(key, default, ctx)
        assert through == getattr(client, f"get_{kind}_details")(key, default, ctx)
    assert direct.error_code == ErrorCode.TYPE_MISMATCH


def test_provider__details__metadata_is_a_fresh_dict_each_call(flags_file: Path) -> None:
    """An app mutating the metadata it was handed cannot change what the next evaluation reports."""
    document = {"flags": [{**FLAGS["flags"][1], "metadata": {"owner": "web"}}]}
    flags_file.write_text(json.dumps(document))
    provider = FlagyardProvider(offline_file=flags_file)
    first = provider.resolve_string_details("str", "")
    first.flag_metadata["owner"] = "mutated"  # type: ignore[index]
    assert provider.resolve_string_details("str", "").flag_metadata == {"owner": "web"}
    assert provider.resolve_string_details("str", "", EvaluationContext(None, {"a": 1})).variant == "a"


class RecordingHook(Hook):
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def after(self, hook_context: HookContext, details: FlagEvaluationDetails[Any], hints: Any) -> None:  # type: ignore[override]
        self.seen.append((hook_context.flag_key, details.value))


def test_provider__client_hooks__run_around_evaluations(provider: FlagyardProvider) -> None:
    hook = RecordingHook()
    client = api.get_client()
    client.add_hooks([hook])
    client.get_integer_value("int", 0)
    assert hook.seen == [("int", 10)]


def test_provider__file_changes__emit_configuration_changed_with_flag_keys(
    provider: FlagyardProvider, flags_file: Path
) -> None:
    seen: list[EventDetails] = []
    changed = threading.Event()

    def on_change(details: EventDetails) -> None:
        seen.append(details)
        changed.set()

    api.add_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)
    try:
        edited = json.loads(json.dumps(FLAGS))
        edited["flags"][2]["default_variant"] = "hi"
        flags_file.write_text(json.dumps(edited))
        assert changed.wait(10)
        assert seen[0].flags_changed == ["int"]
        assert api.get_client().get_integer_value("int", 0) == 99
    finally:
        api.remove_handler(ProviderEvent.PROVIDER_CONFIGURATION_CHANGED, on_change)


def test_provider__no_source__is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        FlagyardProvider()
