"""`distillguard validate`: every attack strategy, mixed with benign traffic, through the real
teacher, the gateway's request log and the full DistillGuard pipeline; then real students
trained on what each attacker harvested, in full and only up to its first flag.

"Capability leaked before detection" = (fidelity of the student trained on the pre-detection
harvest − fidelity of an untrained student) / (full-harvest fidelity − untrained), with fidelity
measured as next-token agreement with the teacher on held-out prompts.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson

from core.events import Event, parse_event
from core.settings import Settings
from core.verdicts import Verdict, first_flags
from detectors.base import calibration_of
from distillguard.wiring import build_detector, build_pipeline
from streaming.files import run_file
from streaming.sinks import VerdictFileSink
from students.actors import (
    STRATEGIES,
    AttackConfig,
    PlannedRequest,
    benchmark_runner,
    benign_users,
    request_record,
    researcher,
)
from students.distill import Fidelity, Pair, learning_curve, teacher_embeddings
from students.driver import drive
from students.gateway import Gateway, JsonlEventLog
from students.interactive import INTERACTIVE_STRATEGIES
from students.prompts import attack_pool
from students.teacher import GenerationSettings, Teacher

ALL_STRATEGIES = (*STRATEGIES, *INTERACTIVE_STRATEGIES)


@dataclass(frozen=True)
class ValidationConfig:
    strategies: tuple[str, ...]
    budget: int
    max_tokens: int
    benign_accounts: int
    benign_sessions: int
    days: int
    held_out: int
    min_steps: int
    benchmark_tasks: int = 40
    researcher_requests: int = 30
    seed: int = 0


QUICK = ValidationConfig(
    ("dataset_replay", "multi_account_campaign"),
    budget=24,
    max_tokens=12,
    benign_accounts=8,
    benign_sessions=8,
    days=7,
    held_out=12,
    min_steps=30,
    benchmark_tasks=4,
    researcher_requests=4,
)
FULL = ValidationConfig(
    ALL_STRATEGIES,
    budget=96,
    max_tokens=32,
    benign_accounts=80,
    benign_sessions=240,
    days=28,
    held_out=48,
    min_steps=48,
)


@dataclass
class StrategyResult:
    strategy: str
    accounts: int
    requests: int
    harvested_pairs: int
    first_flag_time: str | None
    queries_before_detection: int | None
    harvested_before_detection: int
    requests_seen_at_flag: int | None
    fidelity_untrained: float
    fidelity_before_detection: float
    fidelity_full: float
    capability_leaked_before_detection: float | None
    curve: list[dict] = field(default_factory=list)


def _benign_plans(config: ValidationConfig, seed: int) -> list[PlannedRequest]:
    return (
        benign_users(
            config.benign_accounts,
            config.benign_sessions,
            config.days,
            seed,
            max_tokens=(config.max_tokens,),
        )
        + benchmark_runner(
            1, config.days, seed, max_tokens=config.max_tokens, tasks=config.benchmark_tasks
        )
        + researcher(config.researcher_requests, config.days, seed)
    )


def _events_from_plans(plans: list[PlannedRequest]) -> list[Event]:
    """Calibration history: benign requests as the gateway would log them."""
    events = []
    for index, plan in enumerate(plans):
        event = parse_event(orjson.dumps(request_record(plan, f"calibration-{index}")), "cal")
        if isinstance(event, Event):
            events.append(event)
    return events


def _merge_by_time(paths: list[Path], out: Path) -> None:
    """One request log in time order, as the provider's gateway would have written it."""
    lines = [line for path in paths for line in path.read_bytes().splitlines() if line]
    lines.sort(key=lambda line: Event.model_validate_json(line).timestamp_ms)
    out.write_bytes(b"".join(line + b"\n" for line in lines))


def _run_strategy(name: str, gateway: Gateway, config: AttackConfig):
    if name in STRATEGIES:
        return drive(gateway, STRATEGIES[name](config))
    return INTERACTIVE_STRATEGIES[name](gateway, config)


def run_validation(config: ValidationConfig, settings: Settings, out_dir: Path, log=print) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    teacher = Teacher(settings.data_dir / "teacher")
    attack_log, benign_log = out_dir / "attack-requests.jsonl", out_dir / "benign-requests.jsonl"
    attack_log.unlink(missing_ok=True)
    gateway = Gateway(teacher, JsonlEventLog(attack_log))

    # Benign requests are logged without generating answers: the detectors read requests, and
    # answering ~1,000 real conversations would cost the CPU teacher half an hour.
    benign = _benign_plans(config, config.seed)
    benign_log.write_bytes(
        b"".join(
            orjson.dumps(request_record(plan, f"benign-{index}")) + b"\n"
            for index, plan in enumerate(benign)
        )
    )
    log(f"benign traffic: {len(benign)} requests")
    exchanges: list = [(plan, None) for plan in benign]
    by_strategy: dict[str, list] = {}
    for index, name in enumerate(config.strategies):
        attack = AttackConfig(
            budget=config.budget,
            seed=config.seed * 100 + index + 1,
            max_tokens=config.max_tokens,
            start_day=1 + index % 3,
            # Reasoning traces are asked long (512 tokens) in the wild; here twice the answer
            # length, so the CPU teacher finishes the default run in time.
            extra={
                "accounts": 8,
                "weeks": max(1, config.days // 7),
                "reasoning_tokens": 2 * config.max_tokens,
            },
        )
        by_strategy[name] = _run_strategy(name, gateway, attack)
        exchanges += by_strategy[name]
        log(f"{name}: {len(by_strategy[name])} requests")
    gateway.log.close()
    request_log = out_dir / "requests.jsonl"
    _merge_by_time([benign_log, attack_log], request_log)

    detector_settings = Settings(**{**settings.model_dump(), "store": "embedded"})
    detector = build_detector(settings).fit(
        _events_from_plans(_benign_plans(config, config.seed + 1))
    )
    verdict_path = out_dir / "verdicts.jsonl"
    sink = VerdictFileSink(verdict_path)
    run_file(
        build_pipeline(detector_settings, [sink], detector=detector),
        request_log,
        show_progress=False,
    )
    sink.close()
    first_flag = first_flags(
        Verdict.model_validate_json(line) for line in verdict_path.read_bytes().splitlines()
    )

    actor_of = {plan.account_id: plan.actor for plan, _ in exchanges}
    benign_accounts = {a for a, actor in actor_of.items() if not actor.startswith("attack:")}
    benign_flagged = sorted(a for a in benign_accounts if a in first_flag)

    used = {plan.prompt for plan, _ in exchanges}
    held_prompts = [p for p in reversed(attack_pool()) if p not in used][: config.held_out]
    answers = teacher.complete(
        [[{"role": "user", "content": p}] for p in held_prompts],
        GenerationSettings(temperature=0.0, max_tokens=config.max_tokens),
    )
    held_out = [Pair(p, a[0].text) for p, a in zip(held_prompts, answers, strict=True)]
    base = teacher_embeddings(teacher.model)
    (floor,) = learning_curve(teacher.tokenizer, [], held_out, [0], base_embeddings=base)

    results = []
    for name, strategy_exchanges in by_strategy.items():
        results.append(
            _assess(name, strategy_exchanges, first_flag, teacher, held_out, floor, base, config)
        )
        log(f"{name}: leaked {results[-1].capability_leaked_before_detection}")
    report = {
        "generated_at": datetime.now(UTC).isoformat(),
        "config": asdict(config),
        "detector": {
            "name": detector.name,
            "version": detector.version,
            "calibration": calibration_of(detector),
        },
        "benign_accounts": len(benign_accounts),
        "benign_accounts_flagged": benign_flagged,
        "strategies": [asdict(r) for r in results],
    }
    (out_dir / "validation.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (out_dir / "validation.md").write_text(markdown(report))
    plot(report, out_dir / "validation.png")
    return report


def _assess(
    name: str,
    exchanges: list,
    first_flag: dict[str, Verdict],
    teacher: Teacher,
    held_out: list[Pair],
    floor: Fidelity,
    base,
    config: ValidationConfig,
) -> StrategyResult:
    ordered = sorted(exchanges, key=lambda e: e[0].timestamp_ms)
    accounts = {plan.account_id for plan, _ in ordered}
    flags = [first_flag[a] for a in accounts if a in first_flag]
    flag = min(flags, key=lambda v: v.timestamp) if flags else None
    flag_ms = int(flag.timestamp.timestamp() * 1000) if flag else None
    harvested = [(plan, r) for plan, r in ordered if plan.harvest]
    harvest = [Pair(plan.prompt, r["choices"][0]["message"]["content"]) for plan, r in harvested]
    before = [
        pair
        for (plan, _), pair in zip(harvested, harvest, strict=True)
        if flag_ms is None or plan.timestamp_ms <= flag_ms
    ]
    queries_before = (
        sum(1 for plan, _ in ordered if plan.timestamp_ms <= flag_ms)
        if flag_ms is not None
        else None
    )
    quarter = len(harvest) // 4
    sizes = sorted({quarter, 2 * quarter, len(before), len(harvest)} - {0})
    curve = learning_curve(
        teacher.tokenizer,
        harvest,
        held_out,
        sizes,
        base_embeddings=base,
        min_steps=config.min_steps,
    )
    by_size = {f.pairs_trained: f for f in curve} | {0: floor}
    full = by_size[len(harvest)].next_token_agreement
    early = by_size[len(before)].next_token_agreement
    gain = full - floor.next_token_agreement
    leaked = (early - floor.next_token_agreement) / gain if gain > 1e-9 else None
    return StrategyResult(
        strategy=name,
        accounts=len(accounts),
        requests=len(ordered),
        harvested_pairs=len(harvest),
        first_flag_time=flag.timestamp.isoformat() if flag else None,
        queries_before_detection=queries_before,
        harvested_before_detection=len(before),
        requests_seen_at_flag=flag.requests_seen if flag else None,
        fidelity_untrained=floor.next_token_agreement,
        fidelity_before_detection=early,
        fidelity_full=full,
        capability_leaked_before_detection=None if leaked is None else round(leaked, 4),
        curve=[asdict(by_size[s]) for s in sorted(by_size)],
    )


def markdown(report: dict) -> str:
    lines = [
        f"# DistillGuard validation ({report['generated_at']})",
        "",
        f"Detector `{report['detector']['version']}`; benign accounts flagged: "
        f"{len(report['benign_accounts_flagged'])} of {report['benign_accounts']}.",
        "",
        "| strategy | accounts | requests | harvested | queries before detection | "
        "fidelity untrained | before detection | full harvest | capability leaked |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["strategies"]:
        leaked = row["capability_leaked_before_detection"]
        lines.append(
            f"| {row['strategy']} | {row['accounts']} | {row['requests']} | "
            f"{row['harvested_pairs']} | {row['queries_before_detection'] or 'never flagged'} | "
            f"{row['fidelity_untrained']:.3f} | {row['fidelity_before_detection']:.3f} | "
            f"{row['fidelity_full']:.3f} | {'n/a' if leaked is None else f'{leaked:.0%}'} |"
        )
    lines += ["", "Fidelity = next-token agreement with the teacher on held-out prompts."]
    return "\n".join(lines) + "\n"


def write_results(report: dict, path: Path) -> Path:
    """The table the README quotes (`bench/results/validate.md`), headed by how it was measured."""
    from students.measured import measured_by, write_table

    return write_table(path, markdown(report), measured_by())


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    for row in report["strategies"]:
        xs = [point["pairs_trained"] for point in row["curve"]]
        ys = [point["next_token_agreement"] for point in row["curve"]]
        (line,) = axis.plot(xs, ys, marker="o", label=row["strategy"])
        if row["first_flag_time"] is not None:
            axis.axvline(
                row["harvested_before_detection"], color=line.get_color(), linestyle="--", alpha=0.6
            )
    axis.set_xlabel("harvested (prompt, response) pairs")
    axis.set_ylabel("student next-token agreement with teacher")
    axis.set_title("Fidelity vs queries (dashed: first flag)")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
