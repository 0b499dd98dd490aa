"""Kafka over SASL_SSL against the real broker's secured listener (scripts/secured-listeners): TLS
verified against the test CA, then a SASL PLAIN or SCRAM-SHA-512 login. Every client the product
makes (admin, producer, the worker's consumer-group source) goes through it; a wrong password or
an untrusted certificate is refused at once, saying so, not retried until a timeout."""

from __future__ import annotations

import socket
import time
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from kafka.errors import KafkaConfigurationError, KafkaConnectionError
from typer.testing import CliRunner

from core.settings import Settings, get_settings
from distillguard.cli import ExitCode, app
from streaming.kafka import (
    KafkaConnection,
    KafkaSource,
    check_connection,
    ensure_topic,
    make_producer,
    produce_lines,
)
from tests.conftest import KAFKA_SASL_SSL, TLS_DIR, kafka_topic
from tests.distillguard.test_cli import request_log  # noqa: F401 - fixture
from tests.distillguard.test_cli_conventions import assert_one_line, distillguard

pytestmark = pytest.mark.integration
MECHANISMS = ["PLAIN", "SCRAM-SHA-512"]


def user(mechanism: str) -> tuple[str, str]:
    """The broker's user for `mechanism` and its password (scripts/kafka-up's users file)."""
    for line in (TLS_DIR / "kafka-users").read_text().splitlines():
        listed, name, password = line.split()
        if listed == mechanism:
            return name, password
    raise AssertionError(f"no {mechanism} user in {TLS_DIR / 'kafka-users'}")


def secured(mechanism: str, password: str | None = None, ca: Path | None = None) -> Settings:
    name, real = user(mechanism)
    return Settings(
        kafka_bootstrap=KAFKA_SASL_SSL,
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism=mechanism,
        kafka_sasl_username=name,
        kafka_sasl_password=password or real,
        kafka_ssl_cafile=ca or TLS_DIR / "ca.crt",
    )


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_produce_and_consume_over_sasl_ssl(mechanism: str) -> None:
    kafka = KafkaConnection.from_settings(secured(mechanism))
    topic = kafka_topic(f"secure-{mechanism.lower()}")
    ensure_topic(kafka, topic, 2)
    lines = [orjson.dumps({"account_id": f"acct-{i % 7}", "n": i}) for i in range(200)]
    producer = make_producer(kafka)
    assert produce_lines(producer, topic, lines) == len(lines)
    producer.close()
    source = KafkaSource(kafka, topic, f"group-{topic}", client_id="secure-test")
    received: list[bytes] = []
    deadline = time.monotonic() + 60
    while len(received) < len(lines) and time.monotonic() < deadline:
        received += [record.value for record in source.poll(500)]
    source.commit()
    source.close()
    assert sorted(received) == sorted(lines)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_a_wrong_password_is_refused_saying_so(mechanism: str) -> None:
    started = time.monotonic()
    with pytest.raises(KafkaConnectionError, match="Authentication failed"):
        make_producer(KafkaConnection.from_settings(secured(mechanism, password="wrong")))
    assert time.monotonic() - started < 10  # not kafka-python's silent retries until a timeout


def test_a_broker_certificate_from_another_ca_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other-ca.crt"
    other.write_text((TLS_DIR / "server.crt").read_text())  # a certificate, but not its issuer
    with pytest.raises(KafkaConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
        ensure_topic(KafkaConnection.from_settings(secured("SCRAM-SHA-512", ca=other)), "never")


def test_a_bootstrap_server_that_is_down_is_skipped_a_missing_ca_file_is_an_error(
    tmp_path: Path,
) -> None:
    with socket.socket() as held:  # bound, not listening: refused
        held.bind(("127.0.0.1", 0))
        down = f"127.0.0.1:{held.getsockname()[1]}"
        settings = secured("SCRAM-SHA-512")
        good = KafkaConnection.from_settings(settings)
        check_connection(replace(good, bootstrap=f"{down},{KAFKA_SASL_SSL}"))
        with pytest.raises(KafkaConnectionError, match="ECONNREFUSED"):
            check_connection(KafkaConnection(down, "SSL"))
    missing = settings.model_copy(update={"kafka_ssl_cafile": tmp_path / "absent.crt"})
    with pytest.raises(KafkaConfigurationError, match="cannot load the Kafka TLS files"):
        make_producer(KafkaConnection.from_settings(missing))


def test_the_cli_reads_the_password_file_and_reports_a_refusal_in_one_line(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request_log: Path,  # noqa: F811
) -> None:
    name, password = user("SCRAM-SHA-512")
    secret = tmp_path / "kafka-password"
    env = {
        "DG_KAFKA_BOOTSTRAP": KAFKA_SASL_SSL,
        "DG_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "DG_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "DG_KAFKA_SASL_USERNAME": name,
        "DG_KAFKA_SASL_PASSWORD_FILE": str(secret),
        "DG_KAFKA_SSL_CAFILE": str(TLS_DIR / "ca.crt"),
    }
    topic = kafka_topic("secure-cli")
    secret.write_text(password + "\n")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    published = CliRunner().invoke(app, ["produce", str(request_log), "--topic", topic, "--json"])
    assert published.exit_code == 0, published.output
    assert orjson.loads(published.stdout)["published"] > 0
    secret.write_text("wrong\n")
    refused = distillguard("produce", str(request_log), "--topic", topic, **env)
    line = assert_one_line(refused, ExitCode.KAFKA_UNAVAILABLE, "Authentication failed")
    assert password not in line
