"""Rule-engine benchmark: one compiled evaluation of the reference flag, beside its floor.

Reference flag: three rules (a segment, a regex, a numeric comparison) and a 25/75 split fallthrough.
``matches`` runs on RE2 (linear time; about 0.6 µs a call, against 0.1 µs for Python's backtracking
``re``) and the process remembers the answers for recent short attributes (a bounded memo shared by
every pattern), so the rows that repeat one context measure the memo; "a new email each call"
measures RE2 itself.
The floor is a plain dict lookup plus one mmh3 hash, run by the same loop in the same process.
Each figure is the median over repeats of (time of a loop of N calls) / N.

Run: ``.venv/bin/python -m benchmarks.rule_engine_bench`` (or ``task bench``); ``--json-out PATH`` also
writes the rows as JSON (``benchmarks/results.py``).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from collections.abc import Callable
from typing import Any

import mmh3

from benchmarks.results import add_json_argument, row, write_json
from flagyard.rule_engine import FlagSet, FlagType, load_flagset

GOAL_NS = 1000.0

REFERENCE_FLAG: dict[str, Any] = {
    "key": "reference",
    "type": "boolean",
    "variants": {"on": True, "off": False},
    "off_variant": "off",
    "salt": "f3a9",
    "rules": [
        {"id": "beta-users", "clauses": [{"operator": "segment_match", "values": ["beta"]}], "variant": "on"},
        {
            "id": "staff",
            "clauses": [{"attribute": "email", "operator": "matches", "values": [r"@example\.com$"]}],
            "variant": "on",
        },
        {
            "id": "seniors",
            "clauses": [{"attribute": "age", "operator": "gte", "values": [65]}],
            "variant": "off",
        },
    ],
    "default_split": {"variations": [{"variant": "on", "weight": 2500}, {"variant": "off", "weight": 7500}]},
}
BETA_SEGMENT: dict[str, Any] = {
    "key": "beta",
    "included": ["u-vip"],
    "rules": [{"clauses": [{"attribute": "country", "operator": "in", "values": ["DE", "AT", "CH"]}]}],
}
CONTEXTS: dict[str, dict[str, Any]] = {
    "fallthrough to split (all 3 rules miss)": {
        "targeting_key": "u-123",
        "country": "FR",
        "email": "bob@corp.io",
        "age": 30,
    },
    "rule 1 matches (segment)": {"targeting_key": "u-7", "country": "DE", "email": "x@y.io", "age": 30},
    "rule 2 matches (regex)": {
        "targeting_key": "u-8",
        "country": "FR",
        "email": "amy@example.com",
        "age": 30,
    },
}


def reference_flagset(filler_flags: int = 0) -> FlagSet:
    fillers = [
        {**REFERENCE_FLAG, "key": f"filler-{i}", "salt": f"s{i}"} for i in range(max(0, filler_flags - 1))
    ]
    return load_flagset({"flags": [REFERENCE_FLAG, *fillers], "segments": [BETA_SEGMENT]})


def per_call_ns(loop: Callable[[int], None], n: int, repeats: int) -> float:
    gc.collect()
    gc.disable()
    try:
        loop(n // 10)
        samples = []
        for _ in range(repeats):
            start = time.perf_counter_ns()
            loop(n)
            samples.append((time.perf_counter_ns() - start) / n)
    finally:
        gc.enable()
    return statistics.median(samples)


def evaluation_loop(flagset: FlagSet, context: dict[str, Any]) -> Callable[[int], None]:
    evaluate = flagset.evaluate
    boolean = FlagType.BOOLEAN

    def loop(n: int) -> None:
        for _ in range(n):
            evaluate("reference", False, context, boolean)

    return loop


def distinct_emails_loop(flagset: FlagSet) -> Callable[[int], None]:
    """The regex rule hit with an email never seen before."""
    evaluate = flagset.evaluate
    boolean = FlagType.BOOLEAN
    contexts = [
        {"targeting_key": "u-8", "country": "FR", "email": f"user{i}@example.com", "age": 30}
        for i in range(200_000)
    ]

    def loop(n: int) -> None:
        for context in contexts[:n]:
            evaluate("reference", False, context, boolean)

    return loop


def floor_loop(n: int) -> None:
    table = {"reference": 1}
    hash32 = mmh3.hash
    for _ in range(n):
        table.get("reference")
        hash32("f3a9:reference:u-123", 0, False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=100_000, help="calls per timed loop")
    parser.add_argument("--repeats", type=int, default=9)
    add_json_argument(parser)
    args = parser.parse_args()

    floor = per_call_ns(floor_loop, args.n, args.repeats)
    floor_name = "dict lookup + one mmh3 hash"
    rows = []
    print(f"{'case':<44} {'median ns':>10} {'floor ns':>9} {'ratio':>6} {'goal ns':>8}")
    print(f"{'floor: dict lookup + one mmh3 hash':<44} {floor:>10.0f}")
    flagset = reference_flagset(10)
    for name, context in CONTEXTS.items():
        result = flagset.evaluate("reference", False, context, FlagType.BOOLEAN)
        assert not result.is_error, result
        ns = per_call_ns(evaluation_loop(flagset, context), args.n, args.repeats)
        print(f"{name:<44} {ns:>10.0f} {floor:>9.0f} {ns / floor:>6.1f} {GOAL_NS:>8.0f}")
        rows.append(
            row(
                f"rule engine: reference flag, {name}",
                ns,
                "ns",
                floor,
                floor_name,
                goal_op="<=",
                goal_value=GOAL_NS,
                note="median per evaluation, 10 flags loaded",
            )
        )
    ns = per_call_ns(distinct_emails_loop(flagset), min(args.n, 200_000), args.repeats)
    name = "rule 2 (regex), a new email each call"
    print(f"{name:<44} {ns:>10.0f} {floor:>9.0f} {ns / floor:>6.1f} {GOAL_NS:>8.0f}")
    rows.append(
        row(
            f"rule engine: reference flag, {name}",
            ns,
            "ns",
            floor,
            floor_name,
            goal_op="<=",
            goal_value=GOAL_NS,
            note="median per evaluation, a new subject each time",
        )
    )
    worst = CONTEXTS["fallthrough to split (all 3 rules miss)"]
    print("\nflatness: fallthrough case with N flags loaded")
    for count in (10, 1_000, 10_000):
        ns = per_call_ns(evaluation_loop(reference_flagset(count), worst), args.n, args.repeats)
        print(f"{count:>6} flags {ns:>10.0f} ns")
        rows.append(
            row(
                f"rule engine: fallthrough with {count:,} flags loaded",
                ns,
                "ns",
                floor,
                floor_name,
                goal_op="<=",
                goal_value=GOAL_NS,
                note="flatness: cost per evaluation vs flags loaded",
            )
        )
    write_json(args.json_out, rows)


if __name__ == "__main__":
    main()
