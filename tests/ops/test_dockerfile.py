"""The Dockerfile, read as data (no Docker engine here): multi-stage, small, non-root, and its commands and
copied files exist."""

from __future__ import annotations

import fnmatch
import importlib.metadata
import re
import tomllib

import pytest
from ops_helpers import ROOT, k8s_resource

import flagyard.control_plane.main

Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        pending += " " + stripped[:-1] if stripped.endswith("\\") else " " + stripped
        if not stripped.endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    result = []
    for text in logical:
        keyword, _, args = text.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def stages() -> list[list[Instruction]]:
    found: list[list[Instruction]] = []
    for keyword, args in instructions():
        if keyword == "FROM":
            found.append([])
        if found:
            found[-1].append((keyword, args))
    return found


def final_stage() -> list[Instruction]:
    return stages()[-1]


def test_dockerfile__final_stage__runs_as_a_numeric_non_root_user() -> None:
    users = [args for keyword, args in final_stage() if keyword == "USER"]
    assert users, "the final stage sets no USER (it would run as root)"
    user, _, group = users[-1].partition(":")
    assert user.isdigit()
    assert user != "0"
    assert group != "0"
    for name in ("flagyard-control-plane", "flagyard-syncer", "flagyard-data-plane"):
        pod = k8s_resource("Deployment", name)["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == int(user)


def test_dockerfile__stages__builder_then_slim_python_runtime() -> None:
    args = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^ARG (\w+)=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    }
    froms = [args_ for keyword, args_ in instructions() if keyword == "FROM"]
    assert len(froms) >= 2
    base = froms[-1].split()[0]
    base = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], base)
    assert base == "python:3.11-slim"
    copies_from = [a for k, a in final_stage() if k == "COPY" and a.startswith("--from=")]
    assert any("/opt/venv" in a for a in copies_from)


def test_dockerfile__final_stage__installs_no_build_tools() -> None:
    runs = " ".join(args for keyword, args in final_stage() if keyword == "RUN")
    for tool in ("apt-get install", "pip install", "gcc", "build-essential", "make "):
        assert tool not in runs


def test_dockerfile__builder__installs_the_server_extra() -> None:
    (builder,) = stages()[:-1]
    runs = " ".join(args for keyword, args in builder if keyword == "RUN")
    assert re.search(r"pip install \"?\.\[server\]", runs)


def _dockerignore_allows(path: str) -> bool:
    allowed = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line.lstrip("!").removeprefix("**/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
            allowed = negate
    return allowed


def test_dockerfile__copied_sources__exist_and_pass_the_dockerignore() -> None:
    sources = []
    for keyword, args in instructions():
        if keyword == "COPY" and not args.startswith("--from="):
            sources += args.split()[:-1]
    assert "pyproject.toml" in sources
    assert "alembic.ini" in sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert _dockerignore_allows(source), f".dockerignore excludes {source}"
    for link in (ROOT / "flagyard").iterdir():
        if link.is_symlink():
            assert link.resolve().name in sources, f"flagyard/{link.name} points at an uncopied folder"
    assert not _dockerignore_allows(".venv")
    assert not _dockerignore_allows("tests")


def test_dockerfile__cmd__is_the_control_plane_factory() -> None:
    (cmd,) = [args for keyword, args in final_stage() if keyword == "CMD"]
    assert '"--factory", "flagyard.control_plane.main:app_from_env"' in cmd
    assert callable(flagyard.control_plane.main.app_from_env)


@pytest.mark.parametrize(("program", "distribution"), [("uvicorn", "uvicorn"), ("alembic", "alembic")])
def test_plane_commands__console_scripts__come_from_the_server_extra(program: str, distribution: str) -> None:
    server = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"][
        "server"
    ]
    assert distribution in {re.split(r"[\[<>=]", requirement)[0] for requirement in server}
    scripts = {
        ep.name
        for ep in importlib.metadata.distribution(distribution).entry_points
        if ep.group == "console_scripts"
    }
    assert program in scripts
