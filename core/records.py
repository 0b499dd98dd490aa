"""A raw message as any source hands it to the pipeline, and where a replayed log cuts its
batches."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

# A replayed log is cut into batches of at most this many requests of one account, as a live
# worker's polls would hold them (`ReplayCuts`): a 2,000-record batch of a log
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


class ReplayCuts:
    """Where a replay cuts its batches: at `size` records, or when one account has
    `per_account` requests in the batch (0: never)."""

    def __init__(self, size: int, per_account: int = REPLAY_PER_ACCOUNT) -> None:
        self.size, self.per_account = size, per_account
        self._records = 0
        self._counts: Counter[str] = Counter()

    def cut_after(self, account: str | None) -> bool:
        """Count one record (its account, None when it has none); True when the batch ends
        with it."""
        self._records += 1
        full = self._records >= self.size
        if self.per_account and account is not None:
            self._counts[account] += 1
            full |= self._counts[account] >= self.per_account
        if full:
            self._records = 0
            self._counts.clear()
        return full
