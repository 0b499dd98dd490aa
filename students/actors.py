"""Who talks to the teacher: benign users, benign power users (hard negatives) and attackers.

Every actor is code, parameterised and seeded; each returns `PlannedRequest`s in simulated time,
so weeks of traffic run in minutes. `actor` is ground truth for validation and never reaches the
request log.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache

from core.timeutil import DAY_MS, HOUR_MS
from students.prompts import (
    attack_conversations,
    attack_pool,
    benign_conversations,
    frequent_topics,
    humaneval_prompts,
)
from students.teacher import MODEL_NAME

START = datetime(2026, 11, 2, tzinfo=UTC)  # a Monday


@dataclass(frozen=True)
class PlannedRequest:
    actor: str
    account_id: str
    timestamp_ms: int
    messages: tuple[tuple[str, str], ...]  # (role, content)
    temperature: float = 0.7
    max_tokens: int = 128
    n: int = 1
    logprobs: bool = False
    top_logprobs: int = 0
    client_ip: str = ""
    user_agent: str = ""
    harvest: bool = True  # False for an attacker's cover traffic and helper requests

    @property
    def prompt(self) -> str:
        return self.messages[-1][1]


def request_record(plan: PlannedRequest, request_id: str) -> dict:
    """A planned request as the gateway logs it (schema v1), without the answer.

    Detectors read requests, so traffic that needs no answers is logged without running the
    teacher; the fields match `Gateway.handle`'s event (less the response and token counts), so a
    detector cannot tell a written record from a gateway-logged one by its shape.
    """
    return {
        "request_id": request_id,
        "account_id": plan.account_id,
        "timestamp": plan.timestamp_ms,
        "messages": [{"role": role, "content": content} for role, content in plan.messages],
        "model": MODEL_NAME,
        "endpoint": "/v1/chat/completions",
        "params": {
            "temperature": plan.temperature,
            "max_tokens": plan.max_tokens,
            "n": plan.n,
            "logprobs": plan.logprobs,
            "top_logprobs": plan.top_logprobs,
            "seed": 0,  # what the driver sends
        },
        "client": {
            "ip": plan.client_ip,
            "user_agent": plan.user_agent,
            "api_key_id": f"key-{plan.account_id}",
        },
    }


@dataclass
class Clock:
    """Simulated time with a diurnal profile: activity peaks mid-afternoon in the account's zone."""

    rng: random.Random
    start_ms: int = int(START.timestamp() * 1000)
    utc_offset_h: int = 0

    def diurnal_moment(self, day: int) -> int:
        """A time on `day` drawn from a day-shaped density (low at night, high 10:00-18:00)."""
        while True:
            hour = self.rng.uniform(0, 24)
            weight = (
                0.1 + 0.9 * max(0.0, math.sin(math.pi * (hour - 7) / 14))
                if 7 <= hour <= 21
                else 0.1
            )
            if self.rng.random() < weight:
                local = self.start_ms + day * DAY_MS + int(hour * HOUR_MS)
                return local - self.utc_offset_h * HOUR_MS


def _ip(rng: random.Random, prefix: str) -> str:
    return f"{prefix}.{rng.randint(1, 254)}"


# --- benign ----------------------------------------------------------------------------------
def benign_users(
    accounts: int, sessions: int, days: int, seed: int, max_tokens: tuple[int, ...] = (128, 256)
) -> list[PlannedRequest]:
    """Real ShareGPT sessions: heavy-tailed accounts, diurnal session starts, follow-ups in order
    with their history, exponential think time between turns."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(accounts)]
    zones = {a: rng.choice([-8, -5, 0, 1, 8]) for a in range(accounts)}
    conversations = benign_conversations()
    plans = []
    for _ in range(sessions):
        conversation = conversations[rng.randrange(len(conversations))]
        account = rng.choices(range(accounts), weights)[0]
        clock = Clock(rng, utc_offset_h=zones[account])
        moment = clock.diurnal_moment(rng.randrange(days))
        history: list[tuple[str, str]] = []
        for role, text in conversation.turns:
            history.append((role, text))
            if role != "user" or not text.strip():
                continue
            moment += int(rng.expovariate(1 / 40) * 1000) + 2000
            plans.append(
                PlannedRequest(
                    "benign",
                    f"user-{seed}-{account:04d}",
                    moment,
                    tuple(history[-6:]),
                    temperature=rng.choice([0.7, 1.0]),
                    max_tokens=rng.choice(max_tokens),
                    client_ip=f"198.51.{account % 200}.{account % 250 + 1}",
                    user_agent=rng.choice(["Mozilla/5.0 chat-ui", "openai-python/1.54"]),
                )
            )
    return plans


HUMANEVAL_FORMATS = (
    "Complete this Python function.\n\n{task}",  # chat-style instruction
    "{task}",  # the bare task, as completion-mode evaluation harnesses send it
)


def benchmark_runner(
    runs: int,
    days: int,
    seed: int,
    max_tokens: int = 256,
    tasks: int = 164,
    formats: tuple[str, ...] = HUMANEVAL_FORMATS[:1],
    gap_s: tuple[float, float] = (0.3, 1.5),
) -> list[PlannedRequest]:
    """A benign power user evaluating the model on HumanEval: whole-benchmark bursts at
    temperature 0.8 with n=5 samples per task (pass@k), a hard negative for volume and params.

    Each run sends every task once per prompt format, back to back at the harness's pace
    (`gap_s`): two formats of 150 tasks at 6-15 s apart are a 300-prompt benchmark in an hour.
    """
    rng = random.Random(seed)
    clock = Clock(rng)
    plans = []
    for _ in range(runs):
        moment = clock.diurnal_moment(rng.randrange(days))
        for template, task in [(f, t) for f in formats for t in humaneval_prompts()[:tasks]]:
            moment += int(rng.uniform(*gap_s) * 1000)
            plans.append(
                PlannedRequest(
                    "power:benchmark",
                    f"bench-lab-{seed}",
                    moment,
                    (("user", template.format(task=task)),),
                    temperature=0.8,
                    max_tokens=max_tokens,
                    n=5,
                    client_ip="192.0.2.10",
                    user_agent="lm-eval-harness",
                )
            )
    return plans


_QUESTION_WORDS = frozenset({"what", "who", "when", "where", "which", "why", "how"})


@lru_cache(maxsize=1)
def question_prompts(max_chars: int = 200) -> tuple[str, ...]:
    """Benign-side opening prompts that read as one factual question: a single line of at most
    `max_chars` that starts with a wh-word and ends with '?' (about 650 distinct ones)."""
    openings = (c.user_prompts[0].strip() for c in benign_conversations())
    return tuple(
        dict.fromkeys(
            p
            for p in openings
            if len(p) <= max_chars
            and "\n" not in p
            and p.endswith("?")
            and p.split()[0].lower() in _QUESTION_WORDS
        )
    )


@lru_cache(maxsize=1)
def writing_prompts() -> tuple[str, ...]:
    """Benign-side opening prompts that ask to write something ("write ...") and that ChatGPT
    answered in prose (no code block in its reply): what a writer would batch-evaluate."""

    def prose_writing(turns: tuple[tuple[str, str], ...]) -> bool:
        (role, prompt), *rest = turns
        reply = next((text for who, text in rest if who == "assistant"), "")
        first_word = prompt.split()[0].lower().strip(":,.") if prompt.split() else ""
        return role == "user" and first_word == "write" and bool(reply) and "```" not in reply

    return tuple(
        dict.fromkeys(c.turns[0][1] for c in benign_conversations() if prose_writing(c.turns))
    )


def researcher(
    requests: int, days: int, seed: int, questions: bool = False
) -> list[PlannedRequest]:
    """A benign researcher probing calibration: real prompts at temperature 0 with logprobs,
    a hard negative for the harvesting-parameter signal. With `questions`, each request is a
    different real factual question (`question_prompts`), asked over `days` days."""
    rng = random.Random(seed)
    clock = Clock(rng)
    conversations = benign_conversations()
    asked = rng.sample(question_prompts(), requests) if questions else []
    plans = []
    for index in range(requests):
        prompt = (
            asked[index]
            if questions
            else conversations[rng.randrange(len(conversations))].user_prompts[0]
        )
        plans.append(
            PlannedRequest(
                "power:researcher",
                f"research-{seed}",
                clock.diurnal_moment(rng.randrange(days)),
                (("user", prompt),),
                temperature=0.0,
                max_tokens=64,
                logprobs=True,
                top_logprobs=5,
                client_ip="192.0.2.77",
                user_agent="python-httpx/0.28",
            )
        )
    return plans


def batch_writer(
    requests: int,
    nights: int,
    seed: int,
    start_day: int = 0,
    n: int = 3,
    gap_s: tuple[float, float] = (30.0, 90.0),
    utc_offset_h: int = 0,
) -> list[PlannedRequest]:
    """A benign writer batch-evaluating real writing prompts overnight: a script starts at 23:00
    local time and sends one prompt every 30-90 s at temperature 0.9 with `n` drafts each, so
    ~360 prompts fill a night; a hard negative for volume, scripted timing and n>1."""
    rng = random.Random(seed)
    prompts = rng.sample(writing_prompts(), requests)
    per_night = -(-requests // nights)
    start_ms = int(START.timestamp() * 1000) - utc_offset_h * HOUR_MS
    plans = []
    for night in range(nights):
        moment = start_ms + (start_day + night) * DAY_MS + 23 * HOUR_MS
        for prompt in prompts[night * per_night : (night + 1) * per_night]:
            moment += int(rng.uniform(*gap_s) * 1000)
            plans.append(
                PlannedRequest(
                    "power:writer",
                    f"writer-{seed}",
                    moment,
                    (("user", prompt),),
                    temperature=0.9,
                    max_tokens=512,
                    n=n,
                    client_ip="192.0.2.140",
                    user_agent="openai-python/1.54",
                )
            )
    return plans


# --- attackers -------------------------------------------------------------------------------
@dataclass
class AttackConfig:
    """Knobs shared by attack strategies."""

    budget: int = 300  # requests the harvest needs
    seed: int = 0
    start_day: int = 0
    max_tokens: int = 256
    extra: dict = field(default_factory=dict)


def _steady(rng: random.Random, start_ms: int, count: int, gap_s: tuple[float, float]) -> list[int]:
    moments, moment = [], start_ms
    for _ in range(count):
        moment += int(rng.uniform(*gap_s) * 1000)
        moments.append(moment)
    return moments


def dataset_replay(config: AttackConfig) -> list[PlannedRequest]:
    """Walk a public task set in order, greedy decoding, long answers, scripted pace."""
    rng = random.Random(config.seed)
    pool = attack_pool()
    offset = rng.randrange(len(pool) - config.budget)
    start = Clock(rng).start_ms + config.start_day * DAY_MS + 9 * HOUR_MS
    return [
        PlannedRequest(
            "attack:dataset_replay",
            f"replay-{config.seed}",
            moment,
            (("user", pool[offset + i]),),
            temperature=0.0,
            max_tokens=config.max_tokens,
            client_ip="203.0.113.5",
            user_agent="python-requests/2.32",
        )
        for i, moment in enumerate(_steady(rng, start, config.budget, (1.0, 4.0)))
    ]


TEMPLATES = (
    "Explain {topic} in detail.",
    "Write a step-by-step tutorial about {topic}.",
    "What are the advantages and disadvantages of {topic}?",
    "Give five examples related to {topic} with explanations.",
    "Summarize the key facts about {topic}.",
    "Write a short essay on {topic}.",
)


def templated_enumeration(config: AttackConfig) -> list[PlannedRequest]:
    """Every template × every topic, topics enumerated from a public corpus by frequency."""
    rng = random.Random(config.seed)
    topics = frequent_topics(attack_pool(), config.budget // len(TEMPLATES) + 1)
    rng.shuffle(topics)
    start = Clock(rng).start_ms + config.start_day * DAY_MS + 2 * HOUR_MS
    moments = _steady(rng, start, config.budget, (0.5, 2.0))
    return [
        PlannedRequest(
            "attack:templated_enumeration",
            f"enum-{config.seed}",
            moment,
            (("user", TEMPLATES[i % len(TEMPLATES)].format(topic=topics[i // len(TEMPLATES)])),),
            temperature=0.0,
            max_tokens=config.max_tokens,
            client_ip="203.0.113.17",
            user_agent="aiohttp/3.9",
        )
        for i, moment in enumerate(moments)
    ]


REASONING_SUFFIXES = (
    "Let's think step by step.",
    "Show your full reasoning before giving the final answer.",
    "Explain your chain of thought in detail, then answer.",
    "Think carefully and write out every intermediate step.",
)


def reasoning_elicitation(config: AttackConfig) -> list[PlannedRequest]:
    """Ask for the model's reasoning on public tasks: harvesting traces, not just answers."""
    rng = random.Random(config.seed)
    pool = attack_pool()
    chosen = rng.sample(pool, config.budget)
    start = Clock(rng).start_ms + config.start_day * DAY_MS + 11 * HOUR_MS
    return [
        PlannedRequest(
            "attack:reasoning_elicitation",
            f"cot-{config.seed}",
            moment,
            (("user", f"{prompt}\n\n{rng.choice(REASONING_SUFFIXES)}"),),
            temperature=0.0,
            max_tokens=int(config.extra.get("reasoning_tokens", max(config.max_tokens, 512))),
            logprobs=True,
            top_logprobs=5,
            client_ip="203.0.113.40",
            user_agent="python-httpx/0.27",
        )
        for prompt, moment in zip(
            chosen, _steady(rng, start, config.budget, (1.0, 3.0)), strict=True
        )
    ]


def multi_account_campaign(config: AttackConfig) -> list[PlannedRequest]:
    """One harvest split across many small accounts, each with benign cover traffic, rotating
    client IPs in one /24, coordinated in the same daily windows."""
    rng = random.Random(config.seed)
    accounts = int(config.extra.get("accounts", 20))
    cover_ratio = float(config.extra.get("cover_ratio", 0.3))
    pool = attack_pool()
    harvest = rng.sample(pool, config.budget)
    cover = attack_conversations()
    clock = Clock(rng)
    plans = []
    per_day = max(1, len(harvest) // (accounts * 3))
    for index, prompt in enumerate(harvest):
        account = index % accounts
        day = config.start_day + index // (accounts * per_day)
        window = clock.start_ms + day * DAY_MS + 13 * HOUR_MS
        moment = window + int(rng.uniform(0, 2 * HOUR_MS))
        ip = _ip(rng, "203.0.114")
        name = f"campaign-{config.seed}-{account:03d}"
        plans.append(
            PlannedRequest(
                "attack:multi_account_campaign",
                name,
                moment,
                (("user", prompt),),
                temperature=0.0,
                max_tokens=config.max_tokens,
                client_ip=ip,
                user_agent="python-requests/2.32",
            )
        )
        if rng.random() < cover_ratio:
            prompts = cover[rng.randrange(len(cover))].user_prompts
            plans.append(
                PlannedRequest(
                    "attack:multi_account_campaign",
                    name,
                    moment + int(rng.uniform(5, 600) * 1000),
                    (("user", prompts[0]),),
                    temperature=0.7,
                    max_tokens=min(128, config.max_tokens),
                    client_ip=ip,
                    user_agent="python-requests/2.32",
                    harvest=False,
                )
            )
    return plans


def low_and_slow(config: AttackConfig) -> list[PlannedRequest]:
    """A harvest stretched over weeks at a human-looking daily rate in business hours."""
    rng = random.Random(config.seed)
    weeks = int(config.extra.get("weeks", 4))
    pool = attack_pool()
    chosen = rng.sample(pool, config.budget)
    clock = Clock(rng, utc_offset_h=-5)
    days = [config.start_day + rng.randrange(weeks * 7) for _ in chosen]
    return [
        PlannedRequest(
            "attack:low_and_slow",
            f"slow-{config.seed}",
            clock.diurnal_moment(day),
            (("user", prompt),),
            temperature=0.7,
            max_tokens=config.max_tokens,
            client_ip="198.18.0.21",
            user_agent="Mozilla/5.0 chat-ui",
        )
        for prompt, day in zip(chosen, sorted(days), strict=True)
    ]


STRATEGIES = {
    "dataset_replay": dataset_replay,
    "templated_enumeration": templated_enumeration,
    "reasoning_elicitation": reasoning_elicitation,
    "multi_account_campaign": multi_account_campaign,
    "low_and_slow": low_and_slow,
}
