"""Which flags a segment change reaches (the local SDK's CONFIGURATION_CHANGED flag keys)."""

from __future__ import annotations

from flagyard.proto.gen.flagyard.v1 import flagyard_pb2 as pb
from flagyard.rule_engine import load_flagset
from flagyard.sdk._sync_state import affected_flags

BOOL = {"on": True, "off": False}


def test_affected_flags__segment_referred_to_by_targeting__the_flag_and_its_dependents() -> None:
    flagset = load_flagset(
        {
            "flags": [
                {
                    "key": "jl",
                    "type": "boolean",
                    "variants": BOOL,
                    "targeting": {"if": [{"$ref": "beta"}, "on", None]},
                },
                {
                    "key": "gated",
                    "type": "boolean",
                    "variants": BOOL,
                    "prerequisites": [{"flag": "jl", "variant": "on"}],
                },
                {"key": "other", "type": "boolean", "variants": BOOL, "targeting": {"var": "x"}},
            ],
            "segments": [{"key": "beta", "included": ["u1"]}],
        }
    )
    assert affected_flags(flagset, pb.DEFINITION_KIND_SEGMENT, "beta") == ["gated", "jl"]
