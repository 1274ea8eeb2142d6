"""The SDK's offline mode and ``flagyard eval`` load files through the engine, so they inherit its limits:
an over-limit or too-deep file (native or flagd) is refused with a JSON pointer, a normal one loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from flagyard import ConfigurationError, ErrorCode, FlagyardClient, Reason
from flagyard.rule_engine import DefinitionError, DocumentFormatError, limits

FLAGYARD = [sys.executable, "-c", "from flagyard.cli import main; main()"]


def native(variant: Any) -> dict[str, Any]:
    return {
        "flags": [
            {"key": "ok", "type": "boolean", "variants": {"on": True}, "default_variant": "on"},
            {"key": "big", "type": "object", "variants": {"v": variant}, "default_variant": "v"},
        ]
    }


def flagd(variant: Any) -> dict[str, Any]:
    return {
        "flags": {
            "ok": {"state": "ENABLED", "variants": {"on": True}, "defaultVariant": "on"},
            "big": {"state": "ENABLED", "variants": {"v": variant}, "defaultVariant": "v"},
        }
    }


def deep_text(document: dict[str, Any], depth: int) -> str:
    """The document with its "big" variant nested ``depth`` objects deep, written without recursion."""
    return json.dumps(document).replace('"@"', '{"a": ' * depth + "1" + "}" * depth)


HUGE = {"blob": "x" * (limits.MAX_VALUE_BYTES + 1)}
CASES = [
    (native, lambda doc: json.dumps(doc(HUGE)), "/flags/1/variants/v", "MAX_VALUE_BYTES"),
    (flagd, lambda doc: json.dumps(doc(HUGE)), "/flags/big/variants/v", "MAX_VALUE_BYTES"),
    (
        native,
        lambda doc: deep_text(doc("@"), limits.MAX_VALUE_DEPTH + 1),
        "/flags/1/variants/v" + "/a" * limits.MAX_VALUE_DEPTH,
        "MAX_VALUE_DEPTH",
    ),
    (
        flagd,
        lambda doc: deep_text(doc("@"), limits.MAX_VALUE_DEPTH + 1),
        "/flags/big/variants/v" + "/a" * limits.MAX_VALUE_DEPTH,
        "MAX_VALUE_DEPTH",
    ),
]
DEEPER_THAN_JSON = [
    (native, "/flags/1/variants/v" + "/a" * (limits.MAX_JSON_DEPTH - 4)),
    (flagd, "/flags/big/variants/v" + "/a" * (limits.MAX_JSON_DEPTH - 4)),
]


@pytest.mark.parametrize(
    ("document", "text", "where", "limit"), CASES[::2], ids=["native-size", "native-depth"]
)
def test_offline_client__over_limit_native_file__refused_with_pointer(
    tmp_path: Path, document: Any, text: Any, where: str, limit: str
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(text(document))
    with pytest.raises(ConfigurationError) as caught:
        FlagyardClient.offline(path)
    cause = caught.value.__cause__
    assert isinstance(cause, DefinitionError)
    assert [(i.path, limit in i.message) for i in cause.issues] == [(where, True)]
    assert where in str(caught.value)


@pytest.mark.parametrize(
    ("document", "text", "where", "limit"), CASES[1::2], ids=["flagd-size", "flagd-depth"]
)
def test_offline_client__over_limit_flag_in_flagd_file__that_flag_parse_error_others_serve(
    tmp_path: Path, document: Any, text: Any, where: str, limit: str
) -> None:
    """flagd's loading semantics: one broken flag does not refuse the file; the limit still holds for it."""
    path = tmp_path / "flags.json"
    path.write_text(text(document))
    with FlagyardClient.offline(path) as client:
        assert client.details("ok", False).value is True
        big = client.details("big", {"fallback": 1})
        assert (big.value, big.error_code) == ({"fallback": 1}, ErrorCode.PARSE_ERROR)
        warnings = client._resolver.warnings  # type: ignore[attr-defined]
    assert [(w.path, limit in w.message) for w in warnings] == [(where, True)]


@pytest.mark.parametrize(("document", "where"), DEEPER_THAN_JSON, ids=["native", "flagd"])
def test_offline_client__file_deeper_than_any_json__refused_with_pointer(
    tmp_path: Path, document: Any, where: str
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(deep_text(document("@"), 5_000))
    with pytest.raises(ConfigurationError) as caught:
        FlagyardClient.offline(path)
    cause = caught.value.__cause__
    assert isinstance(cause, DocumentFormatError)
    assert cause.path == where


@pytest.mark.parametrize("document", [native, flagd])
def test_offline_client__file_at_the_limits__loads_and_serves(tmp_path: Path, document: Any) -> None:
    path = tmp_path / "flags.json"
    path.write_text(deep_text(document("@"), limits.MAX_VALUE_DEPTH))
    with FlagyardClient.offline(path) as client:
        details = client.details("big", {})
        assert details.reason is Reason.STATIC
        assert client.details("ok", False).value is True


@pytest.mark.parametrize(("document", "text", "where", "limit"), CASES[:3:2], ids=["size", "depth"])
def test_flagyard_eval__over_limit_file__exits_2_naming_the_pointer(
    tmp_path: Path, document: Any, text: Any, where: str, limit: str
) -> None:
    path = tmp_path / "flags.json"
    path.write_text(text(document))
    args = ["eval", "-f", str(path), "--flag", "ok", "--type", "boolean", "--default", "false"]
    proc = subprocess.run([*FLAGYARD, *args], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert where in proc.stderr
    assert limit in proc.stderr
    fine = tmp_path / "fine.json"
    fine.write_text(deep_text(document("@"), limits.MAX_VALUE_DEPTH))
    args[2] = str(fine)
    proc = subprocess.run([*FLAGYARD, *args], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["value"] is True


def test_flagyard_eval__file_nested_past_the_json_depth__exits_2_naming_where(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    deep = "[" * (limits.MAX_JSON_DEPTH + 5) + "]" * (limits.MAX_JSON_DEPTH + 5)
    path.write_text('{"flags": [{"key": "x", "type": "object", "variants": {"v": ' + deep + "}}]}")
    args = ["eval", "-f", str(path), "--flag", "x", "--type", "object", "--default", "{}"]
    proc = subprocess.run([*FLAGYARD, *args], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2
    assert "(at /flags/0/variants/v/0/0" in proc.stderr
