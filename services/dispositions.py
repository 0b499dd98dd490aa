"""Analysts' dispositions of an account or a campaign: the feedback an alert alone cannot carry.

Each change is one append-only `dispositions` row (who, when, why, until when, assigned to
whom, with a note) and one audit record; a subject's current disposition is its latest row.
What they change downstream:

- `allowlisted` (until `expires_at`, always required): the account, or the campaign, raises no
  alert while it lasts (`services.webhooks.enqueue`); its verdicts are still stored and shown.
- `false_positive`: the account's stored requests are benign evidence for the next
  `distillguard calibrate --false-positives-from-store`: the recalibrated detector does not
  flag the account again unless its behaviour changes materially
  (`detectors.base.ReviewedCalibration`).
- `confirmed_extraction`, and `none` (cleared): a record for the analysts and the reports.
"""

from __future__ import annotations

import heapq
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from core.events import Event
from services.auth import Access, Principal, audit
from storage import Store, queries
from storage.queries.dispositions import DispositionRow
from storage.rows import stored_event
from storage.schema import DISPOSITIONS as DISPOSITIONS_TABLE

SubjectKind = Literal["account", "cluster"]
Disposition = Literal["confirmed_extraction", "false_positive", "allowlisted", "none"]
SUBJECT_KINDS: tuple[SubjectKind, ...] = ("account", "cluster")
DISPOSITIONS: tuple[Disposition, ...] = (
    "confirmed_extraction",
    "false_positive",
    "allowlisted",
    "none",
)


class DispositionError(ValueError):
    """A disposition refused for what it says (an allowlist without expiry, an unknown kind)."""


def set_disposition(
    store: Store,
    subject_kind: str,
    subject_id: str,
    disposition: str,
    who: Principal,
    *,
    reason: str = "",
    expires_ms: int | None = None,
    assignee: str = "",
    note: str = "",
    now_ms: int | None = None,
    audited: bool = True,
) -> DispositionRow:
    """Record a disposition (checked first: `DispositionError`) and, unless the caller audits
    it itself (`audited=False`: the API's edge does, with the response's status), append an
    audit record. Returns the stored row."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    if subject_kind not in SUBJECT_KINDS:
        raise DispositionError(f"subject_kind must be one of {', '.join(SUBJECT_KINDS)}")
    if disposition not in DISPOSITIONS:
        raise DispositionError(f"disposition must be one of {', '.join(DISPOSITIONS)}")
    if not subject_id:
        raise DispositionError("subject_id must not be empty")
    if disposition == "allowlisted" and not expires_ms:
        raise DispositionError("an allowlist needs expires_at: it must not outlive its reason")
    if expires_ms is not None and expires_ms <= now_ms:
        raise DispositionError("expires_at is in the past")
    row: DispositionRow = {
        "subject_kind": subject_kind,
        "subject_id": subject_id,
        # time first, so ids sort like the changes they name
        "disposition_id": f"{now_ms:013d}-{uuid.uuid4().hex[:12]}",
        "disposition": disposition,
        "reason": reason,
        "expires_ms": expires_ms or 0,
        "assignee": assignee,
        "note": note,
        "actor": who.name,
        "token_id": who.token_id,
        "at_ms": now_ms,
    }
    stored = {**row, "at_time": now_ms // 1000, "version": 1}
    problem = DISPOSITIONS_TABLE.row_problem(stored)
    if problem is not None:  # text the store cannot hold (a lone surrogate), a date past 2106
        raise DispositionError(problem)
    store.insert("dispositions", [stored])
    if audited:
        action, resource = audit_note(row)
        audit(store, Access(who, action, resource, 200, **subject_of(row)))
    return row


EXPORT_FIELDS = (
    "disposition_id",
    "subject_kind",
    "subject_id",
    "disposition",
    "reason",
    "expires_at",
    "assignee",
    "note",
    "actor",
    "token_id",
    "at",
    "active",
)


def exported(
    store: Store,
    *,
    current: bool = False,
    disposition: str | None = None,
    subject_kind: str | None = None,
    now_ms: int | None = None,
) -> list[dict[str, str | bool | None]]:
    """Dispositions as records for people and other systems (`distillguard dispositions
    export`), oldest first: every change recorded (the audit trail), or with `current` each
    subject's latest one. Times are ISO 8601 UTC; `active`: in force at `now_ms` (the subject's
    latest, not cleared, not expired), as the API says it."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    latest = queries.current_dispositions(store)  # which row of each subject is its latest
    latest_ids = {row["disposition_id"] for row in latest}
    if current:
        rows = sorted(
            (
                row
                for row in latest
                if disposition in (None, row["disposition"])
                and subject_kind in (None, row["subject_kind"])
            ),
            key=lambda row: (row["at_ms"], row["disposition_id"]),
        )
    else:
        rows = queries.every_disposition(store, disposition, subject_kind)
    return [_record(row, row["disposition_id"] in latest_ids, now_ms) for row in rows]


def _record(row: DispositionRow, latest: bool, now_ms: int) -> dict[str, str | bool | None]:
    expires = int(row["expires_ms"])
    times = {"expires_at": _iso(expires) if expires else None, "at": _iso(int(row["at_ms"]))}
    active = latest and row["disposition"] != "none" and (expires == 0 or expires > now_ms)
    values: dict[str, str | bool | None] = {**row, **times, "active": active}  # type: ignore[dict-item]
    return {key: values[key] for key in EXPORT_FIELDS}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat(timespec="milliseconds")


def audit_note(row: DispositionRow) -> tuple[str, str]:
    """(action, resource) of a disposition's audit record."""
    action = f"set_disposition:{row['disposition_id']}:{row['disposition']}"
    return action, f"dispositions/{row['subject_kind']}/{row['subject_id']}"


def subject_of(row: DispositionRow) -> dict[str, str]:
    """The audit log's subject fields for a disposition's subject."""
    key = "account_id" if row["subject_kind"] == "account" else "cluster_id"
    return {key: row["subject_id"]}


@dataclass
class BenignEvidence:
    """The stored requests of the accounts analysts marked `false_positive`, to be added to the
    benign history a detector is calibrated on (`detectors.base.fit_with_reviewed`, with
    `accounts` as the reviewed ones): the detector learns that this traffic of theirs is honest.
    `unreadable`: requests whose prompt was hashed at ingest (nothing to learn from)."""

    accounts: list[str]
    events: list[Event]
    unreadable: int = 0

    @property
    def request_ids(self) -> set[str]:
        return {event.request_id for event in self.events}

    def merged(self, history: Iterable[Event]) -> Iterator[Event]:
        """`history` (time-ordered) with these events merged in by time; a request already in
        the history is taken once (the stored copy)."""
        ids = self.request_ids
        ordered = sorted(self.events, key=lambda e: (e.timestamp_ms, e.request_id))
        kept = (event for event in history if event.request_id not in ids)
        return heapq.merge(kept, ordered, key=lambda e: e.timestamp_ms)

    def summary(self) -> dict[str, int]:
        return {
            "accounts": len(self.accounts),
            "events": len(self.events),
            "unreadable": self.unreadable,
        }


def false_positive_evidence(store: Store, accounts: Sequence[str] | None = None) -> BenignEvidence:
    """Benign evidence from the store: the events of `accounts`, by default every account whose
    current disposition is `false_positive`."""
    chosen = sorted(accounts) if accounts is not None else queries.false_positive_accounts(store)
    evidence = BenignEvidence(chosen, [])
    for row in queries.stored_events(store, chosen):
        event = stored_event(row)
        if event is None:
            evidence.unreadable += 1
        else:
            evidence.events.append(event)
    return evidence
