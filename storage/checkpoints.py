"""Reading detector checkpoints back (`account_state`): what a restarted or rebalanced pipeline
resumes from. Writing them is a sink's job (`storage.rows.account_state_row`)."""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from core.batch import GLOBAL_STATE_ID, AccountState
from storage.base import Store


def _state(row: dict, detector: str) -> AccountState:
    return AccountState(
        account_id=row["account_id"],
        detector=detector,
        requests_seen=int(row["requests_seen"]),
        state=orjson.loads(row["state_json"]),
        updated_ms=int(row["updated_ms"]),
    )


def checkpoint_stamps(
    store: Store, detector: str, account_ids: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """(requests_seen, updated_ms) of each account's latest checkpoint, without the state: which
    accounts have one, and whether a copy read earlier is still the latest (`updated_ms` is the
    row's version). Cheap, unlike the states: `FINAL` reads every unmerged version in each index
    granule it touches (8 rows; 8,192 before migration 9), so a state read
    costs megabytes however few accounts it selects."""
    rows = store.query_in(
        "SELECT account_id, requests_seen, updated_ms FROM {db}.account_state FINAL "
        "WHERE detector = %(detector)s AND account_id IN %(values)s",
        account_ids,
        {"detector": detector},
    )
    return {row["account_id"]: (int(row["requests_seen"]), int(row["updated_ms"])) for row in rows}


def saved_states(
    store: Store, detector: str, account_ids: Sequence[str]
) -> dict[str, AccountState]:
    """The latest checkpoint of each of `account_ids` that has one (the costly read: ask
    `checkpoint_stamps` first which accounts need it)."""
    if not account_ids:
        return {}
    rows = store.query_in(
        "SELECT account_id, requests_seen, state_json, updated_ms FROM {db}.account_state FINAL "
        "WHERE detector = %(detector)s AND account_id IN %(values)s",
        account_ids,
        {"detector": detector},
    )
    return {row["account_id"]: _state(row, detector) for row in rows}


def account_states(
    store: Store, detector: str, account_ids: Sequence[str]
) -> dict[str, AccountState]:
    """The latest checkpoint of each account that has one. The states are read only for the
    accounts the stamps show to have one: a worker asks for every account new to it, and in a
    steady stream those are mostly accounts never checkpointed."""
    return saved_states(store, detector, list(checkpoint_stamps(store, detector, account_ids)))


def global_state(store: Store, detector: str) -> AccountState | None:
    """The detector's cross-account checkpoint (campaign links), if it saved one."""
    return account_states(store, detector, [GLOBAL_STATE_ID]).get(GLOBAL_STATE_ID)
