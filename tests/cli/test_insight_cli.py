"""``flagyard explain`` and ``flagyard preview`` against a real control plane (uvicorn over TCP,
PostgreSQL, Redis), and how ``explain`` prints a full trace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from admin_cli_stack import Cli, new_project

from flagyard.cli.insight_cmd import explanation_lines
from flagyard.rule_engine import EvaluationResult, Reason
from flagyard.rule_engine.explain import (
    BucketRange,
    ClauseTrace,
    Explanation,
    FlagTrace,
    PrerequisiteTrace,
    RuleTrace,
    SegmentTrace,
    SplitTrace,
)

EUROPE = {
    "enabled": True,
    "default_variant": "a",
    "rules": [
        {
            "id": "europe",
            "clauses": [{"attribute": "country", "operator": "in", "values": ["de", "fr"]}],
            "variant": "b",
        }
    ],
}
GERMANY = {
    "rules": [
        {
            "id": "germany",
            "clauses": [{"attribute": "country", "operator": "eq", "values": ["de"]}],
            "variant": "b",
        }
    ]
}


@pytest.fixture
def project(cli: Cli, tmp_path: Path) -> str:
    """A project (dev, prod) whose string flag checkout serves b to Europe in prod, a to the rest."""
    key = new_project(cli)
    variants = json.dumps({"a": "A", "b": "B"})
    cli.ok("flags", "create", "checkout", "-p", key, "--type", "string", "--variants", variants)
    rules = tmp_path / "europe.json"
    rules.write_text(json.dumps(EUROPE))
    cli.ok("flags", "set-rules", "checkout", str(rules), "-p", key, "-e", "prod")
    return key


def test_explain__context__prints_the_result_and_json_has_it(cli: Cli, project: str) -> None:
    context = json.dumps({"targeting_key": "u1", "country": "de"})

    printed = cli.ok("explain", "checkout", "-p", project, "-e", "prod", "--context", context).stdout
    answer = cli.json("explain", "checkout", "-p", project, "-e", "prod", "--context", context)

    assert printed.splitlines()[0] == (
        'checkout in prod: "B" (variant b, reason TARGETING_MATCH, rule europe, version 2)'
    )
    assert answer["result"]["variant"] == "b"
    assert answer["result"]["rule_id"] == "europe"
    assert answer["trace"]["served_by"] == "rule"
    assert [(r["id"], r["matched"]) for r in answer["trace"]["rules"]][-1] == ("europe", True)
    assert "  rule 0 europe: matched" in printed.splitlines()


def test_explain__not_an_object__refused_before_sending(cli: Cli, project: str) -> None:
    result = cli.run("explain", "checkout", "-p", project, "-e", "prod", "--context", "[1]")

    assert result.exit_code != 0
    assert "--context: expected a JSON object" in result.stderr


def test_preview__config_and_contexts_files__counts_and_transitions(
    cli: Cli, project: str, tmp_path: Path
) -> None:
    config = tmp_path / "germany.json"
    config.write_text(json.dumps(GERMANY))
    contexts = tmp_path / "contexts.json"
    contexts.write_text(json.dumps([{"country": c, "targeting_key": c} for c in ("de", "fr", "fr", "us")]))

    printed = cli.ok(
        "preview",
        "checkout",
        "-p",
        project,
        "-e",
        "prod",
        "--config",
        f"@{config}",
        "--contexts",
        f"@{contexts}",
    ).stdout
    answer = cli.json(
        "preview",
        "checkout",
        "-p",
        project,
        "-e",
        "prod",
        "--config",
        json.dumps(GERMANY),
        "--contexts",
        f"@{contexts}",
    )

    assert "over 4 supplied contexts: 2 would change variant, 2 would not" in printed
    assert answer["transitions"] == [{"from": "b", "to": "a", "count": 2}]
    assert (answer["changed"], answer["unchanged"]) == (2, 2)
    row = next(line for line in printed.splitlines() if line.split()[:2] == ["b", "a"])
    assert row.split() == ["b", "a", "2"]
    assert cli.json("flags", "show", "checkout", "-p", project)["version"] == 2  # nothing saved


def test_preview__no_sample__zero_with_the_note(cli: Cli, project: str) -> None:
    result = cli.ok("preview", "checkout", "-p", project, "-e", "prod", "--config", json.dumps(GERMANY))

    assert "over 0 sample contexts: 0 would change variant" in result.stdout
    assert "holds no sample" in result.stderr


def test_preview__invalid_config__the_servers_pointer(cli: Cli, project: str) -> None:
    bad = json.dumps(
        {"rules": [{"id": "r", "clauses": [{"attribute": "x", "operator": "eq"}], "variant": "z"}]}
    )

    result = cli.run("preview", "checkout", "-p", project, "-e", "prod", "--config", bad, "--contexts", "[]")

    assert result.exit_code != 0
    assert "/config/rules/0/variant" in result.stderr


def test_explanation_lines__full_trace__each_decision_on_its_line() -> None:
    clause = ClauseTrace("in", "country", ["de", "fr"], False, "us", False)
    segment = SegmentTrace("beta", True, "included")
    matching = ClauseTrace("segment_match", None, ["beta"], False, None, True, [segment])
    split = SplitTrace(
        "targeting_key", "u1", 4211, 10000, "a", [BucketRange("a", 0, 5000), BucketRange("b", 5000, 10000)]
    )
    auth = FlagTrace("auth", 1, True, "fallthrough", "on", "DEFAULT")
    trace = FlagTrace(
        "checkout",
        3,
        True,
        "rule",
        "a",
        "SPLIT",
        [PrerequisiteTrace("auth", "on", "evaluated", True, auth)],
        [RuleTrace(0, "europe", False, [clause]), RuleTrace(1, "beta", True, [matching])],
        None,
        split,
    )
    result = EvaluationResult("A", "a", Reason.SPLIT, rule_id="beta", version=3)

    lines = explanation_lines("checkout", "prod", Explanation(result, trace).to_dict())

    assert lines == [
        'checkout in prod: "A" (variant a, reason SPLIT, rule beta, version 3)',
        "checkout (version 3, on): served by rule → a (SPLIT)",
        "prerequisites:",
        "  auth must serve on: evaluated → met",
        "    auth (version 1, on): served by fallthrough → on (DEFAULT)",
        "rules:",
        "  rule 0 europe: no match",
        '    country in ["de","fr"] → "us" → no',
        "  rule 1 beta: matched",
        '    segment_match ["beta"] → matched',
        "      segment beta: included → in",
        'split by targeting_key = "u1": bucket 4211 of 10000 → a',
        "  ranges: a [0, 5000), b [5000, 10000)",
    ]
