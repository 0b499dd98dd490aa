"""The alert rules and the Grafana dashboard read only metrics the code exports, with labels
those metrics have: a renamed metric or label fails here, not silently in production."""

from __future__ import annotations

import pytest

from tests.deploy.ops import (
    PROMETHEUS_SERIES,
    RULE_TESTS,
    TARGET_LABELS,
    code_metrics,
    dashboard,
    dashboard_exprs,
    load_yaml,
    rule_exprs,
    rules,
    uses,
)


@pytest.fixture(scope="module")
def known() -> dict[str, frozenset[str]]:
    """Series a query may read, with their labels: the code's, Prometheus's own per target, and
    what the recording rules write (their labels: any the code's metrics have)."""
    metrics = code_metrics() | PROMETHEUS_SERIES
    every_label = frozenset().union(*metrics.values())
    recorded = {rule["record"]: every_label for rule in rules() if "record" in rule}
    return metrics | recorded


def unknown_uses(expr: str, known: dict[str, frozenset[str]]) -> list[str]:
    """What `expr` reads that the code does not export, in words (empty: all of it exists)."""
    found = uses(expr)
    problems = [f"metric {name} is not exported" for name in sorted(found.metrics - set(known))]
    if not found.metrics:
        problems.append("reads no metric (or the PromQL reader missed it)")
    for name, labels in found.matched.items():
        have = known.get(name, frozenset()) | TARGET_LABELS
        problems += [f"{name} has no label {label!r}" for label in sorted(labels - have)]
    have = TARGET_LABELS.union(*(known.get(name, frozenset()) for name in found.metrics))
    missing = sorted(found.grouping - have)
    problems += [f"groups by {label!r}, which no metric it reads has" for label in missing]
    return problems


def test_the_code_exports_the_metrics_the_issue_asks_alerts_for(
    known: dict[str, frozenset[str]],
) -> None:
    for name in (
        "distillguard_consumer_lag",
        "distillguard_dead_letters_total",
        "distillguard_sinks_up",
        "distillguard_verdicts_total",
        "distillguard_calibration_drift",
    ):
        assert name in known
    assert "label" in known["distillguard_verdicts_total"]
    assert {"route", "status"} <= known["distillguard_api_requests_total"]


def test_every_rule_reads_exported_metrics_only(known: dict[str, frozenset[str]]) -> None:
    problems = {where: p for where, expr in rule_exprs() if (p := unknown_uses(expr, known))}
    assert problems == {}


def test_every_dashboard_query_reads_exported_metrics_only(
    known: dict[str, frozenset[str]],
) -> None:
    exprs = list(dashboard_exprs(dashboard()))
    assert len(exprs) >= 15
    problems = {where: p for where, expr in exprs if (p := unknown_uses(expr, known))}
    assert problems == {}


def test_the_rule_tests_feed_exported_series(known: dict[str, frozenset[str]]) -> None:
    """The promtool unit tests' input series are the real metrics too, or they would prove
    rules about series that never exist."""
    series = [s["series"] for test in load_yaml(RULE_TESTS)["tests"] for s in test["input_series"]]
    problems = {s: p for s in series if (p := unknown_uses(s, known))}
    assert problems == {}


def test_alerts_cover_lag_dead_letters_sinks_verdicts_and_drift() -> None:
    """Each of issue 18's operational signals has an alert reading it (directly or through a
    recording rule)."""
    recorded = {rule["record"]: uses(rule["expr"]).metrics for rule in rules() if "record" in rule}
    read: set[str] = set()
    for rule in rules():
        if "alert" in rule:
            for name in uses(rule["expr"]).metrics:
                read |= recorded.get(name, {name})
    assert {
        "distillguard_consumer_lag",
        "distillguard_dead_letters_total",
        "distillguard_sinks_up",
        "distillguard_verdicts_total",
        "distillguard_calibration_drift",
        "up",
    } <= read


def test_the_check_catches_a_renamed_metric_or_label(known: dict[str, frozenset[str]]) -> None:
    assert unknown_uses('sum by (label) (rate(distillguard_verdicts_total{le="1"}[5m]))', known)
    assert unknown_uses("rate(distillguard_verdict_total[5m])", known)
    assert unknown_uses("sum by (route) (distillguard_consumer_lag)", known)
    assert not unknown_uses('sum by (status) (distillguard_api_requests_total{route="/"})', known)
