"""Event time for the campaign linker: its verdicts must not depend on how events arrive.

A worker catching up on a backlog reads each partition in long runs, so requests reach the
linker out of event-time order across partitions; the linker would see one account's week before
another's minute and link differently than it does from one time-ordered file. So requests are
buffered until the *watermark* passes them, then fed in fixed event-time slices (`tick_ms`), each
sorted by (time, account, request). The watermark follows the slowest source stream (each
partition reports the newest event time it has read) less `lateness_ms`, the disorder allowed
inside one stream; a stream that is caught up with its partition's end holds nothing back. So the
same traffic gives the linker the same slices, in the same order, from one file, one partition or
many, through any number of workers. A request later than that (behind the watermark) is not
dropped: it goes into the next slice and is counted in `late`. `flush` releases everything (the
end of a file, or every stream caught up and quiet).

A replayed request (a worker restarted before its offsets were committed) is recognised by its
id and ignored.

>>> from detectors.campaigns.feed import LinkEvent
>>> from detectors.features import EventFeatures
>>> def event(rid, account, ms):
...     return LinkEvent(EventFeatures(rid, account, ms, "p", "k", 0, 0.0, 1, 1, False, False,
...                                    "", "ua"), [])
>>> buffer = EventTime(tick_ms=10, lateness_ms=5, streams=["p0", "p1"])
>>> buffer.add([event("a1", "a", 3), event("a2", "a", 31)], "p0")
>>> buffer.release()  # p1 has not reported: nothing is safe yet
[]
>>> buffer.add([event("b1", "b", 12), event("b1", "b", 12)], "p1")  # a replay is ignored
>>> buffer.release()  # watermark min(31, 12) - 5 = 7: slice [0, 10) may still grow
[]
>>> buffer.add([event("b2", "b", 29)], "p1")
>>> [[e.request_id for e in s] for s in buffer.release()]  # min(31, 29) - 5 = 24
[['a1'], ['b1']]
>>> [[e.request_id for e in s] for s in buffer.flush()], buffer.late
([['b2'], ['a2']], 0)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from detectors.campaigns.feed import LinkEvent

TICK_MS = (
    10 * 60_000
)  # event time fed to the linker per slice (the cost of a slice is mostly fixed)
LATENESS_MS = 5 * 60_000  # disorder allowed inside one source stream
ONE_STREAM = ""  # the implicit stream of an in-process run (one file, one ingest queue)


class EventTime:
    """Requests held until the watermark passes them, released in event-time slices."""

    def __init__(
        self,
        tick_ms: int = TICK_MS,
        lateness_ms: int = LATENESS_MS,
        streams: Iterable[str] | None = None,
        retain_ms: int = 8 * 86_400_000,
    ) -> None:
        self.tick_ms = tick_ms
        self.lateness_ms = lateness_ms
        self.streams = set(streams) if streams is not None else None  # None: whoever reports
        self.retain_ms = retain_ms  # how long a released request id is remembered (replays)
        self.pending: dict[int, dict[str, LinkEvent]] = defaultdict(dict)  # slice -> id -> event
        self.marks: dict[str, int] = {}  # stream -> newest event time read from it
        self.caught_up: set[str] = set()  # streams read to their partition's end
        self.released_until = 0  # slices below this index have been fed
        self.fed: dict[str, int] = {}  # request id -> event time, released or pending
        self.late = 0

    # -- input --------------------------------------------------------------------------------
    def add(self, events: Iterable[LinkEvent], stream: str = ONE_STREAM) -> None:
        """Buffer new requests of `stream` (replays ignored) and advance its mark."""
        newest = None
        for event in events:
            ms = event.timestamp_ms
            newest = ms if newest is None else max(newest, ms)
            if event.request_id in self.fed:
                continue
            self.fed[event.request_id] = ms
            index = ms // self.tick_ms
            if index < self.released_until:
                self.late += 1
                index = self.released_until
            self.pending[index][event.request_id] = event
        if newest is not None:
            self.mark(stream, newest)

    def mark(self, stream: str, event_ms: int, caught_up: bool | None = None) -> None:
        """`stream` has been read up to event time `event_ms` (marks only move forward);
        `caught_up`: it has nothing more to read right now."""
        self.marks[stream] = max(event_ms, self.marks.get(stream, event_ms))
        if caught_up is True:
            self.caught_up.add(stream)
        elif caught_up is False:
            self.caught_up.discard(stream)

    def watermark(self) -> int | None:
        """Event time before which no more requests are expected; None while a stream that
        has not caught up has not reported yet."""
        if not self.marks:
            return None
        streams = self.streams if self.streams is not None else set(self.marks)
        if any(s not in self.marks and s not in self.caught_up for s in streams):
            return None
        lagging = [self.marks[s] for s in streams if s in self.marks and s not in self.caught_up]
        base = min(lagging) if lagging else max(self.marks.values())
        return base - self.lateness_ms

    # -- output -------------------------------------------------------------------------------
    def release(self) -> list[list[LinkEvent]]:
        """The slices the watermark has passed, oldest first, each in (time, account, id)
        order."""
        watermark = self.watermark()
        if watermark is None:
            return []
        return self._release_below(watermark // self.tick_ms)

    def flush(self) -> list[list[LinkEvent]]:
        """Every pending slice (the end of the input)."""
        if not self.pending:
            return []
        return self._release_below(max(self.pending) + 1)

    def _release_below(self, limit: int) -> list[list[LinkEvent]]:
        ready = sorted(i for i in self.pending if i < limit)
        slices = [
            sorted(
                self.pending.pop(i).values(),
                key=lambda e: (e.timestamp_ms, e.account_id, e.request_id),
            )
            for i in ready
        ]
        self.released_until = max(self.released_until, limit)
        self._forget_old()
        return slices

    def _forget_old(self) -> None:
        cutoff = self.released_until * self.tick_ms - self.retain_ms
        if self.fed and min(self.fed.values()) < cutoff:
            self.fed = {rid: ms for rid, ms in self.fed.items() if ms >= cutoff}

    @property
    def pending_count(self) -> int:
        return sum(len(s) for s in self.pending.values())

    # -- checkpoint ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "tick_ms": self.tick_ms,
            "lateness_ms": self.lateness_ms,
            "pending": [
                e.to_json() | {"a": e.account_id} for s in self.pending.values() for e in s.values()
            ],
            "marks": self.marks,
            "released_until": self.released_until,
            "fed": self.fed,
            "late": self.late,
        }

    def load(self, data: Mapping[str, Any]) -> EventTime:
        """Restore `to_json` (the tick and lateness stay this object's settings)."""
        self.pending = defaultdict(dict)
        self.marks = dict(data["marks"])
        self.released_until = int(data["released_until"])
        self.fed = dict(data["fed"])
        self.late = int(data.get("late", 0))
        self.caught_up = set()
        for saved in data["pending"]:
            event = LinkEvent.from_json(saved["a"], saved)
            index = max(event.timestamp_ms // self.tick_ms, self.released_until)
            self.pending[index][event.request_id] = event
        return self
