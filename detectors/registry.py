"""Which detector the pipeline runs, and its calibration on disk (`calibrate --out MODEL_DIR`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson

from detectors.base import Detector
from detectors.volume import VolumeDetector
from streaming.events import Event, parse_event

CALIBRATION_FILE = "calibration.json"


def build_detector(target_fpr: float = 0.001) -> Detector:
    """The detector every entry point uses (one place to change it)."""
    return VolumeDetector(target_fpr=target_fpr)


def events_in_file(path: Path) -> Iterator[Event]:
    """Valid events of a JSONL file (calibration input; bad lines are skipped here)."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle):
            event = parse_event(line.rstrip(b"\r\n"), f"file:{path.name}", number)
            if isinstance(event, Event):
                yield event


def save_calibration(detector: Detector, model_dir: Path) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / CALIBRATION_FILE
    document = {
        "detector": detector.name,
        "version": detector.version,
        "calibration": detector.calibration(),
    }
    path.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return path


def load_calibration(detector: Detector, model_dir: Path) -> Detector:
    document = orjson.loads((model_dir / CALIBRATION_FILE).read_bytes())
    if document["detector"] != detector.name:
        raise ValueError(
            f"{model_dir} holds a {document['detector']!r} calibration, not {detector.name!r}"
        )
    detector.load_calibration(document["calibration"])
    return detector
