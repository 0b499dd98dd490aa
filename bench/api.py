"""Analyst API latency on a large store: account list and account detail, p50 / p99.

    python -m bench.api [--accounts 100000] [--events 10000000] [--requests 300]

Needs the ClickHouse server (`make bench` starts it). The data set is generated inside ClickHouse
(`storage.queries.fill_synthetic`: 10M events take seconds, not a Python loop) into the database
`dgbench_api`, once, and reused while its counts match: `accounts` accounts, `events` events
spread evenly over them, three verdicts and a detector checkpoint per account. Requests
go through the real FastAPI app (in-process ASGI client: the figures are API + ClickHouse,
without network). The table also goes to `bench/results/api.md`, which the README quotes.
"""

from __future__ import annotations

import random
import time
from typing import Annotated

import numpy as np
import typer
from fastapi.testclient import TestClient
from rich.console import Console
from rich.table import Table

from bench.detection import machine
from bench.readme import result_path
from core.settings import Settings, get_settings
from services.api import create_app
from services.auth import create_token
from storage import ClickHouseServer, queries
from students.measured import measured_by, write_table

DATABASE = "dgbench_api"
BASE_SECONDS = 1_795_000_000
console = Console()


def populate(store: ClickHouseServer, accounts: int, events: int) -> float:
    """Fill events and verdicts unless they already hold these counts; returns seconds spent."""
    counts = (store.count("events", final=False), store.count("verdicts", final=False))
    if counts == (events, 3 * accounts) and store.count("account_state") == accounts:
        return 0.0
    started = time.perf_counter()
    queries.recreate(store)
    queries.fill_synthetic(store, accounts, events, BASE_SECONDS)
    return time.perf_counter() - started


def timed(client: TestClient, paths: list[str], headers: dict[str, str]) -> np.ndarray:
    latencies = []
    for path in paths:
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"{path}: HTTP {response.status_code} {response.text[:200]}")
    return np.asarray(latencies)


def main(
    accounts: Annotated[int, typer.Option(help="Accounts in the store.")] = 100_000,
    events: Annotated[int, typer.Option(help="Events in the store.")] = 10_000_000,
    requests: Annotated[int, typer.Option(help="Timed requests per route.")] = 300,
) -> None:
    base = get_settings()
    store = ClickHouseServer(base.clickhouse_url, database=DATABASE)
    store.migrate()
    load_seconds = populate(store, accounts, events)
    settings = Settings(store="server", clickhouse_url=base.clickhouse_url, database=DATABASE)
    token = create_token(store, "analyst", "bench")[0]
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(0)
    routes = {
        "account list, first page": ["/v1/accounts?limit=50"] * requests,
        "account list, random page": [
            f"/v1/accounts?limit=50&offset={rng.randrange(0, accounts - 50)}"
            for _ in range(requests)
        ],
        "account detail": [f"/v1/accounts/acct-{rng.randrange(accounts)}" for _ in range(requests)],
    }
    table = Table(
        title=f"API latency, {accounts:,} accounts, {events:,} events, ClickHouse server "
        f"({machine()}; data load {load_seconds:.0f} s)",
        title_justify="left",
    )
    for column in ("route", "requests", "p50 ms", "p99 ms", "max ms", "p99 ≤ 200 ms"):
        table.add_column(column, justify="right")
    markdown = ["| route | p50 ms | p99 ms | max ms |", "|---|---|---|---|"]
    with TestClient(create_app(settings, store)) as client:
        timed(client, list(routes.values())[0][:5], headers)  # warm-up: caches, connections
        for name, paths in routes.items():
            latency = timed(client, paths, headers)
            p50, p99 = np.percentile(latency, [50, 99])
            table.add_row(
                name,
                str(len(paths)),
                f"{p50:.1f}",
                f"{p99:.1f}",
                f"{latency.max():.1f}",
                "pass" if p99 <= 200 else "FAIL",
            )
            markdown.append(f"| {name} | {p50:.1f} | {p99:.1f} | {latency.max():.1f} |")
    console.print(table)
    version = queries.server_version(store)
    note = (
        f"ClickHouse server {version}, {accounts:,} accounts, {events:,} events, "
        f"{requests} requests per route"
    )
    written = write_table(result_path("api"), "\n".join(markdown), measured_by(note=note))
    console.print(f"README table: {written}")
    store.close()


if __name__ == "__main__":
    typer.run(main)
