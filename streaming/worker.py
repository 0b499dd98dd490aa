"""`distillguard worker`: the Kafka consumer-group worker.

Loop: poll a batch → pipeline.process → checkpoint (every sink flushed, state last) → commit the
offsets. When a sink fails (ClickHouse down) the worker stops consuming and retries the same
checkpoint with exponential backoff, logging one line when it goes down and one when it is back.
SIGTERM finishes the batch in flight, then leaves the group.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from kafka.errors import KafkaError
from prometheus_client import Counter, Gauge, Histogram, start_http_server
from tenacity import RetryCallState, Retrying, retry_if_exception_type, wait_exponential_jitter

from core.records import SourceRecord
from core.timeutil import now_ms
from storage import StoreError
from streaming.kafka import KafkaSource
from streaming.pipeline import BatchResult, Pipeline

log = logging.getLogger("distillguard.worker")
T = TypeVar("T")

CONSUMED = Counter("distillguard_events_consumed_total", "Raw messages consumed from Kafka")
DEAD_LETTERED = Counter("distillguard_dead_letters_total", "Messages that failed validation")
VERDICTS = Counter("distillguard_verdicts_total", "Verdicts emitted", ["label"])
BATCH_SECONDS = Histogram(
    "distillguard_batch_seconds",
    "Process + checkpoint time of one batch",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
)
EVENT_TO_VERDICT = Histogram(
    "distillguard_event_to_verdict_seconds",
    "From the message's Kafka timestamp to its batch's verdicts being durable",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
LAG = Gauge("distillguard_consumer_lag", "Messages behind the end of assigned partitions")
SINKS_UP = Gauge("distillguard_sinks_up", "1 when the last checkpoint succeeded, 0 while retrying")


@dataclass
class WorkerStats:
    batches: int = 0
    consumed: int = 0
    dead_letters: int = 0
    verdicts: int = 0


class Worker:
    """Drives one `Pipeline` from one `KafkaSource`; run several in one group to scale out."""

    def __init__(
        self,
        pipeline: Pipeline,
        source: KafkaSource,
        lag_every_s: float = 5.0,
        max_backoff_s: float = 5.0,
        on_batch: Callable[[list[SourceRecord], BatchResult, int], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.source = source
        self.stop = threading.Event()
        self.stats = WorkerStats()
        self.lag_every_s = lag_every_s
        self.max_backoff_s = max_backoff_s
        self._down_since: float | None = None
        self.on_batch = on_batch  # (records, result, durable_ms): benchmarks measure latency

    def install_signal_handlers(self) -> None:
        def request_stop(signum: int, _frame: object) -> None:
            log.info(
                "%s: finishing the batch in flight, then stopping", signal.Signals(signum).name
            )
            self.stop.set()

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)

    def _log_failure(self, retry_state: RetryCallState) -> None:
        if self._down_since is None:
            self._down_since = time.monotonic()
            SINKS_UP.set(0)
            log.warning(
                "sinks unavailable (%s): paused consuming, retrying with backoff",
                retry_state.outcome.exception() if retry_state.outcome else "?",
            )

    def _until_durable(self, step: Callable[[], T]) -> tuple[bool, T | None]:
        """Run a step that needs the sinks, retrying with backoff until it works (True, value) or
        a stop is requested (False: the batch's offsets stay uncommitted; it is redelivered)."""
        retrying = Retrying(
            retry=retry_if_exception_type((StoreError, KafkaError, OSError)),
            wait=wait_exponential_jitter(initial=0.5, max=self.max_backoff_s),
            stop=lambda _state: self.stop.is_set(),
            before_sleep=self._log_failure,
            sleep=self.stop.wait,
            reraise=True,
        )
        try:
            value = retrying(step)
        except (StoreError, KafkaError, OSError):
            log.warning("stopping with an unflushed batch; its offsets stay uncommitted")
            return False, None
        if self._down_since is not None:
            log.warning(
                "sinks back after %.1f s: resumed consuming", time.monotonic() - self._down_since
            )
            self._down_since = None
        SINKS_UP.set(1)
        return True, value

    def run(self) -> WorkerStats:
        """Consume until `stop` is set; never lets a poison message or an outage end the loop."""
        SINKS_UP.set(1)
        next_lag = 0.0
        try:
            while not self.stop.is_set():
                records = self.source.poll(timeout_ms=500)
                if time.monotonic() >= next_lag:
                    LAG.set(self.source.lag())
                    next_lag = time.monotonic() + self.lag_every_s
                if not records:
                    continue
                started = time.perf_counter()
                # `process` reads account checkpoints from the store before changing any state,
                # so retrying it after a store failure is safe.
                processed, result = self._until_durable(partial(self.pipeline.process, records))
                if not processed or not self._until_durable(self.pipeline.checkpoint)[0]:
                    break
                assert result is not None
                self.source.commit()
                durable_ms = now_ms()
                BATCH_SECONDS.observe(time.perf_counter() - started)
                for record in records:
                    if record.timestamp_ms:
                        EVENT_TO_VERDICT.observe((durable_ms - record.timestamp_ms) / 1000)
                if self.on_batch is not None:
                    self.on_batch(records, result, durable_ms)
                CONSUMED.inc(result.records)
                DEAD_LETTERED.inc(result.dead_letters)
                for verdict in result.verdicts:
                    VERDICTS.labels(verdict.label).inc()
                self.stats.batches += 1
                self.stats.consumed += result.records
                self.stats.dead_letters += result.dead_letters
                self.stats.verdicts += len(result.verdicts)
        finally:
            self.source.close()
        return self.stats


def serve_metrics(port: int) -> None:
    """Expose Prometheus metrics on 127.0.0.1:port (0 disables)."""
    if port:
        start_http_server(port, addr="127.0.0.1")
