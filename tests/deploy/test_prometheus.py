"""deploy/prometheus/ through promtool (from Debian's prometheus package, installed by
scripts/deploy-deps): the rules load, their unit tests pass, the scrape configuration is valid,
every dashboard query is valid PromQL, and what the code exports passes promtool's metric lint."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client import REGISTRY, generate_latest

from tests.deploy.ops import (
    RULE_TESTS,
    RULES,
    SCRAPE_CONFIG,
    code_metrics,
    dashboard,
    dashboard_exprs,
    load_yaml,
    promtool,
)


def run_promtool(*args: str, stdin: bytes | None = None, cwd: Path | None = None) -> str:
    done = subprocess.run(  # noqa: S603 - our own arguments
        [promtool(), *args], input=stdin, capture_output=True, cwd=cwd, timeout=60
    )
    output = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, output
    return output


def test_the_rules_load() -> None:
    output = run_promtool("check", "rules", str(RULES))
    assert "SUCCESS" in output


def test_the_alerts_fire_when_they_should_and_only_then() -> None:
    """promtool's unit tests of the rules (tests/deploy/distillguard.rules.test.yml)."""
    output = run_promtool("test", "rules", RULE_TESTS.name, cwd=RULE_TESTS.parent)
    assert "SUCCESS" in output


def test_the_scrape_configuration_is_valid_with_its_rules(tmp_path: Path) -> None:
    """The example prometheus.yml, checked in full (promtool also loads the rule files and the
    token file it names): copied beside the rules with the token file in a temporary place."""
    config = load_yaml(SCRAPE_CONFIG)
    token = tmp_path / "api.token"
    token.write_text("a-token\n")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    roles = {"worker", "api", "linker", "alerts"}  # every role that serves /metrics
    assert set(jobs) == {f"distillguard-{role}" for role in roles}
    jobs["distillguard-api"]["authorization"]["credentials_file"] = str(token)
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    shutil.copy(RULES, tmp_path / RULES.name)
    output = run_promtool(
        "check", "config", "--lint=all", "--lint-fatal", "prometheus.yml", cwd=tmp_path
    )
    assert "SUCCESS" in output


GRAFANA_RANGE = re.compile(r"\$__(?:rate_)?interval\b")
GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """Each query as a recording rule (Grafana's variables replaced as Grafana would: a range
    for `$__rate_interval`, a regex for the `$instance` selection), checked by promtool."""
    records = [
        {
            "record": f"dashboard:query_{n}",
            "expr": GRAFANA_VARIABLE.sub(".*", GRAFANA_RANGE.sub("5m", expr)),
        }
        for n, (_, expr) in enumerate(dashboard_exprs(dashboard()))
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": records}]}))
    output = run_promtool("check", "rules", str(path))
    assert f"SUCCESS: {len(records)} rules found" in output


def test_the_exported_metrics_pass_promtool_lint() -> None:
    code_metrics()  # defines the worker's metrics
    run_promtool("check", "metrics", stdin=generate_latest(REGISTRY))


@pytest.mark.parametrize("expr", ["rate(x[5m]", "sum by label (x)"])
def test_promtool_refuses_broken_promql(tmp_path: Path, expr: str) -> None:
    """The checks above can fail: promtool rejects a broken expression."""
    path = tmp_path / "broken.rules.yml"
    path.write_text(
        yaml.safe_dump({"groups": [{"name": "g", "rules": [{"record": "r", "expr": expr}]}]})
    )
    done = subprocess.run([promtool(), "check", "rules", str(path)], capture_output=True)  # noqa: S603
    assert done.returncode != 0
