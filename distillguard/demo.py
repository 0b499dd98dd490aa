"""`distillguard demo`: real ShareGPT traffic through the pipeline into the embedded store.

Everything printed is read back from the store; nothing is computed for show.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table as RichTable

from distillguard.config import Settings
from storage import open_store
from streaming.files import run_file
from streaming.malformed import interleave_malformed
from streaming.pipeline import build_pipeline
from streaming.sinks import StoreSink
from students.traffic import benign_requests


def write_demo_traffic(path: Path, sessions: int, accounts: int, malformed: int) -> int:
    """Write the demo's JSONL request log, with some malformed lines as real logs have."""
    good = [orjson.dumps(e) for e in benign_requests(sessions, accounts)]
    lines, _ = interleave_malformed(good, malformed, seed=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        for line in lines:
            handle.write(line.replace(b"\n", b" ") + b"\n")
    return len(lines)


def run_demo(settings: Settings, sessions: int = 400, accounts: int = 60, console=None) -> None:
    console = console or Console()
    log_path = settings.data_dir / "demo" / "requests.jsonl"
    lines = write_demo_traffic(log_path, sessions, accounts, malformed=25)
    console.print(f"wrote {lines} request-log lines from real ShareGPT sessions to {log_path}")
    store = open_store(settings)
    try:
        pipeline = build_pipeline(settings, [StoreSink(store)], store)
        totals = run_file(pipeline, log_path, settings.batch_size)
        console.print(
            f"pipeline: {totals.events} events, {totals.dead_letters} dead letters, "
            f"{len(totals.verdicts)} verdicts into {store.backend} ClickHouse, "
            f"database {store.database}"
        )
        accounts_table = RichTable(title="Busiest accounts (read back from the store)")
        for column in ("account", "requests", "follow-ups", "first seen", "last seen"):
            accounts_table.add_column(column)
        for row in store.query(
            "SELECT account_id, count() AS n, countIf(turn_count > 1) AS follow_ups, "
            "min(event_time) AS first, max(event_time) AS last "
            "FROM {db}.events FINAL GROUP BY account_id ORDER BY n DESC LIMIT 8"
        ):
            accounts_table.add_row(
                row["account_id"],
                str(row["n"]),
                str(row["follow_ups"]),
                datetime.fromtimestamp(row["first"], UTC).isoformat(),
                datetime.fromtimestamp(row["last"], UTC).isoformat(),
            )
        console.print(accounts_table)
        dead_table = RichTable(title="Dead letters by reason")
        dead_table.add_column("reason")
        dead_table.add_column("count")
        for row in store.query(
            "SELECT splitByChar(':', reason)[1] AS kind, count() AS n "
            "FROM {db}.dead_letters FINAL GROUP BY kind ORDER BY n DESC"
        ):
            dead_table.add_row(row["kind"], str(row["n"]))
        console.print(dead_table)
        console.print(
            f"events stored: {store.count('events')}, "
            f"dead letters stored: {store.count('dead_letters')}"
        )
    finally:
        store.close()
