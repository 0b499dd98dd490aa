"""What every entry point must have done with a run of hostile input, read back from the store:
valid events stored once and exactly as sent, bad ones dead-lettered with a reason and their
bytes, resends and conflicts never counted or overwriting."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from core.batch import GLOBAL_STATE_ID
from storage import Store
from tests.hostile.catalogue import Kind


def expected_prompt(document: dict[str, Any]) -> str:
    """The request text schema v1 defines: `prompt`, else the last user turn of `messages`."""
    if document.get("prompt") is not None:
        return document["prompt"]

    def text(message: dict[str, Any]) -> str:
        content = message.get("content")
        if content is None:
            return ""
        if isinstance(content, str):
            return content
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))

    messages = document["messages"]
    for message in reversed(messages):
        if message["role"] == "user":
            return text(message)
    return text(messages[-1])


@dataclass
class Expected:
    """What a run must leave in the store, and the two passes that send it: the first pass
    holds every kind's lines (a resend and a same-account conflict inside one batch); the
    second sends every line of the first again, plus the conflicts that must come later."""

    stored: dict[str, tuple[str, str]] = field(default_factory=dict)  # id → (account, prompt)
    dead: list[tuple[str, bytes, str]] = field(default_factory=list)  # (name, bytes, reason)
    conflicts: list[tuple[str, bytes]] = field(default_factory=list)
    first_pass: list[bytes] = field(default_factory=list)
    later: list[bytes] = field(default_factory=list)

    @property
    def second_pass(self) -> list[bytes]:
        return [*self.later, *self.first_pass]

    def add_valid(self, line: bytes) -> None:
        document = orjson.loads(line)
        request_id = document["request_id"]
        if request_id not in self.stored:  # the first write wins
            self.stored[request_id] = (document["account_id"], expected_prompt(document))

    def add_dead(self, name: str, line: bytes, reason: str = "") -> None:
        self.dead.append((name, line, reason))

    def add_kind(self, kind: Kind, prefix: str) -> None:
        lines = kind.lines(prefix)
        self.first_pass.append(lines[0])
        (self.later if kind.later else self.first_pass).extend(lines[1:])
        if kind.outcome in ("stored", "resend"):
            self.add_valid(lines[0])
        elif kind.outcome == "dead":
            self.add_dead(kind.name, lines[0], kind.reason)
        else:
            self.add_valid(lines[0])
            self.conflicts.append((kind.name, lines[1]))

    def per_account(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for account, _ in self.stored.values():
            counts[account] = counts.get(account, 0) + 1
        return counts


def expect(kinds: Iterable[Kind], prefix: str) -> Expected:
    expected = Expected()
    for kind in kinds:
        expected.add_kind(kind, prefix)
    return expected


def dead_letters(store: Store) -> list[tuple[bytes, str]]:
    """(original bytes, reason) of every dead letter in the store."""
    rows = store.query("SELECT raw, raw_encoding, reason FROM {db}.dead_letters FINAL")
    return [
        (
            base64.b64decode(r["raw"]) if r["raw_encoding"] == "base64" else r["raw"].encode(),
            r["reason"],
        )
        for r in rows
    ]


def stored_events(store: Store) -> dict[str, list[dict[str, Any]]]:
    rows = store.query("SELECT request_id, account_id, prompt_text FROM {db}.events FINAL")
    by_id: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_id.setdefault(row["request_id"], []).append(row)
    return by_id


def requests_counted(store: Store) -> dict[str, int]:
    rows = store.query(
        "SELECT account_id, requests_seen FROM {db}.account_state FINAL"
        " WHERE account_id != %(global_id)s",
        {"global_id": GLOBAL_STATE_ID},
    )
    return {r["account_id"]: int(r["requests_seen"]) for r in rows}


def verify(store: Store, expected: Expected, scope: str = "") -> None:
    """Every valid event stored once as sent; every bad one and every conflict a dead letter
    with a reason and its bytes; the detector counted each distinct event once. With a
    `scope`, only request ids and accounts that start with it, and dead letters that hold it,
    are this run's (several runs share one database)."""
    events = {k: v for k, v in stored_events(store).items() if k.startswith(scope)}
    letters = [(raw, r) for raw, r in dead_letters(store) if scope.encode() in raw]
    for request_id, (account, prompt) in expected.stored.items():
        rows = events.get(request_id, [])
        why = [r for raw, r in letters if orjson.dumps(request_id) in raw]
        assert len(rows) == 1, f"{request_id!r}: {len(rows)} rows; dead letters: {why}"
        assert rows[0]["account_id"] == account, request_id
        assert rows[0]["prompt_text"] == prompt, request_id
    unexpected = set(events) - set(expected.stored)
    assert not unexpected, f"stored but not valid: {sorted(unexpected)[:5]}"

    by_bytes: dict[bytes, list[str]] = {}
    for raw, reason in letters:
        by_bytes.setdefault(raw, []).append(reason)
    for name, line, reason in expected.dead:
        reasons = by_bytes.get(line)
        assert reasons, f"{name}: no dead letter with its original bytes"
        assert all(r.strip() for r in reasons), f"{name}: empty reason"
        assert any(r.startswith(reason) for r in reasons), f"{name}: {reasons}"
    for name, line in expected.conflicts:
        reasons = by_bytes.get(line, [])
        assert any(r.startswith("conflict") for r in reasons), f"{name}: {reasons}"
    bad = {d[1] for d in expected.dead} | {c[1] for c in expected.conflicts}
    valid_lines = set(expected.first_pass + expected.later) - bad
    wrongly_dead = [r for raw, r in letters if raw in valid_lines]
    assert not wrongly_dead, f"valid events dead-lettered: {wrongly_dead[:3]}"

    counted = {a: n for a, n in requests_counted(store).items() if a.startswith(scope)}
    assert counted == expected.per_account()


def eventually(check: Callable[[], None], timeout_s: float) -> None:
    """Retry an assertion until it holds (a worker is still consuming) or time runs out, then
    raise its last failure."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            check()
            return
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(1.0)
