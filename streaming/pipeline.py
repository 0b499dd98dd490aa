"""The one pipeline every entry point drives: Kafka worker, file replay, offline scoring, demo.

batch of raw records → parse/validate, check each row fits the store (dead letters out) →
first write wins (`streaming.evidence`: resends skipped, conflicts dead-lettered) → embed →
response fingerprints → detectors → one `Batch` written to every sink; a checkpoint writes the
account states and flushes the sinks (Quix Streams' split: offsets are committed only after every
flush succeeded).

Exactly-once detector state on an at-least-once stream: each account's checkpoint records, per
source partition, the last offset its detector consumed. A replayed record (a crash before the
offset commit, a rebalance) is written again to the idempotent store but never counted twice.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from core.batch import GLOBAL_STATE_ID, AccountState, Batch, IngestedEvent
from core.embedder import Embedder
from core.events import DeadLetter, Event, parse_event
from core.formats import Parse
from core.records import SourceRecord
from core.timeutil import now_ms
from core.verdicts import Assessment, Verdict, is_material
from detectors.base import (
    Detector,
    cross_account_state,
    drain_clusters,
    load_cross_account_state,
)
from detectors.campaigns.feed import ProfileUpdate, StreamProgress
from detectors.fingerprints import response_fingerprints
from storage import Store
from storage.checkpoints import account_states, global_state
from storage.rows import storable_event_row
from streaming.evidence import Evidence
from streaming.profiles import ProfilePublisher
from streaming.sinks import Sink, is_transient

GLOBAL_CHECKPOINT_MS = 60_000  # cross-account state is large: checkpoint it once a minute


@dataclass
class AccountCursor:
    """Pipeline bookkeeping for one account, checkpointed with the detector's state."""

    requests_seen: int = 0
    offsets: dict[str, int] = field(default_factory=dict)  # stream → last consumed offset
    last_label: str | None = None
    last_score: float = 0.0
    cluster_id: str | None = None


def _storable(event: Event, record: SourceRecord) -> Event | DeadLetter:
    """The event, or its dead letter when its row cannot be built or does not fit the store:
    whatever fails on one event's row is that event's problem, never its batch's."""
    try:
        storable_event_row(event)
    except Exception as exc:  # noqa: BLE001 - any failure here is this one event's
        return DeadLetter.from_bytes(
            record.value, f"unstorable: {exc}", record.stream, record.offset, event.request_id
        )
    return event


class Pipeline:
    """Parse, embed, detect and write each step's `Batch` to the sinks; `checkpoint` writes the
    account states and flushes every sink."""

    def __init__(
        self,
        detector: Detector,
        sinks: Sequence[Sink],
        store: Store | None = None,
        embedder: Embedder | None = None,
        max_event_bytes: int = 8 * 1024 * 1024,
        publisher: ProfilePublisher | None = None,
        parse: Parse = parse_event,
    ) -> None:
        self.detector = detector
        self.parse = parse  # the input's log format (`core.formats`); Kafka carries schema v1
        # A worker publishes its accounts' profile updates for the one campaign linker and
        # keeps no cross-account state; without a publisher the detector links in-process.
        self.publisher = publisher
        if publisher is not None and hasattr(detector, "publish_profiles"):
            detector.publish_profiles = True
        self.sinks = list(sinks)
        self.store = store  # where checkpoints are read back from (None: start fresh)
        self.embedder = embedder
        self.max_event_bytes = max_event_bytes
        self.cursors: dict[str, AccountCursor] = {}
        self._dirty: set[str] = set()
        self._global_restored = store is None
        self._global_saved_ms = 0
        self.evidence = Evidence(store)

    # --- state --------------------------------------------------------------------------------
    def _restore(self, account_ids: Iterable[str]) -> None:
        """Load checkpoints of accounts not in memory (restart, or a newly assigned partition)."""
        missing = sorted({a for a in account_ids if a not in self.cursors})
        if not missing:
            return
        saved: dict[str, AccountState] = {}
        if self.store is not None:
            saved = account_states(self.store, self.detector.name, missing)
        for account_id in missing:
            checkpoint = saved.get(account_id)
            if checkpoint is None:
                self.cursors[account_id] = AccountCursor()
                continue
            self.cursors[account_id] = AccountCursor(**checkpoint.state["cursor"])
            self.detector.load(account_id, checkpoint.state["detector"])

    def _restore_global(self) -> None:
        """Cross-account detector state (campaign links) from the last checkpoint, once."""
        if self._global_restored or self.store is None:
            return
        self._global_restored = True
        self._global_saved_ms = now_ms()
        saved = global_state(self.store, self.detector.name)
        if saved is not None:
            load_cross_account_state(self.detector, saved.state)

    def forget_streams(self, streams: set[str]) -> int:
        """Drop in-memory state of accounts last seen on `streams` (partitions revoked)."""
        gone = [a for a, c in self.cursors.items() if c.offsets and set(c.offsets) <= streams]
        for account_id in gone:
            del self.cursors[account_id]
            self.detector.forget(account_id)
            self._dirty.discard(account_id)
        return len(gone)

    def _checkpoint_states(self) -> list[AccountState]:
        updated = now_ms()
        states = []
        for account_id in sorted(self._dirty):
            cursor = self.cursors[account_id]
            states.append(
                AccountState(
                    account_id=account_id,
                    detector=self.detector.name,
                    requests_seen=cursor.requests_seen,
                    state={
                        "cursor": cursor.__dict__,
                        "detector": self.detector.state(account_id),
                    },
                    updated_ms=updated,
                )
            )
        self._dirty.clear()
        if updated - self._global_saved_ms >= GLOBAL_CHECKPOINT_MS:
            cross_account = cross_account_state(self.detector)
            if cross_account is not None:
                self._global_saved_ms = updated
                states.append(
                    AccountState(
                        account_id=GLOBAL_STATE_ID,
                        detector=self.detector.name,
                        requests_seen=0,
                        state=cross_account,
                        updated_ms=updated,
                    )
                )
        return states

    # --- the batch ---------------------------------------------------------------------------
    def process(self, records: Sequence[SourceRecord], parse: Parse | None = None) -> Batch:
        """Run one batch through parse → embed → fingerprint → detect and write the result to
        every sink (response fingerprints too, so every entry point can attribute a suspect
        model); returns it. A store failure raises before any state changed (retry freely).
        `parse` overrides the pipeline's log format for this batch (HTTP ingest's `format=`)."""
        parse = parse or self.parse
        parsed: list[tuple[Event, SourceRecord]] = []
        dead: list[DeadLetter] = []
        for record in records:
            item = parse(record.value, record.stream, record.offset, self.max_event_bytes)
            if isinstance(item, Event):
                item = _storable(item, record)
            if isinstance(item, Event):
                parsed.append((item, record))
            else:
                dead.append(item)
        sorted_ = self.evidence.sort(parsed)
        admitted = sorted_.admitted

        embeddings: list[list[float] | None] = [None] * len(admitted)
        if self.embedder is not None and admitted:
            embeddings = list(self.embedder([e.prompt_text for e, _ in admitted]))

        ingested = now_ms()
        events = [
            IngestedEvent(event, record, ingested, vector)
            for (event, record), vector in zip(admitted, embeddings, strict=True)
        ]
        # From the raw responses: the events row may redact them, attribution needs the text.
        fingerprints = response_fingerprints(event for event, _ in admitted)
        verdicts, replayed = self._detect(admitted)
        self._publish(records, admitted)
        self.evidence.remember(sorted_.new)
        batch = Batch(
            records=len(records),
            replayed=replayed,
            duplicates=sorted_.duplicates,
            events=events,
            dead_letters=dead + sorted_.conflicts,
            verdicts=verdicts,
            clusters=drain_clusters(self.detector),
            fingerprints=fingerprints,
        )
        for sink in self.sinks:
            sink.write(batch)
        return batch

    def _detect(self, parsed: list[tuple[Event, SourceRecord]]) -> tuple[list[Verdict], int]:
        by_account: dict[str, list[tuple[Event, SourceRecord]]] = {}
        for event, record in parsed:
            by_account.setdefault(event.account_id, []).append((event, record))
        self._restore(by_account)
        self._restore_global()
        replayed = 0
        fresh_by_account: dict[str, list[Event]] = {}
        for account_id, items in by_account.items():
            cursor = self.cursors[account_id]
            fresh = []
            for event, record in items:
                if record.offset <= cursor.offsets.get(record.stream, -1):
                    replayed += 1
                    continue
                cursor.offsets[record.stream] = record.offset
                fresh.append(event)
            if fresh:
                fresh.sort(key=lambda e: e.timestamp_ms)
                fresh_by_account[account_id] = fresh
                cursor.requests_seen += len(fresh)
        assessments = self.detector.update_batch(fresh_by_account) if fresh_by_account else {}
        return self._verdicts(assessments, fresh_by_account), replayed

    def _verdicts(
        self, assessments: dict[str, Assessment], fresh_by_account: dict[str, list[Event]]
    ) -> list[Verdict]:
        """Verdicts for the assessments that changed materially (campaign members outside the
        batch come with `observed_at`)."""
        self._restore(assessments)  # campaign members outside this batch
        verdicts: list[Verdict] = []
        for account_id, assessment in assessments.items():
            self._dirty.add(account_id)
            new_events = fresh_by_account.get(account_id)
            for step in (assessment.peak, assessment):  # a peak left within the batch first
                if step is not None:
                    verdict = self._verdict(account_id, step, new_events)
                    if verdict is not None:
                        verdicts.append(verdict)
        return verdicts

    def _verdict(
        self, account_id: str, assessment: Assessment, new_events: list[Event] | None
    ) -> Verdict | None:
        """The verdict for one assessment when it changed materially from the account's last
        one (which it then becomes)."""
        cursor = self.cursors[account_id]
        cursor.cluster_id = assessment.cluster_id or cursor.cluster_id
        previous = None if cursor.last_label is None else (cursor.last_label, cursor.last_score)
        if not is_material(previous, assessment):
            return None
        cursor.last_label, cursor.last_score = assessment.label, assessment.score
        seen, moment = cursor.requests_seen, assessment.observed_at
        if new_events:
            decided = assessment.requests_at_label or len(new_events)
            seen = seen - len(new_events) + decided
            moment = new_events[decided - 1].timestamp
        if moment is None:
            raise ValueError(f"{account_id}: assessed without new events or observed_at")
        return Verdict(
            account_id=account_id,
            cluster_id=cursor.cluster_id,
            timestamp=moment,
            requests_seen=seen,
            score=assessment.score,
            label=assessment.label,
            reasons=assessment.reasons,
            detector_version=self.detector.version,
        )

    def _publish(
        self, records: Sequence[SourceRecord], admitted: list[tuple[Event, SourceRecord]]
    ) -> None:
        """Hand the detector's profile updates and each stream's progress (the newest event
        time and the last offset read) to the publisher."""
        if self.publisher is None:
            return
        drain = getattr(self.detector, "drain_profiles", None)
        updates: list[ProfileUpdate] = drain() if drain is not None else []
        progress: dict[str, StreamProgress] = {}
        for record in records:
            mark = progress.setdefault(record.stream, StreamProgress(record.stream, 0, -1))
            mark.offset = max(mark.offset, record.offset)
        for event, record in admitted:
            mark = progress[record.stream]
            mark.event_ms = max(mark.event_ms, event.timestamp_ms)
        self.publisher.add(updates, list(progress.values()))

    def finish(self) -> Batch:
        """The input has ended (a file): the detector concludes what it held back (campaigns
        waiting for the watermark); the result goes to every sink like any step's."""
        finish = getattr(self.detector, "finish", None)
        assessments = finish() if finish is not None else {}
        batch = Batch(
            verdicts=self._verdicts(assessments, {}), clusters=drain_clusters(self.detector)
        )
        for sink in self.sinks:
            sink.write(batch)
        return batch

    def checkpoint(self) -> None:
        """Write the account states (last), then flush every sink; raises if any sink failed,
        so offsets stay uncommitted.

        A retry after a failure flushes the same buffered data again: sinks keep their buffers
        until they succeed while a service is unavailable, and the states were written to the
        sinks before the first attempt. A sink that failed on the data itself dropped its
        buffer (see `streaming.sinks`), so it cannot fail every later checkpoint too.
        """
        states = self._checkpoint_states()
        if states:
            batch = Batch(states=states)
            for sink in self.sinks:
                sink.write(batch)
        try:
            for sink in self.sinks:
                sink.flush()
            # After the store has the account states: the linker reads member windows there.
            if self.publisher is not None:
                self.publisher.flush()
        except Exception as exc:
            if not is_transient(exc):
                self.evidence.forget()  # the failing sink dropped its buffer
            raise
        self.evidence.settled()
