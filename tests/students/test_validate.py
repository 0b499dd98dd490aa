"""`distillguard validate --quick`: real teacher, real attacks, the pipeline, real students."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from distillguard.cli import app

pytestmark = pytest.mark.models


@pytest.mark.timeout(1200)  # cold teacher cache on 2 cores: measured 6 min 50 s
def test_quick_validation_writes_an_honest_report(tmp_path: Path) -> None:
    # the data folder (tests/conftest.py) links the session's teacher and its answer cache
    result = CliRunner().invoke(app, ["validate", "--quick", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = orjson.loads((tmp_path / "validation.json").read_bytes())
    rows = {row["strategy"]: row for row in report["strategies"]}
    assert set(rows) == {"dataset_replay", "multi_account_campaign"}
    assert rows["multi_account_campaign"]["accounts"] == 8
    for row in rows.values():
        assert row["harvested_pairs"] == 24
        assert row["fidelity_full"] > row["fidelity_untrained"]  # students really learned
        assert len(row["curve"]) >= 3
        leaked = row["capability_leaked_before_detection"]
        assert leaked is None or 0 <= leaked <= 1.5
        if row["first_flag_time"] is None:
            assert row["queries_before_detection"] is None
    assert report["benign_accounts"] >= 6
    assert (tmp_path / "validation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "validation.md").read_text()
    assert "| dataset_replay |" in table and "| multi_account_campaign |" in table
