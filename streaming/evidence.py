"""Events are append-only evidence: the first write of a `request_id` wins.

Before a batch is detected and written, each event's `request_id` is looked up: earlier in the
same batch, among the events this pipeline took in but may not have flushed yet, then in the
store. An id seen before with the same content is a resend (skipped: neither counted again nor
rewritten) or, when it comes from the very same source position, a redelivery of that record
after a crash or a rebalance (the detector's per-partition offsets decide whether it was
counted). An id seen before with another account or content is a `conflict` dead letter, and
the stored event stays as it was.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from core.events import DeadLetter, Event
from core.records import SourceRecord
from storage import Store
from storage.queries.events import EventIdentityRow, event_identities

REMEMBERED = 100_000  # unflushed identities kept in memory, at most (oldest forgotten first)
Item = tuple[Event, SourceRecord]


@dataclass(frozen=True, slots=True)
class Identity:
    """What tells one write of a request id from another."""

    account_id: str
    content_hash: str  # "" for events stored before content hashes existed
    prompt_hash: str
    event_ms: int
    stream: str
    offset: int

    @classmethod
    def of(cls, event: Event, record: SourceRecord) -> Identity:
        return cls(
            event.account_id,
            event.content_hash,
            event.prompt_hash,
            event.timestamp_ms,
            record.stream,
            record.offset,
        )

    @classmethod
    def stored(cls, row: EventIdentityRow) -> Identity:
        return cls(
            row["account_id"],
            row["content_hash"],
            row["prompt_hash"],
            int(row["event_ms"]),
            row["source"],
            int(row["source_offset"]),
        )

    def difference(self, later: Identity) -> str | None:
        """Why `later` is not the same event as this first write, or None when it is."""
        if later.account_id != self.account_id:
            return "another account"
        if self.content_hash and later.content_hash:
            same = self.content_hash == later.content_hash
        else:  # stored before content hashes: what the row still says about the request
            same = (self.prompt_hash, self.event_ms) == (later.prompt_hash, later.event_ms)
        return None if same else "different content"


@dataclass
class Sorted:
    """A batch's valid events sorted by what their request ids were before.

    `admitted` (arrival order, which the detector's offsets need) goes on to the detector, whose
    offsets skip what it already counted, and to the sinks: rewriting a redelivered record is
    idempotent and completes a write that a crash cut short."""

    admitted: list[Item] = field(default_factory=list)  # first writes and redeliveries
    new: list[Item] = field(default_factory=list)  # the first writes among them
    duplicates: int = 0  # identical resends from elsewhere: skipped
    conflicts: list[DeadLetter] = field(default_factory=list)


class Evidence:
    """Sorts each batch's events against their earlier writes (`sort`); `remember` the new ones
    once the batch is taken in, `settled` once the sinks flushed them."""

    def __init__(self, store: Store | None, remembered: int = REMEMBERED) -> None:
        self.store = store
        self.remembered = remembered
        self._unflushed: OrderedDict[str, Identity] = OrderedDict()

    def sort(self, items: Sequence[Item]) -> Sorted:
        """Sort `items` (in arrival order); reads the store, changes nothing, so it is safe to
        retry after a store failure."""
        earlier = self._earlier({event.request_id for event, _ in items})
        result = Sorted()
        for event, record in items:
            mine = Identity.of(event, record)
            first = earlier.get(event.request_id)
            if first is None:
                earlier[event.request_id] = mine
                result.new.append((event, record))
                result.admitted.append((event, record))
                continue
            difference = first.difference(mine)
            if difference is not None:
                result.conflicts.append(
                    DeadLetter.from_bytes(
                        record.value,
                        f"conflict: request_id already stored with {difference}",
                        record.stream,
                        record.offset,
                        event.request_id,
                    )
                )
            elif (first.stream, first.offset) == (record.stream, record.offset):
                result.admitted.append((event, record))  # the same record again
            else:
                result.duplicates += 1
        return result

    def _earlier(self, request_ids: set[str]) -> dict[str, Identity]:
        earlier = {rid: self._unflushed[rid] for rid in request_ids if rid in self._unflushed}
        missing = request_ids - earlier.keys()
        if self.store is not None and missing:
            for row in event_identities(self.store, missing):
                earlier[row["request_id"]] = Identity.stored(row)
        return earlier

    def remember(self, items: Iterable[Item]) -> None:
        """The batch's first writes are in the sinks' buffers: later batches must see them even
        before they are flushed."""
        for event, record in items:
            self._unflushed[event.request_id] = Identity.of(event, record)
            self._unflushed.move_to_end(event.request_id)
        while len(self._unflushed) > self.remembered:
            self._unflushed.popitem(last=False)

    def settled(self) -> None:
        """Every sink flushed: the store answers for what was remembered. Without a store (an
        offline `score`) memory is all there is, so it stays (bounded)."""
        if self.store is not None:
            self._unflushed.clear()

    def forget(self) -> None:
        """The sinks dropped their buffers (a flush failed on the data): nothing remembered was
        written, so the store alone answers."""
        self._unflushed.clear()
