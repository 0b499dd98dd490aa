"""What a detector is (River-sized): a per-account protocol every detector implements, and two
optional ones a detector may add.

- `Detector`: `fit` calibrates on benign history, `update` consumes one account's new events and
  says what it thinks, `state`/`load` move one account's state to and from the `account_state`
  table so a restart or a partition rebalance resumes instead of relearning, `forget` drops it.
- `CrossAccountDetector`: state shared by all accounts (campaign links), checkpointed apart,
  and the campaigns scored since the last batch.
- `CalibratedDetector`: fitted parameters as JSON (`calibrate --out`, reports).
- `ReviewedCalibration`: calibration that can tell analysts' reviewed false positives from the
  rest of the benign history (`fit_reviewed`).

Callers that use an optional protocol go through the helpers below, which do nothing for a
detector without it.

>>> from detectors.volume import VolumeDetector
>>> detector = VolumeDetector()
>>> isinstance(detector, Detector), isinstance(detector, CalibratedDetector)
(True, True)
>>> isinstance(detector, CrossAccountDetector)
False
>>> cross_account_state(detector), drain_clusters(detector)
(None, [])
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Collection, Iterable
from typing import Any, Protocol, Self, runtime_checkable

from core.events import Event
from core.verdicts import Assessment, ClusterVerdict


@runtime_checkable
class Detector(Protocol):
    """Per-account detector; state is keyed by `account_id` (the Kafka key). Subclass it to
    inherit `update_batch` and `forget`."""

    name: str
    version: str

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


@runtime_checkable
class CrossAccountDetector(Protocol):
    """A detector that links accounts (campaigns): its cross-account state and clusters."""

    def global_state(self) -> dict[str, Any] | None:
        """Cross-account state (e.g. campaign links), None while there is none to save."""
        ...

    def load_global_state(self, state: dict[str, Any]) -> None:
        """Restore what `global_state` returned."""
        ...

    def drain_clusters(self) -> list[ClusterVerdict]:
        """Campaigns scored since the last call."""
        ...


@runtime_checkable
class CalibratedDetector(Protocol):
    """A detector whose fitted parameters can be saved and loaded as JSON."""

    def calibration(self) -> dict[str, Any]:
        """Fitted parameters, for reports and `calibrate` output."""
        ...

    def load_calibration(self, calibration: dict[str, Any]) -> Any:
        """Restore fitted parameters saved by `calibration`."""
        ...


@runtime_checkable
class ReviewedCalibration(Protocol):
    """A detector that learns from analysts' false positives without letting them move what it
    does for everyone else: each reviewed account's traffic sets that account's own ceiling (its
    score is vouched for up to there; it is flagged again only when its behaviour changes
    materially), while thresholds, benign distributions and forest stay the ordinary benign
    population's. The reviewed accounts were picked *because* they scored highest, so they are
    no exchangeable sample of new honest accounts: counted in the conformal quantiles they raise
    the thresholds for everyone, and pooled into the distributions they make rare behaviour
    look ordinary; either way attackers are lost (measured: `bench.feedback`)."""

    def fit_reviewed(self, benign_events: Iterable[Event], reviewed: Collection[str]) -> Any:
        """`fit` on `benign_events` less the `reviewed` accounts' events, which set those
        accounts' ceilings instead."""
        ...


def fit_with_reviewed(
    detector: Detector, events: Iterable[Event], reviewed: Collection[str]
) -> Any:
    """Fit `detector` on benign `events` that include the `reviewed` false positives' traffic;
    a detector without `ReviewedCalibration` counts them as ordinary benign accounts."""
    if reviewed and isinstance(detector, ReviewedCalibration):
        return detector.fit_reviewed(events, reviewed)
    return detector.fit(events)


def cross_account_state(detector: object) -> dict[str, Any] | None:
    """The detector's cross-account state, or None (also for per-account-only detectors)."""
    return detector.global_state() if isinstance(detector, CrossAccountDetector) else None


def load_cross_account_state(detector: object, state: dict[str, Any]) -> None:
    """Restore cross-account state; a per-account-only detector ignores it."""
    if isinstance(detector, CrossAccountDetector):
        detector.load_global_state(state)


def drain_clusters(detector: object) -> list[ClusterVerdict]:
    """Campaigns the detector scored since the last call ([] for per-account detectors)."""
    return detector.drain_clusters() if isinstance(detector, CrossAccountDetector) else []


def calibration_of(detector: object) -> dict[str, Any]:
    """The detector's fitted parameters ({} for a detector without a calibration)."""
    return detector.calibration() if isinstance(detector, CalibratedDetector) else {}


def load_calibration_into(detector: object, calibration: dict[str, Any]) -> None:
    """Restore fitted parameters; a detector without a calibration ignores them."""
    if isinstance(detector, CalibratedDetector):
        detector.load_calibration(calibration)
