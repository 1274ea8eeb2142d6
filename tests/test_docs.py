"""The docs and the Taskfile stay true: every setting is in the README, the Taskfile parses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from flagyard.cli.up_setup import UpSettings
from flagyard.control_plane.settings import Settings
from flagyard.data_plane.settings import DataPlaneSettings
from flagyard.syncer.settings import SyncerSettings

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize(
    "settings", [Settings, SyncerSettings, DataPlaneSettings, UpSettings], ids=lambda s: s.__name__
)
def test_readme__configuration_table__documents_every_setting(settings: type[BaseSettings]) -> None:
    documented = set(re.findall(r"`(FLAGYARD_[A-Z0-9_]+)`", README))
    missing = {f"FLAGYARD_{name.upper()}" for name in settings.model_fields} - documented
    assert missing == set()


def test_taskfile__parsed_by_task__lists_the_documented_targets() -> None:
    task = Path(sys.executable).parent / "task"
    env = {**os.environ, "NO_COLOR": "1"}
    env.pop("FORCE_COLOR", None)
    proc = subprocess.run(
        [str(task), "--list"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    listing = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout)
    for target in (
        "test",
        "lint",
        "typecheck",
        "bench",
        "proto",
        "compose:validate",
        "up",
        "k8s:validate",
        "loadtest",
    ):
        assert f"* {target}:" in listing


def _doc_number(text: str) -> int:
    units = {"KiB": 1024, "MiB": 1024 * 1024}
    number, _, unit = text.replace(",", "").partition(" ")
    return int(number) * units.get(unit, 1)


def test_architecture__limits_table__equals_rule_engine_limits() -> None:
    from flagyard.rule_engine import limits

    text = (ROOT / "ARCHITECTURE.md").read_text()
    documented = {
        name: _doc_number(value)
        for name, value in re.findall(r"^\| `([A-Z_]+)` \| ([0-9,]+(?: [KM]iB)?) \|", text, re.M)
    }
    declared = {
        name: value
        for name, value in vars(limits).items()
        if name.isupper() and name not in {"KiB", "MiB"} and isinstance(value, int)
    }
    assert documented == declared


def test_limits__largest_definition_plus_a_chunk__fits_one_grpc_message() -> None:
    from flagyard.rule_engine import limits

    largest = max(limits.MAX_FLAG_BYTES, limits.MAX_SEGMENT_BYTES)
    assert limits.SYNC_CHUNK_BYTES + largest <= limits.MAX_GRPC_MESSAGE_BYTES
