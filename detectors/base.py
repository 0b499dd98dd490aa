"""The detector interface every signal implements (River-style, scikit-learn-shaped).

`fit` calibrates on benign history, `update` consumes one account's new events and says what it
thinks, `state`/`load` move one account's state to and from the `account_state` table so a
restart or a partition rebalance resumes instead of relearning.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Any, Self

from core.events import Event
from core.verdicts import Assessment, ClusterVerdict


class Detector(ABC):
    """Per-account detector; state is keyed by `account_id` (the Kafka key)."""

    name: str = "detector"
    version: str = "0"

    @abstractmethod
    def fit(self, benign_events: Iterable[Event]) -> Self:
        """Calibrate thresholds on benign traffic (never on attack labels)."""

    @abstractmethod
    def update(self, account_id: str, events: list[Event]) -> Assessment:
        """Consume an account's new events (in order) and assess the account."""

    def update_batch(self, updates: dict[str, list[Event]]) -> dict[str, Assessment]:
        """Assess every account of a batch; detectors that vectorise across accounts override
        this. The result may include accounts without new events (e.g. campaign members)."""
        return {
            account_id: self.update(account_id, events) for account_id, events in updates.items()
        }

    @abstractmethod
    def state(self, account_id: str) -> dict[str, Any]:
        """The account's state, JSON-serialisable."""

    @abstractmethod
    def load(self, account_id: str, state: dict[str, Any]) -> None:
        """Restore an account's state saved by `state`."""

    def forget(self, account_id: str) -> None:  # noqa: B027 - optional
        """Drop an account's in-memory state (its partition moved to another worker)."""

    def global_state(self) -> dict[str, Any] | None:
        """Cross-account state (e.g. campaign links), if the detector keeps any."""
        return None

    def load_global_state(self, state: dict[str, Any]) -> None:  # noqa: B027 - optional
        """Restore what `global_state` returned."""

    def drain_clusters(self) -> list[ClusterVerdict]:
        """Campaigns scored since the last call (campaign detectors)."""
        return []

    def calibration(self) -> dict[str, Any]:
        """Fitted parameters, for reports and `calibrate` output."""
        return {}

    def load_calibration(self, calibration: dict[str, Any]) -> None:  # noqa: B027 - optional
        """Restore fitted parameters saved by `calibration`."""
