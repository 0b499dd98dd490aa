"""A raw message as any source hands it to the pipeline."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """Raw bytes plus where they came from: `stream` names a partition ("kafka:api-requests/3",
    "file:requests.jsonl") and `offset` orders records within it."""

    value: bytes
    stream: str
    offset: int
    key: bytes | None = None
    timestamp_ms: int | None = None  # when the source received it (Kafka CreateTime)
