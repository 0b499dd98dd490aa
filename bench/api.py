"""Analyst API latency on a large store: account list and account detail, p50 / p99.

    python -m bench.api [--accounts 100000] [--events 10000000] [--requests 300]

Needs the ClickHouse server (`make bench` starts it). The data set is generated inside ClickHouse
(`INSERT … SELECT FROM system.numbers`, so 10M events take seconds, not a Python loop) into the
database `dgbench_api`, once, and reused while its counts match: `accounts` accounts, `events`
events spread evenly over them, three verdicts and a detector checkpoint per account. Requests
go through the real FastAPI app (in-process ASGI client: the figures are API + ClickHouse,
without network).
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
from core.settings import Settings, get_settings
from services.api import create_app
from services.auth import create_token
from storage import ClickHouseServer

DATABASE = "dgbench_api"
BASE_SECONDS = 1_795_000_000
console = Console()


def populate(store: ClickHouseServer, accounts: int, events: int) -> float:
    """Fill events and verdicts unless they already hold these counts; returns seconds spent."""
    counts = (store.count("events", final=False), store.count("verdicts", final=False))
    if counts == (events, 3 * accounts) and store.count("account_state") == accounts:
        return 0.0
    started = time.perf_counter()
    store.execute("DROP DATABASE IF EXISTS {db}")
    store.migrate()
    spacing = 7 * 86_400 // max(1, events // accounts)  # each account's events over a week
    store.execute(
        "INSERT INTO {db}.events (request_id, account_id, event_time, event_ms, model, endpoint,"
        " prompt_hash, prompt_text, prompt_chars, turn_count, params_json, client_ip, user_agent,"
        " source, source_offset, version)"
        " SELECT concat('req-', toString(number)), concat('acct-', toString(number %% %(a)s)),"
        " toDateTime(%(base)s + intDiv(number, %(a)s) * %(spacing)s),"
        " (%(base)s + intDiv(number, %(a)s) * %(spacing)s) * 1000, 'smollm2-135m-instruct',"
        " '/v1/chat/completions', toString(cityHash64(number)),"
        " concat('Benchmark prompt number ', toString(number)), 32, 1, '{}',"
        " concat('10.', toString(number %% 250), '.0.1'), 'bench', 'bench', number, 1"
        " FROM system.numbers LIMIT %(n)s",
        {"a": accounts, "n": events, "base": BASE_SECONDS, "spacing": spacing},
    )
    store.execute(
        "INSERT INTO {db}.verdicts (verdict_id, account_id, cluster_id, verdict_time, verdict_ms,"
        " requests_seen, score, label, reasons_json, detector_version, version)"
        " SELECT concat('v-', toString(number)), concat('acct-', toString(intDiv(number, 3))), '',"
        " toDateTime(%(base)s + number %% 3 * 3600), (%(base)s + number %% 3 * 3600) * 1000,"
        " (number %% 3 + 1) * 10, (cityHash64(number) %% 1000) / 1000,"
        " multiIf(cityHash64(number) %% 1000 >= 500, 'extraction',"
        " cityHash64(number) %% 1000 >= 300, 'suspicious', 'benign'),"
        ' \'[{"signal":"greedy_share","value":1.0,"contribution":0.2}]\', \'fusion-1\', 1'
        " FROM system.numbers LIMIT %(n)s",
        {"n": 3 * accounts, "base": BASE_SECONDS},
    )
    store.execute(
        "INSERT INTO {db}.account_state (account_id, detector, requests_seen, state_json,"
        " updated_ms, version) SELECT concat('acct-', toString(number)), 'extraction',"
        " %(per)s, '{}', %(base)s * 1000, 1 FROM system.numbers LIMIT %(a)s",
        {"a": accounts, "per": events // accounts, "base": BASE_SECONDS},
    )
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
        "account list (first page)": ["/v1/accounts?limit=50"] * requests,
        "account list (random page)": [
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
    console.print(table)
    store.close()


if __name__ == "__main__":
    typer.run(main)
