"""`--format` on the file commands: gateway logs scored and replayed like schema-v1 ones."""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from core.settings import get_settings
from distillguard.cli import app
from tests.core.test_formats import FIXTURES, compact, lines

runner = CliRunner()


@pytest.fixture(autouse=True)
def volume_detector(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("DG_DETECTOR", "volume")
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def score(events: Path, out: Path, *options: str):
    args = ["score", "--events", str(events), "--out", str(out), "--json", *options]
    return runner.invoke(app, args)


def test_score_each_gateway_format(tmp_path: Path) -> None:
    otel = tmp_path / "traces.jsonl"
    otel.write_bytes(compact("otel_traces.json") + b"\n" + compact("otel_logs.json") + b"\n")
    cases = {
        "litellm": (FIXTURES / "litellm.jsonl", (), 2, 0),
        "otel": (otel, (), 3, 1),
        "openai-batch": (FIXTURES / "openai_batch.jsonl", ("--account", "acct-b"), 3, 0),
        f"mapping:{FIXTURES / 'gateway.toml'}": (FIXTURES / "gateway.jsonl", (), 1, 1),
    }
    for name, (path, options, events, dead) in cases.items():
        result = score(path, tmp_path / "v.jsonl", "--format", name, *options)
        assert result.exit_code == 0, (name, result.output)
        summary = orjson.loads(result.stdout)
        assert (summary["events"], summary["dead_letters"]) == (events, dead), name


def test_openai_batch_needs_an_account_and_dates_lines_by_the_file(tmp_path: Path) -> None:
    batch = tmp_path / "batch.jsonl"
    batch.write_bytes(b"\n".join(lines("openai_batch.jsonl")) + b"\n")
    refused = score(batch, tmp_path / "v.jsonl", "--format", "openai-batch")
    assert refused.exit_code == 2 and "account" in refused.output
    refused = score(batch, tmp_path / "v.jsonl", "--format", "litellm", "--start", "noon")
    assert refused.exit_code == 2
    os.utime(batch, (1_795_000_000, 1_795_000_000))
    out = tmp_path / "verdicts.jsonl"
    result = score(batch, out, "--format", "openai-batch", "--account", "acct-b")
    assert result.exit_code == 0, result.output
    verdicts = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    assert verdicts and {v["account_id"] for v in verdicts} == {"acct-b"}
    assert all(v["timestamp"].startswith("2026-11-18") for v in verdicts)  # the file's mtime
