"""The worker's `distillguard_consumer_lag` gauge (`KafkaSource.lag`, which the consumer-lag
alerts in deploy/prometheus/ read) against the real broker: the messages of the assigned
partitions not yet polled, and 0 once every one is read."""

from __future__ import annotations

import time

import orjson
import pytest

from streaming.kafka import KafkaSource, ensure_topic, make_producer, produce_lines
from tests.conftest import KAFKA_BOOTSTRAP, kafka_topic

pytestmark = pytest.mark.integration
MESSAGES = 40


def test_lag_counts_the_messages_not_yet_polled() -> None:
    topic = kafka_topic("lag")
    ensure_topic(KAFKA_BOOTSTRAP, topic, partitions=2)
    producer = make_producer(KAFKA_BOOTSTRAP)
    lines = [
        orjson.dumps({"account_id": f"a{n % 5}", "request_id": f"r{n}"}) for n in range(MESSAGES)
    ]
    try:
        assert produce_lines(producer, topic, lines) == MESSAGES
    finally:
        producer.close()
    source = KafkaSource(KAFKA_BOOTSTRAP, topic, f"{topic}-group", max_records=10)
    try:
        deadline = time.monotonic() + 30
        polled = 0
        while polled == 0 and time.monotonic() < deadline:  # the first polls join the group
            polled = len(source.poll(500))
        assert 0 < polled <= 10
        assert source.lag() == MESSAGES - polled
        while polled < MESSAGES and time.monotonic() < deadline:
            polled += len(source.poll(500))
        assert polled == MESSAGES
        assert source.lag() == 0
    finally:
        source.close()
