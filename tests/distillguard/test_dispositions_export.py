"""`distillguard dispositions export` on the embedded store: every change or the current ones,
as exact JSONL or formula-safe CSV, to stdout or a private file; bad options are usage errors."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from core.settings import get_settings
from distillguard.cli import ExitCode, app
from services.auth import create_token
from services.dispositions import EXPORT_FIELDS, set_disposition
from storage import open_store

runner = CliRunner()
FORMULA = '=HYPERLINK("http://evil.example","click")'


@pytest.fixture
def recorded(chdb_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Four changes on two accounts and a campaign in a database of its own; the clock."""
    monkeypatch.setenv("DG_DATA_DIR", str(chdb_path.parent / "cli-data"))
    monkeypatch.setenv("DG_DATABASE", f"cli_export_{time.time_ns()}")
    get_settings.cache_clear()
    now = int(time.time() * 1000)
    store = open_store(get_settings())
    try:
        store.migrate()
        _, eve = create_token(store, "analyst", "eve")
        day = 86_400_000
        set_disposition(store, "account", "acct-1", "false_positive", eve, reason="power user",
                        assignee="sam", note=FORMULA, now_ms=now - 3000)  # fmt: skip
        set_disposition(store, "account", "acct-1", "allowlisted", eve, reason="partner",
                        expires_ms=now + day, now_ms=now - 2000)  # fmt: skip
        set_disposition(store, "cluster", "c-1", "confirmed_extraction", eve, now_ms=now - 1000)
        set_disposition(store, "account", "acct-2", "false_positive", eve, now_ms=now - 500)
        set_disposition(store, "account", "acct-2", "none", eve, now_ms=now)
        yield now
        store.execute("DROP DATABASE IF EXISTS {db}")
    finally:
        store.close()
        get_settings.cache_clear()


def test_every_change_as_jsonl_on_stdout(recorded: int) -> None:
    result = runner.invoke(app, ["dispositions", "export"])
    assert result.exit_code == 0, result.output
    records = [orjson.loads(line) for line in result.stdout.splitlines()]
    assert [(r["subject_id"], r["disposition"], r["active"]) for r in records] == [
        ("acct-1", "false_positive", False),  # replaced by the allowlist
        ("acct-1", "allowlisted", True),
        ("c-1", "confirmed_extraction", True),
        ("acct-2", "false_positive", False),
        ("acct-2", "none", False),  # cleared
    ]
    first = records[0]
    assert list(first) == list(EXPORT_FIELDS)
    assert first["note"] == FORMULA and first["assignee"] == "sam"  # JSONL is exact
    assert first["actor"] == "eve" and first["token_id"] and first["expires_at"] is None
    assert records[1]["expires_at"].endswith("+00:00") and records[2]["subject_kind"] == "cluster"
    assert [r["at"] for r in records] == sorted(r["at"] for r in records)


def test_current_ones_as_csv_in_a_private_file(recorded: int, tmp_path: Path) -> None:
    out = tmp_path / "dispositions.csv"
    args = ["dispositions", "export", "--current", "--format", "csv", "--out", str(out)]
    result = runner.invoke(app, [*args, "--subject-kind", "account", "--json"])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout)["records"] == 2
    assert out.stat().st_mode & 0o777 == 0o600
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert [(r["subject_id"], r["disposition"], r["active"]) for r in rows] == [
        ("acct-1", "allowlisted", "True"),
        ("acct-2", "none", "False"),
    ]
    history = ["dispositions", "export", "--format", "csv", "--disposition", "false_positive"]
    exported = runner.invoke(app, history)
    assert exported.exit_code == 0, exported.output
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    assert [r["subject_id"] for r in rows] == ["acct-1", "acct-2"]
    assert rows[0]["note"] == "'" + FORMULA  # a spreadsheet shows it, never runs it


@pytest.mark.parametrize(
    "args",
    [["--format", "xml"], ["--disposition", "maybe"], ["--subject-kind", "org"], ["--json"]],
)
def test_bad_options_are_usage_errors(args: list[str]) -> None:
    result = runner.invoke(app, ["dispositions", "export", *args])
    assert result.exit_code == ExitCode.USAGE, result.output
