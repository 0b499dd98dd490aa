"""Which detector the pipeline runs, built from explicit settings (`distillguard.wiring` calls
it), and its calibration on disk (`calibrate --out MODEL_DIR`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import orjson

from core.events import Event
from core.formats import LogFormat
from core.settings import Settings
from detectors.base import Detector, calibration_of, load_calibration_into
from detectors.volume import VolumeDetector

if TYPE_CHECKING:
    from detectors.embedding import PromptEmbedder, StaticEmbedder

CALIBRATION_FILE = "calibration.json"
log = logging.getLogger(__name__)


def calibration_dir(settings: Settings) -> Path:
    return settings.data_dir / "calibration"


def build_detector(settings: Settings, target_fpr: float | None = None) -> Detector:
    """The detector every entry point uses (one place to change it), uncalibrated."""
    fpr = target_fpr if target_fpr is not None else settings.target_fpr
    if settings.detector == "volume":
        return VolumeDetector(target_fpr=fpr)
    from detectors.campaigns import CampaignLinker
    from detectors.fusion import ExtractionDetector

    embedder = None
    if settings.embedding_tier != "off":
        embedder = _embedder(settings)
    return ExtractionDetector(
        embedder=embedder,
        reasoning=_reasoning_scorer(settings),
        languages=_language_detector(),
        linker=CampaignLinker(),
        tiered=settings.embedding_tier == "tiered",
        target_fpr=fpr,
    )


def embedding_model(settings: Settings) -> str:
    """The embedder `auto` means here: MiniLM where it is cheap (a GPU) or rationed (the tiered
    policy exists to afford it on a CPU), else the static table, which a CPU can run on every
    prompt (issue 16: more attackers caught than tiered MiniLM on every benchmark world)."""
    if settings.embedding_tier == "off":
        return "none"
    if settings.embedding_model != "auto":
        return settings.embedding_model
    if settings.embedding_tier == "tiered":
        return "minilm"
    return "minilm" if _cuda_present() else "static"


def _cuda_present() -> bool:
    """Whether torch sees a CUDA device; without an NVIDIA driver there is none, and a CPU
    worker then never imports torch (seconds at start, hundreds of MB)."""
    if not Path("/proc/driver/nvidia").exists():
        return False
    import torch

    return torch.cuda.is_available()


# The detection benchmark's name for each embedding configuration of the extraction detector
# (`bench.detection` runs them; forensic reports quote the matching figures).
VARIANTS = {
    "ours": {"embedding_tier": "tiered", "embedding_model": "minilm"},
    "ours_full": {"embedding_tier": "full", "embedding_model": "minilm"},
    "ours_static": {"embedding_tier": "full", "embedding_model": "static"},
}


def variant(settings: Settings) -> str | None:
    """The benchmark variant these settings run (None: another detector, or not benchmarked)."""
    if settings.detector != "extraction":
        return None
    tier, model = settings.embedding_tier, embedding_model(settings)
    chosen = {"embedding_tier": tier, "embedding_model": model}
    return next((name for name, config in VARIANTS.items() if config == chosen), None)


def _embedder(settings: Settings) -> PromptEmbedder | StaticEmbedder:
    if embedding_model(settings) == "static":
        from detectors.embedding import StaticEmbedder

        return StaticEmbedder(settings.data_dir / "models")
    from detectors.embedding import PromptEmbedder

    return PromptEmbedder(
        max_seq_length=settings.embedding_max_tokens,
        cpu_threads=settings.embedding_threads or None,
    )


def _reasoning_scorer(settings: Settings):
    from detectors.reasoning import ReasoningClassifier

    return ReasoningClassifier.load_or_train(settings.data_dir / "models").reasoning_probability


def _language_detector():
    from detectors.language import detect_languages

    return detect_languages


def calibrated_detector(settings: Settings) -> Detector:
    """The detector with the saved calibration when there is one (worker, replay, demo)."""
    detector = build_detector(settings)
    folder = calibration_dir(settings)
    if (folder / CALIBRATION_FILE).exists():
        return load_calibration(detector, folder)
    log.warning(
        "no calibration in %s: every account scores 0 until `distillguard calibrate --benign "
        "FILE --out %s` has run",
        folder,
        folder,
    )
    return detector


def events_in_file(path: Path, log_format: LogFormat | None = None) -> Iterator[Event]:
    """Valid events of a JSONL file of `log_format` (default schema v1): calibration input;
    bad lines are skipped here."""
    log_format = log_format or LogFormat()
    with path.open("rb") as handle:
        for number, unit in enumerate(log_format.units(handle)):
            event = log_format.parse(unit, f"file:{path.name}", number)
            if isinstance(event, Event):
                yield event


def save_calibration(detector: Detector, model_dir: Path) -> Path:
    model_dir.mkdir(parents=True, exist_ok=True)
    path = model_dir / CALIBRATION_FILE
    document = {
        "detector": detector.name,
        "version": detector.version,
        "calibration": calibration_of(detector),
    }
    path.write_bytes(
        orjson.dumps(document, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    )
    return path


def load_calibration(detector: Detector, model_dir: Path) -> Detector:
    document = orjson.loads((model_dir / CALIBRATION_FILE).read_bytes())
    if document["detector"] != detector.name:
        raise ValueError(
            f"{model_dir} holds a {document['detector']!r} calibration, not {detector.name!r}"
        )
    saved = document.get("version")
    if saved != detector.version:
        log.warning(
            "%s holds a calibration made by %s, the detector is %s: it scores with it, but run "
            "`distillguard calibrate` again for the thresholds this version sets",
            model_dir,
            saved,
            detector.version,
        )
    load_calibration_into(detector, document["calibration"])
    return detector
