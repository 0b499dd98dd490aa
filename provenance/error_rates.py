"""The provenance tests' measured false-accusation rate, which forensic reports quote.

`distillguard provenance experiment` (the companion, `students/provenance_experiment.py`) measures
it on clean students and saves it here; reports read it without importing the companion.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

FALSE_ACCUSATION_ALPHA = 0.01
ERROR_RATES_FILE = "calibration.json"


def bonferroni(p_value: float, tests: int) -> float:
    """A p-value adjusted for the `tests` it was the smallest of (family-wise, capped at 1):
    what attribution quotes over candidate accounts and a report over one suspect's tests."""
    return min(1.0, p_value * tests)


def error_rates_path(data_dir: Path) -> Path:
    return data_dir / "provenance" / ERROR_RATES_FILE


def save_error_rates(data_dir: Path, rates: dict[str, Any], key_id: str) -> Path:
    """Write the measured rates with when and how they were measured."""
    path = error_rates_path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        **rates,
        "key_id": key_id,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": "distillguard provenance experiment",
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return path


def load_error_rates(data_dir: Path) -> dict | None:
    path = error_rates_path(data_dir)
    return orjson.loads(path.read_bytes()) if path.exists() else None
