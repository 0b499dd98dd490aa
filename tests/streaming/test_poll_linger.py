"""`poll_linger_ms` against the real broker: a poll that brought less than a full batch keeps
polling for up to the linger after its first record, so a trickle arrives in few batches; a
backlog fills its batch at once; and records held across a rebalance are dropped, since their
partitions' owners read them again from the committed offsets."""

from __future__ import annotations

import threading
import time
from collections import Counter

import orjson
import pytest

from streaming.kafka import KafkaSource, ensure_topic, make_producer, produce_lines
from tests.conftest import KAFKA_BOOTSTRAP, kafka_topic

pytestmark = pytest.mark.integration


def lines(count: int, accounts: int = 1) -> list[bytes]:
    return [
        orjson.dumps({"account_id": f"a{n % accounts}", "request_id": f"r{n}"})
        for n in range(count)
    ]


def joined(source: KafkaSource, deadline: float) -> None:
    while not source.consumer.assignment() and time.monotonic() < deadline:
        assert source.poll(200) == []  # joining the group; nothing produced yet


def trickle(topic: str, messages: list[bytes], rate: float) -> threading.Thread:
    def produce() -> None:
        producer = make_producer(KAFKA_BOOTSTRAP)
        try:
            produce_lines(producer, topic, messages, rate=rate)
        finally:
            producer.close()

    thread = threading.Thread(target=produce)
    thread.start()
    return thread


def test_a_lingering_poll_gathers_a_trickle_into_few_polls() -> None:
    """30 requests trickling in over 1.2 s, a 1.5 s linger: at most two polls (one, unless the
    first record came back from a poll before the trickle's producer flushed the rest)."""
    topic = kafka_topic("linger")
    ensure_topic(KAFKA_BOOTSTRAP, topic, partitions=1)
    source = KafkaSource(KAFKA_BOOTSTRAP, topic, f"{topic}-group", max_records=100, linger_ms=1500)
    try:
        deadline = time.monotonic() + 30
        joined(source, deadline)
        messages = lines(30)
        producing = trickle(topic, messages, rate=25)
        polled: list[int] = []
        while sum(polled) < len(messages) and time.monotonic() < deadline:
            if records := source.poll(source.poll_timeout_ms):
                polled.append(len(records))
        producing.join()
        assert sum(polled) == len(messages)
        assert len(polled) <= 2, polled
    finally:
        source.close()


def test_a_backlog_fills_its_batch_without_waiting_out_the_linger() -> None:
    topic = kafka_topic("linger")
    ensure_topic(KAFKA_BOOTSTRAP, topic, partitions=2)
    producer = make_producer(KAFKA_BOOTSTRAP)
    try:
        produce_lines(producer, topic, lines(600, accounts=7))
    finally:
        producer.close()
    group = f"{topic}-group"
    source = KafkaSource(KAFKA_BOOTSTRAP, topic, group, max_records=250, linger_ms=20_000)
    try:
        deadline = time.monotonic() + 60
        batches: list[tuple[int, float]] = []
        while sum(n for n, _ in batches) < 500 and time.monotonic() < deadline:
            started = time.monotonic()
            if records := source.poll(1000):
                batches.append((len(records), time.monotonic() - started))
        assert [n for n, _ in batches] == [250, 250]
        assert max(seconds for _, seconds in batches) < 10, batches  # far below the linger
    finally:
        source.close()


def test_records_held_across_a_rebalance_are_read_once() -> None:
    """A lingers on a trickle over two partitions; B joins the group meanwhile, so the
    rebalance lands inside A's lingering poll. What A had polled before it is not committed:
    returning it as well as letting the partitions' owners read it again from the committed
    offsets would deliver it twice. Both commit after each batch, as the worker does."""
    topic = kafka_topic("linger")
    group = f"{topic}-group"
    ensure_topic(KAFKA_BOOTSTRAP, topic, partitions=2)
    first = KafkaSource(KAFKA_BOOTSTRAP, topic, group, max_records=1000, linger_ms=9000)
    second: list[KafkaSource] = []
    seen: Counter[bytes] = Counter()
    lock = threading.Lock()
    messages = lines(80, accounts=9)
    deadline = time.monotonic() + 90

    def consume(source: KafkaSource) -> None:
        while len(seen) < len(messages) and time.monotonic() < deadline:
            records = source.poll(500)
            with lock:
                seen.update(r.value for r in records)
            source.commit()

    def join_later() -> None:
        time.sleep(2)
        second.append(KafkaSource(KAFKA_BOOTSTRAP, topic, group, max_records=1000))
        consume(second[0])

    try:
        joined(first, deadline)
        producing = trickle(topic, messages, rate=8)  # 10 s of traffic
        joiner = threading.Thread(target=join_later)
        joiner.start()
        consume(first)
        joiner.join()
        producing.join()
        assert first._rebalances >= 1  # the rebalance happened while `first` was polling
        assert set(seen) == set(messages)
        assert [m for m, n in seen.items() if n > 1] == []
    finally:
        first.close()
        for source in second:
            source.close()
