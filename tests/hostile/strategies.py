"""Hypothesis strategies for hostile input: schema-valid events with any text in every string
field, extreme in-range numbers and odd extra fields; and broken ones, each a valid event with
one thing wrong (or bytes that are no event at all)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
from hypothesis import strategies as st

from tests.hostile.catalogue import DEEP, deep_line

EARLIEST_MS = 86_400_000  # 1970-01-02
LATEST_MS = 4_291_660_800_000  # 2105-12-31T00:00Z
SCHEMA_FIELDS = {
    "request_id",
    "account_id",
    "timestamp",
    "messages",
    "prompt",
    "response",
    "model",
    "endpoint",
    "prompt_tokens",
    "completion_tokens",
    "params",
    "client",
}

text = st.text(max_size=200)  # every code point but surrogates: control, bidi, astral
short_text = st.text(max_size=30)
json_leaf = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text
)
json_value = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(short_text, inner, max_size=4),
    max_leaves=16,
)
ZONES = [UTC, timezone(timedelta(hours=-11)), timezone(timedelta(hours=13, minutes=45))]
timestamp = st.integers(EARLIEST_MS, LATEST_MS) | st.datetimes(
    min_value=datetime(1970, 1, 3),
    max_value=datetime(2105, 12, 30),
    timezones=st.sampled_from(ZONES),
).map(lambda moment: moment.isoformat())
content = (
    text
    | st.none()
    | st.lists(st.fixed_dictionaries({"type": st.just("text"), "text": text}), max_size=3)
)
message = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "tool"]) | short_text,
        "content": content,
    }
)
floats = st.floats(allow_nan=False, allow_infinity=False)
params = st.fixed_dictionaries(
    {},
    optional={
        "temperature": floats,
        "top_p": floats,
        "max_tokens": st.integers(0, 2**63 - 1),
        "n": st.integers(0, 2**32),
        "logprobs": st.booleans() | st.integers(0, 20),
        "top_logprobs": st.integers(0, 2**31),
        "seed": st.integers(-(2**63), 2**64 - 1),
        "stop": json_value,
    },
)
client = st.fixed_dictionaries(
    {}, optional={"ip": text, "user_agent": text, "api_key_id": text, "org_id": text}
)
tokens = st.integers(0, 2**32 - 1)


@st.composite
def valid_event(draw: st.DrawFn, prefix: str, index: int) -> dict[str, Any]:
    """A schema-valid event whose request id and account start with `prefix` (unique per run)."""
    document: dict[str, Any] = {
        "request_id": f"{prefix}{index}:{draw(text)}"[:512],
        "account_id": f"{prefix}{draw(st.sampled_from(['a', 'b']) | short_text)}"[:512],
        "timestamp": draw(timestamp),
    }
    if draw(st.booleans()):
        document["prompt"] = draw(text)
    else:
        document["messages"] = draw(st.lists(message, min_size=1, max_size=5))
    optional = {
        "response": text,
        "model": text,
        "endpoint": text,
        "prompt_tokens": tokens,
        "completion_tokens": tokens,
        "params": params,
        "client": client,
    }
    for name, strategy in optional.items():
        if draw(st.booleans()):
            document[name] = draw(strategy)
    extras = draw(
        st.dictionaries(short_text.filter(lambda k: k not in SCHEMA_FIELDS), json_value, max_size=3)
    )
    return {**extras, **document}


MUTATIONS = (
    "tokens_over_uint32",
    "deep_params",
    "deep_extra",
    "time_out_of_range",
    "missing_field",
    "wrong_type",
    "no_request_text",
    "bytes",
)


@st.composite
def broken_line(draw: st.DrawFn, prefix: str, index: int) -> bytes:
    """A valid event with one thing wrong, or bytes that are no event; it holds `prefix` so a
    run can find its dead letter."""
    document = draw(valid_event(prefix, index))
    mutation = draw(st.sampled_from(MUTATIONS))
    if mutation == "tokens_over_uint32":
        document["prompt_tokens"] = draw(st.integers(2**32, 2**64 - 1))
    elif mutation == "deep_params":
        document["params"] = {"extra": DEEP}
        return deep_line(document, draw(st.integers(100, 1000)))
    elif mutation == "deep_extra":
        document["meta"] = DEEP
        return deep_line(document, draw(st.integers(100, 1000)))
    elif mutation == "time_out_of_range":
        document["timestamp"] = draw(
            st.integers(LATEST_MS + 86_400_000, 2**62) | st.integers(-(2**62), EARLIEST_MS - 1)
        )
    elif mutation == "missing_field":
        del document[draw(st.sampled_from(["account_id", "timestamp"]))]
    elif mutation == "wrong_type":
        field = draw(st.sampled_from(["account_id", "timestamp", "prompt_tokens", "params"]))
        document[field] = draw(st.lists(st.integers(-(2**63), 2**63), max_size=2))
    elif mutation == "no_request_text":
        document.pop("prompt", None)
        document.pop("messages", None)
    else:
        return prefix.encode() + draw(st.binary(max_size=300))
    return orjson.dumps(document)
