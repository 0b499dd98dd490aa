"""The detection benchmark's traffic: a seeded request log with its ground truth, shared by the
benchmark (`bench.scenario`, `bench.detection`) and `distillguard validate`, which replays the
same population and attackers through the pipeline and then trains students on the harvests.

Benign users replay real ShareGPT sessions over two simulated weeks; three hard negatives look
like attackers on volume, parameters or timing but are honest; every attack strategy of the
companion runs under several seeds, plus one 40-account campaign that hides half of each
account's requests in cover traffic. Calibration traffic comes from other seeds and accounts, for
detectors' `fit`. Detectors read requests, not answers, so non-interactive actors are written to
the log directly (`request_record`); the interactive strategies react to answers, so they run
through the gateway and the real teacher, whose response cache makes a rebuild fast. Built files
are cached under `.distillguard/bench/`, keyed by the parameters.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import orjson

from core.records import ReplayCuts
from core.settings import Settings
from students.actors import (
    HUMANEVAL_FORMATS,
    STRATEGIES,
    AttackConfig,
    PlannedRequest,
    batch_writer,
    benchmark_runner,
    benign_users,
    request_record,
    researcher,
)
from students.interactive import INTERACTIVE_STRATEGIES

if TYPE_CHECKING:
    from students.teacher import Teacher

SCENARIO_VERSION = 2  # 2: the calibration history holds power users of its own
CAMPAIGN = "multi_account_campaign"
SINGLE_ACCOUNT = tuple(name for name in STRATEGIES if name != CAMPAIGN)
ALL_STRATEGIES = (*STRATEGIES, *INTERACTIVE_STRATEGIES)
HARD_NEGATIVES = ("power:benchmark", "power:researcher", "power:writer")
CALIBRATION_POWER_SEED = 103  # seed offset of the calibration history's own power users
Log = Callable[[str], None]
# How a built log is replayed through the pipeline (`batches`): records per batch, at most, and
# an account's requests per batch, at most.
REPLAY_BATCH = 200
# Built logs are cached here (the detection benchmark's folder; `distillguard validate` keeps its
# own under the data folder).
CACHE = Path(os.environ.get("DG_BENCH_CACHE", ".distillguard/bench"))


@dataclass(frozen=True)
class ScenarioConfig:
    """Sizes and seeds; every field is part of the cache key."""

    seed: int = 0
    days: int = 14
    benign_accounts: int = 800  # an account pool: heavy-tailed activity leaves ~360 active
    benign_sessions: int = 1600
    calibration_accounts: int = 800
    calibration_sessions: int = 1600
    strategy_seeds: int = 3  # accounts per single-account strategy
    budget: int = 250
    interactive_seeds: int = 1  # the CPU teacher makes these the slow part of a cold build
    interactive_budget: int = 24
    interactive_max_tokens: int = 24
    campaign_accounts: int = 40
    campaign_requests: int = 80  # per account: half harvest, half cover traffic
    benchmark_tasks: int = 150  # x two prompt formats = a 300-prompt run
    researcher_questions: int = 200
    writer_requests: int = 360

    @property
    def key(self) -> str:
        document = {"version": SCENARIO_VERSION, **asdict(self)}
        encoded = orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        return hashlib.sha256(encoded).hexdigest()[:12]


SMALL = ScenarioConfig(
    benign_accounts=150,
    benign_sessions=400,
    calibration_accounts=150,
    calibration_sessions=400,
    strategy_seeds=1,
    budget=120,
    interactive_seeds=0,
    campaign_requests=40,
)
FULL = ScenarioConfig()


class BuildConfig(Protocol):
    """What a built log needs of its configuration: a cache key (a dataclass, so reports can
    show its fields). `ScenarioConfig` and each world's config (`bench.worlds`) are one."""

    @property
    def key(self) -> str: ...


@dataclass
class Scenario:
    """A built scenario: its request logs and who is who (ground truth never enters the log)."""

    config: BuildConfig
    events_path: Path
    calibration_path: Path
    actors: dict[str, str]  # account_id -> "benign" | "power:<kind>" | "attack:<strategy>"
    campaigns: dict[str, list[str]] = field(default_factory=dict)  # campaign -> its accounts

    def accounts(self, predicate: Callable[[str], bool]) -> list[str]:
        return sorted(a for a, actor in self.actors.items() if predicate(actor))

    @property
    def benign(self) -> list[str]:
        """Every honest account, hard negatives included."""
        return self.accounts(lambda actor: not actor.startswith("attack:"))

    @property
    def strategies(self) -> list[str]:
        present = set(self.actors.values())
        return [name for name in ALL_STRATEGIES if f"attack:{name}" in present]


# --- who sends what ---------------------------------------------------------------------------
def _attack_config(
    config: ScenarioConfig, strategy: str, replica: int, budget: int, max_tokens: int = 256, **extra
) -> AttackConfig:
    """Distinct seeds per (strategy, replica), so no two attackers draw the same prompts, and
    start days spread over the first half of the scenario."""
    index = ALL_STRATEGIES.index(strategy)
    start_day = (2 * index + 5 * replica) % max(1, config.days // 2)
    return AttackConfig(
        budget=budget,
        seed=config.seed * 1000 + 10 * index + replica + 1,
        start_day=start_day,
        max_tokens=max_tokens,
        extra={"weeks": max(1, (config.days - start_day) // 7), "days": 7, **extra},
    )


def benign_plans(config: ScenarioConfig) -> list[PlannedRequest]:
    seed = config.seed + 1
    return benign_users(config.benign_accounts, config.benign_sessions, config.days, seed)


def calibration_plans(config: ScenarioConfig) -> list[PlannedRequest]:
    """Other seeds, other accounts: the benign history detectors calibrate on. Like a provider's
    real history (and every other world's), it holds power users of its own: without them
    nothing honest in it ran a benchmark, sent logprobs or wrote a batch overnight, and the
    live log's power users had nothing honest to be compared with."""
    return benign_users(
        config.calibration_accounts, config.calibration_sessions, config.days, config.seed + 2
    ) + hard_negative_plans(config, CALIBRATION_POWER_SEED)


def hard_negative_plans(config: ScenarioConfig, seed_offset: int = 3) -> list[PlannedRequest]:
    """A developer's 300-prompt benchmark in an hour, a researcher's 200 factual questions over
    the scenario's days, a writer's overnight batch (account ids carry the seed)."""
    seed = config.seed + seed_offset
    return (
        benchmark_runner(
            1,
            config.days,
            seed,
            tasks=config.benchmark_tasks,
            formats=HUMANEVAL_FORMATS,
            gap_s=(6.0, 15.0),
        )
        + researcher(config.researcher_questions, config.days, seed, questions=True)
        + batch_writer(config.writer_requests, 1, seed, start_day=config.days // 2)
    )


def attack_plans(config: ScenarioConfig) -> list[PlannedRequest]:
    """Every non-interactive strategy under `strategy_seeds` seeds, and the campaign."""
    plans = [
        plan
        for name in SINGLE_ACCOUNT
        for replica in range(config.strategy_seeds)
        for plan in STRATEGIES[name](_attack_config(config, name, replica, config.budget))
    ]
    harvest = config.campaign_accounts * config.campaign_requests // 2
    campaign = _attack_config(
        config, CAMPAIGN, 0, harvest, accounts=config.campaign_accounts, cover_ratio=1.0
    )
    return plans + STRATEGIES[CAMPAIGN](campaign)


def interactive_plans(
    config: ScenarioConfig, gateway_log: Path, log: Log, teacher: Teacher | None = None
) -> list[PlannedRequest]:
    """The strategies that read the teacher's answers, through the gateway and the real teacher
    (small `max_tokens`: the CPU teacher is the bottleneck of a cold build). The teacher's
    response cache makes a second call return the same plans quickly."""
    if not config.interactive_seeds:
        return []
    from students.gateway import Gateway, JsonlEventLog
    from students.teacher import Teacher

    gateway_log.unlink(missing_ok=True)
    teacher = teacher or Teacher(Settings().data_dir / "teacher")
    gateway = Gateway(teacher, JsonlEventLog(gateway_log))
    plans: list[PlannedRequest] = []
    try:
        for name, strategy in INTERACTIVE_STRATEGIES.items():
            for replica in range(config.interactive_seeds):
                started = time.perf_counter()
                attack = _attack_config(
                    config,
                    name,
                    replica,
                    config.interactive_budget,
                    max_tokens=config.interactive_max_tokens,
                )
                exchanges = strategy(gateway, attack)
                plans += [plan for plan, _ in exchanges]
                log(
                    f"{name} #{replica}: {len(exchanges)} requests through the teacher "
                    f"in {time.perf_counter() - started:.0f} s"
                )
    finally:
        gateway.log.close()
    return plans


# --- files ------------------------------------------------------------------------------------
def write_log(plans: list[PlannedRequest], path: Path) -> None:
    """Time-sorted schema-v1 requests; ids number each account's requests in time order. Written
    beside the target and renamed, so an interrupted build leaves no half file behind."""
    counts: Counter[str] = Counter()
    partial = path.with_suffix(".partial")
    with partial.open("wb") as handle:
        for plan in sorted(plans, key=lambda p: (p.timestamp_ms, p.account_id)):
            counts[plan.account_id] += 1
            request_id = f"{plan.account_id}-{counts[plan.account_id]:05d}"
            handle.write(orjson.dumps(request_record(plan, request_id)) + b"\n")
    partial.replace(path)


def _paths(config: ScenarioConfig, cache_dir: Path) -> tuple[Path, Path, Path, Path]:
    stem = cache_dir / f"scenario-{config.key}"
    return (
        stem.with_suffix(".jsonl"),
        stem.with_suffix(".calibration.jsonl"),
        stem.with_suffix(".truth.json"),
        stem.with_suffix(".gateway.jsonl"),
    )


def _load(config: ScenarioConfig, events: Path, calibration: Path, truth: Path) -> Scenario:
    document = orjson.loads(truth.read_bytes())
    return Scenario(config, events, calibration, document["actors"], document["campaigns"])


def build(
    config: ScenarioConfig, cache_dir: Path = CACHE, rebuild: bool = False, log: Log = print
) -> Scenario:
    """The scenario for `config`, from the cache when built before (the truth file is written
    last, so its presence means the build finished)."""
    events, calibration, truth, gateway_log = _paths(config, cache_dir)
    if truth.exists() and not rebuild:
        return _load(config, events, calibration, truth)
    cache_dir.mkdir(parents=True, exist_ok=True)
    plans = (
        benign_plans(config)
        + hard_negative_plans(config)
        + attack_plans(config)
        + interactive_plans(config, gateway_log, log)
    )
    write_log(plans, events)
    write_log(calibration_plans(config), calibration)
    actors = {plan.account_id: plan.actor for plan in plans}
    members = sorted(a for a, actor in actors.items() if actor == f"attack:{CAMPAIGN}")
    campaigns = {f"{CAMPAIGN}-{config.seed}": members} if members else {}
    document = {"config": asdict(config), "actors": actors, "campaigns": campaigns}
    truth.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    log(f"scenario {config.key}: {len(plans)} requests -> {events}")
    return _load(config, events, calibration, truth)


def batches(lines: list[bytes], size: int, per_account: int) -> list[tuple[int, list[bytes]]]:
    """Consecutive slices of the time-ordered log, cut where a file replay cuts its batches
    (`core.records.ReplayCuts`): at `size` records or when one account has `per_account`
    requests in the slice (0: never), so `requests_seen` at a first flag is exact to within an
    account's share of a batch."""
    slices: list[tuple[int, list[bytes]]] = []
    cuts, start = ReplayCuts(size, per_account), 0
    for offset, line in enumerate(lines):
        if cuts.cut_after(orjson.loads(line)["account_id"]):
            slices.append((start, lines[start : offset + 1]))
            start = offset + 1
    if start < len(lines):
        slices.append((start, lines[start:]))
    return slices
