"""Sinks, Quix-Streams style: `write(batch)` per pipeline step, `flush()` at a checkpoint.

A flush that fails raises, and the checkpoint is aborted: offsets are committed only when every
sink has the data. A failed flush keeps its buffer, so retrying the flush loses nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import IO, Protocol

import orjson

from core.batch import Batch
from storage import Store
from storage.rows import (
    RedactPolicy,
    account_state_row,
    cluster_row,
    dead_letter_row,
    fingerprint_row,
    ingested_event_row,
    verdict_row,
)


class Sink(Protocol):
    """Where a checkpoint's results go."""

    name: str

    def write(self, batch: Batch) -> None:
        """Take a step's results (buffered until `flush`)."""
        ...

    def flush(self) -> None:
        """Make everything written so far durable, or raise and keep it for a retry."""
        ...


class BufferedSink:
    """Keeps what was written until a flush succeeds; subclasses write the buffer out."""

    name = "buffer"

    def __init__(self) -> None:
        self.pending = Batch()

    def write(self, batch: Batch) -> None:
        self.pending.extend(batch)

    def flush(self) -> None:
        self._write(self.pending)
        self.pending = Batch()

    def _write(self, batch: Batch) -> None:
        raise NotImplementedError


class StoreSink(BufferedSink):
    """Events, response fingerprints, dead letters, verdicts, campaigns, then account state:
    state last, so a crash between the writes replays the batch against the old state
    (idempotent on `request_id`). Prompt and response text are redacted as configured."""

    name = "store"

    def __init__(
        self,
        store: Store,
        batch_size: int = 10_000,
        redact_policy: RedactPolicy = "none",
        redact_truncate_chars: int = 200,
    ) -> None:
        super().__init__()
        self.store = store
        self.batch_size = batch_size
        self.redact_policy = redact_policy
        self.redact_truncate_chars = redact_truncate_chars

    def _write(self, batch: Batch) -> None:
        # Each table is written at most once per successful flush; a retry after a failure
        # rewrites from the start, which is harmless because every table is idempotent.
        events = [
            ingested_event_row(e, self.redact_policy, self.redact_truncate_chars)
            for e in batch.events
        ]
        self.store.insert("events", events, self.batch_size)
        fingerprints = [fingerprint_row(f) for f in batch.fingerprints]
        self.store.insert("response_fingerprints", fingerprints, self.batch_size)
        self.store.insert("dead_letters", [dead_letter_row(d) for d in batch.dead_letters])
        self.store.insert("verdicts", [verdict_row(v) for v in batch.verdicts])
        self.store.insert("clusters", [cluster_row(c) for c in batch.clusters])
        self.store.insert("account_state", [account_state_row(s) for s in batch.states])


class VerdictFileSink(BufferedSink):
    """Verdicts as JSON lines, exactly the verdict schema (what `score --out` writes)."""

    name = "verdict-file"

    def __init__(self, path: Path) -> None:
        super().__init__()
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._handle: IO[bytes] = path.open("wb")

    def _write(self, batch: Batch) -> None:
        for verdict in batch.verdicts:
            self._handle.write(orjson.dumps(verdict.model_dump(mode="json")) + b"\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class DeadLetterTopicSink(BufferedSink):
    """Dead letters to the Kafka topic `api-requests.dlq` (JSON, keyed by source position)."""

    name = "dlq-topic"

    def __init__(self, producer, topic: str, timeout_s: float = 30.0) -> None:
        super().__init__()
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s

    def _write(self, batch: Batch) -> None:
        futures = [
            self.producer.send(
                self.topic,
                key=f"{letter.source}@{letter.offset}".encode(),
                value=orjson.dumps(letter.model_dump(mode="json")),
                headers=[("reason", letter.reason.split(":")[0].encode())],
            )
            for letter in batch.dead_letters
        ]
        self.producer.flush(timeout=self.timeout_s)
        for future in futures:
            future.get(timeout=self.timeout_s)  # raises if the broker did not take it
