"""What the tests of deploy/ share: where the files and promtool are, the PromQL expressions
the rules and the dashboard hold, the metric names and labels a PromQL expression uses, and the
metrics the code really exports."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import yaml
from prometheus_client import REGISTRY, CollectorRegistry

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES = DEPLOY / "prometheus" / "distillguard.rules.yml"
SCRAPE_CONFIG = DEPLOY / "prometheus" / "prometheus.yml"
DASHBOARD = DEPLOY / "grafana" / "distillguard.json"
SYSTEMD = DEPLOY / "systemd"
RULE_TESTS = Path(__file__).parent / "distillguard.rules.test.yml"

# Labels Prometheus adds to every scraped series, and the series it makes per target.
TARGET_LABELS = frozenset({"job", "instance"})
PROMETHEUS_SERIES = {"up": TARGET_LABELS}


def promtool() -> str:
    """promtool on PATH or where scripts/deploy-deps puts it; skips the test when absent."""
    cache = Path(os.environ.get("DG_CACHE_DIR", Path.home() / ".cache" / "distillguard"))
    found = shutil.which("promtool") or shutil.which("promtool", path=str(cache / "bin"))
    if found is None:
        pytest.skip("promtool is not installed: scripts/deploy-deps installs it (make test does)")
    return found


# --- PromQL: the metric names and labels an expression uses -----------------------------------
KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "atan2"}
)
STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
GRAFANA_VARIABLE = re.compile(r"\$\{?\w+\}?")
SELECTOR = re.compile(r"(?P<name>[A-Za-z_:][\w:]*)?\s*\{(?P<matchers>[^{}]*)\}")
MATCHER = re.compile(r"(\w+)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)")
TOKEN = re.compile(
    r"(?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?(?:(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*)?)"
    r"|(?P<name>[A-Za-z_:][\w:]*)(?P<call>\s*\()?"
)


@dataclass
class Uses:
    """What one PromQL expression reads: metric names, the labels its selectors match on (per
    metric) and the labels it groups or matches vectors by."""

    metrics: set[str] = field(default_factory=set)
    matched: dict[str, set[str]] = field(default_factory=dict)
    grouping: set[str] = field(default_factory=set)


def uses(expr: str) -> Uses:
    """A small PromQL reader, enough for rules and dashboards: strings, Grafana variables and
    range brackets are dropped; a name followed by "(" is a function or an aggregation.

    >>> found = uses('sum by (label) (rate(dg_total{label=~"a|b", instance=~"$i"}'
    ...     '[$__rate_interval])) / on() group_left max(up offset 1h) > 5e3 and {job="x"}')
    >>> sorted(found.metrics), sorted(found.grouping)
    (['dg_total', 'up'], ['label'])
    >>> {name: sorted(labels) for name, labels in found.matched.items()}
    {'dg_total': ['instance', 'label'], '': ['job']}
    """
    text = STRING.sub('""', GRAFANA_VARIABLE.sub("1", expr))
    found = Uses()
    for selector in SELECTOR.finditer(text):
        name = selector["name"] if selector["name"] not in KEYWORDS else None
        labels = found.matched.setdefault(name or "", set())
        labels.update(MATCHER.findall(selector["matchers"]))
    text = SELECTOR.sub(lambda m: f" {m['name'] or ''} ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    for labels in GROUPING.findall(text):
        found.grouping.update(label.strip() for label in labels.split(",") if label.strip())
    text = GROUPING.sub(" ", text)
    for token in TOKEN.finditer(text):
        name = token["name"]
        if name and not token["call"] and name not in KEYWORDS:
            found.metrics.add(name)
    return found


# --- where the expressions are ---------------------------------------------------------------
def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return cast(dict[str, Any], orjson.loads(DASHBOARD.read_bytes()))


def panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in model["panels"]:
        yield panel
        yield from panel.get("panels", [])


LABEL_VALUES = re.compile(r"^label_values\((?:(?P<expr>.+),\s*)?(?P<label>\w+)\)$")


def dashboard_exprs(model: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every panel query and every `label_values(EXPR, label)` variable
    (its label must be one of EXPR's: written here as a selector on it)."""
    for panel in panels(model):
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in model["templating"]["list"]:
        if variable["type"] == "query":
            query = LABEL_VALUES.match(variable["query"])
            assert query and query["expr"], f"variable {variable['name']}: {variable['query']}"
            yield f"variable {variable['name']}", f'{query["expr"]}{{{query["label"]}!=""}}'


def rule_exprs() -> Iterator[tuple[str, str]]:
    for rule in rules():
        yield rule.get("alert") or rule["record"], rule["expr"]


# --- what the code exports -------------------------------------------------------------------
def exported(registry: CollectorRegistry) -> dict[str, frozenset[str]]:
    """Every series name a registry exposes (`_total`, `_bucket`, ... included), with its
    label names. A labelled metric that has not been used yet exposes no sample, so its label
    names come from its definition (prometheus_client keeps them in `_labelnames`)."""
    names: dict[str, set[str]] = {}
    for name, collector in registry._names_to_collectors.items():
        names[name] = set(getattr(collector, "_labelnames", ()))
        if name.endswith("_bucket"):
            names[name].add("le")
    for family in registry.collect():
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return {name: frozenset(labels) for name, labels in names.items()}


def code_metrics() -> dict[str, frozenset[str]]:
    """The metrics a worker exposes (the default registry, once `streaming.worker` defines its
    metrics) and those of the API's own registry."""
    import streaming.worker  # noqa: F401 - defines the worker's metrics in the default registry
    from core.settings import Settings
    from services.api import create_app
    from storage import Store

    api = create_app(Settings(), cast(Store, None)).state.metrics
    return exported(REGISTRY) | exported(api)
