"""The fused detector's calibration file (`calibrate --out`): benign distributions, thresholds,
the forest's training sample, the benign embedding reference, the linker's calibration and the
calibration report (held-out false-positive rates and warnings, `calibration.calibration_report`).
The layout is the one saved files already hold: change it only with a migration (files saved
before the report existed load without one: `report` is None; before the harvest arm, without
one: the fused score alone)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from detectors.fusion.benign import IsolationSurprise, UsualOpenings
from detectors.fusion.harvest import HarvestArm
from detectors.signals import SIGNALS, Reference

if TYPE_CHECKING:
    from detectors.fusion.detector import ExtractionDetector


def calibration_to_json(detector: ExtractionDetector) -> dict[str, Any]:
    reference = detector.reference_
    isolation = detector.isolation_
    training = isolation.training if isolation is not None else np.zeros((0, len(SIGNALS)))
    return {
        "signals": [s.name for s in SIGNALS],
        "embedder": embedder_identity(detector),
        "target_fpr": detector.target_fpr,
        "suspicious_fpr": detector.suspicious_fpr,
        "thresholds": detector.thresholds_,
        "deep_share": detector.deep_share,
        "deep_threshold": detector.deep_threshold_,
        "fitted_accounts": detector.fitted_accounts_,
        "reviewed_peaks": detector.reviewed_peaks_,
        "openings": detector.openings_.to_json(),
        "report": getattr(detector, "calibration_report_", None),
        "benign_values": {
            signal: {str(b): v.round(6).tolist() for b, v in buckets.items()}
            for signal, buckets in detector.benign_values_.items()
        },
        "isolation_training": training.round(6).tolist(),
        "harvest_arm": None
        if detector.harvest_arm_ is None
        else {
            "harvest_peaks": detector.harvest_arm_.harvest_peaks.round(6).tolist(),
            "fused_peaks": detector.harvest_arm_.fused_peaks.round(6).tolist(),
        },
        "campaigns": None if detector.linker is None else detector.linker.calibration(),
        "reference": None
        if reference is None
        else {
            "centroids": reference.centroids.round(6).tolist(),
            "sample": reference.sample.round(6).tolist(),
            "bandwidth": reference.bandwidth,
        },
    }


def embedder_identity(detector: ExtractionDetector) -> str | None:
    """Which vectors the detector compares (`identity` of its embedder; None without one, or
    with an embedder that names none): a calibration only fits the embedder it was made with."""
    return getattr(detector.embedder, "identity", None)


def load_calibration_json(detector: ExtractionDetector, calibration: dict[str, Any]) -> None:
    """Restore a saved calibration; one made for another set of signals (an older version)
    cannot score this version's accounts, so it is refused with what to do instead."""
    signals = calibration.get("signals", [])
    if signals != [s.name for s in SIGNALS]:
        raise ValueError(
            f"this calibration was made for {len(signals) or 'an older set of'} signals, the "
            f"detector ({detector.version}) has {len(SIGNALS)}: run `distillguard calibrate` "
            "again on the benign history"
        )
    saved = calibration.get("embedder", "minilm")  # files saved before static embeddings
    running = embedder_identity(detector)
    if saved is not None and running is not None and saved != running:
        raise ValueError(
            f"this calibration was made with the {saved!r} embedder, the detector embeds with "
            f"{running!r}: their vectors are not comparable. Set DG_EMBEDDING_MODEL to the "
            "calibration's, or run `distillguard calibrate` again"
        )
    detector.target_fpr = calibration["target_fpr"]
    detector.suspicious_fpr = calibration["suspicious_fpr"]
    detector.thresholds_ = dict(calibration["thresholds"])
    detector.fitted_accounts_ = calibration["fitted_accounts"]
    detector.reviewed_peaks_ = dict(calibration.get("reviewed_peaks", {}))
    detector.openings_ = UsualOpenings.from_json(calibration["openings"])
    detector.calibration_report_ = calibration.get("report")
    detector.deep_share = calibration["deep_share"]
    detector.deep_threshold_ = calibration["deep_threshold"]
    detector.benign_values_ = {
        signal: {int(b): np.asarray(v) for b, v in buckets.items()}
        for signal, buckets in calibration["benign_values"].items()
    }
    training = np.asarray(calibration["isolation_training"], dtype=np.float64)
    if len(training):
        detector.isolation_ = IsolationSurprise.fit(training, detector.seed)
    arm = calibration.get("harvest_arm")  # absent from files saved before the arm existed
    detector.harvest_arm_ = (
        None
        if arm is None
        else HarvestArm(np.asarray(arm["harvest_peaks"]), np.asarray(arm["fused_peaks"]))
    )
    if detector.linker is not None and calibration.get("campaigns"):
        detector.linker.load_calibration(calibration["campaigns"])
    reference = calibration.get("reference")
    detector.reference_ = (
        None
        if reference is None
        else Reference(
            np.asarray(reference["centroids"], dtype=np.float32),
            np.asarray(reference["sample"], dtype=np.float32),
            float(reference["bandwidth"]),
        )
    )
