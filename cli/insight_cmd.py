"""``flagyard explain`` and ``flagyard preview``: why a context gets what it gets, and what a change of a
flag's configuration would change, asked of the control plane (which evaluates in the environment as
served; neither writes anything)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from .admin import EnvOption, ProjectOption, connect, read_document
from .exceptions import InputError
from .output import Column
from .rest import path

FlagArg = Annotated[str, typer.Argument(help="The flag's key.", show_default=False)]


def json_value(value: str, option: str) -> Any:
    """An option's JSON: inline, or ``@file`` for a file's (JSON, or YAML with PyYAML)."""
    if value.startswith("@"):
        return read_document(Path(value[1:]))
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise InputError(f"{option}: not valid JSON ({exc}); give JSON or @file") from exc


def json_object(value: str, option: str) -> dict[str, Any]:
    parsed = json_value(value, option)
    if not isinstance(parsed, dict):
        raise InputError(f"{option}: expected a JSON object, not {type(parsed).__name__}")
    return parsed


def _show(value: Any) -> str:
    return orjson.dumps(value).decode()


def _clause_lines(clause: dict[str, Any], indent: str) -> list[str]:
    negate = "not " if clause["negate"] else ""
    subject = "" if clause["attribute"] is None else clause["attribute"] + " "
    seen = "" if clause["attribute"] is None else f" → {_show(clause['value'])}"
    outcome = "matched" if clause["matched"] else "no"
    lines = [f"{indent}{subject}{negate}{clause['operator']} {_show(clause['values'])}{seen} → {outcome}"]
    for segment in clause["segments"]:
        lines += _segment_lines(segment, indent + "  ")
    return lines


def _rule_lines(rule: dict[str, Any], indent: str) -> list[str]:
    name = f" {rule['id']}" if rule["id"] is not None else ""
    lines = [f"{indent}rule {rule['index']}{name}: {'matched' if rule['matched'] else 'no match'}"]
    for clause in rule["clauses"]:
        lines += _clause_lines(clause, indent + "  ")
    return lines


def _segment_lines(segment: dict[str, Any], indent: str) -> list[str]:
    decision = segment["decision"]
    if decision == "rule":
        decision = f"rule {segment['rule']}"
    lines = [f"{indent}segment {segment['key']}: {decision} → {'in' if segment['matched'] else 'out'}"]
    for rule in segment["rules"]:
        lines += _rule_lines(rule, indent + "  ")
    return lines


def _split_lines(split: dict[str, Any], indent: str) -> list[str]:
    value = "absent" if split["value"] is None else _show(split["value"])
    bucket = "none" if split["bucket"] is None else f"{split['bucket']} of {split['total']}"
    ranges = ", ".join(f"{r['variant']} [{r['start']}, {r['end']})" for r in split["ranges"])
    return [
        f"{indent}split by {split['bucket_by']} = {value}: bucket {bucket} → {split['variant'] or '(none)'}",
        *([f"{indent}  ranges: {ranges}"] if ranges else []),
    ]


def trace_lines(trace: dict[str, Any], indent: str = "") -> list[str]:
    """A flag's trace as indented lines: prerequisites, rules (each clause: attribute operator values →
    the context's value → outcome, and the segments it tested), targeting, the split."""
    lines = [
        f"{indent}{trace['flag']} (version {trace['version']}, {'on' if trace['enabled'] else 'off'}): "
        f"served by {trace['served_by']} → {trace['variant'] or '(none)'} ({trace['reason']})"
    ]
    if trace["prerequisites"]:
        lines.append(f"{indent}prerequisites:")
        for prereq in trace["prerequisites"]:
            met = "met" if prereq["met"] else "not met"
            lines.append(
                f"{indent}  {prereq['flag']} must serve {prereq['variant']}: {prereq['state']} → {met}"
            )
            if prereq["trace"] is not None:
                lines += trace_lines(prereq["trace"], indent + "    ")
    if trace["rules"]:
        lines.append(f"{indent}rules:")
        for rule in trace["rules"]:
            lines += _rule_lines(rule, indent + "  ")
    targeting = trace["targeting"]
    if targeting is not None:
        lines.append(f"{indent}targeting returned {_show(targeting['result'])}")
        for segment in targeting["segments"]:
            lines += _segment_lines(segment, indent + "  ")
    if trace["split"] is not None:
        lines += _split_lines(trace["split"], indent)
    return lines


def explanation_lines(flag: str, env: str, explanation: dict[str, Any]) -> list[str]:
    """What ``flagyard explain`` prints: the result line, then the trace (when the server sent one)."""
    r = explanation["result"]
    line = f"{flag} in {env}: {_show(r['value'])} (variant {r['variant'] or '(none)'}, reason {r['reason']}"
    if r["rule_id"] is not None:
        line += f", rule {r['rule_id']}"
    if r["version"] is not None:
        line += f", version {r['version']}"
    line += ")"
    lines = [line]
    if r["error_code"] is not None:
        lines.append(f"error {r['error_code']}: {r['error_message']}")
    if explanation["trace"] is not None:
        lines += trace_lines(explanation["trace"])
    return lines


def explain_command(
    ctx: typer.Context,
    flag: FlagArg,
    project: ProjectOption,
    env: EnvOption,
    context: Annotated[
        str, typer.Option("--context", "-c", help="The evaluation context: a JSON object, or @file.")
    ],
    default: Annotated[
        str | None, typer.Option("--default", help="The caller's default value (JSON, or @file).")
    ] = None,
) -> None:
    """Evaluate a flag for a context as SDKs would in the environment, and show the whole decision."""
    with connect(ctx) as (rest, out):
        body: dict[str, Any] = {"context": json_object(context, "--context")}
        if default is not None:
            body["default"] = json_value(default, "--default")
        explanation = rest.post(
            path("projects", project, "flags", flag, "environments", env, "explain"), body
        )
        if out.json_mode:
            out.data(explanation)
            return
        for line in explanation_lines(flag, env, explanation):
            typer.echo(line)


TRANSITION_COLUMNS: list[Column] = [
    ("from", lambda t: t["from"] or "(none)"),
    ("to", lambda t: t["to"] or "(none)"),
    "count",
]


def preview_command(
    ctx: typer.Context,
    flag: FlagArg,
    project: ProjectOption,
    env: EnvOption,
    config: Annotated[
        str,
        typer.Option(
            "--config",
            help="The proposed change, as `flags set-rules` takes it: a JSON object, or @file (absent "
            "fields keep their value).",
        ),
    ],
    contexts: Annotated[
        str | None,
        typer.Option(
            "--contexts",
            help="A JSON array of contexts, or @file; default: the environment's sample of recently "
            "evaluated contexts.",
        ),
    ] = None,
) -> None:
    """Preview how many contexts a proposed configuration would switch to another variant (saves nothing)."""
    with connect(ctx) as (rest, out):
        body: dict[str, Any] = {"config": json_object(config, "--config")}
        if contexts is not None:
            given = json_value(contexts, "--contexts")
            if not isinstance(given, list):
                raise InputError(f"--contexts: expected a JSON array of objects, not {type(given).__name__}")
            body["contexts"] = given
        where = path("projects", project, "flags", flag, "environments", env, "preview")
        result = rest.post(where, body)
        if out.json_mode:
            out.data(result)
            return
        typer.echo(
            f"{flag} in {env}, over {result['contexts']} {result['source']} contexts: "
            f"{result['changed']} would change variant, {result['unchanged']} would not; "
            f"errors {result['errors_before']} now, {result['errors_after']} after"
        )
        if result["note"]:
            out.note(result["note"])
        if result["transitions"]:
            out.table(result["transitions"], TRANSITION_COLUMNS, title="changes of variant")
