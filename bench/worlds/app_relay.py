"""World `app-relay`: consumer apps relaying their end users' requests (B2B2C).

The provider sells to app makers, and each app's end users reach the model through it: the app
calls the Responses-style endpoint with its own key from its own backend, and the provider gives
every end user of an app a sub-account (the `account_id`) so quotas and abuse handling work per
person. Five apps share the platform: Quillstone, a writing app (reports, marketing copy, papers,
fiction, Chinese and English users, revision loops); Hearth, a companion assistant that keeps
memories about its user and sends them with every request; Brightline, an answer engine for
quick factual questions; Harbor, a support chat that shops, an airline and a mobile carrier
embed for their customers; and Patchwork, an IDE assistant developers paste bug reports and
shell chores into. Beside the apps, a few dozen small teams call the API directly with their own
keys. Consumers use the apps in their evenings and weekends in their own time zone (eleven
regions), developers in office hours; use per person is heavy-tailed and sessions chain
follow-ups. Hard negatives, all direct-API accounts of the app makers themselves: Quillstone's
nightly regression suite (the same writing requests at temperature 0 with a fixed seed and a
large max_tokens), Harbor's synthetic-dialogue job (many phrasings of each support case at
temperature 1 with n=4, for training its own intent router, which the terms allow) and
Brightline's weekly freshness audit (every question again at temperature 0 with logprobs and a
short answer).

Attackers are this module's own code, written without `students/`: replay of the sets in file
order, a template crossed with an enumerated slot, chain-of-thought elicitation, a slow trickle
over the whole four weeks, self-instruct bootstrapping new requests from earlier "outputs",
uncertainty-driven probing with tiny completions and logprobs, paraphrased harvesting blended
into an ordinary user's sessions, and a 40-account campaign that splits WritingBench's hundred
subdomains between its accounts (24 direct accounts on three hosting blocks, 16 end users of the
writing app). About half of the single-account attackers are end users inside an app, so the
app sets their parameters, instructions and address, exactly as for its honest users.

The gateway logs what the Responses endpoint received: the newest input only, as content parts
(`input_text`), with `previous_response_id` chaining a follow-up to the request before it; the
app's system prompt as a top-level `instructions`; the app's end-user handle as `user`; a
`metadata.feature`; the client as the API key and the calling backend's address only; and the
time as epoch milliseconds with a microsecond fraction (a float).

Prompts are real texts from inspect-evals' bundled data (`sources.app_prompts`): WritingBench's
writing requests, PersistBench's queries and memories, FreshQA's questions, tau2-bench's
customers, SWE-Lancer's bug reports and AgentBench's shell tasks. Openers, follow-ups and
attack wording around them are short hand-written fragments.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.worlds import sources
from bench.worlds.base import (
    CAMPAIGN,
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
from bench.worlds.sources import AppPrompt
from core.timeutil import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS

NAME = "app-relay"
VERSION = 1
START_MS = epoch_ms(2028, 2, 7)  # a Monday; no clock change anywhere before March
PRO, LITE = "relay-pro-2", "relay-lite-2"


@dataclass(frozen=True)
class Config:
    """Sizes and seeds; every field is part of the cache key."""

    seed: int = 0
    days: int = 28
    users: int = 520  # end users the apps bring (heavy-tailed; most appear)
    sessions: int = 7000
    developers: int = 30  # direct-API teams
    developer_requests: int = 1500
    calibration_users: int = 520
    calibration_sessions: int = 7000
    calibration_developers: int = 30
    calibration_developer_requests: int = 1500
    attackers_per_strategy: int = 3
    budget: int = 260
    campaign_accounts: int = 40
    campaign_requests: int = 60
    regression_items: int = 40  # nightly; the weekly run takes four times as many
    synthetic_cases: int = 160
    audit_items: int = 600


SMALL = Config(
    users=130,
    sessions=1200,
    developers=10,
    developer_requests=300,
    calibration_users=130,
    calibration_sessions=1200,
    calibration_developers=10,
    calibration_developer_requests=300,
    attackers_per_strategy=1,
    budget=70,
    campaign_requests=16,
    regression_items=15,
    synthetic_cases=40,
    audit_items=150,
)
FULL = Config()


def pool(kind: str) -> tuple[AppPrompt, ...]:
    return sources.app_prompts()[kind]


def account(seed: int, role: str, index: object) -> str:
    return f"sub_{digest(NAME, seed, role, index, size=14)}"


# --- apps and places ---------------------------------------------------------------------------
@dataclass(frozen=True)
class App:
    """A consumer app: its backend sets the model, parameters and system prompt for every user."""

    name: str
    feature: str
    model: str
    params: tuple[tuple[str, Any], ...]
    instructions: tuple[str, str]  # the system prompt before and after the mid-month release
    hours: tuple[float, float]
    weekend: float  # weekend activity relative to a weekday
    share: float  # of the end users


APPS = (
    App(
        "quill",
        "compose",
        PRO,
        (("temperature", 0.8), ("top_p", 0.95), ("max_tokens", 2048)),
        (
            "You are Quillstone, a writing partner. Follow the user's brief closely, keep their "
            "language, and produce polished, well-structured text.",
            "You are Quillstone, a writing partner. Follow the brief, match the user's language "
            "and register, use headings where the genre expects them, and never invent facts "
            "about real people.",
        ),
        (18.0, 23.5),
        1.3,
        0.3,
    ),
    App(
        "hearth",
        "chat",
        LITE,
        (("temperature", 0.9), ("max_tokens", 700)),
        (
            "You are Hearth, a warm personal assistant. Use what you remember about the user "
            "only where it helps.",
            "You are Hearth, a warm and honest personal assistant. Use remembered facts only "
            "when relevant; do not simply agree with the user when they are mistaken.",
        ),
        (19.0, 24.0),
        1.2,
        0.22,
    ),
    App(
        "bright",
        "answer",
        LITE,
        (("temperature", 0.3), ("max_tokens", 400)),
        (
            "You are Brightline. Answer factual questions concisely and say when facts may have "
            "changed recently.",
            "You are Brightline. Answer concisely, correct false premises, and flag answers that "
            "may be out of date.",
        ),
        (7.0, 23.0),
        1.0,
        0.2,
    ),
    App(
        "harbor",
        "support",
        LITE,
        (("temperature", 0.2), ("max_tokens", 350)),
        (
            "You are the support assistant for {tenant}. Be polite, verify the customer's "
            "identity before changing anything, and follow the company policy.",
            "You are {tenant}'s support assistant. Verify identity first, follow policy exactly, "
            "and offer a human agent when you cannot help.",
        ),
        (9.0, 21.0),
        0.8,
        0.12,
    ),
    App(
        "patch",
        "ide",
        PRO,
        (("temperature", 0.2), ("max_tokens", 1536), ("stream", True)),
        (
            "You are Patchwork, a coding assistant inside the developer's editor. Be precise and "
            "show code.",
            "You are Patchwork, a coding assistant in the editor. Prefer minimal diffs, explain "
            "the root cause, and show shell commands in code blocks.",
        ),
        (9.5, 18.5),
        0.15,
        0.16,
    ),
)
APP = {app.name: app for app in APPS}
TENANTS = {
    "airline": ("SkyReach Airways",),
    "retail": ("Northwind Outfitters", "Copperleaf Home", "Tidewater Goods"),
    "telecom": ("Lumen Mobile",),
}
RELEASE_DAY = 15  # every app ships a new system prompt then
# (hours from UTC in February, weight, first octets of residential ranges for direct users)
REGIONS = (
    (-5.0, 3.0, (24, 68, 71, 73)),
    (-8.0, 2.0, (50, 75, 76, 97)),
    (-3.0, 1.0, (177, 179, 189)),
    (0.0, 1.5, (81, 86, 90)),
    (1.0, 2.5, (77, 78, 87, 93)),
    (3.0, 0.8, (46, 95, 178)),
    (5.5, 1.5, (49, 106, 122)),
    (8.0, 2.5, (36, 112, 117)),  # China and Singapore: Quillstone's Chinese users
    (9.0, 1.0, (60, 126, 153)),
    (7.0, 0.7, (14, 27, 113)),
    (11.0, 0.6, (1, 120, 124)),
)
CLOUD = (3, 18, 34, 35, 44, 52, 54, 104, 146, 167)


def address(rng: random.Random, octets: Sequence[int]) -> str:
    return f"{rng.choice(octets)}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"


def egress(seed: int, app: App) -> tuple[str, ...]:
    """The few addresses an app's backend calls from (NAT gateways of its cloud region)."""
    rng = rng_for(NAME, "egress", app.name)  # the apps are the same in every history
    base = f"{rng.choice(CLOUD)}.{rng.randrange(256)}.{rng.randrange(256)}"
    return tuple(f"{base}.{rng.randrange(2, 250)}" for _ in range(3 + rng.randrange(3)))


def app_key(app: App) -> str:
    return f"rk_live_{digest(NAME, 'app-key', app.name, size=20)}"


# --- what a request carries before the gateway logs it -----------------------------------------
# `Request.params` holds what the caller sent; the three keys below are how the app or script
# addressed the endpoint, which the gateway logs outside `params`.
THREAD, INSTRUCTIONS, FEATURE = "_thread", "_instructions", "_feature"


@dataclass
class Sender:
    """Who sends: an end user inside an app, or a direct-API account with its own key."""

    actor: str
    account: str
    offset: float
    app: App | None = None
    key: str | None = None
    ip: str | None = None
    tenant: str = ""
    memories: tuple[str, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)  # a direct caller's own settings

    def request(
        self,
        at_ms: int,
        turns: Sequence[tuple[str, str]],
        thread: str,
        params: dict[str, Any] | None = None,
        instructions: str | None = None,
    ) -> Request:
        """One request; inside an app the app's parameters and system prompt win."""
        if self.app is not None:
            app = self.app
            day = (at_ms - START_MS) // DAY_MS
            sent = {"model": app.model, **dict(app.params)}
            system = app.instructions[int(day >= RELEASE_DAY)].format(tenant=self.tenant)
            if self.memories:
                system += "\n\nWhat you remember about the user:\n" + "\n".join(
                    f"- {m}" for m in self.memories
                )
            sent[INSTRUCTIONS] = system
            sent[FEATURE] = app.feature
            key, ip = app_key(app), self.ip
        else:
            sent = {"model": PRO, **self.params, **(params or {})}
            if instructions:
                sent[INSTRUCTIONS] = instructions
            key, ip = self.key, self.ip
        sent[THREAD] = thread
        return Request(self.actor, self.account, at_ms, tuple(turns), sent, ip=ip, api_key=key)


def in_app(actor: str, account_id: str, app: App, rng: random.Random, seed: int) -> Sender:
    offset, _, _ = rng.choices(REGIONS, [r[1] for r in REGIONS])[0]
    if app.name == "quill" and rng.random() < 0.45:
        offset = 8.0
    sender = Sender(actor, account_id, offset, app=app, ip=rng.choice(egress(seed, app)))
    if app.name == "harbor":
        domain = rng.choice(tuple(TENANTS))
        sender.tenant = rng.choice(TENANTS[domain])
    if app.name == "hearth":
        sender.memories = tuple(rng.choice(pool("memory")).context)
    return sender


def direct(actor: str, account_id: str, rng: random.Random, cloud: bool = False) -> Sender:
    offset, _, octets = rng.choices(REGIONS, [r[1] for r in REGIONS])[0]
    key = f"rk_{digest(NAME, 'key', account_id, size=20)}"
    return Sender(actor, account_id, offset, key=key, ip=address(rng, CLOUD if cloud else octets))


# --- time --------------------------------------------------------------------------------------
def active_day(rng: random.Random, days: int, weekend: float) -> int:
    """A day of the world, weekends weighted by how much the app is used then."""
    while True:
        day = rng.randrange(days)
        if weekday(START_MS, day) < 5 or rng.random() < min(1.0, weekend / 1.3):
            return day


def think(rng: random.Random, median_s: float) -> int:
    """A human pause: log-normal around `median_s`."""
    return int(median_s * SECOND_MS * rng.lognormvariate(0, 0.55))


# --- benign sessions ---------------------------------------------------------------------------
WRITING_MORE_EN = (
    "Make it shorter, about half the length.",
    "Can you make the tone more formal?",
    "Rewrite the second section, it feels repetitive.",
    "Add a short conclusion.",
    "Less jargon please, this is for a general audience.",
    "Good. Now give me three alternative titles.",
    "Turn this into bullet points I can paste into slides.",
)
WRITING_MORE_ZH = (
    "请再精简一些，控制在一半篇幅。",
    "语气再正式一点。",
    "第二部分有些重复，请重写。",
    "加一个简短的结尾。",
    "换成更通俗的说法，读者是普通大众。",
    "再给我三个备选标题。",
)
MEMORY_MORE = (
    "That's helpful, thanks. Anything else I should keep in mind?",
    "Hmm, I'm not sure that fits me. Can you suggest something different?",
    "Can you make that a short checklist?",
    "Why do you think so?",
    "ok. and what would you do in my place?",
)
FRESH_MORE = (
    "Is that still true today?",
    "What's your source for that?",
    "Are you sure?",
    "And what about before that?",
    "Explain briefly why.",
)
SUPPORT_MORE = (
    "Ok, is there anything else you need from me?",
    "That's not what I was told last time.",
    "Can I talk to a human agent?",
    "Alright, please go ahead.",
    "Thanks, that's all.",
)
ISSUE_LEADS = (
    "Can you help me fix this bug?\n\n",
    "Getting this issue from QA, where should I start looking?\n\n",
    "Here's the ticket I'm working on:\n\n",
    "",
    "Explain what's probably causing this:\n\n",
)
CODE_MORE = (
    "That didn't work, the same thing happens.",
    "Can you show the full diff?",
    "How would I write a test for that?",
    "Is there a simpler way?",
    "Which file would that be in, roughly?",
)


def trimmed(text: str, limit: int) -> str:
    """What fits the app's input box: long reference material is cut at a line break."""
    if len(text) <= limit:
        return text
    cut = text.rfind("\n", 0, limit)
    return text[: cut if cut > limit // 2 else limit].rstrip()


def opening(rng: random.Random, app: App, sender: Sender) -> tuple[str, Sequence[str]]:
    """A session's first request in the app and the follow-ups its user may send."""
    if app.name == "quill":
        item = rng.choice(pool("writing"))
        more = WRITING_MORE_ZH if item.language == "zh" else WRITING_MORE_EN
        return trimmed(item.text, rng.choice((800, 1500, 2500, 4000))), more
    if app.name == "hearth":
        item = rng.choice(pool("memory"))
        if rng.random() < 0.5:
            sender.memories = item.context  # the user's own memories go with their question
        return item.text, MEMORY_MORE
    if app.name == "bright":
        return rng.choice(pool("fresh")).text, FRESH_MORE
    if app.name == "harbor":
        domain = next(d for d, names in TENANTS.items() if sender.tenant in names)
        case = rng.choice([c for c in pool("support") if c.topic == domain])
        return case.text, (*case.context[:1], *SUPPORT_MORE)
    if rng.random() < 0.3:
        return rng.choice(pool("shell")).text, CODE_MORE
    issue = rng.choice(pool("issue"))
    body = trimmed(issue.text.strip("_ \n"), 2500)
    return f"{rng.choice(ISSUE_LEADS)}{issue.topic}\n\n{body}", CODE_MORE


def session(rng: random.Random, sender: Sender, at_ms: int, thread: str) -> list[Request]:
    """One sitting in an app: an opening request and zero to four follow-ups."""
    assert sender.app is not None
    text, more = opening(rng, sender.app, sender)
    turns: list[tuple[str, str]] = [("user", text)]
    requests = [sender.request(at_ms, turns, thread)]
    follow = rng.choices((0, 1, 2, 3, 4), (0.38, 0.27, 0.17, 0.11, 0.07))[0]
    if sender.app.name == "harbor":
        follow = max(follow, 1)  # the support bot asks who the customer is
    for index in range(min(follow, len(more))):
        at_ms += think(rng, 45 if sender.app.name != "quill" else 120)
        reply = more[index] if sender.app.name == "harbor" else rng.choice(more)
        turns += [("assistant", ""), ("user", reply)]
        requests.append(sender.request(at_ms, turns, thread))
    return requests


DEV_SYSTEMS = (
    "You are a helpful assistant.",
    "You are a concise assistant for an internal tool. Answer in plain text.",
    "Respond only with valid JSON.",
    "",
)


def developer_request(rng: random.Random, sender: Sender, day: int, index: int) -> Request:
    """A small team trying prompts against the API while they build their own product."""
    kind = rng.choice(("writing", "memory", "fresh", "support", "issue", "shell"))
    item = rng.choice(pool(kind))
    text = item.text if kind != "writing" else trimmed(item.text, 3000)
    if kind == "issue":
        text = f"{item.topic}\n\n{trimmed(item.text, 2000)}"
    at = day_moment(rng, START_MS, day, sender.offset, (9.5, 18.5), night=0.1)
    system = rng.choice(DEV_SYSTEMS)
    return sender.request(at, [("user", text)], f"{sender.account}/{index}", instructions=system)


def dev_settings(rng: random.Random) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    if rng.random() < 0.6:
        settings["temperature"] = rng.choice((0, 0, 0.2, 0.7, 1.0))
    if rng.random() < 0.7:
        settings["max_tokens"] = rng.choice((256, 512, 1024, 2048, 4096))
    if rng.random() < 0.12:
        settings.update(logprobs=True, top_logprobs=rng.choice((1, 3, 5)))
    if rng.random() < 0.2:
        settings["model"] = LITE
    return settings


def population(
    config: Config, seed: int, role: str, users: int, sessions: int, devs: int, dev_requests: int
) -> list[Request]:
    """End users in the apps, heavy-tailed, plus the direct-API teams."""
    rng = rng_for(NAME, seed, role, "population")
    senders = []
    for index in range(users):
        app = rng.choices(APPS, [a.share for a in APPS])[0]
        senders.append(in_app("benign", account(seed, role, index), app, rng, seed))
    requests: list[Request] = []
    for number, who in enumerate(heavy_tail(rng, users, sessions, 0.65)):
        sender = senders[who]
        assert sender.app is not None
        day = active_day(rng, config.days, sender.app.weekend)
        lo, hi = sender.app.hours
        if rng.random() < 0.3:  # lunch breaks and commutes
            lo, hi = (7.0, 9.0) if rng.random() < 0.5 else (12.0, 14.0)
        at = day_moment(rng, START_MS, day, sender.offset, (lo, hi), night=0.06)
        requests += session(rng, sender, at, f"{role}/{number}")
    teams = [
        direct("benign", account(seed, f"{role}-dev", i), rng, cloud=rng.random() < 0.4)
        for i in range(devs)
    ]
    for team in teams:
        team.params = dev_settings(rng)
    for index, who in enumerate(heavy_tail(rng, devs, dev_requests, 0.9)):
        team = teams[who]
        day = active_day(rng, config.days, 0.1)
        requests.append(developer_request(rng, team, day, index))
    return requests


# --- hard negatives: the app makers' own jobs --------------------------------------------------
def regression_suite(config: Config, seed: int, role: str) -> list[Request]:
    """Quillstone's nightly regression run: fixed writing briefs, temperature 0, a fixed seed;
    the whole suite on Sundays."""
    rng = rng_for(NAME, seed, role, "regression")
    sender = direct("power:regression_suite", account(seed, role, "regression"), rng, cloud=True)
    sender.params = {"temperature": 0, "seed": 7, "max_tokens": 4096}
    suite = rng.sample(pool("writing"), min(len(pool("writing")), 4 * config.regression_items))
    system = APP["quill"].instructions[1]
    requests = []
    for day in range(config.days):
        items = suite if weekday(START_MS, day) == 6 else suite[: config.regression_items]
        at = START_MS + day * DAY_MS + 2 * HOUR_MS + rng.randrange(10 * MINUTE_MS)
        for number, item in enumerate(items):
            at += 2 * SECOND_MS + rng.randrange(6 * SECOND_MS)
            text = trimmed(item.text, 2500)
            thread = f"{role}/regression/{day}/{number}"
            requests.append(sender.request(at, [("user", text)], thread, instructions=system))
    return requests


SYNTHETIC = (
    'A customer contacts {tenant} support. Their situation: "{reason}"\nWrite {n} different '
    "opening messages such a customer might type into the chat, varying tone and detail. "
    "Return them as a JSON list of strings.",
    "Generate {n} realistic first messages from customers of {tenant} with this problem: "
    '"{reason}". Include typos and informal phrasing in some. JSON list only.',
)


def synthetic_dialogues(config: Config, seed: int, role: str) -> list[Request]:
    """Harbor's data job: many phrasings of each support case, for its own intent router."""
    rng = rng_for(NAME, seed, role, "synthetic")
    sender = direct("power:synthetic_dialogues", account(seed, role, "synth"), rng, cloud=True)
    sender.params = {"temperature": 1.0, "n": 4, "max_tokens": 1200}
    cases = list(pool("support"))
    requests = []
    batch_days = sorted(rng.sample(range(1, config.days - 1), 5))
    per_batch = max(1, config.synthetic_cases // len(batch_days))
    for batch, day in enumerate(batch_days):
        at = day_moment(rng, START_MS, day, 1.0, (10.0, 12.0), night=0)
        for number in range(per_batch):
            case = cases[(batch * per_batch + number) % len(cases)]
            tenant = rng.choice(TENANTS[case.topic])
            for variant in range(2):
                at += 3 * SECOND_MS + rng.randrange(9 * SECOND_MS)
                reason = case.text.replace("\n", " ")
                text = SYNTHETIC[variant].format(tenant=tenant, reason=reason, n=rng.choice((5, 8)))
                thread = f"{role}/synth/{batch}/{number}/{variant}"
                requests.append(sender.request(at, [("user", text)], thread))
    return requests


def freshness_audit(config: Config, seed: int, role: str) -> list[Request]:
    """Brightline's weekly audit: every question again, short answers with logprobs, to see
    which answers changed and how sure the model is."""
    rng = rng_for(NAME, seed, role, "audit")
    sender = direct("power:freshness_audit", account(seed, role, "audit"), rng, cloud=True)
    sender.params = {"temperature": 0, "max_tokens": 48, "logprobs": True, "top_logprobs": 5}
    system = (
        "Answer in one short sentence. If the premise is false, say so. If unsure, say 'unsure'."
    )
    questions = pool("fresh")[: config.audit_items]
    requests = []
    for week in range(config.days // 7):
        at = START_MS + (week * 7 + 2) * DAY_MS + 4 * HOUR_MS + rng.randrange(HOUR_MS)
        for number, item in enumerate(questions):
            at += 1500 + rng.randrange(2500)
            thread = f"{role}/audit/{week}/{number}"
            requests.append(sender.request(at, [("user", item.text)], thread, instructions=system))
    return requests


def power_users(config: Config, seed: int, role: str) -> list[Request]:
    return [
        *regression_suite(config, seed, role),
        *synthetic_dialogues(config, seed, role),
        *freshness_audit(config, seed, role),
    ]


# --- single-account attackers ------------------------------------------------------------------
@dataclass
class Attacker:
    """One extraction account: either inside an app (the app sets everything but the text)
    or calling the API directly with settings of its own."""

    config: Config
    strategy: str
    replica: int
    sender: Sender
    rng: random.Random

    @property
    def budget(self) -> int:
        return self.config.budget

    def send(self, at: int, text: str, number: int, **params: Any) -> Request:
        thread = f"{self.sender.account}/{number}"
        return self.sender.request(at, [("user", text)], thread, params or None)

    def working_sessions(self, count: int, per_session: tuple[int, int], gap_s: float) -> list[int]:
        """`count` moments in sessions that look like a person's working hours."""
        rng, days = self.rng, self.config.days
        moments: list[int] = []
        hours = self.sender.app.hours if self.sender.app else (9.0, 19.0)
        while len(moments) < count:
            day = active_day(rng, days, 0.6)
            at = day_moment(rng, START_MS, day, self.sender.offset, hours, night=0.05)
            for _ in range(rng.randint(*per_session)):
                moments.append(at)
                at += think(rng, gap_s)
        return sorted(moments[:count])


def make_attacker(config: Config, strategy: str, replica: int, app_name: str | None) -> Attacker:
    seed = config.seed
    rng = rng_for(NAME, seed, "attacker", strategy, replica)
    # the same role as the honest population so ids share one space
    account_id = account(seed, "member", f"{strategy}/{replica}")
    actor = f"attack:{strategy}"
    if app_name:
        sender = in_app(actor, account_id, APP[app_name], rng, seed)
    else:
        sender = direct(actor, account_id, rng, cloud=rng.random() < 0.5)
    return Attacker(config, strategy, replica, sender, rng)


def dataset_replay(a: Attacker) -> list[Request]:
    """Sends a set's items in file order from a starting point, one after another."""
    kinds = (("writing",), ("fresh", "memory"), ("issue", "shell"))[a.replica % 3]
    items = [p for k in kinds for p in pool(k)]
    start = a.rng.randrange(len(items))
    ordered = items[start:] + items[:start]
    times = a.working_sessions(a.budget, (15, 40), 25)
    out = []
    for number, at in enumerate(times):
        item = ordered[number % len(ordered)]
        text = item.text if item.kind != "issue" else f"{item.topic}\n\n{item.text}"
        text = trimmed(text, 4000)
        settings = {} if a.sender.app else {"temperature": 0, "max_tokens": 4096}
        out.append(a.send(at, text, number, **settings))
    return out


AUDIENCES = (
    "first-time investors",
    "a hiring committee",
    "high-school students",
    "a city council",
    "retail customers",
    "hospital administrators",
    "a venture fund",
    "retirees",
)
ENUM_TEMPLATES = (
    "Write a complete, high-quality example of a {topic} aimed at {audience}. Full text, no "
    "placeholders.",
    "Produce a model {topic} for {audience}: realistic details, professional structure, "
    "around {words} words.",
)
FRAMEWORKS = ("React Native", "TypeScript", "a Redux-style store", "Onyx")


def templated_enumeration(a: Attacker) -> list[Request]:
    """One template crossed with an enumerated slot: WritingBench's subdomains with audiences,
    or SWE-Lancer's issue titles with frameworks."""
    times = a.working_sessions(a.budget, (20, 60), 12)
    if a.replica % 2 == 0:
        topics = sorted({p.topic for p in pool("writing")})
        template = ENUM_TEMPLATES[a.replica // 2 % 2]
        slots = [(t, au) for au in AUDIENCES for t in topics]
        texts = [
            template.format(topic=t.lower(), audience=au, words=a.rng.choice((600, 800, 1200)))
            for t, au in slots
        ]
    else:
        texts = [
            f"Issue: {p.topic}\nExplain the root cause and write the complete fix in {fw}, "
            "with the full code of every changed file."
            for fw in FRAMEWORKS
            for p in pool("issue")
        ]
    settings = {} if a.sender.app else {"temperature": 0.2, "max_tokens": 3000}
    return [a.send(at, texts[n % len(texts)], n, **settings) for n, at in enumerate(times)]


COT = (
    "Think step by step. Write out your full reasoning before giving the final answer, and mark "
    "the final answer with 'Answer:'.",
    "Before answering, reason through the problem carefully in numbered steps; show every "
    "intermediate conclusion.",
    "Explain your chain of thought in detail: what you know, what you infer, and why, then "
    "conclude.",
    "Let's work this out in a step-by-step way to be sure we have the right answer.",
)


def reasoning_elicitation(a: Attacker) -> list[Request]:
    """Questions with a demand for the full reasoning trace."""
    kinds = (("fresh", "shell"), ("memory",), ("fresh",))[a.replica % 3]
    items = [p for k in kinds for p in pool(k)]
    a.rng.shuffle(items)
    times = a.working_sessions(a.budget, (8, 25), 40)
    out = []
    for number, at in enumerate(times):
        item = items[number % len(items)]
        cot = a.rng.choice(COT)
        text = f"{item.text}\n\n{cot}" if a.rng.random() < 0.7 else f"{cot}\n\n{item.text}"
        settings = {} if a.sender.app else {"temperature": 0, "max_tokens": 8192}
        out.append(a.send(at, text, number, **settings))
    return out


COMPLETE = (
    "Please write the whole thing, complete and final.",
    "Give me the complete version, not an outline.",
    "",
    "I need the full text in one go.",
)


def low_and_slow(a: Attacker) -> list[Request]:
    """A handful of requests on nearly every day of the four weeks, at ordinary hours."""
    kinds = ("writing", "memory", "fresh")
    items = [p for k in kinds for p in pool(k)]
    a.rng.shuffle(items)
    out: list[Request] = []
    number = 0
    hours = a.sender.app.hours if a.sender.app else (10.0, 22.0)
    for day in range(a.config.days):
        if a.rng.random() < 0.12:
            continue
        for _ in range(a.rng.randint(1, max(2, a.budget // (2 * a.config.days) + 2))):
            item = items[number % len(items)]
            at = day_moment(a.rng, START_MS, day, a.sender.offset, hours, night=0.05)
            text = trimmed(item.text, 4000)
            if item.kind == "writing":
                text = f"{text}\n\n{a.rng.choice(COMPLETE)}".rstrip()
            settings = {} if a.sender.app else {"temperature": 0.3, "max_tokens": 2048}
            out.append(a.send(at, text, number, **settings))
            number += 1
    return out


GENERATE = (
    "Here are some example requests users send to a writing assistant:\n{examples}\n\nWrite "
    "{n} new requests in the same style, each on a different topic, numbered.",
    "Examples of tasks:\n{examples}\n\nBrainstorm {n} more tasks like these but more varied and "
    "more challenging. One per line.",
)
SPIN = (
    "Now do the same for {topic} instead.",
    "Adapt this to the field of {topic}.",
    "Same task, but the subject is {topic}.",
)


def first_sentence(text: str, limit: int = 220) -> str:
    match = re.match(r"(.+?[.!?。！？])(\s|$)", text.strip().replace("\n", " "))
    sentence = match.group(1) if match else text.strip()
    return sentence[:limit]


def self_instruct(a: Attacker) -> list[Request]:
    """Bootstraps: asks for new tasks from a few seeds, then sends the tasks it got back, which
    join the seed pool for the next round."""
    kinds = ("writing", "memory") if a.replica % 2 == 0 else ("memory", "fresh")
    seeds = [first_sentence(p.text) for k in kinds for p in a.rng.sample(pool(k), 12)]
    topics = sorted({p.topic for p in pool("writing")})
    times = a.working_sessions(a.budget, (10, 30), 20)
    out: list[Request] = []
    generated: list[str] = []
    number = 0
    while number < len(times):
        examples = a.rng.sample(seeds, 3) + a.rng.sample(generated, min(2, len(generated)))
        listing = "\n".join(f"{i + 1}. {e}" for i, e in enumerate(examples))
        n = a.rng.choice((8, 10, 12))
        text = a.rng.choice(GENERATE).format(examples=listing, n=n)
        settings = {} if a.sender.app else {"temperature": 1.0, "max_tokens": 2000}
        out.append(a.send(times[number], text, number, **settings))
        number += 1
        # the "model's" new tasks: the examples recombined with other subjects
        for _ in range(min(n // 2, len(times) - number)):
            base = a.rng.choice(examples)
            task = f"{base} {a.rng.choice(SPIN).format(topic=a.rng.choice(topics).lower())}"
            generated.append(task)
            answer = {} if a.sender.app else {"temperature": 0.7, "max_tokens": 3000}
            out.append(a.send(times[number], task, number, **answer))
            number += 1
        seeds += generated[-2:]
    return out


PROBE_FORMS = (
    "Q: {q}\nA:",
    "{q} Answer in at most three words.",
    "As of today, {q}",
    "True or false: {claim}",
    "{q} Reply 'yes', 'no' or 'unsure'.",
)


def active_learning(a: Attacker) -> list[Request]:
    """Probes with tiny completions and logprobs, spending more queries near the questions whose
    answer is uncertain (false premises, fast-changing facts) with small rewordings of them."""
    items = list(pool("fresh") if a.replica % 2 == 0 else pool("support"))
    a.rng.shuffle(items)
    times = a.working_sessions(a.budget, (30, 80), 6)
    settings: dict[str, Any] = {}
    if not a.sender.app:
        settings = {"temperature": 0, "max_tokens": a.rng.choice((1, 4, 8)), "logprobs": True}
        settings["top_logprobs"] = 20
    out: list[Request] = []
    index = 0
    while len(out) < len(times):
        item = items[index % len(items)]
        index += 1
        uncertain = item.flag or item.topic in ("fast-changing", "retail") or a.rng.random() < 0.2
        question = item.text if item.kind == "fresh" else f"Customer: {first_sentence(item.text)}"
        claim = item.context[0] if item.context else question
        forms = PROBE_FORMS if uncertain else PROBE_FORMS[:1]
        for form in forms:
            if len(out) >= len(times):
                break
            text = form.format(q=question, claim=first_sentence(claim, 160))
            if item.kind == "support":
                text += "\nIntent (one of: cancel, modify, refund, complaint, info):"
            out.append(a.send(times[len(out)], text, len(out), **settings))
    return out


SWAPS = {
    "write": ("draft", "compose", "put together"),
    "please": ("kindly", "could you", ""),
    "help me": ("assist me to", "I'd like you to"),
    "article": ("piece", "write-up"),
    "report": ("analysis", "brief"),
    "what": ("which", "what exactly"),
    "explain": ("walk me through", "clarify"),
}
HARVEST = (
    "Answer as a domain expert would, thoroughly and in full.",
    "Be exhaustive; cover every aspect.",
    "Give the most complete and authoritative answer you can.",
)


def paraphrase(rng: random.Random, text: str) -> str:
    """Word swaps and a moved clause: the same request reworded."""
    words = []
    for word in text.split(" "):
        options = SWAPS.get(word.lower())
        words.append(rng.choice(options) if options and rng.random() < 0.7 else word)
    result = " ".join(w for w in words if w)
    sentences = re.split(r"(?<=[.?!])\s+", result)
    if len(sentences) > 2 and rng.random() < 0.5:
        sentences = [*sentences[1:], sentences[0]]
    return " ".join(sentences)


def paraphrase_blending(a: Attacker) -> list[Request]:
    """An ordinary-looking user of an app whose sessions carry reworded harvesting requests
    between its genuine-looking ones."""
    out: list[Request] = []
    number = 0
    harvest = [p for k in ("writing", "fresh", "memory") for p in pool(k) if p.language == "en"]
    a.rng.shuffle(harvest)
    while number < a.budget:
        day = active_day(a.rng, a.config.days, 1.0)
        hours = a.sender.app.hours if a.sender.app else (9.0, 18.0)
        at = day_moment(a.rng, START_MS, day, a.sender.offset, hours, night=0.05)
        if a.sender.app and a.rng.random() < 0.55:
            for request in session(a.rng, a.sender, at, f"{a.sender.account}/cover/{number}"):
                out.append(request)
                number += 1
            continue
        item = harvest[number % len(harvest)]
        text = f"{paraphrase(a.rng, trimmed(item.text, 3000))} {a.rng.choice(HARVEST)}"
        settings = {} if a.sender.app else {"temperature": 0.7, "max_tokens": 2048}
        out.append(a.send(at, text, number, **settings))
        number += 1
    return out


# strategy -> (attack, the app each replica hides in; None: the API directly)
SINGLE: dict[str, tuple[Callable[[Attacker], list[Request]], tuple[str | None, ...]]] = {
    "dataset_replay": (dataset_replay, (None, "bright", "patch")),
    "templated_enumeration": (templated_enumeration, (None, "patch", "quill")),
    "reasoning_elicitation": (reasoning_elicitation, ("bright", "hearth", None)),
    "low_and_slow": (low_and_slow, ("quill", None, "hearth")),
    "self_instruct": (self_instruct, (None, "quill", None)),
    "active_learning": (active_learning, (None, None, "harbor")),
    "paraphrase_blending": (paraphrase_blending, ("hearth", "quill", "bright")),
}


# --- the 40-account campaign -------------------------------------------------------------------
OPENERS = (
    "I'm preparing materials for work.",
    "For a course I'm teaching:",
    "Quick one.",
    "Hi!",
    "Need this for a client.",
    "Working on a portfolio piece.",
    "",
    "Could you help me out?",
)
ASKS = (
    "Write the following in full: {brief}",
    "{brief}",
    "Here's my brief. {brief} Please deliver the finished text.",
    "Task: {brief}",
    "Please take this brief and produce the final document. {brief}",
)
FORMATS = (
    "Output the final text only, without commentary.",
    "Final text only, no notes.",
    "Return only the document itself.",
    "",
)


def multi_account_campaign(config: Config) -> tuple[list[Request], list[str]]:
    """Forty accounts split WritingBench's subdomains so that no two ask for the same kind of
    document; each words its requests its own way and mixes in ordinary questions. Twenty-four
    call the API from three hosting blocks, sixteen sign up as Quillstone users; they are
    onboarded in waves and work the same evening hours of one time zone."""
    seed = config.seed
    rng = rng_for(NAME, seed, CAMPAIGN)
    writing = pool("writing")
    topics = sorted({p.topic for p in writing})
    rng.shuffle(topics)
    blocks = [f"{rng.choice(CLOUD)}.{rng.randrange(256)}.{rng.randrange(256)}" for _ in range(3)]
    wordings = rng.sample(
        [(o, a, f) for o in range(len(OPENERS)) for a in range(len(ASKS)) for f in range(4)],
        config.campaign_accounts,
    )
    cover = [p for k in ("fresh", "memory") for p in pool(k)]
    requests: list[Request] = []
    members: list[str] = []
    for index in range(config.campaign_accounts):
        account_id = account(seed, "member", f"{CAMPAIGN}/{index}")
        members.append(account_id)
        actor = f"attack:{CAMPAIGN}"
        mine = topics[index :: config.campaign_accounts]
        items = [p for p in writing if p.topic in mine]
        rng.shuffle(items)
        if index < 24:
            sender = direct(actor, account_id, rng)
            sender.ip = f"{blocks[index % 3]}.{rng.randrange(2, 250)}"
            sender.params = {
                "temperature": rng.choice((0, 0.2, 0.3)),
                "max_tokens": rng.choice((3000, 4096)),
            }
        else:
            sender = in_app(actor, account_id, APP["quill"], rng, seed)
        sender.offset = 3.0 + rng.choice((0, 0, 0.5, -1))
        opener, ask, fmt = wordings[index]
        onboarding = (index % 8) * 2 + rng.randrange(2)
        active = list(range(onboarding, min(config.days, onboarding + 12 + rng.randrange(4))))
        for number in range(config.campaign_requests):
            day = rng.choice(active)
            at = day_moment(rng, START_MS, day, sender.offset, (17.0, 23.5), night=0.1)
            thread = f"{account_id}/{number}"
            if number % 3 == 2 or not items:
                text = rng.choice(cover).text
            else:
                brief = trimmed(items[number % len(items)].text, 2500)
                body = ASKS[ask].format(brief=brief)
                text = " ".join(s for s in (OPENERS[opener], body, FORMATS[fmt]) if s)
            requests.append(sender.request(at, [("user", text)], thread))
    return requests, members


# --- the gateway's record ----------------------------------------------------------------------
def response_id(thread: str, turn: int) -> str:
    return f"resp_{digest(NAME, thread, turn, size=24)}"


def shape(request: Request, number: int) -> dict:
    """The newest input as `input_text` parts with `previous_response_id` for follow-ups; the
    app's system prompt as `instructions`; the app's end-user handle as `user`; key and
    backend address as the client; float epoch milliseconds with microseconds."""
    params = dict(request.params)
    model = params.pop("model")
    thread = params.pop(THREAD)
    instructions = params.pop(INSTRUCTIONS, None)
    feature = params.pop(FEATURE, None)
    turn = sum(1 for role, _ in request.turns if role == "user")
    request_id = response_id(thread, turn)
    fraction = (50 + int(request_id[-4:], 16) % 900) / 1000  # microseconds; never a whole ms
    record: dict[str, Any] = {
        "request_id": request_id,
        "timestamp": request.at_ms + fraction,
        "account_id": request.account,
        "model": model,
        "endpoint": "/v1/responses",
    }
    if instructions:
        record["instructions"] = instructions
    record["messages"] = [
        {"role": "user", "content": [{"type": "input_text", "text": request.prompt}]}
    ]
    if turn > 1:
        record["previous_response_id"] = response_id(thread, turn - 1)
    if feature:
        record["user"] = f"u_{digest(NAME, 'handle', feature, request.account, size=20)}"
        record["metadata"] = {"feature": feature}
    record["params"] = params
    text = (instructions or "") + request.prompt
    record["prompt_tokens"] = len(text) // 4 + 4
    record["client"] = {"api_key_id": request.api_key, "ip": request.ip}
    return record


def make(config: Config) -> Traffic:
    seed = config.seed
    events = population(
        config,
        seed,
        "member",
        config.users,
        config.sessions,
        config.developers,
        config.developer_requests,
    )
    events += power_users(config, seed, "power")
    for strategy, (attack, homes) in SINGLE.items():
        for replica in range(config.attackers_per_strategy):
            attacker = make_attacker(config, strategy, replica, homes[replica % len(homes)])
            events += attack(attacker)
    campaign, members = multi_account_campaign(config)
    events += campaign
    calibration_seed = seed + 1000
    calibration = population(
        config,
        calibration_seed,
        "calibration",
        config.calibration_users,
        config.calibration_sessions,
        config.calibration_developers,
        config.calibration_developer_requests,
    )
    calibration += power_users(config, calibration_seed, "calibration-power")
    return Traffic(events, calibration, {f"{CAMPAIGN}-{NAME}-{seed}": sorted(members)})


GENERATOR = Generator(NAME, VERSION, __file__, START_MS, SMALL, FULL, make, shape)


WORLD = World(
    name=NAME,
    population=(
        "end users of five consumer apps relayed through per-user sub-accounts (a writing app, "
        "a companion with memory, an answer engine, an embedded support chat, an IDE assistant) "
        "beside direct-API teams; hard negatives: the app makers' own regression suite, "
        "synthetic-dialogue job and freshness audit"
    ),
    prompt_sources=(
        "inspect-evals' bundled data (inspect-evals): WritingBench, PersistBench, FreshQA, "
        "tau2-bench customers, SWE-Lancer issues, AgentBench OS tasks"
    ),
    log_shape=(
        "Responses-style: newest input as input_text parts with previous_response_id, "
        "instructions and user fields, metadata.feature; client key and backend IP; float "
        "epoch ms"
    ),
    build=GENERATOR.build,
)
