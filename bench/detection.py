"""Detection-quality benchmark, leave one world out: DistillGuard's detector beside clean-room
baselines, on traffic worlds it was not tuned on.

    python -m bench.detection [--small] [--worlds sharegpt-chat,...] [--calibrations own,transfer]
                              [--detectors ours,ours_full,prada,mmd,volume_z] [--large-batch 5000]
    python -m bench.detection --combine REPORT.json --combine REPORT.json

A detector tuned to one generator's traffic looks good on that generator and fails elsewhere
(issue 16: AUC 0.996 here, 0.936 and no verdict at all on an independent benchmark). So every
world of `bench.worlds.WORLDS` (each with its own prompts, population, attack implementations and
log shape) is held out in turn, and each detector is calibrated (`fit`, benign history only,
never attack labels) two ways before it reads the held-out world's log:

- `own`: the held-out world's own benign calibration history. That is what a provider deploying
  DistillGuard does, so it is the figure an analyst would see.
- `transfer`: the other selected worlds' benign histories only (account and request ids
  prefixed with their world, so two worlds' accounts never merge into one history). Nothing of
  the held-out world enters calibration: a threshold that only holds on its own population
  shows up as a gap between the two rows.

The log then runs through the real `Pipeline` in time order, in small batches. Label metrics at
the detector's default threshold come first, because they are what an analyst sees: attacker
accounts flagged (a `suspicious` or `extraction` verdict), benign accounts flagged, the share of
each campaign's accounts in its largest flagged cluster, median queries before the first flag,
hard negatives (`power:*` actors) flagged. Account-level ROC AUC of the highest score comes
second, then events/s. Per strategy, per world, per detector and calibration; the headline is the
worst held-out world for each metric, against issue 16's targets (`LOWO_METRICS`).

Results go to JSON and markdown under `.distillguard/bench/`, the LOWO table to
`bench/results/detection-lowo.md` (`-small` for `--small`), and, when `sharegpt-chat` is held
out with its own history, the single-scenario table the README quoted before to
`bench/results/detection.md` (`bench/readme.py`). Beside the table, `detection-error-rates.json`
holds each detector's worst held-out world (benign and attacker accounts flagged, with counts;
lowest ROC AUC; strategies never flagged): forensic reports quote it in their methodology. The
committed one was read back from the committed table (`world_figures_from_table`), since the run
that measured it predates the file.

`--combine A.json --combine B.json` runs nothing: it writes the same files from saved reports of
the same batch sizes, each detector's latest run winning (`combine_reports`), so a change to our
detector is re-measured without re-running the peers, and a new world is measured without
re-running the others (own-history results only: a transfer result calibrates on the run's
other worlds); the header names every run.
"""

from __future__ import annotations

import hashlib
import math
import os
import platform
import re
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Self

import numpy as np
import orjson
import typer
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench.pipeline import CACHE
from bench.readme import result_path
from bench.scenario import ALL_STRATEGIES, CAMPAIGN, Scenario
from bench.worlds import WORLDS, World
from core.batch import Batch
from core.events import Event
from core.records import REPLAY_PER_ACCOUNT
from core.settings import Settings
from core.verdicts import Assessment, ClusterVerdict, first_flags
from detectors.base import Detector, fit_with_reviewed
from detectors.baselines import BASELINES
from detectors.features import PROMPT_CHARS
from detectors.registry import VARIANTS, events_in_file
from distillguard.wiring import heap_built_so_far_frozen
from streaming.pipeline import Pipeline
from streaming.profiles import MemoryPublisher, ProfilePublisher
from streaming.sinks import BufferedSink
from streaming.sources import records_from_lines
from students.embeddings import CachedEmbedder, cached_embedder, with_cached_vectors
from students.measured import command_line, duration, measured_by, write_table
from students.scenario import REPLAY_BATCH, batches

# Ours tiered (MiniLM for suspects only), with every prompt embedded by MiniLM (a GPU's
# default; the difference is what tiering gives up for its speed), and with every prompt
# embedded by MiniLM's static wordpiece table (a CPU's default): `registry.VARIANTS`.
OURS = VARIANTS
DETECTORS = (*OURS, *BASELINES)
# How each detector is calibrated before it reads a held-out world (see the module docstring).
CALIBRATIONS = ("own", "transfer")
CALIBRATION_NAMES = {"own": "own history", "transfer": "other worlds"}
FLAGGED = ("suspicious", "extraction")  # what an analyst sees flagged at the default threshold
console = Console(width=160)


@dataclass(frozen=True)
class Metric:
    """One headline measure of a held-out world: which way is better and issue 16's target.
    The worst held-out world is the one furthest on the wrong side."""

    key: str
    header: str
    higher_is_better: bool
    target: float

    def meets(self, value: float) -> bool:
        return value >= self.target if self.higher_is_better else value <= self.target

    def worse(self, a: float, b: float) -> bool:
        """`a` is strictly worse than `b` (ties keep the first world found)."""
        return a < b if self.higher_is_better else a > b


# Label metrics first (what an analyst sees), then the score's ranking, then the cost. The
# campaign target is 36 of 40 accounts; events/s is tiered mode's target (2-core machine).
LOWO_METRICS = (
    Metric("attackers_flagged", "attackers flagged", True, 0.90),
    Metric("attackers_attributed", "attackers flagged as one actor", True, 0.90),
    Metric("benign_flagged", "benign flagged", False, 0.01),
    Metric("campaign_in_cluster", "campaign in one flagged cluster", True, 36 / 40),
    Metric("median_queries", "median queries", False, 50),
    Metric("hard_negatives_flagged", "hard negatives flagged", False, 1),
    Metric("roc_auc", "ROC AUC", True, 0.98),
    Metric("events_per_s", "events/s", True, 2000),
)


# --- running a detector -----------------------------------------------------------------------
class ScoreRecorder(Detector):
    """Passes everything to the detector under test and keeps each account's highest score: the
    pipeline emits a verdict only on a material change, so verdicts alone would round scores."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.name, self.version = inner.name, inner.version
        self.max_score: dict[str, float] = {}

    def __getattr__(self, attribute: str) -> Any:  # anything else the pipeline may ask for
        return getattr(self.inner, attribute)

    @property
    def publish_profiles(self) -> bool:
        return bool(getattr(self.inner, "publish_profiles", False))

    @publish_profiles.setter
    def publish_profiles(self, value: bool) -> None:
        """A worker's pipeline sets it: the detector under test must publish, not link."""
        self.inner.publish_profiles = value  # type: ignore[attr-defined]

    def fit(self, benign_events: Iterable[Event]) -> Self:
        self.inner.fit(benign_events)
        return self

    def _record(self, account_id: str, assessment: Assessment) -> Assessment:
        previous = self.max_score.get(account_id, 0.0)
        self.max_score[account_id] = max(previous, assessment.score)
        return assessment

    def update(self, account_id: str, events: list[Event]) -> Assessment:
        return self._record(account_id, self.inner.update(account_id, events))

    def update_batch(self, updates: dict[str, list[Event]]) -> dict[str, Assessment]:
        """The detector's own batch update (it may link campaigns across the batch's accounts
        and assess accounts without new events)."""
        assessments = self.inner.update_batch(updates)
        for account_id, assessment in assessments.items():
            self._record(account_id, assessment)
        return assessments

    def state(self, account_id: str) -> dict[str, Any]:
        return self.inner.state(account_id)

    def load(self, account_id: str, state: dict[str, Any]) -> None:
        self.inner.load(account_id, state)

    def forget(self, account_id: str) -> None:
        self.inner.forget(account_id)

    def calibration(self) -> dict[str, Any]:
        return self.inner.calibration()

    def load_calibration(self, calibration: dict[str, Any]) -> None:
        self.inner.load_calibration(calibration)


class VerdictCollector(BufferedSink):
    """Keeps the verdicts and campaign (cluster) verdicts of every successful flush; drops event
    rows and states. Cluster verdicts carry their members, which is how the campaign metric
    knows how many of a campaign's accounts one flagged cluster held."""

    name = "collector"

    def __init__(self) -> None:
        super().__init__()
        self.collected: list = []
        self.clusters: list[ClusterVerdict] = []

    def _write(self, batch: Batch) -> None:
        self.collected.extend(batch.verdicts)
        self.clusters.extend(batch.clusters)


@dataclass
class Run:
    """One detector over one world's log: what each account got."""

    name: str
    version: str
    fit_seconds: float
    seconds: float
    events: int
    max_score: dict[str, float]
    # account -> requests_seen at its first `extraction` / `suspicious`-or-graver verdict
    first_flag_extraction: dict[str, int] = field(default_factory=dict)
    first_flag_any: dict[str, int] = field(default_factory=dict)
    # account -> the cluster of each of its flagging verdicts (None: on its own evidence)
    flagged_as: dict[str, set[str | None]] = field(default_factory=dict)
    clusters: dict[str, set[str]] = field(default_factory=dict)  # account -> its cluster ids
    flagged_clusters: set[str] = field(default_factory=set)  # with an `extraction` verdict
    cluster_verdicts: list[ClusterVerdict] = field(default_factory=list)  # with their members

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def warm(embedder: CachedEmbedder, prompts: list[str], chunk: int = 2000) -> tuple[int, float]:
    """Embed every prompt of the worlds before any detector runs, in large batches and saved
    as it goes: the baselines' events/s then measure the detectors, not MiniLM (which
    `embedding` in the report measures). Returns (prompts embedded, seconds)."""
    misses, started = embedder.misses, time.perf_counter()
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task("MiniLM embeddings", total=len(prompts))
        for start in range(0, len(prompts), chunk):
            embedder(prompts[start : start + chunk])
            embedder.save()
            progress.advance(task, len(prompts[start : start + chunk]))
    return embedder.misses - misses, time.perf_counter() - started


def make_detector(name: str, embedder: CachedEmbedder, timed: bool = False) -> Detector:
    """A fresh detector on the cached MiniLM vectors; ours, when `timed`, embeds with the model
    itself, as a worker does (the static table always does: it needs no cache)."""
    if name in OURS:
        from detectors.registry import build_detector

        detector = build_detector(Settings(**OURS[name]))
        if not timed:
            with_cached_vectors(detector, embedder)
        return detector
    return BASELINES[name](embedder)


def run_detector(
    name: str,
    detector: Detector,
    calibration: list[Event] | dict[str, Any],
    work: list[tuple[int, list[bytes]]],
    checkpoint_every: int = 5000,
    label: str | None = None,
    reviewed: Collection[str] = (),
    publisher: ProfilePublisher | None = None,
) -> Run:
    """Fit on benign calibration traffic (or load a saved calibration), then the evaluation
    log through the real pipeline (checkpointing every `checkpoint_every` records, as a worker
    would). `reviewed`: accounts of the calibration traffic that analysts marked false positive
    (`detectors.base.fit_with_reviewed`). `publisher`: run as a deployed worker does, its
    accounts' profile updates encoded for the linker role instead of linked in process."""
    started = time.perf_counter()
    if isinstance(calibration, dict):
        detector.load_calibration(calibration)
    else:
        fit_with_reviewed(detector, calibration, reviewed)
    fit_seconds = time.perf_counter() - started
    recorder, sink = ScoreRecorder(detector), VerdictCollector()
    pipeline = Pipeline(recorder, [sink], publisher=publisher)
    since_checkpoint, events = 0, 0
    with Progress(console=console, transient=True) as progress, heap_built_so_far_frozen():
        task = progress.add_task(label or name, total=sum(len(lines) for _, lines in work))
        started = time.perf_counter()
        for start, lines in work:
            events += len(pipeline.process(records_from_lines(lines, "scenario", start)).events)
            since_checkpoint += len(lines)
            if since_checkpoint >= checkpoint_every:
                pipeline.checkpoint()
                since_checkpoint = 0
            progress.advance(task, len(lines))
        pipeline.checkpoint()
        seconds = time.perf_counter() - started
    extraction = {a: v.requests_seen for a, v in first_flags(sink.collected).items()}
    flagged = {a: v.requests_seen for a, v in first_flags(sink.collected, "suspicious").items()}
    run = Run(name, detector.version, fit_seconds, seconds, events, recorder.max_score)
    run.first_flag_extraction, run.first_flag_any = extraction, flagged
    run.cluster_verdicts = sink.clusters
    for verdict in sink.collected:
        if verdict.label in FLAGGED:
            run.flagged_as.setdefault(verdict.account_id, set()).add(verdict.cluster_id)
        if verdict.cluster_id is not None:
            run.clusters.setdefault(verdict.account_id, set()).add(verdict.cluster_id)
            if verdict.label == "extraction":
                run.flagged_clusters.add(verdict.cluster_id)
    return run


# --- which benign history a detector is calibrated on -----------------------------------------
@dataclass
class Calibration:
    """The benign history a detector is fitted on before it reads a held-out world."""

    mode: str  # "own" | "transfer"
    worlds: tuple[str, ...]  # whose benign calibration files
    events: list[Event]


def from_world(event: Event, world: str) -> Event:
    """`event` with its account and request ids prefixed by its world: pooled histories of
    several worlds must not merge two worlds' `user-0001` into one account (or one request)."""
    return event.model_copy(
        update={
            "account_id": f"{world}/{event.account_id}",
            "request_id": f"{world}/{event.request_id}",
        }
    )


def calibration_for(
    mode: str, held_out: str, scenarios: Mapping[str, Scenario]
) -> Calibration | None:
    """`own`: the held-out world's benign calibration file (a provider calibrating on its own
    history). `transfer`: every other world's benign calibration file, ids prefixed, and nothing
    of the held-out world. None when there is no other world to transfer from."""
    if mode == "own":
        path = scenarios[held_out].calibration_path
        return Calibration(mode, (held_out,), list(events_in_file(path)))
    if mode != "transfer":
        raise ValueError(f"unknown calibration {mode!r}: one of {', '.join(CALIBRATIONS)}")
    others = tuple(name for name in scenarios if name != held_out)
    if not others:
        return None
    events = [
        from_world(event, name)
        for name in others
        for event in events_in_file(scenarios[name].calibration_path)
    ]
    events.sort(key=lambda event: event.timestamp_ms)  # one benign stream, as a worker sees it
    return Calibration(mode, others, events)


# --- metrics ----------------------------------------------------------------------------------
def tpr_at(positives: np.ndarray, negatives: np.ndarray, max_fp_share: float) -> float:
    """Share of positives scoring above the highest threshold that flags at most
    `max_fp_share` of negatives (ties count against the detector)."""
    allowed = int(max_fp_share * len(negatives))
    ordered = np.sort(negatives)[::-1]
    threshold = ordered[allowed] if allowed < len(ordered) else -math.inf
    return float(np.mean(positives > threshold))


QUERY_KEYS = ("queries", "queries_any")  # endings of the quantiles of queries before detection


def queries_quantile(values: list[float], q: float) -> float:
    """A quantile of queries before detection, never-flagged accounts counted as infinite."""
    return float(np.quantile(values, q, method="inverted_cdf")) if values else math.inf


def largest_flagged_cluster(
    members: Iterable[str], clusters: Iterable[ClusterVerdict]
) -> tuple[int, str | None]:
    """How many of a campaign's accounts the largest flagged cluster (a `suspicious` or
    `extraction` campaign verdict) held at one moment, and its id: a campaign split over many
    small clusters is not caught as one actor, however many of them are flagged."""
    wanted, best, best_id = set(members), 0, None
    for cluster in clusters:
        if cluster.label in FLAGGED:
            held = len(wanted.intersection(cluster.members))
            if held > best:
                best, best_id = held, cluster.cluster_id
    return best, best_id


def campaign_result(name: str, members: Sequence[str], run: Run) -> dict:
    held, cluster_id = largest_flagged_cluster(members, run.cluster_verdicts)
    return {
        "campaign": name,
        "accounts": len(members),
        "largest_flagged_cluster": held,
        "cluster_id": cluster_id,
        "share": held / len(members) if members else 0.0,
    }


def strategy_row(
    strategy: str,
    positives: list[str],
    honest: list[str],
    run: Run,
    campaigns: Sequence[dict] = (),
    one_actor: Collection[str] = (),
) -> dict:
    """One strategy's accounts against every honest account. `flagged_any` and the `_any`
    queries count `suspicious` or `extraction` verdicts (what an analyst sees); `flagged_extraction`
    and the plain queries count `extraction` only (the earlier benchmark's figures). `campaigns`:
    the campaign results whose members are these accounts. `flagged_attributed` counts a flag
    only on the account's own evidence or as a member of a cluster in `one_actor` (every member
    one actor): a cluster that joins separate actors flags them all, and its report would
    describe them as one."""
    from sklearn.metrics import roc_auc_score

    pos = np.array([run.max_score.get(a, 0.0) for a in positives])
    neg = np.array([run.max_score.get(a, 0.0) for a in honest])
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    queries_any = [float(run.first_flag_any.get(a, math.inf)) for a in positives]
    queries = [float(run.first_flag_extraction.get(a, math.inf)) for a in positives]
    row = {
        "strategy": strategy,
        "accounts": len(positives),
        "flagged_any": float(np.mean([a in run.first_flag_any for a in positives])),
        "flagged_extraction": float(np.mean([a in run.first_flag_extraction for a in positives])),
        "flagged_attributed": float(
            np.mean(
                [
                    any(c is None or c in one_actor for c in run.flagged_as.get(a, ()))
                    for a in positives
                ]
            )
        ),
        "median_queries_any": queries_quantile(queries_any, 0.5),
        "p90_queries_any": queries_quantile(queries_any, 0.9),
        "median_queries": queries_quantile(queries, 0.5),
        "p90_queries": queries_quantile(queries, 0.9),
        "roc_auc": float(roc_auc_score(labels, np.r_[pos, neg])) if len(neg) else None,
        "tpr_at_0": tpr_at(pos, neg, 0.0),
        "tpr_at_1pct": tpr_at(pos, neg, 0.01),
        "campaign_in_cluster": None,
        "campaign_recall": None,
    }
    if campaigns:
        row["campaign_in_cluster"] = min(campaign["share"] for campaign in campaigns)
        caught = [
            a in run.first_flag_extraction
            or bool(run.clusters.get(a, set()) & run.flagged_clusters)
            for a in positives
        ]
        row["campaign_recall"] = float(np.mean(caught))
    return row


def strategies_of(scenario: Scenario) -> list[str]:
    """The attack strategies present in a world: the companion's in its order, then any other
    name a world's own implementation uses."""
    present = {
        actor.removeprefix("attack:")
        for actor in scenario.actors.values()
        if actor.startswith("attack:")
    }
    known = [name for name in ALL_STRATEGIES if name in present]
    return known + sorted(present - set(known))


def one_actor_clusters(run: Run, scenario: Scenario) -> set[str]:
    """Clusters whose members, over the cluster's whole history, are all one actor: one
    campaign's accounts, or the accounts of one strategy (a world's replicas of one strategy are
    one tool written by one hand: linking them is not counted as a wrong attribution)."""
    members: dict[str, set[str]] = {}
    for cluster in run.cluster_verdicts:
        members.setdefault(cluster.cluster_id, set()).update(cluster.members)
    campaign_of = {a: name for name, accounts in scenario.campaigns.items() for a in accounts}
    return {
        cluster_id
        for cluster_id, accounts in members.items()
        if len({campaign_of.get(a, scenario.actors.get(a)) for a in accounts}) == 1
    }


def evaluate(run: Run, scenario: Scenario) -> dict:
    """A run's figures on a world: per strategy and pooled rows, the honest and hard-negative
    accounts flagged (both thresholds), each campaign's largest flagged cluster, and the
    headline `metrics` (`lowo_metrics`)."""
    honest = scenario.benign
    hard = scenario.accounts(lambda actor: actor.startswith("power:"))
    ordinary = sorted(set(honest) - set(hard))
    attackers = scenario.accounts(lambda actor: actor.startswith("attack:"))
    campaigns = [
        campaign_result(name, members, run) for name, members in sorted(scenario.campaigns.items())
    ]
    one_actor = one_actor_clusters(run, scenario)
    rows = []
    for name in strategies_of(scenario):
        accounts = scenario.accounts(lambda actor, n=name: actor == f"attack:{n}")
        theirs = [c for c in campaigns if set(scenario.campaigns[c["campaign"]]) & set(accounts)]
        rows.append(strategy_row(name, accounts, honest, run, theirs, one_actor))
    rows.append(strategy_row("all attacks", attackers, honest, run, one_actor=one_actor))
    result = {
        "detector": run.name,
        "version": run.version,
        "fit_seconds": run.fit_seconds,
        "seconds": run.seconds,
        "events": run.events,
        "events_per_s": run.events_per_s,
        "honest_accounts": len(honest),
        "honest_flagged": sorted(a for a in honest if a in run.first_flag_extraction),
        "honest_in_flagged_clusters": sorted(
            a
            for a in honest
            if a not in run.first_flag_extraction
            and run.clusters.get(a, set()) & run.flagged_clusters
        ),
        "hard_negatives": hard,
        "hard_negatives_flagged": sorted(a for a in hard if a in run.first_flag_extraction),
        "hard_negatives_flagged_any": sorted(a for a in hard if a in run.first_flag_any),
        "benign_accounts": len(ordinary),
        "benign_flagged_any": sorted(a for a in ordinary if a in run.first_flag_any),
        "benign_flagged_extraction": sorted(a for a in ordinary if a in run.first_flag_extraction),
        "campaigns": campaigns,
        "rows": rows,
    }
    result["metrics"] = lowo_metrics(result)
    return result


def lowo_metrics(result: dict) -> dict[str, float | None]:
    """The headline measures of one run (`LOWO_METRICS`), from `evaluate`'s result; events/s is
    the large-batch timing on ordinary benign traffic when there is one. None: not measurable
    in this world (no campaign)."""
    pooled = result["rows"][-1]
    campaigns = result["campaigns"]
    benign = result["benign_accounts"]
    return {
        "attackers_flagged": pooled["flagged_any"],
        "attackers_attributed": pooled.get("flagged_attributed"),  # absent in older reports
        "benign_flagged": len(result["benign_flagged_any"]) / benign if benign else 0.0,
        "campaign_in_cluster": min(c["share"] for c in campaigns) if campaigns else None,
        "median_queries": pooled["median_queries_any"],
        "hard_negatives_flagged": float(len(result["hard_negatives_flagged_any"])),
        "roc_auc": pooled["roc_auc"],
        "events_per_s": result.get("events_per_s_benign", result["events_per_s"]),
    }


def worst_worlds(results: Sequence[dict]) -> list[dict]:
    """The headline: per detector and calibration, for each metric the held-out world where
    it is worst, that value and whether it meets the target. Worlds where a metric is not
    measurable (None) are left out of it; a metric no world measures is None."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for result in results:
        groups.setdefault((result["detector"], result["calibration"]), []).append(result)
    headline = []
    for (detector, calibration), group in groups.items():
        entry: dict[str, Any] = {
            "detector": detector,
            "calibration": calibration,
            "worlds": [r["world"] for r in group],
            "metrics": {},
        }
        for metric in LOWO_METRICS:
            measured = [
                (r["world"], r["metrics"][metric.key])
                for r in group
                if r["metrics"][metric.key] is not None
            ]
            if not measured:
                entry["metrics"][metric.key] = None
                continue
            world, value = measured[0]
            for other, candidate in measured[1:]:
                if metric.worse(candidate, value):
                    world, value = other, candidate
            entry["metrics"][metric.key] = {
                "value": value,
                "world": world,
                "meets": metric.meets(value),
            }
        headline.append(entry)
    return headline


# --- output -----------------------------------------------------------------------------------
COLUMNS = (
    ("strategy", "strategy"),
    ("accounts", "accounts"),
    ("flagged_any", "flagged"),
    ("flagged_extraction", "extraction flagged"),
    ("median_queries_any", "median queries"),
    ("p90_queries_any", "p90 queries"),
    ("median_queries", "extraction median queries"),
    ("roc_auc", "ROC AUC"),
    ("tpr_at_0", "TPR @0 FP"),
    ("tpr_at_1pct", "TPR @1% FP"),
    ("campaign_in_cluster", "campaign in one flagged cluster"),
    ("campaign_recall", "campaign recall"),
)


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if key.endswith(QUERY_KEYS):
        return "never" if math.isinf(value) else f"{value:.0f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _percent(share: float) -> str:
    return f"{100 * share:.1f} %"


def metric_cell(key: str, result: dict) -> str:
    """One headline measure of one run, as the tables print it (with its counts)."""
    value = result["metrics"][key]
    pooled = result["rows"][-1]
    if key in ("attackers_flagged", "attackers_attributed"):
        flagged = round(value * pooled["accounts"])
        return f"{_percent(value)} ({flagged}/{pooled['accounts']})"
    if key == "benign_flagged":
        flagged, benign = len(result["benign_flagged_any"]), result["benign_accounts"]
        return f"{_percent(value)} ({flagged}/{benign})"
    if key == "campaign_in_cluster":
        worst = min(result["campaigns"], key=lambda c: c["share"], default=None)
        return "—" if worst is None else f"{worst['largest_flagged_cluster']}/{worst['accounts']}"
    if key == "median_queries":
        return _cell("median_queries", value)
    if key == "hard_negatives_flagged":
        return f"{value:.0f}/{len(result['hard_negatives'])}"
    if key == "roc_auc":
        return _cell("roc_auc", value)
    return f"{value:,.0f}"


def _headline(result: dict) -> str:
    benign = result.get("events_per_s_benign")
    calibrated = ", ".join(result.get("calibrated_on", [])) or "?"
    return (
        f"{result['detector']} ({result['version']}) on {result.get('world', '?')}, calibrated on "
        f"{calibrated} ({result.get('calibration_events', 0):,} benign requests): "
        f"{result['events_per_s']:,.0f} events/s"
        + (
            f" on this world, {benign:,.0f} on its ordinary benign traffic in batches of "
            f"{result['large_batch']:,} as a worker"
            + (
                f" ({result['events_per_s_in_process']:,.0f} linking campaigns in process)"
                if "events_per_s_in_process" in result
                else ""
            )
            + (
                f"; on its whole log, attackers included, "
                f"{result['events_per_s_all_traffic']:,.0f} as a worker "
                f"({result['events_per_s_all_traffic_in_process']:,.0f} in process)"
                if "events_per_s_all_traffic" in result
                else ""
            )
            if benign
            else ""
        )
        + f", fit {result['fit_seconds']:.1f} s, benign accounts flagged "
        f"{len(result['benign_flagged_any'])}/{result['benign_accounts']}"
        + (
            f" (+{len(result['honest_in_flagged_clusters'])} honest in flagged clusters)"
            if result["honest_in_flagged_clusters"]
            else ""
        )
        + f", hard negatives flagged {len(result['hard_negatives_flagged_any'])}/"
        f"{len(result['hard_negatives'])} {result['hard_negatives_flagged_any'] or ''}"
    )


def rich_table(result: dict) -> Table:
    table = Table(title=_headline(result), title_justify="left")
    for key, header in COLUMNS:
        wide = key == "strategy"  # strategy names stay whole, the figures' headers wrap
        table.add_column(header, justify="right", no_wrap=wide, min_width=22 if wide else None)
    for row in result["rows"]:
        table.add_row(*(_cell(key, row[key]) for key, _ in COLUMNS))
    return table


# The LOWO tables (README file, cache report, console).
DETECTOR_NAMES = {
    "ours": "ours (tiered)",
    "ours_full": "ours, full embeddings",
    "ours_static": "ours, static embeddings (CPU default)",
    "prada": "PRADA",
    "mmd": "per-account MMD",
    "volume_z": "volume z-score",
}
METRIC_HEADERS = [metric.header for metric in LOWO_METRICS]


def headline_rows(report: dict) -> list[list[str]]:
    """Per detector and calibration: each metric's worst world, as 'value ✓|✗ (world)'."""
    by_key = {(r["detector"], r["calibration"], r["world"]): r for r in report["results"]}
    rows = []
    for entry in report["headline"]:
        cells = [
            DETECTOR_NAMES.get(entry["detector"], entry["detector"]),
            CALIBRATION_NAMES[entry["calibration"]],
        ]
        for metric in LOWO_METRICS:
            worst = entry["metrics"][metric.key]
            if worst is None:
                cells.append("—")
                continue
            result = by_key[(entry["detector"], entry["calibration"], worst["world"])]
            mark = "✓" if worst["meets"] else "✗"
            cells.append(f"{metric_cell(metric.key, result)} {mark} ({worst['world']})")
        rows.append(cells)
    return rows


def world_rows(report: dict) -> list[list[str]]:
    """One row per held-out world, detector and calibration."""
    return [
        [
            result["world"],
            DETECTOR_NAMES.get(result["detector"], result["detector"]),
            CALIBRATION_NAMES[result["calibration"]],
            *(metric_cell(metric.key, result) for metric in LOWO_METRICS),
        ]
        for result in report["results"]
    ]


def strategy_rows(report: dict) -> tuple[list[str], list[list[str]]]:
    """Per strategy and detector, one column per world: attackers flagged (median queries
    before the first flag) under each calibration, 'own / transfer'."""
    worlds = list(report["worlds"])
    calibrations = report["calibrations"]
    found: dict[tuple[str, str, str, str], dict] = {}
    strategies: list[str] = []
    for result in report["results"]:
        for row in result["rows"]:
            key = (row["strategy"], result["detector"], result["world"], result["calibration"])
            found[key] = row
            if row["strategy"] not in strategies and row["strategy"] != "all attacks":
                strategies.append(row["strategy"])
    ordered = [s for s in ALL_STRATEGIES if s in strategies]
    ordered += [s for s in strategies if s not in ordered] + ["all attacks"]
    detectors = list(dict.fromkeys(result["detector"] for result in report["results"]))

    def cell(strategy: str, detector: str, world: str) -> str:
        parts = []
        for calibration in calibrations:
            row = found.get((strategy, detector, world, calibration))
            parts.append(
                "—"
                if row is None
                else f"{100 * row['flagged_any']:.0f} % "
                f"({_cell('median_queries', row['median_queries_any'])})"
            )
        return " / ".join(parts)

    rows = [
        [strategy, DETECTOR_NAMES.get(detector, detector)]
        + [cell(strategy, detector, world) for world in worlds]
        for strategy in ordered
        for detector in detectors
        if any((strategy, detector, w, c) in found for w in worlds for c in calibrations)
    ]
    return ["strategy", "detector", *worlds], rows


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def _targets_sentence() -> str:
    return (
        "attackers flagged ≥ 90 %, and as many flagged as one actor (on their own evidence or in "
        "a cluster of one campaign or one strategy's accounts: a cluster joining separate actors "
        "flags them all but describes them as one), benign flagged ≤ 1 %, ≥ 36 of 40 campaign "
        "accounts in one "
        "flagged cluster, median queries ≤ 50, ≤ 1 hard negative flagged, ROC AUC ≥ 0.98, "
        "≥ 2,000 events/s (tiered mode)"
    )


def lowo_table(report: dict) -> str:
    """The README's file: the worst-world headline, the per-world rows, the per-strategy rows."""
    calibrations = " / ".join(CALIBRATION_NAMES[c] for c in report["calibrations"])
    worlds = ", ".join(
        f"`{name}` ({info['events']:,} requests)" for name, info in report["worlds"].items()
    )
    header, rows = strategy_rows(report)
    lines = [
        f"Held-out worlds: {worlds}. Flagged: a `suspicious` or `extraction` verdict at the "
        "default threshold. Calibration: the held-out world's own benign history, or the other "
        "worlds' benign histories only. Events/s: "
        + (
            f"ordinary benign traffic in batches of {report['large_batch']:,}, through the "
            "detector as a deployed worker runs it (profile updates encoded for the linker "
            "role, which links campaigns in a process of its own)."
            if report.get("large_batch")
            else "the world's log in the benchmark's small batches."
        ),
        "",
        f"**Worst held-out world** (✓/✗ against the target; targets: {_targets_sentence()}):",
        "",
        *markdown_table(["detector", "calibration", *METRIC_HEADERS], headline_rows(report)),
        "",
        "**Per held-out world:**",
        "",
        *markdown_table(["world", "detector", "calibration", *METRIC_HEADERS], world_rows(report)),
        "",
        f"**Per strategy:** attackers flagged (median queries before the first flag), "
        f"{calibrations}:",
        "",
        *markdown_table(header, rows),
    ]
    return "\n".join(lines) + "\n"


def markdown(report: dict) -> str:
    """The cache report: the LOWO tables, what each world is, then every run's strategy table."""
    lines = [
        f"# Detection benchmark, leave one world out ({report['generated_at']})",
        "",
        f"{report['machine']}. Wall time {report['wall_seconds']:.0f} s.",
        "",
    ]
    for name, info in report["worlds"].items():
        lines.append(
            f"- `{name}`: {info['population']}; prompts: {info['prompt_sources']}; log: "
            f"{info['log_shape']}; {info['events']:,} requests, {info['calibration_events']:,} "
            f"benign calibration requests"
        )
    lines += ["", lowo_table(report)]
    for skipped in report.get("skipped", []):
        lines.append(f"- skipped: {skipped}")
    for result in report["results"]:
        lines += ["", f"## {_headline(result)}", ""]
        lines += markdown_table(
            [header for _, header in COLUMNS],
            ([_cell(key, row[key]) for key, _ in COLUMNS] for row in result["rows"]),
        )
    return "\n".join(lines) + "\n"


def _rich(title: str, header: Sequence[str], rows: Iterable[Sequence[str]]) -> Table:
    table = Table(title=title, title_justify="left")
    for name in header:
        table.add_column(name)
    for row in rows:
        table.add_row(*row)
    return table


def print_lowo(report: dict) -> None:
    header, rows = strategy_rows(report)
    console.print(_rich("Per strategy: flagged (median queries), own / transfer", header, rows))
    console.print(
        _rich(
            "Per held-out world",
            ["world", "detector", "calibration", *METRIC_HEADERS],
            world_rows(report),
        )
    )
    console.print(
        _rich(
            f"Worst held-out world (targets: {_targets_sentence()})",
            ["detector", "calibration", *METRIC_HEADERS],
            headline_rows(report),
        )
    )


# The single-scenario table the README quoted before the worlds (`detection`): one row per
# detector, worst strategy and pooled figures, `extraction` verdicts only. Written for the
# `sharegpt-chat` world calibrated on its own history, which is that scenario's earlier run.
README_COLUMNS = (
    "detector",
    "worst-strategy ROC AUC",
    "pooled ROC AUC",
    "TPR @1% FP",
    "median / p90 queries",
    "campaign recall",
    "hard negatives flagged",
    "events/s (ordinary benign traffic)",
)
SINGLE_SCENARIO_WORLD = "sharegpt-chat"


def readme_row(result: dict) -> list[str]:
    *strategies, pooled = result["rows"]
    worst = min(strategies, key=lambda row: row["roc_auc"])
    campaign = next((row for row in strategies if row["strategy"] == CAMPAIGN), None)
    recall = campaign["campaign_recall"] if campaign else None
    queries = [_cell(key, pooled[key]) for key in ("median_queries", "p90_queries")]
    return [
        DETECTOR_NAMES.get(result["detector"], result["detector"]),
        f"{worst['roc_auc']:.3f} ({worst['strategy']})",
        f"{pooled['roc_auc']:.3f}",
        f"{pooled['tpr_at_1pct']:.3f}",
        " / ".join(queries),
        _cell("campaign_recall", None) if recall is None else f"{recall:.2f}",
        f"{len(result['hard_negatives_flagged'])}/{len(result['hard_negatives'])}",
        f"{result.get('events_per_s_benign', result['events_per_s']):,.0f}",
    ]


def readme_table(results: list[dict]) -> str:
    """One row per detector; the events/s column says which traffic it timed (a run without
    `--large-batch` times the world's log in small batches, not ordinary benign traffic)."""
    large = all("events_per_s_benign" in result for result in results)
    columns = [*README_COLUMNS[:-1], README_COLUMNS[-1] if large else "events/s (small batches)"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(readme_row(result)) + " |" for result in results]
    return "\n".join(lines) + "\n"


def machine() -> str:
    return f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}"


# --- the run ----------------------------------------------------------------------------------
def _describe(world: World, scenario: Scenario) -> dict[str, Any]:
    config = scenario.config
    return {
        "population": world.population,
        "prompt_sources": world.prompt_sources,
        "log_shape": world.log_shape,
        "events_file": scenario.events_path.name,
        "calibration_file": scenario.calibration_path.name,
        "config": asdict(config) if is_dataclass(config) and not isinstance(config, type) else {},
        "events": sum(1 for _ in scenario.events_path.open("rb")),
        "calibration_events": sum(1 for _ in scenario.calibration_path.open("rb")),
        "accounts": len(scenario.actors),
    }


def run_lowo(
    worlds: Mapping[str, World],
    detectors: Sequence[str],
    calibrations: Sequence[str] = CALIBRATIONS,
    *,
    make: Callable[..., Detector],
    small: bool = False,
    rebuild: bool = False,
    batch: int = REPLAY_BATCH,
    per_account: int = REPLAY_PER_ACCOUNT,
    large_batch: int = 0,
    embedder: CachedEmbedder | None = None,
) -> dict:
    """Hold out each world in turn; per detector and calibration (`calibration_for`), fit,
    run the held-out world's log through the pipeline, evaluate. `make(name, timed=False)`
    builds a fresh detector (no state survives from one run to the next); the events/s run
    (`large_batch`) gets `timed=True` and the accuracy run's calibration, not a second fit.
    Returns the report (no files)."""
    scenarios = {name: world.build(small, rebuild, console.print) for name, world in worlds.items()}
    report: dict[str, Any] = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "small": small,
        "machine": machine(),
        "worlds": {name: _describe(worlds[name], s) for name, s in scenarios.items()},
        "detectors": list(detectors),
        "calibrations": list(calibrations),
        "batch": batch,
        "per_account": per_account,
        "large_batch": large_batch,
        "targets": {metric.key: metric.target for metric in LOWO_METRICS},
        "embedding": {},
        "skipped": [],
        "results": [],
    }
    warmed = False
    for held_out, scenario in scenarios.items():
        lines = scenario.events_path.read_bytes().splitlines()
        work = batches(lines, batch, per_account)
        ordinary = {
            account
            for account, actor in scenario.actors.items()
            if not actor.startswith(("attack:", "power:"))
        }
        benign_lines = [line for line in lines if orjson.loads(line)["account_id"] in ordinary]
        plans = {mode: calibration_for(mode, held_out, scenarios) for mode in calibrations}
        for mode, plan in plans.items():
            if plan is None:
                report["skipped"].append(f"{held_out}, {mode}: no other world to calibrate on")
        for name in detectors:
            for mode, plan in plans.items():
                if plan is None:
                    continue
                detector = make(name)
                cached = getattr(detector, "embedder", None)
                if cached is embedder and embedder is not None and not warmed:
                    prompts = [
                        event.prompt_text[:PROMPT_CHARS]
                        for s in scenarios.values()
                        for path in (s.calibration_path, s.events_path)
                        for event in events_in_file(path)
                    ]
                    count, seconds = warm(embedder, prompts)
                    report["embedding"] = {"prompts_embedded": count, "seconds": seconds}
                    console.print(
                        f"MiniLM ({embedder.max_seq_length} tokens): {count} new prompts "
                        f"embedded in {seconds:.0f} s"
                    )
                    warmed = True
                label = f"{name} on {held_out}, {CALIBRATION_NAMES[mode]}"
                run = run_detector(name, detector, plan.events, work, label=label)
                result = evaluate(run, scenario) | {
                    "world": held_out,
                    "calibration": mode,
                    "calibrated_on": list(plan.worlds),
                    "calibration_events": len(plan.events),
                    "calibration_accounts": len({event.account_id for event in plan.events}),
                }
                if large_batch and benign_lines:
                    # As a deployed worker runs (profiles encoded for the linker role), and with
                    # campaigns linked in process (as `score` and the demo run); on ordinary
                    # benign traffic, and on the whole log with its attackers.
                    timed = {
                        (traffic, role): run_detector(
                            name,
                            make(name, timed=True),
                            detector.calibration(),
                            batches(timed_lines, large_batch, 0),
                            label=f"{label}, {traffic} traffic in batches of {large_batch}, {role}",
                            publisher=MemoryPublisher() if role == "worker" else None,
                        ).events_per_s
                        for traffic, timed_lines in (("benign", benign_lines), ("all", lines))
                        for role in ("worker", "in process")
                    }
                    result |= {
                        "events_per_s_benign": timed["benign", "worker"],
                        "events_per_s_in_process": timed["benign", "in process"],
                        "events_per_s_all_traffic": timed["all", "worker"],
                        "events_per_s_all_traffic_in_process": timed["all", "in process"],
                        "large_batch": large_batch,
                    }
                    result["metrics"] = lowo_metrics(result)
                report["results"].append(result)
                console.print(rich_table(result))
    report["headline"] = worst_worlds(report["results"])
    report["command"] = command_line()
    return report


# Settings that change what a result means: runs combined into one table must share them.
_COMPARABLE = ("small", "batch", "per_account", "large_batch")


def combine_reports(reports: Sequence[dict]) -> dict:
    """One report from several runs, so that re-running one detector after a change, or
    measuring a new world, does not mean re-running every peer on every world (`--combine`).
    For each detector, held-out world and calibration the latest run's result wins; the
    headline is recomputed; `sources` says which run (command, date, wall time) measured which
    detectors. Runs may hold different worlds: an own-history result depends on its world alone,
    but a transfer result calibrates on the run's other worlds, so transfer results must come
    from runs that held every world of the table."""
    ordered = sorted(map(_never_restored, reports), key=lambda report: report["generated_at"])
    for key in _COMPARABLE:
        values = {orjson.dumps(report[key], option=orjson.OPT_SORT_KEYS) for report in ordered}
        if len(values) > 1:
            raise typer.BadParameter(f"the reports differ in {key}: they cannot share a table")
    worlds: dict[str, dict] = {}  # each world's description, the widest run's order first
    for report in sorted(ordered, key=lambda report: -len(report["worlds"])):
        worlds |= {name: about for name, about in report["worlds"].items() if name not in worlds}
    for report in ordered:
        partial = set(report["worlds"]) != set(worlds)
        if partial and any(r["calibration"] == "transfer" for r in report["results"]):
            raise typer.BadParameter(
                f"a run on {', '.join(report['worlds'])} has transfer results, which calibrate "
                f"on the run's other worlds: combine it only with runs on the same worlds"
            )
    latest: dict[tuple[str, str, str], dict] = {}
    for report in ordered:
        for result in report["results"]:
            latest[result["detector"], result["world"], result["calibration"]] = result
    order = list(worlds)
    results = sorted(
        latest.values(),
        key=lambda r: (
            order.index(r["world"]),
            DETECTORS.index(r["detector"]),
            CALIBRATIONS.index(r["calibration"]),
        ),
    )
    return {
        **ordered[-1],
        "worlds": worlds,
        "detectors": [name for name in DETECTORS if any(k[0] == name for k in latest)],
        "calibrations": [mode for mode in CALIBRATIONS if any(k[2] == mode for k in latest)],
        "skipped": sorted({s for report in ordered for s in report["skipped"]}),
        "results": results,
        "headline": worst_worlds(results),
        "wall_seconds": sum(report["wall_seconds"] for report in ordered),
        "sources": [
            {
                "generated_at": report["generated_at"],
                "command": _command_of(report),
                "detectors": sorted({r["detector"] for r in report["results"]}),
                "wall_seconds": report["wall_seconds"],
            }
            for report in ordered
        ],
    }


def _never_restored(report: dict) -> dict:
    """A saved report with its quantiles of queries as measured: JSON has no infinity (orjson
    writes null), so a world where no attacker was ever flagged ("never", `queries_quantile`)
    read back as not measurable, and the recomputed headline left it out (a median of 34 met
    on the worst world where three worlds never flagged one)."""

    def restored(values: dict) -> dict:
        return {
            key: math.inf if value is None and key.endswith(QUERY_KEYS) else value
            for key, value in values.items()
        }

    results = [
        result
        | {"metrics": restored(result["metrics"]), "rows": list(map(restored, result["rows"]))}
        for result in report["results"]
    ]
    return report | {"results": results}


def _command_of(report: dict) -> str:
    """The command that produced a report (reports from before it was recorded: rebuilt from
    the detectors and calibrations it ran)."""
    return report.get("command") or (
        f"python -m bench.detection --detectors {','.join(report['detectors'])} "
        f"--calibrations {','.join(report['calibrations'])}"
    )


def _header(report: dict) -> str:
    """The results files' header line: the command and wall time, or each combined run's."""
    if "sources" not in report:
        return measured_by(seconds=report["wall_seconds"])
    runs = "; ".join(
        f"`{source['command']}` ({source['generated_at'][:10]}, wall "
        f"{duration(source['wall_seconds'])})"
        for source in report["sources"]
    )
    return measured_by(note=f"combining the runs {runs}")


# The figures forensic reports quote (services/reports.py reads the JSON at render time).
ERROR_RATES = "detection-error-rates"
RESULTS_TABLE = "detection-lowo"
_FLAGGED = re.compile(r"\((?P<flagged>\d+)/(?P<accounts>\d+)\)")
_SHARE = re.compile(r"(?P<percent>[\d.]+) %")


def world_figures(report: dict) -> list[dict]:
    """Per held-out world, detector and calibration: attacker and benign accounts flagged (as
    counts), the ROC AUC, and each attack strategy's share of accounts flagged."""
    figures = []
    for result in report["results"]:
        pooled = result["rows"][-1]
        figures.append(
            {
                "world": result["world"],
                "detector": result["detector"],
                "calibration": result["calibration"],
                "attackers": [
                    round(result["metrics"]["attackers_flagged"] * pooled["accounts"]),
                    pooled["accounts"],
                ],
                "benign": [len(result["benign_flagged_any"]), result["benign_accounts"]],
                "roc_auc": result["metrics"]["roc_auc"],
                "strategies": {
                    row["strategy"]: row["flagged_any"]
                    for row in result["rows"]
                    if row["strategy"] != "all attacks"
                },
            }
        )
    return figures


def world_figures_from_table(table: str) -> list[dict]:
    """`world_figures` read back from a `lowo_table` file (bench/results/detection-lowo.md), for
    figures measured before the benchmark wrote its error rates (strategy shares are rounded
    to whole percents there)."""
    detectors = {name: key for key, name in DETECTOR_NAMES.items()}
    calibrations = {name: key for key, name in CALIBRATION_NAMES.items()}
    figures: dict[tuple[str, str, str], dict] = {}
    section, worlds, order, column = "", [], [], {}
    for line in table.splitlines():
        if line.startswith("**Per held-out world:**"):
            section = "world"
        elif line.startswith("**Per strategy:**"):  # "..., own history / other worlds:"
            section = "strategy"
            order = [calibrations[n.strip()] for n in line.split(",")[-1].rstrip(":").split("/")]
        if not line.startswith("| ") or not section:
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if cells[0] == "strategy":
            worlds = cells[2:]
        elif section == "world" and cells[0] == "world":
            column = {name: i for i, name in enumerate(cells)}
        elif section == "world":
            attackers, benign = (
                _FLAGGED.search(cells[column[name]])
                for name in ("attackers flagged", "benign flagged")
            )
            auc = cells[column["ROC AUC"]]
            assert attackers and benign, line
            key = (cells[0], detectors[cells[1]], calibrations[cells[2]])
            figures[key] = {
                "world": key[0],
                "detector": key[1],
                "calibration": key[2],
                "attackers": [int(attackers["flagged"]), int(attackers["accounts"])],
                "benign": [int(benign["flagged"]), int(benign["accounts"])],
                "roc_auc": None if auc == "—" else float(auc),
                "strategies": {},
            }
        elif section == "strategy" and cells[0] != "all attacks":
            for world, cell in zip(worlds, cells[2:], strict=True):
                for calibration, part in zip(order, cell.split(" / "), strict=False):
                    share = _SHARE.match(part.strip())
                    entry = figures.get((world, detectors[cells[1]], calibration))
                    if share and entry is not None:
                        entry["strategies"][cells[0]] = float(share["percent"]) / 100
    return list(figures.values())


def error_rates(figures: Sequence[dict], measured: str) -> dict:
    """Per detector and calibration, the worst held-out world's benign and attacker accounts
    flagged (with their counts), the lowest ROC AUC, and the strategies flagged in no world:
    what a forensic report states as the detector's measured error rates and limits."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for figure in figures:
        groups.setdefault((figure["detector"], figure["calibration"]), []).append(figure)
    detectors: dict[str, dict[str, dict]] = {}
    for (detector, calibration), group in groups.items():

        def share(pair: list[int]) -> float:
            return pair[0] / pair[1] if pair[1] else 0.0

        benign = max(group, key=lambda f: share(f["benign"]))  # first world on ties
        attackers = min(group, key=lambda f: share(f["attackers"]))
        scored = [f for f in group if f["roc_auc"] is not None]
        auc = min(scored, key=lambda f: f["roc_auc"]) if scored else None
        strategies = dict.fromkeys(s for f in group for s in f["strategies"])
        detectors.setdefault(detector, {})[calibration] = {
            "benign_flagged": _worst(benign, "benign"),
            "attackers_flagged": _worst(attackers, "attackers"),
            "roc_auc": None if auc is None else {"value": auc["roc_auc"], "world": auc["world"]},
            "strategies_never_flagged": [
                s for s in strategies if all(f["strategies"].get(s, 0.0) == 0.0 for f in group)
            ],
        }
    return {
        "measured": measured,
        "source": f"bench/results/{RESULTS_TABLE}.md",
        "worlds": list(dict.fromkeys(f["world"] for f in figures)),
        "detectors": detectors,
    }


def _worst(figure: dict, side: str) -> dict:
    flagged, accounts = figure[side]
    return {"flagged": flagged, "accounts": accounts, "world": figure["world"]}


def write_error_rates(rates: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(rates, option=orjson.OPT_INDENT_2) + b"\n")
    return path


def write_outputs(
    report: dict, cache: Path, table_path: Callable[[str], Path] | None = None
) -> dict[str, Path]:
    """The JSON and markdown reports under `cache` (keyed by the worlds' built files), the LOWO
    table for the README (`table_path(name)`, default `bench.readme.result_path`), and the
    single-scenario table when `sharegpt-chat` ran on its own history. Returns what was
    written, by kind."""
    table_path = table_path or result_path
    files = sorted((name, info["events_file"]) for name, info in report["worlds"].items())
    digest = hashlib.sha256(orjson.dumps(files)).hexdigest()[:12]
    stem = cache / f"detection-lowo-{digest}"
    stem.parent.mkdir(parents=True, exist_ok=True)
    written = {"json": stem.with_suffix(".json"), "markdown": stem.with_suffix(".md")}
    written["json"].write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    written["markdown"].write_text(markdown(report))
    header = _header(report)
    suffix = "-small" if report["small"] else ""
    written["table"] = write_table(
        table_path(f"{RESULTS_TABLE}{suffix}"), lowo_table(report), header
    )
    written["error_rates"] = write_error_rates(
        error_rates(world_figures(report), header),
        table_path(f"{ERROR_RATES}{suffix}").with_suffix(".json"),
    )
    single = [
        result
        for result in report["results"]
        if result["world"] == SINGLE_SCENARIO_WORLD and result["calibration"] == "own"
    ]
    if single:
        written["single_scenario_table"] = write_table(
            table_path(f"detection{suffix}"), readme_table(single), header
        )
    return written


def _names(value: str | None, known: Sequence[str], what: str) -> list[str]:
    if value is None:
        return list(known)
    names = [name.strip() for name in value.split(",") if name.strip()]
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise typer.BadParameter(f"unknown {what} {unknown}: one of {', '.join(known)}")
    return list(dict.fromkeys(names))


app = typer.Typer(add_completion=False)


@app.command()
def main(
    small: Annotated[bool, typer.Option(help="The worlds' small variants.")] = False,
    worlds: Annotated[
        str | None,
        typer.Option(help="Comma-separated worlds to hold out and transfer from (default all)."),
    ] = None,
    detectors: Annotated[str, typer.Option(help="Comma-separated.")] = ",".join(DETECTORS),
    calibrations: Annotated[
        str,
        typer.Option(
            help="Comma-separated: own (the held-out world's benign history), transfer (the "
            "other worlds' benign histories only)."
        ),
    ] = ",".join(CALIBRATIONS),
    rebuild: Annotated[bool, typer.Option(help="Rebuild the worlds.")] = False,
    batch: Annotated[int, typer.Option(help="Records per pipeline batch, at most.")] = 200,
    per_account: Annotated[
        int, typer.Option(help="Cut a batch when one account has this many requests in it.")
    ] = 5,
    large_batch: Annotated[
        int,
        typer.Option(
            help="Also time each detector on the world's ordinary benign users' traffic (as "
            "production traffic is: nearly all honest), and on its whole log with the attackers, "
            "in batches this large, as a worker runs and linking in process (0: skip)."
        ),
    ] = 0,
    combine: Annotated[
        list[Path] | None,
        typer.Option(
            help="Run nothing: write the tables from these saved reports (JSON, same batch sizes; "
            "transfer results only from runs on every world), "
            "the latest run's result winning per detector, world and calibration. Repeatable."
        ),
    ] = None,
) -> None:
    """Leave-one-world-out detection benchmark (see the module docstring)."""
    if combine:
        report = combine_reports([orjson.loads(path.read_bytes()) for path in combine])
        print_lowo(report)
        written = write_outputs(report, CACHE)
        console.print("; ".join(f"{kind}: {path}" for kind, path in written.items()))
        return
    wall = time.perf_counter()
    chosen = _names(worlds, list(WORLDS), "world")
    names = _names(detectors, DETECTORS, "detector")
    modes = _names(calibrations, CALIBRATIONS, "calibration")
    embedder = cached_embedder(CACHE)
    report = run_lowo(
        {name: WORLDS[name] for name in chosen},
        names,
        modes,
        make=lambda name, timed=False: make_detector(name, embedder, timed),
        small=small,
        rebuild=rebuild,
        batch=batch,
        per_account=per_account,
        large_batch=large_batch,
        embedder=embedder,
    )
    report["wall_seconds"] = time.perf_counter() - wall
    print_lowo(report)
    for skipped in report["skipped"]:
        console.print(f"skipped: {skipped}")
    written = write_outputs(report, CACHE)
    console.print(
        f"wall time {report['wall_seconds']:.0f} s; "
        + "; ".join(f"{kind}: {path}" for kind, path in written.items())
    )


if __name__ == "__main__":
    app()
