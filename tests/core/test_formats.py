"""Gateway adapters (`core.formats`): foreign request logs, in the shapes their projects publish
(fixtures in tests/core/formats/, sources in its README), become the same schema-v1 events the
native parser returns, and what does not map becomes a dead letter naming the field."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from core.events import DeadLetter, Event, event_json, parse_event
from core.formats import FormatError, LogFormat, log_format
from streaming.files import file_batches
from streaming.kafka import keyed_messages

FIXTURES = Path(__file__).parent / "formats"
START = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


def lines(name: str) -> list[bytes]:
    return (FIXTURES / name).read_bytes().splitlines()


def compact(name: str) -> bytes:
    """A pretty-printed OTLP fixture as the one line a collector's file exporter writes."""
    return orjson.dumps(orjson.loads((FIXTURES / name).read_bytes()))


def parsed(fmt: LogFormat, raw: list[bytes]) -> list[Event | DeadLetter]:
    return [fmt.parse(unit, "test", i) for i, unit in enumerate(fmt.units(raw))]


def events(items: list[Event | DeadLetter]) -> list[Event]:
    assert all(isinstance(item, Event) for item in items), items
    return items  # type: ignore[return-value]


def test_litellm_standard_logging_payloads() -> None:
    chat, embedding = events(parsed(log_format("litellm"), lines("litellm.jsonl")))
    assert chat.request_id == "chatcmpl-7f3a1c2e-55b1-4c1e-9d0f-1b2c3d4e5f60"
    assert chat.account_id == "user-4242"  # the key's user, before its team
    assert chat.timestamp == at(1795000000.125)  # startTime, unix seconds
    assert [m.role for m in chat.messages or []] == ["system", "user"]
    assert chat.prompt_text == "What is 2+2?" and chat.response == "2 + 2 equals 4."
    assert (chat.prompt_tokens, chat.completion_tokens) == (24, 14)
    assert (chat.params.temperature, chat.params.logprobs, chat.params.top_logprobs) == (0, 1, 5)
    assert chat.endpoint == "/chat/completions" and chat.model == "gpt-4o-mini"
    assert chat.client.ip == "203.0.113.7" and chat.client.org_id == "org-acme"
    assert chat.client.api_key_id and chat.extra_fields["end_user"] == "customer-17"
    # No user or team on the key: the key itself is the account.
    assert (
        embedding.account_id == "1f0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a1f0e"
    )
    assert embedding.prompt == "The quick brown fox\njumps over the lazy dog"
    assert embedding.response is None and embedding.endpoint == "/embeddings"


def test_litellm_fields_that_do_not_map_name_the_field() -> None:
    payload = orjson.loads(lines("litellm.jsonl")[0])
    fmt = log_format("litellm")

    def reason(**changes: object) -> str:
        document = {k: v for k, v in {**payload, **changes}.items() if v is not ...}
        letter = fmt.parse(orjson.dumps(document), "test", 7)
        assert isinstance(letter, DeadLetter)
        assert letter.original_bytes() == orjson.dumps(document) and letter.offset == 7
        return letter.reason

    assert reason(startTime=...) == "unmapped: litellm: startTime: Field required"
    assert reason(startTime="yesterday").startswith("unmapped: litellm: startTime")
    assert reason(metadata=...) == "unmapped: litellm: metadata: Field required"
    assert reason(prompt_tokens="24").startswith("unmapped: litellm: prompt_tokens:")
    no_key = {k: None for k in ("user_api_key_user_id", "user_api_key_team_id")}
    assert reason(metadata={**payload["metadata"], **no_key, "user_api_key_hash": None}) == (
        "invalid_event: account_id (from metadata.user_api_key_user_id | metadata."
        "user_api_key_team_id | metadata.user_api_key_hash): Field required"
    )
    assert reason(model_parameters={"max_tokens": -1}).startswith(
        "invalid_event: params.max_tokens (from model_parameters)"
    )
    # --account is the fallback account of payloads that name none.
    keyless = {**payload, "metadata": {}}
    event = log_format("litellm", account="acct-fallback").parse(orjson.dumps(keyless), "t")
    assert isinstance(event, Event) and event.account_id == "acct-fallback"


def test_otel_spans_one_event_per_model_call() -> None:
    fmt = log_format("otel")
    units = fmt.split(compact("otel_traces.json"))
    assert len(units) == 3  # the tool span and the HTTP server span are not model calls
    new, old, uncaptured = parsed(fmt, [compact("otel_traces.json")])
    assert isinstance(new, Event) and isinstance(old, Event)
    assert new.request_id == "chatcmpl-9J3uIL87gldCFtiIbyaOvTeYBRA3l"
    assert new.account_id == "acct-span"  # the span's user.id before the resource's
    assert new.timestamp == at(1795000300)  # startTimeUnixNano
    assert new.prompt_text == "Tell me a joke about OpenTelemetry"
    assert new.response and new.response.startswith(" Why did the developer")
    assert (new.prompt_tokens, new.completion_tokens, new.model) == (52, 47, "gpt-4")
    assert (new.params.temperature, new.params.max_tokens, new.params.top_p) == (0.0, 200, 1.0)
    assert new.endpoint == "/v1/chat/completions" and new.client.ip == "192.0.2.10"
    # Conventions before 1.27: gen_ai.system, prompt and completion as span events.
    assert old.request_id == "5b8aa5a2d2c872e8321cf37308d69df2:051581bf3cb55c13"
    assert old.account_id == "acct-resource"  # the resource's enduser.id
    assert old.prompt_text == "What is the capital of France?"
    assert old.response == "The capital of France is Paris."
    assert (old.prompt_tokens, old.completion_tokens) == (11, 7)
    # Content capture off: no prompt, so a dead letter that says which field and why.
    assert isinstance(uncaptured, DeadLetter)
    assert uncaptured.reason.startswith("unmapped: otel: gen_ai.input.messages: no prompt")
    assert orjson.loads(uncaptured.original_bytes())["resourceSpans"][0]["scopeSpans"][0]["spans"][
        0
    ]["spanId"] == ("2b3c4d5e6f708192")


def test_otel_inference_details_log_events() -> None:
    fmt = log_format("otel")
    (event,) = events(parsed(fmt, [compact("otel_logs.json")]))  # gen_ai.user.message skipped
    assert (event.request_id, event.account_id) == ("chatcmpl-logs-0001", "acct-logs")
    assert event.prompt_text == "Weather in Paris?" and event.params.n == 3
    assert event.timestamp == at(1795000600)  # timeUnixNano
    # An OTLP line that is no export, or breaks the OTLP shape, is a dead letter too.
    (not_otlp,) = parsed(fmt, [b'{"spans": []}'])
    assert isinstance(not_otlp, DeadLetter) and not_otlp.reason.startswith("unmapped: otel")
    broken = orjson.loads(compact("otel_traces.json"))
    broken["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["startTimeUnixNano"] = "soon"
    (letter, *_) = parsed(fmt, [orjson.dumps(broken)])
    assert isinstance(letter, DeadLetter) and "startTimeUnixNano" in letter.reason


def test_openai_batch_takes_account_and_start_from_the_caller() -> None:
    fmt = log_format("openai-batch", account="acct-b", start=START)
    chat, completion, embedding = events(parsed(fmt, lines("openai_batch.jsonl")))
    start_ms = int(START.timestamp() * 1000)
    assert chat.request_id == f"acct-b:{start_ms}:request-1"
    assert {e.account_id for e in (chat, completion, embedding)} == {"acct-b"}
    assert {e.timestamp for e in (chat, completion, embedding)} == {START}
    assert chat.prompt_text == "What is 2+2?" and chat.params.max_tokens == 1000
    assert chat.params.temperature == 0 and chat.endpoint == "/v1/chat/completions"
    assert completion.prompt == "Say this is a test" and completion.params.logprobs == 5
    assert embedding.prompt.startswith("The food was") and embedding.model == (  # type: ignore[union-attr]
        "text-embedding-3-small"
    )
    assert embedding.extra_fields["custom_id"] == "request-3"
    with pytest.raises(FormatError, match="account"):
        log_format("openai-batch", start=START)
    bad = parsed(fmt, [b'{"custom_id": "r", "url": "/v1/images", "body": {}}'])[0]
    assert isinstance(bad, DeadLetter) and bad.reason.startswith("unmapped: openai-batch: url:")
    no_messages = b'{"custom_id": "r", "url": "/v1/chat/completions", "body": {"model": "m"}}'
    bad = parsed(fmt, [no_messages])[0]
    assert isinstance(bad, DeadLetter) and "body.messages" in bad.reason


def test_declarative_mapping(tmp_path: Path) -> None:
    fmt = log_format(f"mapping:{FIXTURES / 'gateway.toml'}")
    first, second = parsed(fmt, lines("gateway.jsonl"))
    assert isinstance(first, Event)
    assert (first.request_id, first.account_id) == ("gw-001", "1017")
    assert first.timestamp == at(1795000200.5)
    assert first.prompt_text == "Translate 'hello' into French." and first.response == "Bonjour."
    assert (first.prompt_tokens, first.completion_tokens, first.params.temperature) == (12, 3, 0.2)
    assert first.client.ip == "198.51.100.4" and first.client.api_key_id == "k-77"
    assert first.extra_fields["gateway"] == "edge-gw"
    # No customer: the dead letter names the field and where the mapping reads it.
    assert isinstance(second, DeadLetter)
    assert second.reason == "invalid_event: account_id (from auth.customer): Field required"
    wrong_type = fmt.parse(b'{"req": {"id": "x", "ts": "noon"}, "auth": {"customer": 1}}', "t")
    assert isinstance(wrong_type, DeadLetter)
    assert wrong_type.reason.startswith("unmapped: mapping:gateway.toml: timestamp (req.ts)")
    # A mapping file that is wrong is a usage error naming the rule.
    bad = tmp_path / "bad.toml"
    bad.write_text('[fields]\nrequest_id = { path = "id", transform = "upper" }\n')
    with pytest.raises(FormatError, match="fields.request_id"):
        log_format(f"mapping:{bad}")
    with pytest.raises(FormatError, match="unknown log format"):
        log_format("splunk")


def test_mapped_events_publish_as_schema_v1_keyed_by_account() -> None:
    """produce/HTTP-into-Kafka: the wire form parses back natively to the very same event."""
    fmt = log_format("litellm")
    raw = [*lines("litellm.jsonl"), b'{"id": "broken"}']
    messages = list(keyed_messages(raw, fmt, "file:litellm.jsonl"))
    (key, value), (key2, _), letter = messages  # type: ignore[misc]
    assert key == b"user-4242" and isinstance(letter, DeadLetter)
    assert letter.source == "file:litellm.jsonl" and letter.offset == 2
    event = fmt.parse(raw[0], "x")
    again = parse_event(value, "kafka")
    assert isinstance(event, Event) and isinstance(again, Event)
    assert again == event and again.content_hash == event.content_hash
    assert value == event_json(event)
    # The native format is unchanged: lines go out as they are, bad ones too.
    native = list(keyed_messages([b"not json"], LogFormat(), "f"))
    assert native == [(None, b"not json")]


def test_files_number_the_messages_of_a_format(tmp_path: Path) -> None:
    path = tmp_path / "traces.jsonl"
    path.write_bytes(compact("otel_traces.json") + b"\n" + compact("otel_logs.json") + b"\n")
    ((records, _),) = list(file_batches(path, 100, log_format("otel")))
    assert [r.offset for r in records] == [0, 1, 2, 3]  # 3 model-call spans, 1 details event
    assert {r.stream for r in records} == {"file:traces.jsonl"}
