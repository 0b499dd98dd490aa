"""The detection benchmark's scenario: complete ground truth, a thin campaign, and hard negatives
that have the properties that make them hard."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import orjson
import pytest

from bench.scenario import CAMPAIGN, SINGLE_ACCOUNT, SMALL, Scenario, build
from core.events import Event, parse_event
from students.actors import HOUR_MS, PlannedRequest, request_record
from students.driver import drive
from students.gateway import Gateway
from students.scenario import CALIBRATION_POWER_SEED, hard_negative_plans
from students.teacher import Completion


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Scenario:
    return build(SMALL, cache_dir=tmp_path_factory.mktemp("scenario"), log=lambda _: None)


@pytest.fixture(scope="module")
def requests(scenario: Scenario) -> dict[str, list[dict]]:
    """The evaluation log's requests, by account, in log order."""
    by_account: dict[str, list[dict]] = defaultdict(list)
    for line in scenario.events_path.read_bytes().splitlines():
        record = orjson.loads(line)
        by_account[record["account_id"]].append(record)
    return by_account


def test_log_is_valid_time_sorted_and_fully_labelled(scenario: Scenario) -> None:
    lines = scenario.events_path.read_bytes().splitlines()
    events = [parse_event(line, "test") for line in lines]
    assert all(isinstance(e, Event) for e in events)
    times = [e.timestamp_ms for e in events]
    assert times == sorted(times)
    assert len({e.request_id for e in events}) == len(events)
    assert {e.account_id for e in events} == set(scenario.actors)
    expected = {f"attack:{name}" for name in (*SINGLE_ACCOUNT, CAMPAIGN)}
    assert expected | {"benign", "power:benchmark", "power:researcher", "power:writer"} == set(
        scenario.actors.values()
    )
    assert len(scenario.benign) > 80
    calibration = {orjson.loads(line)["account_id"] for line in scenario.calibration_path.open()}
    assert len(calibration) > 50 and not calibration & set(scenario.actors)
    # like a provider's history (and every other world's), it holds power users of its own
    own_power = hard_negative_plans(scenario.config, CALIBRATION_POWER_SEED)
    assert {plan.account_id for plan in own_power} <= calibration


def test_campaign_is_forty_thin_accounts_half_cover_traffic(
    scenario: Scenario, requests: dict[str, list[dict]]
) -> None:
    (members,) = scenario.campaigns.values()
    assert len(members) == 40
    for account in members:
        sent = requests[account]
        harvest = sum(r["params"]["temperature"] == 0.0 for r in sent)
        assert len(sent) <= 80 and 0.4 <= 1 - harvest / len(sent) <= 0.6


def test_hard_negatives_have_their_defining_properties(
    scenario: Scenario, requests: dict[str, list[dict]]
) -> None:
    def only(actor: str) -> list[dict]:
        (account,) = scenario.accounts(lambda a: a == actor)
        return requests[account]

    bench = only("power:benchmark")
    assert len(bench) == 300 and bench[-1]["timestamp"] - bench[0]["timestamp"] <= HOUR_MS
    questions = only("power:researcher")
    prompts = [r["messages"][-1]["content"] for r in questions]
    assert len(set(prompts)) == 200 and all(p.endswith("?") for p in prompts)
    assert len({r["timestamp"] // (24 * HOUR_MS) for r in questions}) >= 7
    writer = only("power:writer")
    hours = {r["timestamp"] // HOUR_MS % 24 for r in writer}
    assert len(writer) >= 300 and hours <= {23, 0, 1, 2, 3, 4, 5, 6}
    assert all(r["params"]["temperature"] >= 0.7 and r["params"]["n"] > 1 for r in writer)


def test_build_is_cached_by_parameters(scenario: Scenario, tmp_path: Path) -> None:
    again = build(SMALL, cache_dir=scenario.events_path.parent, log=lambda _: None)
    assert again.events_path == scenario.events_path and again.actors == scenario.actors
    assert SMALL.key != type(SMALL)(**{**SMALL.__dict__, "seed": 1}).key


class _EchoTeacher:
    def complete(self, conversations, settings) -> list[list[Completion]]:
        return [[Completion("ok", "stop", 3, 1)] * settings.n for _ in conversations]


class _ListLog:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def write(self, event: dict) -> None:
        self.events.append(event)

    def close(self) -> None:
        pass


def test_written_records_have_the_gateway_logs_shape() -> None:
    """A detector must not tell a written request from a gateway-logged one by its fields."""
    plan = PlannedRequest(
        "attack:x",
        "acct",
        1_795_000_000_000,
        (("user", "hi"), ("assistant", "hello"), ("user", "more")),
        temperature=0.0,
        n=2,
        logprobs=True,
        top_logprobs=5,
        client_ip="203.0.113.5",
        user_agent="curl/8",
    )
    log = _ListLog()
    drive(Gateway(_EchoTeacher(), log), [plan])
    (logged,) = log.events
    answer_only = {"response", "prompt_tokens", "completion_tokens"}
    expected = {k: v for k, v in logged.items() if k not in answer_only}
    assert request_record(plan, logged["request_id"]) == expected
    assert isinstance(parse_event(orjson.dumps(expected), "t"), Event)
