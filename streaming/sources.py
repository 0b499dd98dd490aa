"""Where records come from: the one `Source` protocol that Kafka and files implement, so every
entry point drives the pipeline through the same loop (`streaming.loop.run`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from core.records import SourceRecord

Revoked = Callable[[set[str]], object]  # called with the streams (partitions) taken away


class Source(Protocol):
    """Batches of records in order, and a commit once a checkpoint has made them durable."""

    def batches(self) -> Iterator[list[SourceRecord]]:
        """Batches until the source is exhausted (a file) or forever (Kafka). A batch may be
        empty: a poll that timed out, a chance for the loop to check whether to stop."""
        ...

    def commit(self) -> None:
        """Everything yielded so far is in every sink: do not deliver it again."""
        ...

    def on_revoked(self, callback: Revoked) -> None:
        """Call `callback` with the streams this source stops reading (a rebalance), so the
        pipeline drops their accounts' state before another worker takes them over."""
        ...

    def close(self) -> None:
        """Release the source (leave the consumer group, close the file)."""
        ...


def records_from_lines(lines: Iterable[bytes], stream: str, start: int = 0) -> list[SourceRecord]:
    """Wrap raw lines as records of one stream, numbered from `start`."""
    return [
        SourceRecord(value=line.rstrip(b"\r\n"), stream=stream, offset=start + i)
        for i, line in enumerate(lines)
    ]
