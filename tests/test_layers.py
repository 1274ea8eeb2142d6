"""The layering rules of ARCHITECTURE.md, checked on the source."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVER_LIBRARIES = {
    "fastapi",
    "starlette",
    "sqlalchemy",
    "psycopg",
    "asyncpg",
    "alembic",
    "rq",
    "uvicorn",
    "redis",
}
ENGINE_ALLOWED = {"pydantic", "mmh3", "semver", "re2"}
IO_MODULES = {
    "os",
    "io",
    "socket",
    "subprocess",
    "pathlib",
    "shutil",
    "urllib",
    "http",
    "asyncio",
    "select",
    "tempfile",
}


def imports_of(folder: str) -> list[tuple[Path, str, int]]:
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [(path, alias.name, 0) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                found.append((path, node.module or "", node.level))
    return found


def test_rule_engine__imports__only_stdlib_and_small_pure_libraries() -> None:
    offenders = []
    for path, module, level in imports_of("rule_engine"):
        top = module.split(".")[0]
        if level:
            continue
        if top in IO_MODULES or (top not in sys.stdlib_module_names and top not in ENGINE_ALLOWED):
            offenders.append(f"{path.relative_to(ROOT)}: {module}")
    assert offenders == []


@pytest.mark.parametrize("folder", ["sdk", "rule_engine"])
def test_app_side_packages__imports__no_server_library(folder: str) -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for path, module, level in imports_of(folder)
        if not level and module.split(".")[0] in SERVER_LIBRARIES
    ]
    assert offenders == []


def test_rule_engine__imports__nothing_else_of_flagyard() -> None:
    offenders = [
        f"{path.relative_to(ROOT)}: {module}"
        for path, module, level in imports_of("rule_engine")
        if (not level and module.startswith("flagyard")) or level > 1
    ]
    assert offenders == []


ALLOWED_FLAGYARD_IMPORTS = {
    "contracts": ("flagyard.rule_engine", "flagyard.contracts"),
    # Still to move to neutral modules (the house issue): the settings the syncer and the engine share with
    # the control plane.
    "db": ("flagyard.rule_engine", "flagyard.contracts", "flagyard.db", "flagyard.control_plane.settings"),
    "control_plane": ("flagyard.rule_engine", "flagyard.contracts", "flagyard.db", "flagyard.control_plane"),
    "data_plane": ("flagyard.rule_engine", "flagyard.proto", "flagyard.contracts", "flagyard.data_plane"),
    "sdk": ("flagyard.rule_engine", "flagyard.proto", "flagyard.sdk"),
    "syncer": (
        "flagyard.rule_engine",
        "flagyard.contracts",
        "flagyard.db",
        "flagyard.syncer",
        "flagyard.control_plane.exceptions",
        "flagyard.control_plane.settings",
    ),
}


def imported_names(folder: str) -> list[tuple[Path, str]]:
    """Absolute imports as full dotted names (``from a import b`` gives ``a.b``)."""
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found += [(path, f"{node.module}.{alias.name}") for alias in node.names]
    return found


@pytest.mark.parametrize("folder", sorted(ALLOWED_FLAGYARD_IMPORTS))
def test_planes__flagyard_imports__only_through_the_contracts(folder: str) -> None:
    allowed = ALLOWED_FLAGYARD_IMPORTS[folder]
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path, name in imported_names(folder)
        if name.startswith("flagyard") and not name.startswith(allowed)
    ]
    assert offenders == []
