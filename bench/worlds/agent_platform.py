"""World `agent-platform`: autonomous agents and the people who drive them.

The provider runs an agent platform beside its plain API. Each customer project (the
`account_id`) either lets the platform's hosted runtime execute its agents (coding agents that
work through repository and API tasks step by step, research agents that browse sites and
search the web, back-office workflow agents that call a company's own functions), or runs an
agent framework on its own machines against the API, or has people chat with the console's
assistant, which keeps personal memories. An agent run is many calls in quick succession: the
plan, a tool call, the tool's result fed back, the next call, retries after timeouts, the final
answer; hosted runs share the runtime's runner addresses and user agent (the platform upgrades
it for every project at once mid-month), get the runtime's role preset as system prompt when
the agent brings none, run at temperature 0 and carry long histories. Use per project is
heavy-tailed; developers trigger runs in office hours in their own time zone (twelve regions),
scheduled agents run at night, console users chat into their evenings. Three honest heavy
projects (a CI bot that runs a coding agent on every pull request, a research firm's crawler
farm, an operations queue worked around the clock) sit in the benign population.

Hard negatives (`power:`), honest automated jobs that look like harvesting: an evaluation
harness that sends every published function-calling task once per model each week
(temperature 0, fixed seed, tools offered, nothing else), a coding-agent vendor's nightly golden
set (the same thirty sessions replayed in full every night) and a router-labelling job that the
terms allow (one request per real user query, a tool list, five-token answers with logprobs).

Attackers are this module's own code: replay of the public sets in file order, a template over
an enumerated slot (every published function, every site's task, every API class's tool),
reasoning-trace elicitation, a four-week trickle at ordinary hours, self-instruct bootstrapping,
uncertainty sampling with tiny completions and logprobs, paraphrased harvesting blended into
ordinary sessions, and a 40-account campaign that shards the tool and task space between its
projects. One replica of each single-account strategy runs inside the hosted runtime, which
sets what it sets for every project (runner addresses, user agent by date, traces, its system
preset); one copies a common agent framework, one is a plain script.

The gateway logs chat-completions requests as an OpenTelemetry-style span: the whole message
history including assistant `tool_calls` and `tool` results, the offered tools by name only
(`tools`), `params` with the tool choice and streaming flag, token counts and `finish_reason`,
a `trace` for traced clients, the client's address, user agent and key, and the time as integer
epoch milliseconds.

Prompts are real tasks from bfcl-eval's and webarena-verified's bundled data
(`sources.agent_tasks`); system prompts, tool results, assistant summaries and attack wording
are short hand-written fragments.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

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
from bench.worlds.sources import AgentTask, ToolCall
from core.timeutil import DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS

NAME = "agent-platform"
VERSION = 2
START_MS = epoch_ms(2027, 9, 6)  # a Monday
LARGE, MINI, CODER = "atlas-large-0827", "atlas-mini-0827", "atlas-code-0827"
REGIONS = (-8.0, -7.0, -5.0, -4.0, -3.0, 0.0, 1.0, 2.0, 3.0, 5.5, 8.0, 9.0)
# Internal message roles in `Request.turns`; `shape` turns them into chat-completions messages.
CALLS, RESULT = "assistant:tool_calls", "tool"


@dataclass(frozen=True)
class Config:
    """Sizes and seeds; every field is part of the cache key."""

    seed: int = 0
    days: int = 29
    projects: int = 300  # benign projects (heavy-tailed; most appear)
    runs: int = 3600  # benign work sessions (each one to four agent runs or a chat)
    heavy_runs: int = 500  # per honest heavy project
    calibration_projects: int = 220
    calibration_runs: int = 2600
    harness_items: int = 700  # tasks the evaluation harness sends per model and week
    golden_sessions: int = 30  # the regression suite's fixed sessions, replayed nightly
    attackers_per_strategy: int = 3
    campaign_accounts: int = 40
    attack_volume: int = 900  # a single-account attacker's harvesting requests


SMALL = Config(
    projects=90,
    runs=700,
    heavy_runs=80,
    calibration_projects=70,
    calibration_runs=500,
    harness_items=120,
    golden_sessions=6,
    attackers_per_strategy=1,
    attack_volume=160,
)
FULL = Config()


# --- who calls -----------------------------------------------------------------------------
RUNNER_BLOCKS = ("34.98.71", "34.98.72", "35.203.144")  # the hosted runtime's egress
RUNTIME_AGENTS = ("loom-runtime/3.4.2", "loom-runtime/3.5.0")
RUNTIME_UPGRADE_MS = START_MS + 15 * DAY_MS  # 3.5.0 reaches every runner mid-month
FRAMEWORKS = (
    "langchain-openai/0.3.27 openai-python/1.93.0",
    "llama-index-llms-openai/0.4.7 openai-python/1.91.0",
    "crewai/0.140.0 litellm/1.73.6",
    "openai-agents/0.1.0 openai-python/1.93.0",
    "autogen-ext/0.6.2 openai-python/1.90.0",
    "OpenAI/Python 1.93.0",
)
SCRIPTS = ("OpenAI/Python 1.93.0", "python-httpx/0.28.1", "OpenAI/NodeJS/5.8.2")
CONSOLE = "loom-console/2027.08.3"
CLOUD_BLOCKS = ("3.91", "18.212", "52.14", "20.81", "35.187", "104.196", "159.65", "51.158")


@dataclass(frozen=True)
class Client:
    """How a project reaches the API: the software, where from, and the settings it sends."""

    kind: str  # "runtime" | "framework" | "script" | "console"
    user_agent: str  # "" in the hosted runtime: the platform's, by date (`runtime_agent`)
    ips: tuple[str, ...]
    api_key: str
    params: dict[str, Any]
    model: str
    traced: bool


@dataclass(frozen=True)
class Project:
    account: str
    actor: str
    offset_h: float  # the owner's time zone
    client: Client
    role: str  # "coding" | "research" | "workflow" | "chat"


def cloud_ip(rng: random.Random) -> str:
    return f"{rng.choice(CLOUD_BLOCKS)}.{rng.randrange(1, 255)}.{rng.randrange(2, 254)}"


def home_ip(rng: random.Random) -> str:
    first = rng.choice((73, 86, 92, 101, 112, 176, 189, 203))
    return f"{first}.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(2, 254)}"


def runner_ips(rng: random.Random) -> tuple[str, ...]:
    """Hosted runs leave from any runner: many addresses in the runtime's few blocks."""
    return tuple(f"{rng.choice(RUNNER_BLOCKS)}.{rng.randrange(2, 254)}" for _ in range(12))


ROLE_PARAMS: dict[str, tuple[dict[str, Any], ...]] = {
    "coding": (
        {"temperature": 0, "max_tokens": 8192, "tool_choice": "auto", "stream": True},
        {"temperature": 0.2, "max_tokens": 16384, "tool_choice": "auto", "stream": True},
    ),
    "research": (
        {"temperature": 0.3, "max_tokens": 4096, "tool_choice": "auto", "stream": True},
        {"temperature": 0, "max_tokens": 2048, "tool_choice": "auto"},
        {"temperature": 1, "tool_choice": "auto"},
    ),
    "workflow": (
        {"temperature": 0, "max_tokens": 1024, "tool_choice": "auto", "parallel_tool_calls": True},
        {"temperature": 0, "tool_choice": "auto"},
        {"temperature": 0, "max_tokens": 512, "tool_choice": "required"},
    ),
    "chat": ({"temperature": 0.7, "max_tokens": 2048, "stream": True},),
}


def make_client(rng: random.Random, role: str, kind: str, key: str) -> Client:
    """A role's usual client; `kind` decides the software and addresses, the role the settings."""
    params = dict(rng.choice(ROLE_PARAMS[role]))
    model = CODER if role == "coding" else rng.choice((LARGE, LARGE, MINI))
    if kind == "runtime":
        return Client(kind, "", runner_ips(rng), key, params, model, True)
    if kind == "console":
        return Client(kind, CONSOLE, (home_ip(rng),), key, params, LARGE, False)
    if kind == "framework":
        if rng.random() < 0.4:
            params.pop("max_tokens", None)  # framework defaults send none
        ips = tuple(cloud_ip(rng) for _ in range(rng.choice((1, 1, 2, 3))))
        return Client(kind, rng.choice(FRAMEWORKS), ips, key, params, model, rng.random() < 0.5)
    params.pop("stream", None)
    return Client(kind, rng.choice(SCRIPTS), (cloud_ip(rng),), key, params, model, False)


def make_project(
    rng: random.Random,
    seed: int,
    label: str,
    index: int,
    actor: str,
    role: str,
    kind: str | None = None,
) -> Project:
    account = "proj-" + digest(NAME, seed, label, index, size=12)
    if kind is None:
        kind = {
            "chat": "console",
            "coding": rng.choice(("runtime", "runtime", "framework")),
            "research": rng.choice(("runtime", "framework", "framework")),
            "workflow": rng.choice(("runtime", "framework", "script")),
        }[role]
    key = "key_" + digest(account, "key", size=20)
    return Project(account, actor, rng.choice(REGIONS), make_client(rng, role, kind, key), role)


# --- one request ---------------------------------------------------------------------------
def runtime_agent(at_ms: int) -> str:
    """The hosted runtime's user agent at a moment. The platform upgrades its runners, not the
    projects: every project inside the runtime (honest, power user, attacker, campaign member)
    sends the same version at the same time."""
    return RUNTIME_AGENTS[at_ms >= RUNTIME_UPGRADE_MS]


def runtime_turns(role: str, turns: Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """The history as the hosted runtime sends it: an agent without a system prompt of its own
    runs under the runtime's preset for its role, whoever owns the project."""
    if turns and turns[0][0] == "system":
        return tuple(turns)
    return (("system", SYSTEM_PROMPTS[role]), *turns)


def request(
    project: Project,
    at_ms: int,
    turns: Sequence[tuple[str, str]],
    tools: Sequence[str],
    reply: tuple[str, int],
    rng: random.Random,
    trace: str = "",
    params: dict[str, Any] | None = None,
    model: str = "",
) -> Request:
    """One call as the client sends it. Tools, trace and the expected reply travel in `params`
    under private keys that `shape` moves to their own fields (the reply hint is never logged)."""
    client = project.client
    sent = dict(client.params if params is None else params)
    agent = client.user_agent
    if client.kind == "runtime":  # what the platform sets, the same for every hosted project
        agent = runtime_agent(at_ms)
        turns = runtime_turns(project.role, turns)
    if tools:
        sent["_tools"] = tuple(tools)
    else:
        sent.pop("tool_choice", None)
        sent.pop("parallel_tool_calls", None)
    if trace and client.traced:
        sent["_trace"] = trace
    sent["_reply"] = reply
    sent["_model"] = model or client.model
    return Request(
        actor=project.actor,
        account=project.account,
        at_ms=at_ms,
        turns=tuple(turns),
        params=sent,
        ip=rng.choice(client.ips),
        user_agent=agent,
        api_key=client.api_key,
    )


# --- glue: what tools return and what the agent says at the end of a turn ---------------------
SYSTEM_PROMPTS = {
    "coding": (
        "You are a coding agent working in the user's repository. Use the tools to inspect and "
        "change files; make one change at a time and report what you did."
    ),
    "research": (
        "You are a research agent with a browser. Navigate, read pages and cite what you found. "
        "Do not guess when a page can tell you."
    ),
    "workflow": (
        "You are an operations assistant. Call the provided functions to complete the request; "
        "ask for missing details instead of inventing them."
    ),
    "chat": "You are Loom, a helpful assistant. You remember what the user tells you.",
}
BROWSER_TOOLS = ("goto", "click", "type_text", "scroll", "read_page", "answer")
DONE = (
    "Done.",
    "All set.",
    "Finished: {names}.",
    "Completed {n} step(s): {names}.",
    "Ok, {names} ran.",
)
CHAT_REPLIES = (
    "Got it, I'll remember that.",
    "Thanks for telling me, noted.",
    "That sounds great. Anything else you'd like me to keep in mind?",
    "Understood.",
    "Here's what I can tell you.",
)


def tool_result(call: ToolCall, rng: random.Random) -> str:
    """A plausible tool reply: the runtime returns JSON with a status and an echo of the call."""
    status = "ok" if rng.random() > 0.04 else "error: timeout, retried"
    return orjson.dumps(
        {"status": status, "tool": call.name, "result": orjson.loads(call.arguments) or None},
    ).decode()


def call_message(calls: Sequence[ToolCall], run: str, step: int) -> tuple[str, str]:
    encoded = [
        [f"call_{digest(run, step, i, size=20)}", c.name, c.arguments] for i, c in enumerate(calls)
    ]
    return CALLS, orjson.dumps(encoded).decode()


def result_messages(
    calls: Sequence[ToolCall], run: str, step: int, rng: random.Random, results: Sequence[str] = ()
) -> list[tuple[str, str]]:
    out = []
    for i, call in enumerate(calls):
        text = results[i] if i < len(results) else tool_result(call, rng)
        out.append((RESULT, orjson.dumps([f"call_{digest(run, step, i, size=20)}", text]).decode()))
    return out


def browse_rounds(task: AgentTask, rng: random.Random) -> list[tuple[list[ToolCall], list[str]]]:
    """A browser agent's steps for a WebArena task: open the site, look, click, read."""
    site = task.topic.split("+")[0] or "site"
    words = re.findall(r"[A-Za-z0-9']{4,}", task.turns[0])
    rounds = [
        (
            [ToolCall("goto", orjson.dumps({"url": f"http://{site}.internal/"}).decode())],
            [f"[page] {site} home; {rng.randrange(30, 120)} links"],
        )
    ]
    for _ in range(rng.randrange(1, 5)):
        target = rng.choice(words) if words else "menu"
        action = rng.choice(("click", "type_text", "scroll"))
        arguments = {"element": target} if action != "type_text" else {"text": target}
        rounds.append(
            (
                [ToolCall(action, orjson.dumps(arguments).decode())],
                [f"[page] results for '{target}': {rng.randrange(1, 40)} items"],
            )
        )
    rounds.append(([ToolCall("read_page", "{}")], ["[page text] table with 12 rows"]))
    return rounds


def search_rounds(task: AgentTask, rng: random.Random) -> list[tuple[list[ToolCall], list[str]]]:
    rounds = []
    for question, answer, url in task.evidence[: rng.randrange(1, 4)]:
        query = ToolCall("search_engine_query", orjson.dumps({"keywords": question}).decode())
        hit = orjson.dumps([{"title": question, "href": url, "body": answer}]).decode()
        rounds.append(([query], [hit]))
        if rng.random() < 0.6:
            fetch = ToolCall("fetch_url_content", orjson.dumps({"url": url}).decode())
            rounds.append(([fetch], [f"{answer}. (page text truncated)"]))
    return rounds


def call_rounds(
    calls: Sequence[ToolCall], rng: random.Random, parallel: bool
) -> list[tuple[list[ToolCall], list[str]]]:
    """The published calls as the agent issues them: together when the client allows parallel
    calls and the calls are independent, otherwise one round each."""
    if not calls:
        return []
    if parallel and rng.random() < 0.7:
        return [(list(calls), [])]
    return [([c], []) for c in calls]


def agent_run(
    project: Project,
    task: AgentTask,
    start: int,
    rng: random.Random,
    label: str,
    think_s: tuple[float, float] = (15, 240),
    retry: float = 0.04,
) -> list[Request]:
    """One agent run on a task: every model call of the loop, each carrying the history so far."""
    run = digest(project.account, label, start, size=16)
    trace = digest(run, "trace", size=32)
    turns: list[tuple[str, str]] = []
    system = task.system or SYSTEM_PROMPTS[project.role]
    if project.client.kind != "script" or task.system:
        turns.append(("system", system))
    tools = task.tools
    if task.kind == "web":
        tools = BROWSER_TOOLS
    parallel = bool(project.client.params.get("parallel_tool_calls")) or project.role == "coding"
    out: list[Request] = []
    at = start
    for index, text in enumerate(task.turns):
        if index:
            at += int(rng.uniform(*think_s) * SECOND_MS)  # the person reads and types the next ask
        turns.append(("user", text))
        if task.kind == "web":
            rounds = browse_rounds(task, rng)
        elif task.kind == "search":
            rounds = search_rounds(task, rng)
        else:
            calls = task.calls[index] if index < len(task.calls) else ()
            rounds = call_rounds(calls, rng, parallel)
        step_names: list[str] = []
        for step, (calls, results) in enumerate(rounds):
            reply = ("tool_calls", len(calls))
            out.append(request(project, at, turns, tools, reply, rng, trace))
            if rng.random() < retry:  # a timeout: the runtime sends the same call again
                at += int(rng.uniform(8, 30) * SECOND_MS)
                out.append(request(project, at, turns, tools, reply, rng, trace))
            at += model_latency(rng, 40 * len(calls))
            turns.append(call_message(calls, run, index * 100 + step))
            turns += result_messages(calls, run, index * 100 + step, rng, results)
            at += tool_latency(rng, task.kind)
            step_names += [c.name for c in calls]
        out.append(request(project, at, turns, tools, ("stop", rng.randrange(30, 600)), rng, trace))
        at += model_latency(rng, 300)
        names = ", ".join(dict.fromkeys(step_names)) or "nothing to call"
        summary = rng.choice(DONE if step_names else CHAT_REPLIES)
        turns.append(("assistant", summary.format(names=names, n=len(step_names))))
    return out


def model_latency(rng: random.Random, tokens: int) -> int:
    return int((0.5 + tokens * rng.uniform(0.01, 0.03) + rng.expovariate(1.5)) * SECOND_MS)


def tool_latency(rng: random.Random, kind: str) -> int:
    scale = {"web": 3.0, "search": 1.5, "sessions": 0.2}.get(kind, 0.6)
    return int(rng.uniform(0.3, 1.5) * scale * SECOND_MS) + rng.randrange(0, 120)


# --- benign population ---------------------------------------------------------------------
ROLE_TASKS = {
    "coding": (("sessions", 0.6), ("functions", 0.4)),
    "research": (("web", 0.65), ("search", 0.35)),
    "workflow": (("live", 0.7), ("sessions", 0.3)),
    "chat": (("chat", 0.45), ("memory", 0.55)),
}
ROLES = (("coding", 0.3), ("research", 0.18), ("workflow", 0.24), ("chat", 0.28))


def draw_task(rng: random.Random, role: str) -> AgentTask:
    kinds, weights = zip(*ROLE_TASKS[role], strict=True)
    pool = sources.agent_tasks()[rng.choices(kinds, weights)[0]]
    return rng.choice(pool)


def work_start(rng: random.Random, project: Project, days: int, night: float = 0.05) -> int:
    """When a person (or their cron) starts work: weekdays in office hours, chat into evenings."""
    while True:
        day = rng.randrange(days - 1)  # the last local day ends past the world's end in Asia
        if weekday(START_MS, day) < 5 or rng.random() < 0.2:
            break
    hours = (8.5, 23.0) if project.role == "chat" else (8.0, 18.5)
    return day_moment(rng, START_MS, day, project.offset_h, hours, night)


def work_session(project: Project, start: int, rng: random.Random, label: str) -> list[Request]:
    """A sitting: a chat, or a few agent runs one after another."""
    out: list[Request] = []
    at = start
    for index in range(1 if project.role == "chat" else rng.choice((1, 1, 2, 3, 4))):
        run = agent_run(project, draw_task(rng, project.role), at, rng, f"{label}/{index}")
        out += run
        at = run[-1].at_ms + int(rng.uniform(1, 12) * MINUTE_MS)
    return out


def scheduled(project: Project, rng: random.Random, days: int, label: str) -> list[Request]:
    """A nightly job the project set up: the same local minute, a task from its own queue."""
    minute = rng.randrange(0, 180)
    out: list[Request] = []
    for day in range(days):
        if rng.random() < 0.85:
            at = START_MS + day * DAY_MS + int((1.0 - project.offset_h) * HOUR_MS)
            at += minute * MINUTE_MS + rng.randrange(0, 20 * SECOND_MS)
            out += agent_run(project, draw_task(rng, project.role), at, rng, f"{label}/{day}")
    return out


def population(
    config: Config, seed: int, label: str, projects: int, sessions: int
) -> list[Request]:
    rng = rng_for(NAME, seed, label)
    roles, weights = zip(*ROLES, strict=True)
    members = [
        make_project(rng, seed, label, i, "benign", rng.choices(roles, weights)[0])
        for i in range(projects)
    ]
    events: list[Request] = []
    for index in heavy_tail(rng, projects, sessions, exponent=1.0):
        project = members[index]
        start = work_start(rng, project, config.days)
        events += work_session(project, start, rng, f"{label}/{len(events)}")
    for project in members[: max(2, projects // 25)]:
        if project.role != "chat":
            events += scheduled(project, rng, config.days, label)
    events += heavy_honest(config, seed, label)
    return events


def heavy_honest(config: Config, seed: int, label: str) -> list[Request]:
    """Three very heavy honest projects: a CI bot, a crawler farm, an operations queue."""
    rng = rng_for(NAME, seed, label, "heavy")
    events: list[Request] = []
    ci = make_project(rng, seed, f"{label}-heavy", 0, "benign", "coding", "runtime")
    for n in range(config.heavy_runs):  # a pull request opened somewhere in a global team
        start = work_start(rng, ci, config.days, night=0.25)
        events += agent_run(ci, draw_task(rng, "coding"), start, rng, f"ci/{n}", (2, 6))
    farm = make_project(rng, seed, f"{label}-heavy", 1, "benign", "research", "framework")
    for n in range(config.heavy_runs):  # batches, several runs at once, any hour
        start = START_MS + rng.randrange(config.days * DAY_MS - HOUR_MS)
        events += agent_run(farm, draw_task(rng, "research"), start, rng, f"farm/{n}")
    queue = make_project(rng, seed, f"{label}-heavy", 2, "benign", "workflow", "runtime")
    at = START_MS + rng.randrange(HOUR_MS)
    for n in range(config.heavy_runs):  # tickets arrive as a Poisson stream
        at += int(rng.expovariate(config.heavy_runs / (config.days * DAY_MS - DAY_MS)))
        events += agent_run(queue, draw_task(rng, "workflow"), at, rng, f"queue/{n}")
    return events


# --- hard negatives ------------------------------------------------------------------------
def eval_harness(config: Config, seed: int, label: str) -> list[Request]:
    """A benchmark team: every function-calling task once per model, on the weekly eval night."""
    rng = rng_for(NAME, seed, label, "harness")
    project = make_project(rng, seed, label, 900, "power:eval-harness", "workflow", "script")
    tasks = sources.agent_tasks()
    suite = [*tasks["functions"], *tasks["live"]][: config.harness_items]
    params = {"temperature": 0, "seed": 1234, "max_tokens": 1024, "tool_choice": "auto"}
    events = []
    for week in range(config.days // 7):
        at = START_MS + (week * 7 + 2) * DAY_MS + int(21 * HOUR_MS) + rng.randrange(HOUR_MS)
        for model in (LARGE, MINI, CODER):
            for task in suite:
                at += rng.randrange(200, 1400)  # eight workers share a rate limit
                turns = ([("system", task.system)] if task.system else []) + [
                    ("user", task.turns[0])
                ]
                reply = ("tool_calls", max(1, len(task.calls[0]) if task.calls else 1))
                events.append(
                    request(project, at, turns, task.tools, reply, rng, params=params, model=model)
                )
    return events


def golden_regression(config: Config, seed: int, label: str) -> list[Request]:
    """A coding-agent vendor replays the same sessions every night before it ships."""
    rng = rng_for(NAME, seed, label, "golden")
    project = make_project(rng, seed, label, 901, "power:golden-regression", "coding", "runtime")
    golden = rng_for(NAME, "golden-set").sample(
        sources.agent_tasks()["sessions"], config.golden_sessions
    )
    events: list[Request] = []
    for day in range(config.days):
        at = START_MS + day * DAY_MS + int(1.5 * HOUR_MS)
        for n, task in enumerate(golden):
            run = agent_run(
                project, task, at, rng_for(NAME, "golden", n), f"golden/{day}/{n}", (1, 2), 0
            )
            events += run
            at = run[-1].at_ms + rng.randrange(500, 3000)
    return events


def router_labelling(config: Config, seed: int, label: str) -> list[Request]:
    """A data team labels real user requests with the tool that should handle them, keeping
    the logprobs as confidence (the terms allow labelling for one's own router)."""
    rng = rng_for(NAME, seed, label, "labels")
    project = make_project(rng, seed, label, 902, "power:router-labelling", "workflow", "script")
    tasks = sources.agent_tasks()
    queue = [*tasks["live"], *tasks["chat"]]
    rng.shuffle(queue)
    queue = queue[: config.harness_items * 2]
    params = {"temperature": 0, "max_tokens": 5, "logprobs": True, "top_logprobs": 5}
    events = []
    per_day = max(1, len(queue) // 15)
    for start in range(0, len(queue), per_day):
        day = (start // per_day) * 2 % config.days
        at = day_moment(rng, START_MS, day, -5.0, (10, 16), 0)
        for task in queue[start : start + per_day]:
            tools = ", ".join(task.tools) or "none"
            text = (
                f"Request: {task.turns[-1]}\nAvailable tools: {tools}\n"
                "Label: the one tool to call, or none."
            )
            at += rng.randrange(300, 900)
            events.append(
                request(project, at, [("user", text)], (), ("stop", 3), rng, params=params)
            )
    return events


def hard_negatives(config: Config, seed: int, label: str) -> list[Request]:
    return [
        *eval_harness(config, seed, label),
        *golden_regression(config, seed, label),
        *router_labelling(config, seed, label),
    ]


# --- attacks: single accounts --------------------------------------------------------------
REPLICA_KINDS = ("runtime", "framework", "script")


@dataclass(frozen=True)
class Attacker:
    project: Project
    rng: random.Random
    volume: int
    days: int
    replica: int


def harvest(
    attacker: Attacker,
    at: int,
    text: str,
    tools: Sequence[str] = (),
    system: str = "",
    reply: tuple[str, int] = ("stop", 400),
    params: dict[str, Any] | None = None,
) -> Request:
    turns = ([("system", system)] if system else []) + [("user", text)]
    trace = digest(attacker.project.account, at, "trace", size=32)  # a one-step run
    return request(attacker.project, at, turns, tools, reply, attacker.rng, trace, params)


def paced(
    attacker: Attacker, count: int, per_hour: float, hours: tuple[float, float], first_day: int = 0
) -> list[int]:
    """Send times for `count` requests: working blocks in the attacker's local hours, a steady
    rate inside a block (scripts wait a fixed interval plus jitter)."""
    rng, times = attacker.rng, []
    day = first_day
    while len(times) < count:
        if weekday(START_MS, day % attacker.days) < 5 or rng.random() < 0.3:
            at = day_moment(rng, START_MS, day % attacker.days, attacker.project.offset_h, hours, 0)
            for _ in range(int(per_hour * rng.uniform(1.5, 4))):
                at += int(3600_000 / per_hour * rng.uniform(0.7, 1.3))
                times.append(at)
        day += 1
    return sorted(times[:count])


def dataset_replay(attacker: Attacker) -> list[Request]:
    """Replays a public set in its file order, asking only for the model's first move."""
    tasks = sources.agent_tasks()
    source = (
        [*tasks["live"], *tasks["functions"]],
        [*tasks["functions"], *tasks["sessions"]],
        [*tasks["web"], *tasks["search"]],
    )[attacker.replica % 3][: attacker.volume]
    times = paced(attacker, len(source), (240, 90, 120)[attacker.replica % 3], (7, 22))
    events = []
    for at, task in zip(times, source, strict=False):
        tools = BROWSER_TOOLS if task.kind == "web" else task.tools
        system = task.system or (
            SYSTEM_PROMPTS[attacker.project.role] if attacker.replica != 2 else ""
        )
        events.append(harvest(attacker, at, task.turns[0], tools, system, ("tool_calls", 1)))
    return events


ENUMERATIONS = (
    "Write {k} realistic user requests that would be answered by calling `{slot}`, and give "
    "the exact JSON arguments for each.",
    "As a browser agent on {topic}, list every click and field you would use to: {slot}",
    "Describe what the `{slot}` tool of the {topic} API does, then show {k} example calls "
    "with arguments.",
)


def enumeration_slots(replica: int) -> list[tuple[str, str]]:
    tasks = sources.agent_tasks()
    if replica == 1:
        return [(t.turns[0], t.topic) for t in tasks["web"]]
    if replica == 2:
        return [(tool, t.topic) for t in tasks["sessions"] for tool in t.tools]
    return [(tool, t.topic) for t in (*tasks["functions"], *tasks["live"]) for tool in t.tools]


def templated_enumeration(attacker: Attacker) -> list[Request]:
    """One fixed template, its slot enumerated over a catalogue the public sets publish."""
    template = ENUMERATIONS[attacker.replica % 3]
    slots = list(dict.fromkeys(enumeration_slots(attacker.replica % 3)))[: attacker.volume]
    times = paced(attacker, len(slots), 150, (9, 20))
    return [
        harvest(attacker, at, template.format(k=3 + i % 3, slot=slot, topic=topic))
        for i, (at, (slot, topic)) in enumerate(zip(times, slots, strict=False))
    ]


REASONING = (
    (
        "",
        "{task}\n\nBefore you call any tool, think step by step and write out your full "
        "reasoning inside <thinking> tags, including the options you rejected.",
    ),
    ("Always explain your complete chain of thought in detail before acting, then act.", "{task}"),
    ("", "{task}\n\nShow all intermediate steps and the reason for every argument you choose."),
)


def reasoning_elicitation(attacker: Attacker) -> list[Request]:
    """Real tasks wrapped in requests for the whole reasoning trace, with room to write it."""
    tasks = sources.agent_tasks()
    pool = [*tasks["search"], *tasks["live"], *tasks["sessions"], *tasks["functions"]]
    attacker.rng.shuffle(pool)
    system, wording = REASONING[attacker.replica % 3]
    params = dict(attacker.project.client.params)
    if attacker.replica != 0:  # the hosted replica keeps the runtime's settings
        params["max_tokens"] = 16384
    times = paced(attacker, attacker.volume, 60, (8, 19))
    return [
        harvest(
            attacker,
            at,
            wording.format(task=task.turns[0]),
            task.tools,
            system,
            ("stop", 2000),
            params,
        )
        for at, task in zip(times, pool, strict=False)
    ]


def shuffled_sweep(rng: random.Random) -> list[AgentTask]:
    """The single-call task space (user-contributed, written, web search) in a random order: what
    a patient attacker walks through one task at a time."""
    tasks = sources.agent_tasks()
    sweep = [*tasks["live"], *tasks["functions"], *tasks["search"]]
    rng.shuffle(sweep)
    return sweep


def low_and_slow(attacker: Attacker) -> list[Request]:
    """Honest-looking runs every working day for four weeks, each on a new task of a sweep."""
    rng = attacker.rng
    sweep = shuffled_sweep(rng)
    events: list[Request] = []
    cursor = 0
    per_day = max(2, attacker.volume // 120)
    for day in range(attacker.days):
        if weekday(START_MS, day) >= 5 and rng.random() < 0.8:
            continue
        for _ in range(rng.randrange(max(1, per_day // 2), per_day + 1)):
            start = day_moment(rng, START_MS, day, attacker.project.offset_h, (9, 18), 0.02)
            task = sweep[cursor % len(sweep)]
            cursor += 1
            if attacker.replica == 2:
                events.append(harvest(attacker, start, task.turns[0], task.tools))
            else:
                events += agent_run(attacker.project, task, start, rng, f"slow/{cursor}")
    return events


def mutate(text: str, rng: random.Random) -> str:
    """What a generated 'new task' looks like: a seed with its numbers and names changed."""
    text = re.sub(
        r"\d+", lambda m: str(int(m.group()) * rng.randrange(2, 9) + rng.randrange(10)), text
    )
    words = text.split()
    if len(words) > 6:
        i = rng.randrange(len(words))
        words[i] = rng.choice(("new", "another", "my second", "the backup", "a different"))
    return " ".join(words)


def self_instruct(attacker: Attacker) -> list[Request]:
    """Generation rounds that ask for new tasks from seeds, then the new tasks answered; later
    rounds seed from earlier 'generated' tasks."""
    rng = attacker.rng
    tasks = sources.agent_tasks()
    seeds = [t.turns[0] for t in (*tasks["live"], *tasks["sessions"])]
    rng.shuffle(seeds)
    pool = seeds[:40]
    events: list[Request] = []
    times = paced(attacker, attacker.volume, 120, (10, 23))
    i = 0
    while i < len(times):
        shown = rng.sample(pool, 3)
        listed = "\n".join(f"{n + 1}. {s}" for n, s in enumerate(shown))
        ask = (
            f"Here are tasks people give an AI agent:\n{listed}\n\nWrite 8 new, diverse tasks "
            "in the same style, one per line, for other apps and tools."
        )
        events.append(
            harvest(
                attacker,
                times[i],
                ask,
                reply=("stop", 500),
                params={**attacker.project.client.params, "temperature": 1.0},
            )
        )
        i += 1
        for new in (mutate(rng.choice(shown + seeds[40:]), rng) for _ in range(6)):
            if i >= len(times):
                break
            events.append(harvest(attacker, times[i], new, reply=("stop", 300)))
            pool.append(new)
            i += 1
    return events


def active_learning(attacker: Attacker) -> list[Request]:
    """Tiny completions with logprobs over many items; the uncertain ones asked again."""
    rng = attacker.rng
    tasks = sources.agent_tasks()
    items = [*tasks["live"], *tasks["chat"], *tasks["functions"]]
    rng.shuffle(items)
    params = {
        "temperature": 0,
        "max_tokens": (4, 12, 16)[attacker.replica % 3],
        "logprobs": True,
        "top_logprobs": (5, 10, 20)[attacker.replica % 3],
    }
    if attacker.replica == 0:
        params["tool_choice"] = "required"
    plan: list[tuple[AgentTask, int]] = []
    for task in items[: int(attacker.volume * 0.7)]:
        plan.append((task, 0))
        if rng.random() < 0.3:  # low margin between the top two: ask again, reworded
            plan += [(task, k) for k in range(1, rng.randrange(2, 4))]
    times = paced(attacker, len(plan), 300, (0, 24))
    events = []
    for at, (task, attempt) in zip(times, plan, strict=False):
        tools = list(task.tools)
        rng.shuffle(tools)
        if attacker.replica == 0:
            events.append(
                harvest(attacker, at, task.turns[0], tools, "", ("tool_calls", 1), params)
            )
            continue
        text = f"Request: {task.turns[0]}\nTools: {', '.join(tools) or 'none'}\n" + (
            "Which tool? Name only." if attempt == 0 else f"Pick one tool (attempt {attempt})."
        )
        events.append(harvest(attacker, at, text, reply=("stop", 3), params=params))
    return events


PARAPHRASE_OPENERS = (
    "hey, could you",
    "quick one:",
    "can you help me",
    "I need to",
    "please",
    "so,",
)
SWAPS = (
    ("retrieve", "get"),
    ("Find", "Look up"),
    ("Can you", "Could you"),
    ("provide", "give me"),
    ("Calculate", "Work out"),
    ("list", "show"),
    ("I want to", "I'd like to"),
)


def paraphrase(text: str, rng: random.Random) -> str:
    for old, new in SWAPS:
        if rng.random() < 0.7:
            text = text.replace(old, new)
    sentences = re.split(r"(?<=[.?!])\s+", text.strip())
    if len(sentences) > 1 and rng.random() < 0.5:
        sentences = sentences[1:] + sentences[:1]
    body = " ".join(sentences)
    return f"{rng.choice(PARAPHRASE_OPENERS)} {body[0].lower()}{body[1:]}" if body else body


def paraphrase_blending(attacker: Attacker) -> list[Request]:
    """Ordinary sittings for the project's role, with paraphrased harvest tasks slipped in as
    extra runs or extra turns of a chat."""
    rng = attacker.rng
    project = attacker.project
    targets = shuffled_sweep(rng)
    events: list[Request] = []
    cursor = 0
    while len(events) < attacker.volume:
        start = work_start(rng, project, attacker.days)
        events += work_session(project, start, rng, f"blend/{len(events)}")
        at = events[-1].at_ms
        for _ in range(rng.randrange(1, 4)):
            task = targets[cursor % len(targets)]
            cursor += 1
            at += int(rng.uniform(0.5, 6) * MINUTE_MS)
            blended = AgentTask(
                task.kind,
                (paraphrase(task.turns[0], rng),),
                task.tools,
                task.calls,
                "",
                task.topic,
                evidence=task.evidence,
            )
            run = agent_run(project, blended, at, rng, f"blend/{len(events)}/{cursor}")
            events += run
            at = run[-1].at_ms
    return events


SINGLE: dict[str, tuple[Callable[[Attacker], list[Request]], tuple[str, ...]]] = {
    "dataset_replay": (dataset_replay, ("workflow", "coding", "research")),
    "templated_enumeration": (templated_enumeration, ("workflow", "research", "coding")),
    "reasoning_elicitation": (reasoning_elicitation, ("workflow", "research", "coding")),
    "low_and_slow": (low_and_slow, ("workflow", "research", "workflow")),
    "self_instruct": (self_instruct, ("coding", "workflow", "workflow")),
    "active_learning": (active_learning, ("workflow", "workflow", "workflow")),
    "paraphrase_blending": (paraphrase_blending, ("chat", "workflow", "research")),
}


def make_attacker(config: Config, strategy: str, replica: int, role: str) -> Attacker:
    rng = rng_for(NAME, config.seed, "attack", strategy, replica)
    kind = "console" if role == "chat" else REPLICA_KINDS[replica % 3]
    project = make_project(
        rng, config.seed, f"attack/{strategy}", replica, f"attack:{strategy}", role, kind
    )
    return Attacker(project, rng, config.attack_volume, config.days - 1, replica)


# --- attack: the coordinated campaign --------------------------------------------------------
CAMPAIGN_OPENERS = (
    "",
    "Task: ",
    "New job -> ",
    "Please handle this: ",
    "User request: ",
    "[ticket] ",
    "Goal: ",
    "Instruction: ",
)
CAMPAIGN_CLOSERS = (
    "",
    " Call the right function.",
    " Respond with the tool call only.",
    " Use the tools if needed.",
    " Be precise with arguments.",
    " Return JSON.",
)
CAMPAIGN_HOSTS = ("146.190.12", "159.223.40", "64.227.88")


def campaign_shards(accounts: int) -> list[list[AgentTask]]:
    """The task space ordered by topic and cut into one contiguous shard per account, so each
    account covers its own tools and sites and no two ask the same thing."""
    tasks = sources.agent_tasks()
    space = sorted(
        (*tasks["functions"], *tasks["live"], *tasks["sessions"], *tasks["web"]),
        key=lambda t: (t.topic, t.tools[:1], t.turns[0]),
    )
    size = -(-len(space) // accounts)
    return [space[i * size : (i + 1) * size] for i in range(accounts)]


def multi_account_campaign(config: Config) -> tuple[list[Request], list[str]]:
    rng = rng_for(NAME, config.seed, "campaign")
    shards = campaign_shards(config.campaign_accounts)
    share = max(20, config.attack_volume // 4)
    events: list[Request] = []
    members = []
    for index in range(config.campaign_accounts):
        hosted = index % 5 in (1, 3)  # sixteen projects run inside the hosted runtime
        role = rng.choice(("workflow", "coding", "research"))
        project = make_project(
            rng,
            config.seed,
            "campaign",
            index,
            f"attack:{CAMPAIGN}",
            role,
            "runtime" if hosted else "framework",
        )
        if not hosted:  # rented VMs in three hosting blocks
            host = rng.choice(CAMPAIGN_HOSTS)
            ips = tuple(f"{host}.{rng.randrange(2, 254)}" for _ in range(2))
            project = Project(
                project.account,
                project.actor,
                rng.choice((-5.0, 1.0, 8.0)),
                replace(project.client, ips=ips),
                role,
            )
        members.append(project.account)
        opener, closer = rng.choice(CAMPAIGN_OPENERS), rng.choice(CAMPAIGN_CLOSERS)
        attacker = Attacker(
            project, rng_for(NAME, config.seed, "campaign", index), share, config.days - 1, index
        )
        first = rng.randrange(1, 10)
        shard = shards[index][:share]
        times = paced(attacker, len(shard), rng.uniform(30, 90), (8, 20), first)
        for n, (at, task) in enumerate(zip(times, shard, strict=False)):
            if n % 4 == 3:  # cover: an honest-looking run of the project's role
                events += agent_run(
                    project, draw_task(attacker.rng, role), at, attacker.rng, f"cover/{n}"
                )
                continue
            text = f"{opener}{task.turns[0]}{closer}"
            tools = BROWSER_TOOLS if task.kind == "web" else task.tools
            events.append(
                harvest(attacker, at, text, tools, SYSTEM_PROMPTS[role], ("tool_calls", 1))
            )
    return events, members


# --- the log ---------------------------------------------------------------------------------
def chat_message(role: str, text: str) -> dict[str, Any]:
    if role == CALLS:
        calls = [
            {"id": cid, "type": "function", "function": {"name": name, "arguments": arguments}}
            for cid, name, arguments in orjson.loads(text)
        ]
        return {"role": "assistant", "content": None, "tool_calls": calls}
    if role == RESULT:
        cid, content = orjson.loads(text)
        return {"role": "tool", "tool_call_id": cid, "content": content}
    return {"role": role, "content": text}


def shape(request_: Request, number: int) -> dict:
    """The gateway's span for one chat-completions call (see the module docstring)."""
    params = dict(request_.params)
    tools = params.pop("_tools", ())
    trace = params.pop("_trace", "")
    kind, size = params.pop("_reply")
    model = params.pop("_model")
    messages = [chat_message(role, text) for role, text in request_.turns]
    rng = rng_for(request_.account, request_.at_ms, number)
    chars = sum(len(role) + len(text) for role, text in request_.turns)
    completion = (
        18 + 22 * size + rng.randrange(12)
        if kind == "tool_calls"
        else max(1, int(size * rng.uniform(0.5, 1.4)))
    )
    finish = "tool_calls" if kind == "tool_calls" else "stop"
    limit = params.get("max_tokens")
    if isinstance(limit, int) and completion >= limit:
        completion, finish = limit, "length"
    span = digest(request_.account, number, "span", size=16)
    record: dict[str, Any] = {
        "request_id": "chatcmpl-" + digest(request_.account, request_.at_ms, number, size=24),
        "account_id": request_.account,
        "timestamp": request_.at_ms,
        "endpoint": "/v1/chat/completions",
        "model": model,
        "messages": messages,
    }
    if tools:
        record["tools"] = list(tools)  # the gateway keeps names, not schemas
    record |= {
        "params": params,
        "prompt_tokens": chars // 4 + 40 * len(tools) + 8 * len(messages),
        "completion_tokens": completion,
        "finish_reason": finish,
        "client": {
            "ip": request_.ip,
            "user_agent": request_.user_agent,
            "api_key_id": request_.api_key,
        },
    }
    if trace:
        record["trace"] = {"trace_id": trace, "span_id": span}
    return record


def make(config: Config) -> Traffic:
    seed = config.seed
    events = population(config, seed, "projects", config.projects, config.runs)
    events += hard_negatives(config, seed, "power")
    for strategy, (attack, roles) in SINGLE.items():
        for replica in range(config.attackers_per_strategy):
            events += attack(make_attacker(config, strategy, replica, roles[replica % len(roles)]))
    campaign, members = multi_account_campaign(config)
    events += campaign
    calibration_seed = seed + 1000
    calibration = population(
        config,
        calibration_seed,
        "calibration",
        config.calibration_projects,
        config.calibration_runs,
    )
    calibration += hard_negatives(config, calibration_seed, "calibration-power")
    return Traffic(events, calibration, {f"{CAMPAIGN}-{NAME}-{seed}": sorted(members)})


GENERATOR = Generator(NAME, VERSION, __file__, START_MS, SMALL, FULL, make, shape)


WORLD = World(
    name=NAME,
    population=(
        "projects on an agent platform: hosted and self-hosted coding, research/browser and "
        "workflow agents making many tool-loop calls per run, console users with memory, three "
        "heavy honest projects; hard negatives: an eval harness, a nightly golden-set replay, "
        "a router-labelling job"
    ),
    prompt_sources=(
        "Berkeley Function Calling Leaderboard data (bfcl-eval) and WebArena Verified tasks "
        "(webarena-verified)"
    ),
    log_shape=(
        "chat-completions span: full history with assistant tool_calls and tool results, tools "
        "by name, finish_reason, optional trace, client IP/user agent/key, integer epoch ms"
    ),
    build=GENERATOR.build,
)
