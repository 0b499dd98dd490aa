"""The linker role's member windows (`streaming.linker.store_windows`), on both store backends: a
member's checkpoint is read and parsed again only once the worker wrote a newer one."""

from __future__ import annotations

from collections import deque

from core.batch import AccountState
from detectors.campaigns import CampaignLinker
from detectors.fusion import AccountWindow, ExtractionDetector
from storage import Store
from storage.rows import account_state_row
from streaming.linker import store_windows


def checkpoint(store: Store, detector: str, account: str, seen: int, updated_ms: int) -> None:
    """A worker's checkpoint of `account` after `seen` requests (its window left empty)."""
    window = AccountWindow(deque(), seen=seen)
    state = AccountState(account, detector, seen, {"detector": window.to_state()}, updated_ms)
    store.insert("account_state", [account_state_row(state)])


def test_member_windows_are_parsed_again_only_after_a_newer_checkpoint(store: Store) -> None:
    detector = ExtractionDetector(linker=CampaignLinker(), tiered=False)
    checkpoint(store, detector.name, "a", 3, 1_000)
    checkpoint(store, detector.name, "b", 5, 1_000)
    windows = store_windows(store, detector, keep=2)

    first = windows(["a", "b", "no-checkpoint"])
    assert {a: w.seen for a, w in first.items()} == {"a": 3, "b": 5}
    again = windows(["b", "a"])
    assert again["a"] is first["a"] and again["b"] is first["b"]  # the same checkpoints

    checkpoint(store, detector.name, "a", 4, 2_000)
    moved = windows(["a", "b"])
    assert moved["a"].seen == 4 and moved["b"] is first["b"]

    checkpoint(store, detector.name, "c", 1, 2_000)
    assert windows(["c"])["c"].seen == 1  # three accounts, two kept: one is dropped
    assert {a: w.seen for a, w in windows(["a", "b", "c"]).items()} == {"a": 4, "b": 5, "c": 1}
    assert windows([]) == {}
