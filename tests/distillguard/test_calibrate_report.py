"""`distillguard calibrate` with the fused detector: it prints the held-out false-positive rate
and its interval next to the tail's prediction, warns when the history is too small or differs
from a live sample, and saves the report with the calibration."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from core.settings import get_settings
from distillguard.cli import app
from students.actors import PlannedRequest, benign_users, request_record
from tests.planned import harvesters

pytestmark = pytest.mark.models  # the fused detector loads the reasoning classifier

runner = CliRunner()


@pytest.fixture(autouse=True)
def fused_without_minilm(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DG_DETECTOR", "extraction")
    monkeypatch.setenv("DG_EMBEDDING_TIER", "off")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def write(path: Path, plans: list[PlannedRequest], prefix: str) -> Path:
    ordered = sorted(plans, key=lambda p: p.timestamp_ms)
    lines = [orjson.dumps(request_record(p, f"{prefix}-{i}")) for i, p in enumerate(ordered)]
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def test_calibrate_prints_and_saves_the_held_out_report(tmp_path: Path) -> None:
    benign = write(tmp_path / "benign.jsonl", benign_users(60, 240, 7, seed=3), "b")
    live = write(tmp_path / "live.jsonl", harvesters(60, 20), "l")
    model = tmp_path / "model"
    result = runner.invoke(
        app, ["calibrate", "--benign", str(benign), "--out", str(model), "--live", str(live)]
    )
    assert result.exit_code == 0, result.output
    output = " ".join(result.output.split())  # the console wraps long lines
    saved = orjson.loads((model / "calibration.json").read_bytes())["calibration"]
    report = saved["report"]
    extraction = report["levels"]["extraction"]
    assert saved["thresholds"]["extraction"] == extraction["threshold"]
    assert f"threshold {extraction['threshold']:.2f}" in output
    assert "held-out" in output and "tail predicts" in output and "per 1,000" in output
    # ~30 scored accounts: too few for a 0.1% rate, or any rate.
    assert "warning: extraction threshold (FPR 0.001) is extrapolated" in output
    assert report["accounts"] < 50 and f"only {report['accounts']} benign accounts" in output
    # Harvesters are nothing like the honest history: the signals that moved are named.
    moved = [s for s, psi in report["live"]["psi"].items() if psi >= 0.25]
    assert moved and "live traffic differs from the calibration history in" in output
    assert all(signal in output for signal in moved)
    assert "calibrated extraction at FPR 0.001" in output


def test_calibrate_without_live_has_no_live_section(tmp_path: Path) -> None:
    benign = write(tmp_path / "benign.jsonl", benign_users(120, 480, 7, seed=3), "b")
    result = runner.invoke(app, ["calibrate", "--benign", str(benign), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "live sample" not in result.output and "held-out" in result.output
    report = orjson.loads((tmp_path / "calibration.json").read_bytes())["calibration"]["report"]
    assert "live" not in report
