"""``parse_json`` refuses what a plane could not write back (too deep, duplicate keys, lone surrogates)
with the JSON pointer of the place, and never lets a RecursionError out."""

from __future__ import annotations

import json

import pytest

from flagyard.rule_engine import DocumentFormatError, limits, load_flagset, parse_json

DEPTH = limits.MAX_JSON_DEPTH


def nested(depth: int) -> str:
    """``depth`` arrays nested inside one another."""
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("as_bytes", [False, True])
def test_depth__at_the_limit__parses_and_one_more__refused_with_pointer(as_bytes: bool) -> None:
    ok = '{"a": ' + nested(DEPTH - 1) + "}"
    assert parse_json(ok.encode() if as_bytes else ok)["a"] is not None
    deep = '{"k": "[[[[", "a": [0, {"b": ' + nested(DEPTH - 2) + "}]}"
    with pytest.raises(DocumentFormatError) as caught:
        parse_json(deep.encode() if as_bytes else deep)
    assert caught.value.path == "/a/1/b" + "/0" * (DEPTH - 3)  # the container at depth DEPTH + 1
    assert f"deeper than {DEPTH}" in str(caught.value)


@pytest.mark.parametrize("depth", [1_000, 100_000])
def test_depth__far_past_python_recursion__refused_without_recursion_error(depth: int) -> None:
    with pytest.raises(DocumentFormatError) as caught:
        parse_json(nested(depth))
    assert caught.value.path == "/0" * DEPTH


def test_brackets_inside_strings__do_not_count_as_depth() -> None:
    text = json.dumps({"s": "[" * 10_000, "t": '\\"{' * 500})
    assert parse_json(text)["s"] == "[" * 10_000


def test_duplicate_key__refused_with_the_pointer_of_the_repeated_key() -> None:
    with pytest.raises(DocumentFormatError) as caught:
        parse_json('{"flags": [{"key": "f"}, {"variants": {"on": true, "off": 1, "on": false}}]}')
    assert caught.value.path == "/flags/1/variants/on"
    assert "duplicate key 'on'" in str(caught.value)


def test_duplicate_key__escaped_names__pointer_is_escaped() -> None:
    with pytest.raises(DocumentFormatError) as caught:
        parse_json('{"a/b": {"x": [{"q~": 1, "q~": 2}]}}')
    assert caught.value.path == "/a~1b/x/0/q~0"


def test_lone_surrogate__refused_with_pointer_and_a_pair__accepted() -> None:
    with pytest.raises(DocumentFormatError) as caught:
        parse_json('{"m": {"note": "x\\ud800"}}')
    assert caught.value.path == "/m/note"
    assert parse_json('{"m": "\\ud83d\\ude00"}') == {"m": "\U0001f600"}


def test_not_json__still_a_format_error() -> None:
    with pytest.raises(DocumentFormatError, match="not valid JSON"):
        parse_json('{"a": ')
    with pytest.raises(DocumentFormatError, match="not valid JSON"):
        parse_json(b'{"a": "\xff"}')


def test_load_flagset__too_deep_text__refused_before_validation() -> None:
    text = '{"flags": [{"key": "f", "type": "object", "variants": {"v": ' + nested(DEPTH) + "}}]}"
    with pytest.raises(DocumentFormatError) as caught:
        load_flagset(text)
    assert caught.value.path.startswith("/flags/0/variants/v/0/0")
