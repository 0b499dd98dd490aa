"""A corpus of malformed API-log messages, for tests and load runs that prove bad input is
dead-lettered with a reason and never stops the pipeline."""

from __future__ import annotations

import random

import orjson

VALID = {
    "request_id": "req-ok",
    "account_id": "acct-ok",
    "timestamp": "2026-11-27T10:00:00Z",
    "prompt": "Summarise the plot of Hamlet.",
}


def _with(**changes: object) -> bytes:
    document = {**VALID, **changes}
    return orjson.dumps({k: v for k, v in document.items() if v is not _DROP})


_DROP = object()


def malformed_messages() -> dict[str, bytes]:
    """Each kind of bad input once, by name; every one must become a dead letter."""
    valid = orjson.dumps(VALID)
    return {
        "truncated_json": valid[: len(valid) // 2],
        "empty_line": b"",
        "whitespace_only": b" \t\r\n",
        "json_array": b"[" + valid + b"]",
        "json_string": b'"just a string"',
        "json_null": b"null",
        "invalid_utf8": valid[:-2] + b'\xff\xfe"}',
        "raw_nul_byte_in_string": valid.replace(b"Hamlet", b"Ham\x00let"),
        "deeply_nested_array": b"[" * 10_000 + b"]" * 10_000,
        "deeply_nested_field": _with()[:-1]
        + b',"extra":'
        + b'{"a":' * 10_000
        + b"1"
        + b"}" * 10_001,
        "missing_request_id": _with(request_id=_DROP),
        "missing_account_id": _with(account_id=_DROP),
        "missing_timestamp": _with(timestamp=_DROP),
        "missing_prompt_and_messages": _with(prompt=_DROP),
        "empty_messages": _with(prompt=_DROP, messages=[]),
        "account_id_not_a_string": _with(account_id=12345),
        "request_id_empty": _with(request_id=""),
        "prompt_not_a_string": _with(prompt={"text": "hi"}),
        "messages_not_a_list": _with(prompt=_DROP, messages="hello"),
        "message_without_role": _with(prompt=_DROP, messages=[{"content": "hi"}]),
        "timestamp_garbage": _with(timestamp="yesterday-ish"),
        "timestamp_boolean": _with(timestamp=True),
        "timestamp_before_1970": _with(timestamp="1960-01-01T00:00:00Z"),
        "timestamp_overflow": _with(timestamp=10**18),
        "negative_tokens": _with(prompt_tokens=-5),
        "params_not_an_object": _with(params=[1, 2, 3]),
        "temperature_not_a_number": _with(params={"temperature": "hot"}),
        "client_ip_not_a_string": _with(client={"ip": 10}),
        "oversized_message": _with(prompt="x" * (9 * 1024 * 1024)),
    }


def interleave_malformed(
    good: list[bytes], count: int, seed: int = 0
) -> tuple[list[bytes], list[int]]:
    """Mix `count` malformed messages (cycling through the corpus) into `good` at random places.

    Returns the mixed list and the positions of the malformed ones. The oversized message is left
    out so a load run stays light; its own test covers it.
    """
    rng = random.Random(seed)
    corpus = [v for k, v in sorted(malformed_messages().items()) if k != "oversized_message"]
    bad = [corpus[i % len(corpus)] for i in range(count)]
    mixed: list[bytes] = list(good)
    positions = sorted(rng.sample(range(len(good) + count), count))
    for position, message in zip(positions, bad, strict=True):
        mixed.insert(position, message)
    return mixed, positions
