"""HTTP ingest against the real Kafka broker and ClickHouse server: valid events reach the request
topic keyed by account, malformed ones reach the dead-letter topic and table with their bytes."""

from __future__ import annotations

import uuid

import orjson
import pytest
from fastapi.testclient import TestClient
from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic

from core.settings import Settings
from distillguard.wiring import build_api
from services.auth import create_token
from storage import ClickHouseServer
from tests.conftest import (
    CLICKHOUSE_URL,
    KAFKA_BOOTSTRAP,
    drop_database,
    kafka_topic,
    unique_database,
)

pytestmark = pytest.mark.integration


def _consume(topic: str, expected: int) -> list:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=KAFKA_BOOTSTRAP,
        auto_offset_reset="earliest",
        consumer_timeout_ms=15_000,
        group_id=f"dg-test-{uuid.uuid4().hex[:8]}",
    )
    messages = []
    for message in consumer:
        messages.append(message)
        if len(messages) >= expected:
            break
    consumer.close()
    return messages


def test_ingest_produces_to_kafka_and_dead_letters() -> None:
    topic = kafka_topic("ingest")
    dlq = f"{topic}.dlq"
    admin = KafkaAdminClient(bootstrap_servers=KAFKA_BOOTSTRAP, request_timeout_ms=10_000)
    admin.create_topics([NewTopic(t, 2, 1) for t in (topic, dlq)], timeout_ms=10_000)
    store = ClickHouseServer(CLICKHOUSE_URL, database=unique_database())
    store.migrate()
    try:
        settings = Settings(
            store="server",
            clickhouse_url=CLICKHOUSE_URL,
            database=store.database,
            kafka_bootstrap=KAFKA_BOOTSTRAP,
            topic=topic,
            dlq_topic=dlq,
        )
        token = create_token(store, "ingest", "gateway")[0]
        good = [
            {
                "request_id": f"r{i}",
                "account_id": f"acct-{i % 2}",
                "timestamp": 1795000000000 + i,
                "prompt": f"question {i}",
            }
            for i in range(4)
        ]
        body = b"\n".join([*(orjson.dumps(g) for g in good), b"not json at all"])
        with TestClient(build_api(settings, store)) as client:
            response = client.post(
                "/v1/events",
                content=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/x-ndjson",
                },
            )
        assert response.status_code == 202, response.text
        assert response.json()["accepted"] == 4
        produced = _consume(topic, 4)
        assert sorted(orjson.loads(m.value)["request_id"] for m in produced) == [
            "r0",
            "r1",
            "r2",
            "r3",
        ]
        assert {m.key for m in produced} == {b"acct-0", b"acct-1"}
        (letter,) = _consume(dlq, 1)
        assert orjson.loads(letter.value)["raw"] == "not json at all"
        rows = store.query("SELECT raw, reason FROM {db}.dead_letters FINAL")
        assert [r["raw"] for r in rows] == ["not json at all"] and rows[0]["reason"]
    finally:
        admin.delete_topics([topic, dlq], timeout_ms=10_000)
        admin.close()
        drop_database(store)
