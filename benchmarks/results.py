"""Machine-readable benchmark results: one row per figure, beside its floor and its goal.

Every benchmark takes ``--json-out PATH`` and writes there a JSON list of rows (see ``row``); what it prints
for people does not change. ``ratio`` is always ``figure / floor`` (for a time, how many times the floor it
takes; for a rate, the fraction of the floor's rate it reaches). A goal is checked either on the figure or
on the ratio (``goal_on``). Rows of a concurrency sweep also carry ``series`` and ``concurrency``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Literal

Op = Literal[">=", "<="]
SYMBOLS = {">=": "≥", "<=": "≤"}


def goal_text(op: Op, value: float, unit: str, on: Literal["figure", "ratio"] = "figure") -> str:
    """Say a goal for people: ``≥ 300 changes/s``, ``≤ 5 ms``, ``≥ 90 % of the floor``."""
    if on == "ratio":
        return f"{SYMBOLS[op]} {value * 100:g} % of the floor"
    return f"{SYMBOLS[op]} {value:,g} {unit}"


def row(
    name: str,
    figure: float,
    unit: str,
    floor: float | None = None,
    floor_name: str | None = None,
    *,
    goal_op: Op | None = None,
    goal_value: float | None = None,
    goal_on: Literal["figure", "ratio"] = "figure",
    note: str = "",
    series: str | None = None,
    concurrency: int | None = None,
) -> dict[str, Any]:
    """One result: ``{name, figure, unit, floor, floor_name, ratio, goal, goal_met, ...}``."""
    ratio = figure / floor if floor else None
    goal = goal_met = None
    if goal_op is not None and goal_value is not None:
        goal = goal_text(goal_op, goal_value, unit, goal_on)
        checked = ratio if goal_on == "ratio" else figure
        if checked is not None:
            goal_met = checked >= goal_value if goal_op == ">=" else checked <= goal_value
    result: dict[str, Any] = {
        "name": name,
        "figure": figure,
        "unit": unit,
        "floor": floor,
        "floor_name": floor_name,
        "ratio": ratio,
        "goal": goal,
        "goal_met": goal_met,
        "goal_op": goal_op,
        "goal_value": goal_value,
        "goal_on": goal_on if goal is not None else None,
        "note": note,
    }
    if series is not None:
        result["series"] = series
        result["concurrency"] = concurrency
    return result


def add_json_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json-out", type=Path, metavar="PATH", help="also write the results there as a JSON list of rows"
    )


def write_json(path: Path | None, rows: list[dict[str, Any]]) -> None:
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(rows, indent=2, ensure_ascii=False) + "\n")


def parse_levels(text: str) -> list[int]:
    """``"1,2,4"`` -> ``[1, 2, 4]`` (argparse type of the ``--sweep`` options)."""
    levels = [int(part) for part in text.split(",") if part.strip()]
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError("concurrency levels are positive integers, e.g. 1,2,4,8,16")
    return levels
