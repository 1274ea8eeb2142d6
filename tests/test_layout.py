"""The layout of ARCHITECTURE.md: the top-level folders are the source, ``flagyard/`` maps each into the one
``flagyard.*`` namespace through a symlink, and a folder imports only under that name."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_SHIPPED = {"benchmarks", "loadtests"}  # run from the repository root, never installed

PROBE = """
import importlib, json, sys

names = sys.argv[1:]
refused = {}
for name in names:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        refused[name] = str(exc)
for name in names:
    importlib.import_module("flagyard." + name)
bare = sorted(m for m in sys.modules if m.partition(".")[0] in names)
print(json.dumps({"refused": refused, "bare_modules": bare, "path0": sys.path[0]}))
"""


def mapped_packages() -> list[str]:
    return sorted(link.name for link in (ROOT / "flagyard").iterdir() if link.is_symlink())


def test_flagyard_links__each_points_at_the_top_level_folder_of_its_name() -> None:
    names = mapped_packages()

    assert "sdk" in names
    assert "rule_engine" in names
    for name in names:
        assert (ROOT / "flagyard" / name).readlink() == Path("..", name)
        assert (ROOT / name / "__init__.py").is_file()


def test_top_level_packages__every_one_is_mapped_into_flagyard_except_the_unshipped() -> None:
    packages = {p.parent.name for p in ROOT.glob("*/__init__.py")} - {"flagyard"}

    assert packages - NOT_SHIPPED == set(mapped_packages())


def test_bare_import__root_on_the_path__refused_with_the_flagyard_name_and_no_copy_loaded() -> None:
    names = mapped_packages()

    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["path0"] in ("", str(ROOT))  # the bare folders were findable
    assert result["refused"] == {
        name: f"import this package as 'flagyard.{name}', not '{name}'" for name in names
    }
    assert result["bare_modules"] == []


def test_alembic__does_not_put_the_repository_root_on_the_path() -> None:
    """alembic's ``prepend_sys_path = .`` would make ``import sdk`` load a second copy of a module; the
    migrations import ``flagyard.…`` from the installed package instead."""
    lines = [line.split("=")[0].strip() for line in (ROOT / "alembic.ini").read_text().splitlines()]
    assert "script_location" in lines
    assert "prepend_sys_path" not in lines


def test_wheel__built_from_the_links__holds_every_source_and_data_file_under_flagyard_only(
    tmp_path: Path,
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "flagyard", source / "flagyard", symlinks=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in mapped_packages():
        shutil.copytree(ROOT / name, source / name, ignore=ignore)

    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=source,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert proc.returncode == 0, proc.stderr
    (wheel,) = tmp_path.glob("flagyard-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {n.split("/")[0] for n in names} == {"flagyard", wheel.name.split("-py3")[0] + ".dist-info"}
    for name in mapped_packages():
        expected = {
            f"flagyard/{name}/{p.relative_to(ROOT / name).as_posix()}"
            for p in (ROOT / name).rglob("*.py")
            if "__pycache__" not in p.parts
        }
        assert expected, name
        assert expected <= names, sorted(expected - names)[:5]
    # Package data: the console's assets (pyproject's package-data), or /ui would 404 in an install.
    static = ROOT / "control_plane" / "console" / "static"
    assets = {
        f"flagyard/control_plane/console/static/{p.relative_to(static).as_posix()}"
        for p in static.rglob("*")
        if p.is_file()
    }
    assert "flagyard/control_plane/console/static/index.html" in assets
    assert sorted(assets - names) == []
