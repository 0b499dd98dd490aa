"""Calibration drift in the worker: live traffic like the calibration history keeps the drift
gauge at 0; a live flag rate far above the held-out benign rate moves the gauge and logs one
warning line, not one per batch."""

from __future__ import annotations

import logging
from pathlib import Path

import orjson
import pytest
from prometheus_client import REGISTRY

from core.events import Event, parse_event
from detectors.base import calibration_of
from detectors.drift import DriftMonitor
from detectors.fusion import ExtractionDetector
from streaming.files import FileSource
from streaming.pipeline import Pipeline
from streaming.worker import Worker
from students.actors import benign_users
from tests.planned import harvesters, records_of


@pytest.fixture(scope="module")
def detector() -> ExtractionDetector:
    history = records_of(benign_users(120, 500, 7, seed=1), "cal")
    events = [parse_event(orjson.dumps(r), "test") for r in history]
    assert all(isinstance(e, Event) for e in events)
    return ExtractionDetector().fit(events)  # type: ignore[arg-type]


def write(path: Path, rows: list[dict]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))
    return path


def feed(worker: Worker, path: Path) -> None:
    """What `streaming.loop.run` does with each batch, then the worker's bookkeeping."""
    source = FileSource(path, batch_size=400)
    for batch_records in source.batches():
        batch = worker.pipeline.process(batch_records)
        worker.pipeline.checkpoint()
        worker._count(batch_records, batch, 0.01)


def gauge(name: str) -> float:
    value = REGISTRY.get_sample_value(name)
    assert value is not None
    return value


def test_the_worker_reads_the_expected_rate_from_the_calibration(
    detector: ExtractionDetector,
) -> None:
    worker = Worker(Pipeline(detector, []), source=None)  # type: ignore[arg-type]
    level = detector.calibration_report_["levels"]["suspicious"]
    assert worker.drift is not None
    assert worker.drift.expected == level["measured_fpr"]
    assert worker.drift.high == max(level["interval"][1], detector.suspicious_fpr)
    assert gauge("distillguard_calibrated_flag_rate") == level["measured_fpr"]


def test_a_shifted_flag_rate_moves_the_gauge_and_logs_once(
    detector: ExtractionDetector, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    worker = Worker(Pipeline(detector, []), source=None)  # type: ignore[arg-type]
    worker.drift = DriftMonitor.from_calibration(calibration_of(detector), min_accounts=60)
    caplog.set_level(logging.WARNING, logger="distillguard.worker")

    feed(worker, write(tmp_path / "benign.jsonl", records_of(benign_users(300, 600, 7, 2), "b")))
    assert worker.drift is not None and worker.drift.status.accounts >= 60
    assert gauge("distillguard_calibration_drift") < worker.drift.alarm
    assert gauge("distillguard_live_flag_rate") <= worker.drift.high
    assert not [r for r in caplog.records if "calibration drift" in r.getMessage()]

    attack = records_of(harvesters(200, 24, 1_800_000_000_000), "h")
    feed(worker, write(tmp_path / "attack.jsonl", attack))
    assert gauge("distillguard_live_flag_rate") > 0.3
    assert gauge("distillguard_calibration_drift") >= worker.drift.alarm
    warnings = [r for r in caplog.records if "calibration drift" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert "recalibrate" in warnings[0].getMessage()


def test_the_monitor_rate_limits_and_ignores_accounts_not_yet_scored() -> None:
    monitor = DriftMonitor(expected=0.01, low=0.002, high=0.03, window=500, min_accounts=100)
    young = {f"new-{i}": 2 for i in range(300)}  # below 4 requests: calibration never scored such
    status = monitor.observe(young, {f"new-{i}": "suspicious" for i in range(50)})
    assert status.accounts == 0 and status.drift == 0.0 and monitor.alert(0.0) is None

    status = monitor.observe({f"old-{i}": 40 for i in range(200)}, {})
    assert status.accounts == 200 and not status.drifting
    flagged = {f"old-{i}": "extraction" for i in range(40)}
    status = monitor.observe(dict.fromkeys(flagged, 41), flagged)
    assert status.flagged == 40 and status.drifting and status.drift > 3
    assert monitor.alert(10.0) is not None
    assert monitor.alert(20.0) is None  # still drifting, already said
    assert monitor.alert(10.0 + monitor.warn_every_s) is not None

    # The window forgets the oldest accounts: 500 quiet ones push the flagged out.
    status = monitor.observe({f"quiet-{i}": 10 for i in range(500)}, {})
    assert status.accounts == 500 and status.flagged == 0 and not status.drifting
    assert status.drift < 0  # fewer than calibrated: reported, not warned about


def test_a_detector_without_an_fpr_calibration_gets_no_monitor() -> None:
    assert DriftMonitor.from_calibration({"threshold": 11}) is None
    legacy = DriftMonitor.from_calibration({"suspicious_fpr": 0.01, "fitted_accounts": 500})
    assert legacy is not None and legacy.low <= 0.01 <= legacy.high


def test_an_uncalibrated_detector_gets_no_monitor_and_does_not_fail() -> None:
    """A worker started before `calibrate` has run (every account scores 0) must start."""
    assert DriftMonitor.from_calibration(calibration_of(ExtractionDetector())) is None
