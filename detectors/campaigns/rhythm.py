"""Synchronised schedules: accounts that keep the same unusual hours of the day, or fire at the
same minute of the hour (one scheduler behind many accounts), even on different days.

Each account's activity is a histogram over the hours of the day (one count per active hour of
the window) and over the minutes of the hour (each active hour's count spread over the minutes
it was active in: a schedule is what recurs, not how long one burst lasts), smoothed over
neighbouring bins and shrunk towards the benign population's histogram (`prior` pseudo-counts,
so a quiet account looks like everyone). Two accounts' *lift* is how much more often they share
a bin than two random draws from the population would: Σ pa·pb/q, 1 for accounts that look like
everyone, large for two accounts crowded into the same bins that honest users seldom use. The
evidence is log10 of the hour lift plus log10 of the minute lift (each at least 0); what counts
as unusual comes from the benign calibration traffic.

>>> from core.timeutil import HOUR_MS, MINUTE_MS
>>> rhythm = Rhythm.uniform()
>>> def active(*moments):
...     buckets: dict[int, set[int]] = {}
...     for ms in moments:
...         buckets.setdefault(ms // HOUR_MS, set()).add(ms % HOUR_MS // MINUTE_MS)
...     return buckets
>>> night = [day * 24 * HOUR_MS + 3 * HOUR_MS + 17 * MINUTE_MS for day in range(6)]
>>> a, b = active(*night), active(*[ms + 20 * 24 * HOUR_MS for ms in night])
>>> round(rhythm.overlap(a, b, prior=4.0), 2), rhythm.overlap(a, active(), prior=4.0)
(1.35, 0.0)
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.timeutil import HOUR_MS, MINUTE_MS
from detectors.features import EventFeatures

HOURS, MINUTES = 24, 60
HOUR_KERNEL = (0.25, 0.5, 0.25)  # a shared window may straddle an hour boundary
MINUTE_KERNEL = (1 / 9, 2 / 9, 3 / 9, 2 / 9, 1 / 9)  # schedulers jitter by a minute or two
UNIFORM_SHARE = 0.1  # population histograms are mixed with this much of the uniform one


def _smooth(counts: np.ndarray, kernel: tuple[float, ...]) -> np.ndarray:
    """Circular smoothing (hour 23 neighbours hour 0)."""
    return _smoothing(len(counts), kernel) @ counts


@functools.cache
def _smoothing(size: int, kernel: tuple[float, ...]) -> np.ndarray:
    """The circular smoothing as one matrix (column j: bin j's count spread over its
    neighbours): the linker compares schedules for every candidate pair, and one product is
    ~10x faster than summing rolled copies."""
    shifts = range(-(len(kernel) // 2), len(kernel) // 2 + 1)
    matrix = np.zeros((size, size))
    for shift, weight in zip(shifts, kernel, strict=True):
        matrix += weight * np.roll(np.eye(size), shift, axis=0)
    return matrix


Histograms = tuple[np.ndarray, np.ndarray]  # hours of the day, minutes of the hour
Shrunk = Histograms  # the same, smoothed and shrunk towards the population (`Rhythm.shrunk`)


def histograms(buckets: Mapping[int, Iterable[int]]) -> Histograms:
    """Hours of the day of the active hour buckets, one count each, and the minutes of the hour
    they were active in, one count per bucket spread over its active minutes.

    A schedule is what recurs: a scheduler firing at :17 for thirty hours puts thirty counts on
    minute 17, while one ten-minute burst puts one count on ten minutes, not ten. Counted per
    minute, every script started once at the top of an hour looked like the same scheduler: on
    `sharegpt-chat` three dataset replayers and three reasoning harvesters, two separate tools,
    were merged as one operator on their bursts' shared minutes :00-:10.

    >>> _, minutes = histograms({5: {0, 1, 2, 3}, 29: {17}})
    >>> minutes[:4].tolist(), float(minutes[17]), float(minutes.sum())
    ([0.25, 0.25, 0.25, 0.25], 1.0, 2.0)
    """
    hours, minutes = np.zeros(HOURS), np.zeros(MINUTES)
    for bucket, active in buckets.items():
        hours[bucket % HOURS] += 1
        spread = list(active)
        if spread:
            minutes[spread] += 1 / len(spread)
    return hours, minutes


@dataclass
class Rhythm:
    """The benign population's hour-of-day and minute-of-hour histograms (shares)."""

    hours: list[float]
    minutes: list[float]

    @classmethod
    def uniform(cls) -> Rhythm:
        return cls([1 / HOURS] * HOURS, [1 / MINUTES] * MINUTES)

    @classmethod
    def fit(cls, features: Iterable[EventFeatures]) -> Rhythm:
        """Population histograms from benign traffic: each account's active hours and minutes
        count once, however many requests it sent in them."""
        active: dict[str, dict[int, set[int]]] = defaultdict(lambda: defaultdict(set))
        for f in features:
            bucket = f.timestamp_ms // HOUR_MS
            active[f.account_id][bucket].add(f.timestamp_ms % HOUR_MS // MINUTE_MS)
        hours, minutes = np.zeros(HOURS), np.zeros(MINUTES)
        for buckets in active.values():
            h, m = histograms(buckets)
            hours, minutes = hours + h, minutes + m
        return cls(_population(hours).tolist(), _population(minutes).tolist())

    def overlap(
        self, a: Mapping[int, Iterable[int]], b: Mapping[int, Iterable[int]], prior: float
    ) -> float:
        """log10 hour lift + log10 minute lift (each ≥ 0) of two accounts' active minutes
        (hour bucket -> minutes of the hour)."""
        if not a or not b:
            return 0.0
        return self.shrunk_lift(
            self.shrunk(histograms(a), prior), self.shrunk(histograms(b), prior)
        )

    def shrunk(self, counts: Histograms, prior: float) -> Shrunk | None:
        """An account's smoothed histograms shrunk towards the population (`prior`
        pseudo-counts), as `shrunk_lift` compares them: once per account when the linker
        compares it with many. None for an account never active."""
        hours, minutes = counts
        if not hours.any():
            return None
        smoothed_hours, smoothed_minutes = self._smoothed_population
        return (
            (_smooth(hours, HOUR_KERNEL) + prior * smoothed_hours) / (hours.sum() + prior),
            (_smooth(minutes, MINUTE_KERNEL) + prior * smoothed_minutes) / (minutes.sum() + prior),
        )

    def shrunk_lift(self, a: Shrunk | None, b: Shrunk | None) -> float:
        """`lift` of two `shrunk` accounts."""
        if a is None or b is None:
            return 0.0
        smoothed_hours, smoothed_minutes = self._smoothed_population
        return _log_lift(a[0], b[0], smoothed_hours) + _log_lift(a[1], b[1], smoothed_minutes)

    @functools.cached_property
    def _smoothed_population(self) -> tuple[np.ndarray, np.ndarray]:
        """The population's smoothed histograms, once (they are fixed after calibration)."""
        return (
            _smooth(np.asarray(self.hours), HOUR_KERNEL),
            _smooth(np.asarray(self.minutes), MINUTE_KERNEL),
        )

    def to_json(self) -> dict[str, Any]:
        return {"hours": self.hours, "minutes": self.minutes}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Rhythm:
        return cls(list(data["hours"]), list(data["minutes"])) if data else cls.uniform()


def _population(counts: np.ndarray) -> np.ndarray:
    share = counts / counts.sum() if counts.sum() else np.full(len(counts), 1 / len(counts))
    return (1 - UNIFORM_SHARE) * share + UNIFORM_SHARE / len(counts)


def _log_lift(pa: np.ndarray, pb: np.ndarray, q: np.ndarray) -> float:
    """log10 Σ pa·pb/q, at least 0 (`q`: the population's smoothed histogram). The array's own
    `sum` is `np.sum`'s reduction without its dispatch layer, which cost as much as the sum
    itself here (twice for every pair the linker compares)."""
    return max(0.0, float(np.log10((pa * pb / q).sum())))
