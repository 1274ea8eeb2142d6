"""``flagyard eval`` run as a real process against the example files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ROOT / "examples" / "flags.json"
FLAGYARD = [sys.executable, "-c", "from flagyard.cli import main; main()"]


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*FLAGYARD, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def lines(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines()]


def test_eval__single_flag__prints_one_result_line() -> None:
    context = '{"targeting_key": "u", "account": {"plan": "enterprise"}}'
    proc = run(
        "eval",
        "-f",
        str(FLAGS),
        "--flag",
        "rate-limit",
        "--type",
        "integer",
        "--default",
        "5",
        "--context",
        context,
    )
    assert proc.returncode == 0, proc.stderr
    expected = {"value": 500, "variant": "raised", "reason": "TARGETING_MATCH"}
    assert lines(proc.stdout) == [
        {**expected, "error_code": None, "error_message": None, "flag_metadata": {}}
    ]


def test_eval__string_default__is_taken_as_raw_text() -> None:
    proc = run("eval", "-f", str(FLAGS), "--flag", "missing", "--type", "string", "--default", "plain text")
    assert lines(proc.stdout)[0]["value"] == "plain text"
    assert lines(proc.stdout)[0]["error_code"] == "FLAG_NOT_FOUND"


def test_eval__batch_with_bad_lines__answers_every_line_in_order() -> None:
    requests = [
        '{"flag": "new-checkout", "type": "boolean", "default": false, "context": {"targeting_key": "u-vip"}}',
        "not json at all",
        '{"flag": "new-checkout", "type": "boolean", "default": "no", "context": {}}',
        '{"flag": "new-checkout", "type": "number", "default": 1}',
        '{"flag": "new-checkout", "type": "boolean", "default": false, "context": [1]}',
        '{"flag": "new-checkout", "type": "boolean", "default": false, "extra": 1}',
        '["an", "array"]',
        '{"flag": "rate-limit", "type": "float", "default": 1, "context": {"account": {"plan": "enterprise"}}}',
    ]
    proc = run("eval", "-f", str(FLAGS), "--batch", stdin="\n".join(requests) + "\n")
    assert proc.returncode == 0, proc.stderr
    out = lines(proc.stdout)
    assert len(out) == len(requests)
    assert (out[0]["value"], out[0]["reason"]) == (True, "TARGETING_MATCH")
    codes = ["PARSE_ERROR", "TYPE_MISMATCH", "GENERAL", "INVALID_CONTEXT", "GENERAL", "PARSE_ERROR"]
    assert [o["error_code"] for o in out[1:7]] == codes
    assert out[2]["value"] == "no"
    assert (out[7]["value"], out[7]["variant"]) == (500.0, "raised")


def test_eval__invalid_flags_file__exits_2_listing_problems(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"flags": [{"key": "f", "type": "boolean", "variants": {"on": 1}}]}))
    proc = run("eval", "-f", str(bad), "--flag", "f", "--type", "boolean", "--default", "false")
    assert proc.returncode == 2
    assert "/flags/0/variants/on" in proc.stderr


def test_eval__example_requests__match_the_documented_outcomes() -> None:
    proc = run("eval", "-f", str(FLAGS), "--batch", stdin=(ROOT / "examples" / "requests.jsonl").read_text())
    out = lines(proc.stdout)
    reasons = ["TARGETING_MATCH", "SPLIT", "ERROR", "TARGETING_MATCH", "TARGETING_MATCH", "DISABLED"]
    assert [o["reason"] for o in out] == [*reasons, "ERROR", "ERROR", "ERROR"]


def test_eval__flagd_file_with_a_broken_flag__others_evaluate_and_warnings_name_pointers(
    tmp_path: Path,
) -> None:
    on = {"state": "ENABLED", "variants": {"on": True, "off": False}, "defaultVariant": "on"}
    broken = {**on, "targeting": {"fractional": [{"var": "k"}, ["on", -1], ["off"], ["x", "heavy"]]}}
    flags = tmp_path / "flags.flagd.json"
    flags.write_text(json.dumps({"flags": {"good": on, "broken": broken}}))
    proc = run("eval", "-f", str(flags), "--flag", "good", "--type", "boolean", "--default", "false")
    assert proc.returncode == 0, proc.stderr
    assert lines(proc.stdout)[0]["value"] is True
    assert "warning: /flags/broken/targeting/fractional/1/1" in proc.stderr
    assert "warning: /flags/broken/targeting/fractional/3/1" in proc.stderr
    proc = run("eval", "-f", str(flags), "--flag", "broken", "--type", "boolean", "--default", "false")
    assert lines(proc.stdout)[0]["error_code"] == "PARSE_ERROR"
