"""The checked-in generated code of proto/ is what proto/generate.sh makes of the .proto files today."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GEN = ROOT / "proto" / "gen"


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix in (".py", ".pyi")
    }


def test_generated_code__regenerated_into_a_temp_dir__identical_to_checked_in(tmp_path: Path) -> None:
    subprocess.run(
        [str(ROOT / "proto" / "generate.sh"), str(tmp_path)], check=True, capture_output=True, timeout=60
    )

    fresh, checked_in = _files(tmp_path), _files(GEN)

    assert sorted(fresh) == sorted(checked_in)
    stale = [name for name in fresh if fresh[name] != checked_in[name]]
    assert stale == [], f"run proto/generate.sh: stale {stale}"
