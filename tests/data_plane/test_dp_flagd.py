"""The pure parts of the data plane's flagd protocols (data_plane/flagd.py): selectors and credentials, the
changed-flag diff EventStream sends, and the export that leaves out what flagd cannot express. The
protocols themselves are tested with the stock provider against a real stack in tests/protocols/."""

from __future__ import annotations

from typing import Any

import pytest

from flagyard.data_plane.exceptions import InvalidRequestError, UnauthenticatedError
from flagyard.data_plane.flagd import (
    MAX_SELECTOR_BYTES,
    Selector,
    changed_flags,
    credential,
    export_environment,
    parse_selector,
)
from flagyard.rule_engine import Document, Flag, Segment


def test_parse_selector__key_and_flag_set__read_in_any_order() -> None:
    assert parse_selector("") == Selector()
    assert parse_selector("sdkKey=k1") == Selector("k1", None)
    assert parse_selector(" flagSetId=shop/prod , sdkKey=k1 ") == Selector("k1", "shop/prod")


@pytest.mark.parametrize(
    "raw", ["k1", "source=file.json", "sdkKey=", "sdkKey=a,sdkKey=b", "flagSetId=" + "x" * MAX_SELECTOR_BYTES]
)
def test_parse_selector__anything_else_or_too_long__invalid_argument(raw: str) -> None:
    with pytest.raises(InvalidRequestError):
        parse_selector(raw)


def test_credential__authorization_header_wins_over_the_selector_key() -> None:
    metadata = [("authorization", "Bearer from-header"), ("flagd-selector", "sdkKey=from-selector")]
    assert credential(metadata, selector_keys=True)[0] == "from-header"
    assert credential([("flagd-selector", "sdkKey=k")], selector_keys=True)[0] == "k"
    assert credential([], "sdkKey=from-field", selector_keys=True)[0] == "from-field"


def test_credential__no_key_or_selector_keys_off__unauthenticated_saying_how() -> None:
    with pytest.raises(UnauthenticatedError, match="authorization: Bearer <sdk key>"):
        credential([("flagd-selector", "flagSetId=shop/prod")], selector_keys=True)
    with pytest.raises(UnauthenticatedError, match="FLAGYARD_FLAGD_SELECTOR_KEYS=false"):
        credential([("flagd-selector", "sdkKey=k")], selector_keys=False)


def test_changed_flags__writes_updates_deletes__and_every_flag_when_a_segment_changed() -> None:
    before, after = {"a": 1, "b": 1, "c": 1}, {"a": 1, "b": 2, "d": 1}
    assert changed_flags(before, after, segments_changed=False) == {
        "b": "update",
        "d": "write",
        "c": "delete",
    }
    assert changed_flags(before, after, segments_changed=True) == {
        "a": "update",
        "b": "update",
        "d": "write",
        "c": "delete",
    }


def _flag(key: str, **fields: Any) -> Flag:
    return Flag.model_validate(
        {"key": key, "type": "boolean", "variants": {"on": True, "off": False}, "default_variant": "off"}
        | fields
    )


def test_export_environment__flags_flagd_cannot_express__left_out_with_why_the_rest_exported() -> None:
    array = Flag.model_validate(
        {"key": "arr", "type": "object", "variants": {"list": [1], "map": {"a": 1}}, "default_variant": "map"}
    )
    document = Document(
        flags=[
            _flag("ok"),
            array,
            _flag(
                "seg",
                rules=[
                    {"id": "r", "clauses": [{"operator": "segment_match", "values": ["s"]}], "variant": "on"}
                ],
            ),
        ],
        segments=[Segment(key="s", included=["u1"])],
    )

    exported, skipped = export_environment(document)

    assert sorted(exported["flags"]) == ["ok", "seg"]
    assert "s" in exported["$evaluators"]
    assert [key for key, _ in skipped] == ["arr"]
    assert "JSON objects" in skipped[0][1]
