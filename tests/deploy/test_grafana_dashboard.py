"""deploy/grafana/distillguard.json is a dashboard Grafana imports: it validates against the
classic dashboard model (tests/deploy/grafana-dashboard.schema.json, which follows the schema
Grafana publishes), its panels tile the 24-column grid without overlapping, and every query
names the dashboard's Prometheus data source and only variables the dashboard defines."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft7Validator

from tests.deploy.ops import dashboard, dashboard_exprs, panels

SCHEMA = orjson.loads((Path(__file__).parent / "grafana-dashboard.schema.json").read_bytes())
Model = dict[str, Any]


def errors(model: Model) -> list[str]:
    validator = Draft7Validator(SCHEMA)
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(model)]


def test_the_schema_is_a_valid_json_schema() -> None:
    Draft7Validator.check_schema(SCHEMA)


def test_the_dashboard_matches_grafanas_model() -> None:
    assert errors(dashboard()) == []


def first_panel(model: Model) -> Model:
    return next(p for p in model["panels"] if p["type"] != "row")


MUTATIONS: dict[str, Callable[[Model], object]] = {
    "no uid": lambda m: m.pop("uid"),
    "no templating": lambda m: m.pop("templating"),
    "misspelt top-level key": lambda m: m.update(schemaversion=39),
    "panel without gridPos": lambda m: first_panel(m).pop("gridPos"),
    "panel wider than the grid": lambda m: first_panel(m)["gridPos"].update(w=25),
    "panel without targets": lambda m: first_panel(m).update(targets=[]),
    "target without expr": lambda m: first_panel(m)["targets"][0].pop("expr"),
    "unknown variable type": lambda m: m["templating"]["list"][0].update(type="dropdown"),
}


@pytest.mark.parametrize("mutation", MUTATIONS.values(), ids=MUTATIONS.keys())
def test_the_schema_refuses_a_broken_dashboard(mutation: Callable[[Model], object]) -> None:
    model = copy.deepcopy(dashboard())
    mutation(model)
    assert errors(model)


def test_panels_tile_the_grid_without_overlapping() -> None:
    model = dashboard()
    ids = [panel["id"] for panel in panels(model)]
    assert len(ids) == len(set(ids))
    cells: dict[tuple[int, int], str] = {}
    for panel in panels(model):
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps {cells[(x, y)]}"
                cells[(x, y)] = panel["title"]
        ref_ids = [target["refId"] for target in panel.get("targets", [])]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]


GRAFANA_GLOBALS = {"__rate_interval", "__interval", "__range"}


def test_queries_use_the_prometheus_variable_and_defined_variables_only() -> None:
    model = dashboard()
    variables = {v["name"]: v for v in model["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    prometheus = {"type": "prometheus", "uid": "${datasource}"}
    for panel in panels(model):
        if panel["type"] != "row":
            assert panel["datasource"] == prometheus, panel["title"]
            assert all(t["datasource"] == prometheus for t in panel["targets"]), panel["title"]
    for where, expr in dashboard_exprs(model):
        used = set(re.findall(r"\$\{?(\w+)\}?", expr))
        assert used <= set(variables) | GRAFANA_GLOBALS, where
