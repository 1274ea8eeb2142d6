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


# --- which package imports which --------------------------------------------------------------------------
# The planes (control_plane, syncer, data_plane) import no other plane: they share the neutral packages, the
# Redis contract and its settings (contracts) and the PostgreSQL schema (db), and talk through proto/.

PLANES = ("flagyard.control_plane", "flagyard.syncer", "flagyard.data_plane")
NEUTRAL_SERVER_PACKAGES = ("flagyard.contracts", "flagyard.db")
"""Shared by the planes, and server-side: they import Redis, SQLAlchemy, pydantic-settings."""

# The command line, module by module. The install a module must import in: `base` (pip install flagyard:
# `flagyard eval`'s standard-library front end), `cli` (flagyard[cli]: the admin commands over REST and the
# command lines of `up` and `admin-key reset`, which import the [server] parts only when run) or `server`
# (flagyard[server]: what `flagyard up` does before and while it runs the planes).
CLI_MODULES = {
    "__init__": "base",
    "eval_core": "base",
    "exceptions": "base",
    "addresses": "cli",
    "admin": "cli",
    "admin_key_cmd": "cli",
    "app": "cli",
    "envs_cmd": "cli",
    "eval_cmd": "cli",
    "flags_cmd": "cli",
    "insight_cmd": "cli",
    "jobs_cmd": "cli",
    "keys_cmd": "cli",
    "webhooks_cmd": "cli",
    "output": "cli",
    "projects_cmd": "cli",
    "rest": "cli",
    "schedules_cmd": "cli",
    "requests_cmd": "cli",
    "segments_cmd": "cli",
    "supervisor": "cli",
    "transfer_cmd": "cli",
    "up": "cli",
    "up_probes": "server",
    "up_seed": "server",
    "up_setup": "server",
}
BASE_INSTALL_LIBRARIES = {"pydantic", "mmh3", "semver", "orjson", "re2", "grpc", "google", "openfeature"}
"""The base install's dependencies (pyproject.toml ``dependencies``), by import name."""
CLI_EXTRA_LIBRARIES = {"typer", "click", "rich", "httpx", "yaml"}
BASE_INSTALL_FLAGYARD = ("flagyard.rule_engine", "flagyard.sdk", "flagyard.proto")

CLI_PLANE_IMPORTS = {
    # `flagyard admin-key reset`: writes a key into the control plane's database.
    "admin_key_cmd": ("flagyard.control_plane.security", "flagyard.control_plane.services", "flagyard.db"),
    # `flagyard up`: every plane's settings, the control plane's migrations; the demo through the control
    # plane's services; readiness through the Redis contract and the syncer's queue; Redis clients through
    # the one factory (a Sentinel URL too).
    "up_setup": (
        "flagyard.contracts.redis_connect",
        "flagyard.contracts.settings",
        "flagyard.control_plane.migrations",
        "flagyard.control_plane.settings",
        "flagyard.data_plane.settings",
        "flagyard.db.settings",
        "flagyard.syncer.settings",
    ),
    "up_seed": ("flagyard.contracts.redis_connect", "flagyard.control_plane", "flagyard.db"),
    "up_probes": ("flagyard.contracts.redis", "flagyard.contracts.redis_connect", "flagyard.syncer.settings"),
}
"""The only CLI modules that import a plane or a neutral server package (at any depth), and what they may."""

ALLOWED_FLAGYARD_IMPORTS = {
    "rule_engine": ("flagyard.rule_engine",),
    "proto": ("flagyard.proto",),
    "contracts": ("flagyard.rule_engine", "flagyard.contracts"),
    "db": ("flagyard.rule_engine", "flagyard.contracts", "flagyard.db"),
    "control_plane": ("flagyard.rule_engine", "flagyard.contracts", "flagyard.db", "flagyard.control_plane"),
    "syncer": ("flagyard.rule_engine", "flagyard.contracts", "flagyard.db", "flagyard.syncer"),
    "data_plane": ("flagyard.rule_engine", "flagyard.proto", "flagyard.contracts", "flagyard.data_plane"),
    "sdk": ("flagyard.rule_engine", "flagyard.proto", "flagyard.sdk"),
    "cli": ("flagyard.cli", *BASE_INSTALL_FLAGYARD, *(p for ps in CLI_PLANE_IMPORTS.values() for p in ps)),
}
"""Every top-level package (each folder symlinked under flagyard/) → the flagyard modules it may import."""


def module_name(path: Path) -> str:
    """``ROOT/syncer/core.py`` → ``flagyard.syncer.core`` (a package's ``__init__.py`` → the package)."""
    parts = ["flagyard", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _names(path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Full dotted names of an import (``from a import b`` gives ``a.b``), relative ones resolved."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    module = node.module or ""
    if node.level:
        package = module_name(path).split(".")
        if path.name != "__init__.py":
            package = package[:-1]
        base = ".".join(package[: len(package) - (node.level - 1)])
        module = f"{base}.{module}" if module else base
    return [f"{module}.{alias.name}" for alias in node.names]


def imported_names(folder: str) -> list[tuple[Path, str]]:
    """Every import of the folder's modules, at any depth, as full dotted names."""
    found = []
    for path in sorted((ROOT / folder).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import | ast.ImportFrom):
                found += [(path, name) for name in _names(path, node)]
    return found


def _is_type_checking(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def import_time_names(path: Path) -> list[str]:
    """The imports that run when the module is imported: not those in functions or under TYPE_CHECKING."""
    found: list[str] = []

    def visit(nodes: list[ast.AST]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.extend(_names(path, node))
            elif not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and not _is_type_checking(node):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    visit(getattr(node, field, []))

    visit(list(ast.parse(path.read_text(), str(path)).body))
    return found


def _within(name: str, prefixes: tuple[str, ...] | list[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def test_layers_table__covers_every_top_level_package() -> None:
    linked = {p.name for p in (ROOT / "flagyard").iterdir() if p.is_symlink() and p.is_dir()}
    assert linked == set(ALLOWED_FLAGYARD_IMPORTS)
    assert {p.stem for p in (ROOT / "cli").glob("*.py")} == set(CLI_MODULES)
    assert set(CLI_PLANE_IMPORTS) <= set(CLI_MODULES)


@pytest.mark.parametrize("folder", sorted(ALLOWED_FLAGYARD_IMPORTS))
def test_packages__flagyard_imports__only_what_the_layers_allow(folder: str) -> None:
    allowed = ALLOWED_FLAGYARD_IMPORTS[folder]
    offenders = [
        f"{path.relative_to(ROOT)}: {name}"
        for path, name in imported_names(folder)
        if name.split(".")[0] == "flagyard" and name != "flagyard" and not _within(name, allowed)
    ]
    assert offenders == []


def test_planes__import__no_other_plane() -> None:
    offenders = []
    for plane in PLANES:
        folder = plane.removeprefix("flagyard.")
        others = tuple(p for p in PLANES if p != plane)
        offenders += [f"{p.relative_to(ROOT)}: {n}" for p, n in imported_names(folder) if _within(n, others)]
    assert offenders == []


@pytest.mark.parametrize("folder", ["contracts", "db"])
def test_neutral_packages__import__no_plane(folder: str) -> None:
    offenders = [f"{p.relative_to(ROOT)}: {n}" for p, n in imported_names(folder) if _within(n, PLANES)]
    assert offenders == []


def test_cli__planes_and_server_packages__only_from_the_modules_that_compose_them() -> None:
    offenders = []
    for path, name in imported_names("cli"):
        if _within(name, PLANES + NEUTRAL_SERVER_PACKAGES) and not _within(
            name, CLI_PLANE_IMPORTS.get(path.stem, ())
        ):
            offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert offenders == []


@pytest.mark.parametrize("module", sorted(m for m, tier in CLI_MODULES.items() if tier != "server"))
def test_cli__import_time_imports__fit_the_modules_install(module: str) -> None:
    """A ``base`` module imports in ``pip install flagyard`` (so ``flagyard eval`` runs there), a ``cli``
    one with the [cli] extra: at import time they reach no server library, no plane and no module of a
    bigger install (a command imports the [server] parts inside the function that needs them)."""
    tier = CLI_MODULES[module]
    libraries = BASE_INSTALL_LIBRARIES | (CLI_EXTRA_LIBRARIES if tier == "cli" else set())
    cli_modules = [f"flagyard.cli.{m}" for m, t in CLI_MODULES.items() if t == "base" or t == tier]
    offenders = []
    for name in import_time_names(ROOT / "cli" / f"{module}.py"):
        top = name.split(".")[0]
        if top == "flagyard":
            if name == "flagyard.cli" or _within(name, [*BASE_INSTALL_FLAGYARD, *cli_modules]):
                continue
            offenders.append(name)
        elif top not in sys.stdlib_module_names and top not in libraries:
            offenders.append(name)
    assert offenders == []
