"""Sinks, Quix-Streams style: `write(batch)` per pipeline step, `flush()` at a checkpoint.

A flush that fails raises, and the checkpoint is aborted: offsets are committed only when every
sink has the data. A flush that failed because a service is unavailable (`is_transient`) keeps
its buffer, so retrying it loses nothing; one that failed for any other reason drops it, since
the same data would fail again and hold up every later batch. Rows the store refuses for their
values never fail a flush: the store sink writes the rest and dead-letters those events.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import IO, Protocol

import orjson
from kafka.errors import KafkaError, MessageSizeTooLargeError

from core.batch import Batch, IngestedEvent
from core.events import DeadLetter
from storage import Store, StoreError
from storage.base import Rejection, Row, RowsRejected
from storage.rows import (
    RedactPolicy,
    account_state_row,
    cluster_row,
    dead_letter_row,
    fingerprint_row,
    ingested_event_row,
    verdict_row,
)

log = logging.getLogger("distillguard.sinks")


def is_transient(error: BaseException) -> bool:
    """Whether `error` says a service is unavailable (store down, broker unreachable, disk
    full), so the same step may work later, rather than that the data itself is unwritable."""
    if isinstance(error, RowsRejected | MessageSizeTooLargeError):
        return False
    return isinstance(error, StoreError | KafkaError | OSError)


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
        try:
            self._write(self.pending)
        except Exception as exc:
            if not is_transient(exc):
                pending = self.pending
                log.error(
                    "%s: dropped a batch it cannot write (%d events, %d dead letters, %d "
                    "verdicts): %r",
                    self.name,
                    len(pending.events),
                    len(pending.dead_letters),
                    len(pending.verdicts),
                    exc,
                )
                self.pending = Batch()
            raise
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
        refused = self.store.insert_valid("events", events, self.batch_size)
        letters = batch.dead_letters + [_refused(batch.events[r.index], r) for r in refused]
        self._insert("response_fingerprints", [fingerprint_row(f) for f in batch.fingerprints])
        self._insert("dead_letters", [dead_letter_row(d) for d in letters])
        self._insert("verdicts", [verdict_row(v) for v in batch.verdicts])
        self._insert("clusters", [cluster_row(c) for c in batch.clusters])
        self._insert("account_state", [account_state_row(s) for s in batch.states])

    def _insert(self, table: str, rows: list[Row]) -> None:
        """Rows derived by the pipeline, not taken from input: one the store refuses is a bug,
        logged, and never allowed to hold up the rest."""
        for rejection in self.store.insert_valid(table, rows, self.batch_size):
            log.error("%s: row %d refused: %s", table, rejection.index, rejection.reason)


def _refused(item: IngestedEvent, rejection: Rejection) -> DeadLetter:
    """The dead letter of an event whose row the store refused (the pipeline's check at parse
    time should have caught it; this is the backstop)."""
    record = item.record
    return DeadLetter.from_bytes(
        record.value,
        f"unstorable: {rejection.reason}",
        record.stream,
        record.offset,
        item.event.request_id,
    )


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


# Below the broker's default `message.max.bytes` (1 MiB) with room for the record's overhead.
DLQ_MAX_BYTES = 900_000


def dlq_value(letter: DeadLetter, max_bytes: int = DLQ_MAX_BYTES) -> bytes:
    """The dead letter as the DLQ topic's JSON, its `raw` cut short (`raw_truncated`, with the
    original `raw_length`) when the whole would not fit one message: escaping can make a 200 KB
    message six times longer, and a letter the broker refuses would be retried forever. The
    `dead_letters` table keeps the whole of it."""
    document = letter.model_dump(mode="json")
    value = orjson.dumps(document)
    raw = document["raw"]
    keep = len(raw)
    while len(value) > max_bytes and keep > 0:
        keep = keep * max_bytes // len(value) * 9 // 10
        keep -= keep % 4  # base64 stays decodable
        document.update(raw=raw[:keep], raw_truncated=True, raw_length=len(raw))
        value = orjson.dumps(document)
    return value


class DeadLetterTopicSink(BufferedSink):
    """Dead letters to the Kafka topic `api-requests.dlq` (JSON, keyed by source position)."""

    name = "dlq-topic"

    def __init__(
        self, producer, topic: str, timeout_s: float = 30.0, max_bytes: int = DLQ_MAX_BYTES
    ) -> None:
        super().__init__()
        self.producer = producer
        self.topic = topic
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes

    def _write(self, batch: Batch) -> None:
        futures = [
            self.producer.send(
                self.topic,
                key=f"{letter.source}@{letter.offset}".encode(),
                value=dlq_value(letter, self.max_bytes),
                headers=[("reason", letter.reason.split(":")[0].encode())],
            )
            for letter in batch.dead_letters
        ]
        self.producer.flush(timeout=self.timeout_s)
        for future in futures:
            future.get(timeout=self.timeout_s)  # raises if the broker did not take it
