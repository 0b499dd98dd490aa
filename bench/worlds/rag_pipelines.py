"""World `rag-pipelines`: backend services sending templated prompts with retrieved context.

Benign accounts are services, not people: a Wikipedia question-answering pipeline that pastes
retrieved evidence into its prompt, a query planner that turns questions into search queries, a
support bot that answers from knowledge-base excerpts, translation, topic classification and
reply-suggestion jobs. A service's template, parameters (mostly temperature 0 to 0.3) and
`max_tokens` never change; its traffic follows its end users' day, around the clock, and some
jobs run as nightly batches. Hard negatives: a weekly offline evaluation that replays the QA
pipeline's whole dev set, a nightly translation batch, and a one-off classification backfill at
high concurrency that asks for logprobs.

The gateway logs the latest user turn only (the service's system prompt is dropped), no client
IP or user agent (server-to-server behind an internal proxy; the API key and organisation are
kept), and RFC3339 timestamps.

Prompts are real: FanOutQA's multi-hop Wikipedia questions, their published decompositions and
source pages (fanoutqa), and the chatterbot-corpus dialogs in 28 languages. Templates and every
attacker are this module's own code, written without `students/`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache

from bench.worlds import sources
from bench.worlds.base import (
    CAMPAIGN,
    SINGLE_ACCOUNT,
    Generator,
    Request,
    Traffic,
    World,
    day_moment,
    digest,
    epoch_ms,
    heavy_tail,
    rfc3339,
    rng_for,
    weekday,
)
from core.timeutil import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS

NAME = "rag-pipelines"
VERSION = 1
START_MS = epoch_ms(2026, 10, 5)  # a Monday
MODEL = "dg-chat-2"
SYSTEM = "You are a helpful assistant embedded in an automated pipeline. Be concise."


@dataclass(frozen=True)
class Config:
    """Sizes and seeds; every field is part of the cache key."""

    seed: int = 0
    days: int = 32
    services: int = 450  # an account pool: heavy-tailed volume leaves a few hundred active
    calls: int = 6500
    calibration_services: int = 450
    calibration_calls: int = 6500
    attackers_per_strategy: int = 3
    budget: int = 220
    campaign_accounts: int = 40
    campaign_requests: int = 60  # per account, half of it cover traffic
    eval_runs: int = 4  # weekly offline evaluations of the QA dev set
    eval_items: int = 310  # the whole dev split
    translation_items: int = 1200
    backfill_items: int = 1500


SMALL = Config(
    services=150,
    calls=1200,
    calibration_services=150,
    calibration_calls=1200,
    attackers_per_strategy=1,
    budget=60,
    campaign_requests=16,
    eval_runs=1,
    eval_items=100,
    translation_items=150,
    backfill_items=200,
)
FULL = Config()


def account(config: Config, role: str, index: int) -> str:
    return f"svc-{digest(NAME, config.seed, role, index, size=14)}"


def org(config: Config, role: str, index: int) -> str:
    return f"org-{digest(NAME, config.seed, 'org', role, index, size=8)}"


# --- real material, arranged for the jobs ------------------------------------------------------
LANGUAGE_NAMES = {
    "bengali": "Bengali",
    "chinese": "Chinese",
    "dutch": "Dutch",
    "french": "French",
    "german": "German",
    "hebrew": "Hebrew",
    "hindi": "Hindi",
    "hinglish": "Hinglish",
    "indonesian": "Indonesian",
    "italian": "Italian",
    "japanese": "Japanese",
    "korean": "Korean",
    "marathi": "Marathi",
    "oriya": "Odia",
    "persian": "Persian",
    "portuguese": "Portuguese",
    "russian": "Russian",
    "spanish": "Spanish",
    "swedish": "Swedish",
    "tamil": "Tamil",
    "telugu": "Telugu",
    "thai": "Thai",
    "traditionalchinese": "Traditional Chinese",
    "turkish": "Turkish",
    "ukrainian": "Ukrainian",
    "urdu": "Urdu",
    "yoruba": "Yoruba",
}


@lru_cache(maxsize=1)
def english_dialogs() -> tuple[sources.Dialog, ...]:
    return tuple(d for d in sources.chatterbot_dialogs() if d.language == "english")


@lru_cache(maxsize=1)
def answered_dialogs() -> tuple[sources.Dialog, ...]:
    return tuple(d for d in english_dialogs() if len(d.turns) > 1)


@lru_cache(maxsize=1)
def long_dialogs() -> tuple[sources.Dialog, ...]:
    return tuple(d for d in english_dialogs() if len(d.turns) > 2)


@lru_cache(maxsize=64)
def by_topic(topic: str) -> tuple[sources.Dialog, ...]:
    return tuple(d for d in english_dialogs() if d.topic == topic)


@lru_cache(maxsize=1)
def foreign_lines() -> tuple[tuple[str, str], ...]:
    """(language name, line) for every non-English dialog line."""
    return tuple(
        (LANGUAGE_NAMES.get(d.language, d.language.title()), line)
        for d in sources.chatterbot_dialogs()
        if d.language != "english"
        for line in d.turns
    )


@lru_cache(maxsize=1)
def english_lines() -> tuple[tuple[str, str], ...]:
    return tuple((d.topic, line) for d in english_dialogs() for line in d.turns)


@lru_cache(maxsize=1)
def topics() -> tuple[str, ...]:
    return tuple(sorted({d.topic for d in english_dialogs()}))


@lru_cache(maxsize=1)
def wikipedia_pages() -> tuple[str, ...]:
    """Every Wikipedia article FanOutQA's questions rest on, in first-seen order."""
    pages = [
        p for q in (*sources.fanoutqa_multihop(), *sources.fanoutqa_questions()) for p in q.pages
    ]
    return tuple(dict.fromkeys(p for p in pages if p))


# --- the services' templates ------------------------------------------------------------------
def wiki_qa(item: sources.MultiHop, rng: random.Random, noise: int = 2) -> str:
    """The QA pipeline's prompt: retrieved evidence (some of the question's own, some noise
    from other questions), numbered, then the question."""
    steps = list(item.steps)
    rng.shuffle(steps)
    kept = steps[: rng.randint(2, max(2, min(6, len(steps))))]
    others = sources.fanoutqa_multihop()
    for _ in range(noise):
        other = others[rng.randrange(len(others))]
        if other.steps:
            kept.append(other.steps[rng.randrange(len(other.steps))])
    rng.shuffle(kept)
    context = "\n".join(
        f"[{i}] ({s.page or 'unknown'}) {s.question} {s.answer}" for i, s in enumerate(kept, 1)
    )
    return (
        "Answer the question using only the context below. If the context is not enough, say "
        f'"I don\'t know".\n\nContext:\n{context}\n\nQuestion: {item.question}\nAnswer:'
    )


def planner(question: str) -> str:
    return (
        "Rewrite the question as at most five Wikipedia search queries, one per line, no "
        f"numbering.\n\nQuestion: {question}"
    )


def support(dialog: sources.Dialog, rng: random.Random) -> str:
    same_topic = [d for d in by_topic(dialog.topic) if d is not dialog]
    excerpts = [dialog.turns[1]] if len(dialog.turns) > 1 else []
    excerpts += [d.turns[-1] for d in rng.sample(same_topic, min(2, len(same_topic)))]
    rng.shuffle(excerpts)
    kb = "\n".join(f"- {e}" for e in excerpts)
    return (
        "Reply to the customer using the knowledge-base excerpts. Keep it under three sentences."
        f"\n\nKnowledge base:\n{kb}\n\nCustomer: {dialog.turns[0]}"
    )


def translate(language: str, line: str) -> str:
    return (
        f"Translate the following {language} text into English. Return only the translation."
        f"\n\n{line}"
    )


def classify(line: str) -> str:
    return (
        f"Classify the message into one of these topics: {', '.join(topics())}. Reply with the "
        f"topic only.\n\nMessage: {line}"
    )


def suggest(dialog: sources.Dialog) -> str:
    speakers = "AB"
    transcript = "\n".join(f"{speakers[i % 2]}: {t}" for i, t in enumerate(dialog.turns[:-1]))
    transcript = transcript or f"A: {dialog.turns[0]}"
    return f"Suggest a short, friendly next message for the chat below.\n\n{transcript}"


JOBS = ("wiki_qa", "planner", "support", "translate", "classify", "suggest")
JOB_WEIGHTS = (5, 2, 4, 2, 2, 1)


def job_prompt(job: str, rng: random.Random, window: tuple[int, int]) -> str:
    """A prompt of `job`, its item drawn from the service's slice of the material."""
    low, width = window

    def pick(items: tuple) -> object:
        return items[(low + rng.randrange(width)) % len(items)]

    if job == "wiki_qa":
        return wiki_qa(pick(sources.fanoutqa_multihop()), rng)
    if job == "planner":
        return planner(pick(sources.fanoutqa_questions()).question)
    if job == "support":
        return support(pick(answered_dialogs()), rng)
    if job == "translate":
        language, line = pick(foreign_lines())
        return translate(language, line)
    if job == "classify":
        return classify(pick(english_lines())[1])
    return suggest(pick(long_dialogs()))


# --- benign services --------------------------------------------------------------------------
@dataclass(frozen=True)
class Service:
    account: str
    org: str
    job: str
    params: dict
    zone: float
    nightly: bool  # runs as a nightly batch instead of on demand
    window: tuple[int, int]


def service(config: Config, role: str, index: int, seed: int) -> Service:
    rng = rng_for(NAME, seed, role, index)
    job = rng.choices(JOBS, JOB_WEIGHTS)[0]
    temperature = rng.choices((0, 0.1, 0.2, 0.3, 0.7), (10, 3, 3, 2, 3))[0]
    params: dict = {"temperature": temperature, "max_tokens": rng.choice((256, 300, 512, 800))}
    if rng.random() < 0.2:
        params["top_p"] = 1
    if rng.random() < 0.15:
        params["seed"] = rng.randrange(1000)
    if job == "classify":
        params["max_tokens"] = rng.choice((5, 10, 16))
    return Service(
        account=account(config, role, index),
        org=org(config, role, index // 3),
        job=job,
        params=params,
        zone=rng.choice((-8, -5, 0, 1, 3, 8)),
        nightly=job in ("translate", "classify") and rng.random() < 0.5,
        window=(rng.randrange(10_000), rng.choice((20, 100, 500, 5000))),
    )


def services_traffic(config: Config, role: str, pool: int, calls: int, seed: int) -> list:
    """Independent calls driven by each service's users (any hour, busier in their day), or
    nightly batches a fraction of a second apart."""
    rng = rng_for(NAME, seed, role, "calls")
    fleet = [service(config, role, i, seed) for i in range(pool)]
    draws = heavy_tail(rng, pool, calls, exponent=0.95)
    requests = []
    batches: dict[tuple[int, int], int] = {}
    for index in draws:
        svc = fleet[index]
        day = rng.randrange(config.days)
        if svc.nightly:
            start = batches.setdefault(
                (index, day), START_MS + day * DAY_MS + HOUR_MS + rng.randrange(2 * HOUR_MS)
            )
            moment = start + rng.randrange(10 * MINUTE_MS)
        else:
            moment = day_moment(rng, START_MS, day, svc.zone, hours=(7, 23), night=0.25)
        prompt = job_prompt(svc.job, rng, svc.window)
        requests.append(
            Request(
                "benign",
                svc.account,
                moment,
                (("system", SYSTEM), ("user", prompt)),
                dict(svc.params),
                api_key=f"key-{digest(svc.account, size=10)}",
                org=svc.org,
            )
        )
    return requests


# --- honest power users -----------------------------------------------------------------------
def power_users(config: Config, seed: int, role: str) -> list[Request]:
    rng = rng_for(NAME, seed, role, "power")
    requests = []

    def add(actor: str, who: str, at: int, prompt: str, params: dict) -> None:
        requests.append(
            Request(
                actor,
                who,
                at,
                (("system", SYSTEM), ("user", prompt)),
                params,
                api_key=f"key-{digest(who, size=10)}",
                org=org(config, role, 999),
            )
        )

    # Weekly offline evaluation: the QA pipeline's whole dev set, Sunday night, temperature 0.
    evaluation = account(config, f"{role}-rag-eval", 0)
    dev = sources.fanoutqa_multihop()
    sundays = [d for d in range(config.days) if weekday(START_MS, d) == 6][: config.eval_runs]
    for day in sundays:
        moment = START_MS + day * DAY_MS + 3 * HOUR_MS
        run_rng = rng_for(NAME, seed, role, "eval")  # a fixed retriever: the same prompts
        for item in dev[: config.eval_items]:
            add(
                "power:rag-eval",
                evaluation,
                moment,
                wiki_qa(item, run_rng),
                {"temperature": 0, "max_tokens": 300},
            )
            moment += int(rng.uniform(0.5, 1.5) * SECOND_MS)
    # Nightly translation batch: a fixed share of the foreign-language lines each night.
    translator = account(config, f"{role}-translation", 0)
    lines = foreign_lines()
    chosen = [lines[(i * 7919 + seed) % len(lines)] for i in range(config.translation_items)]
    nights = max(1, config.days // 3)
    for night in range(nights):
        moment = START_MS + (night * 3 + 1) * DAY_MS + 30 * MINUTE_MS
        for language, line in chosen[night::nights]:
            add(
                "power:translation-batch",
                translator,
                moment,
                translate(language, line),
                {"temperature": 0, "max_tokens": 256},
            )
            moment += int(rng.uniform(0.2, 0.8) * SECOND_MS)
    # A one-off classification backfill with logprobs, many requests a second.
    backfill = account(config, f"{role}-backfill", 0)
    english = english_lines()
    moment = START_MS + 11 * DAY_MS + 15 * HOUR_MS
    for i in range(config.backfill_items):
        _, line = english[i % len(english)]
        add(
            "power:classifier-backfill",
            backfill,
            moment,
            classify(line),
            {"temperature": 0, "max_tokens": 5, "logprobs": True, "top_logprobs": 5},
        )
        moment += int(rng.uniform(0.1, 0.4) * SECOND_MS)
    return requests


# --- attackers: this world's own implementations ---------------------------------------------
@dataclass(frozen=True)
class Attacker:
    config: Config
    strategy: str
    replica: int

    @property
    def rng(self) -> random.Random:
        return rng_for(NAME, self.config.seed, "attacker", self.strategy, self.replica)

    @property
    def account(self) -> str:
        return account(self.config, f"x-{self.strategy}", self.replica)

    @property
    def first_day(self) -> int:
        return (5 * SINGLE_ACCOUNT.index(self.strategy) + 3 * self.replica) % 10

    def send(self, at_ms: int, prompt: str, params: dict, system: str | None = SYSTEM) -> Request:
        turns = (("system", system), ("user", prompt)) if system else (("user", prompt),)
        return Request(
            f"attack:{self.strategy}",
            self.account,
            at_ms,
            turns,
            params,
            api_key=f"key-{digest(self.account, size=10)}",
            org=org(self.config, f"x-{self.strategy}", self.replica),
        )


def dataset_replay(attacker: Attacker) -> list[Request]:
    """A cron worker that walks published QA data in file order, one call every ~6 s around
    the clock: FanOutQA's test questions, or its dev questions and their sub-questions, or the
    corpus's English dialog openers."""
    rng, budget = attacker.rng, attacker.config.budget
    if attacker.replica % 3 == 0:
        pool = [q.question for q in sources.fanoutqa_questions()]
    elif attacker.replica % 3 == 1:
        pool = [
            x
            for q in sources.fanoutqa_multihop()
            for x in (q.question, *(s.question for s in q.steps))
        ]
    else:
        pool = [d.turns[0] for d in english_dialogs()]
    moment = START_MS + attacker.first_day * DAY_MS + rng.randrange(DAY_MS)
    requests = []
    for item in pool[:budget]:
        requests.append(
            attacker.send(moment, f"Question: {item}", {"temperature": 0, "max_tokens": 512}, None)
        )
        moment += int(rng.gauss(6.0, 0.4) * SECOND_MS)
    return requests


def templated_enumeration(attacker: Attacker) -> list[Request]:
    """One skeleton over the Wikipedia articles FanOutQA cites, alphabetically; one replica
    hides it in the QA pipeline's template with an empty context. Service-like parameters."""
    rng = attacker.rng
    pages = sorted(wikipedia_pages())
    start = (attacker.replica * 997) % len(pages)
    chosen = (pages[start:] + pages[:start])[: attacker.config.budget]
    skeletons = (
        "Write a comprehensive encyclopedia-style overview of {page}: background, key facts, "
        "dates and significance.",
        "Summarize everything important about {page} in five paragraphs.",
        "List the ten most important facts about {page}, each with a one-sentence explanation.",
    )
    skeleton = skeletons[attacker.replica % len(skeletons)]
    requests, day = [], attacker.first_day
    moment = day_moment(rng, START_MS, day, 0, hours=(8, 9))
    for page in chosen:
        prompt = skeleton.format(page=page)
        if attacker.replica % 2 == 1:
            prompt = (
                "Answer the question using only the context below. If the context is not "
                f'enough, say "I don\'t know".\n\nContext:\n(no results)\n\n'
                f"Question: {prompt}\nAnswer:"
            )
        requests.append(attacker.send(moment, prompt, {"temperature": 0.2, "max_tokens": 800}))
        moment += int(rng.uniform(30, 120) * SECOND_MS)
        if (moment - START_MS) % DAY_MS > 19 * HOUR_MS:
            day += 1
            moment = day_moment(rng, START_MS, day, 0, hours=(8, 9))
    return requests


STEPWISE = (
    "Work through this step by step: list the sub-questions you need, answer each one showing "
    "what you know, write every intermediate result, then combine them into the final answer.",
    "Reason out loud before answering. Decompose the question, resolve each part with "
    "explicit reasoning, double-check each intermediate answer, and only then conclude.",
    "Give a detailed chain of thought first (every step, every assumption), then the answer on "
    "its own line.",
)


def reasoning_elicitation(attacker: Attacker) -> list[Request]:
    """Multi-hop questions with an instruction to write out the whole decomposition and every
    intermediate step, `max_tokens` in the thousands, a few dozen a day."""
    rng = attacker.rng
    pool = [q.question for q in (*sources.fanoutqa_multihop(), *sources.fanoutqa_questions())]
    picked = rng.sample(pool, min(len(pool), attacker.config.budget))
    requests, day, moment = [], attacker.first_day, 0
    for index, question in enumerate(picked):
        if index % 30 == 0:
            day += 1
            moment = day_moment(rng, START_MS, day, 8, hours=(10, 16))
        instruction = STEPWISE[(index + attacker.replica) % len(STEPWISE)]
        requests.append(
            attacker.send(
                moment, f"{question}\n\n{instruction}", {"temperature": 0.3, "max_tokens": 3000}
            )
        )
        moment += int(rng.uniform(20, 80) * SECOND_MS)
    return requests


def low_and_slow(attacker: Attacker) -> list[Request]:
    """The QA pipeline's template (with retrieval noise for context) around the clock at a
    service's pace, about seven calls a day for thirty days."""
    rng = attacker.rng
    questions = rng.sample(
        sources.fanoutqa_questions(), min(len(sources.fanoutqa_questions()), attacker.config.budget)
    )
    dev = sources.fanoutqa_multihop()
    requests = []
    for question in questions:
        day = rng.randrange(30)
        noise = [dev[rng.randrange(len(dev))].steps for _ in range(3)]
        context = "\n".join(
            f"[{i}] ({s.page or 'unknown'}) {s.question} {s.answer}"
            for i, s in enumerate((st[0] for st in noise if st), 1)
        )
        prompt = (
            "Answer the question using only the context below. If the context is not enough, "
            f'say "I don\'t know".\n\nContext:\n{context}\n\nQuestion: {question.question}\nAnswer:'
        )
        moment = START_MS + (attacker.first_day // 3 + day) * DAY_MS + rng.randrange(DAY_MS)
        requests.append(attacker.send(moment, prompt, {"temperature": 0.1, "max_tokens": 512}))
    return requests


OPENERS = (
    "Can you tell me {q}",
    "I'd like to know {q}",
    "quick one: {q}",
    "For a school report, {q}",
    "{q} Please be thorough.",
)


def reword(question: str, rng: random.Random) -> str:
    """Rewording of a question: case, punctuation and an opener."""
    text = question.rstrip("?").strip()
    if rng.random() < 0.5:
        text = text[0].lower() + text[1:]
    text = re.sub(r"\bWhat is\b", "what's", text) if rng.random() < 0.5 else text
    return rng.choice(OPENERS).format(q=text + ("?" if rng.random() < 0.6 else ""))


def paraphrase_blending(attacker: Attacker) -> list[Request]:
    """Reworded multi-hop questions interleaved with support-bot calls that look like a
    benign service's, at a service's pace and parameters."""
    rng = attacker.rng
    pool = list(sources.fanoutqa_questions())
    dialogs = answered_dialogs()
    requests = []
    moment = START_MS + attacker.first_day * DAY_MS + rng.randrange(DAY_MS)
    for index in range(attacker.config.budget):
        if index % 2 == 0:
            prompt = reword(pool[rng.randrange(len(pool))].question, rng)
        else:
            prompt = support(dialogs[rng.randrange(len(dialogs))], rng)
        requests.append(attacker.send(moment, prompt, {"temperature": 0, "max_tokens": 512}))
        moment += int(rng.expovariate(1 / (40 * MINUTE_MS)))
    return requests


def self_instruct(attacker: Attacker) -> list[Request]:
    """The request side of self-instruct, without a teacher: 'here are three questions, write
    five new ones' (temperature 0.9), alternating with answering calls. The answering calls
    use real seed questions where the teacher's new questions would be."""
    rng = attacker.rng
    seeds = [q.question for q in (*sources.fanoutqa_multihop(), *sources.fanoutqa_questions())]
    requests, moment = [], START_MS + attacker.first_day * DAY_MS + rng.randrange(DAY_MS)
    while len(requests) < attacker.config.budget:
        shown = rng.sample(seeds, 3)
        requests.append(
            attacker.send(
                moment,
                "Below are three questions from our QA dataset:\n"
                + "\n".join(f"- {q}" for q in shown)
                + "\n\nWrite five new questions of the same kind about other topics, one per "
                "line.",
                {"temperature": 0.9, "max_tokens": 400},
            )
        )
        moment += int(rng.uniform(1, 3) * SECOND_MS)
        for question in rng.sample(seeds, 5):
            requests.append(attacker.send(moment, question, {"temperature": 0, "max_tokens": 600}))
            moment += int(rng.uniform(1, 3) * SECOND_MS)
        moment += int(rng.uniform(5, 40) * MINUTE_MS)
    return requests[: attacker.config.budget]


def _terms(item: sources.MultiHop) -> set[str]:
    return set(item.pages) | {w.lower() for w in re.findall(r"[A-Za-z]{4,}", item.question)}


def active_learning(attacker: Attacker) -> list[Request]:
    """Rounds of 25 questions, each round the unasked questions closest (shared Wikipedia
    pages and words) to a few of the last round's. Without a teacher the uncertain ones are
    chosen at random; a burst per round, hours between rounds."""
    rng = attacker.rng
    items = list(sources.fanoutqa_multihop()) + list(sources.fanoutqa_questions())
    terms = [_terms(item) for item in items]
    asked: set[int] = set()
    current = rng.sample(range(len(items)), 25)
    requests = []
    moment = START_MS + attacker.first_day * DAY_MS + rng.randrange(DAY_MS)
    while len(requests) < attacker.config.budget:
        for index in current:
            asked.add(index)
            requests.append(
                attacker.send(moment, items[index].question, {"temperature": 0, "max_tokens": 600})
            )
            moment += int(rng.uniform(0.5, 3) * SECOND_MS)
        anchors = rng.sample(current, 3)
        remaining = [i for i in range(len(items)) if i not in asked]
        current = sorted(
            remaining,
            key=lambda i: (-max(len(terms[i] & terms[a]) for a in anchors), i),
        )[:25]
        moment += int(rng.uniform(2, 8) * HOUR_MS)
    return requests[: attacker.config.budget]


def multi_account_campaign(config: Config) -> tuple[list[Request], list[str]]:
    """Forty service-like accounts in five new organisations that share the Wikipedia article
    list between them (disjoint slices), each wording the support-bot template its own way, all
    firing from one scheduler at :17 past the hour; half their calls are classification jobs
    copied from benign services, as cover."""
    rng = rng_for(NAME, config.seed, CAMPAIGN)
    members = [account(config, "x-campaign", i) for i in range(config.campaign_accounts)]
    pages = list(wikipedia_pages())
    rng.shuffle(pages)
    per = config.campaign_requests
    harvest = per // 2
    wordings = (
        "Tell me everything about {page}.",
        "What should I know about {page}? Give details.",
        "Explain {page} in depth.",
        "Give me a full briefing on {page}.",
    )
    english = english_lines()
    requests = []
    for index, member in enumerate(members):
        mine = pages[index * harvest : (index + 1) * harvest]
        wording = wordings[index % len(wordings)]
        owner = org(config, "x-campaign", index // 8)
        plan = [("h", p) for p in mine] + [("c", None)] * (per - len(mine))
        rng.shuffle(plan)
        hours = sorted(rng.sample(range(14 * 24), len(plan)))
        for (kind, page), hour in zip(plan, hours, strict=True):
            moment = START_MS + 6 * DAY_MS + hour * HOUR_MS + 17 * MINUTE_MS
            moment += int(rng.uniform(-90, 90) * SECOND_MS)
            if kind == "h":
                prompt = (
                    "Reply to the customer using the knowledge-base excerpts. Keep it under "
                    "three sentences.\n\nKnowledge base:\n- (none)\n\n"
                    f"Customer: {wording.format(page=page)}"
                )
                params = {"temperature": 0, "max_tokens": 512}
            else:
                prompt = classify(english[rng.randrange(len(english))][1])
                params = {"temperature": 0, "max_tokens": 10}
            requests.append(
                Request(
                    f"attack:{CAMPAIGN}",
                    member,
                    moment,
                    (("system", SYSTEM), ("user", prompt)),
                    params,
                    api_key=f"key-{digest(member, size=10)}",
                    org=owner,
                )
            )
    return requests, members


SINGLE = {
    "dataset_replay": dataset_replay,
    "templated_enumeration": templated_enumeration,
    "reasoning_elicitation": reasoning_elicitation,
    "low_and_slow": low_and_slow,
    "paraphrase_blending": paraphrase_blending,
    "self_instruct": self_instruct,
    "active_learning": active_learning,
}


# --- the log ----------------------------------------------------------------------------------
def _uuid(*parts: object) -> str:
    h = digest(*parts, size=32)
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def shape(request: Request, number: int) -> dict:
    """Latest user turn only, RFC3339 time, no client IP or user agent."""
    latest = next(text for role, text in reversed(request.turns) if role == "user")
    return {
        "request_id": _uuid(NAME, request.account, number),
        "account_id": request.account,
        "timestamp": rfc3339(request.at_ms),
        "messages": [{"role": "user", "content": latest}],
        "model": MODEL,
        "endpoint": "/v1/chat/completions",
        "params": dict(request.params),
        "client": {"api_key_id": request.api_key, "org_id": request.org},
    }


def make(config: Config) -> Traffic:
    events = services_traffic(config, "svc", config.services, config.calls, config.seed)
    events += power_users(config, config.seed, "power")
    for strategy, attack in SINGLE.items():
        for replica in range(config.attackers_per_strategy):
            events += attack(Attacker(config, strategy, replica))
    campaign, members = multi_account_campaign(config)
    events += campaign
    seed = config.seed + 1000
    calibration = services_traffic(
        config, "calibration-svc", config.calibration_services, config.calibration_calls, seed
    ) + power_users(config, seed, "calibration-power")
    return Traffic(events, calibration, {f"{CAMPAIGN}-{NAME}-{config.seed}": sorted(members)})


GENERATOR = Generator(NAME, VERSION, __file__, START_MS, SMALL, FULL, make, shape)


WORLD = World(
    name=NAME,
    population=(
        "RAG and batch services (Wikipedia QA with retrieved evidence, query planning, support "
        "bot, translation, classification, reply suggestion); hard negatives: a weekly RAG "
        "evaluation, a nightly translation batch, a classification backfill with logprobs"
    ),
    prompt_sources=(
        "FanOutQA questions, decompositions, source pages (fanoutqa); chatterbot-corpus dialogs, "
        "28 languages"
    ),
    log_shape=(
        "latest user turn only (system prompt dropped); no client IP or user agent; RFC3339 time"
    ),
    build=GENERATOR.build,
)
