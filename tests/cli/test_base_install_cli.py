"""``flagyard`` in the base install (no ``[cli]`` extra): ``eval`` works, other commands name the extra."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from base_install import BASE_FLAGYARD, CLI_ONLY_FLAGYARD

ROOT = Path(__file__).resolve().parents[2]
FLAGS = ROOT / "examples" / "flags.json"


def run(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BASE_FLAGYARD, *args], input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


def test_wrapper__typer_is_really_missing() -> None:
    proc = run("flags", "list")
    assert proc.returncode == 2
    assert "pip install 'flagyard[cli]'" in proc.stderr
    assert "flagyard flags:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_eval__single_flag__same_line_as_with_the_extra() -> None:
    args = ("eval", "-f", str(FLAGS), "--flag", "rate-limit", "--type", "integer", "--default", "5")
    base = run(*args, "--context", '{"account": {"plan": "enterprise"}}')
    assert base.returncode == 0, base.stderr
    assert json.loads(base.stdout) == {
        "value": 500,
        "variant": "raised",
        "reason": "TARGETING_MATCH",
        "error_code": None,
        "error_message": None,
        "flag_metadata": {},
    }


def test_eval__batch__one_line_per_request_and_bad_lines_answered() -> None:
    requests = '{"flag":"rate-limit","type":"integer","default":10}\nnot json\n'
    proc = run("eval", "-f", str(FLAGS), "--batch", stdin=requests)
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [line["value"] for line in lines] == [100, None]
    assert lines[1]["error_code"] == "PARSE_ERROR"


def test_eval__invalid_file__exits_2_naming_the_pointer(tmp_path: Path) -> None:
    bad = tmp_path / "flags.json"
    bad.write_text('{"flags": [{"key": "x", "type": "boolean", "variants": {"on": "yes"}}]}')
    proc = run("eval", "-f", str(bad), "--flag", "x", "--default", "false")
    assert proc.returncode == 2
    assert "/flags/0/variants/on" in proc.stderr


def test_eval__bad_default__usage_error_exit_2() -> None:
    proc = run("eval", "-f", str(FLAGS), "--flag", "rate-limit", "--type", "integer", "--default", "many")
    assert proc.returncode == 2
    assert "--default: 'many' is not valid JSON for type integer" in proc.stderr


def test_cli_extra_without_server__admin_commands_load__admin_key_reset_names_server() -> None:
    def cli_only(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*CLI_ONLY_FLAGYARD, *args], capture_output=True, text=True, timeout=60, check=False
        )

    listed = cli_only("projects", "--help")
    assert listed.returncode == 0, listed.stderr
    assert "list" in listed.stdout
    reset = cli_only("admin-key", "reset")
    assert reset.returncode == 2
    assert "pip install 'flagyard[server]'" in reset.stderr
    assert "Traceback" not in reset.stderr
