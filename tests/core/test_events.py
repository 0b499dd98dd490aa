"""Event schema v1: good events parse, every kind of bad input becomes an explained dead letter."""

from __future__ import annotations

import base64
import time

import orjson
import pytest

from core.events import DeadLetter, Event, parse_event
from streaming.malformed import VALID, interleave_malformed, malformed_messages

EXPECTED_REASON = {
    "truncated_json": "invalid_json",
    "empty_line": "empty",
    "whitespace_only": "empty",
    "json_array": "not_an_object",
    "json_string": "not_an_object",
    "json_null": "not_an_object",
    "invalid_utf8": "invalid_utf8",
    "raw_nul_byte_in_string": "invalid_json",
    "deeply_nested_array": "invalid_json",
    "deeply_nested_field": "invalid_json",
    "oversized_message": "too_large",
}


@pytest.mark.parametrize("name", sorted(malformed_messages()))
def test_every_malformed_message_is_a_dead_letter_with_its_bytes(name: str) -> None:
    raw = malformed_messages()[name]
    result = parse_event(raw, source="kafka:api-requests/3", offset=41)
    assert isinstance(result, DeadLetter), name
    assert result.reason.split(":")[0] == EXPECTED_REASON.get(name, "invalid_event")
    assert len(result.reason) > len("invalid_event: ")  # a reason a human can act on
    assert result.original_bytes() == raw
    assert (result.source, result.offset) == ("kafka:api-requests/3", 41)


def test_invalid_utf8_is_kept_as_base64() -> None:
    raw = malformed_messages()["invalid_utf8"]
    letter = parse_event(raw, "file")
    assert isinstance(letter, DeadLetter)
    assert letter.raw_encoding == "base64"
    assert base64.b64decode(letter.raw) == raw


def test_dead_letter_keeps_the_request_id_when_there_is_one() -> None:
    letter = parse_event(malformed_messages()["account_id_not_a_string"], "file")
    assert isinstance(letter, DeadLetter)
    assert letter.request_id == "req-ok"
    assert "account_id" in letter.reason


def test_wrong_types_name_the_field() -> None:
    letter = parse_event(malformed_messages()["temperature_not_a_number"], "file")
    assert isinstance(letter, DeadLetter)
    assert "params.temperature" in letter.reason


def test_five_megabyte_prompt_is_a_valid_event() -> None:
    prompt = "word " * (1024 * 1024)
    raw = orjson.dumps({**VALID, "prompt": prompt})
    assert len(raw) > 5 * 1024 * 1024
    started = time.perf_counter()
    event = parse_event(raw, "file")
    assert isinstance(event, Event)
    assert event.prompt_text == prompt
    assert time.perf_counter() - started < 5  # generous: guards against quadratic parsing only


def test_escaped_nul_inside_a_string_is_valid_and_kept() -> None:
    raw = orjson.dumps({**VALID, "prompt": "a\x00b"})
    assert b"\\u0000" in raw
    event = parse_event(raw, "file")
    assert isinstance(event, Event) and event.prompt == "a\x00b"


@pytest.mark.parametrize(
    ("timestamp", "expected_ms"),
    [
        ("2026-11-27T10:00:00Z", 1795773600000),
        ("2026-11-27T11:00:00.125+01:00", 1795773600125),
        ("2026-11-27T10:00:00", 1795773600000),
        (1795773600125, 1795773600125),
    ],
)
def test_timestamps_rfc3339_or_epoch_ms_in_utc(timestamp: object, expected_ms: int) -> None:
    event = parse_event(orjson.dumps({**VALID, "timestamp": timestamp}), "file")
    assert isinstance(event, Event)
    assert event.timestamp_ms == expected_ms
    assert event.timestamp.utcoffset().total_seconds() == 0


def test_unknown_fields_are_kept() -> None:
    raw = orjson.dumps({**VALID, "tier": "gold", "params": {"temperature": 0, "beam": 4}})
    event = parse_event(raw, "file")
    assert isinstance(event, Event)
    assert event.extra_fields == {"tier": "gold"}
    assert event.params.temperature == 0 and event.params.model_extra == {"beam": 4}


def test_messages_give_the_last_user_turn_and_turn_count() -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
    ]
    document = {k: v for k, v in VALID.items() if k != "prompt"} | {"messages": messages}
    event = parse_event(orjson.dumps(document), "file")
    assert isinstance(event, Event)
    assert event.prompt_text == "second" and event.turn_count == 2


def test_str_input_is_accepted() -> None:
    assert isinstance(parse_event(orjson.dumps(VALID).decode(), "file"), Event)


def test_interleaving_keeps_every_good_message_in_order() -> None:
    good = [orjson.dumps({**VALID, "request_id": f"r{i}"}) for i in range(50)]
    mixed, positions = interleave_malformed(good, 30, seed=3)
    assert len(mixed) == 80
    assert [m for i, m in enumerate(mixed) if i not in set(positions)] == good
    assert all(isinstance(parse_event(mixed[p], "t"), DeadLetter) for p in positions)
