"""Sliding-window request volume: the first, simplest extraction signal.

Harvesting needs many requests; the detector counts an account's requests in a sliding window of
simulated time (per-minute buckets) and compares the count with a threshold taken from benign
accounts' busiest windows at a stated false-positive rate. Volume alone trips on honest batch
users; later signals exist to fix that, and fusion weighs them together.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Self

from core.events import Event, account_histories
from core.verdicts import Assessment, Label, Reason
from detectors.base import Detector


class VolumeDetector(Detector):
    """Requests per sliding window versus a benign-calibrated threshold.

    >>> from core.events import parse_event
    >>> detector = VolumeDetector(window_s=3600, threshold=2)
    >>> events = [parse_event(
    ...     f'{{"request_id":"r{i}","account_id":"a","timestamp":{i * 1000},"prompt":"hi"}}', "doc")
    ...     for i in range(86400, 86405)]
    >>> detector.update("a", events).label
    'extraction'
    """

    name = "volume"
    version = "volume-1"

    def __init__(
        self,
        window_s: int = 3600,
        threshold: float = 120.0,
        target_fpr: float = 0.001,
        min_threshold: float = 10.0,
    ) -> None:
        self.window_s = window_s
        self.threshold = threshold
        self.target_fpr = target_fpr
        self.min_threshold = min_threshold
        self._buckets: dict[str, dict[int, int]] = {}
        self._peak: dict[str, int] = {}

    def _window_count(self, account_id: str, events: list[Event]) -> int:
        """Add events to the account's per-minute buckets; return the count now in the window."""
        buckets = self._buckets.setdefault(account_id, {})
        peak = self._peak.get(account_id, 0)
        current = sum(buckets.values())
        newest = max(buckets, default=None)
        for event in events:
            minute = event.timestamp_ms // 60_000
            buckets[minute] = buckets.get(minute, 0) + 1
            current += 1
            if newest is None or minute > newest:
                newest = minute
                oldest = minute - self.window_s // 60
                for stale in [m for m in buckets if m <= oldest]:
                    current -= buckets.pop(stale)
            peak = max(peak, current)
        self._peak[account_id] = peak
        return current

    def fit(self, benign_events: Iterable[Event]) -> Self:
        """Threshold = the (1 - target_fpr) quantile of benign accounts' busiest window."""
        scratch = VolumeDetector(self.window_s, self.threshold)
        for account_id, events in account_histories(benign_events).items():
            scratch._window_count(account_id, events)
        peaks = sorted(scratch._peak.values())
        if peaks:
            index = min(len(peaks) - 1, int((1 - self.target_fpr) * len(peaks)))
            self.threshold = max(self.min_threshold, float(peaks[index]) + 1)
        self.fitted_accounts_ = len(peaks)
        return self

    def update(self, account_id: str, events: list[Event]) -> Assessment:
        count = self._window_count(account_id, events)
        score = min(1.0, count / (2 * self.threshold))
        label: Label = (
            "extraction"
            if count >= 1.5 * self.threshold
            else "suspicious"
            if count >= self.threshold
            else "benign"
        )
        reason = Reason(
            signal="volume_per_window",
            value=float(count),
            contribution=score,
            evidence={
                "window_s": self.window_s,
                "threshold": self.threshold,
                "peak": self._peak.get(account_id, count),
            },
        )
        return Assessment(score=score, label=label, reasons=[reason])

    def state(self, account_id: str) -> dict[str, Any]:
        return {
            "buckets": {str(k): v for k, v in self._buckets.get(account_id, {}).items()},
            "peak": self._peak.get(account_id, 0),
        }

    def load(self, account_id: str, state: dict[str, Any]) -> None:
        self._buckets[account_id] = {int(k): int(v) for k, v in state.get("buckets", {}).items()}
        self._peak[account_id] = int(state.get("peak", 0))

    def forget(self, account_id: str) -> None:
        self._buckets.pop(account_id, None)
        self._peak.pop(account_id, None)

    def calibration(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "threshold": self.threshold,
            "target_fpr": self.target_fpr,
        }

    def load_calibration(self, calibration: dict[str, Any]) -> None:
        self.window_s = int(calibration.get("window_s", self.window_s))
        self.threshold = float(calibration.get("threshold", self.threshold))
        self.target_fpr = float(calibration.get("target_fpr", self.target_fpr))
