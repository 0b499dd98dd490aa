"""`distillguard validate`: the detection benchmark's traffic (`students.scenario`: its benign
population, hard negatives and every attacker, at the benchmark's scale) through the full
DistillGuard pipeline; then real students trained on what each attacker harvested, read off
their learning curve at the attacker's first flag.

Capability leaked before detection, for one attacker, one flag level and one training seed:

    leaked = (f(n_flag) - f(0)) / (f(N) - f(0))

f(n) is the next-token agreement with the teacher, on held-out prompts, of a student trained for
one epoch at a constant rate on the attacker's first n harvested pairs (time order). N is its
harvest, capped at `harvest_cap` pairs (the default holds every attacker's whole harvest: 250
pairs a single-account attacker, 1,600 the 40-account campaign); n_flag is how many of those it
had harvested when the first of its accounts was flagged at that level. Two levels are read, on the
same curve: `suspicious` (the first flag of any kind, what alerts an analyst; issue 16's
"flagged") and `extraction` (the default threshold). One training run reads every point: the
pairs before the first flag come first, then those before the next, and so on (each run shuffled
among itself by the seed), and the student is measured at each boundary
(`train_student(segments=...)`). An attacker never flagged at a level, or flagged there after its
capped harvest, leaked 100 %; one flagged before its first harvested answer, 0 %.

Per strategy and level: the mean over every (attacker, training seed) and a 95 % Student-t
interval over those values. A strategy's attackers are the scenario's replicas (the default:
three accounts per single-account strategy, one 40-account campaign, one of each interactive
strategy), so the interval spans attack draws as well as training seeds.

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
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from core.records import REPLAY_PER_ACCOUNT
from core.settings import Settings
from core.verdicts import Label, Verdict, first_flags
from detectors.base import calibration_of
from detectors.registry import events_in_file
from distillguard.wiring import build_detector, build_pipeline
from streaming.sinks import VerdictFileSink
from streaming.sources import records_from_lines
from students.actors import PlannedRequest
from students.distill import (
    PRECISION_LABELS,
    Fidelity,
    Pair,
    Precision,
    measure_fidelity,
    resolved_precision,
    train_student,
)
from students.embeddings import cached_embedder, with_cached_vectors
from students.prompts import attack_pool
from students.pruned import StudentSpec
from students.scenario import (
    ALL_STRATEGIES,
    CAMPAIGN,
    FULL,
    REPLAY_BATCH,
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
    harvest_cap: int = 2048  # harvested pairs per attacker a student trains on (N)
    seeds: int = 2  # training seeds per attacker
    held_out: int = 32
    max_tokens: int = 24  # the teacher's answers to harvested prompts
    batch_size: int = 8
    # bf16 mixed precision where the CPU multiplies it natively (`students.distill.native_bf16`:
    # ~1.7x faster on an AMD EPYC with AVX512-BF16), float32 elsewhere; the report records which
    precision: Precision = "auto"
    # the flag levels leakage is read at (core.verdicts.first_flags: that label or graver); the
    # first is the headline
    flag_labels: tuple[Label, ...] = ("suspicious", "extraction")


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
    precision="fp32",  # its student trains in seconds either way; `make test` measured float32
)
# `make bench`'s run: the benchmark's full scenario, each attacker's whole harvest (250 pairs a
# single-account attacker, 1,600 the campaign).
DEFAULT = ValidationConfig()


@dataclass
class Run:
    """One student for one attacker and seed: agreement at 0 pairs, at each flag level's n_flag
    (levels at which a student was needed) and at N; `curve` and `losses` (held-out loss, which
    moves before agreement does) by pairs trained."""

    seed: int
    untrained: float
    at_flag: dict[str, float]
    full: float
    curve: dict[int, float]
    losses: dict[int, float]
    leaked: dict[str, float | None]  # None: the harvest taught it less than MIN_GAIN
    seconds: float


@dataclass
class FlagRead:
    """An attacker at one flag level: when it was first flagged so, and what it had harvested."""

    label: str
    time: str | None
    queries_before: int | None
    requests_seen: int | None
    harvested_before: int  # n_flag
    outcome: str  # "trained" | NEVER | LATE | FLAGGED_EARLY


@dataclass
class Attacker:
    """One attacker (an account, or a whole campaign) and what leaked before its flags."""

    strategy: str
    accounts: list[str]
    requests: int
    harvest_total: int
    harvested_pairs: int  # N: capped at `harvest_cap`
    flags: dict[str, FlagRead]
    runs: list[Run] = field(default_factory=list)

    def leaked(self, label: str, seeds: int) -> list[float]:
        """One value per training seed (fixed by definition when no student was needed)."""
        read = self.flags[label]
        if read.outcome == TRAINED:
            return [v for run in self.runs if (v := run.leaked[label]) is not None]
        return [0.0 if read.outcome == FLAGGED_EARLY else 1.0] * seeds


TRAINED, NEVER, LATE, FLAGGED_EARLY = (
    "trained",
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


# Below this agreement gain over the untrained student (about 8 of the ~770 tokens of 32
# held-out answers) the whole harvest taught nothing measurable: a student's agreement moves by
# more than that from one checkpoint to the next, so a ratio over it is noise (24 harvested
# pairs gained 0.006 on 2026-12-05, and its "leakage" read 1,256 %).
MIN_GAIN = 0.01


def leakage(untrained: float, before: float, full: float) -> float | None:
    """The share of the full harvest's fidelity gain reached before the flag; None when the full
    harvest gained less than `MIN_GAIN` (no measurable capability to leak: the ratio means
    nothing)."""
    gain = full - untrained
    return (before - untrained) / gain if gain >= MIN_GAIN else None


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
    before: dict[str, int],
    held_out: Sequence[Pair],
    untrained: Fidelity,
    seed: int,
) -> Run:
    """One epoch at a constant rate over the pairs before the first flag, then up to the next,
    and so on (each part shuffled by `seed`), measured at each flag's n_flag, half and all pairs:
    one run reads the curve at every level in `before`."""
    half = len(pairs) // 2
    marks = {*before.values(), half, len(pairs)} - {0}
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
        precision=config.precision,
        after_step=measure,
        segments=sorted(marks),
    )
    full = curve[len(pairs)]
    return Run(
        seed,
        curve[0],
        {label: curve[n] for label, n in before.items()},
        full,
        dict(sorted(curve.items())),
        dict(sorted(losses.items())),
        {label: leakage(curve[0], curve[n], full) for label, n in before.items()},
        round(time.perf_counter() - started, 1),
    )


def flag_read(
    label: str,
    plans: Sequence[PlannedRequest],
    capped: Sequence[PlannedRequest],
    first_flag: dict[str, Verdict],
) -> FlagRead:
    """When the first of the attacker's accounts was flagged at `label`, and what it had
    asked and harvested (of its capped harvest) by then."""
    flags = [first_flag[a] for a in {plan.account_id for plan in plans} if a in first_flag]
    if not flags:
        return FlagRead(label, None, None, None, 0, NEVER)
    flag = min(flags, key=lambda v: v.timestamp)
    flag_ms = int(flag.timestamp.timestamp() * 1000)
    before = sum(1 for p in capped if p.timestamp_ms <= flag_ms)
    outcome = LATE if before >= len(capped) else FLAGGED_EARLY if before == 0 else TRAINED
    return FlagRead(
        label,
        flag.timestamp.isoformat(),
        sum(1 for p in plans if p.timestamp_ms <= flag_ms),
        flag.requests_seen,
        before,
        outcome,
    )


def assess(
    strategy: str,
    plans: Sequence[PlannedRequest],
    first_flags_by_label: dict[str, dict[str, Verdict]],
    teacher: Teacher,
    held_out: Sequence[Pair],
    floors: Sequence[Fidelity],
    config: ValidationConfig,
) -> Attacker:
    """What one attacker harvested before each flag level, and students trained on it."""
    harvest = [plan for plan in plans if plan.harvest]
    capped = harvest[: config.harvest_cap]
    attacker = Attacker(
        strategy=strategy,
        accounts=sorted({plan.account_id for plan in plans}),
        requests=len(plans),
        harvest_total=len(harvest),
        harvested_pairs=len(capped),
        flags={
            label: flag_read(label, plans, capped, first_flags_by_label[label])
            for label in config.flag_labels
        },
    )
    before = {
        label: read.harvested_before
        for label, read in attacker.flags.items()
        if read.outcome == TRAINED
    }
    if before:
        pairs = answer(teacher, capped, config.max_tokens)
        attacker.runs = [
            student_run(teacher, config, pairs, before, held_out, floors[seed], seed)
            for seed in range(config.seeds)
        ]
    return attacker


def strategy_rows(attackers: Sequence[Attacker], config: ValidationConfig) -> list[dict]:
    """Per strategy: attackers, harvests, students' fidelity, and per flag level the flags and
    the leakage's mean and 95 % t-interval."""
    rows = []
    for strategy in config.strategies:
        group = [a for a in attackers if a.strategy == strategy]
        if not group:
            continue
        runs = [run for a in group for run in a.runs]
        levels = {}
        for label in config.flag_labels:
            values = [v for a in group for v in a.leaked(label, config.seeds)]
            reads = [a.flags[label] for a in group]
            at_flag = [run.at_flag[label] for run in runs if label in run.at_flag]
            mean, low, high = t_interval(values) if values else (math.nan,) * 3
            levels[label] = {
                "flagged": sum(1 for read in reads if read.time is not None),
                "queries_before_detection": [read.queries_before for read in reads],
                "harvested_before_detection": [
                    read.harvested_before if read.time is not None else None for read in reads
                ],
                "fidelity_at_flag": statistics.fmean(at_flag) if at_flag else None,
                "samples": len(values),
                "leaked_mean": mean,
                "leaked_low": low,
                "leaked_high": high,
            }
        rows.append(
            {
                "strategy": strategy,
                "attackers": len(group),
                "harvested_pairs": [a.harvested_pairs for a in group],
                "students": len(runs),
                "fidelity": {
                    key: statistics.fmean(getattr(r, key) for r in runs) if runs else None
                    for key in ("untrained", "full")
                },
                "flags": levels,
            }
        )
    return rows


def run_validation(config: ValidationConfig, settings: Settings, out_dir: Path, log=print) -> dict:
    started, load = time.perf_counter(), os.getloadavg()[0]
    config = replace(config, precision=resolved_precision("cpu", config.precision))
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
    verdict_lines = verdict_path.read_bytes().splitlines()
    verdicts = [Verdict.model_validate_json(line) for line in verdict_lines]
    flagged: dict[str, dict[str, Verdict]] = {
        label: first_flags(verdicts, label) for label in config.flag_labels
    }
    benign_flagged = {label: sorted(a for a in benign if a in flagged[label]) for label in flagged}
    for label, accounts in flagged.items():
        log(
            f"detection: {len(accounts)} accounts flagged `{label}` or graver, "
            f"{len(benign_flagged[label])} of them benign"
        )

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
        attackers.append(assess(strategy, group, flagged, teacher, held_out, floors, config))
        done = attackers[-1]
        log(
            f"{strategy} ({len(done.accounts)} account(s)): "
            + "; ".join(
                f"`{label}` {read.outcome}, {read.harvested_before}/{done.harvested_pairs} pairs "
                f"before it, leaked {[round(v, 3) for v in done.leaked(label, config.seeds)]}"
                for label, read in done.flags.items()
            )
        )
    report = {
        "generated_at": datetime.now(UTC).isoformat(),
        "config": asdict(config),
        "student": f"{config.student.label} in {PRECISION_LABELS[config.precision]}",
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


def _counts(values: Sequence[int | None]) -> str:
    return ", ".join("–" if v is None else str(v) for v in values) or "–"


def _interval(level: dict) -> str:
    return (
        f"{_percent(level['leaked_mean'])} [{_percent(level['leaked_low'])}, "
        f"{_percent(level['leaked_high'])}] ({level['samples']})"
    )


def markdown(report: dict) -> str:
    config = report["config"]
    traffic = report["traffic"]
    labels = list(config["flag_labels"])
    levels = " / ".join(f"`{label}`" for label in labels)
    benign = " / ".join(str(len(report["benign_accounts_flagged"][label])) for label in labels)
    lines = [
        f"# DistillGuard validation ({report['generated_at']})",
        "",
        f"Traffic: the detection benchmark's scenario `{traffic['scenario']}` "
        f"({traffic['requests']:,} requests, {traffic['benign_accounts']} benign accounts, "
        f"{traffic['attacker_accounts']} attacker accounts). Detector "
        f"`{report['detector']['version']}`; flagged at {levels}: that verdict or a graver one "
        f"(`{labels[0]}`: the first flag, what alerts an analyst); benign accounts flagged "
        f"{benign} of {report['benign_accounts']}. Student: {report['student']}, one epoch on "
        f"each attacker's first {config['harvest_cap']} harvested pairs (the teacher's "
        f"{config['max_tokens']}-token greedy answers), {config['seeds']} training seed(s).",
        "",
        f"| strategy | attackers flagged ({levels}) | queries before the flag ({levels}) "
        f"| pairs harvested before the flag ({levels}) of all | students "
        f"| fidelity untrained → at the first flag → all pairs "
        + "".join(f"| leaked before `{label}`, mean [95 % t-interval] (n) " for label in labels)
        + "|",
        "|---|---|---|---|---|---|" + "---|" * len(labels),
    ]
    for row in report["strategies"]:
        flags = [row["flags"][label] for label in labels]
        fidelity = row["fidelity"]
        at_first = flags[0]["fidelity_at_flag"]
        curve = (
            " → ".join(
                "–" if value is None else f"{value:.3f}"
                for value in (fidelity["untrained"], at_first, fidelity["full"])
            )
            if row["students"]
            else "no student needed"
        )
        lines.append(
            f"| {row['strategy']} | "
            + " / ".join(f"{level['flagged']}" for level in flags)
            + f" of {row['attackers']} | "
            + " / ".join(_counts(level["queries_before_detection"]) for level in flags)
            + " | "
            + " / ".join(_counts(level["harvested_before_detection"]) for level in flags)
            + f" of {_counts(row['harvested_pairs'])} | {row['students']} | {curve} | "
            + " | ".join(_interval(level) for level in flags)
            + " |"
        )
    lines += [
        "",
        "Capability leaked = (f(pairs harvested before the flag) − f(0)) / (f(all its pairs) − "
        "f(0)), f = the student's next-token agreement with the teacher on "
        f"{config['held_out']} held-out prompts, read off one learning curve per attacker and "
        f"seed (all pairs: its whole harvest, at most {config['harvest_cap']}). Never flagged, "
        "or flagged after its last harvested pair: 100 %; flagged before its first harvested "
        "answer: 0 % (no student needed); no value where the whole harvest taught a student "
        f"less than {MIN_GAIN} agreement (nothing measurable to leak). Interval: Student-t over "
        "every (attacker, training seed) of the strategy (n).",
    ]
    return "\n".join(lines) + "\n"


def write_results(report: dict, path: Path, command: str | None = None) -> Path:
    """The table the README quotes (`bench/results/validate.md`), headed by how it was measured."""
    from students.measured import measured_by, write_table

    start, end = report["load_average"]
    note = f"load average {start} at start, {end} at end (its own threads included)"
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
            first = next(iter(attacker["flags"].values()))
            axis.axvline(first["harvested_before"], color=line.get_color(), ls="--", alpha=0.3)
    axis.set_xlabel("harvested (prompt, response) pairs")
    axis.set_ylabel("student next-token agreement with teacher")
    axis.set_title("Fidelity vs harvested pairs (dashed: first flag)")
    if colours:
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
