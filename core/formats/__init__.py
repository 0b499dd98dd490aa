"""Log formats: how a gateway's request log becomes schema-v1 events, for every entry point.

`produce`, `replay`, `score`, `calibrate` and `POST /v1/events` read their input through one
`LogFormat`: `units` cuts a line into messages (one for every format but OpenTelemetry, whose
exports hold many spans), `parse` turns one into the same `Event` the native parser returns, or
a `DeadLetter` whose reason names the field that did not map (`unmapped: FORMAT: FIELD: why`)
and that keeps the message's bytes. Downstream nothing knows the input was foreign; Kafka
always carries schema v1 (`wire`), keyed by account.

    >>> fmt = log_format("litellm")
    >>> event = fmt.parse(b'{"id": "c-1", "startTime": 1.7e9, "messages": "Hi", '
    ...                   b'"metadata": {"user_api_key_user_id": "acct-1"}}', "doc")
    >>> event.request_id, event.account_id, event.prompt, event.timestamp.isoformat()
    ('c-1', 'acct-1', 'Hi', '2023-11-14T22:13:20+00:00')
    >>> fmt.parse(b'{"id": "c-2", "messages": "Hi", "metadata": {}}', "doc").reason
    'unmapped: litellm: startTime: Field required'
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from core.events import DeadLetter, Event, event_json, parse_event
from core.formats.common import Adapter
from core.formats.litellm import LiteLLM
from core.formats.mapping import FieldMapping
from core.formats.openai_batch import OpenAIBatch
from core.formats.otel import OpenTelemetry, split

NATIVE = "distillguard"
FORMATS = (NATIVE, "litellm", "otel", "openai-batch", "mapping:PATH")
MAX_EVENT_BYTES = 8 * 1024 * 1024
Parse = Callable[[bytes, str, int | None, int], Event | DeadLetter]


class FormatError(ValueError):
    """A format that cannot be used as given (unknown name, no account, a bad mapping file)."""


def _one(line: bytes) -> list[bytes]:
    return [line]


@dataclass(frozen=True)
class LogFormat:
    """One input format: how to cut lines into messages and parse each one."""

    name: str = NATIVE
    adapter: Adapter | None = None  # None: schema v1 itself
    account: str | None = None  # the account of events whose payload names none
    split: Callable[[bytes], list[bytes]] = _one

    @property
    def native(self) -> bool:
        return self.adapter is None

    @property
    def origin(self) -> Mapping[str, str]:
        return self.adapter.origin if self.adapter is not None else {}

    def __call__(self, document: dict[str, Any]) -> dict[str, Any]:
        """The `core.events.Mapper` of this format: the adapter, then the fallback account."""
        assert self.adapter is not None
        fields = self.adapter.map(document)
        if fields.get("account_id") is None and self.account is not None:
            fields["account_id"] = self.account
        return {key: value for key, value in fields.items() if value is not None}

    def parse(
        self,
        raw: bytes | str,
        source: str,
        offset: int | None = None,
        max_bytes: int = MAX_EVENT_BYTES,
    ) -> Event | DeadLetter:
        """`core.events.parse_event` of one message of this format; never raises."""
        return parse_event(raw, source, offset, max_bytes, None if self.native else self)

    def units(self, lines: Iterable[bytes]) -> Iterator[bytes]:
        """The messages of raw lines (line ends stripped)."""
        for line in lines:
            yield from self.split(line.rstrip(b"\r\n"))

    def wire(self, unit: bytes, event: Event) -> bytes:
        """What a valid message is published to Kafka as: the message itself when it is schema
        v1 already, else the event as schema-v1 JSON."""
        return unit if self.native else event_json(event)


def log_format(
    spec: str = NATIVE, *, account: str | None = None, start: datetime | None = None
) -> LogFormat:
    """The format a `--format` / `format=` value names. `account` is the account of events
    whose payload names none (required for `openai-batch`, whose lines never do); `start` is
    when an `openai-batch` file was submitted (its lines' timestamp)."""
    spec = spec.strip()
    if spec == NATIVE:
        if account is not None:
            raise FormatError("schema-v1 events name their own account: drop --account")
        return LogFormat()
    if spec == "litellm":
        return LogFormat(spec, LiteLLM(), account)
    if spec == "otel":
        return LogFormat(spec, OpenTelemetry(), account, split)
    if spec == "openai-batch":
        if not account:
            raise FormatError("openai-batch lines name no account: give the batch's account")
        if start is None:
            raise FormatError("openai-batch lines carry no time: give the batch's start")
        return LogFormat(spec, OpenAIBatch(account, start), account)
    if spec.startswith("mapping:"):
        try:
            adapter = FieldMapping(Path(spec.removeprefix("mapping:")))
        except ValueError as exc:
            raise FormatError(str(exc)) from exc
        return LogFormat(adapter.name, adapter, account)
    raise FormatError(f"unknown log format {spec!r}: one of {', '.join(FORMATS)}")
