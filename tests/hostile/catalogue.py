"""The hostile-input catalogue: kinds of input an attacker or a broken gateway sends, each with
what DistillGuard must do with it at every entry point (file replay, HTTP ingest, the Kafka
worker).

* `stored`: schema-valid however hostile (injection strings, control characters, bidi
  overrides, extreme but in-range numbers, odd extra fields). It is stored once, its account and
  prompt exactly as sent.
* `dead`: it breaks the schema or what the store can hold. It becomes a dead letter with a
  reason and the original bytes; nothing else in the batch is lost.
* `resend`: the same bytes again. Stored once, counted once by the detector, no dead letter.
* `conflict`: an existing `request_id` with another account or content. A dead letter whose
  reason starts with `conflict`; the first write stays.

Each kind builds its lines from a prefix unique to the run, so runs never collide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import orjson

Outcome = Literal["stored", "dead", "resend", "conflict"]
# `http` ingests in-process (embedded store); `http_kafka` produces to the topic for the worker
Entry = Literal["replay", "http", "http_kafka", "kafka"]
EVERY_ENTRY: frozenset[Entry] = frozenset({"replay", "http", "http_kafka", "kafka"})
BASE_MS = 1_795_000_000_000
KAFKA_MAX_MESSAGE = 900_000  # the broker's default message.max.bytes is ~1 MB


def event(request_id: str, prompt: str = "hello", **fields: Any) -> dict[str, Any]:
    """A schema-v1 event; `fields` override or add."""
    document: dict[str, Any] = {
        "request_id": request_id,
        "account_id": "acct-hostile",
        "timestamp": BASE_MS,
        "prompt": prompt,
    }
    document.update(fields)
    return document


def nested(depth: int) -> dict[str, Any]:
    """A JSON object `depth` levels deep."""
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"x": value}
    return value


DEEP = "\x00deep\x00"


def deep_line(document: dict[str, Any], depth: int) -> bytes:
    """`document` as JSON with the value `DEEP` replaced by an object `depth` levels deep
    (orjson itself writes no more than 255 levels)."""
    nested_text = b'{"x":' * (depth - 1) + b'{"leaf":1}' + b"}" * (depth - 1)
    return orjson.dumps(document).replace(orjson.dumps(DEEP), nested_text)


@dataclass(frozen=True)
class Kind:
    """One kind of hostile input: its lines (the last one is the subject) and what must happen."""

    name: str
    outcome: Outcome
    build: Callable[[str], list[bytes]]
    entries: frozenset[Entry] = EVERY_ENTRY
    reason: str = ""  # dead letters: the reason must start with this (when set)
    later: bool = False  # lines after the first are sent in a later pass, not the same batch

    def lines(self, prefix: str) -> list[bytes]:
        return self.build(f"{prefix}-{self.name}")


def one(outcome: Outcome, name: str, make: Callable[[str], dict[str, Any]], **kw: Any) -> Kind:
    return Kind(name, outcome, lambda rid: [orjson.dumps(make(rid))], **kw)


def raw(name: str, make: Callable[[str], bytes], reason: str = "", **kw: Any) -> Kind:
    return Kind(name, "dead", lambda rid: [make(rid)], reason=reason, **kw)


def _text(rid: str, prompt: str) -> dict[str, Any]:
    return event(rid, prompt)


STORED: list[Kind] = [
    one("stored", "sql_injection", lambda r: _text(r, "'); DROP TABLE events; -- \\' OR 1=1")),
    one("stored", "script_markup", lambda r: _text(r, "<script>alert(1)</script><img onerror=x>")),
    one("stored", "csv_formula", lambda r: _text(r, '=HYPERLINK("http://x","y")')),
    one("stored", "tab_then_formula", lambda r: _text(r, "\t=cmd|' /C calc'!A0")),
    one("stored", "nul_and_controls", lambda r: _text(r, "a\x00b\x01c\x1f\x7fd\r\n")),
    one("stored", "bidi_override", lambda r: _text(r, "invoice\u202egnp.exe \u2066x\u2069")),
    one("stored", "zero_width", lambda r: _text(r, "\u200b\u200c\u200d\ufeffzero")),
    one("stored", "astral_plane", lambda r: _text(r, "🧪𝕏𓀀 \U0010fffd")),
    one("stored", "combining_storm", lambda r: _text(r, "e" + "\u0301" * 2000)),
    one("stored", "long_prompt_700k", lambda r: _text(r, "ab " * 233_000)),
    one(
        "stored",
        "prompt_over_a_topic_message",
        lambda r: _text(r, "y" * 1_100_000),
        entries=frozenset({"replay", "http"}),
    ),
    one(
        "stored",
        "many_messages",
        lambda r: (
            event(r, messages=[{"role": "user", "content": f"turn {i}"} for i in range(3000)])
            | {"prompt": None}
        ),
    ),
    one(
        "stored",
        "content_parts",
        lambda r: (
            event(r, messages=[{"role": "user", "content": [{"type": "text", "text": "p"}]}])
            | {"prompt": None}
        ),
    ),
    one("stored", "max_uint32_tokens", lambda r: event(r, prompt_tokens=2**32 - 1)),
    one("stored", "zero_tokens", lambda r: event(r, prompt_tokens=0, completion_tokens=0)),
    one("stored", "rfc3339_offset", lambda r: event(r, timestamp="2026-11-20T10:00:00+05:30")),
    one("stored", "earliest_time", lambda r: event(r, timestamp="1970-01-02T00:00:00Z")),
    one("stored", "latest_time", lambda r: event(r, timestamp="2105-12-31T00:00:00Z")),
    one("stored", "request_id_512", lambda r: event((r + "-" + "x" * 512)[:512])),
    one("stored", "request_id_quotes", lambda r: event(r + "'\"\\`;--\n\t")),
    one("stored", "unicode_account", lambda r: event(r, account_id="账户-ü-🙂-\u202e")),
    one(
        "stored",
        "odd_extra_fields",
        lambda r: event(r) | {"": 1, "$where": "1", "__proto__": {"admin": True}, "k" * 300: []},
    ),
    one("stored", "huge_temperature", lambda r: event(r, params={"temperature": 1.0e308})),
    one("stored", "negative_params", lambda r: event(r, params={"temperature": -5, "seed": -1})),
    one("stored", "u64_seed", lambda r: event(r, params={"seed": 2**64 - 1})),
    one(
        "stored",
        "hostile_client",
        lambda r: event(
            r, client={"ip": "999.1.1.1; rm -rf /", "user_agent": "@SUM(1+1)*cmd", "org_id": "-2"}
        ),
    ),
    one(
        "stored",
        "hostile_model",
        lambda r: event(r, model="../../etc/passwd", endpoint="/v1/x\r\nX-Injected: 1"),
    ),
    one("stored", "params_depth_30", lambda r: event(r, params={"extra": nested(30)})),
    one(
        "stored",
        "system_only_messages",
        lambda r: event(r, messages=[{"role": "system", "content": None}]) | {"prompt": None},
    ),
    Kind(
        "duplicate_keys",
        "stored",
        lambda r: [
            b'{"request_id": "ignored", "request_id": '
            + orjson.dumps(r)
            + b', "account_id": "acct-hostile", "timestamp": 1795000000000, "prompt": "dup"}'
        ],
    ),
    Kind(
        "padded_crlf_line",
        "stored",
        lambda r: [b"   " + orjson.dumps(event(r)) + b" \r"],
    ),
    Kind(
        "escaped_unicode",
        "stored",
        lambda r: [orjson.dumps(event(r)).replace(b'"hello"', b'"h\\u00e9llo \\ud83d\\ude00"')],
    ),
]

DEAD: list[Kind] = [
    one("dead", "tokens_over_uint32", lambda r: event(r, prompt_tokens=2**32)),
    one("dead", "tokens_as_big_float", lambda r: event(r, completion_tokens=1.8e19)),
    one("dead", "params_int_beyond_u64", lambda r: event(r, params={"max_tokens": 1e20})),
    one("dead", "negative_tokens", lambda r: event(r, completion_tokens=-1)),
    raw("params_depth_300", lambda r: deep_line(event(r, params={"extra": DEEP}), 300)),
    raw("params_depth_1000", lambda r: deep_line(event(r, params={"extra": DEEP}), 1000)),
    raw("extra_depth_300", lambda r: deep_line(event(r) | {"meta": DEEP}, 300)),
    one("dead", "empty_request_id", lambda r: event("") | {"note": r}),
    one("dead", "request_id_513", lambda r: event((r + "x" * 513)[:513])),
    one("dead", "account_as_number", lambda r: event(r, account_id=12345)),
    one(
        "dead",
        "missing_account",
        lambda r: {k: v for k, v in event(r).items() if k != "account_id"},
    ),
    one("dead", "year_3000", lambda r: event(r, timestamp="3000-01-01T00:00:00Z")),
    one("dead", "before_1970_01_02", lambda r: event(r, timestamp=-1)),
    one("dead", "timestamp_bool", lambda r: event(r, timestamp=True)),
    one("dead", "timestamp_2_pow_63", lambda r: event(r, timestamp=2**63 - 1)),
    one("dead", "no_request_text", lambda r: event(r) | {"prompt": None}),
    one("dead", "empty_messages", lambda r: event(r, messages=[]) | {"prompt": None}),
    one("dead", "content_as_number", lambda r: event(r, messages=[{"role": "user", "content": 7}])),
    raw("not_json", lambda r: f"{r} is not json".encode(), "invalid_json"),
    raw("truncated_json", lambda r: orjson.dumps(event(r))[:-7], "invalid_json"),
    raw("nan_literal", lambda r: orjson.dumps(event(r))[:-1] + b', "t": NaN}', "invalid_json"),
    raw(
        "infinity_number", lambda r: orjson.dumps(event(r))[:-1] + b', "t": 1e999}', "invalid_json"
    ),
    raw("lone_surrogate", lambda r: orjson.dumps(event(r))[:-1] + b', "t": "\\ud800"}', "invalid"),
    raw("byte_order_mark", lambda r: b"\xef\xbb\xbf" + orjson.dumps(event(r)), "invalid"),
    raw(
        "invalid_utf8",
        lambda r: orjson.dumps(event(r)).replace(b"hello", b"he\xff\xfello"),
        "invalid_utf8",
    ),
    raw("json_array", lambda r: orjson.dumps([event(r)]), "not_an_object"),
    raw("json_string", lambda r: orjson.dumps(r), "not_an_object"),
    # 800 kB of control characters: JSON-escaped in a dead-letter message it is ~5 MB, over
    # the broker's message size, so the DLQ topic must still take it (truncated, say so)
    raw("control_char_flood", lambda r: r.encode() + b"\x01" * 800_000, "invalid_json"),
    raw(
        "over_event_limit",
        lambda r: orjson.dumps(event(r, "x" * (8 * 1024 * 1024 + 10))),
        "too_large",
        entries=frozenset({"replay", "http", "http_kafka"}),
    ),
    # valid, but over what one Kafka message may hold: HTTP into Kafka refuses it (a producer
    # writing to the topic itself gets the broker's refusal)
    one(
        "dead",
        "over_topic_message_size",
        lambda r: event(r, "y" * 1_100_000),
        reason="too_large",
        entries=frozenset({"http_kafka"}),
    ),
]

RESEND = Kind(
    "identical_resend",
    "resend",
    lambda r: [orjson.dumps(event(r, "sent twice"))] * 2,
)
CONFLICTS: list[Kind] = [
    Kind(
        "conflict_other_account",
        "conflict",
        lambda r: [
            orjson.dumps(event(r, "original")),
            orjson.dumps(event(r, "original", account_id="acct-impostor")),
        ],
        later=True,  # another account: another partition, so no order within one pass
    ),
    Kind(
        "conflict_other_prompt",
        "conflict",
        lambda r: [
            orjson.dumps(event(r, "original")),
            orjson.dumps(event(r, "rewritten evidence")),
        ],
    ),
]

CATALOGUE: list[Kind] = [*STORED, *DEAD, RESEND, *CONFLICTS]


def kinds_for(entry: Entry) -> list[Kind]:
    return [kind for kind in CATALOGUE if entry in kind.entries]
