"""`distillguard demo`: real ShareGPT users, a harvester and a campaign through the pipeline
into the embedded store, after calibrating on separate benign users.

Everything printed is read back from the store; nothing is computed for show.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table as RichTable

from core.events import Event, parse_event
from core.settings import Settings
from detectors.registry import CALIBRATION_FILE, calibration_dir, save_calibration
from distillguard.wiring import build_detector, store_pipeline
from storage import open_store, queries
from streaming.files import run_file
from streaming.malformed import interleave_malformed
from students.actors import (
    AttackConfig,
    PlannedRequest,
    benign_users,
    dataset_replay,
    multi_account_campaign,
    request_record,
)

CALIBRATION_SEED = 1


def demo_plans(accounts: int, sessions: int, seed: int) -> list[PlannedRequest]:
    """Real ShareGPT users over two weeks, plus (for the evaluation part) a dataset-replay
    harvester and a 12-account campaign hiding in benign cover traffic."""
    plans = benign_users(accounts, sessions, 14, seed, max_tokens=(128, 256))
    if seed != CALIBRATION_SEED:
        plans += dataset_replay(AttackConfig(budget=150, seed=seed, start_day=3))
        plans += multi_account_campaign(
            AttackConfig(budget=480, seed=seed, start_day=5, extra={"accounts": 12})
        )
    return sorted(plans, key=lambda p: p.timestamp_ms)


def write_demo_traffic(path: Path, plans: list[PlannedRequest], malformed: int) -> int:
    """Write a JSONL request log, with some malformed lines as real logs have."""
    good = [orjson.dumps(request_record(p, f"demo-{i}")) for i, p in enumerate(plans)]
    lines, _ = interleave_malformed(good, malformed, seed=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        for line in lines:
            handle.write(line.replace(b"\n", b" ") + b"\n")
    return len(lines)


def ensure_calibration(settings: Settings, accounts: int, sessions: int, console) -> None:
    """Calibrate on separate benign users once (what `distillguard calibrate` does)."""
    folder = calibration_dir(settings)
    if (folder / CALIBRATION_FILE).exists():
        return
    console.print("calibrating on benign ShareGPT users (once; saved for the worker too)")
    benign = demo_plans(accounts, sessions, CALIBRATION_SEED)
    events = [
        parse_event(orjson.dumps(request_record(p, f"calibration-{i}")), "demo-calibration")
        for i, p in enumerate(benign)
    ]
    detector = build_detector(settings).fit(e for e in events if isinstance(e, Event))
    save_calibration(detector, folder)


def run_demo(settings: Settings, sessions: int = 400, accounts: int = 60, console=None) -> None:
    console = console or Console()
    ensure_calibration(settings, accounts, sessions, console)
    log_path = settings.data_dir / "demo" / "requests.jsonl"
    lines = write_demo_traffic(log_path, demo_plans(accounts, sessions, seed=2), malformed=25)
    console.print(
        f"wrote {lines} request-log lines (real ShareGPT users, a harvester, a campaign) "
        f"to {log_path}"
    )
    store = open_store(settings)
    try:
        totals = run_file(store_pipeline(settings, store), log_path, settings.batch_size)
        console.print(
            f"pipeline: {totals.events} events, {totals.dead_letters} dead letters, "
            f"{len(totals.verdicts)} verdicts into {store.backend} ClickHouse, "
            f"database {store.database}"
        )
        flagged = RichTable(title="Flagged accounts (latest verdict, read back from the store)")
        for column in ("account", "label", "score", "requests seen", "campaign", "top reasons"):
            flagged.add_column(column)
        for row in queries.flagged_accounts(store, limit=20):
            reasons = ", ".join(r["signal"] for r in orjson.loads(row["reasons"])[:3])
            flagged.add_row(
                row["account_id"],
                row["label"],
                f"{row['score']:.2f}",
                str(row["seen"]),
                row["cluster"][:12],
                escape(reasons),
            )
        console.print(flagged)
        accounts_table = RichTable(title="Busiest accounts (read back from the store)")
        for column in ("account", "requests", "follow-ups", "first seen", "last seen"):
            accounts_table.add_column(column)
        for row in queries.busiest_accounts(store, limit=8):
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
        for row in queries.dead_letter_reasons(store):
            dead_table.add_row(row["kind"], str(row["n"]))
        console.print(dead_table)
        console.print(
            f"events stored: {store.count('events')}, "
            f"dead letters stored: {store.count('dead_letters')}"
        )
    finally:
        store.close()
