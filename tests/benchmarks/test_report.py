"""The benchmark report: rendering REPORT.md and its plots from result rows, and one real benchmark's JSON.

``benchmarks`` is a folder of the repository, not an installed package: every call runs in a child whose
working directory is the repository root, as ``python -m benchmarks.report`` does, so the test process
never has the root on its import path (where ``import sdk`` would find the bare folder)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MACHINE = {"date": "2030-01-02 03:04 UTC", "CPUs": "2 (test CPU)", "Python": "3.11.0 (CPython)"}


def hand_row(name: str, figure: float, unit: str, floor: float | None, **extra: Any) -> dict[str, Any]:
    """A row as a benchmark writes it, but without ``ratio``: the report computes its own."""
    return {"name": name, "figure": figure, "unit": unit, "floor": floor, "floor_name": "the floor", **extra}


def sweep_rows() -> list[dict[str, Any]]:
    return [
        hand_row(
            f"unary, {c} clients",
            1000.0 * c**0.5,
            "calls/s",
            1200.0 * c**0.5,
            series="data plane: unary (gRPC)",
            concurrency=c,
        )
        for c in (1, 2, 4, 8, 16)
    ]


def in_repo(workdir: Path, script: str, **args: Any) -> Any:
    """Run ``script`` in a child in the repository root; return the JSON it wrote to ``args["result"]`` (not
    stdout: run_benchmark echoes the benchmark's output there)."""
    result = workdir / "child-result.json"
    proc = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), json.dumps({**args, "result": str(result)})],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(result.read_text())


WRITE_REPORT = """
    import json, sys
    from pathlib import Path
    from benchmarks.report import LATENCY_PNG, SWEEP_PNG, Run, write_report

    args = json.loads(sys.argv[1])
    for plot in [LATENCY_PNG, SWEEP_PNG] if args["earlier_plots"] else []:
        Path(args["out"], plot).write_bytes(b"an earlier run's plot")
    runs = [Run(**run) for run in args["runs"]]
    report = write_report(Path(args["out"]), runs, args["samples"], args["machine"]).read_text()
    Path(args["result"]).write_text(json.dumps({"report": report, "plots": [LATENCY_PNG, SWEEP_PNG]}))
"""

ROWS = """
    import json, sys
    from pathlib import Path
    from benchmarks.results import row

    args = json.loads(sys.argv[1])
    Path(args["result"]).write_text(json.dumps([row(*c["args"], **c["kwargs"]) for c in args["calls"]]))
"""

RUN_BENCHMARK = """
    import dataclasses, json, sys
    from pathlib import Path
    from benchmarks.report import Benchmark, run_benchmark

    args = json.loads(sys.argv[1])
    bench = Benchmark(args["name"], quick_args=tuple(args["quick_args"]))
    run = run_benchmark(bench, Path(args["out"]), quick=True, timeout=args["timeout"])
    Path(args["result"]).write_text(json.dumps(dataclasses.asdict(run)))
"""


def run(benchmark: str, status: str, seconds: float, **fields: Any) -> dict[str, Any]:
    """A ``benchmarks.report.Run`` as the child builds it."""
    return {"benchmark": benchmark, "status": status, "seconds": seconds, **fields}


def write_report(
    out: Path,
    runs: list[dict[str, Any]],
    samples: dict[str, list[float]] | None = None,
    *,
    earlier_plots: bool = False,
) -> tuple[str, list[str]]:
    """``write_report`` into ``out`` (after an earlier run's plots, if asked): the report's text, and the file
    names of the two plots."""
    done = in_repo(
        out,
        WRITE_REPORT,
        out=str(out),
        runs=runs,
        samples=samples,
        machine=MACHINE,
        earlier_plots=earlier_plots,
    )
    return done["report"], done["plots"]


def rows(out: Path, *calls: tuple[tuple[Any, ...], dict[str, Any]]) -> list[dict[str, Any]]:
    """``benchmarks.results.row(*args, **kwargs)`` for each call."""
    made: list[dict[str, Any]] = in_repo(
        out, ROWS, calls=[{"args": args, "kwargs": kwargs} for args, kwargs in calls]
    )
    return made


def run_benchmark(out: Path, name: str, quick_args: tuple[str, ...], timeout: float) -> dict[str, Any]:
    """``run_benchmark(Benchmark(name, quick_args=…), out, quick=True, timeout=…)`` as a dict."""
    done: dict[str, Any] = in_repo(
        out, RUN_BENCHMARK, out=str(out), name=name, quick_args=quick_args, timeout=timeout
    )
    return done


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
    given = [
        hand_row("eval slow", 2000.0, "ns", 500.0, goal="≤ 1,000 ns", goal_met=False, note="median"),
        hand_row("updates", 450.0, "requests/s", 1500.0, goal="≥ 300 requests/s", goal_met=True),
        hand_row("no floor", 12.5, "ms", None),
    ]
    runs = [
        run("alpha", "ok", 1.0, rows=given[:2], log="logs/alpha.log"),
        run("beta", "ok", 2.0, rows=given[2:]),
    ]

    report, _ = write_report(tmp_path, runs)

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
    goal = {"goal_op": ">=", "goal_value": 0.9, "goal_on": "ratio"}
    under, over = rows(
        tmp_path,
        (("unary peak", 800.0, "calls/s", 1000.0, "echo"), goal),
        (("unary again", 950.0, "calls/s", 1000.0, "echo"), goal),
    )

    report, _ = write_report(tmp_path, [run("dp", "ok", 1.0, rows=[under, over])])

    assert under["goal"] == "≥ 90 % of the floor"
    assert table_line(report, "unary peak").endswith("| 0.80× | ≥ 90 % of the floor | **missed** |  |")
    assert table_line(report, "unary again").endswith("| 0.95× | ≥ 90 % of the floor | met |  |")


def test_write_report__goal_the_floor_itself_misses__note_says_so(tmp_path: Path) -> None:
    below, fine = rows(
        tmp_path,
        (
            ("wrapped call", 9000.0, "ns", 8000.0, "bare client"),
            {"goal_op": "<=", "goal_value": 4000.0, "note": "n"},
        ),
        (
            ("plain call", 900.0, "ns", 30.0, "dict lookup"),
            {"goal_op": "<=", "goal_value": 1500.0, "note": "n"},
        ),
    )

    report, _ = write_report(tmp_path, [run("sdk", "ok", 1.0, rows=[below, fine])])

    assert table_line(report, "wrapped call").endswith(
        "| **missed** | n; the floor itself misses this goal |"
    )
    assert table_line(report, "plain call").endswith("| met | n |")


def test_write_report__samples_and_sweep_rows__writes_two_valid_pngs_and_links_them(tmp_path: Path) -> None:
    runs = [run("data_plane", "ok", 1.0, rows=sweep_rows())]

    report, plots = write_report(tmp_path, runs, samples())

    assert len(plots) == 2
    for name in plots:
        data = (tmp_path / name).read_bytes()
        assert data[:8] == PNG_MAGIC
        assert len(data) > 10_000
        assert f"]({name})" in report
    assert "| data plane: unary (gRPC) | 4 | 2,000 calls/s | 2,400 calls/s (the floor) | 0.83× |" in report
    assert "| unary, 4 clients |" not in report  # sweep points are not rows of the main table


def test_write_report__nothing_to_plot__no_png_and_the_report_says_why(tmp_path: Path) -> None:
    runs = [run("propagation", "crashed", 3.0, detail="exit code 1: boom", log="logs/propagation.log")]

    report, plots = write_report(tmp_path, runs, earlier_plots=True)

    assert len(plots) == 2
    for name in plots:
        assert not (tmp_path / name).exists()
    assert "No latency samples: propagation crashed." in report
    assert "No concurrency sweep: data_plane not run; control_plane not run." in report
    assert "**propagation crashed** (exit code 1: boom)" in report


def test_run_benchmark__module_that_fails__crashed_with_its_exit_code(tmp_path: Path) -> None:
    done = run_benchmark(tmp_path, "no_such", (), timeout=60)

    assert done["status"] == "crashed"
    assert done["detail"].startswith("exit code 1")
    assert "No module named benchmarks.no_such_bench" in (tmp_path / "logs" / "no_such.log").read_text()


def test_run_benchmark__rule_engine_quickest__json_rows_with_positive_figure_and_floor(
    tmp_path: Path,
) -> None:
    done = run_benchmark(tmp_path, "rule_engine", ("-n", "2000", "--repeats", "1"), timeout=120)

    assert done["status"] == "ok", done["detail"]
    assert done["rows"] == json.loads((tmp_path / "json" / "rule_engine.json").read_text())
    rows = done["rows"]
    # four cases (one a regex hit with a new subject each), six flagd-format rows (three cases × the
    # hand-written file and export_flagd's form), three flatness, eight rule counts, and bytes per compiled
    # flag three ways (native, native without source, flagd)
    assert len(rows) == 4 + 6 + 3 + 8 + 3
    timed = [r for r in rows if r["unit"] == "ns"]
    assert len(timed) == len(rows) - 3
    for result in timed:
        assert result["figure"] > 0
        assert result["floor"] > 0
        assert result["ratio"] == result["figure"] / result["floor"]
    assert {r["goal"] for r in rows[:4]} == {"≤ 1,000 ns"}
    assert {r["goal"] for r in rows if r["name"].startswith("rule engine: flagd file")} == {
        "≤ 125 % of the floor"
    }
    sizes = [r for r in rows if r["unit"] == "bytes"]
    assert len(sizes) == 3
    for size in sizes:
        assert size["figure"] > size["floor"] > 0, "a compiled flag holds more than its compact JSON"
