"""Agent tool loops: the requests that feed a tool's results back are steps of one prompt, not new
prompts, for the signals, the calibration and the linker; a harvester cannot hide new requests
that way."""

from __future__ import annotations

import orjson
import pytest

from core.events import Event, parse_event
from detectors.fusion import ExtractionDetector

START_MS = 1_790_000_000_000
MINUTE_MS = 60_000


def request(account: str, number: int, messages: list[tuple[str, str | None]]) -> Event:
    record = {
        "request_id": f"{account}-{number}",
        "account_id": account,
        "timestamp": START_MS + number * MINUTE_MS,
        "messages": [{"role": role, "content": text} for role, text in messages],
    }
    parsed = parse_event(orjson.dumps(record), "test")
    assert isinstance(parsed, Event)
    return parsed


def agent_runs(account: str, tasks: int, steps: int) -> list[Event]:
    """Each task: its prompt, then `steps` requests that append the call and the tool's result."""
    events: list[Event] = []
    for task in range(tasks):
        history: list[tuple[str, str | None]] = [
            ("system", "You are a coding agent."),
            ("user", f"Task {task}: find the failing test in module {task * 7} and fix it."),
        ]
        events.append(request(account, len(events), history))
        for step in range(steps):
            history = [*history, ("assistant", None), ("tool", f"output {task}.{step}")]
            events.append(request(account, len(events), history))
    return events


def honest_history() -> list[Event]:
    return [event for user in range(30) for event in agent_runs(f"user-{user}", 6, 2)]


@pytest.fixture(scope="module")
def detector() -> ExtractionDetector:
    return ExtractionDetector(tiered=False).fit(honest_history())


def test_an_agents_tool_loop_steps_are_folded_into_their_prompt(detector) -> None:
    events = agent_runs("agent", 10, 2)
    assessment = detector.update_batch({"agent": events})["agent"]
    window = detector.accounts["agent"]
    assert len(events) == 30 and window.seen == 10  # the ten prompts, not their 20 steps
    assert [f.prompt for f in window.features] == [e.prompt_text for e in events[::3]]
    assert assessment.requests_at_label is None or assessment.requests_at_label <= 30


def test_invented_tool_results_fed_to_one_prompt_count_after_the_first(detector) -> None:
    """A history is continued once: sibling continuations of one prompt are requests."""
    prompt = [("user", "Summarise the tool's output in one paragraph.")]
    events = [request("harvest", 0, prompt)] + [
        request("harvest", i, [*prompt, ("assistant", None), ("tool", f"Document {i} ...")])
        for i in range(1, 11)
    ]
    detector.update_batch({"harvest": events})
    assert detector.accounts["harvest"].seen == 10  # the prompt and 9 of its 10 "steps"


def test_chat_follow_ups_are_never_folded(detector) -> None:
    first = [("user", "What is a monad?")]
    second = [*first, ("assistant", "A monoid in the category of endofunctors."), ("user", "Why?")]
    detector.update_batch({"chat": [request("chat", 0, first), request("chat", 1, second)]})
    assert detector.accounts["chat"].seen == 2


def test_a_loop_continued_after_a_checkpoint_still_folds(detector) -> None:
    events = agent_runs("resumed", 1, 2)
    detector.update_batch({"resumed": events[:2]})
    state = orjson.loads(orjson.dumps(detector.state("resumed")))
    detector.forget("resumed")
    detector.load("resumed", state)
    detector.update_batch({"resumed": events[2:]})
    assert detector.accounts["resumed"].seen == 1


def test_calibration_replays_no_tool_loop_step() -> None:
    """Calibration replays benign history through the same preparation: its windows, and so the
    benign distributions and thresholds, hold the prompts, not their steps."""
    fresh = ExtractionDetector(tiered=False)
    prepared = fresh._prepare({"u": agent_runs("u", 8, 2)}, embed_all=True)
    assert [f.folded for f in prepared["u"]] == [False, True, True] * 8
    snapshots = fresh.replay(prepared)
    assert fresh.accounts["u"].seen == 8 and len(snapshots) == 8 - 3  # from the 4th request
