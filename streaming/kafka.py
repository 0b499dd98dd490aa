"""Kafka source and producer (kafka-python): consumer group on `api-requests`, key = account_id.

Every client (producer, consumer, admin) is made by `_client` from a `KafkaConnection`: the
bootstrap servers and, for a secured cluster, TLS and SASL. A bare bootstrap string is a
PLAINTEXT connection (tests, benchmarks on the local broker)."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.conn import BrokerConnection
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import KafkaConfigurationError, KafkaConnectionError, TopicAlreadyExistsError
from pydantic import SecretStr

from core.events import DeadLetter
from core.formats import LogFormat
from core.records import SourceRecord
from core.settings import Settings
from streaming.sources import Revoked

log = logging.getLogger("distillguard.kafka")
C = TypeVar("C", KafkaProducer, KafkaConsumer, KafkaAdminClient)
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class KafkaConnection:
    """How to reach the brokers: `bootstrap` (`host:port[,host:port...]`) and, for a secured
    cluster, the security protocol, SASL user and TLS files (`Settings.kafka_*`)."""

    bootstrap: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str = "SCRAM-SHA-512"
    sasl_username: str | None = None
    sasl_password: SecretStr | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaConnection:
        return cls(
            settings.kafka_bootstrap,
            settings.kafka_security_protocol,
            settings.kafka_sasl_mechanism,
            settings.kafka_sasl_username,
            settings.kafka_sasl_password,
            settings.kafka_ssl_cafile,
            settings.kafka_ssl_certfile,
            settings.kafka_ssl_keyfile,
        )

    @property
    def secured(self) -> bool:
        return self.security_protocol != "PLAINTEXT"

    def config(self) -> dict[str, Any]:
        """kafka-python's options for this connection. TLS always verifies the broker's
        certificate and name (against `ssl_cafile`, or the system's CAs)."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            config["ssl_context"] = self.tls()
        if self.security_protocol.startswith("SASL_"):
            password = self.sasl_password.get_secret_value() if self.sasl_password else None
            config |= {
                "sasl_mechanism": self.sasl_mechanism,
                "sasl_plain_username": self.sasl_username,
                "sasl_plain_password": password,
            }
        return config

    def tls(self) -> ssl.SSLContext:
        """Python's defaults (TLS 1.2 or later, the certificate and host name verified) with
        `ssl_cafile` as the only trusted CA when set, and the client certificate when set."""
        try:
            context = ssl.create_default_context(cafile=self.ssl_cafile)
            if self.ssl_certfile is not None:
                context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        except (OSError, ValueError) as error:  # (ssl.SSLError is an OSError)
            raise KafkaConfigurationError(f"cannot load the Kafka TLS files: {error}") from None
        return context


Kafka = KafkaConnection | str  # a bare bootstrap string: PLAINTEXT


def connection_of(kafka: Kafka) -> KafkaConnection:
    return kafka if isinstance(kafka, KafkaConnection) else KafkaConnection(kafka)


class _Probe(BrokerConnection):
    """One broker connection that keeps the first error it was closed with (a refused SASL
    login is only logged and turned into a disconnect)."""

    error: Exception | None = None

    def close(self, error: Exception | None = None) -> None:
        if error is not None and self.error is None:
            self.error = error
        super().close(error)


def check_connection(kafka: Kafka, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Connect to a bootstrap server the way every client will (TLS handshake, SASL login) and
    raise what went wrong: kafka-python's clients retry a refused login or an untrusted
    certificate silently until some unrelated timeout. A server that is down is skipped (the
    next one is tried); a refused login or certificate ends the check at once."""
    connection = connection_of(kafka)
    config = connection.config()
    quiet = logging.getLogger("kafka.conn")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # the error raised below says it once
    unreachable = []
    try:
        for server in connection.bootstrap.split(","):
            host, _, port = server.strip().rpartition(":")
            where = f"{host}:{port} over {connection.security_protocol}"
            probe = _Probe(host.strip("[]"), int(port), socket.AF_UNSPEC, **config)
            try:
                if probe.connect_blocking(timeout_s):
                    return
            except ssl.SSLError as error:
                raise KafkaConnectionError(f"TLS with {where} failed: {error}") from error
            finally:
                probe.close()
            if probe.error is not None and not isinstance(probe.error, KafkaConnectionError):
                raise KafkaConnectionError(f"{where}: {probe.error}")  # e.g. the SASL login
            unreachable.append(f"{where}: {probe.error or 'no connection'}")
    finally:
        quiet.setLevel(level)
    raise KafkaConnectionError("; ".join(unreachable))


def _client(kind: type[C], kafka: Kafka, **options: Any) -> C:
    """A producer, consumer or admin client on `kafka`; a secured connection is checked first
    (`check_connection`), so a wrong password or certificate fails here, saying so."""
    connection = connection_of(kafka)
    if connection.secured:
        check_connection(connection)
    return kind(**(connection.config() | options))


def stream_name(topic: str, partition: int) -> str:
    return f"kafka:{topic}/{partition}"


def make_producer(kafka: Kafka, **overrides) -> KafkaProducer:
    """A producer that waits for the broker's acknowledgement of every write."""
    config = {
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "max_request_size": 16 * 1024 * 1024,
        "retries": 5,
        "client_id": "distillguard-producer",
    }
    return _client(KafkaProducer, kafka, **(config | overrides))


def make_consumer(kafka: Kafka, **options: Any) -> KafkaConsumer:
    """A consumer with kafka-python's `options` (tools, tests) on `kafka`."""
    return _client(KafkaConsumer, kafka, **options)


def make_admin(kafka: Kafka, client_id: str = "distillguard-admin") -> KafkaAdminClient:
    return _client(KafkaAdminClient, kafka, client_id=client_id)


def ensure_topic(
    kafka: Kafka, topic: str, partitions: int = 4, configs: Mapping[str, str] | None = None
) -> None:
    """Create the topic (with topic `configs`, e.g. compaction) if it does not exist yet
    (idempotent)."""
    admin = make_admin(kafka)
    try:
        admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=partitions,
                    replication_factor=1,
                    topic_configs=dict(configs or {}),
                )
            ]
        )
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def delete_topics(kafka: Kafka, wanted: Callable[[str], bool], client_id: str) -> list[str]:
    """Delete the existing topics `wanted` accepts (a run's own: benchmarks, tests) and return
    their names. The broker keeps every topic's data until then, and each topic left behind
    made later runs on the same broker slower (more partitions to load and clean)."""
    admin = make_admin(kafka, client_id=client_id)
    try:
        doomed = sorted(t for t in admin.list_topics() if wanted(t))
        if doomed:
            admin.delete_topics(doomed, timeout_ms=30_000)
        return doomed
    finally:
        admin.close()


def account_key(line: bytes) -> bytes | None:
    """The message key for a raw event: its account_id, or None for unparseable input."""
    try:
        document = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    account = document.get("account_id") if isinstance(document, dict) else None
    return account.encode() if isinstance(account, str) else None


def keyed_messages(
    lines: Iterable[bytes], log_format: LogFormat, source: str
) -> Iterator[tuple[bytes | None, bytes] | DeadLetter]:
    """(key, value) of each message to publish: schema-v1 lines as they are, keyed by their
    account (bad ones too: the worker dead-letters them with their bytes); a foreign format's
    messages parsed here, published as schema v1 keyed by account, or their dead letters."""
    if log_format.native:
        yield from ((account_key(line), line) for line in lines)
        return
    for offset, unit in enumerate(log_format.units(lines)):
        item = log_format.parse(unit, source, offset)
        if isinstance(item, DeadLetter):
            yield item
        else:
            yield item.account_id.encode(), log_format.wire(unit, item)


def produce_lines(
    producer: KafkaProducer,
    topic: str,
    lines: Iterable[bytes],
    on_sent: Callable[[int], None] | None = None,
    rate: float | None = None,
    log_format: LogFormat | None = None,
    on_dead: Callable[[DeadLetter], None] | None = None,
    source: str = "produce",
) -> int:
    """Publish raw lines keyed by account, at most `rate` messages per second when given (load
    tests). Lines of a foreign `log_format` are mapped to schema v1 first; those that do not
    map go to `on_dead` (the dead-letter topic) and are not published."""
    sent = 0
    started = time.perf_counter()
    for message in keyed_messages(lines, log_format or LogFormat(), source):
        if isinstance(message, DeadLetter):
            if on_dead is not None:
                on_dead(message)
            continue
        if rate is not None:
            delay = started + sent / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
        key, value = message
        producer.send(topic, key=key, value=value)
        sent += 1
        if on_sent and sent % 1000 == 0:
            on_sent(sent)
    producer.flush()
    if on_sent:
        on_sent(sent)
    return sent


def group_consumer(
    kafka: Kafka, group: str, client_id: str, max_records: int, fetch_mib: int = 32
) -> KafkaConsumer:
    """A consumer-group member that commits only when told (after the sinks have the data),
    starts from the earliest offset, and may stop polling for long (backpressure) without
    losing its partitions; fetches up to `fetch_mib` MiB."""
    return _client(
        KafkaConsumer,
        kafka,
        group_id=group,
        client_id=client_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=max_records,
        max_poll_interval_ms=30 * 60 * 1000,
        session_timeout_ms=10_000,
        heartbeat_interval_ms=3_000,
        fetch_max_bytes=fetch_mib * 1024 * 1024,
        max_partition_fetch_bytes=fetch_mib // 2 * 1024 * 1024,
        receive_message_max_bytes=(fetch_mib + fetch_mib // 4) * 1024 * 1024,  # > one fetch
    )


class Rebalance(ConsumerRebalanceListener):
    """Logs assignments; runs `hooks` with the streams a rebalance takes away and `assigned`
    with the streams it gives (the consumer's own `assignment()` lags behind both)."""

    def __init__(self, hooks: list[Revoked], assigned: Revoked | None = None) -> None:
        self.hooks = hooks
        self.assigned = assigned

    def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        streams = {stream_name(tp.topic, tp.partition) for tp in revoked}
        if streams:
            log.info("partitions revoked: %s", ", ".join(sorted(streams)))
            for hook in self.hooks:
                hook(streams)

    def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        streams = sorted(stream_name(tp.topic, tp.partition) for tp in assigned)
        log.info("partitions assigned: %s", ", ".join(streams) or "none")
        if self.assigned is not None:
            self.assigned(set(streams))


LINGER_STEP_S = 0.05  # a lingering poll polls again at most this often


class KafkaSource:
    """A consumer-group `Source`: polls batches of records; offsets are committed only by
    `commit`, after the sinks flushed.

    `max_poll_interval_ms` is long on purpose: while the store is down the worker stops polling
    (backpressure) and must keep its partitions rather than trigger a rebalance storm.
    """

    def __init__(
        self,
        kafka: Kafka,
        topic: str,
        group: str,
        max_records: int = 2000,
        client_id: str = "distillguard-worker",
        poll_timeout_ms: int = 500,
        linger_ms: int = 0,
    ) -> None:
        self.topic = topic
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self.linger_ms = linger_ms
        self._rebalances = 0
        self._revoked_hooks: list[Revoked] = [self._count_rebalance]
        self.consumer = group_consumer(kafka, group, client_id, max_records)
        # Fetch the topic's metadata before joining: a metadata refresh that lands mid-join can
        # strand a group member in some kafka-python releases.
        self.consumer.partitions_for_topic(topic)
        self.consumer.subscribe([topic], listener=Rebalance(self._revoked_hooks))

    def on_revoked(self, callback: Revoked) -> None:
        """Revocations happen inside `poll`, so a hook added before the first poll sees all."""
        self._revoked_hooks.append(callback)

    def batches(self) -> Iterator[list[SourceRecord]]:
        """One poll after another, forever; an empty batch when a poll timed out."""
        while True:
            yield self.poll(self.poll_timeout_ms)

    def poll(self, timeout_ms: int = 500) -> list[SourceRecord]:
        """What has arrived, up to `max_records`. With `linger_ms`, a poll that brought fewer
        keeps polling until it has `max_records` or `linger_ms` has passed since its first
        record: a steady trickle is then processed in batches of that much traffic instead of
        a few records each, while a backlog fills its batch at once and never waits. (The
        broker-side way, holding each fetch until it had 1 MiB, drained a backlog a fifth slower
        at the same CPU: most likely a held fetch for drained partitions delayed the others'.)"""
        records = self._poll(timeout_ms, self.max_records)
        if not records or not self.linger_ms:
            return records
        deadline = time.monotonic() + self.linger_ms / 1000
        while len(records) < self.max_records and (left := deadline - time.monotonic()) > 0:
            # A poll returns as soon as anything arrives: while a producer is busy, polling again
            # at once would fetch a few records at a time, in a loop that costs the worker and
            # the broker CPU for nothing.
            time.sleep(min(left, LINGER_STEP_S))
            rebalances = self._rebalances
            left_ms = max(1, round((deadline - time.monotonic()) * 1000))
            more = self._poll(left_ms, self.max_records - len(records))
            if self._rebalances != rebalances:
                # Polled before partitions were taken away: nothing of it is committed, so
                # whoever owns each partition now reads it again from the committed offset.
                records = []
            records.extend(more)
        return records

    def _poll(self, timeout_ms: int, max_records: int) -> list[SourceRecord]:
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
        return list(self._records(polled))

    def _count_rebalance(self, streams: set[str]) -> None:
        self._rebalances += 1

    @staticmethod
    def _records(polled: dict) -> Iterator[SourceRecord]:
        for tp, messages in polled.items():
            stream = stream_name(tp.topic, tp.partition)
            for message in messages:
                yield SourceRecord(
                    message.value or b"", stream, message.offset, message.key, message.timestamp
                )

    def commit(self) -> None:
        """Commit the positions of everything polled so far (all of it is in the sinks)."""
        self.consumer.commit()

    def lag(self) -> int:
        """Messages behind the end of the assigned partitions. The end is the highwater mark
        the last fetch response carried (no request to the broker: asking for end offsets took
        a quarter of a second on a busy 2-core machine); only partitions not fetched yet ask."""
        assigned = list(self.consumer.assignment())
        if not assigned:
            return 0
        ends = {tp: self.consumer.highwater(tp) for tp in assigned}
        unknown = [tp for tp, end in ends.items() if end is None]
        if unknown:
            ends |= self.consumer.end_offsets(unknown)
        return sum(max(0, ends[tp] - self.consumer.position(tp)) for tp in assigned)

    def close(self) -> None:
        self.consumer.close(autocommit=False)
