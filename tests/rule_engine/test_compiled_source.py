"""What a compiled flag or segment keeps of its definition: compact JSON that rebuilds an equal model."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest

from flagyard.rule_engine import Flag, Segment, compile_flag, compile_segment, load_flagset
from flagyard.rule_engine.compiler import compact

REFERENCE: dict[str, Any] = {
    "key": "reference",
    "type": "boolean",
    "variants": {"on": True, "off": False},
    "off_variant": "off",
    "salt": "f3a9",
    "rules": [
        {
            "id": "beta",
            "clauses": [{"operator": "segment_match", "values": ["beta", "alpha"]}],
            "variant": "on",
        },
        {
            "id": "staff",
            "clauses": [{"attribute": "email", "operator": "matches", "values": [r"@example\.com$"]}],
            "variant": "on",
        },
        {
            "id": "old",
            "clauses": [{"attribute": "age", "operator": "gte", "values": [65], "negate": True}],
            "variant": "off",
        },
    ],
    "default_split": {"variations": [{"variant": "on", "weight": 2500}, {"variant": "off", "weight": 7500}]},
    "prerequisites": [{"flag": "p2", "variant": "on"}, {"flag": "p1", "variant": "on"}],
    "metadata": {"owner": "ü-team", "n": 1.5},
    "version": 7,
}
TARGETING: dict[str, Any] = {
    "key": "t",
    "type": "string",
    "variants": {"a": "A", "b": "B"},
    "default_variant": "b",
    "targeting": {"if": [{"$ref": "gamma"}, "a", {"in": [{"var": "country"}, ["DE"]]}, "a", "b"]},
}
OBJECT: dict[str, Any] = {
    "key": "o",
    "type": "object",
    "variants": {"x": {"list": [1, 2.5, "s", True], "nested": {"k": 10**30}}, "y": {}},
    "default_variant": "x",
}
SEGMENT: dict[str, Any] = {
    "key": "s",
    "included": ["u-1"],
    "excluded": ["u-2"],
    "rules": [{"clauses": [{"operator": "segment_match", "values": ["inner"]}]}],
    "version": 3,
}


@pytest.mark.parametrize("definition", [REFERENCE, TARGETING, OBJECT], ids=["rules", "targeting", "object"])
def test_flag__keeps_compact_json__that_rebuilds_an_equal_model(definition: dict[str, Any]) -> None:
    model = Flag.model_validate(definition)
    compiled = compile_flag(model)
    assert type(compiled.source) is bytes
    assert compiled.native
    rebuilt = compiled.definition()
    assert rebuilt == model
    assert rebuilt is not model
    assert compile_flag(rebuilt).source == compiled.source


def test_flag__references__are_read_off_its_rules_targeting_and_prerequisites() -> None:
    compiled = compile_flag(Flag.model_validate(REFERENCE))
    assert (compiled.segment_keys, compiled.prerequisite_keys) == (("alpha", "beta"), ("p2", "p1"))
    targeting = compile_flag(Flag.model_validate(TARGETING))
    assert (targeting.segment_keys, targeting.prerequisite_keys) == (("gamma",), ())


def test_segment__keeps_compact_json_and_its_references() -> None:
    model = Segment.model_validate(SEGMENT)
    compiled = compile_segment(model)
    assert type(compiled.source) is bytes
    assert compiled.definition() == model
    assert compiled.segment_keys == ("inner",)


def test_definition_holding_null__keeps_the_model() -> None:
    """pydantic writes NaN as null: a definition whose JSON holds a null keeps its model, exactly."""
    model = Flag.model_validate({**OBJECT, "variants": {"x": {"v": math.nan}, "y": None}})
    compiled = compile_flag(model)
    assert compiled.source is model
    assert compact(model) is model
    rebuilt = compiled.definition()
    assert rebuilt is model
    assert math.isnan(rebuilt.variants["x"]["v"])


def test_keep_source_false__keeps_nothing() -> None:
    compiled = compile_flag(Flag.model_validate(REFERENCE), keep_source=False)
    assert (compiled.source, compiled.native, compiled.definition()) == (None, False, None)
    assert (compiled.segment_keys, compiled.prerequisite_keys) == ((), ())
    segment = compile_segment(Segment.model_validate(SEGMENT), keep_source=False)
    assert (segment.source, segment.native, segment.definition()) == (None, False, None)


def test_native_document__compiled_flags__keep_json() -> None:
    flagset = load_flagset({"flags": [TARGETING], "segments": [{"key": "gamma"}]})
    assert type(flagset.flags["t"].source) is bytes
    assert type(flagset.segments["gamma"].source) is bytes


def test_flagd_flag__keeps_its_flag_object_as_json_text() -> None:
    flag = {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "on",
        "metadata": {"é": 1},
    }
    compiled = load_flagset({"flags": {"f": flag}}).flags["f"]
    assert isinstance(compiled.source, str)
    assert json.loads(compiled.source) == flag
    assert (compiled.native, compiled.definition()) == (False, None)


def test_flagd_broken_flag__keeps_its_json_text_too() -> None:
    flag = {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "missing"}
    compiled = load_flagset({"flags": {"f": flag}}, warnings=[]).flags["f"]
    assert isinstance(compiled.source, str)
    assert json.loads(compiled.source) == flag


def test_recurring_strings__are_one_copy_across_flags() -> None:
    """Rule ids, segment keys and metadata recur across flags (and environments); each parse makes its own
    copy, the compiled flags keep one."""
    text = json.dumps({**REFERENCE, "prerequisites": [], "metadata": {"owner": "team-" + "x" * 20}})
    flags = [compile_flag(Flag.model_validate(json.loads(text))) for _ in range(2)]
    context = {"targeting_key": "u", "email": "a@example.com"}
    results = [f.evaluate(context, load_flagset({"flags": []})) for f in flags]
    assert results[0].rule_id == "staff"
    assert results[0].rule_id is results[1].rule_id
    owners = [r.flag_metadata for r in results]
    assert next(iter(owners[0])) is next(iter(owners[1]))
    assert owners[0]["owner"] is owners[1]["owner"]
