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


def account_states(
    store: Store, detector: str, account_ids: Sequence[str]
) -> dict[str, AccountState]:
    """The latest checkpoint of each account that has one."""
    rows = store.query_in(
        "SELECT account_id, requests_seen, state_json, updated_ms FROM {db}.account_state FINAL "
        "WHERE detector = %(detector)s AND account_id IN %(values)s",
        account_ids,
        {"detector": detector},
    )
    return {row["account_id"]: _state(row, detector) for row in rows}


def global_state(store: Store, detector: str) -> AccountState | None:
    """The detector's cross-account checkpoint (campaign links), if it saved one."""
    return account_states(store, detector, [GLOBAL_STATE_ID]).get(GLOBAL_STATE_ID)
