"""The benchmark report: rendering REPORT.md and its plots from result rows, and one real benchmark's JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.report import LATENCY_PNG, SWEEP_PNG, Benchmark, Run, run_benchmark, write_report
from benchmarks.results import row

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MACHINE = {"date": "2030-01-02 03:04 UTC", "CPUs": "2 (test CPU)", "Python": "3.11.0 (CPython)"}


def hand_row(name: str, figure: float, unit: str, floor: float | None, **extra: Any) -> dict[str, Any]:
    """A row as a benchmark writes it, but without ``ratio``: the report computes its own."""
    return {"name": name, "figure": figure, "unit": unit, "floor": floor, "floor_name": "the floor", **extra}


def sweep_rows() -> list[dict[str, Any]]:
    return [
        hand_row(f"unary, {c} clients", 1000.0 * c**0.5, "calls/s", 1200.0 * c**0.5,
                 series="data plane: unary (gRPC)", concurrency=c)
        for c in (1, 2, 4, 8, 16)
    ]  # fmt: skip


def samples() -> dict[str, list[float]]:
    return {
        "propagation_ms": [2.0 + (i % 17) * 0.9 + (30.0 if i % 50 == 0 else 0.0) for i in range(200)],
        "floor_ms": [0.15 + (i % 7) * 0.02 for i in range(200)],
    }


def table_line(report: str, name: str) -> str:
    lines = [line for line in report.splitlines() if line.startswith(f"| {name} |")]
    assert len(lines) == 1, lines
    return lines[0]


def test_write_report__rows_with_and_without_goals__one_table_row_each_with_ratio_and_status(
    tmp_path: Path,
) -> None:
    rows = [
        hand_row("eval slow", 2000.0, "ns", 500.0, goal="≤ 1,000 ns", goal_met=False, note="median"),
        hand_row("updates", 450.0, "requests/s", 1500.0, goal="≥ 300 requests/s", goal_met=True),
        hand_row("no floor", 12.5, "ms", None),
    ]
    runs = [
        Run("alpha", "ok", 1.0, rows=rows[:2], log="logs/alpha.log"),
        Run("beta", "ok", 2.0, rows=rows[2:]),
    ]

    report = write_report(tmp_path, runs, None, MACHINE).read_text()

    assert table_line(report, "eval slow") == (
        "| eval slow | 2,000 ns | 500 ns (the floor) | 4.00× | ≤ 1,000 ns | **missed** | median |"
    )
    assert table_line(report, "updates") == (
        "| updates | 450 requests/s | 1,500 requests/s (the floor) | 0.30× | ≥ 300 requests/s | met |  |"
    )
    assert table_line(report, "no floor") == "| no floor | 12.5 ms | – (the floor) | – | – | – |  |"
    assert "1 of 2 goals met, 1 missed" in report
    assert "**CPUs**: 2 (test CPU)" in report
    assert "**Python**: 3.11.0 (CPython)" in report


def test_write_report__rows_from_results_row__goal_on_ratio_is_checked_on_the_ratio(tmp_path: Path) -> None:
    under = row("unary peak", 800.0, "calls/s", 1000.0, "echo", goal_op=">=", goal_value=0.9, goal_on="ratio")
    over = row("unary again", 950.0, "calls/s", 1000.0, "echo", goal_op=">=", goal_value=0.9, goal_on="ratio")

    report = write_report(tmp_path, [Run("dp", "ok", 1.0, rows=[under, over])], None, MACHINE).read_text()

    assert under["goal"] == "≥ 90 % of the floor"
    assert table_line(report, "unary peak").endswith("| 0.80× | ≥ 90 % of the floor | **missed** |  |")
    assert table_line(report, "unary again").endswith("| 0.95× | ≥ 90 % of the floor | met |  |")


def test_write_report__goal_the_floor_itself_misses__note_says_so(tmp_path: Path) -> None:
    below = row(
        "wrapped call", 9000.0, "ns", 8000.0, "bare client", goal_op="<=", goal_value=4000.0, note="n"
    )
    fine = row("plain call", 900.0, "ns", 30.0, "dict lookup", goal_op="<=", goal_value=1500.0, note="n")

    report = write_report(tmp_path, [Run("sdk", "ok", 1.0, rows=[below, fine])], None, MACHINE).read_text()

    assert table_line(report, "wrapped call").endswith(
        "| **missed** | n; the floor itself misses this goal |"
    )
    assert table_line(report, "plain call").endswith("| met | n |")


def test_write_report__samples_and_sweep_rows__writes_two_valid_pngs_and_links_them(tmp_path: Path) -> None:
    runs = [Run("data_plane", "ok", 1.0, rows=sweep_rows())]

    report = write_report(tmp_path, runs, samples(), MACHINE).read_text()

    for name in (LATENCY_PNG, SWEEP_PNG):
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) > 10_000
        assert f"]({name})" in report
    assert "| data plane: unary (gRPC) | 4 | 2,000 calls/s | 2,400 calls/s (the floor) | 0.83× |" in report
    assert "| unary, 4 clients |" not in report  # sweep points are not rows of the main table


def test_write_report__nothing_to_plot__no_png_and_the_report_says_why(tmp_path: Path) -> None:
    (tmp_path / LATENCY_PNG).write_bytes(PNG_MAGIC + b"an earlier run's plot")
    runs = [Run("propagation", "crashed", 3.0, detail="exit code 1: boom", log="logs/propagation.log")]

    report = write_report(tmp_path, runs, None, MACHINE).read_text()

    assert not (tmp_path / LATENCY_PNG).exists()
    assert not (tmp_path / SWEEP_PNG).exists()
    assert "No latency samples: propagation crashed." in report
    assert "No concurrency sweep: data_plane not run; control_plane not run." in report
    assert "**propagation crashed** (exit code 1: boom)" in report


def test_run_benchmark__module_that_fails__crashed_with_its_exit_code(tmp_path: Path) -> None:
    run = run_benchmark(Benchmark("no_such"), tmp_path, quick=True, timeout=60)

    assert run.status == "crashed"
    assert run.detail.startswith("exit code 1")
    assert "No module named benchmarks.no_such_bench" in (tmp_path / "logs" / "no_such.log").read_text()


def test_run_benchmark__rule_engine_quickest__json_rows_with_positive_figure_and_floor(
    tmp_path: Path,
) -> None:
    bench = Benchmark("rule_engine", quick_args=("-n", "2000", "--repeats", "1"))

    run = run_benchmark(bench, tmp_path, quick=True, timeout=120)

    assert run.status == "ok", run.detail
    assert run.rows == json.loads((tmp_path / "json" / "rule_engine.json").read_text())
    assert len(run.rows) == 7  # four cases (one a regex hit with a new subject each), three flatness
    for result in run.rows:
        assert result["unit"] == "ns"
        assert result["figure"] > 0
        assert result["floor"] > 0
        assert result["ratio"] == result["figure"] / result["floor"]
        assert result["goal"] == "≤ 1,000 ns"
