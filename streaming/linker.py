"""`distillguard linker`: the one campaign view across workers.

Reads every worker's profile updates from the single-partition profiles topic as one consumer
group: Kafka gives the partition to exactly one member, so one linker is active and any other
started with the same group waits as a standby that takes over when the active one dies (session
timeout). The active linker feeds the updates to a `CampaignView` (event time: the watermark
follows the slowest source partition; a partition read to its end holds nothing back), scores
the clusters with member windows read from the workers' `account_state` checkpoints, and writes
clusters and member verdicts to the store. Its own state (links, the event-time buffer, what it
emitted) is checkpointed to one `account_state` row that only the active linker writes, before
its offsets are committed; a replayed update is recognised by its request ids, so a linker killed
-9 and restarted (or replaced) resumes without losing or double-counting anything. The state is
megabytes (2 MB after 16k events of one world), too much to write after every poll of a
backlog, so the linker writes at most every `checkpoint_s` (and on a
final link or a clean stop): the clusters and verdicts of the polls since the last write, then
the checkpoint, then the offsets. Outputs wait for their checkpoint because the view dissolves
only the clusters it knows it wrote: a cluster written after the checkpoint a successor restores
would stand in the store forever. When every
source partition is caught up and no update has come for `idle_s`, everything held back is
linked and every cluster rescored (the end of a backlog).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from kafka import TopicPartition
from kafka.errors import CommitFailedError, RebalanceInProgressError

from core.batch import AccountState, Batch
from core.timeutil import now_ms
from core.verdicts import Verdict, is_material
from detectors.campaigns.eventtime import EventTime
from detectors.campaigns.feed import ProfileUpdate, StreamProgress, decode
from detectors.fusion import AccountWindow, ExtractionDetector
from detectors.fusion.campaigns import CampaignUpdate, CampaignView
from storage import Store
from storage.checkpoints import account_states, checkpoint_stamps, saved_states
from streaming.kafka import Kafka, Rebalance, group_consumer, stream_name
from streaming.loop import freeze_startup_heap
from streaming.sinks import Sink

log = logging.getLogger("distillguard.linker")
LINKER_STATE_ID = "\x00linker"  # the active linker's checkpoint row (one writer at a time)


MEMBER_WINDOWS = 512  # member windows kept parsed (~0.4 MB each with every prompt embedded)


def store_windows(store: Store, detector: ExtractionDetector, keep: int = MEMBER_WINDOWS):
    """Member windows from the workers' account checkpoints, each read and parsed once per
    checkpoint. The view asks for a cluster's members whenever one of them moves; reading every
    member's state each time (`FINAL` reads all its versions not yet merged) was two fifths of
    the ClickHouse server's CPU at a steady 200 events/s (with the worker's restores), and its
    parsing a share of the linker's. So the checkpoints' stamps are read first, and the states
    only of members whose stamp changed. A kept window is the one a fresh read would give:
    scoring only deepens it (embeds its prompts, the same vectors each time, so a tiered
    linker no longer embeds an unchanged member again) and sets its label, which the view
    never reads."""
    kept: OrderedDict[str, tuple[tuple[int, int], AccountWindow]] = OrderedDict()

    def windows(members: Sequence[str]) -> dict[str, AccountWindow]:
        if not members:
            return {}
        stamps = checkpoint_stamps(store, detector.name, list(members))
        changed = [a for a, stamp in stamps.items() if a not in kept or kept[a][0] != stamp]
        for account, state in saved_states(store, detector.name, changed).items():
            window = AccountWindow.from_state(account, state.state["detector"], detector.window)
            kept[account] = ((state.requests_seen, state.updated_ms), window)
        found = {}
        for account in stamps:
            if account in kept:
                kept.move_to_end(account)
                found[account] = kept[account][1]
        while len(kept) > keep:
            kept.popitem(last=False)
        return found

    return windows


class Linker:
    """The linker role: profiles topic → campaign view → clusters and member verdicts."""

    def __init__(
        self,
        detector: ExtractionDetector,
        store: Store,
        sinks: Sequence[Sink],
        kafka: Kafka,
        profiles_topic: str,
        source_topic: str,
        group: str,
        idle_s: float = 5.0,
        client_id: str = "distillguard-linker",
        checkpoint_s: float = 5.0,
    ) -> None:
        self.detector = detector
        self.store = store
        self.sinks = list(sinks)
        self.source_topic = source_topic
        self.idle_s = idle_s
        self.checkpoint_s = checkpoint_s
        self._checkpointed_at = float("-inf")  # monotonic time of the last write
        self._pending: Batch | None = None  # the outputs of the polls since the last write
        self.stop = threading.Event()
        self.consumer = group_consumer(kafka, group, client_id, 2000, fetch_mib=64)
        self.consumer.partitions_for_topic(profiles_topic)
        # Losing the partition drops the view: whoever gets it next (this linker again, after
        # another held it) restores from the checkpoint the last holder wrote.
        self.consumer.subscribe(
            [profiles_topic], listener=Rebalance([self._revoked], assigned=self._assigned)
        )
        self.active = False  # holds the profiles partition (from the rebalance callbacks)
        self.view: CampaignView | None = None
        self.offsets: dict[str, int] = {}  # source stream -> last offset the workers reported
        self.emitted: dict[str, tuple[str, float]] = {}  # member -> last (label, score) written

    # -- state --------------------------------------------------------------------------------
    def _revoked(self, _streams: set[str]) -> None:
        if self.active:
            log.info("standby: the profiles partition is no longer this linker's")
        self.active = False
        self.view = None

    def _assigned(self, streams: set[str]) -> None:
        self.active = bool(streams)

    def _source_partitions(self) -> list[TopicPartition]:
        partitions = self.consumer.partitions_for_topic(self.source_topic) or set()
        return [TopicPartition(self.source_topic, p) for p in sorted(partitions)]

    def _restore(self) -> CampaignView:
        """A fresh view from the last checkpoint (on start and whenever the partition comes)."""
        view = CampaignView(
            self.detector,
            store_windows(self.store, self.detector),
            EventTime(
                streams=[stream_name(tp.topic, tp.partition) for tp in self._source_partitions()]
            ),
        )
        self._checkpointed_at, self._pending = float("-inf"), None  # the first poll writes
        saved = account_states(self.store, self.detector.name, [LINKER_STATE_ID])
        checkpoint = saved.get(LINKER_STATE_ID)
        self.offsets, self.emitted = {}, {}
        if checkpoint is not None:
            view.load(checkpoint.state["view"])
            self.offsets = dict(checkpoint.state["offsets"])
            self.emitted = {a: (label, s) for a, (label, s) in checkpoint.state["emitted"].items()}
            log.info("resumed from the checkpoint of %d accounts", len(view.standing))
        return view

    def _checkpoint(self) -> AccountState:
        assert self.view is not None
        state: dict[str, Any] = {
            "view": self.view.state(),
            "offsets": self.offsets,
            "emitted": {a: list(v) for a, v in self.emitted.items()},
        }
        return AccountState(LINKER_STATE_ID, self.detector.name, 0, state, now_ms())

    # -- the loop -----------------------------------------------------------------------------
    def _caught_up(self) -> bool:
        """Mark the source streams the workers have read to the end; True when all are."""
        assert self.view is not None
        ends = self.consumer.end_offsets(self._source_partitions())
        every = True
        for tp, end in ends.items():
            stream = stream_name(tp.topic, tp.partition)
            done = self.offsets.get(stream, -1) + 1 >= end
            if stream in self.view.event_time.marks or end == 0:
                self.view.event_time.mark(stream, self.view.event_time.marks.get(stream, 0), done)
            every &= done
        return every

    def _verdicts(self, update: CampaignUpdate) -> list[Verdict]:
        verdicts = []
        for member, assessment in sorted(update.members.items()):
            previous = self.emitted.get(member)
            if not is_material(previous, assessment):
                continue
            self.emitted[member] = (assessment.label, assessment.score)
            assert assessment.observed_at is not None
            verdicts.append(
                Verdict(
                    account_id=member,
                    cluster_id=assessment.cluster_id,
                    timestamp=assessment.observed_at,
                    requests_seen=update.requests_seen.get(member, 0),
                    score=assessment.score,
                    label=assessment.label,
                    reasons=assessment.reasons,
                    detector_version=self.detector.version,
                )
            )
        return verdicts

    def _write(self, update: CampaignUpdate, checkpoint: bool = False) -> None:
        """Keep the poll's clusters and verdicts; write them with the checkpoint, and commit
        the offsets, when `checkpoint` or when `checkpoint_s` has passed since the last write."""
        if self._pending is None:
            self._pending = Batch()
        for account in update.retired:
            self.emitted.pop(account, None)  # forgotten by the view: bounded like its state
        self._pending.verdicts += self._verdicts(update)
        self._pending.clusters += update.clusters
        if checkpoint or time.monotonic() - self._checkpointed_at >= self.checkpoint_s:
            self._save()

    def _save(self) -> None:
        """The pending outputs, then the checkpoint (a crash between them replays the polls
        since the previous one, which rewrite the same rows), then the offsets."""
        assert self._pending is not None  # `_write` and a clean stop call it with outputs kept
        batch, self._pending = self._pending, None
        state = Batch(states=[self._checkpoint()])
        for sink in self.sinks:
            sink.write(batch)
            sink.write(state)
        for sink in self.sinks:
            sink.flush()
        self._checkpointed_at = time.monotonic()
        try:
            self.consumer.commit()
        except (CommitFailedError, RebalanceInProgressError) as exc:
            # A standby joining (or the group changing) mid-commit. The checkpoint is written:
            # if the partition moves, its next holder restores it and recognises the replay.
            log.info("offset commit deferred by a rebalance: %s", exc)

    def run(self) -> None:
        freeze_startup_heap()
        quiet_since = time.monotonic()
        settled = False
        try:
            while not self.stop.is_set():
                polled = self.consumer.poll(timeout_ms=500)
                if not self.active:
                    self.view = None  # a standby: the active linker has the partition
                    continue
                if self.view is None:
                    self.view = self._restore()
                    settled = False
                    log.info("active: this linker has the profiles partition")
                messages = [decode(m.key, m.value) for ms in polled.values() for m in ms]
                for message in messages:
                    if isinstance(message, StreamProgress):
                        self.offsets[message.stream] = max(
                            message.offset, self.offsets.get(message.stream, -1)
                        )
                updates = [m for m in messages if isinstance(m, ProfileUpdate | StreamProgress)]
                if updates:
                    quiet_since = time.monotonic()
                    settled = False
                    self.view.ingest(updates)
                    self._caught_up()
                    self._write(self.view.advance())
                elif (
                    not settled
                    and self.offsets  # a worker has reported: not an empty topic at start
                    and time.monotonic() - quiet_since >= self.idle_s
                    and self._caught_up()
                ):
                    self._write(self.view.advance(final=True), checkpoint=True)
                    settled = True
                    log.info("caught up: %d clusters", len(self.view.linker.clusters()))
            if self.active and self.view is not None and self._pending is not None:
                self._save()  # a clean stop leaves nothing to replay
        finally:
            self.consumer.close(autocommit=False)
