"""`distillguard demo`: real ShareGPT traffic through parsing and the embedded store.

Everything printed is read back from the store; nothing is computed for show.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table as RichTable

from distillguard.config import Settings
from storage import Store, open_store
from storage.rows import dead_letter_row, event_row
from streaming.events import Event, now_ms, parse_event
from streaming.malformed import interleave_malformed
from students.sharegpt import iter_conversations

DEMO_START = datetime(2026, 11, 20, tzinfo=UTC)


def benign_events(sessions: int, accounts: int, seed: int = 7) -> Iterator[dict]:
    """Real ShareGPT conversations as API requests: each session belongs to one account
    (heavy-tailed: a few accounts own many sessions), follow-up turns carry the history."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) ** 1.1 for rank in range(accounts)]
    for number, conversation in enumerate(iter_conversations(limit=sessions)):
        account = rng.choices(range(accounts), weights)[0]
        clock = DEMO_START + timedelta(seconds=rng.uniform(0, 6 * 24 * 3600))
        history: list[dict] = []
        for turn, (role, text) in enumerate(conversation.turns):
            history.append({"role": role, "content": text})
            if role != "user":
                continue
            clock += timedelta(seconds=rng.expovariate(1 / 40))
            yield {
                "request_id": f"demo-{number}-{turn}",
                "account_id": f"acct-{account:04d}",
                "timestamp": clock.isoformat().replace("+00:00", "Z"),
                "messages": list(history),
                "model": "smollm2-135m-instruct",
                "endpoint": "/v1/chat/completions",
                "client": {"ip": f"198.51.100.{account % 250}", "user_agent": "python-httpx"},
            }


def write_demo_traffic(path: Path, sessions: int, accounts: int, malformed: int) -> int:
    """Write the demo's JSONL request log, with some malformed lines as real logs have."""
    good = [orjson.dumps(e) for e in benign_events(sessions, accounts)]
    lines, _ = interleave_malformed(good, malformed, seed=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        for line in lines:
            handle.write(line.replace(b"\n", b" ") + b"\n")
    return len(lines)


def load_jsonl(store: Store, path: Path, settings: Settings, batch: int = 2000) -> tuple[int, int]:
    """Parse a JSONL log into `events` and `dead_letters`; returns (events, dead letters)."""
    events, dead = [], []
    source = f"file:{path.name}"
    with path.open("rb") as handle:
        for line_number, line in enumerate(handle):
            parsed = parse_event(line.rstrip(b"\n"), source, line_number, settings.max_event_bytes)
            if isinstance(parsed, Event):
                events.append(
                    event_row(
                        parsed,
                        source,
                        line_number,
                        now_ms(),
                        settings.redact_prompts,
                        settings.redact_truncate_chars,
                    )
                )
            else:
                dead.append(dead_letter_row(parsed))
    store.insert("events", events, batch_size=batch)
    store.insert("dead_letters", dead, batch_size=batch)
    return len(events), len(dead)


def run_demo(settings: Settings, sessions: int = 400, accounts: int = 60, console=None) -> None:
    console = console or Console()
    log_path = settings.data_dir / "demo" / "requests.jsonl"
    lines = write_demo_traffic(log_path, sessions, accounts, malformed=25)
    console.print(f"wrote {lines} request-log lines from real ShareGPT sessions to {log_path}")
    store = open_store(settings)
    try:
        parsed, dead = load_jsonl(store, log_path, settings)
        console.print(
            f"parsed {parsed} events and {dead} dead letters into {store.backend} "
            f"ClickHouse, database {store.database}"
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
