"""Parse-time limits: a value the store cannot hold is a dead letter before it reaches a row, and
every value the parser lets through fits the `events` table (issue 15, finding 1)."""

from __future__ import annotations

import json
import re
from typing import Any

import orjson
import pytest

from core.events import (
    JSON_INT_MAX,
    JSON_INT_MIN,
    MAX_DEPTH,
    MAX_LABEL_CHARS,
    UINT32_MAX,
    DeadLetter,
    Event,
    nesting_depth,
    parse_event,
)
from storage.rows import storable_event_row
from storage.schema import EVENTS

BASE = {"request_id": "r-1", "account_id": "acct", "timestamp": 1_795_000_000_000, "prompt": "p"}


def nested(depth: int) -> str:
    """A placeholder for an object `depth` levels deep, written into the line by `raw` (no JSON
    library writes 1,000 levels)."""
    return f"<nested {depth}>"


def raw(**fields: Any) -> bytes:
    line = json.dumps(BASE | fields)
    for depth in {int(d) for d in re.findall(r'"<nested (\d+)>"', line)}:
        line = line.replace(f'"<nested {depth}>"', '{"x":' * depth + "1" + "}" * depth)
    return line.encode()


REFUSED = {
    "tokens_over_uint32": (raw(prompt_tokens=UINT32_MAX + 1), "invalid_event: prompt_tokens"),
    "tokens_as_string": (raw(completion_tokens=str(UINT32_MAX + 1)), "invalid_event"),
    "tokens_as_big_float": (raw(completion_tokens=1.8e19), "invalid_event"),
    "seed_over_64_bits_as_string": (raw(params={"seed": str(2**64)}), "invalid_event"),
    "n_of_26_digits": (raw(params={"n": "9" * 26}), "invalid_event: params.n"),
    "seed_below_int64": (raw(params={"seed": str(JSON_INT_MIN - 1)}), "invalid_event"),
    "temperature_inf_string": (raw(params={"temperature": "inf"}), "invalid_event"),
    "temperature_nan_string": (raw(params={"temperature": "nan"}), "invalid_event"),
    "params_depth_300": (raw(params={"extra": nested(300)}), "too_deep: nesting 302 exceeds 64"),
    "params_depth_1000": (raw(params={"x": nested(1000)}), "too_deep: nesting 1002 exceeds 64"),
    "extra_depth_65": (raw(meta=nested(MAX_DEPTH)), "too_deep: nesting 65 exceeds 64"),
    "model_too_long": (raw(model="m" * (MAX_LABEL_CHARS + 1)), "invalid_event: model"),
    "user_agent_too_long": (
        raw(client={"user_agent": "u" * (MAX_LABEL_CHARS + 1)}),
        "invalid_event: client.user_agent",
    ),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_values_the_store_cannot_hold_are_dead_letters_at_parse_time(name: str) -> None:
    line, reason = REFUSED[name]
    letter = parse_event(line, "file:x.jsonl", 3)
    assert isinstance(letter, DeadLetter), name
    assert letter.reason.startswith(reason), letter.reason
    assert letter.request_id == "r-1" and letter.original_bytes() == line


AT_THE_LIMITS = {
    "max_uint32_tokens": {"prompt_tokens": UINT32_MAX, "completion_tokens": 0},
    "u64_seed": {"params": {"seed": JSON_INT_MAX, "max_tokens": JSON_INT_MAX}},
    "i64_min_seed": {"params": {"seed": JSON_INT_MIN, "logprobs": JSON_INT_MIN}},
    "huge_temperature": {"params": {"temperature": 1.0e308, "top_p": -1.0e308}},
    "numeric_strings": {"prompt_tokens": "12", "params": {"temperature": "0.5", "n": "3"}},
    "depth_64": {"meta": nested(MAX_DEPTH - 1)},
    "long_labels": {"model": "m" * MAX_LABEL_CHARS, "client": {"ip": "i" * MAX_LABEL_CHARS}},
    "many_turns": {"messages": [{"role": "user", "content": "t"}] * 70_000, "prompt": None},
}


@pytest.mark.parametrize("name", sorted(AT_THE_LIMITS))
def test_every_value_the_parser_accepts_fits_the_events_table(name: str) -> None:
    event = parse_event(raw(**AT_THE_LIMITS[name]), "file:x.jsonl")
    assert isinstance(event, Event), getattr(event, "reason", "")
    row = storable_event_row(event)  # raises if a value does not fit its column
    assert EVENTS.row_problem(row) is None
    assert row["turn_count"] <= 65535 and len(row["content_hash"]) == 64


def test_nesting_depth_counts_objects_and_arrays() -> None:
    assert nesting_depth("x") == 0
    assert nesting_depth({}) == 1
    assert nesting_depth({"a": [1, {"b": []}]}) == 4
    assert nesting_depth([[[]], {}]) == 3


def test_the_content_hash_ignores_the_json_form_and_sees_every_change() -> None:
    first = parse_event(orjson.dumps(BASE | {"params": {"temperature": 0}}), "a")
    same = parse_event(
        b'{ "params": {"temperature": 0.0}, "prompt": "p", "timestamp": "2026-11-18T11:06:40Z",'
        b' "account_id": "acct", "request_id": "r-1" }',
        "b",
        9,
    )
    assert isinstance(first, Event) and isinstance(same, Event)
    assert first.content_hash == same.content_hash
    for change in (
        {"account_id": "other"},
        {"prompt": "q"},
        {"timestamp": 1_795_000_000_001},
        {"tier": "gold"},
    ):
        changed = parse_event(orjson.dumps(BASE | {"params": {"temperature": 0}} | change), "a")
        assert isinstance(changed, Event)
        assert changed.content_hash != first.content_hash, change
