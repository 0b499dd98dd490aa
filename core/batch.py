"""What one pipeline step hands its sinks: one typed batch of domain objects, never rows.

`Pipeline.process` returns a `Batch` (events, dead letters, verdicts, campaigns, response
fingerprints) and `Pipeline.checkpoint` writes one more holding the account states; every sink
takes both through the same `write(batch)`. Only `storage.rows` turns them into table rows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.events import DeadLetter, Event
from core.records import SourceRecord
from core.verdicts import ClusterVerdict, Verdict

# The `account_state` key under which a detector checkpoints its cross-account state.
GLOBAL_STATE_ID = "\x00global"


@dataclass(frozen=True, slots=True)
class IngestedEvent:
    """A valid event with the record it came from and what the pipeline added at ingest."""

    event: Event
    record: SourceRecord
    ingested_ms: int
    embedding: list[float] | None = None


@dataclass(frozen=True, slots=True)
class AccountState:
    """A detector's checkpoint for one account (or `GLOBAL_STATE_ID`): the latest one wins."""

    account_id: str
    detector: str
    requests_seen: int
    state: dict[str, Any]
    updated_ms: int


@dataclass(frozen=True, slots=True)
class ResponseFingerprint:
    """The MinHash signature of one logged response, taken before the events row redacts it,
    so a suspect model's outputs can be traced to the accounts that received the text."""

    request_id: str
    account_id: str
    timestamp_ms: int
    response_hash: str  # sha256 of the raw response
    minhash: tuple[int, ...]


@dataclass
class Batch:
    """One step's results; `records`, `replayed` and `duplicates` count what went in, the lists
    what came out."""

    records: int = 0  # source records in the step
    replayed: int = 0  # events a checkpoint had already counted (redelivered after a crash)
    duplicates: int = 0  # identical resends of stored events: neither counted nor written again
    events: list[IngestedEvent] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    clusters: list[ClusterVerdict] = field(default_factory=list)
    fingerprints: list[ResponseFingerprint] = field(default_factory=list)
    states: list[AccountState] = field(default_factory=list)

    def extend(self, other: Batch) -> None:
        """Append `other` (a sink's buffer collecting the steps since its last flush)."""
        self.records += other.records
        self.replayed += other.replayed
        self.duplicates += other.duplicates
        self.events.extend(other.events)
        self.dead_letters.extend(other.dead_letters)
        self.verdicts.extend(other.verdicts)
        self.clusters.extend(other.clusters)
        self.fingerprints.extend(other.fingerprints)
        self.states.extend(other.states)
