"""ResolveAll answers a flag whose segments form a cycle (held mid-change) with ERROR, as a single
evaluation does, and still answers every other flag."""

from __future__ import annotations

from flagyard.data_plane.convert import BulkEncoder, resolve_all
from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.rule_engine import FlagSet, compile_flag, compile_segment
from flagyard.rule_engine.model import Flag, Segment


def _flag(key: str, segment: str) -> Flag:
    rule = {"id": "r", "clauses": [{"operator": "segment_match", "values": [segment]}], "variant": "on"}
    return Flag.model_validate(
        {
            "key": key,
            "type": "boolean",
            "variants": {"on": True, "off": False},
            "rules": [rule],
            "default_variant": "off",
        }
    )


def _segment(key: str, refers_to: str | None = None) -> Segment:
    rules = [{"clauses": [{"operator": "segment_match", "values": [refers_to]}]}] if refers_to else []
    return Segment.model_validate(
        {"key": key, "included": ["u"] if refers_to is None else [], "rules": rules}
    )


def test_resolve_all__segment_cycle__that_flag_is_an_error_and_the_others_answer() -> None:
    flagset = FlagSet(
        [compile_flag(_flag("cyclic", "s0")), compile_flag(_flag("fine", "members"))],
        [
            compile_segment(_segment("s0", "s1")),
            compile_segment(_segment("s1", "s0")),
            compile_segment(_segment("members")),
        ],
    )

    response = pb.ResolveAllResponse.FromString(
        resolve_all(flagset, {"targeting_key": "u"}, [], 3, BulkEncoder())
    )

    cyclic, fine = response.flags["cyclic"], response.flags["fine"]
    assert cyclic.reason == pb.REASON_ERROR
    assert cyclic.error_code == pb.ERROR_CODE_GENERAL
    assert cyclic.error_message == "flag 'cyclic': segment cycle: s0 -> s1 -> s0"
    assert fine.reason == pb.REASON_TARGETING_MATCH
    assert fine.bool_value is True
