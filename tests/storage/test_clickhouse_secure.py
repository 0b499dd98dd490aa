"""ClickHouse over mutual TLS (`clickhouses://`, the server's tcp_port_secure) against the real
18.16 server, which requires a client certificate from the test CA (scripts/secured-listeners):
the store works with that certificate; without one, or with one from another CA, the server
refuses the handshake and the CLI says so in one line; a server whose certificate the client
cannot verify is refused by the client."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from distillguard.cli import ExitCode
from storage import StoreError, open_store
from storage.schema import TABLES
from storage.server import ClickHouseServer, split_url
from tests.conftest import CLICKHOUSE_SECURE_URL, ROOT, TLS_DIR, drop_database, unique_database
from tests.distillguard.test_cli_conventions import assert_one_line, distillguard
from tests.storage.test_store_contract import read_all, sample_rows

CA = TLS_DIR / "ca.crt"
CERT, KEY = TLS_DIR / "client.crt", TLS_DIR / "client.key"


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Another throwaway CA's set (ca.crt, server.*, client.*), made as the services' is."""
    folder = tmp_path_factory.mktemp("other-ca")
    subprocess.run([ROOT / "scripts" / "tls-certs", folder], check=True, capture_output=True)
    return folder


def encrypt(key: Path, out: Path, password: str) -> Path:
    """`key`, encrypted with `password` (PKCS#8, AES-256), written to `out`."""
    subprocess.run(
        ["openssl", "pkey", "-in", key, "-aes256", "-out", out, "-passout", f"pass:{password}"],
        check=True,
    )
    return out


@pytest.fixture(scope="module")
def encrypted_key(other_ca: Path) -> tuple[Path, str]:
    """`other_ca`'s client key, encrypted with a password."""
    password = "correct horse"
    return encrypt(other_ca / "client.key", other_ca / "client-encrypted.key", password), password


def test_clickhouses_urls_parse_with_the_secure_default_port() -> None:
    assert split_url("clickhouses://u:p@h1,h2:9441") == (
        "clickhouses",
        [("h1", 9440), ("h2", 9441)],
        "u",
        "p",
    )


def test_tls_files_need_tls_and_a_key_needs_its_certificate(other_ca: Path) -> None:
    with pytest.raises(ValueError, match="needs a clickhouses:// URL"):
        ClickHouseServer("clickhouse://127.0.0.1:1", ca_file=other_ca / "ca.crt")
    with pytest.raises(ValueError, match="needs a clickhouses:// URL"):
        ClickHouseServer("clickhouse://127.0.0.1:1", cert_file=other_ca / "client.crt")
    with pytest.raises(ValueError, match="needs its certificate"):
        ClickHouseServer("clickhouses://127.0.0.1:1", key_file=other_ca / "client.key")


def test_a_client_certificate_that_does_not_load_is_refused_before_connecting(
    other_ca: Path, encrypted_key: tuple[Path, str]
) -> None:
    """Nothing listens on port 1: each is refused while the store is made, by what it names."""
    cert, key = other_ca / "client.crt", other_ca / "client.key"

    def client(**tls: Any) -> ClickHouseServer:
        return ClickHouseServer("clickhouses://127.0.0.1:1", **tls)

    with pytest.raises(ValueError, match=f"cannot read .* {other_ca}/absent.key: No such file"):
        client(cert_file=cert, key_file=other_ca / "absent.key")
    with pytest.raises(ValueError, match="KEY_VALUES_MISMATCH"):
        client(cert_file=cert, key_file=other_ca / "server.key")
    encrypted, password = encrypted_key
    for wrong in (None, "wrong"):  # no password: refused, never OpenSSL's terminal prompt
        with pytest.raises(ValueError, match="password is wrong or missing"):
            client(cert_file=cert, key_file=encrypted, key_password=wrong)
    client(cert_file=cert, key_file=key).close()
    client(cert_file=cert, key_file=encrypted, key_password=password).close()


@pytest.mark.integration
def test_the_store_round_trips_over_mutual_tls() -> None:
    settings = Settings(
        store="server",
        clickhouse_url=CLICKHOUSE_SECURE_URL,
        clickhouse_ca_file=CA,
        clickhouse_cert_file=CERT,
        clickhouse_key_file=KEY,
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
        drop_database(store)


# TLS 1.3 refuses a client certificate after the handshake: the client reads the server's alert,
# or an EOF when the server closed first (about half the time each, on loopback).
REFUSED = "(tlsv13 alert certificate required|EOF occurred in violation of protocol)"
UNTRUSTED = "(tlsv1 alert unknown ca|EOF occurred in violation of protocol)"


@pytest.mark.integration
def test_the_server_refuses_a_client_without_its_cas_certificate(other_ca: Path) -> None:
    refusals: list[tuple[dict[str, Any], str]] = [
        ({}, f"{REFUSED}.*if the server requires mutual TLS: set clickhouse_cert_file"),
        (
            {"cert_file": other_ca / "client.crt", "key_file": other_ca / "client.key"},
            f"{UNTRUSTED}.*does it trust clickhouse_cert_file's CA",
        ),
    ]
    for tls, refusal in refusals:
        store = ClickHouseServer(CLICKHOUSE_SECURE_URL, ca_file=CA, **tls)
        with pytest.raises(StoreError, match=refusal):
            store.query("SELECT 1 AS ok")
        store.close()


@pytest.mark.integration
def test_a_certificate_the_client_cannot_verify_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other-ca.crt"
    other.write_text((TLS_DIR / "server.crt").read_text())  # a certificate, but not its issuer
    for ca in (None, other):  # the system's CAs, then a wrong one
        store = ClickHouseServer(
            CLICKHOUSE_SECURE_URL,
            database=unique_database(),
            ca_file=ca,
            cert_file=CERT,
            key_file=KEY,
        )
        with pytest.raises(StoreError, match="CERTIFICATE_VERIFY_FAILED"):
            store.query("SELECT 1 AS ok")
        store.close()


@pytest.mark.integration
def test_the_cli_connects_with_an_encrypted_key_and_says_in_one_line_when_refused(
    tmp_path: Path,
) -> None:
    """A command as a deployment runs it: the client key encrypted, its password from a file
    (`DG_<NAME>_FILE`); then the same command without a certificate: one line, exit 3."""
    key = encrypt(KEY, tmp_path / "client.key", "s3cret")
    (tmp_path / "key-password").write_text("s3cret\n")
    env = {
        "DG_STORE": "server",
        "DG_CLICKHOUSE_URL": CLICKHOUSE_SECURE_URL,
        "DG_CLICKHOUSE_CA_FILE": str(CA),
        "DG_DATABASE": unique_database(),
    }
    done = distillguard(
        "migrate",
        **env,
        DG_CLICKHOUSE_CERT_FILE=str(CERT),
        DG_CLICKHOUSE_KEY_FILE=str(key),
        DG_CLICKHOUSE_KEY_PASSWORD_FILE=str(tmp_path / "key-password"),
    )
    try:
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"server store {env['DG_DATABASE']}: applied [1," in done.stdout
        line = assert_one_line(
            distillguard("migrate", **env),
            ExitCode.STORE_UNAVAILABLE,
            f"store unavailable: clickhouse server {CLICKHOUSE_SECURE_URL}: ",
        )
        assert re.search(f"{REFUSED}.*: set clickhouse_cert_file\\)$", line), line
    finally:
        store = ClickHouseServer(
            CLICKHOUSE_SECURE_URL, env["DG_DATABASE"], ca_file=CA, cert_file=CERT, key_file=KEY
        )
        drop_database(store)
