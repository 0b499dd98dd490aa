"""The CLI's guard rails: retention never drops the audit log, `config` never prints a password,
what a command writes is private to its user, and the API believes `X-Forwarded-For` only from
configured proxies (the app decides, never uvicorn)."""

from __future__ import annotations

import os
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from typer.testing import CliRunner

from core.settings import get_settings
from distillguard.cli import app, mask_credentials, retention_tables
from distillguard.wiring import uvicorn_options
from storage import open_store
from tests.distillguard.test_cli import request_log, volume_detector  # noqa: F401 - fixtures

runner = CliRunner()
OLD_DAY = 1_795_000_000  # 2026-11-18, the day `request_log`'s traffic is on


def _umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def _audit_rows(count: int) -> list[dict]:
    return [
        {
            "audit_id": f"audit-{i}",
            "audit_time": OLD_DAY,
            "audit_ms": OLD_DAY * 1000,
            "token_id": "t-1",
            "role": "analyst",
            "action": "read_account",
            "resource": "/v1/accounts/harvester",
            "account_id": "harvester",
            "cluster_id": "",
            "status": 200,
            "client_ip": "127.0.0.1",
            "version": 1,
        }
        for i in range(count)
    ]


def _counts() -> tuple[int, int]:
    store = open_store(get_settings())
    try:
        return store.count("events"), store.count("audit_log")
    finally:
        store.close()


def test_retention_never_drops_the_audit_log(request_log: Path) -> None:  # noqa: F811
    assert runner.invoke(app, ["replay", str(request_log)]).exit_code == 0
    store = open_store(get_settings())
    try:
        store.insert("audit_log", _audit_rows(3))
    finally:
        store.close()
    assert _counts() == (500, 3)

    refused = runner.invoke(app, ["retention", "--table", "audit_log", "--before", "2030-01-01"])
    assert refused.exit_code == 2
    assert "audit_log" in refused.output and "never drops it" in refused.output
    assert _counts() == (500, 3)

    everything = runner.invoke(app, ["retention", "--table", "all", "--before", "2030-01-01"])
    assert everything.exit_code == 0, everything.output
    assert "partitions of events: 20261118" in everything.output
    assert "audit_log" not in everything.output
    assert _counts() == (0, 3)  # every other table pruned, the audit log whole
    assert "audit_log" not in retention_tables() and "events" in retention_tables()


def test_config_masks_credentials_in_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DG_CLICKHOUSE_URL", "clickhouses://reader:s3cr%40t@ch.internal:9440/dg")
    monkeypatch.setenv("DG_KAFKA_BOOTSTRAP", "SASL_SSL://tok3n@broker:9093")
    monkeypatch.setenv("DG_CLICKHOUSE_PASSWORD", "env-pass")
    get_settings.cache_clear()
    shown = runner.invoke(app, ["config"])
    assert shown.exit_code == 0, shown.output
    for secret in ("s3cr", "tok3n", "env-pass"):
        assert secret not in shown.output
    assert "clickhouse_url = clickhouses://reader:***@ch.internal:9440/dg" in shown.output
    assert "kafka_bootstrap = SASL_SSL://***@broker:9093" in shown.output


def test_credentials_are_masked_wherever_a_url_holds_them() -> None:
    assert mask_credentials("clickhouse://u:p@ss@host:9000") == "clickhouse://u:***@host:9000"
    assert mask_credentials("http://host/db?user=u&password=p1&x=1") == (
        "http://host/db?user=u&password=***&x=1"
    )
    assert mask_credentials(["https://a:b@h", "plain"]) == ["https://a:***@h", "plain"]
    assert mask_credentials("clickhouse://127.0.0.1:19000") == "clickhouse://127.0.0.1:19000"
    assert mask_credentials(42) == 42


def test_what_a_command_writes_is_private(
    request_log: Path,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tmp_path / "fresh" / "data"  # nothing exists yet: the command creates it all
    monkeypatch.setenv("DG_DATA_DIR", str(data))
    get_settings.cache_clear()
    before = _umask()
    result = runner.invoke(app, ["replay", str(request_log)])
    assert result.exit_code == 0, result.output
    assert _umask() == before  # the CLI's umask lasts as long as the command
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert any((data / "chdb").iterdir())
    seen = 0
    for folder, folders, files in os.walk(data):
        for name in folders:
            path = Path(folder) / name
            if not path.is_symlink():  # chDB links metadata/<db> into store/
                assert stat.S_IMODE(path.lstat().st_mode) == 0o700, path
        for name in files:
            path = Path(folder) / name
            if not path.is_symlink():
                assert stat.S_IMODE(path.lstat().st_mode) & 0o077 == 0, path
                seen += 1
    assert seen > 10  # the embedded store's files were all checked


def test_the_embedded_store_keeps_its_folder_private(tmp_path: Path) -> None:
    """Library use, without the CLI's umask: the store's folder is still 0700."""
    from storage import EmbeddedClickHouse

    previous = os.umask(0o022)
    try:
        store = EmbeddedClickHouse(tmp_path / "lib" / "chdb", database="private_check")
        store.close()
    finally:
        os.umask(previous)
    for path in (tmp_path / "lib", tmp_path / "lib" / "chdb"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path


def _client_app():
    async def client_address(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["client"][0].encode()})

    return client_address


@pytest.fixture
def serve() -> Iterator:
    servers: list[uvicorn.Server] = []

    def start() -> str:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        config = uvicorn.Config(
            _client_app(),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            **uvicorn_options(),
        )
        server = uvicorn.Server(config)
        servers.append(server)
        threading.Thread(target=server.run, daemon=True).start()
        deadline = time.time() + 10
        while not server.started and time.time() < deadline:
            time.sleep(0.02)
        return f"http://127.0.0.1:{port}/"

    yield start
    for server in servers:
        server.should_exit = True


def test_uvicorn_never_rewrites_the_client_address(serve) -> None:
    """The server, run as `serve` runs it, hands the app the TCP peer: the app alone reads
    `X-Forwarded-For`, and only from `trusted_proxies` (tests/services/test_api_edge.py)."""
    spoofed = {"X-Forwarded-For": "203.0.113.9"}
    with httpx.Client(trust_env=False) as client:
        assert client.get(serve(), headers=spoofed).text == "127.0.0.1"
