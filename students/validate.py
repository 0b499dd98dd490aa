"""`distillguard validate`: the detection benchmark's traffic (`students.scenario`: its benign
population, hard negatives and every attacker, at the benchmark's scale) through the full
DistillGuard pipeline; then real students trained on what each attacker harvested, read off
their learning curve at the attacker's first flag.

Capability leaked before detection, for one attacker and one training seed:

    leaked = (f(n_flag) - f(0)) / (f(N) - f(0))

f(n) is the next-token agreement with the teacher, on held-out prompts, of a student trained for
one epoch at a constant rate on the attacker's first n harvested pairs (time order). N is its
harvest, capped at `harvest_cap` pairs (the CPU budget); n_flag is how many of those it had
harvested when the first of its accounts was flagged. One training run reads both points: the
pre-flag pairs come first (shuffled among themselves by the seed), the rest after, and the
student is measured when it has seen n_flag and N pairs (`train_student(segments=...)`). An
attacker never flagged, or flagged after its capped harvest, leaked 100 %; one flagged before its
first harvested answer, 0 %: neither needs a student.

Per strategy: the mean over every (attacker, training seed) and a 95 % Student-t interval over
those values. A strategy's attackers are the scenario's replicas (the default: three accounts per
single-account strategy, one 40-account campaign, one of each interactive strategy), so the
interval spans attack draws as well as training seeds.

The harvested answers are the teacher's greedy answers of `max_tokens` tokens to the attacker's
own messages (cached by the teacher's response cache), shorter than the 256 tokens the logged
requests ask for: the CPU teacher answers thousands of prompts in minutes this way.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from core.settings import Settings
from core.verdicts import Label, Verdict, first_flags
from detectors.base import calibration_of
from detectors.registry import events_in_file
from distillguard.wiring import build_detector, build_pipeline
from streaming.sinks import VerdictFileSink
from streaming.sources import records_from_lines
from students.actors import PlannedRequest
from students.distill import Fidelity, Pair, measure_fidelity, train_student
from students.embeddings import cached_embedder, with_cached_vectors
from students.prompts import attack_pool
from students.pruned import StudentSpec
from students.scenario import (
    ALL_STRATEGIES,
    CAMPAIGN,
    FULL,
    REPLAY_BATCH,
    REPLAY_PER_ACCOUNT,
    Scenario,
    ScenarioConfig,
    attack_plans,
    batches,
    build,
    interactive_plans,
)
from students.teacher import GenerationSettings, Teacher

Log = Callable[[str], None]


@dataclass(frozen=True)
class ValidationConfig:
    """What runs: the traffic (the detection benchmark's scenario), which strategies are
    assessed, the student, and the training budget per attacker."""

    traffic: ScenarioConfig = FULL
    strategies: tuple[str, ...] = ALL_STRATEGIES
    student: StudentSpec = StudentSpec()
    harvest_cap: int = 48  # harvested pairs per attacker a student trains on (N)
    seeds: int = 2  # training seeds per attacker
    held_out: int = 32
    max_tokens: int = 24  # the teacher's answers to harvested prompts
    batch_size: int = 8
    flag_label: Label = "extraction"  # what counts as flagged (core.verdicts.first_flags)


# A few benign users and one attacker per strategy, two strategies: seconds to build, about a
# minute of training (tests/students/test_validate.py).
QUICK_TRAFFIC = ScenarioConfig(
    days=7,
    benign_accounts=12,
    benign_sessions=16,
    calibration_accounts=12,
    calibration_sessions=16,
    strategy_seeds=1,
    budget=24,
    interactive_seeds=0,
    campaign_accounts=8,
    campaign_requests=6,
    benchmark_tasks=4,
    researcher_questions=4,
    writer_requests=8,
)
QUICK = ValidationConfig(
    QUICK_TRAFFIC,
    strategies=("dataset_replay", CAMPAIGN),
    harvest_cap=16,
    seeds=2,
    held_out=8,
    max_tokens=12,
    batch_size=4,
)
# `make bench`'s run (≤ 25 min on 2 cores): the benchmark's full scenario, 48 pairs per attacker.
DEFAULT = ValidationConfig()


@dataclass
class Run:
    """One student for one attacker and seed: agreement at 0, n_flag and N pairs; `curve` and
    `losses` (held-out loss, which moves before agreement does) by pairs trained."""

    seed: int
    untrained: float
    before_detection: float
    full: float
    curve: dict[int, float]
    losses: dict[int, float]
    leaked: float | None  # None: the student learned nothing (f(N) <= f(0))
    seconds: float


@dataclass
class Attacker:
    """One attacker (an account, or a whole campaign) and what leaked before its first flag."""

    strategy: str
    accounts: list[str]
    requests: int
    harvest_total: int
    harvested_pairs: int  # N: capped at `harvest_cap`
    first_flag_time: str | None
    queries_before_detection: int | None
    requests_seen_at_flag: int | None
    harvested_before_detection: int  # n_flag
    outcome: str  # "trained" | "never flagged" | "flagged after the capped harvest" | ...
    runs: list[Run] = field(default_factory=list)

    def leaked(self, seeds: int) -> list[float]:
        """One value per training seed (fixed by definition when no student was needed)."""
        if self.outcome == "trained":
            return [run.leaked for run in self.runs if run.leaked is not None]
        return [0.0 if self.outcome == FLAGGED_EARLY else 1.0] * seeds


NEVER, LATE, FLAGGED_EARLY = (
    "never flagged",
    "flagged after the capped harvest",
    "flagged before its first harvested answer",
)


def t_interval(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student-t interval for the mean; one value gives (v, v, v).

    >>> [round(x, 3) for x in t_interval([0.1, 0.2, 0.3])]
    [0.2, -0.048, 0.448]
    """
    from scipy import stats

    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf((1 + confidence) / 2, len(values) - 1)) * statistics.stdev(values)
    half /= math.sqrt(len(values))
    return mean, mean - half, mean + half


def leakage(untrained: float, before: float, full: float) -> float | None:
    """The share of the full harvest's fidelity gain reached before the flag; None when the full
    harvest gained nothing (no capability to leak: the ratio means nothing)."""
    gain = full - untrained
    return (before - untrained) / gain if gain > 1e-9 else None


def attackers_of(
    scenario: Scenario, plans: Sequence[PlannedRequest], strategies: Sequence[str]
) -> list[tuple[str, list[PlannedRequest]]]:
    """(strategy, its requests in time order) per attacker: each account of a single-account
    strategy, each campaign as a whole. `plans` are the scenario's attack plans regenerated; a
    plan whose account the built log labels otherwise means a stale cache."""
    groups: dict[tuple[str, str], list[PlannedRequest]] = {}
    for plan in plans:
        if scenario.actors.get(plan.account_id) != plan.actor:
            raise RuntimeError(
                f"{plan.account_id}: the built scenario does not match its plans; "
                "rebuild it (python -m bench.scenario --rebuild)"
            )
        strategy = plan.actor.removeprefix("attack:")
        if strategy in strategies:
            unit = strategy if strategy == CAMPAIGN else plan.account_id
            groups.setdefault((strategy, unit), []).append(plan)
    order = {name: index for index, name in enumerate(strategies)}
    return [
        (strategy, sorted(group, key=lambda p: (p.timestamp_ms, p.account_id)))
        for (strategy, _), group in sorted(groups.items(), key=lambda kv: (order[kv[0][0]], kv[0]))
    ]


def answer(teacher: Teacher, plans: Sequence[PlannedRequest], max_tokens: int) -> list[Pair]:
    """The teacher's greedy answers to the attacker's own messages: its harvested pairs."""
    settings = GenerationSettings(temperature=0.0, max_tokens=max_tokens)
    pairs: list[Pair] = []
    for start in range(0, len(plans), 16):
        chunk = plans[start : start + 16]
        messages = [[{"role": r, "content": c} for r, c in plan.messages] for plan in chunk]
        answers = teacher.complete(messages, settings)
        pairs += [Pair(plan.prompt, a[0].text) for plan, a in zip(chunk, answers, strict=True)]
    return pairs


def held_out_pairs(teacher: Teacher, used: set[str], config: ValidationConfig) -> list[Pair]:
    """Prompts from the far end of the attack pool that no attacker sent, with the teacher's
    answers: what every student's fidelity is measured on."""
    prompts = [p for p in reversed(attack_pool()) if p not in used][: config.held_out]
    settings = GenerationSettings(temperature=0.0, max_tokens=config.max_tokens)
    answers = teacher.complete([[{"role": "user", "content": p}] for p in prompts], settings)
    return [Pair(p, a[0].text) for p, a in zip(prompts, answers, strict=True)]


def student_run(
    teacher: Teacher,
    config: ValidationConfig,
    pairs: Sequence[Pair],
    before: int,
    held_out: Sequence[Pair],
    untrained: Fidelity,
    seed: int,
) -> Run:
    """One epoch at a constant rate over the pre-flag pairs, then the rest (each part shuffled
    by `seed`), measured after n_flag, half and all pairs: one run reads the curve."""
    half = len(pairs) // 2
    marks = {before, half, len(pairs)} - {0}
    curve: dict[int, float] = {0: untrained.next_token_agreement}
    losses: dict[int, float] = {0: untrained.loss}

    def measure(student: Any, seen: int) -> None:
        if seen in marks:
            student.eval()
            fidelity = measure_fidelity(teacher.tokenizer, student, held_out, seen, 0)
            curve[seen] = fidelity.next_token_agreement
            losses[seen] = fidelity.loss
            student.train()

    started = time.perf_counter()
    train_student(
        teacher.tokenizer,
        list(pairs),
        epochs=1,
        batch_size=config.batch_size,
        learning_rate=config.student.rate,
        seed=seed,
        model=config.student.build(teacher.tokenizer, teacher.model, seed),
        constant_rate=True,
        after_step=measure,
        segments=sorted(marks),
    )
    full = curve[len(pairs)]
    return Run(
        seed,
        curve[0],
        curve[before],
        full,
        dict(sorted(curve.items())),
        dict(sorted(losses.items())),
        leakage(curve[0], curve[before], full),
        round(time.perf_counter() - started, 1),
    )


def assess(
    strategy: str,
    plans: Sequence[PlannedRequest],
    first_flag: dict[str, Verdict],
    teacher: Teacher,
    held_out: Sequence[Pair],
    floors: Sequence[Fidelity],
    config: ValidationConfig,
) -> Attacker:
    """What one attacker harvested before its first flag, and students trained on it."""
    accounts = sorted({plan.account_id for plan in plans})
    flags = [first_flag[a] for a in accounts if a in first_flag]
    flag = min(flags, key=lambda v: v.timestamp) if flags else None
    flag_ms = int(flag.timestamp.timestamp() * 1000) if flag else None
    harvest = [plan for plan in plans if plan.harvest]
    capped = harvest[: config.harvest_cap]
    before = sum(1 for p in capped if flag_ms is not None and p.timestamp_ms <= flag_ms)
    attacker = Attacker(
        strategy=strategy,
        accounts=accounts,
        requests=len(plans),
        harvest_total=len(harvest),
        harvested_pairs=len(capped),
        first_flag_time=flag.timestamp.isoformat() if flag else None,
        queries_before_detection=(
            sum(1 for p in plans if p.timestamp_ms <= flag_ms) if flag_ms is not None else None
        ),
        requests_seen_at_flag=flag.requests_seen if flag else None,
        harvested_before_detection=before,
        outcome="trained",
    )
    if flag is None:
        attacker.outcome = NEVER
    elif before >= len(capped):
        attacker.outcome = LATE
    elif before == 0:
        attacker.outcome = FLAGGED_EARLY
    else:
        pairs = answer(teacher, capped, config.max_tokens)
        attacker.runs = [
            student_run(teacher, config, pairs, before, held_out, floors[seed], seed)
            for seed in range(config.seeds)
        ]
    return attacker


def strategy_rows(attackers: Sequence[Attacker], config: ValidationConfig) -> list[dict]:
    """Per strategy: attackers, flags, harvests and the leakage's mean and 95 % t-interval."""
    rows = []
    for strategy in config.strategies:
        group = [a for a in attackers if a.strategy == strategy]
        if not group:
            continue
        values = [v for a in group for v in a.leaked(config.seeds)]
        runs = [run for a in group for run in a.runs]
        flagged = [a for a in group if a.first_flag_time is not None]
        mean, low, high = t_interval(values) if values else (math.nan,) * 3
        rows.append(
            {
                "strategy": strategy,
                "attackers": len(group),
                "flagged": len(flagged),
                "queries_before_detection": sorted(
                    a.queries_before_detection for a in flagged if a.queries_before_detection
                ),
                "harvested_before_detection": [a.harvested_before_detection for a in group],
                "harvested_pairs": [a.harvested_pairs for a in group],
                "students": len(runs),
                "fidelity": {
                    key: statistics.fmean(getattr(r, key) for r in runs) if runs else None
                    for key in ("untrained", "before_detection", "full")
                },
                "samples": len(values),
                "leaked_mean": mean,
                "leaked_low": low,
                "leaked_high": high,
            }
        )
    return rows


def run_validation(config: ValidationConfig, settings: Settings, out_dir: Path, log=print) -> dict:
    started, load = time.perf_counter(), os.getloadavg()[0]
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher = Teacher(settings.data_dir / "teacher")
    scenario = build(config.traffic, settings.data_dir / "bench", log=log)
    benign = scenario.benign
    attack_accounts = len(scenario.actors) - len(benign)
    log(
        f"traffic: scenario {config.traffic.key}, {len(benign)} benign accounts (hard negatives "
        f"included), {attack_accounts} attacker accounts"
    )

    detector_settings = Settings(**{**settings.model_dump(), "store": "embedded"})
    embedder = cached_embedder(settings.data_dir / "bench", settings)
    detector = with_cached_vectors(build_detector(settings), embedder)
    detector.fit(list(events_in_file(scenario.calibration_path)))
    verdict_path = out_dir / "verdicts.jsonl"
    sink = VerdictFileSink(verdict_path)
    pipeline = build_pipeline(detector_settings, [sink], detector=detector)
    # The benchmark's small batches: a first flag is exact to within an account's share of one.
    lines = scenario.events_path.read_bytes().splitlines()
    for start, chunk in batches(lines, REPLAY_BATCH, REPLAY_PER_ACCOUNT):
        pipeline.process(records_from_lines(chunk, "scenario", start))
    pipeline.checkpoint()
    sink.close()
    embedder.save()
    first_flag = first_flags(
        (Verdict.model_validate_json(line) for line in verdict_path.read_bytes().splitlines()),
        config.flag_label,
    )
    benign_flagged = sorted(a for a in benign if a in first_flag)
    log(f"detection: {len(first_flag)} accounts flagged, {len(benign_flagged)} of them benign")

    plans = attack_plans(config.traffic) + interactive_plans(
        config.traffic, out_dir / "interactive-requests.jsonl", log, teacher
    )
    held_out = held_out_pairs(teacher, {p.prompt for p in plans}, config)
    floors = [
        measure_fidelity(
            teacher.tokenizer,
            config.student.build(teacher.tokenizer, teacher.model, seed),
            held_out,
            0,
            0,
        )
        for seed in range(config.seeds)
    ]
    attackers = []
    for strategy, group in attackers_of(scenario, plans, config.strategies):
        attackers.append(assess(strategy, group, first_flag, teacher, held_out, floors, config))
        done = attackers[-1]
        log(
            f"{strategy} ({len(done.accounts)} account(s)): {done.outcome}, "
            f"{done.harvested_before_detection}/{done.harvested_pairs} pairs before the flag, "
            f"leaked {[round(v, 3) for v in done.leaked(config.seeds)]}"
        )
    report = {
        "generated_at": datetime.now(UTC).isoformat(),
        "config": asdict(config),
        "student": config.student.label,
        "detector": {
            "name": detector.name,
            "version": detector.version,
            "calibration": calibration_of(detector),
        },
        "traffic": {
            "scenario": config.traffic.key,
            "requests": len(lines),
            "benign_accounts": len(benign),
            "attacker_accounts": attack_accounts,
        },
        "benign_accounts": len(benign),
        "benign_accounts_flagged": benign_flagged,
        "strategies": strategy_rows(attackers, config),
        "attackers": [asdict(a) for a in attackers],
        "seconds": round(time.perf_counter() - started),
        "load_average": [round(load, 1), round(os.getloadavg()[0], 1)],
    }
    (out_dir / "validation.json").write_bytes(
        orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    )
    (out_dir / "validation.md").write_text(markdown(report))
    plot(report, out_dir / "validation.png")
    return report


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.0%}"


def _counts(values: Sequence[int]) -> str:
    return ", ".join(map(str, values)) or "–"


def markdown(report: dict) -> str:
    config = report["config"]
    traffic = report["traffic"]
    lines = [
        f"# DistillGuard validation ({report['generated_at']})",
        "",
        f"Traffic: the detection benchmark's scenario `{traffic['scenario']}` "
        f"({traffic['requests']:,} requests, {traffic['benign_accounts']} benign accounts, "
        f"{traffic['attacker_accounts']} attacker accounts). Detector "
        f"`{report['detector']['version']}`, flagged = first `{config['flag_label']}` verdict; "
        f"benign accounts flagged: {len(report['benign_accounts_flagged'])} of "
        f"{report['benign_accounts']}. Student: {report['student']}, one epoch on each "
        f"attacker's first {config['harvest_cap']} harvested pairs (the teacher's "
        f"{config['max_tokens']}-token greedy answers), {config['seeds']} training seed(s).",
        "",
        "| strategy | attackers flagged | queries before detection | harvested before / capped "
        "| students | fidelity untrained → before detection → full | capability leaked, "
        "mean [95 % t-interval] (n) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in report["strategies"]:
        fidelity = row["fidelity"]
        curve = (
            " → ".join(f"{fidelity[k]:.3f}" for k in ("untrained", "before_detection", "full"))
            if row["students"]
            else "no student needed"
        )
        before = _counts(row["harvested_before_detection"])
        lines.append(
            f"| {row['strategy']} | {row['flagged']}/{row['attackers']} | "
            f"{_counts(row['queries_before_detection'])} | {before} / "
            f"{_counts(row['harvested_pairs'])} | {row['students']} | {curve} | "
            f"{_percent(row['leaked_mean'])} [{_percent(row['leaked_low'])}, "
            f"{_percent(row['leaked_high'])}] ({row['samples']}) |"
        )
    lines += [
        "",
        "Capability leaked = (f(pairs harvested before the first flag) − f(0)) / (f(all capped "
        "pairs) − f(0)), f = the student's next-token agreement with the teacher on "
        f"{config['held_out']} held-out prompts, read off one learning curve per attacker and "
        "seed. Never flagged, or flagged after the capped harvest: 100 %; flagged before the "
        "first harvested answer: 0 % (no student needed). Interval: Student-t over every "
        "(attacker, training seed) of the strategy (n).",
    ]
    return "\n".join(lines) + "\n"


def write_results(report: dict, path: Path, command: str | None = None) -> Path:
    """The table the README quotes (`bench/results/validate.md`), headed by how it was measured."""
    from students.measured import measured_by, write_table

    start, end = report["load_average"]
    note = f"load average {start} at start, {end} at end (a machine shared with other work)"
    return write_table(
        path, markdown(report), measured_by(command=command, seconds=report["seconds"], note=note)
    )


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    colours: dict[str, Any] = {}
    for attacker in report["attackers"]:
        for run in attacker["runs"]:
            xs = [int(x) for x in run["curve"]]
            ys = list(run["curve"].values())
            colour = colours.get(attacker["strategy"])
            label = None if colour else attacker["strategy"]
            (line,) = axis.plot(xs, ys, marker="o", alpha=0.7, color=colour, label=label)
            colours[attacker["strategy"]] = line.get_color()
            axis.axvline(
                attacker["harvested_before_detection"], color=line.get_color(), ls="--", alpha=0.3
            )
    axis.set_xlabel("harvested (prompt, response) pairs")
    axis.set_ylabel("student next-token agreement with teacher")
    axis.set_title("Fidelity vs harvested pairs (dashed: first flag)")
    if colours:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
