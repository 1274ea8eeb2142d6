"""README's code blocks, run: a new user copies them first, so each must work as written.

Blocks that run here without a full stack are run (the flags file, ``flagyard eval``, the admin CLI session
against a real control plane, the OpenFeature snippet against a real data plane); the other Python blocks
need ``flagyard up`` with keys it prints and are compiled only.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cli"))
sys.path.insert(0, str(ROOT / "tests" / "sdk"))
FLAGYARD = Path(sys.executable).with_name("flagyard")
README = (ROOT / "README.md").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Block:
    lang: str
    text: str
    line: int


def blocks(lang: str | None = None) -> list[Block]:
    found = [
        Block(m.group(1), m.group(2), README.count("\n", 0, m.start()) + 1)
        for m in re.finditer(r"^```(\w*)\n(.*?)^```$", README, re.M | re.S)
    ]
    return [b for b in found if lang is None or b.lang == lang]


def only(lang: str, marker: str) -> Block:
    matching = [b for b in blocks(lang) if marker in b.text]
    assert len(matching) == 1, f"expected one {lang} block with {marker!r}, found {len(matching)}"
    return matching[0]


def console_steps(block: Block) -> list[tuple[str, list[str]]]:
    """``$ command`` lines (``\\`` continues them) with the output lines shown after each."""
    steps: list[tuple[str, list[str]]] = []
    lines = block.text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        assert line.startswith("$ "), f"README line {block.line + 1 + i}: output before any command"
        command = line[2:]
        while command.endswith("\\"):
            i += 1
            command = command[:-1] + " " + lines[i].strip()
        i += 1
        output: list[str] = []
        while i < len(lines) and not lines[i].startswith("$ "):
            output.append(lines[i])
            i += 1
        steps.append((command, output))
    return steps


def run_expressions(code: str, namespace: dict[str, Any]) -> list[Any]:
    """Run a snippet; the value of each top-level expression statement, in order."""
    tree = ast.parse(code)
    values: list[Any] = []
    namespace["__values__"] = values
    for index, node in enumerate(tree.body):
        if isinstance(node, ast.Expr):
            tree.body[index] = ast.parse(f"__values__.append({ast.unparse(node.value)})").body[0]
    exec(compile(tree, "README.md", "exec"), namespace)
    return values


def test_every_python_block__compiles() -> None:
    python_blocks = blocks("python")
    assert len(python_blocks) >= 3
    for block in python_blocks:
        compile(block.text, f"README.md:{block.line}", "exec")


def test_flags_file_snippet__is_the_start_of_examples_flags_json() -> None:
    snippet = json.loads(only("json", '"segments"').text)
    example = json.loads((ROOT / "examples" / "flags.json").read_text(encoding="utf-8"))
    assert snippet["metadata"] == example["metadata"]
    for part in ("segments", "flags"):
        assert snippet[part], part
        assert snippet[part] == example[part][: len(snippet[part])], part


@pytest.mark.parametrize("install", ["full", "base"])
def test_flagyard_eval_lines__output_equals_the_readme(install: str) -> None:
    """As written, and with the base install (no Typer, Rich, httpx: ``pip install flagyard``)."""
    from base_install import BASE_FLAGYARD

    steps = console_steps(only("console", "flagyard eval"))
    assert len(steps) == 2
    for command, shown in steps:
        if install == "base":
            command = command.replace(".venv/bin/flagyard", shlex.join(BASE_FLAGYARD))
        run = subprocess.run(
            ["bash", "-c", command], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
        )
        assert run.returncode == 0, (command, run.stderr)
        assert run.stdout.splitlines() == shown, command


def test_rules_yaml__is_a_valid_set_rules_body() -> None:
    from flagyard.control_plane.schemas import EnvConfigPatch

    block = only("yaml", "# rules.yaml")
    config = _read_yaml(block.text)
    assert config["off_variant"] == "off"
    assert config["rules"][0]["variant"] == "on"
    EnvConfigPatch.model_validate(config)


def _read_yaml(text: str) -> dict[str, Any]:
    import yaml  # type: ignore[import-untyped]

    loaded = yaml.safe_load(text)
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def admin_url() -> Iterator[str]:
    import admin_cli_stack

    with ExitStack() as stack:
        db_url = stack.enter_context(admin_cli_stack.fresh_database())
        saved, admin_cli_stack.REDIS_DB = admin_cli_stack.REDIS_DB, 8  # read once, when the plane starts
        try:
            cp = stack.enter_context(admin_cli_stack.control_plane(db_url))
        finally:
            admin_cli_stack.REDIS_DB = saved
        yield cp.url


def test_admin_cli_session__runs_as_written_against_the_demo_project(admin_url: str, tmp_path: Path) -> None:
    """The demo project as ``flagyard up`` seeds it, then the README's session line by line, as a script."""
    from admin_cli_stack import ADMIN_KEY

    (tmp_path / "rules.yaml").write_text(only("yaml", "# rules.yaml").text, encoding="utf-8")
    env = {**os.environ, "FLAGYARD_URL": admin_url, "FLAGYARD_API_KEY": ADMIN_KEY}
    env.pop("FLAGYARD_PROJECT", None)
    for setup in (["projects", "create", "demo"], ["envs", "create", "development", "-p", "demo"]):
        subprocess.run([str(FLAGYARD), *setup], env=env, check=True, capture_output=True, timeout=60)
    subprocess.run(
        [str(FLAGYARD), "envs", "create", "production", "-p", "demo"],
        env=env,
        check=True,
        capture_output=True,
        timeout=60,
    )
    steps = console_steps(only("console", "flagyard envs create staging"))
    assert len(steps) >= 10
    for command, _shown in steps:
        command = command.replace("fy_admin_…", shlex.quote(ADMIN_KEY)).replace(
            ".venv/bin/flagyard", str(FLAGYARD)
        )
        if command.startswith("export "):
            for assignment in shlex.split(command.split("#")[0])[1:]:
                name, _, value = assignment.partition("=")
                env[name] = value
            continue
        run = subprocess.run(
            ["bash", "-c", command],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert run.returncode == 0, (command, run.stdout, run.stderr)
    exported = json.loads((tmp_path / "flags.json").read_text(encoding="utf-8"))
    assert [flag["key"] for flag in exported["flags"]] == ["new-checkout"]


def test_openfeature_snippet__evaluates_against_a_real_data_plane() -> None:
    """With ``set_provider`` the first evaluation races the provider's start; the README waits for it."""
    import sdk_helpers
    from openfeature import api

    block = only("python", "FlagyardProvider(target=")
    assert "api.set_provider(" not in block.text
    environments = sdk_helpers.seeded_env()
    environment = next(environments)
    plane = sdk_helpers.ThreadPlane(environment.settings()).start()
    try:
        code = (
            block.text.replace("localhost:50051", plane.target)
            .replace('sdk_key="…"', f"sdk_key={sdk_helpers.SDK_KEY!r}")
            .replace('"examples/flags.json"', repr(str(ROOT / "examples" / "flags.json")))
        )
        values = run_expressions(code, {})
        assert values[1] is True  # new-checkout for a user in Germany: the beta segment
    finally:
        api.shutdown()
        plane.stop()
        next(environments, None)


def test_open_protocols_snippet__stock_flagd_and_ofrep_providers_evaluate_against_a_real_data_plane() -> None:
    """The Python block of "Any language": the unmodified PyPI providers, flagd RPC mode and OFREP."""
    import sdk_helpers
    from openfeature import api

    block = only("python", "OFREPProvider")
    environments = sdk_helpers.seeded_env()
    environment = next(environments)
    plane = sdk_helpers.ThreadPlane(environment.settings()).start()
    assert plane.plane is not None
    try:
        code = (
            block.text.replace("port=8013", f"port={plane.plane.flagd_ports['rpc']}")
            .replace("http://127.0.0.1:8016", f"http://127.0.0.1:{plane.plane.ofrep_port}")
            .replace('"fy_sdk_…"', repr(sdk_helpers.SDK_KEY))
        )
        assert code.count(repr(sdk_helpers.SDK_KEY)) == 2
        values = run_expressions(code, {})
        assert (values[1], values[3]) == (True, True)  # new-checkout for a user in Germany, both protocols
    finally:
        api.shutdown()
        plane.stop()
        next(environments, None)


def test_tour_banner__names_the_schema_head_a_fresh_database_migrates_to() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    shown = re.search(r"database schema at (\S+) \(migrated from nothing\)", README)
    assert shown is not None
    head = ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_current_head()
    assert shown.group(1) == head


def test_explain_snippet__prints_what_its_comments_say() -> None:
    """The offline ``client.explain`` block runs as written; each ``print`` line's comment is its output."""
    block = only("python", "client.explain(")
    expected = [line.split("  # ", 1)[1] for line in block.text.splitlines() if line.startswith("print(")]
    assert len(expected) >= 3
    run = subprocess.run(
        [sys.executable, "-c", block.text], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines() == expected
