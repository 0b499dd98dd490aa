"""Detection-quality benchmark: DistillGuard's detector beside clean-room baselines, same traffic.

    python -m bench.detection [--small] [--detectors ours,ours_full,prada,mmd,volume_z]
                              [--large-batch 5000]

Each detector is fitted on the scenario's benign calibration traffic (never on attack labels),
then the evaluation log runs through the real `Pipeline`, in time order, in small batches. Per
detector and attack strategy the table gives account-level ROC AUC (the strategy's accounts
against every honest account, hard negatives included), TPR with no and with 1% of honest
accounts flagged (thresholds from honest accounts' scores), the share flagged at the detector's
own threshold, median and p90 queries before detection (an account never flagged counts as
never), recall of the multi-account campaign, and per detector the hard negatives flagged and
events/s. Results also go to JSON and markdown under `.distillguard/bench/`, and the README's
one-row-per-detector table to `bench/results/detection.md` (full scenario; `bench/readme.py`).
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
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
from bench.scenario import CAMPAIGN, FULL, HARD_NEGATIVES, SMALL, Scenario, build
from core.batch import Batch
from core.events import Event
from core.hashing import prompt_key
from core.settings import Settings
from core.verdicts import Assessment, first_flags
from detectors.base import Detector
from detectors.baselines import BASELINES
from detectors.features import PROMPT_CHARS
from detectors.registry import events_in_file
from streaming.pipeline import Pipeline
from streaming.sinks import BufferedSink
from streaming.sources import records_from_lines
from students.measured import measured_by, write_table

# Ours in the default tiered mode and with every prompt embedded: the difference is what the
# tiered mode gives up for its speed.
OURS = {"ours": "tiered", "ours_full": "full"}
DETECTORS = (*OURS, *BASELINES)
TARGETS = {
    "roc_auc": 0.98,
    "tpr_at_1pct": 0.90,
    "median_queries": 50,
    "campaign_recall": 0.90,
    "events_per_s": 2000,
}
console = Console(width=140)


# --- running a detector -----------------------------------------------------------------------
class CachedEmbedder:
    """MiniLM (`PromptEmbedder`) behind a disk cache keyed by prompt hash, so the baselines'
    vectors survive between benchmark runs (MiniLM embeds ~70 prompts/s on this CPU). The model
    is loaded only when a prompt is missing; `misses` counts the prompts it had to embed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.misses = 0
        self._model = None
        self._vectors: dict[str, np.ndarray] = {}
        if path.exists():
            with np.load(path) as stored:
                self._vectors = dict(zip(stored["keys"].tolist(), stored["vectors"], strict=True))
        self._saved = len(self._vectors)

    def __call__(self, prompts: list[str]) -> list[np.ndarray]:
        keys = [prompt_key(p) for p in prompts]
        missing = {k: p for k, p in zip(keys, prompts, strict=True) if k not in self._vectors}
        if missing:
            if self._model is None:
                from detectors.embedding import PromptEmbedder

                self._model = PromptEmbedder()
            vectors = np.asarray(self._model(list(missing.values())), dtype=np.float32)
            self._vectors.update(zip(missing, vectors, strict=True))
            self.misses += len(missing)
        return [self._vectors[k] for k in keys]

    def save(self) -> None:
        if len(self._vectors) == self._saved:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_suffix(".partial.npz")
        np.savez(
            partial, keys=np.array(list(self._vectors)), vectors=np.stack([*self._vectors.values()])
        )
        partial.replace(self.path)
        self._saved = len(self._vectors)


class ScoreRecorder(Detector):
    """Passes everything to the detector under test and keeps each account's highest score: the
    pipeline emits a verdict only on a material change, so verdicts alone would round scores."""

    def __init__(self, inner: Detector) -> None:
        self.inner = inner
        self.name, self.version = inner.name, inner.version
        self.max_score: dict[str, float] = {}

    def __getattr__(self, attribute: str) -> Any:  # anything else the pipeline may ask for
        return getattr(self.inner, attribute)

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
    """Keeps the verdicts of every successful flush; drops event rows and states."""

    name = "collector"

    def __init__(self) -> None:
        super().__init__()
        self.collected: list = []

    def _write(self, batch: Batch) -> None:
        self.collected.extend(batch.verdicts)


def batches(lines: list[bytes], size: int, per_account: int) -> list[tuple[int, list[bytes]]]:
    """Consecutive slices of the time-ordered log, cut at `size` records or when one account has
    `per_account` requests in the slice (0: never): a burst attacker would otherwise fill whole
    batches, and `requests_seen` at a first flag is exact only to within the account's share of
    a batch."""
    cuts: list[tuple[int, list[bytes]]] = []
    start, counts = 0, {}
    for offset, line in enumerate(lines):
        account = orjson.loads(line)["account_id"]
        counts[account] = counts.get(account, 0) + 1
        if offset + 1 - start == size or counts[account] == per_account:
            cuts.append((start, lines[start : offset + 1]))
            start, counts = offset + 1, {}
    if start < len(lines):
        cuts.append((start, lines[start:]))
    return cuts


@dataclass
class Run:
    """One detector over the scenario: what each account got."""

    name: str
    version: str
    fit_seconds: float
    seconds: float
    events: int
    max_score: dict[str, float]
    first_flag: dict[str, int]  # account -> requests_seen at its first `extraction` verdict
    clusters: dict[str, set[str]] = field(default_factory=dict)  # account -> its cluster ids
    flagged_clusters: set[str] = field(default_factory=set)

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def warm(embedder: CachedEmbedder, prompts: list[str], chunk: int = 2000) -> tuple[int, float]:
    """Embed every prompt of the scenario before any detector runs, in large batches and saved
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


def make_detector(name: str, embedder: CachedEmbedder) -> Detector:
    if name in OURS:
        from detectors.registry import build_detector

        return build_detector(Settings(embedding_tier=OURS[name]))
    return BASELINES[name](embedder)


def run_detector(
    name: str,
    detector: Detector,
    calibration: list[Event],
    work: list[tuple[int, list[bytes]]],
    checkpoint_every: int = 5000,
) -> Run:
    """Fit on benign calibration traffic, then the evaluation log through the real pipeline
    (checkpointing every `checkpoint_every` records, as a worker would)."""
    started = time.perf_counter()
    detector.fit(calibration)
    fit_seconds = time.perf_counter() - started
    recorder, sink = ScoreRecorder(detector), VerdictCollector()
    pipeline = Pipeline(recorder, [sink])
    since_checkpoint, events = 0, 0
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"{name}", total=sum(len(lines) for _, lines in work))
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
    flags = {a: v.requests_seen for a, v in first_flags(sink.collected).items()}
    run = Run(name, detector.version, fit_seconds, seconds, events, recorder.max_score, flags)
    for verdict in sink.collected:
        if verdict.cluster_id is not None:
            run.clusters.setdefault(verdict.account_id, set()).add(verdict.cluster_id)
            if verdict.label == "extraction":
                run.flagged_clusters.add(verdict.cluster_id)
    return run


# --- metrics ----------------------------------------------------------------------------------
def tpr_at(positives: np.ndarray, negatives: np.ndarray, max_fp_share: float) -> float:
    """Share of positives scoring above the highest threshold that flags at most
    `max_fp_share` of negatives (ties count against the detector)."""
    allowed = int(max_fp_share * len(negatives))
    ordered = np.sort(negatives)[::-1]
    threshold = ordered[allowed] if allowed < len(ordered) else -math.inf
    return float(np.mean(positives > threshold))


def queries_quantile(values: list[float], q: float) -> float:
    """A quantile of queries before detection, never-flagged accounts counted as infinite."""
    return float(np.quantile(values, q, method="inverted_cdf")) if values else math.inf


def strategy_row(strategy: str, positives: list[str], honest: list[str], run: Run) -> dict:
    from sklearn.metrics import roc_auc_score

    pos = np.array([run.max_score.get(a, 0.0) for a in positives])
    neg = np.array([run.max_score.get(a, 0.0) for a in honest])
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    queries = [float(run.first_flag.get(a, math.inf)) for a in positives]
    row = {
        "strategy": strategy,
        "accounts": len(positives),
        "roc_auc": float(roc_auc_score(labels, np.r_[pos, neg])),
        "tpr_at_0": tpr_at(pos, neg, 0.0),
        "tpr_at_1pct": tpr_at(pos, neg, 0.01),
        "flagged_default": float(np.mean([a in run.first_flag for a in positives])),
        "median_queries": queries_quantile(queries, 0.5),
        "p90_queries": queries_quantile(queries, 0.9),
        "campaign_recall": None,
    }
    if strategy == CAMPAIGN:
        caught = [
            a in run.first_flag or bool(run.clusters.get(a, set()) & run.flagged_clusters)
            for a in positives
        ]
        row["campaign_recall"] = float(np.mean(caught))
    return row


def evaluate(run: Run, scenario: Scenario) -> dict:
    honest = scenario.benign
    attackers = scenario.accounts(lambda actor: actor.startswith("attack:"))
    rows = [
        strategy_row(
            name, scenario.accounts(lambda actor, n=name: actor == f"attack:{n}"), honest, run
        )
        for name in scenario.strategies
    ]
    rows.append(strategy_row("all attacks", attackers, honest, run))
    hard = scenario.accounts(lambda actor: actor in HARD_NEGATIVES)
    return {
        "detector": run.name,
        "version": run.version,
        "fit_seconds": run.fit_seconds,
        "seconds": run.seconds,
        "events": run.events,
        "events_per_s": run.events_per_s,
        "honest_accounts": len(honest),
        "honest_flagged": sorted(a for a in honest if a in run.first_flag),
        "honest_in_flagged_clusters": sorted(
            a
            for a in honest
            if a not in run.first_flag and run.clusters.get(a, set()) & run.flagged_clusters
        ),
        "hard_negatives": hard,
        "hard_negatives_flagged": sorted(a for a in hard if a in run.first_flag),
        "rows": rows,
    }


def meets_targets(result: dict) -> dict[str, bool]:
    """The issue's targets, read from the pooled row, the worst strategy and the campaign."""
    pooled = result["rows"][-1]
    campaign = next((r for r in result["rows"] if r["strategy"] == CAMPAIGN), None)
    return {
        "roc_auc": min(r["roc_auc"] for r in result["rows"]) >= TARGETS["roc_auc"],
        "tpr_at_1pct": pooled["tpr_at_1pct"] >= TARGETS["tpr_at_1pct"],
        "median_queries": pooled["median_queries"] <= TARGETS["median_queries"],
        "campaign_recall": bool(campaign)
        and (campaign["campaign_recall"] or 0) >= TARGETS["campaign_recall"],
        "hard_negatives": not result["hard_negatives_flagged"],
        "events_per_s": result.get("events_per_s_benign", result["events_per_s"])
        >= TARGETS["events_per_s"],
    }


# --- output -----------------------------------------------------------------------------------
COLUMNS = (
    ("strategy", "strategy"),
    ("accounts", "accounts"),
    ("roc_auc", "ROC AUC"),
    ("tpr_at_0", "TPR @0 FP"),
    ("tpr_at_1pct", "TPR @1% FP"),
    ("flagged_default", "flagged @default"),
    ("median_queries", "median queries"),
    ("p90_queries", "p90 queries"),
    ("campaign_recall", "campaign recall"),
)


def _cell(key: str, value: Any) -> str:
    if value is None:
        return "—"
    if key.endswith("queries"):
        return "never" if math.isinf(value) else f"{value:.0f}"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _headline(result: dict) -> str:
    benign = result.get("events_per_s_benign")
    return (
        f"{result['detector']} ({result['version']}): {result['events_per_s']:,.0f} events/s"
        + (
            f" on this scenario, {benign:,.0f} on ordinary benign traffic in batches of "
            f"{result['large_batch']:,}"
            if benign
            else ""
        )
        + f", fit {result['fit_seconds']:.1f} s, honest accounts flagged "
        f"{len(result['honest_flagged'])}/{result['honest_accounts']}"
        + (
            f" (+{len(result['honest_in_flagged_clusters'])} in flagged clusters)"
            if result["honest_in_flagged_clusters"]
            else ""
        )
        + f", hard negatives flagged {len(result['hard_negatives_flagged'])}/"
        f"{len(result['hard_negatives'])} {result['hard_negatives_flagged'] or ''}"
    )


def rich_table(result: dict) -> Table:
    table = Table(title=_headline(result), title_justify="left")
    for _, header in COLUMNS:
        table.add_column(header, justify="right")
    for row in result["rows"]:
        table.add_row(*(_cell(key, row[key]) for key, _ in COLUMNS))
    return table


def summary_table(results: list[dict]) -> Table:
    table = Table(title="Targets (ROC AUC: worst strategy; TPR, median queries: all attacks)")
    names = list(meets_targets(results[0])) if results else []
    table.add_column("detector")
    for name in names:
        table.add_column(name, justify="center")
    for result in results:
        checks = meets_targets(result)
        table.add_row(result["detector"], *("pass" if checks[n] else "FAIL" for n in names))
    return table


def markdown(report: dict) -> str:
    lines = [
        f"# Detection benchmark ({report['generated_at']})",
        "",
        f"Scenario `{report['scenario']}`, {report['events']} events, {report['machine']}. "
        f"Wall time {report['wall_seconds']:.0f} s.",
    ]
    for result in report["results"]:
        lines += [
            "",
            f"## {_headline(result)}",
            "",
            "| " + " | ".join(header for _, header in COLUMNS) + " |",
            "|" + "---|" * len(COLUMNS),
        ]
        lines += [
            "| " + " | ".join(_cell(key, row[key]) for key, _ in COLUMNS) + " |"
            for row in result["rows"]
        ]
    return "\n".join(lines) + "\n"


# The README's table: one row per detector, worst strategy and pooled figures.
README_NAMES = {
    "ours": "ours (tiered)",
    "ours_full": "ours, full embeddings",
    "prada": "PRADA",
    "mmd": "per-account MMD",
    "volume_z": "volume z-score",
}
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


def readme_row(result: dict) -> list[str]:
    *strategies, pooled = result["rows"]
    worst = min(strategies, key=lambda row: row["roc_auc"])
    campaign = next((row for row in strategies if row["strategy"] == CAMPAIGN), None)
    recall = campaign["campaign_recall"] if campaign else None
    queries = [_cell(key, pooled[key]) for key in ("median_queries", "p90_queries")]
    return [
        README_NAMES.get(result["detector"], result["detector"]),
        f"{worst['roc_auc']:.3f} ({worst['strategy']})",
        f"{pooled['roc_auc']:.3f}",
        f"{pooled['tpr_at_1pct']:.3f}",
        " / ".join(queries),
        _cell("campaign_recall", None) if recall is None else f"{recall:.2f}",
        f"{len(result['hard_negatives_flagged'])}/{len(result['hard_negatives'])}",
        f"{result.get('events_per_s_benign', result['events_per_s']):,.0f}",
    ]


def readme_table(results: list[dict]) -> str:
    lines = ["| " + " | ".join(README_COLUMNS) + " |", "|" + "---|" * len(README_COLUMNS)]
    lines += ["| " + " | ".join(readme_row(result)) + " |" for result in results]
    return "\n".join(lines) + "\n"


def machine() -> str:
    return f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}"


def main(
    small: Annotated[bool, typer.Option(help="The small scenario (no teacher).")] = False,
    detectors: Annotated[str, typer.Option(help="Comma-separated.")] = ",".join(DETECTORS),
    rebuild: Annotated[bool, typer.Option(help="Rebuild the scenario.")] = False,
    batch: Annotated[int, typer.Option(help="Records per pipeline batch, at most.")] = 200,
    per_account: Annotated[
        int, typer.Option(help="Cut a batch when one account has this many requests in it.")
    ] = 5,
    large_batch: Annotated[
        int,
        typer.Option(
            help="Also time each detector on the scenario's ordinary benign users' traffic (as "
            "production traffic is: nearly all honest) in batches this large, as a worker "
            "runs (0: skip)."
        ),
    ] = 0,
) -> None:
    wall = time.perf_counter()
    scenario = build(SMALL if small else FULL, rebuild=rebuild, log=console.print)
    lines = scenario.events_path.read_bytes().splitlines()
    work = batches(lines, batch, per_account)
    calibration = list(events_in_file(scenario.calibration_path))
    embedder = CachedEmbedder(CACHE / "embeddings-minilm.npz")
    embedding: dict[str, float] = {}
    results = []
    for name in [d.strip() for d in detectors.split(",") if d.strip()]:
        detector = make_detector(name, embedder)
        if getattr(detector, "embedder", None) is embedder and not embedding:
            events = [*calibration, *events_in_file(scenario.events_path)]
            count, seconds = warm(embedder, [e.prompt_text[:PROMPT_CHARS] for e in events])
            embedding = {"prompts_embedded": count, "seconds": seconds}
            console.print(f"MiniLM: {count} new prompts embedded in {seconds:.0f} s")
        run = run_detector(name, detector, calibration, work)
        results.append(evaluate(run, scenario))
        if large_batch:
            ordinary = set(scenario.accounts(lambda actor: actor == "benign"))
            benign_lines = [line for line in lines if orjson.loads(line)["account_id"] in ordinary]
            timed = run_detector(
                name,
                make_detector(name, embedder),
                calibration,
                batches(benign_lines, large_batch, 0),
            )
            results[-1] |= {"events_per_s_benign": timed.events_per_s, "large_batch": large_batch}
        console.print(rich_table(results[-1]))
    console.print(summary_table(results))
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "scenario": scenario.config.key,
        "config": asdict(scenario.config),
        "events": len(lines),
        "batches": len(work),
        "machine": machine(),
        "wall_seconds": time.perf_counter() - wall,
        "targets": TARGETS,
        "embedding": embedding,
        "results": results,
    }
    stem = CACHE / f"detection-{scenario.config.key}"
    stem.with_suffix(".json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    stem.with_suffix(".md").write_text(markdown(report))
    table = result_path("detection" if scenario.config == FULL else "detection-small")
    write_table(table, readme_table(results), measured_by(seconds=report["wall_seconds"]))
    console.print(
        f"wall time {report['wall_seconds']:.0f} s; report: {stem}.json, {stem}.md; "
        f"README table: {table}"
    )


if __name__ == "__main__":
    typer.run(main)
