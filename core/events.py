"""Event schema v1 (one JSON object per API request) and the parser that never raises.

`parse_event` turns raw bytes from any source into either an `Event` or a `DeadLetter` that keeps
the original bytes and the reason, so bad input is explained and nothing is lost. Every value is
checked here, at parse time, against what the store can hold (the limits below), so an event that
parses can always be written.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from functools import cached_property
from typing import Annotated, Any, Literal, Protocol, TypeVar

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictStr,
    ValidationError,
    field_validator,
    model_validator,
)

from core.hashing import content_hash, prompt_hash

SCHEMA_VERSION = 1
# What the store can hold, in one place (storage.schema's column types and the JSON columns):
# ClickHouse `DateTime` is a UInt32 of seconds: keep events inside its range.
EARLIEST_TIMESTAMP = datetime(1970, 1, 2, tzinfo=UTC)
LATEST_TIMESTAMP = datetime(2105, 12, 31, tzinfo=UTC)
UINT32_MAX = 2**32 - 1  # `prompt_tokens`, `completion_tokens` are Nullable(UInt32)
# `params` and unknown fields are stored as JSON written by orjson, which takes integers in
# [-2**63, 2**64 - 1] and at most 255 levels of nesting; we allow far less nesting than that.
JSON_INT_MIN, JSON_INT_MAX = -(2**63), 2**64 - 1
MAX_DEPTH = 64
MAX_ID_CHARS = 512  # request_id, account_id
MAX_LABEL_CHARS = 8192  # model, endpoint, role and the client's fields: labels, not text


class _HasAccount(Protocol):
    @property
    def account_id(self) -> str: ...


AccountItem = TypeVar("AccountItem", bound=_HasAccount)
NonEmptyId = Annotated[StrictStr, Field(min_length=1, max_length=MAX_ID_CHARS)]
Label = Annotated[StrictStr, Field(max_length=MAX_LABEL_CHARS)]
TokenCount = Annotated[int, Field(ge=0, le=UINT32_MAX)]
Count = Annotated[int, Field(ge=0, le=JSON_INT_MAX)]
JsonInt = Annotated[int, Field(ge=JSON_INT_MIN, le=JSON_INT_MAX)]
# Unknown fields are kept; numbers must be finite ("inf" and "nan" strings included).
OPEN_MODEL = ConfigDict(extra="allow", allow_inf_nan=False)


def parse_timestamp(value: Any) -> datetime:
    """RFC3339 string or epoch milliseconds (a number), always normalised to UTC and inside
    what the store can hold (the schema's `timestamp` rule, also for command-line options)."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            parsed = datetime.fromtimestamp(value / 1000, tz=UTC)
        elif isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip())
        else:
            raise ValueError("timestamp must be an RFC3339 string or epoch milliseconds")
    except (OverflowError, OSError) as exc:
        raise ValueError(f"timestamp out of range: {exc}") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    elif parsed.tzinfo is not UTC:
        parsed = parsed.astimezone(UTC)
    if not EARLIEST_TIMESTAMP <= parsed <= LATEST_TIMESTAMP:
        raise ValueError("timestamp outside 1970-01-02..2105-12-31 (ClickHouse DateTime range)")
    return parsed


class Message(BaseModel):
    """One chat turn; `content` may be a string or OpenAI-style content parts."""

    model_config = OPEN_MODEL

    role: Label
    content: StrictStr | list[dict[str, Any]] | None = None

    @property
    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(str(p.get("text", "")) for p in self.content if isinstance(p, dict))


class Params(BaseModel):
    """Generation settings the caller asked for: harvesting shows here (temperature 0, logprobs)."""

    model_config = OPEN_MODEL

    temperature: float | None = None
    top_p: float | None = None
    max_tokens: Count | None = None
    n: Count | None = None
    logprobs: bool | JsonInt | None = None
    top_logprobs: Count | None = None
    seed: JsonInt | None = None


class Client(BaseModel):
    """Who sent the request, as the provider's gateway saw it."""

    model_config = OPEN_MODEL

    ip: Label | None = None
    user_agent: Label | None = None
    api_key_id: Label | None = None
    org_id: Label | None = None


class Event(BaseModel):
    """One API request (schema v1). Unknown fields are kept in `model_extra`."""

    model_config = OPEN_MODEL

    request_id: NonEmptyId
    account_id: NonEmptyId
    timestamp: datetime
    messages: list[Message] | None = None
    prompt: StrictStr | None = None
    response: StrictStr | None = None
    model: Label | None = None
    endpoint: Label | None = None
    prompt_tokens: TokenCount | None = None
    completion_tokens: TokenCount | None = None
    params: Params = Field(default_factory=Params)
    client: Client = Field(default_factory=Client)

    @field_validator("timestamp", mode="before")
    @classmethod
    def _parse_timestamp(cls, value: Any) -> datetime:
        return parse_timestamp(value)

    @field_validator("params", "client", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        return {} if value is None else value

    @model_validator(mode="after")
    def _needs_a_request(self) -> Event:
        if self.messages is None and self.prompt is None:
            raise ValueError("one of 'messages' or 'prompt' is required")
        if self.messages is not None and not self.messages:
            raise ValueError("'messages' must not be empty")
        return self

    @property
    def timestamp_ms(self) -> int:
        return int(self.timestamp.timestamp() * 1000)

    @property
    def prompt_text(self) -> str:
        """The user's request: `prompt`, or the last user turn of `messages`."""
        if self.prompt is not None:
            return self.prompt
        assert self.messages is not None
        for message in reversed(self.messages):
            if message.role == "user":
                return message.text
        return self.messages[-1].text

    @property
    def turn_count(self) -> int:
        """How many user turns the request carries (follow-ups have more than one)."""
        if self.messages is None:
            return 1
        return sum(1 for m in self.messages if m.role == "user") or 1

    @cached_property
    def prompt_hash(self) -> str:
        """SHA-256 of `prompt_text`, once per event like `content_hash` (the evidence check, the
        row check and the row itself each read it; events are not changed after parsing)."""
        return prompt_hash(self.prompt_text)

    @property
    def extra_fields(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @cached_property
    def content_hash(self) -> str:
        """SHA-256 of the validated event as canonical JSON: the same request sent again, however
        its JSON was ordered or spaced, hashes the same; any change of content does not."""
        return content_hash(self.model_dump(mode="json", exclude_none=True))


class DeadLetter(BaseModel):
    """An input that failed validation: the reason and the original bytes, never dropped."""

    request_id: str | None = None
    reason: str
    raw: str
    raw_encoding: Literal["utf-8", "base64"]
    source: str
    offset: int | None = None
    received_at: datetime

    @classmethod
    def from_bytes(
        cls,
        raw: bytes,
        reason: str,
        source: str,
        offset: int | None = None,
        request_id: str | None = None,
    ) -> DeadLetter:
        encoding: Literal["utf-8", "base64"]
        try:
            text, encoding = raw.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(raw).decode("ascii"), "base64"
        return cls(
            request_id=request_id,
            reason=reason,
            raw=text,
            raw_encoding=encoding,
            source=source,
            offset=offset,
            received_at=datetime.now(UTC),
        )

    def original_bytes(self) -> bytes:
        if self.raw_encoding == "base64":
            return base64.b64decode(self.raw)
        return self.raw.encode("utf-8")

    @property
    def dead_letter_id(self) -> str:
        """Stable id, so replaying the same bad message is idempotent too."""
        digest = hashlib.sha256()
        digest.update(self.source.encode())
        digest.update(str(self.offset).encode())
        digest.update(self.original_bytes())
        return digest.hexdigest()


def describe_validation_error(
    error: ValidationError, origin: Mapping[str, str] | None = None
) -> str:
    """The first few failures as `field: message`; `origin` names where an adapter read each
    schema field from, so a foreign payload's dead letter names the field in its own terms."""
    parts = []
    for item in error.errors(include_url=False)[:5]:
        location = ".".join(str(p) for p in item["loc"]) or "event"
        source = (origin or {}).get(str(item["loc"][0])) if item["loc"] else None
        if source:
            location = f"{location} (from {source})"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)


class Unmappable(ValueError):
    """A foreign payload that does not map onto schema v1; the message names the field."""

    def __init__(self, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class Mapper(Protocol):
    """Turns one foreign log document (LiteLLM, OpenTelemetry, ...) into a schema-v1 document,
    raising `Unmappable` when a field it needs is missing or of the wrong type."""

    @property
    def name(self) -> str: ...

    @property
    def origin(self) -> Mapping[str, str]:
        """Schema-v1 field -> where the mapper reads it (named in dead letters)."""
        ...

    def __call__(self, document: dict[str, Any]) -> dict[str, Any]: ...


def nesting_depth(document: Any) -> int:
    """How deep objects and arrays nest in a parsed JSON value (a scalar is 0, `{}` is 1)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            children: Iterable[Any] = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _request_id_of(document: Any) -> str | None:
    """The document's request id when it names a plausible one (dead letters keep it)."""
    if isinstance(document, dict):
        value = document.get("request_id")
        if isinstance(value, str) and 0 < len(value) <= 512:
            return value
    return None


def parse_event(
    raw: bytes | str,
    source: str,
    offset: int | None = None,
    max_bytes: int = 8 * 1024 * 1024,
    mapper: Mapper | None = None,
) -> Event | DeadLetter:
    """Parse one raw message; return an `Event`, or a `DeadLetter` saying why not. Never raises.

    With a `mapper` the message is a foreign log document (`core.formats`): the same byte,
    JSON and depth checks, then the mapping, then the same schema-v1 validation."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)

    def dead(reason: str, document: Any = None) -> DeadLetter:
        return DeadLetter.from_bytes(data, reason, source, offset, _request_id_of(document))

    if len(data) > max_bytes:
        return dead(f"too_large: {len(data)} bytes exceeds the {max_bytes}-byte limit")
    if not data.strip():
        return dead("empty: no content")
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return dead(f"invalid_utf8: {exc.reason} at byte {exc.start}")
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        return dead(f"invalid_json: {exc}")
    if not isinstance(document, dict):
        return dead(f"not_an_object: expected a JSON object, got {type(document).__name__}")
    # Nesting cannot exceed the count of opening brackets: that bound spares nearly every
    # event the walk over its parsed values.
    if data.count(b"{") + data.count(b"[") > MAX_DEPTH:
        depth = nesting_depth(document)
        if depth > MAX_DEPTH:
            return dead(f"too_deep: nesting {depth} exceeds {MAX_DEPTH}", document)
    origin: Mapping[str, str] | None = None
    if mapper is not None:
        origin = mapper.origin
        try:
            document = mapper(document)
        except Unmappable as exc:
            return DeadLetter.from_bytes(
                data, f"unmapped: {mapper.name}: {exc}", source, offset, exc.request_id
            )
        except ValidationError as exc:
            return dead(f"unmapped: {mapper.name}: {describe_validation_error(exc)}")
        except (ValueError, TypeError, LookupError, RecursionError) as exc:  # defensive
            return dead(f"unmapped: {mapper.name}: {exc!r}")
    try:
        return Event.model_validate(document)
    except ValidationError as exc:
        return dead(f"invalid_event: {describe_validation_error(exc, origin)}", document)
    except (ValueError, TypeError, RecursionError) as exc:  # defensive: validators of extras
        return dead(f"invalid_event: {exc}", document)


def event_json(event: Event) -> bytes:
    """The event as schema-v1 JSON: what an event mapped from a foreign log is published as,
    and parses back to an equal event (same `content_hash`)."""
    return orjson.dumps(event.model_dump(mode="json", exclude_none=True))


def group_by_account(items: Iterable[AccountItem]) -> dict[str, list[AccountItem]]:
    """Items (events, features) per account, each account's in arrival order."""
    grouped: dict[str, list[AccountItem]] = {}
    for item in items:
        grouped.setdefault(item.account_id, []).append(item)
    return grouped


def account_histories(events: Iterable[Event]) -> dict[str, list[Event]]:
    """Each account's events in time order: the shape calibration replays benign history in."""
    histories = group_by_account(events)
    for history in histories.values():
        history.sort(key=lambda e: e.timestamp_ms)
    return histories
