"""Planned companion traffic as the tests feed it: time-ordered records and events with
request ids `<prefix>-<n>`, and the clockwork harvesters several tests flag."""

from __future__ import annotations

import orjson

from core.events import Event, parse_event
from students.actors import PlannedRequest, request_record


def records_of(plans: list[PlannedRequest], prefix: str) -> list[dict]:
    """The plans' log records in time order."""
    ordered = sorted(plans, key=lambda p: p.timestamp_ms)
    return [request_record(p, f"{prefix}-{i}") for i, p in enumerate(ordered)]


def events_of(plans: list[PlannedRequest], prefix: str, source: str = "test") -> list[Event]:
    """The plans as parsed events in time order (every one valid)."""
    events = [parse_event(orjson.dumps(r), source) for r in records_of(plans, prefix)]
    assert all(isinstance(e, Event) for e in events)
    return events  # type: ignore[return-value]


def harvesters(
    accounts: int, per_account: int, start_ms: int = 1_800_000_000_000
) -> list[PlannedRequest]:
    """Greedy, logprob-hungry, clockwork accounts sending templated prompts."""
    return [
        PlannedRequest(
            "attack",
            f"harvester-{a}",
            start_ms + a * 7 + n * 2000,
            (("user", f"Write a short story about topic number {n} for account {a}."),),
            temperature=0.0,
            logprobs=True,
            top_logprobs=5,
        )
        for a in range(accounts)
        for n in range(per_account)
    ]
