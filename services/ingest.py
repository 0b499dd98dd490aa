"""HTTP ingest (`POST /v1/events`): the same validation and dead letters as the worker.

With Kafka (the default deployment) valid events are produced to the request topic, keyed by
account, and the call returns only once the broker has acknowledged them; malformed ones go to
the dead-letter topic and table with the reason and the original bytes. The worker later
consumes the topic through the one pipeline. In the embedded demo there is no broker: the batch
runs through the pipeline in-process and is checkpointed to the store before the call returns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from core.batch import Batch
from core.events import DeadLetter, Event
from core.formats import LogFormat
from streaming.pipeline import Pipeline
from streaming.sinks import Sink
from streaming.sources import records_from_lines

STREAM = "http"
NATIVE = LogFormat()


@dataclass
class IngestResult:
    accepted: int = 0
    dead_letters: list[dict] = field(default_factory=list)  # {"index": i, "reason": ...}
    duplicates: int = 0  # identical resends of stored events (in-process pipeline only)


class HttpOffsets:
    """Positions in the `http` stream: each batch gets the next free range, starting from the
    microsecond clock so positions keep rising across restarts. Batches posted within the same
    microseconds must not share positions: the pipeline would take the later ones for
    redeliveries of the earlier (not counted) and their dead letters would share ids."""

    def __init__(self) -> None:
        self._next = 0
        self._lock = threading.Lock()

    def take(self, count: int) -> int:
        """The first of `count` positions no other batch of this process has."""
        with self._lock:
            start = max(time.time_ns() // 1000, self._next)
            self._next = start + count
        return start


class Ingestor(Protocol):
    def ingest(self, lines: list[bytes], log_format: LogFormat = NATIVE) -> IngestResult:
        """Take a posted batch of `log_format` (its messages: `LogFormat.units`)."""
        ...


def _result(start: int, count: int, dead: list[DeadLetter], duplicates: int = 0) -> IngestResult:
    """What the caller learns: how many of its `count` events were taken, and which ones (by
    position in its batch, the `http` stream's offsets starting at `start`) were not, and why."""
    return IngestResult(
        accepted=count - len(dead),
        dead_letters=sorted(
            ({"index": d.offset - start, "reason": d.reason} for d in dead),
            key=lambda d: d["index"],
        ),
        duplicates=duplicates,
    )


class KafkaIngestor:
    """Validate, produce valid lines to `topic`, dead letters to the DLQ topic and table."""

    def __init__(
        self,
        producer,
        topic: str,
        dlq: Sink,
        table: Sink,
        max_event_bytes: int = 8 * 1024 * 1024,
    ) -> None:
        self.producer = producer
        self.max_event_bytes = max_event_bytes
        self.topic = topic
        self.dlq = dlq
        self.table = table
        self._lock = threading.Lock()
        self._offsets = HttpOffsets()

    def ingest(self, lines: list[bytes], log_format: LogFormat = NATIVE) -> IngestResult:
        units = list(log_format.units(lines))
        start = self._offsets.take(len(units))
        items = [
            log_format.parse(unit, STREAM, start + i, self.max_event_bytes)
            for i, unit in enumerate(units)
        ]
        futures = [
            self.producer.send(
                self.topic, key=item.account_id.encode(), value=log_format.wire(unit, item)
            )
            for unit, item in zip(units, items, strict=True)
            if isinstance(item, Event)
        ]
        dead = [item for item in items if isinstance(item, DeadLetter)]
        with self._lock:
            batch = Batch(dead_letters=dead)
            for sink in (self.dlq, self.table):
                sink.write(batch)
                sink.flush()
        self.producer.flush(timeout=30)
        for future in futures:
            future.get(timeout=30)  # raises unless the broker acknowledged the event
        return _result(start, len(units), dead)


class PipelineIngestor:
    """The embedded demo: run the batch through the pipeline and checkpoint it."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self._lock = threading.Lock()  # the pipeline's detector state is not thread-safe
        self._offsets = HttpOffsets()

    def ingest(self, lines: list[bytes], log_format: LogFormat = NATIVE) -> IngestResult:
        """Process and checkpoint one batch. When the store is down the call raises and the
        batch stays buffered for the next checkpoint (a resend is then a duplicate); a batch
        the store cannot take for its data never stays (see `streaming.sinks`)."""
        units = list(log_format.units(lines))
        start = self._offsets.take(len(units))
        with self._lock:
            records = records_from_lines(units, STREAM, start)
            batch = self.pipeline.process(records, parse=log_format.parse)
            self.pipeline.checkpoint()
        return _result(start, len(units), batch.dead_letters, batch.duplicates)


class LazyIngestor:
    """Builds the real ingestor on the first batch, so serving the API loads no detector and
    opens no producer until someone ingests."""

    def __init__(self, build: Callable[[], Ingestor]) -> None:
        self._build = build
        self._ingestor: Ingestor | None = None
        self._lock = threading.Lock()

    def ingest(self, lines: list[bytes], log_format: LogFormat = NATIVE) -> IngestResult:
        with self._lock:
            if self._ingestor is None:
                self._ingestor = self._build()
        return self._ingestor.ingest(lines, log_format)
