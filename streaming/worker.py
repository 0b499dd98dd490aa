"""`distillguard worker`: the Kafka consumer-group worker.

The one loop (`streaming.loop.run`): poll a batch → pipeline.process → checkpoint (every sink
flushed, state last) → commit the offsets. The worker adds metrics (among them calibration
drift: the live share of flagged accounts against the calibration's held-out benign rate, with
a rate-limited warning line; see `detectors.drift.DriftMonitor`) and, when a sink fails
(ClickHouse down), stops consuming and retries the same checkpoint with exponential backoff,
logging one line when it goes down and one when it is back. SIGTERM finishes the batch in
flight, then leaves the group.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from prometheus_client import Counter, Gauge, Histogram
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_exponential_jitter

from core.batch import Batch
from core.records import SourceRecord
from core.timeutil import now_ms
from detectors.base import calibration_of
from detectors.drift import DriftMonitor
from streaming.kafka import KafkaSource
from streaming.loop import freeze_startup_heap, run
from streaming.pipeline import Pipeline
from streaming.sinks import is_transient

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
MISKEYED = Counter(
    "distillguard_miskeyed_messages_total",
    "Kafka messages keyed by something other than their event's account_id (or by nothing): "
    "the topic must be keyed by account_id, or one account's requests spread over partitions",
)
MISKEYED_WARN_EVERY_S = 60.0
LAG = Gauge("distillguard_consumer_lag", "Messages behind the end of assigned partitions")
SINKS_UP = Gauge("distillguard_sinks_up", "1 when the last checkpoint succeeded, 0 while retrying")
CALIBRATION_DRIFT = Gauge(
    "distillguard_calibration_drift",
    "Signed -log10 p of the live flagged-account share under the calibration's held-out benign "
    "rate: > 0 more accounts flagged than calibrated, < 0 fewer, 0 within its 95% interval",
)
LIVE_FLAG_RATE = Gauge(
    "distillguard_live_flag_rate",
    "Share of recently active accounts flagged suspicious or above (sliding window of accounts)",
)
CALIBRATED_FLAG_RATE = Gauge(
    "distillguard_calibrated_flag_rate",
    "Share of held-out benign accounts the calibration flags suspicious or above",
)


@dataclass
class WorkerStats:
    batches: int = 0
    consumed: int = 0
    dead_letters: int = 0
    verdicts: int = 0


class Worker:
    """Drives one `Pipeline` from one `KafkaSource` through the one loop, with metrics and
    backoff while the sinks are down; run several in one group to scale out."""

    def __init__(
        self,
        pipeline: Pipeline,
        source: KafkaSource,
        lag_every_s: float = 5.0,
        max_backoff_s: float = 5.0,
        on_batch: Callable[[list[SourceRecord], Batch, int], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.source = source
        self.stop = threading.Event()
        self.stats = WorkerStats()
        self.lag_every_s = lag_every_s
        self.max_backoff_s = max_backoff_s
        self._down_since: float | None = None
        self._next_lag = 0.0
        self._miskeyed_warned = -MISKEYED_WARN_EVERY_S  # monotonic time of the last warning
        self._miskeyed_unreported = 0
        self.on_batch = on_batch  # (records, batch, durable_ms): benchmarks measure latency
        # None for a detector without a false-positive calibration (volume).
        self.drift = DriftMonitor.from_calibration(calibration_of(pipeline.detector))
        if self.drift is not None:
            CALIBRATED_FLAG_RATE.set(self.drift.expected)

    def healthy(self) -> bool:
        """False while the sinks are down (the worker paused consuming and retries)."""
        return self._down_since is None

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

    def _pause(self, seconds: float) -> None:
        """Back off between retries, waking at once when a stop is requested."""
        self.stop.wait(seconds)

    def _until_durable(self, step: Callable[[], T]) -> tuple[bool, T | None]:
        """Run a step that needs the sinks, retrying with backoff until it works (True, value) or
        a stop is requested (False: the batch's offsets stay uncommitted; it is redelivered).
        Only unavailability is retried (`is_transient`): data the store refuses never reaches
        this far (the pipeline dead-letters it), so no message can hold the worker here."""
        retrying = Retrying(
            retry=retry_if_exception(is_transient),
            wait=wait_exponential_jitter(initial=0.5, max=self.max_backoff_s),
            stop=lambda _state: self.stop.is_set(),
            before_sleep=self._log_failure,
            sleep=self._pause,
            reraise=True,
        )
        try:
            value = retrying(step)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.warning("stopping with an unflushed batch; its offsets stay uncommitted")
            return False, None
        if self._down_since is not None:
            log.warning(
                "sinks back after %.1f s: resumed consuming", time.monotonic() - self._down_since
            )
            self._down_since = None
        SINKS_UP.set(1)
        return True, value

    def _poll_lag(self) -> None:
        if time.monotonic() >= self._next_lag:
            LAG.set(self.source.lag())
            self._next_lag = time.monotonic() + self.lag_every_s

    def _count(self, records: list[SourceRecord], batch: Batch, seconds: float) -> None:
        durable_ms = now_ms()
        BATCH_SECONDS.observe(seconds)
        for record in records:
            if record.timestamp_ms:
                EVENT_TO_VERDICT.observe((durable_ms - record.timestamp_ms) / 1000)
        if self.on_batch is not None:
            self.on_batch(records, batch, durable_ms)
        CONSUMED.inc(batch.records)
        DEAD_LETTERED.inc(len(batch.dead_letters))
        for verdict in batch.verdicts:
            VERDICTS.labels(verdict.label).inc()
        self.stats.batches += 1
        self.stats.consumed += batch.records
        self.stats.dead_letters += len(batch.dead_letters)
        self.stats.verdicts += len(batch.verdicts)
        self._watch_keys(batch)
        self._watch_drift(batch)

    def _watch_keys(self, batch: Batch) -> None:
        """Count messages not keyed by their account_id, with a warning line at most every
        `MISKEYED_WARN_EVERY_S`: a producer that keys otherwise splits an account across
        partitions, so workers see parts of its history and arrival order is lost."""
        wrong = [
            item
            for item in batch.events
            if item.record.key != item.event.account_id.encode("utf-8", "surrogatepass")
        ]
        if not wrong:
            return
        MISKEYED.inc(len(wrong))
        self._miskeyed_unreported += len(wrong)
        now = time.monotonic()
        if now - self._miskeyed_warned < MISKEYED_WARN_EVERY_S:
            return
        example = wrong[0]
        log.warning(
            "%d Kafka messages keyed by something other than their account_id (e.g. %s@%d: "
            "key %r, account_id %r): key the topic by account_id",
            self._miskeyed_unreported,
            example.record.stream,
            example.record.offset,
            example.record.key,
            example.event.account_id,
        )
        self._miskeyed_warned, self._miskeyed_unreported = now, 0

    def _watch_drift(self, batch: Batch) -> None:
        """Feed the drift monitor this batch's active accounts and new labels; set the gauges
        and log its warning line when it has one (at most every `warn_every_s`)."""
        if self.drift is None:
            return
        labels = {verdict.account_id: verdict.label for verdict in batch.verdicts}
        cursors = self.pipeline.cursors
        active = {
            account_id: cursors[account_id].requests_seen if account_id in cursors else 0
            for account_id in {item.event.account_id for item in batch.events} | set(labels)
        }
        status = self.drift.observe(active, labels)
        LIVE_FLAG_RATE.set(status.rate)
        CALIBRATION_DRIFT.set(status.drift)
        line = self.drift.alert(time.monotonic())
        if line is not None:
            log.warning(line)

    def run(self) -> WorkerStats:
        """Consume until `stop` is set; never lets a poison message or an outage end the loop."""
        SINKS_UP.set(1)
        self._next_lag = 0.0
        freeze_startup_heap()
        run(
            self.source,
            self.pipeline,
            stop=self.stop,
            durably=self._until_durable,
            on_poll=self._poll_lag,
            on_batch=self._count,
        )
        return self.stats
