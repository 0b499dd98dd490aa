"""A real service restart in the middle of retrying: `distillguard alerts dispatch` runs as its
own process against the ClickHouse server, is killed (SIGKILL) after the receiver has refused
its first attempts, and a new process finishes the job from the durable outbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from bench.deployment import free_port
from core import __version__
from services.webhooks import SIGNATURE_HEADER, TIMESTAMP_HEADER, add_webhook, verify
from storage import ClickHouseServer
from tests.conftest import CLICKHOUSE_URL, drop_database, unique_database
from tests.services.test_webhooks import LOOPBACK, Receiver, _queue, _verdict

pytestmark = pytest.mark.integration
SECRET = "restart-secret"


def _dispatcher(database: str, metrics_port: int = 0) -> subprocess.Popen:
    env = {
        **os.environ,
        "DG_STORE": "server",
        "DG_CLICKHOUSE_URL": CLICKHOUSE_URL,
        "DG_DATABASE": database,
        "DG_WEBHOOK_SECRET": SECRET,
        "DG_WEBHOOK_RETRY_BASE_S": "0.2",
        "DG_WEBHOOK_ALLOW_NETWORKS": orjson.dumps(LOOPBACK).decode(),  # the loopback receiver
        "DG_METRICS_PORT": str(metrics_port),
    }
    command = [sys.executable, "-m", "distillguard.cli", "alerts", "dispatch"]
    return subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parents[2])


def _wait(condition, timeout_s: float = 60.0) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.1)


def test_every_alert_arrives_across_a_killed_dispatcher() -> None:
    store = ClickHouseServer(CLICKHOUSE_URL, database=unique_database())
    store.migrate()
    receiver = Receiver(refuse=4)
    try:
        add_webhook(store, receiver.url, allow_networks=LOOPBACK)
        _queue(store, [_verdict(f"acct-{i}") for i in range(3)])
        first = _dispatcher(store.database)
        _wait(lambda: len(receiver.received) >= 2)  # refused attempts under way
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
        pending = store.query("SELECT count() AS n FROM {db}.alerts FINAL WHERE status = 'pending'")
        assert pending[0]["n"] == 3  # nothing delivered yet, nothing lost
        port = free_port()
        second = _dispatcher(store.database, port)
        try:
            _wait(
                lambda: (
                    store.query("SELECT countIf(status = 'delivered') AS n FROM {db}.alerts FINAL")[
                        0
                    ]["n"]
                    == 3
                )
            )
            health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5).json()
            assert health == {"status": "ok", "role": "dispatcher", "version": __version__}
        finally:
            second.terminate()
            second.wait(timeout=10)
        keys = [headers["Idempotency-Key"] for headers, _ in receiver.received]
        delivered = receiver.received[receiver.refuse :]
        assert len({h["Idempotency-Key"] for h, _ in delivered}) == 3 == len(delivered)
        assert set(keys) == {h["Idempotency-Key"] for h, _ in delivered}
        for headers, body in receiver.received:
            assert verify(
                SECRET.encode(), body, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER]
            )
            assert orjson.loads(body)["alert_id"] == headers["Idempotency-Key"]
    finally:
        receiver.close()
        drop_database(store)
