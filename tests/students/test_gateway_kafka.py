"""The teacher's gateway publishes its request log to the real Kafka broker, keyed by account."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kafka import KafkaConsumer

from core.events import Event, parse_event
from streaming.kafka import ensure_topic
from students.gateway import KafkaEventLog, create_gateway
from students.teacher import Teacher
from tests.conftest import KAFKA_BOOTSTRAP, TEACHER_DIR, kafka_topic

pytestmark = [pytest.mark.integration, pytest.mark.models]


def test_gateway_events_reach_the_topic(tmp_path: Path) -> None:
    topic = kafka_topic("gateway")
    ensure_topic(KAFKA_BOOTSTRAP, topic, 2)
    teacher = Teacher(TEACHER_DIR)
    with TestClient(create_gateway(teacher, KafkaEventLog(KAFKA_BOOTSTRAP, topic))) as client:
        reply = client.post(
            "/v1/chat/completions",
            headers={"Authorization": "Bearer sk-acct-7"},
            json={
                "messages": [{"role": "user", "content": "Name a fruit."}],
                "temperature": 0,
                "max_tokens": 8,
            },
        )
        assert reply.status_code == 200
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=KAFKA_BOOTSTRAP,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5_000,
    )
    messages = list(consumer)
    consumer.close()
    assert len(messages) == 1 and messages[0].key == b"acct-7"
    event = parse_event(messages[0].value, f"kafka:{topic}/0", messages[0].offset)
    assert isinstance(event, Event) and event.request_id == reply.json()["id"]
