"""The one loop every entry point runs: source → pipeline → checkpoint → commit.

The Kafka worker, `replay`, `score` and the demo differ only in their source, their sinks and
what they do when a sink fails: the worker retries with backoff (`durably`), a file run raises.
Offsets are committed only after a checkpoint flushed every sink (at-least-once).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol, TypeVar

from core.batch import Batch
from core.records import SourceRecord
from core.verdicts import Verdict
from streaming.pipeline import Pipeline
from streaming.sources import Source

T = TypeVar("T")
OnBatch = Callable[[list[SourceRecord], Batch, float], None]  # records, batch, seconds taken


class Durably(Protocol):
    """How a step that needs the sinks is run: (True, its value) once it worked, (False, None)
    when the run must stop with the step undone (its offsets stay uncommitted)."""

    def __call__(self, step: Callable[[], T]) -> tuple[bool, T | None]: ...


def once(step: Callable[[], T]) -> tuple[bool, T | None]:
    """Run the step; a failure raises (a file run has nobody to wait for)."""
    return True, step()


def freeze_startup_heap() -> None:
    """A long-running role calls this once it is built: the model, the calibration and the
    classifiers live as long as the process, so they leave the collector's full passes, which
    otherwise walk all of them again every few batches (3% of a MiniLM worker's time)."""
    gc.collect()
    gc.freeze()


def run(
    source: Source,
    pipeline: Pipeline,
    *,
    stop: threading.Event | None = None,
    durably: Durably = once,
    on_poll: Callable[[], None] | None = None,
    on_batch: OnBatch | None = None,
) -> None:
    """Drive `pipeline` from `source` until the source ends or `stop` is set; closes the source.

    Each batch is processed, checkpointed (every sink flushed, state last), then committed.
    `on_poll` runs after every poll (empty ones too), `on_batch` after every commit.
    """
    source.on_revoked(pipeline.forget_streams)
    batches = source.batches()
    try:
        while stop is None or not stop.is_set():
            records = next(batches, None)
            if records is None:  # the input ended (a file): conclude what was held back
                finished, batch = durably(pipeline.finish)
                if finished and durably(pipeline.checkpoint)[0] and on_batch is not None:
                    assert batch is not None
                    on_batch([], batch, 0.0)
                break
            if on_poll is not None:
                on_poll()
            if not records:
                continue
            started = time.perf_counter()
            # `process` reads account checkpoints from the store before changing any state,
            # so retrying it after a store failure is safe.
            processed, batch = durably(partial(pipeline.process, records))
            if not processed or not durably(pipeline.checkpoint)[0]:
                break
            assert batch is not None
            source.commit()
            if on_batch is not None:
                on_batch(records, batch, time.perf_counter() - started)
    finally:
        source.close()


@dataclass
class Totals:
    """What a run did, for the closing summary and progress bars."""

    batches: int = 0
    records: int = 0
    events: int = 0
    dead_letters: int = 0
    replayed: int = 0
    duplicates: int = 0
    verdicts: list[Verdict] = field(default_factory=list)

    def add(self, batch: Batch) -> None:
        self.batches += 1
        self.records += batch.records
        self.events += len(batch.events)
        self.dead_letters += len(batch.dead_letters)
        self.replayed += batch.replayed
        self.duplicates += batch.duplicates
        self.verdicts.extend(batch.verdicts)
