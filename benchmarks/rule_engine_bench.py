"""Rule-engine benchmark: one compiled evaluation of the reference flag, beside its floor.

Reference flag: three rules (a segment, a regex, a numeric comparison) and a 25/75 split fallthrough.
``matches`` runs on RE2 (linear time; about 0.6 µs a call, against 0.1 µs for Python's backtracking
``re``) and the process remembers the answers for recent short attributes (a bounded memo shared by
every pattern), so the rows that repeat one context measure the memo; "a new email each call"
measures RE2 itself.
The floor is a plain dict lookup plus one mmh3 hash, run by the same loop in the same process.
Each figure is the median over repeats of (time of a loop of N calls) / N.

flagd format: the reference flag's logic written as a flagd file (the regex rule becomes ``ends_with``,
flagd having no regex operator; the segment an ``in`` on the targeting key and the country; the split
``fractional`` over the same hashed string), beside the same logic as native rules, measured in
alternation in the same run (goal: within 1.25× of native). Also, informative, the flag as
``export_flagd`` writes it (guards that make JsonLogic match native semantics on lists and odd types;
also compiled by ``rule_engine.fastlogic``, partly through the generic JsonLogic functions).

Memory: bytes per compiled flag (tracemalloc over 2,000 flags) for the reference flag as loaded, the same
compiled keeping no source (as the data plane's L1 holds it) and its flagd form loaded from a file's text,
each beside the bytes of the definition's compact JSON.

Run: ``.venv/bin/python -m benchmarks.rule_engine_bench`` (or ``task bench``); ``--json-out PATH`` also
writes the rows as JSON (``benchmarks/results.py``).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import mmh3

from benchmarks.results import add_json_argument, row, write_json
from flagyard.rule_engine import (
    Flag,
    FlagSet,
    FlagType,
    compile_flag,
    export_flagd,
    load_flagd,
    load_flagset,
)

GOAL_NS = 1000.0
FLAGD_GOAL_RATIO = 1.25

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


FLAGD_NATIVE_FLAG: dict[str, Any] = {
    **REFERENCE_FLAG,
    "rules": [
        REFERENCE_FLAG["rules"][0],
        {
            "id": "staff",
            "clauses": [{"attribute": "email", "operator": "ends_with", "values": ["@example.com"]}],
            "variant": "on",
        },
        REFERENCE_FLAG["rules"][2],
    ],
}
"""The reference flag with its regex rule as ``ends_with``: logic a flagd file can state."""
FLAGD_DOCUMENT: dict[str, Any] = {
    "flags": {
        "reference": {
            "state": "ENABLED",
            "variants": {"on": True, "off": False},
            "defaultVariant": "off",
            "targeting": {
                "if": [
                    {
                        "or": [
                            {"in": [{"var": "targetingKey"}, ["u-vip"]]},
                            {"in": [{"var": "country"}, ["DE", "AT", "CH"]]},
                        ]
                    },
                    "on",
                    {"ends_with": [{"var": "email"}, "@example.com"]},
                    "on",
                    {">=": [{"var": "age"}, 65]},
                    "off",
                    {
                        "fractional": [
                            {"cat": ["f3a9:reference:", {"var": "targetingKey"}]},
                            ["on", 2500],
                            ["off", 7500],
                        ]
                    },
                ]
            },
        }
    }
}
"""``FLAGD_NATIVE_FLAG`` as people write it in flagd: same variants served for every context."""


def flagd_pair() -> tuple[FlagSet, FlagSet, FlagSet]:
    """The native flag, the same logic as a flagd file, and the native flag through ``export_flagd``."""
    native = {"flags": [FLAGD_NATIVE_FLAG], "segments": [BETA_SEGMENT]}
    return load_flagset(native), load_flagd(FLAGD_DOCUMENT), load_flagd(export_flagd(native))


def alternating_ns(loops: list[Callable[[int], None]], n: int, repeats: int) -> list[float]:
    """Median per-call time of each loop, the loops run in turn within every repeat (the order rotating),
    so a load that changes during the run weighs on them alike."""
    samples: list[list[float]] = [[] for _ in loops]
    gc.collect()
    gc.disable()
    try:
        for loop in loops:
            loop(n // 10)
        for r in range(repeats):
            for i in range(len(loops)):
                k = (i + r) % len(loops)
                start = time.perf_counter_ns()
                loops[k](n)
                samples[k].append((time.perf_counter_ns() - start) / n)
    finally:
        gc.enable()
    return [statistics.median(s) for s in samples]


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


RULE_COUNTS = (1, 10, 100, 1_000)
MEMORY_FLAGS = 2_000


def rules_flagset(rules: int) -> FlagSet:
    """One flag of ``rules`` rules, each an ``in`` test on the country (rule i matches country ``C<i>``)."""
    flag = {
        "key": "reference",
        "type": "boolean",
        "variants": {"on": True, "off": False},
        "off_variant": "off",
        "default_variant": "off",
        "rules": [
            {
                "id": f"r{i}",
                "clauses": [{"attribute": "country", "operator": "in", "values": [f"C{i}"]}],
                "variant": "on",
            }
            for i in range(rules)
        ],
    }
    return load_flagset({"flags": [flag]})


def traced_bytes(build: Callable[[], Any], count: int) -> float:
    """Bytes Python allocates (tracemalloc) and keeps, per item, while ``build`` runs (what it returns
    is kept until measured; garbage is collected first)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return (after - before) / count


def memory_definitions(count: int = MEMORY_FLAGS) -> list[dict[str, Any]]:
    return [{**REFERENCE_FLAG, "key": f"mem-{i}", "salt": f"m{i}"} for i in range(count)]


def bytes_per_compiled_flag(count: int = MEMORY_FLAGS) -> float:
    """Bytes Python allocates (tracemalloc) per reference flag compiled into a FlagSet, what it keeps of
    its definition (``source``) included (the definition dicts it is loaded from are built before
    tracing starts)."""
    document = {"flags": memory_definitions(count), "segments": [BETA_SEGMENT]}

    def build() -> FlagSet:
        flagset = load_flagset(document)
        assert len(flagset.flags) == count
        return flagset

    return traced_bytes(build, count)


def bytes_per_compiled_flag_without_source(count: int = MEMORY_FLAGS) -> float:
    """The same reference flags compiled keeping no ``source`` (as the data plane's L1 holds them); the
    validated models are built before tracing starts."""
    models = [Flag.model_validate(d) for d in memory_definitions(count)]
    return traced_bytes(lambda: [compile_flag(m, keep_source=False) for m in models], count)


def bytes_per_definition_json(count: int = MEMORY_FLAGS) -> float:
    """Floor: a ``bytes`` object holding each reference flag's compact JSON (defaults left out)."""
    definitions = [Flag.model_validate(d) for d in memory_definitions(count)]
    return traced_bytes(
        lambda: [d.model_dump_json(exclude_defaults=True).encode() for d in definitions], count
    )


def flagd_memory_text(count: int = MEMORY_FLAGS) -> str:
    """A flagd document of ``count`` copies of the reference flag's flagd form (JsonLogic targeting)."""
    flag = FLAGD_DOCUMENT["flags"]["reference"]
    return json.dumps({"flags": {f"mem-{i}": flag for i in range(count)}}, separators=(",", ":"))


def bytes_per_compiled_flagd_flag(count: int = MEMORY_FLAGS) -> float:
    """Bytes per flagd JsonLogic flag loaded from the document's JSON text: the parsed document is
    garbage once loaded, but for what the compiled flags keep of it."""
    text = flagd_memory_text(count)

    def build() -> FlagSet:
        flagset = load_flagd(text)
        assert len(flagset.flags) == count
        return flagset

    return traced_bytes(build, count)


def bytes_per_flagd_json(count: int = MEMORY_FLAGS) -> float:
    """Floor: a ``str`` holding each flagd flag object's compact JSON."""
    flag = FLAGD_DOCUMENT["flags"]["reference"]
    return traced_bytes(lambda: [json.dumps(flag, separators=(",", ":")) for _ in range(count)], count)


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
    native, flagd, exported = flagd_pair()
    print(f"\nflagd format vs native rules (same logic; goal ≤ {FLAGD_GOAL_RATIO}× native)")
    print(f"{'case':<44} {'flagd ns':>10} {'native ns':>9} {'ratio':>6} {'export ns':>9}")
    for name, context in CONTEXTS.items():
        flagsets = (native, flagd, exported)
        answers = {fs.evaluate("reference", False, context, FlagType.BOOLEAN).value for fs in flagsets}
        assert len(answers) == 1, (name, answers)
        ns_native, ns_flagd, ns_export = alternating_ns(
            [evaluation_loop(fs, context) for fs in flagsets], args.n, args.repeats
        )
        ratio = ns_flagd / ns_native
        print(f"{name:<44} {ns_flagd:>10.0f} {ns_native:>9.0f} {ratio:>6.2f} {ns_export:>9.0f}")
        rows.append(
            row(
                f"rule engine: flagd file vs native rules, {name}",
                ns_flagd,
                "ns",
                ns_native,
                "the same logic as native rules, same run",
                goal_op="<=",
                goal_value=FLAGD_GOAL_RATIO,
                goal_on="ratio",
                note="median per evaluation; the reference flag with ends_with for its regex",
            )
        )
        rows.append(
            row(
                f"rule engine: export_flagd of the flag, {name}",
                ns_export,
                "ns",
                ns_native,
                "the same logic as native rules, same run",
                note="informative: export_flagd's guarded JsonLogic of the same flag; no goal",
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
    print("\ncost vs number of rules in one flag (each rule an `in` test on one attribute)")
    for count in RULE_COUNTS:
        flagset = rules_flagset(count)
        n = max(1_000, args.n // max(1, count // 10))
        for case, country in (("last rule matches", f"C{count - 1}"), ("no rule matches", "none")):
            context = {"targeting_key": "u-1", "country": country}
            expected = case == "last rule matches"
            assert flagset.evaluate("reference", False, context, FlagType.BOOLEAN).value is expected
            ns = per_call_ns(evaluation_loop(flagset, context), n, args.repeats)
            print(f"{count:>6} rules, {case:<20} {ns:>10.0f} ns  ({ns / count:,.0f} ns per rule)")
            rows.append(
                row(
                    f"rule engine: {count:,} rules, {case}",
                    ns,
                    "ns",
                    floor,
                    floor_name,
                    note="informative: what a big flag costs per evaluation",
                )
            )
    print(f"\nmemory per compiled flag ({MEMORY_FLAGS:,} flags, tracemalloc)")
    print(f"{'case':<60} {'bytes':>8} {'floor':>7} {'ratio':>6}")
    json_floor = bytes_per_definition_json()
    flagd_floor = bytes_per_flagd_json()
    for name, short, figure, floor_bytes, floor_text, note in (
        (
            "reference flag (load_flagset)",
            "reference flag",
            bytes_per_compiled_flag(),
            json_floor,
            "its definition's compact JSON as bytes",
            "3 rules, a split; its definition kept as compact JSON (source)",
        ),
        (
            "reference flag, keeping no source (data-plane L1)",
            "reference flag, no source (data-plane L1)",
            bytes_per_compiled_flag_without_source(),
            json_floor,
            "its definition's compact JSON as bytes",
            "compile_flag(keep_source=False): the closures and the results built once",
        ),
        (
            "flagd JsonLogic flag, loaded from its file's text",
            "flagd JsonLogic flag",
            bytes_per_compiled_flagd_flag(),
            flagd_floor,
            "its flag object's compact JSON as str",
            "the reference flag's flagd form (if/or/in/ends_with/>=/fractional)",
        ),
    ):
        print(f"{name:<60} {figure:>8,.0f} {floor_bytes:>7,.0f} {figure / floor_bytes:>6.1f}")
        rows.append(
            row(
                f"rule engine: bytes per compiled {short}",
                figure,
                "bytes",
                floor_bytes,
                floor_text,
                note=f"tracemalloc over {MEMORY_FLAGS:,} flags; {note}",
            )
        )
    write_json(args.json_out, rows)


if __name__ == "__main__":
    main()
