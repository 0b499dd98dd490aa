"""Smoke tests against the real Kafka 4.4 broker started by ``scripts/kafka-up``.

Bootstrap address from ``DG_KAFKA_BOOTSTRAP`` (default ``127.0.0.1:19092``).
These tests fail (never skip) when no broker answers.
"""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import CommitFailedError

from streaming.kafka import delete_topics
from tests.conftest import KAFKA_BOOTSTRAP, kafka_topic, listening

pytestmark = pytest.mark.integration

CLIENT_TIMEOUTS = {"request_timeout_ms": 10_000}


@pytest.fixture
def admin():
    if not listening(KAFKA_BOOTSTRAP, timeout_s=3):  # fail within seconds, not after 30
        pytest.fail(f"no Kafka broker at {KAFKA_BOOTSTRAP}; start one with scripts/kafka-up")
    client = KafkaAdminClient(
        bootstrap_servers=KAFKA_BOOTSTRAP, client_id="dg-smoke-admin", **CLIENT_TIMEOUTS
    )
    yield client
    client.close()


@pytest.fixture
def topic_factory(admin):
    created: list[str] = []

    def make(partitions: int) -> str:
        name = kafka_topic("smoke")
        admin.create_topics(
            [NewTopic(name=name, num_partitions=partitions, replication_factor=1)],
            timeout_ms=10_000,
        )
        created.append(name)
        return name

    yield make
    delete_topics(KAFKA_BOOTSTRAP, set(created).__contains__, client_id="dg-smoke-admin")


def _producer() -> KafkaProducer:
    return KafkaProducer(
        bootstrap_servers=KAFKA_BOOTSTRAP, acks="all", linger_ms=0, **CLIENT_TIMEOUTS
    )


def test_produce_and_consume_keyed_message(topic_factory):
    topic = topic_factory(1)
    key, value = b"user-42", f"hello {uuid.uuid4()}".encode()

    producer = _producer()
    try:
        meta = producer.send(topic, key=key, value=value).get(timeout=10)
        producer.flush(timeout=10)
    finally:
        producer.close(timeout=5)
    assert meta.topic == topic
    assert meta.offset == 0

    consumer = KafkaConsumer(
        bootstrap_servers=KAFKA_BOOTSTRAP, enable_auto_commit=False, **CLIENT_TIMEOUTS
    )
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        records = []
        deadline = time.monotonic() + 15
        while not records and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()

    assert len(records) == 1
    assert records[0].key == key
    assert records[0].value == value
    assert records[0].offset == 0


def _committed_own_partition(consumer: KafkaConsumer) -> bool:
    """Commit what `consumer` has read; whether its one partition now reads back offset 1."""
    try:
        consumer.commit()
    except CommitFailedError:  # the group is rebalancing: poll, then try again
        return False
    assigned = consumer.assignment()
    return len(assigned) == 1 and consumer.committed(next(iter(assigned))) == 1


def test_consumer_group_two_members_commit(topic_factory):
    """Two members of one group split a 2-partition topic and commit offsets
    (needs the group coordinator, i.e. __consumer_offsets with RF=1).

    Each member polls in its own thread, as real consumers do: with the classic
    protocol a rebalance only completes once every member polls again."""
    topic = topic_factory(2)
    group = f"dg-smoke-group-{uuid.uuid4().hex[:8]}"

    producer = _producer()
    try:
        for p in (0, 1):
            producer.send(topic, key=f"k{p}".encode(), value=f"v{p}".encode(), partition=p)
        producer.flush(timeout=10)
    finally:
        producer.close(timeout=5)

    consumers = [
        KafkaConsumer(
            bootstrap_servers=KAFKA_BOOTSTRAP,
            group_id=group,
            client_id=f"dg-smoke-c{i}",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            session_timeout_ms=10_000,
            heartbeat_interval_ms=500,
            request_timeout_ms=15_000,
        )
        for i in range(2)
    ]
    # Load the topic's metadata before joining. kafka-python 3.0.12 can wedge a
    # member for good (no more heartbeats, evicted after session_timeout_ms) when a
    # metadata refresh lands while its JoinGroup/SyncGroup is in flight, which is
    # what happens when a consumer subscribes to a topic it has no metadata for yet.
    for c in consumers:
        assert c.partitions_for_topic(topic) == {0, 1}
        c.subscribe([topic])
    # received[i][partition] -> values member i read from it. A member may read a
    # partition before a rebalance moves it away (nothing is committed yet), so each
    # member is judged by its *current* single partition.
    received: list[dict[int, list[bytes]]] = [{}, {}]
    assigned: list[frozenset[TopicPartition]] = [frozenset(), frozenset()]
    errors: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()

    def member(i: int) -> None:
        c = consumers[i]
        try:
            while not stop.is_set():
                batches = c.poll(timeout_ms=200)
                with lock:
                    for tp, batch in batches.items():
                        received[i].setdefault(tp.partition, []).extend(r.value for r in batch)
                    assigned[i] = frozenset(c.assignment())
        except BaseException as exc:  # surfaced by the main thread
            errors.append(exc)

    def settled() -> bool:
        with lock:
            if errors or not all(len(a) == 1 for a in assigned) or assigned[0] == assigned[1]:
                return False
            return all(next(iter(a)).partition in received[i] for i, a in enumerate(assigned))

    threads = [threading.Thread(target=member, args=(i,), daemon=True) for i in range(2)]
    try:
        for t in threads:
            t.start()
        deadline = time.monotonic() + 15
        while not settled() and not errors and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for t in threads:
            t.join(timeout=10)
        assert not errors, f"consumer thread failed: {errors!r}"
        assert settled(), f"group did not settle in 15 s: {assigned=} {received=}"
        for i, a in enumerate(assigned):
            (tp,) = a
            assert set(received[i][tp.partition]) == {f"v{tp.partition}".encode()}

        # Both members have settled: commit what each consumed and read it back. On a loaded
        # machine a late rebalance (a missed heartbeat) can still reset a member's position
        # before its commit, which then commits nothing (`committed` reads None): both poll
        # again, which completes the rebalance and re-reads the partition, and commit again.
        deadline = time.monotonic() + 30
        while not all(_committed_own_partition(c) for c in consumers):
            assert time.monotonic() < deadline, "offsets never committed in 30 s"
            for c in consumers:
                c.poll(timeout_ms=200)
        for c in consumers:
            (tp,) = c.assignment()
            assert c.committed(tp) == 1
    finally:
        stop.set()
        for c in consumers:
            c.close()


def test_delete_topics_removes_only_the_wanted_ones(admin, topic_factory):
    """What benchmarks and the test run use to remove their own topics, and nothing else."""
    mine = [topic_factory(1), topic_factory(2)]
    other = topic_factory(1)
    deleted = delete_topics(KAFKA_BOOTSTRAP, set(mine).__contains__, client_id="dg-smoke-delete")
    assert deleted == sorted(mine)
    deadline = time.monotonic() + 15
    while set(mine) & set(admin.list_topics()) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = set(admin.list_topics())
    assert not set(mine) & left
    assert other in left
