"""ResolveAll's fast loop answers byte for byte what encoding each flag's ``FlagSet.evaluate`` result on its
own gives: every flag type, splits, rules, a disabled flag, a value int64 cannot carry, a flag that raises,
missing keys, repeated keys, for many contexts and with a shared encoder (cached entries reused)."""

from __future__ import annotations

from typing import Any

from flagyard.data_plane.convert import BulkEncoder, flag_resolution, resolve_all
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.rule_engine import FlagSet, compile_flag, compile_segment
from flagyard.rule_engine.model import Flag, Segment


def _flags() -> list[dict[str, Any]]:
    split = {"variations": [{"variant": "a", "weight": 5000}, {"variant": "b", "weight": 5000}]}
    rule = {"id": "de", "clauses": [{"attribute": "country", "operator": "in", "values": ["DE"]}]}
    return [
        {
            "key": "bool",
            "type": "boolean",
            "variants": {"a": True, "b": False},
            "default_split": split,
            "salt": "s1",
            "rules": [{**rule, "variant": "b"}],
            "metadata": {"owner": "t", "n": 2},
        },
        {"key": "str", "type": "string", "variants": {"a": "x", "b": "y"}, "default_split": split},
        {"key": "int", "type": "integer", "variants": {"a": 1, "b": 2**70}, "default_split": split},
        {
            "key": "float",
            "type": "float",
            "variants": {"a": 0.5, "b": -1.25},
            "default_variant": "a",
            "rules": [
                {"id": "beta", "clauses": [{"operator": "segment_match", "values": ["beta"]}], "variant": "b"}
            ],
        },
        {
            "key": "obj",
            "type": "object",
            "variants": {"a": {"k": [1, "v", None]}, "b": [True]},
            "default_split": split,
        },
        {
            "key": "off",
            "type": "boolean",
            "variants": {"a": True, "b": False},
            "enabled": False,
            "off_variant": "b",
            "default_variant": "a",
        },
        {
            "key": "age",
            "type": "boolean",
            "variants": {"a": True, "b": False},
            "default_variant": "b",
            "rules": [
                {
                    "id": "old",
                    "clauses": [{"attribute": "age", "operator": "gte", "values": [65]}],
                    "variant": "a",
                }
            ],
        },
    ]


def _flagset() -> FlagSet:
    beta = Segment.model_validate({"key": "beta", "included": ["u-3", "u-7"]})
    return FlagSet([compile_flag(Flag.model_validate(f)) for f in _flags()], [compile_segment(beta)])


def _reference(flagset: FlagSet, context: dict[str, Any], keys: list[str], revision: int) -> bytes:
    parts = []
    for key in dict.fromkeys(keys or list(flagset.flags)):
        flag = flagset.flags.get(key)
        result = flagset.evaluate(key, None, context)
        message = flag_resolution(result, None if flag is None else flag.type)
        parts.append(pb.ResolveAllResponse(flags={key: message}).SerializeToString())
    return b"".join(parts) + pb.ResolveAllResponse(revision=revision).SerializeToString()


def test_resolve_all__many_contexts__same_bytes_as_each_flag_encoded_alone() -> None:
    flagset = _flagset()
    encoder = BulkEncoder(max_entries=5)  # small: clears happen mid-run
    contexts = [
        {"targeting_key": f"u-{i}", "country": ("DE", "FR")[i % 2], "age": 50 + i % 30} for i in range(300)
    ]
    key_lists: list[list[str]] = [[], ["str", "missing", "str", "obj"], ["int", "bool"]]
    seen: set[bytes] = set()
    for i, context in enumerate(contexts):
        keys = key_lists[i % 3]
        revision = 7 + i % 4
        answer = resolve_all(flagset, context, keys, revision, encoder)
        assert answer == _reference(flagset, context, keys, revision)
        seen.add(answer)
        parsed = pb.ResolveAllResponse.FromString(answer)
        assert parsed.revision == revision
        assert set(parsed.flags) == set(keys or flagset.flags)
    assert len(seen) > 20  # the contexts do give different answers
    int_flag = [pb.ResolveAllResponse.FromString(a).flags.get("int") for a in seen]
    assert any(f is not None and f.error_code == pb.ERROR_CODE_PARSE_ERROR for f in int_flag)


def test_resolve_all__a_flag_that_raises__error_for_it_the_same_as_a_single_evaluation() -> None:
    flagset = _flagset()

    class Boom:
        type = flagset.flags["str"].type

        def evaluate(self, context: dict[str, Any], flagset: FlagSet) -> Any:
            raise RuntimeError("boom")

    flagset.flags["str"] = Boom()  # type: ignore[assignment]
    answer = pb.ResolveAllResponse.FromString(
        resolve_all(flagset, {"targeting_key": "u"}, [], 1, BulkEncoder())
    )
    assert answer.flags["str"].error_code == pb.ERROR_CODE_GENERAL
    assert answer.flags["str"].error_message == "flag 'str': RuntimeError: boom"
    assert answer.flags["bool"].variant in ("a", "b")
