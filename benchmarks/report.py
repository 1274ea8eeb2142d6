"""Flagyard's benchmark report: run every benchmark, then write ``bench-results/REPORT.md`` and its plots.

Each benchmark runs in its own subprocess, one after the other (so they do not load the machine for each
other), with a timeout, and writes its rows through ``--json-out`` (``benchmarks/results.py``): a figure
beside a floor measured by the same load generator in the same run, and the goal the issues set. The
report has the machine's facts, one table of every row (figure, floor, ratio = figure ÷ floor, goal, met or
missed, a note), the raw output of each run under ``logs/`` and two plots: the distribution of the
propagation latencies, and throughput against the number of concurrent clients beside the floor's.

Run: ``python -m benchmarks.report`` (``task bench``); ``--quick`` for short runs (noisier; ``task
bench:quick``), ``--only data_plane,propagation`` for some. It exits non-zero only if a benchmark crashed
or timed out: a missed goal is reported, not an error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "bench-results"
LATENCY_PNG = "propagation_latency.png"
SWEEP_PNG = "throughput_vs_concurrency.png"
SWEEP = "1,2,4,8,16"
PROPAGATION_GOALS_MS = {"p50": 20.0, "p99": 100.0}


@dataclass(frozen=True)
class Benchmark:
    name: str
    args: tuple[str, ...] = ()
    quick_args: tuple[str, ...] = ()
    samples: bool = False  # takes --samples-out (raw latencies for the distribution plot)

    @property
    def module(self) -> str:
        return f"benchmarks.{self.name}_bench"


BENCHMARKS = (
    Benchmark("rule_engine", quick_args=("-n", "20000", "--repeats", "3")),
    Benchmark("sdk", quick_args=("-n", "10000", "--repeats", "3")),
    Benchmark("sdk_remote", quick_args=("-n", "1000")),
    Benchmark("data_plane", ("--sweep", SWEEP, "--scaling"), ("--quick", "--sweep", SWEEP, "--scaling")),
    Benchmark("bulk", quick_args=("--quick",)),
    Benchmark("flagd", quick_args=("--quick",)),
    Benchmark("fanout", quick_args=("--quick",)),
    Benchmark("control_plane", ("--sweep", SWEEP), ("--seconds", "2", "--warmup", "0.5", "--sweep", SWEEP)),
    Benchmark("propagation", quick_args=("--changes", "60"), samples=True),
    Benchmark("syncer", quick_args=("--flags", "100", "--changes", "300")),
    Benchmark("ofrep", quick_args=("--quick",)),
)
TIMEOUT_S = {False: 1800.0, True: 400.0}  # per benchmark, by quick


@dataclass
class Run:
    """One benchmark's run: how it ended and the rows it wrote."""

    benchmark: str
    status: Literal["ok", "crashed", "timeout"]
    seconds: float
    rows: list[dict[str, Any]] = field(default_factory=list)
    detail: str = ""
    log: str | None = None


# --- running ----------------------------------------------------------------------------------------------


def run_benchmark(bench: Benchmark, out: Path, quick: bool, timeout: float) -> Run:
    """Run one benchmark in its own process group, echo its output here and into ``logs/``, read its JSON."""
    (out / "json").mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    json_path = out / "json" / f"{bench.name}.json"
    log_path = out / "logs" / f"{bench.name}.log"
    json_path.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", bench.module, *(bench.quick_args if quick else bench.args)]
    cmd += ["--json-out", str(json_path)]
    if bench.samples:
        samples_path = out / "json" / f"{bench.name}_samples.json"
        samples_path.unlink(missing_ok=True)
        cmd += ["--samples-out", str(samples_path)]
    print(f"\n=== {bench.name}: {' '.join(cmd[1:])}", flush=True)
    started = time.perf_counter()
    with log_path.open("w") as log:
        log.write(f"$ {' '.join(cmd)}\n")
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
        )
        tee = threading.Thread(target=_tee, args=(proc, log), daemon=True)
        tee.start()
        try:
            code: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            code = None
            _stop(proc)
        except KeyboardInterrupt:
            _stop(proc)
            raise
        tee.join(5)
    seconds = time.perf_counter() - started
    relative_log = str(log_path.relative_to(out))
    if code is None:
        return Run(bench.name, "timeout", seconds, detail=f"killed after {timeout:.0f} s", log=relative_log)
    if code != 0:
        return Run(
            bench.name, "crashed", seconds, detail=f"exit code {code}: {_tail(log_path)}", log=relative_log
        )
    try:
        rows = json.loads(json_path.read_text())
    except (OSError, ValueError) as exc:
        return Run(bench.name, "crashed", seconds, detail=f"no results ({exc})", log=relative_log)
    return Run(bench.name, "ok", seconds, rows=rows, log=relative_log)


def _tee(proc: subprocess.Popen[str], log: Any) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        log.write(line)


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGINT to the benchmark's process group (its ``finally`` stops its servers and drops its scratch
    database), then SIGKILL to whatever is left of the group."""
    for sig, grace in ((signal.SIGINT, 30.0), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, lines: int = 3) -> str:
    text = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    return " / ".join(_shorten(line.strip(), 200) for line in text[-lines:])


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def machine_facts(quick: bool) -> dict[str, str]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "CPUs": f"{os.cpu_count()} ({cpu})",
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "commit": commit or "unknown",
        "load average before the run (1, 5, 15 min)": load,
        "mode": "quick (short runs, noisier)" if quick else "full",
    }


# --- rendering --------------------------------------------------------------------------------------------


def ratio_of(result: dict[str, Any]) -> float | None:
    floor = result.get("floor")
    return result["figure"] / floor if floor else None


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "–"
    magnitude = abs(value)
    text = (
        f"{value:,.0f}"
        if magnitude >= 100
        else f"{value:.1f}"
        if magnitude >= 10
        else f"{value:.2f}"
        if magnitude >= 0.01 or value == 0
        else f"{value:.2g}"
    )
    return f"{text} {unit}".strip()


def status_of(result: dict[str, Any]) -> str:
    met = result.get("goal_met")
    return "–" if met is None else "met" if met else "**missed**"


def _floor_misses_goal(result: dict[str, Any]) -> str:
    """Say so when the floor alone misses a goal set on the figure: no implementation could meet it here."""
    floor, goal, op = result.get("floor"), result.get("goal_value"), result.get("goal_op")
    if floor is None or goal is None or result.get("goal_on", "figure") != "figure":
        return ""
    misses = floor > goal if op == "<=" else floor < goal if op == ">=" else False
    return "the floor itself misses this goal" if misses else ""


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def render_markdown(
    runs: Sequence[Run],
    machine: dict[str, str],
    plots: dict[str, str | None],
    sweep_rows: list[dict[str, Any]],
) -> str:
    rows = [r for run in runs for r in run.rows if "series" not in r]
    with_goal = [r for r in rows if r.get("goal_met") is not None]
    missed = [r for r in with_goal if not r["goal_met"]]
    failed = [run for run in runs if run.status != "ok"]
    out = ["# Flagyard benchmark report", ""]
    out += [f"- **{key}**: {value}" for key, value in machine.items()]
    out += [
        "",
        f"{len(with_goal) - len(missed)} of {len(with_goal)} goals met, {len(missed)} missed; "
        f"{len(runs) - len(failed)} of {len(runs)} benchmarks ran to the end.",
        "",
    ]
    if missed:
        out += [
            "Missed: "
            + "; ".join(f"{r['name']} ({fmt(r['figure'], r['unit'])}, goal {r['goal']})" for r in missed),
            "",
        ]
    for run in failed:
        out += [f"**{run.benchmark} {run.status}** ({run.detail}); output in [{run.log}]({run.log}).", ""]
    out += [
        "Every figure is beside its floor: the same work's lower bound (or a baseline), measured by the same",
        "load generator in the same run. Ratio = figure ÷ floor: for a time, how many floors it takes; for a",
        "rate, the share of the floor's rate it reaches. Figures on a loaded or small machine are noisy.",
        "",
        "| benchmark | figure | floor | ratio | goal | status | note |",
        "|---|---:|---|---:|---|---|---|",
    ]
    for r in rows:
        floor = fmt(r.get("floor"), r["unit"]) if r.get("floor") is not None else "–"
        if r.get("floor_name"):
            floor += f" ({r['floor_name']})"
        ratio = ratio_of(r)
        cells = [
            r["name"],
            fmt(r["figure"], r["unit"]),
            floor,
            "–" if ratio is None else f"{ratio:.2f}×",
            r.get("goal") or "–",
            status_of(r),
            "; ".join(part for part in (r.get("note"), _floor_misses_goal(r)) if part),
        ]
        out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    out += ["", "## Propagation latency", ""]
    if plots.get("latency"):
        out += [f"![propagation latency distribution]({plots['latency']})", ""]
    else:
        out += [f"No latency samples: {_absent(runs, ['propagation'])}.", ""]
    out += ["## Throughput vs concurrency", ""]
    if plots.get("sweep"):
        out += [f"![throughput vs concurrency]({plots['sweep']})", ""]
        out += ["| series | clients | figure | floor | ratio |", "|---|---:|---:|---:|---:|"]
        for r in sorted(sweep_rows, key=lambda r: (r["series"], r["concurrency"])):
            ratio = ratio_of(r)
            floor = fmt(r.get("floor"), r["unit"]) + (f" ({r['floor_name']})" if r.get("floor_name") else "")
            cells = [r["series"], str(r["concurrency"]), fmt(r["figure"], r["unit"]), floor]
            cells.append("–" if ratio is None else f"{ratio:.2f}×")
            out.append("| " + " | ".join(_cell(c) for c in cells) + " |")
        out.append("")
    else:
        out += [f"No concurrency sweep: {_absent(runs, ['data_plane', 'control_plane'])}.", ""]
    out += ["## Runs", "", "| benchmark | status | seconds | output |", "|---|---|---:|---|"]
    for run in runs:
        log = f"[{run.log}]({run.log})" if run.log else ""
        out.append(f"| {run.benchmark} | {run.status} | {run.seconds:.0f} | {log} |")
    out.append("")
    return "\n".join(out)


def _absent(runs: Sequence[Run], names: list[str]) -> str:
    ran = {run.benchmark: run.status for run in runs}
    return "; ".join(f"{name} {ran.get(name, 'not run')}" for name in names)


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_latency(samples: dict[str, list[float]], path: Path, goals: dict[str, float] | None = None) -> bool:
    """Histogram and CDF (log time axis) of the propagation latencies beside the Redis-hop floor's."""
    latencies = sorted(samples.get("propagation_ms") or [])
    if not latencies:
        return False
    floor = sorted(samples.get("floor_ms") or [])
    goals = PROPAGATION_GOALS_MS if goals is None else goals
    import numpy as np

    plt = _pyplot()
    fig, (hist, cdf) = plt.subplots(1, 2, figsize=(12, 4.5))
    everything = latencies + floor
    low, high = max(min(everything), 1e-3), max(max(everything), max(goals.values(), default=1.0))
    bins = np.logspace(np.log10(low * 0.9), np.log10(high * 1.1), 40)
    label = f"propagation, REST 2xx → served (n={len(latencies)})"
    floor_label = f"floor: Redis XADD → XREAD (n={len(floor)})"
    hist.hist(latencies, bins=bins, color="tab:blue", alpha=0.75, label=label)
    if floor:
        hist.hist(floor, bins=bins, color="tab:gray", alpha=0.6, label=floor_label)
    for ax in (hist, cdf):
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.grid(True, which="both", alpha=0.3)
        for (name, goal), style in zip(goals.items(), ("--", ":"), strict=False):
            ax.axvline(
                goal, color="tab:red", linestyle=style, linewidth=1.2, label=f"goal {name} ≤ {goal:g} ms"
            )
    hist.set_ylabel("changes")
    hist.set_title("Propagation latency: histogram")
    hist.legend(fontsize=8)
    fractions = np.arange(1, len(latencies) + 1) / len(latencies)
    cdf.step(latencies, fractions, where="post", color="tab:blue", label="propagation")
    if floor:
        cdf.step(
            floor, np.arange(1, len(floor) + 1) / len(floor), where="post", color="tab:gray", label="floor"
        )
    p50, p99 = _percentile(latencies, 0.5), _percentile(latencies, 0.99)
    cdf.plot([p50, p99], [0.5, 0.99], "o", color="tab:blue")
    cdf.annotate(f"p50 {p50:.1f} ms", (p50, 0.5), textcoords="offset points", xytext=(6, -12), fontsize=8)
    cdf.annotate(f"p99 {p99:.1f} ms", (p99, 0.99), textcoords="offset points", xytext=(6, -12), fontsize=8)
    cdf.set_ylim(0, 1.02)
    cdf.set_ylabel("fraction of changes served within")
    cdf.set_title("Propagation latency: CDF")
    cdf.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def plot_sweep(rows: list[dict[str, Any]], path: Path) -> bool:
    """One panel per series: the figure's throughput and the floor's against the number of clients."""
    series: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        series.setdefault(r["series"], []).append(r)
    if not series:
        return False
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(series), figsize=(6 * len(series), 4.5), squeeze=False)
    for ax, (name, points) in zip(axes[0], sorted(series.items()), strict=True):
        points.sort(key=lambda r: r["concurrency"])
        levels = [r["concurrency"] for r in points]
        unit = points[0]["unit"]
        ax.plot(levels, [r["figure"] for r in points], "o-", color="tab:blue", label=name.split(": ", 1)[-1])
        floored = [r for r in points if r.get("floor")]
        if floored:
            label = f"floor: {floored[0].get('floor_name') or 'floor'}"
            x, y = [r["concurrency"] for r in floored], [r["floor"] for r in floored]
            ax.plot(x, y, "s--", color="tab:gray", label=label)
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(level) for level in levels])
        ax.set_ylim(bottom=0)
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel(unit)
        ax.set_title(name, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_report(
    out: Path, runs: Sequence[Run], samples: dict[str, list[float]] | None, machine: dict[str, str]
) -> Path:
    """Write the plots and ``REPORT.md`` into ``out``; returns the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    sweep_rows = [r for run in runs for r in run.rows if "series" in r]
    goals = {
        name: float(r["goal_value"])
        for run in runs
        for r in run.rows
        for name in ("p50", "p99")
        if r["name"] == f"propagation {name}" and r.get("goal_value") is not None
    }
    plots: dict[str, str | None] = {
        "latency": LATENCY_PNG if plot_latency(samples or {}, out / LATENCY_PNG, goals or None) else None,
        "sweep": SWEEP_PNG if plot_sweep(sweep_rows, out / SWEEP_PNG) else None,
    }
    for name in (LATENCY_PNG, SWEEP_PNG):  # a plot of an earlier run would pass for this one's
        if name not in plots.values():
            (out / name).unlink(missing_ok=True)
    report = out / "REPORT.md"
    report.write_text(render_markdown(runs, machine, plots, sweep_rows))
    return report


# --- main -------------------------------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="short runs (noisier figures)")
    parser.add_argument(
        "--only", help="comma-separated: " + ",".join(b.name for b in BENCHMARKS) + " (default: all)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where REPORT.md goes (bench-results/)")
    parser.add_argument(
        "--timeout", type=float, help="seconds per benchmark (default 1800, 400 with --quick)"
    )
    args = parser.parse_args(argv)
    chosen = list(BENCHMARKS)
    if args.only:
        wanted = [name.strip().removesuffix("_bench") for name in args.only.split(",") if name.strip()]
        unknown = set(wanted) - {b.name for b in BENCHMARKS}
        if unknown:
            parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
        chosen = [b for b in BENCHMARKS if b.name in wanted]
    out: Path = args.out.resolve()
    machine = machine_facts(args.quick)
    timeout = args.timeout or TIMEOUT_S[args.quick]
    started = time.perf_counter()
    runs = [run_benchmark(bench, out, args.quick, timeout) for bench in chosen]
    machine["total duration"] = f"{time.perf_counter() - started:.0f} s"
    samples = None
    samples_path = out / "json" / "propagation_samples.json"
    if any(r.benchmark == "propagation" and r.status == "ok" for r in runs) and samples_path.exists():
        samples = json.loads(samples_path.read_text())
    report = write_report(out, runs, samples, machine)
    print(f"\nreport: {report}")
    for run in runs:
        print(f"  {run.benchmark:<14} {run.status:<8} {run.seconds:6.0f} s  {run.detail}")
    return 0 if all(run.status == "ok" for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
