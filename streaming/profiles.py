"""Where workers publish their accounts' profile updates for the one campaign linker: a
compacted Kafka topic with one partition, keyed by account (and by stream for progress marks).

One partition keeps every update in the order the workers wrote them (so a stream's progress
mark follows the updates it covers) and lets a consumer group give the topic to exactly one
linker at a time. Compaction keeps the topic's size bounded by the number of accounts;
`min.compaction.lag.ms` keeps every update for a day first, so a linker that is less than a day
behind reads every update. Publishing happens at a checkpoint, after the store flushed the
account states (the linker reads member windows there) and before offsets are committed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kafka import KafkaProducer

from detectors.campaigns.feed import ProfileUpdate, StreamProgress
from streaming.kafka import Kafka, ensure_topic

COMPACTION = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": str(24 * 3_600_000),
    "max.message.bytes": str(16 * 1024 * 1024),
}


class ProfilePublisher(Protocol):
    def add(self, updates: Sequence[ProfileUpdate], progress: Sequence[StreamProgress]) -> None:
        """Buffer one step's updates, then its streams' progress."""
        ...

    def flush(self) -> None:
        """Everything added is durable in the topic (raises otherwise)."""
        ...


def ensure_profiles_topic(kafka: Kafka, topic: str) -> None:
    """Create the compacted single-partition profiles topic if it does not exist (idempotent)."""
    ensure_topic(kafka, topic, 1, COMPACTION)


class _Buffered:
    """A step's messages, as the topic carries them, held until `flush`."""

    def __init__(self) -> None:
        self._pending: list[tuple[bytes, bytes]] = []

    def add(self, updates: Sequence[ProfileUpdate], progress: Sequence[StreamProgress]) -> None:
        self._pending += [u.message() for u in updates]
        self._pending += [p.message() for p in progress]


class KafkaProfilePublisher(_Buffered):
    """Profile updates to the profiles topic through the worker's producer."""

    def __init__(self, producer: KafkaProducer, topic: str) -> None:
        super().__init__()
        self.producer = producer
        self.topic = topic

    def flush(self) -> None:
        futures = [
            self.producer.send(self.topic, key=key, value=value) for key, value in self._pending
        ]
        self.producer.flush()
        for future in futures:
            future.get(timeout=30)  # raises if the broker refused a write
        self._pending = []


class MemoryPublisher(_Buffered):
    """Updates kept in memory as the messages Kafka would carry (tests, in-process fan-in)."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[tuple[bytes, bytes]] = []

    def flush(self) -> None:
        self.messages += self._pending
        self._pending = []
