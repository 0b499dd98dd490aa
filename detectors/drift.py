"""Calibration drift in a running worker: is the live share of flagged accounts still the share
of honest accounts the calibration flagged on held-out benign history?

Kept apart from `detectors.fusion` (numpy and scipy only) so the worker can import it without
the detector's models. The expected rate comes from the calibration file's report
(`detectors.fusion.calibration.calibration_report`).

>>> monitor = DriftMonitor(expected=0.01, low=0.004, high=0.02, min_accounts=100)
>>> flagged = {f"a{i}": "suspicious" for i in range(30)}
>>> status = monitor.observe({f"a{i}": 10 for i in range(200)}, flagged)
>>> status.rate, status.drifting, status.drift > 3
(0.15, True, True)
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

Z95 = 1.959963984540054
FLAGGED_LABELS = frozenset({"suspicious", "extraction"})


def wilson(flagged: int, total: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion: unlike the normal approximation it stays
    inside [0, 1] and is honest at 0 of n (the usual case at a 0.1% threshold)."""
    if total <= 0:
        return 0.0, 1.0
    share = flagged / total
    denominator = 1 + z * z / total
    centre = (share + z * z / (2 * total)) / denominator
    half = z * math.sqrt(share * (1 - share) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def percent(share: float) -> str:
    """A share as a short percentage (two significant digits)."""
    return f"{100 * share:.2g}%"


@dataclass(frozen=True)
class DriftStatus:
    """The live flag rate over the window against the calibration's expectation. `drift` is
    the signed surprise (−log10 of the one-sided binomial p-value) of the live count under the
    calibration's interval: positive when more accounts are flagged than calibration allows,
    negative when fewer, 0 inside the interval or before `min_accounts` accounts were seen;
    `drifting` when it reaches the alarm on the high side."""

    accounts: int
    flagged: int
    rate: float
    expected: float
    low: float
    high: float
    drift: float
    drifting: bool


class DriftMonitor:
    """Watches the share of recently active accounts ever flagged (suspicious or above) while in
    a sliding window of the last `window` distinct active accounts, against the share of held-out
    benign accounts the calibration flagged at that level. Live accounts are mostly honest, so a
    rate far above the calibrated one means the calibration no longer describes live traffic (or
    an attack wave: the flagged accounts say which), and that is what warns. Below is reported
    (a negative drift) but does not warn: live accounts are younger than the history's whole
    lifetimes, so fewer of them have peaked yet. O(1) per account seen, plus one binomial tail
    per batch."""

    def __init__(
        self,
        expected: float,
        low: float,
        high: float,
        window: int = 5000,
        min_accounts: int = 200,
        min_requests: int = 4,
        alarm: float = 3.0,
        warn_every_s: float = 900.0,
    ) -> None:
        self.expected, self.low, self.high = expected, low, high
        self.window = window
        self.min_accounts = min_accounts
        self.alarm = alarm
        self.warn_every_s = warn_every_s
        self.min_requests = min_requests
        self.accounts: OrderedDict[str, tuple[bool, int]] = OrderedDict()  # flagged, requests
        self.counted = 0  # accounts in the window with at least `min_requests` requests
        self.flagged = 0  # of those, flagged while in the window
        self.status = DriftStatus(0, 0, 0.0, expected, low, high, 0.0, False)
        self._warned_at: float | None = None

    @classmethod
    def from_calibration(
        cls, calibration: Mapping[str, Any], **options: Any
    ) -> DriftMonitor | None:
        """From a fused detector's calibration: the held-out suspicious-level rate and its
        interval, widened to include the target (the rate the thresholds were chosen for). A
        calibration saved before reports existed uses its target and the Wilson interval over
        its accounts; a detector without an FPR calibration (volume) gets no monitor."""
        report = calibration.get("report") or {}
        level = report.get("levels", {}).get("suspicious")
        if level is not None:
            target = float(level["target_fpr"])
            low, high = level["interval"]
            expected = float(level["measured_fpr"])
            return cls(expected, min(low, target), max(high, target), **options)
        if calibration.get("suspicious_fpr") is None or not calibration.get("fitted_accounts"):
            return None  # nothing calibrated (an uncalibrated worker scores every account 0)
        fpr = float(calibration["suspicious_fpr"])
        accounts = int(calibration.get("fitted_accounts") or 0)
        low, high = wilson(round(fpr * accounts), accounts)
        return cls(fpr, min(low, fpr), max(high, fpr), **options)

    def observe(self, active: Mapping[str, int], labels: Mapping[str, str]) -> DriftStatus:
        """Record a batch: the accounts with new requests (with how many requests each has sent
        so far) and the labels of accounts whose label changed (verdicts); returns the status.
        Only accounts with at least `min_requests` count, as calibration's peaks do: an account
        is not scored before it has sent `min_requests` requests."""
        for account_id in [*active, *labels]:
            flagged = labels.get(account_id) in FLAGGED_LABELS
            requests = active.get(account_id, 0)
            was = self.accounts.pop(account_id, None)
            if was is None:
                if len(self.accounts) >= self.window:
                    _, (gone_flagged, gone_requests) = self.accounts.popitem(last=False)
                    self._forget(gone_flagged, gone_requests)
                was = (False, 0)
            else:
                self._forget(*was)
            now = (was[0] or flagged, max(was[1], requests))
            if now[1] >= self.min_requests:
                self.counted += 1
                self.flagged += now[0]
            self.accounts[account_id] = now
        self.status = self._status()
        return self.status

    def _forget(self, flagged: bool, requests: int) -> None:
        if requests >= self.min_requests:
            self.counted -= 1
            self.flagged -= flagged

    def _status(self) -> DriftStatus:
        from scipy.stats import binom

        n, k = self.counted, self.flagged
        rate = k / n if n else 0.0
        drift = 0.0
        if n >= self.min_accounts:
            if rate > self.high:
                drift = -math.log10(max(float(binom.sf(k - 1, n, self.high)), 1e-300))
            elif rate < self.low:
                drift = math.log10(max(float(binom.cdf(k, n, self.low)), 1e-300))
        return DriftStatus(
            n, k, rate, self.expected, self.low, self.high, drift, drift >= self.alarm
        )

    def alert(self, now_s: float) -> str | None:
        """The warning line to log now, if any: at most once every `warn_every_s` while the
        live rate is too high (a batch-by-batch warning, or one per flicker across the alarm,
        would drown the log)."""
        status = self.status
        if not status.drifting:
            return None
        if self._warned_at is not None and now_s - self._warned_at < self.warn_every_s:
            return None
        self._warned_at = now_s
        return (
            f"calibration drift: {status.flagged} of the last {status.accounts} active accounts "
            f"({percent(status.rate)}) reached suspicious or above, above the calibrated "
            f"{percent(status.expected)} (95% {percent(status.low)}–{percent(status.high)}; "
            f"drift {status.drift:+.1f}): if these accounts are honest, recalibrate on recent "
            "benign traffic (`distillguard calibrate`); otherwise look at the flagged accounts"
        )
