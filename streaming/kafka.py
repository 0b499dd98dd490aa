"""Kafka source and producer (kafka-python): consumer group on `api-requests`, key = account_id."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.errors import TopicAlreadyExistsError

from core.events import DeadLetter
from core.formats import LogFormat
from core.records import SourceRecord
from streaming.sources import Revoked

log = logging.getLogger("distillguard.kafka")


def stream_name(topic: str, partition: int) -> str:
    return f"kafka:{topic}/{partition}"


def make_producer(bootstrap: str, **overrides) -> KafkaProducer:
    """A producer that waits for the broker's acknowledgement of every write."""
    config = {
        "bootstrap_servers": bootstrap,
        "acks": "all",
        "linger_ms": 20,
        "batch_size": 256 * 1024,
        "max_request_size": 16 * 1024 * 1024,
        "retries": 5,
        "client_id": "distillguard-producer",
    }
    return KafkaProducer(**(config | overrides))


def ensure_topic(
    bootstrap: str, topic: str, partitions: int = 4, configs: Mapping[str, str] | None = None
) -> None:
    """Create the topic (with topic `configs`, e.g. compaction) if it does not exist yet
    (idempotent)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="distillguard-admin")
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
    bootstrap: str, group: str, client_id: str, max_records: int, fetch_mib: int = 32
) -> KafkaConsumer:
    """A consumer-group member that commits only when told (after the sinks have the data),
    starts from the earliest offset, and may stop polling for long (backpressure) without
    losing its partitions; fetches up to `fetch_mib` MiB."""
    return KafkaConsumer(
        bootstrap_servers=bootstrap,
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


class KafkaSource:
    """A consumer-group `Source`: polls batches of records; offsets are committed only by
    `commit`, after the sinks flushed.

    `max_poll_interval_ms` is long on purpose: while the store is down the worker stops polling
    (backpressure) and must keep its partitions rather than trigger a rebalance storm.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        max_records: int = 2000,
        client_id: str = "distillguard-worker",
        poll_timeout_ms: int = 500,
    ) -> None:
        self.topic = topic
        self.max_records = max_records
        self.poll_timeout_ms = poll_timeout_ms
        self._revoked_hooks: list[Revoked] = []
        self.consumer = group_consumer(bootstrap, group, client_id, max_records)
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
        polled = self.consumer.poll(timeout_ms=timeout_ms, max_records=self.max_records)
        return list(self._records(polled))

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
        """Messages behind the end of the assigned partitions."""
        assigned = list(self.consumer.assignment())
        if not assigned:
            return 0
        ends = self.consumer.end_offsets(assigned)
        return sum(max(0, ends[tp] - self.consumer.position(tp)) for tp in assigned)

    def close(self) -> None:
        self.consumer.close(autocommit=False)
