"""Prometheus config and alert rules, checked and unit-tested by the real promtool, and tied to the runbook."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from ops_helpers import (
    PROMETHEUS_DIR,
    PROMTOOL,
    ROOT,
    RUNBOOK,
    alert_rules,
    dashboard_expressions,
    github_anchor,
    load_yaml,
)


def _promtool(*args: str) -> subprocess.CompletedProcess[str]:
    assert PROMTOOL.exists(), f"{PROMTOOL} is missing: run scripts/ensure-promtool (scripts/test does)"
    return subprocess.run(
        [str(PROMTOOL), *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize(
    "args",
    [
        ("check", "config", "deploy/prometheus/prometheus.yml"),
        ("check", "rules", "deploy/prometheus/alerts.yml"),
        ("test", "rules", "deploy/prometheus/alerts_test.yml"),
    ],
    ids=["check-config", "check-rules", "test-rules"],
)
def test_promtool__deploy_prometheus__succeeds(args: tuple[str, ...]) -> None:
    proc = _promtool(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout + proc.stderr


def test_alerts_test__every_alert__has_a_firing_and_a_quiet_case() -> None:
    tests = load_yaml(PROMETHEUS_DIR / "alerts_test.yml")["tests"]
    firing: set[str] = set()
    quiet: set[str] = set()
    for case in tests:
        for check in case.get("alert_rule_test", []):
            (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert len(names) >= 10
    assert names - firing == set()
    assert names - quiet == set()


def test_alerts__every_rule__has_severity_summary_and_a_runbook_section() -> None:
    anchors = {
        github_anchor(m.group(1)) for m in re.finditer(r"^#{2,3} (.+)$", RUNBOOK.read_text(), re.MULTILINE)
    }
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert (ROOT / path) == RUNBOOK, rule["alert"]
        assert anchor == github_anchor(rule["alert"]), rule["alert"]
        assert anchor in anchors, f"docs/runbook.md has no section {rule['alert']}"


def test_readme__links__the_runbook() -> None:
    assert "(docs/runbook.md)" in (ROOT / "README.md").read_text()


def test_dashboard__every_expression__parses_as_promql(tmp_path: Path) -> None:
    """Grafana's $__rate_interval replaced by a duration, each panel query must be valid PromQL: promtool
    checks them as recording rules."""
    expressions = [expr.replace("$__rate_interval", "5m") for expr in dashboard_expressions()]
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"flagyard:dashboard_query_{i}", "expr": expr}
                    for i, expr in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    proc = _promtool("check", "rules", str(path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in proc.stdout + proc.stderr
