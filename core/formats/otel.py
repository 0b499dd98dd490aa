"""OpenTelemetry GenAI telemetry (OTLP/JSON, as the collector's file exporter writes it: one
export request per line) as schema v1. Conventions: open-telemetry/semantic-conventions,
docs/gen-ai (now the semantic-conventions-genai repository).

One export holds many spans, most of them not model calls, so `split` first cuts it into one
export per model call, each a valid OTLP document on its own (what a dead letter keeps):
- spans whose `gen_ai.operation.name` is a model call (chat, text_completion, generate_content,
  embeddings), or that name a `gen_ai.system` / `gen_ai.provider.name` without an operation
  (conventions before 1.27); agent and tool spans are skipped (the model calls inside are spans
  of their own), as is every span that is not GenAI;
- log records of the `gen_ai.client.inference.operation.details` event, which carry the same
  attributes. The older per-message log events (`gen_ai.user.message`, ...) are separate
  records that only a trace join could put together: they are skipped.

The prompt comes from `gen_ai.input.messages` (parts), else the span events
`gen_ai.system|user|assistant|tool.message` (attribute `content`) or `gen_ai.content.prompt`
(attribute `gen_ai.prompt`); without content capture a span has no prompt and is dead-lettered
saying so. The account is `user.id` (or the older `enduser.id`) on the span, else on the
resource, else the `--account` given. `request_id` is `gen_ai.response.id`, else
`TRACE_ID:SPAN_ID`; the timestamp is the span's start (a log record's time).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from core.events import Unmappable
from core.formats.common import endpoint_of, epoch_ms, present

MODEL_CALLS = frozenset({"chat", "text_completion", "generate_content", "embeddings"})
DETAILS_EVENT = "gen_ai.client.inference.operation.details"
MESSAGE_EVENTS = {f"gen_ai.{role}.message": role for role in ("system", "user", "assistant")}
MESSAGE_EVENTS["gen_ai.tool.message"] = "tool"
OTLP = ConfigDict(extra="ignore", populate_by_name=True)


class AnyValue(BaseModel):
    """OTLP's AnyValue in its JSON encoding (64-bit integers may come as strings)."""

    model_config = OTLP

    stringValue: str | None = None  # noqa: N815 - OTLP/JSON field names
    boolValue: bool | None = None  # noqa: N815
    intValue: int | None = None  # noqa: N815
    doubleValue: float | None = None  # noqa: N815
    arrayValue: ArrayValue | None = None  # noqa: N815
    kvlistValue: KeyValueList | None = None  # noqa: N815
    bytesValue: str | None = None  # noqa: N815

    def plain(self) -> Any:
        """The value as plain JSON data."""
        if self.arrayValue is not None:
            return [v.plain() for v in self.arrayValue.values]
        if self.kvlistValue is not None:
            return attributes(self.kvlistValue.values)
        if self.bytesValue is not None:
            return base64.b64decode(self.bytesValue).decode("utf-8", "replace")
        for value in (self.stringValue, self.boolValue, self.intValue, self.doubleValue):
            if value is not None:
                return value
        return None


class KeyValue(BaseModel):
    model_config = OTLP

    key: str
    value: AnyValue = Field(default_factory=AnyValue)


class ArrayValue(BaseModel):
    values: list[AnyValue] = Field(default_factory=list)


class KeyValueList(BaseModel):
    values: list[KeyValue] = Field(default_factory=list)


class Resource(BaseModel):
    attributes: list[KeyValue] = Field(default_factory=list)


class SpanEvent(BaseModel):
    model_config = OTLP

    name: str
    attributes: list[KeyValue] = Field(default_factory=list)


class Span(BaseModel):
    model_config = OTLP

    traceId: str = ""  # noqa: N815
    spanId: str = ""  # noqa: N815
    startTimeUnixNano: int  # noqa: N815
    attributes: list[KeyValue] = Field(default_factory=list)
    events: list[SpanEvent] = Field(default_factory=list)


class LogRecord(BaseModel):
    model_config = OTLP

    traceId: str = ""  # noqa: N815
    spanId: str = ""  # noqa: N815
    timeUnixNano: int = 0  # noqa: N815
    observedTimeUnixNano: int = 0  # noqa: N815
    attributes: list[KeyValue] = Field(default_factory=list)


class ScopeSpans(BaseModel):
    spans: list[Span] = Field(default_factory=list)


class ScopeLogs(BaseModel):
    logRecords: list[LogRecord] = Field(default_factory=list)  # noqa: N815


class ResourceSpans(BaseModel):
    resource: Resource = Field(default_factory=Resource)
    scopeSpans: list[ScopeSpans] = Field(default_factory=list)  # noqa: N815


class ResourceLogs(BaseModel):
    resource: Resource = Field(default_factory=Resource)
    scopeLogs: list[ScopeLogs] = Field(default_factory=list)  # noqa: N815


class Export(BaseModel):
    """An OTLP/JSON export request: traces or logs (ExportTrace/LogsServiceRequest)."""

    resourceSpans: list[ResourceSpans] = Field(default_factory=list)  # noqa: N815
    resourceLogs: list[ResourceLogs] = Field(default_factory=list)  # noqa: N815


def attributes(items: list[KeyValue]) -> dict[str, Any]:
    return {item.key: item.value.plain() for item in items}


AnyValue.model_rebuild()


# --- splitting an export into one document per model call -------------------------------------
def _raw_attributes(item: Any) -> dict[str, Any]:
    """Attribute values of a raw span or log record, strings only (enough to select it)."""
    found: dict[str, Any] = {}
    for pair in _list(item, "attributes"):
        if isinstance(pair, dict) and isinstance(pair.get("value"), dict):
            found[str(pair.get("key"))] = pair["value"].get("stringValue")
    return found


def _is_model_call(span: Any) -> bool:
    found = _raw_attributes(span)
    operation = found.get("gen_ai.operation.name")
    if operation is not None:
        return operation in MODEL_CALLS
    return found.get("gen_ai.system") is not None or found.get("gen_ai.provider.name") is not None


def _is_details_event(record: Any) -> bool:
    name = record.get("eventName") if isinstance(record, dict) else None
    return (name or _raw_attributes(record).get("event.name")) == DETAILS_EVENT


def _list(document: Any, key: str) -> list[Any]:
    value = document.get(key) if isinstance(document, dict) else None
    return value if isinstance(value, list) else []


def split(line: bytes) -> list[bytes]:
    """One OTLP/JSON export per model-call span or details log record of the export `line`;
    the line itself when it is no export (parsing it then says why)."""
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return [line]
    if not isinstance(document, dict) or not (
        "resourceSpans" in document or "resourceLogs" in document
    ):
        return [line]
    units = []
    for resource in _list(document, "resourceSpans"):
        for scope in _list(resource, "scopeSpans"):
            for span in filter(_is_model_call, _list(scope, "spans")):
                one = {
                    "resource": resource.get("resource"),
                    "scopeSpans": [{**scope, "spans": [span]}],
                }
                units.append(orjson.dumps({"resourceSpans": [one]}))
    for resource in _list(document, "resourceLogs"):
        for scope in _list(resource, "scopeLogs"):
            for record in filter(_is_details_event, _list(scope, "logRecords")):
                one = {
                    "resource": resource.get("resource"),
                    "scopeLogs": [{**scope, "logRecords": [record]}],
                }
                units.append(orjson.dumps({"resourceLogs": [one]}))
    return units


# --- one model call as schema v1 --------------------------------------------------------------
def _text(parts: Any) -> str | None:
    """The text parts of a message (semconv `parts`: `{"type": "text", "content": ...}`)."""
    if isinstance(parts, str):
        return parts
    if not isinstance(parts, list):
        return None
    texts = [p.get("content") for p in parts if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(t for t in texts if isinstance(t, str))


def _decoded(value: Any) -> Any:
    """An attribute of type `any`: structured, or its JSON as a string (most SDKs)."""
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return orjson.loads(value)
        except orjson.JSONDecodeError:
            return value
    return value


def _semconv_messages(value: Any, field: str) -> list[dict[str, Any]]:
    """`gen_ai.input.messages`: `[{role, parts: [...]}]` as schema-v1 `{role, content}`."""
    value = _decoded(value)
    if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
        raise Unmappable(f"{field}: expected a list of messages")
    return [
        {"role": m.get("role"), "content": _text(m.get("parts", m.get("content")))} for m in value
    ]


def _request(found: dict[str, Any], events: list[SpanEvent]) -> dict[str, Any]:
    if "gen_ai.input.messages" in found:
        messages = _semconv_messages(found["gen_ai.input.messages"], "gen_ai.input.messages")
        return {"messages": messages}
    turns = []
    for event in events:
        values = attributes(event.attributes)
        if event.name in MESSAGE_EVENTS:
            turns.append({"role": values.get("role", MESSAGE_EVENTS[event.name]), **values})
        elif event.name == "gen_ai.content.prompt" and "gen_ai.prompt" in values:
            prompt = _decoded(values["gen_ai.prompt"])
            if isinstance(prompt, list):
                return {"messages": prompt}
            return {"prompt": prompt}
    if turns:
        return {"messages": [{"role": t["role"], "content": t.get("content")} for t in turns]}
    raise Unmappable(
        "gen_ai.input.messages: no prompt (nor gen_ai.*.message / gen_ai.content.prompt "
        "events): is content capture off?"
    )


def _response(found: dict[str, Any], events: list[SpanEvent]) -> str | None:
    if "gen_ai.output.messages" in found:
        messages = _semconv_messages(found["gen_ai.output.messages"], "gen_ai.output.messages")
        return messages[0]["content"] if messages else None
    for event in events:
        values = attributes(event.attributes)
        if event.name == "gen_ai.content.completion" and "gen_ai.completion" in values:
            completion = _decoded(values["gen_ai.completion"])
            if isinstance(completion, list) and completion and isinstance(completion[0], dict):
                return completion[0].get("content")
            return completion if isinstance(completion, str) else None
    return None


class OpenTelemetry:
    """`--format otel`: OTLP/JSON exports of GenAI spans or details log records."""

    name = "otel"
    origin = {
        "request_id": "gen_ai.response.id | traceId:spanId",
        "account_id": "user.id | enduser.id",
        "timestamp": "startTimeUnixNano | timeUnixNano",
        "messages": "gen_ai.input.messages",
        "response": "gen_ai.output.messages",
        "model": "gen_ai.request.model",
        "prompt_tokens": "gen_ai.usage.input_tokens",
        "completion_tokens": "gen_ai.usage.output_tokens",
        "params": "gen_ai.request.*",
        "client": "client.address, user_agent.original",
    }

    def map(self, document: dict[str, Any]) -> dict[str, Any]:
        export = Export.model_validate(document)
        spans = [
            (r.resource, s) for r in export.resourceSpans for ss in r.scopeSpans for s in ss.spans
        ]
        records = [
            (r.resource, lr)
            for r in export.resourceLogs
            for sl in r.scopeLogs
            for lr in sl.logRecords
        ]
        if len(spans) + len(records) != 1:
            raise Unmappable("resourceSpans: expected one GenAI span or log record per message")
        if spans:
            resource, span = spans[0]
            item: Span | LogRecord = span
            nanos, events = span.startTimeUnixNano, span.events
        else:
            resource, record = records[0]
            item, events = record, []
            nanos = record.timeUnixNano or record.observedTimeUnixNano
        found = attributes(item.attributes)
        owner = attributes(resource.attributes)
        account = next(
            (
                str(place[key])
                for place in (found, owner)
                for key in ("user.id", "enduser.id")
                if place.get(key) not in (None, "")
            ),
            None,
        )
        request_id = found.get("gen_ai.response.id") or (
            f"{item.traceId}:{item.spanId}" if item.traceId and item.spanId else None
        )
        get = found.get
        return {
            "request_id": request_id,
            "account_id": account,
            "timestamp": epoch_ms(nanos, "ns", "startTimeUnixNano") if nanos else None,
            **_request(found, events),
            "response": _response(found, events),
            "model": get("gen_ai.request.model"),
            "endpoint": endpoint_of(get("gen_ai.operation.name")),
            "prompt_tokens": get("gen_ai.usage.input_tokens", get("gen_ai.usage.prompt_tokens")),
            "completion_tokens": get(
                "gen_ai.usage.output_tokens", get("gen_ai.usage.completion_tokens")
            ),
            "params": present(
                {
                    "temperature": get("gen_ai.request.temperature"),
                    "top_p": get("gen_ai.request.top_p"),
                    "max_tokens": get("gen_ai.request.max_tokens"),
                    "n": get("gen_ai.request.choice.count"),
                    "seed": get("gen_ai.request.seed"),
                    "frequency_penalty": get("gen_ai.request.frequency_penalty"),
                    "presence_penalty": get("gen_ai.request.presence_penalty"),
                }
            ),
            "client": present(
                {
                    "ip": get("client.address", owner.get("client.address")),
                    "user_agent": get("user_agent.original"),
                }
            ),
            "provider": get("gen_ai.provider.name", get("gen_ai.system")),
            "trace_id": item.traceId or None,
            "span_id": item.spanId or None,
        }
