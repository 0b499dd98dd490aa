"""ClickHouse over TLS (`clickhouses://`, the server's tcp_port_secure) against the real server
with a self-signed test CA (scripts/secured-listeners): the store works through it, and a server
whose certificate the client cannot verify is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.settings import Settings
from storage import StoreError, open_store
from storage.schema import TABLES
from storage.server import ClickHouseServer, split_url
from tests.conftest import CLICKHOUSE_SECURE_URL, TLS_DIR, unique_database
from tests.storage.test_store_contract import read_all, sample_rows


def test_clickhouses_urls_parse_with_the_secure_default_port() -> None:
    assert split_url("clickhouses://u:p@h1,h2:9441") == (
        "clickhouses",
        [("h1", 9440), ("h2", 9441)],
        "u",
        "p",
    )
    with pytest.raises(ValueError, match="needs a clickhouses:// URL"):
        ClickHouseServer("clickhouse://127.0.0.1:1", ca_file=TLS_DIR / "ca.crt")


@pytest.mark.integration
def test_the_store_round_trips_over_tls() -> None:
    settings = Settings(
        store="server",
        clickhouse_url=CLICKHOUSE_SECURE_URL,
        clickhouse_ca_file=TLS_DIR / "ca.crt",
        database=unique_database(),
    )
    store = open_store(settings)  # the migrations, over TLS
    try:
        for table in sorted(set(TABLES) - {"schema_migrations"}):
            rows = sample_rows(table, 20, seed=len(table))
            assert store.insert(table, rows) == 20
            key = TABLES[table].order_by
            assert read_all(store, table) == sorted(rows, key=lambda r: [r[k] for k in key])
    finally:
        store.execute("DROP DATABASE IF EXISTS {db}")
        store.close()


@pytest.mark.integration
def test_a_certificate_the_client_cannot_verify_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other-ca.crt"
    other.write_text((TLS_DIR / "server.crt").read_text())  # a certificate, but not its issuer
    for ca in (None, other):  # the system's CAs, then a wrong one
        store = ClickHouseServer(CLICKHOUSE_SECURE_URL, database=unique_database(), ca_file=ca)
        with pytest.raises(StoreError, match="CERTIFICATE_VERIFY_FAILED"):
            store.query("SELECT 1 AS ok")
        store.close()
