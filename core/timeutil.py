"""Time in one unit everywhere: UTC epoch milliseconds, with the spans the detectors count in."""

from __future__ import annotations

from datetime import UTC, datetime

SECOND_MS = 1_000
MINUTE_MS = 60 * SECOND_MS
HOUR_MS = 60 * MINUTE_MS
DAY_MS = 24 * HOUR_MS
# The largest Int64: "no upper bound" for an event-time range (ClickHouse compares it natively).
END_OF_TIME_MS = 2**63 - 1


def now_ms() -> int:
    """Current UTC time in epoch milliseconds."""
    return int(datetime.now(UTC).timestamp() * 1000)
