"""Traffic actors: real prompts, seeded, and each strategy shaped the way its name says."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from core.events import Event, parse_event
from students.actors import (
    DAY_MS,
    STRATEGIES,
    AttackConfig,
    PlannedRequest,
    benchmark_runner,
    benign_users,
    researcher,
)
from students.driver import drive
from students.gateway import Gateway, JsonlEventLog
from students.prompts import attack_pool, benign_conversations, humaneval_prompts
from tests.conftest import TEACHER_DIR


def span_days(plans: list[PlannedRequest]) -> float:
    times = [p.timestamp_ms for p in plans]
    return (max(times) - min(times)) / DAY_MS


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_strategies_are_seeded_and_use_real_prompts(name: str) -> None:
    first = STRATEGIES[name](AttackConfig(budget=60, seed=4))
    again = STRATEGIES[name](AttackConfig(budget=60, seed=4))
    other = STRATEGIES[name](AttackConfig(budget=60, seed=5))
    assert first == again and first != other
    assert all(p.actor == f"attack:{name}" for p in first)
    harvest = [p for p in first if p.temperature == 0.0 or name == "low_and_slow"]
    assert len(harvest) >= 60


def test_attack_and_benign_prompts_never_overlap() -> None:
    benign = {p for c in benign_conversations() for p in c.user_prompts}
    assert not benign & set(attack_pool())


def test_campaign_spreads_a_harvest_thinly_over_rotating_ips() -> None:
    plans = STRATEGIES["multi_account_campaign"](
        AttackConfig(budget=400, seed=1, extra={"accounts": 40})
    )
    harvest_per_account = Counter(p.account_id for p in plans if p.temperature == 0.0)
    assert set(harvest_per_account.values()) == {10}  # 400 split over 40 accounts
    assert len(plans) > 400  # plus benign-looking cover traffic
    assert len({p.client_ip for p in plans}) > 100
    assert {p.client_ip.rsplit(".", 1)[0] for p in plans} == {"203.0.114"}


def test_low_and_slow_spans_weeks_and_replay_is_a_burst() -> None:
    slow = STRATEGIES["low_and_slow"](AttackConfig(budget=100, seed=2, extra={"weeks": 4}))
    assert (
        span_days(slow) > 20 and max(Counter(p.timestamp_ms // DAY_MS for p in slow).values()) < 15
    )
    replay = STRATEGIES["dataset_replay"](AttackConfig(budget=100, seed=2))
    assert span_days(replay) < 0.01


def test_enumeration_crosses_templates_with_data_topics() -> None:
    plans = STRATEGIES["templated_enumeration"](AttackConfig(budget=60, seed=0))
    assert len({p.prompt for p in plans}) == 60
    assert len({p.prompt.split()[0] for p in plans}) >= 4


def test_benign_users_and_power_users() -> None:
    users = benign_users(accounts=30, sessions=120, days=7, seed=1)
    follow_ups = [p for p in users if len(p.messages) > 1]
    assert follow_ups and all(p.messages[-1][0] == "user" for p in users)
    assert len({p.account_id for p in users}) > 10
    hours = Counter((p.timestamp_ms // 3_600_000) % 24 for p in users)
    assert sum(hours[h] for h in range(12, 20)) > sum(hours[h] for h in range(0, 5))  # UTC-ish
    bench = benchmark_runner(runs=1, days=3, seed=0)
    assert len(bench) == len(humaneval_prompts()) == 164 and {p.n for p in bench} == {5}
    assert {p.logprobs for p in researcher(10, 3, 0)} == {True}


@pytest.mark.models
def test_driver_sends_plans_through_the_gateway(tmp_path: Path) -> None:
    from students.teacher import Teacher

    plans = [
        PlannedRequest(
            "attack:x",
            "acct-a",
            1_795_000_000_000 + i,
            (("user", prompt),),
            temperature=0.0,
            max_tokens=6,
            client_ip="203.0.113.5",
        )
        for i, prompt in enumerate(attack_pool()[:5])
    ]
    teacher = Teacher(TEACHER_DIR)
    teacher.cache = type(teacher.cache)(tmp_path / "responses.sqlite")
    log_path = tmp_path / "log.jsonl"
    exchanges = drive(Gateway(teacher, JsonlEventLog(log_path)), list(reversed(plans)))
    assert [plan for plan, _ in exchanges] == plans  # time order
    events = [parse_event(line, "file") for line in log_path.read_bytes().splitlines()]
    assert all(isinstance(e, Event) for e in events) and len(events) == 5
    assert [e.response for e in events] == [
        r["choices"][0]["message"]["content"] for _, r in exchanges
    ]
