"""SDK in-process evaluation: the reference flag through ``client.boolean`` and through OpenFeature.

Offline mode evaluates like local mode (a compiled FlagSet in process); local mode also counts each
evaluation for reporting, measured here as "with counting" (the reporter never sends during the run).
The floor is a plain dict lookup, run by the same loop in the same process.

OpenFeature: the client over our provider and the client over OpenFeature's NoOpProvider run in
alternation; "added over NoOpProvider" is their difference (goal ≤ 1 µs, issue 18), and the provider's
own ``resolve_boolean_details`` is shown beside ``client.details`` (the same evaluation without the
provider's conversions). flagd: ``client.boolean`` over a flagd file beside the same logic as a native
file (goal ≤ 1.25×).

Run: ``.venv/bin/python -m benchmarks.sdk_bench`` (or ``task bench``); ``--json-out PATH`` also writes the
rows as JSON (``benchmarks/results.py``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

from openfeature import api
from openfeature.evaluation_context import EvaluationContext
from openfeature.provider.no_op_provider import NoOpProvider

from benchmarks.results import add_json_argument, row, write_json
from benchmarks.rule_engine_bench import (
    BETA_SEGMENT,
    CONTEXTS,
    FLAGD_DOCUMENT,
    FLAGD_GOAL_RATIO,
    FLAGD_NATIVE_FLAG,
    REFERENCE_FLAG,
    alternating_ns,
    per_call_ns,
)
from flagyard import FlagyardClient, FlagyardProvider
from flagyard.rule_engine import FlagType
from flagyard.sdk._report import EvaluationReporter

GOALS_NS = {
    "client.boolean": 1500.0,
    "client.boolean with counting": 1500.0,
    "OpenFeature get_boolean_value": 4000.0,
}
OF_ADDED_GOAL_NS = 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=7)
    add_json_argument(parser)
    args = parser.parse_args()
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "flags.json"
        path.write_text(json.dumps({"flags": [REFERENCE_FLAG], "segments": [BETA_SEGMENT]}))
        client = FlagyardClient.offline(path)
        counting = FlagyardClient.offline(path)
        counting._reporter = EvaluationReporter(
            "127.0.0.1:9", "fy_sdk_bench", interval=3600
        )  # as local mode has
        api.set_provider_and_wait(FlagyardProvider(client=client))
        of_client = api.get_client()
        api.set_provider(NoOpProvider(), domain="floor")
        of_floor_client = api.get_client(domain="floor")

        table = {"reference": True}

        def floor(n: int) -> None:
            for _ in range(n):
                table.get("reference")

        floor_ns = per_call_ns(floor, args.n, args.repeats)
        first = next(iter(CONTEXTS.values()))
        of_floor_context = EvaluationContext(first["targeting_key"], {"country": "FR"})
        of_floor_ns = per_call_ns(
            lambda n: _of_loop(of_floor_client, of_floor_context, n), args.n, args.repeats
        )
        floors = {
            "client.boolean": floor_ns,
            "client.boolean with counting": floor_ns,
            "OpenFeature get_boolean_value": of_floor_ns,
        }
        floor_names = {
            "client.boolean": "dict lookup",
            "client.boolean with counting": "dict lookup",
            "OpenFeature get_boolean_value": "OpenFeature client over its NoOpProvider",
        }
        print(f"{'case':<60} {'median ns':>10} {'floor ns':>9} {'ratio':>6} {'goal ns':>8}")
        print(f"{'floor: dict lookup':<60} {floor_ns:>10.0f}")
        print(f"{'floor: OpenFeature client over its NoOpProvider':<60} {of_floor_ns:>10.0f}")
        for name, context in CONTEXTS.items():
            of_context = EvaluationContext(
                context["targeting_key"], {k: v for k, v in context.items() if k != "targeting_key"}
            )
            loops: dict[str, Callable[[int], None]] = {
                "client.boolean": lambda n, c=context: _client_loop(client, c, n),  # type: ignore[misc]
                "client.boolean with counting": lambda n, c=context: _client_loop(counting, c, n),  # type: ignore[misc]
                "OpenFeature get_boolean_value": lambda n, c=of_context: _of_loop(of_client, c, n),  # type: ignore[misc]
            }
            for label, loop in loops.items():
                ns = per_call_ns(loop, args.n, args.repeats)
                case = f"{label}, {name}"
                base = floors[label]
                print(f"{case:<60} {ns:>10.0f} {base:>9.0f} {ns / base:>6.1f} {GOALS_NS[label]:>8.0f}")
                rows.append(
                    row(
                        f"SDK local: {case}",
                        ns,
                        "ns",
                        base,
                        floor_names[label],
                        goal_op="<=",
                        goal_value=GOALS_NS[label],
                        note="median per call, reference flag, offline mode",
                    )
                )
        print("\nOpenFeature: our provider against NoOpProvider, alternating (same run)")
        provider = FlagyardProvider(client=client)
        for name, context in CONTEXTS.items():
            of_context = EvaluationContext(
                context["targeting_key"], {k: v for k, v in context.items() if k != "targeting_key"}
            )
            ours, noop, resolve, details = alternating_ns(
                [
                    lambda n, c=of_context: _of_loop(of_client, c, n),  # type: ignore[misc]
                    lambda n, c=of_context: _of_loop(of_floor_client, c, n),  # type: ignore[misc]
                    lambda n, c=of_context: _resolve_loop(provider, c, n),  # type: ignore[misc]
                    lambda n, c=context: _details_loop(client, c, n),  # type: ignore[misc]
                ],
                args.n,
                args.repeats,
            )
            added = ours - noop
            print(
                f"{name:<44} get_boolean_value {ours:>6.0f} ns, NoOpProvider {noop:>6.0f} ns: "
                f"+{added:.0f} ns (goal ≤ {OF_ADDED_GOAL_NS:.0f}); resolve_boolean_details {resolve:.0f} ns "
                f"vs client.details {details:.0f} ns"
            )
            rows.append(
                row(
                    f"SDK local: OpenFeature get_boolean_value, added over NoOpProvider, {name}",
                    added,
                    "ns",
                    noop,
                    "OpenFeature client over its NoOpProvider",
                    goal_op="<=",
                    goal_value=OF_ADDED_GOAL_NS,
                    note="our provider's call minus NoOpProvider's, alternating; includes the evaluation",
                )
            )
            rows.append(
                row(
                    f"SDK local: FlagyardProvider.resolve_boolean_details, {name}",
                    resolve,
                    "ns",
                    details,
                    "client.details (the same evaluation, no OpenFeature types)",
                    note="the difference is the provider's context and details conversion",
                )
            )
        api.shutdown()

        print(f"\nflagd file vs native file through client.boolean (goal ≤ {FLAGD_GOAL_RATIO}×)")
        native_path, flagd_path = Path(tmp) / "native.json", Path(tmp) / "flagd.json"
        native_path.write_text(json.dumps({"flags": [FLAGD_NATIVE_FLAG], "segments": [BETA_SEGMENT]}))
        flagd_path.write_text(json.dumps(FLAGD_DOCUMENT))
        native_client, flagd_client = FlagyardClient.offline(native_path), FlagyardClient.offline(flagd_path)
        for name, context in CONTEXTS.items():
            assert native_client.boolean("reference", True, context) == flagd_client.boolean(
                "reference", False, context
            )
            ns_flagd, ns_native = alternating_ns(
                [
                    lambda n, c=context: _client_loop(flagd_client, c, n),  # type: ignore[misc]
                    lambda n, c=context: _client_loop(native_client, c, n),  # type: ignore[misc]
                ],
                args.n,
                args.repeats,
            )
            ratio = ns_flagd / ns_native
            print(f"{name:<44} flagd {ns_flagd:>6.0f} ns, native {ns_native:>6.0f} ns: {ratio:.2f}×")
            rows.append(
                row(
                    f"SDK local: client.boolean, flagd file vs native file, {name}",
                    ns_flagd,
                    "ns",
                    ns_native,
                    "the same logic in a native file, same run",
                    goal_op="<=",
                    goal_value=FLAGD_GOAL_RATIO,
                    goal_on="ratio",
                    note="median per call, alternating; the reference flag with ends_with for its regex",
                )
            )
    write_json(args.json_out, rows)


def _client_loop(client: FlagyardClient, context: dict[str, object], n: int) -> None:
    boolean = client.boolean
    for _ in range(n):
        boolean("reference", False, context)


def _resolve_loop(provider: FlagyardProvider, context: EvaluationContext, n: int) -> None:
    resolve = provider.resolve_boolean_details
    for _ in range(n):
        resolve("reference", False, context)


def _details_loop(client: FlagyardClient, context: dict[str, object], n: int) -> None:
    details = client.details
    boolean = FlagType.BOOLEAN
    for _ in range(n):
        details("reference", False, context, boolean)


def _of_loop(client: api.OpenFeatureClient, context: EvaluationContext, n: int) -> None:
    get = client.get_boolean_value
    for _ in range(n):
        get("reference", False, context)


if __name__ == "__main__":
    main()
