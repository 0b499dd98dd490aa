"""What a worker tells the campaign linker about its accounts: compact per-account profile
updates (the wire format of the compacted `account-profiles` topic, keyed by account) and the
event-time progress of each source partition (keyed by stream).

An account update carries the account's new requests reduced to what linking reads (the
checkpoint form of `EventFeatures`: parameters, client /24 and user agent, SimHash, prompt key,
an evidence snippet and the int8 embedding when there is one), each with its prompt's skeleton
keys (computed by the worker from the whole prompt, which the snippet no longer is), plus the
account's running totals (`requests_seen`, its own score and label). The linker reads each
member's scoring window from the worker's `account_state` checkpoint, so a cluster is scored as
one actor without shipping windows twice. In-process runs (`score`, `replay`, the demo) feed the
same bytes to the same linker object, so every entry point links exactly the same evidence.

>>> from detectors.features import EventFeatures
>>> f = EventFeatures("r1", "a", 1_000, "Tell me everything about Final Fantasy VII, please.",
...                   "k1", 7, 0.0, 256, 1, False, False, "203.0.114.0/24", "python-requests")
>>> update = ProfileUpdate("a", requests_seen=1, score=0.1, label="benign",
...                        events=[LinkEvent(f, ["wabc"])])
>>> key, value = update.message()
>>> back = decode(key, value)
>>> back.account_id, back.events[0].features.request_id, back.events[0].skeletons
('a', 'r1', ['wabc'])
>>> decode(*StreamProgress("kafka:t/0", event_ms=5_000, offset=41).message())
StreamProgress(stream='kafka:t/0', event_ms=5000, offset=41)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from detectors.features import EventFeatures

PROGRESS_PREFIX = b"\x00progress|"


@dataclass
class LinkEvent:
    """One request as the linker sees it: its features and its prompt's skeleton keys."""

    features: EventFeatures
    skeletons: list[str]

    @property
    def timestamp_ms(self) -> int:
        return self.features.timestamp_ms

    @property
    def account_id(self) -> str:
        return self.features.account_id

    @property
    def request_id(self) -> str:
        return self.features.request_id

    def to_json(self) -> dict[str, Any]:
        return {**self.features.to_state(), "s": self.skeletons}

    @classmethod
    def from_json(cls, account_id: str, data: dict[str, Any]) -> LinkEvent:
        return cls(EventFeatures.from_state(account_id, data), list(data.get("s", ())))


@dataclass
class ProfileUpdate:
    """An account's new requests since its last update, and where the account stands."""

    account_id: str
    requests_seen: int
    score: float
    label: str
    events: list[LinkEvent] = field(default_factory=list)

    def message(self) -> tuple[bytes, bytes]:
        """(key, value) for the profiles topic."""
        value = {
            "kind": "account",
            "account_id": self.account_id,
            "requests_seen": self.requests_seen,
            "score": self.score,
            "label": self.label,
            "events": [e.to_json() for e in self.events],
        }
        return self.account_id.encode(), orjson.dumps(value)


@dataclass
class StreamProgress:
    """A source stream (partition) has been consumed up to `offset`, and the newest event time
    read from it is `event_ms`: the linker's watermark follows the slowest stream."""

    stream: str
    event_ms: int
    offset: int

    def message(self) -> tuple[bytes, bytes]:
        value = {"kind": "progress", "stream": self.stream, "event_ms": self.event_ms}
        return PROGRESS_PREFIX + self.stream.encode(), orjson.dumps(value | {"offset": self.offset})


def decode(key: bytes | None, value: bytes) -> ProfileUpdate | StreamProgress | None:
    """A message of the profiles topic; None for anything else (a tombstone, a stray)."""
    if not value:
        return None
    try:
        data = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    if data.get("kind") == "progress":
        return StreamProgress(str(data["stream"]), int(data["event_ms"]), int(data["offset"]))
    if data.get("kind") == "account":
        account = str(data["account_id"])
        return ProfileUpdate(
            account,
            int(data["requests_seen"]),
            float(data["score"]),
            str(data["label"]),
            [LinkEvent.from_json(account, e) for e in data["events"]],
        )
    return None
