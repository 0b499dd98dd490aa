"""A raw message as any source hands it to the pipeline."""

from __future__ import annotations

from dataclasses import dataclass

# A replayed log is cut into batches of at most this many requests of one account, as a live
# worker's polls would hold them (`streaming.files.ReplayCuts`): a 2,000-record batch of a log
# spans days, and an account assessed once per batch is assessed less often than the stream
# that wrote the log assessed it.
REPLAY_PER_ACCOUNT = 5


@dataclass(frozen=True, slots=True)
class SourceRecord:
    """Raw bytes plus where they came from: `stream` names a partition ("kafka:api-requests/3",
    "file:requests.jsonl") and `offset` orders records within it."""

    value: bytes
    stream: str
    offset: int
    key: bytes | None = None
    timestamp_ms: int | None = None  # when the source received it (Kafka CreateTime)
