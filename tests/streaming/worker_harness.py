"""Run real `distillguard worker` processes against the real broker and server, for tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from kafka import KafkaConsumer, TopicPartition

from bench.deployment import start_role
from storage import ClickHouseServer
from streaming.kafka import ensure_topic, make_producer, produce_lines
from students.traffic import benign_requests
from tests.conftest import (
    CLICKHOUSE_URL,
    KAFKA_BOOTSTRAP,
    drop_database,
    kafka_topic,
    unique_database,
)

ROOT = Path(__file__).resolve().parents[2]


def real_prompt_lines(count: int, accounts: int = 300, seed: int = 5) -> list[bytes]:
    """`count` requests from real ShareGPT prompts (prompt only, so messages stay small)."""
    lines = []
    for request in benign_requests(count, accounts, seed=seed, with_history=False):
        lines.append(orjson.dumps(request))
        if len(lines) == count:
            return lines
    raise AssertionError(f"ShareGPT gave fewer than {count} requests")


@dataclass
class WorkerRun:
    """One isolated deployment: its own topic, DLQ topic, consumer group and database."""

    tmp: Path
    partitions: int = 4
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    extra_env: dict[str, str] = field(default_factory=dict)  # e.g. a faster detector
    processes: list[subprocess.Popen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.topic = kafka_topic("requests")
        self.dlq_topic = f"{self.topic}.dlq"
        self.database = unique_database()
        ensure_topic(KAFKA_BOOTSTRAP, self.topic, self.partitions)
        ensure_topic(KAFKA_BOOTSTRAP, self.dlq_topic, 1)
        self.store = ClickHouseServer(CLICKHOUSE_URL, database=self.database)
        self.store.migrate()

    def env(self, metrics_port: int = 0) -> dict[str, str]:
        return (
            os.environ
            | {
                "DG_STORE": "server",
                "DG_CLICKHOUSE_URL": CLICKHOUSE_URL,
                "DG_DATABASE": self.database,
                "DG_KAFKA_BOOTSTRAP": KAFKA_BOOTSTRAP,
                "DG_TOPIC": self.topic,
                "DG_DLQ_TOPIC": self.dlq_topic,
                "DG_CONSUMER_GROUP": f"group-{self.name}",
                "DG_METRICS_PORT": str(metrics_port),
                "DG_BATCH_SIZE": "1000",
                "DG_EMBEDDING_TIER": "off",  # delivery semantics; MiniLM would only slow it
                "PYTHONUNBUFFERED": "1",
            }
            | self.extra_env
        )

    def start_worker(self, metrics_port: int = 0) -> subprocess.Popen:
        return self.start("worker", metrics_port)

    def start_linker(self, *args: str, metrics_port: int = 0) -> subprocess.Popen:
        """A `distillguard linker` (the campaign view) of this deployment."""
        return self.start("linker", metrics_port, *args)

    def start(self, role: str, metrics_port: int, *args: str) -> subprocess.Popen:
        number = len(self.processes)
        log_path = self.tmp / f"{role}-{number}.log"
        process = start_role(role, f"{role[0]}{number}", args, self.env(metrics_port), log_path)
        process.log_path = str(log_path)  # type: ignore[attr-defined]
        self.processes.append(process)
        return process

    def produce(self, lines: list[bytes], rate: float | None = None) -> None:
        """Publish `lines` (at most `rate` per second when given: a live stream)."""
        producer = make_producer(KAFKA_BOOTSTRAP)
        produce_lines(producer, self.topic, lines, rate=rate)
        producer.close()

    def count(self, table: str) -> int:
        return self.store.count(table)

    def wait_for(self, condition: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if condition():
                return
            for process in self.processes:
                if process.poll() not in (None, 0, -9, -15):
                    raise AssertionError(f"worker died: {self.logs()[-5000:]}")
            time.sleep(0.5)
        raise AssertionError(f"timed out waiting for {what}; logs:\n{self.logs()[-5000:]}")

    def logs(self) -> str:
        return "\n".join(
            Path(p.log_path).read_text(errors="replace")  # type: ignore[attr-defined]
            for p in self.processes
        )

    def stop_all(self, sig: int = signal.SIGTERM, timeout_s: float = 60) -> list[int]:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(sig)
        return [p.wait(timeout=timeout_s) for p in self.processes]

    def committed_equals_end(self) -> bool:
        """Every partition's committed offset is at its end: nothing left to redo."""
        consumer = KafkaConsumer(
            bootstrap_servers=KAFKA_BOOTSTRAP,
            group_id=f"group-{self.name}",
            enable_auto_commit=False,
        )
        try:
            partitions = [TopicPartition(self.topic, p) for p in range(self.partitions)]
            ends = consumer.end_offsets(partitions)
            return all((consumer.committed(tp) or 0) == ends[tp] for tp in partitions)
        finally:
            consumer.close()

    def dlq_messages(self, expected: int, timeout_s: float = 60) -> list:
        consumer = KafkaConsumer(
            self.dlq_topic,
            bootstrap_servers=KAFKA_BOOTSTRAP,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            consumer_timeout_ms=5000,
        )
        messages = []
        deadline = time.monotonic() + timeout_s
        try:
            while len({m.key for m in messages}) < expected and time.monotonic() < deadline:
                polled = consumer.poll(timeout_ms=1000)
                for batch in polled.values():
                    messages.extend(batch)
        finally:
            consumer.close()
        return messages

    def close(self) -> None:
        self.stop_all(signal.SIGKILL)
        drop_database(self.store)
