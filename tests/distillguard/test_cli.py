"""The CLI commands end to end on files and the embedded store (what a user types)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from core.settings import get_settings
from distillguard.cli import app
from streaming.malformed import interleave_malformed
from tests.streaming.test_pipeline import traffic

runner = CliRunner()


@pytest.fixture(autouse=True)
def volume_detector(monkeypatch: pytest.MonkeyPatch):
    """CLI plumbing is checked with the simple volume detector on synthetic volume traffic; the
    fused detector's CLI path runs on real traffic in test_fusion.py."""
    monkeypatch.setenv("DG_DETECTOR", "volume")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def request_log(tmp_path: Path) -> Path:
    lines, _ = interleave_malformed(traffic(), 10, seed=2)
    path = tmp_path / "requests.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in lines) + b"\n")
    return path


def test_calibrate_then_score_with_the_model(request_log: Path, tmp_path: Path) -> None:
    benign = tmp_path / "benign.jsonl"
    benign.write_bytes(b"\n".join(traffic(heavy=0)) + b"\n")
    model = tmp_path / "model"
    result = runner.invoke(app, ["calibrate", "--benign", str(benign), "--out", str(model)])
    assert result.exit_code == 0, result.output
    assert orjson.loads((model / "calibration.json").read_bytes())["calibration"]["threshold"] == 11
    out = tmp_path / "verdicts.jsonl"
    result = runner.invoke(
        app, ["score", "--events", str(request_log), "--out", str(out), "--calibration", str(model)]
    )
    assert result.exit_code == 0, result.output
    verdicts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    flagged = {v["account_id"] for v in verdicts if v["label"] == "extraction"}
    assert flagged == {"harvester"}
    assert "10 dead letters" in result.output


def test_score_self_calibrates_without_calibration(request_log: Path, tmp_path: Path) -> None:
    out = tmp_path / "verdicts.jsonl"
    result = runner.invoke(app, ["score", "--events", str(request_log), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "500 events" in result.output and out.stat().st_size > 0


def test_replay_twice_is_idempotent(
    request_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chdb_path: Path
) -> None:
    monkeypatch.setenv("DG_DATA_DIR", str(chdb_path.parent / "cli-data"))
    monkeypatch.setenv("DG_DATABASE", "cli_replay")
    get_settings.cache_clear()
    try:
        first = runner.invoke(app, ["replay", str(request_log)])
        second = runner.invoke(app, ["replay", str(request_log)])
    finally:
        get_settings.cache_clear()
    assert first.exit_code == 0 and second.exit_code == 0, first.output + second.output
    assert "500 events, 10 dead letters" in first.output and "0 already counted" in first.output
    assert "500 already counted" in second.output


def test_false_positives_from_the_store_recalibrate_the_detector(
    request_log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chdb_path: Path
) -> None:
    """An account analysts marked false positive is benign evidence at the next calibration:
    fitted with its stored traffic, the detector no longer flags it."""
    from services.auth import create_token
    from services.dispositions import set_disposition
    from storage import open_store

    monkeypatch.setenv("DG_DATA_DIR", str(chdb_path.parent / "cli-data"))
    monkeypatch.setenv("DG_DATABASE", "cli_feedback")
    get_settings.cache_clear()
    benign = tmp_path / "benign.jsonl"
    benign.write_bytes(b"\n".join(traffic(heavy=0)) + b"\n")
    calibrate = ["calibrate", "--benign", str(benign), "--json"]

    def flagged(model: Path) -> set[str]:
        out = tmp_path / f"{model.name}.jsonl"
        args = [
            "score",
            "--events",
            str(request_log),
            "--out",
            str(out),
            "--calibration",
            str(model),
        ]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        verdicts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
        return {v["account_id"] for v in verdicts if v["label"] == "extraction"}

    try:
        assert runner.invoke(app, ["replay", str(request_log)]).exit_code == 0
        before = runner.invoke(app, [*calibrate, "--out", str(tmp_path / "before")])
        assert before.exit_code == 0, before.output
        assert flagged(tmp_path / "before") == {"harvester"}
        store = open_store(get_settings())
        try:
            _, analyst = create_token(store, "analyst", "analyst-1")
            set_disposition(store, "account", "harvester", "false_positive", analyst)
        finally:
            store.close()
        args = [*calibrate, "--false-positives-from-store", "--out", str(tmp_path / "after")]
        after = runner.invoke(app, args)
    finally:
        get_settings.cache_clear()
    assert after.exit_code == 0, after.output
    added = orjson.loads(after.stdout)["false_positives"]
    assert added["accounts"] == 1 and added["events"] > 0 and added["unreadable"] == 0
    assert flagged(tmp_path / "after") == set()
