"""The harvest arm: the whole-history harvest evidence (`scoring.harvest`) as a second way to reach
the thresholds, on the fused score's own scale.

A harvest value is mapped to the fused raw score that honest accounts exceed as rarely: its
benign tail probability among honest accounts' out-of-fold harvest peaks (`benign.tail_p`, with
the exponential tail beyond the largest), then the fused score at that tail probability among
their out-of-fold fused peaks (`benign.tail_value`: beyond every honest peak, rarer is still
higher). An account's raw score is the larger of the two, and calibration sets the thresholds
on the honest accounts' peaks of that maximum, so the two arms together still flag the target
share of honest accounts. Values in the honest bulk (tail probability above one half) map to
0: the arm speaks only in the tail. A history of one active day has no harvest value at all
(`scoring.harvest`): the arm is for evidence spread over time, a one-day burst is the window
signals' to judge.

>>> arm = HarvestArm(np.arange(100.0), np.arange(100.0) * 10)
>>> float(arm(np.array([10.0]))[0])
0.0
>>> float(arm(np.array([99.5]))[0]) > 990  # beyond every honest harvest: beyond every fused peak
True
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from detectors.fusion import benign

BULK = 0.5  # tail probabilities above this are the honest bulk: the arm adds nothing there


@dataclass(frozen=True)
class HarvestArm:
    harvest_peaks: np.ndarray  # honest accounts' out-of-fold harvest peaks
    fused_peaks: np.ndarray  # their out-of-fold fused peaks

    def __post_init__(self) -> None:
        object.__setattr__(self, "harvest_peaks", np.sort(np.asarray(self.harvest_peaks, float)))
        object.__setattr__(self, "fused_peaks", np.asarray(self.fused_peaks, float))

    def __call__(self, harvest: np.ndarray) -> np.ndarray:
        """The fused raw score as rare among honest accounts as each harvest value."""
        harvest = np.atleast_1d(np.asarray(harvest, dtype=np.float64))
        if len(self.harvest_peaks) == 0 or len(self.fused_peaks) == 0:
            return np.zeros(len(harvest))
        tails = benign.tail_p(self.harvest_peaks, harvest)
        return np.array(
            [0.0 if p > BULK else benign.tail_value(self.fused_peaks, p) for p in tails]
        )

    @classmethod
    def fit(cls, harvest_peaks: Mapping[str, float], fused_peaks: Mapping[str, float]):
        return cls(np.array(list(harvest_peaks.values())), np.array(list(fused_peaks.values())))

    def combined_peaks(
        self, harvest_peaks: Mapping[str, float], fused_peaks: Mapping[str, float]
    ) -> dict[str, float]:
        """Each account's peak of max(fused, mapped harvest): the mapping is monotone, so it is
        the larger of its two peaks."""
        mapped = dict(zip(harvest_peaks, self(np.array(list(harvest_peaks.values()))), strict=True))
        return {a: max(peak, float(mapped.get(a, 0.0))) for a, peak in fused_peaks.items()}
