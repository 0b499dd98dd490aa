"""Pipeline benchmark: real Kafka → worker → ClickHouse server, sustained events/s and
event-to-verdict latency, with and without neural embedding.

    python -m bench.pipeline --sizes 10000,100000,1000000 --embedding-size 10000

Needs the broker and server from `scripts/` (`make bench` starts them). The worker runs in this
process with the same `Worker`/`Pipeline` code as `distillguard worker`; producers run in a
separate process so they do not share the worker's interpreter.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import orjson
import typer
from rich.console import Console
from rich.table import Table

from bench.readme import result_path
from core.embedder import Embedder
from core.settings import Settings
from distillguard.wiring import build_pipeline, store_sink
from storage import ClickHouseServer, queries
from streaming.kafka import KafkaSource, ensure_topic, make_producer, produce_lines
from streaming.worker import Worker
from students.measured import measured_by, write_table
from students.traffic import benign_requests

console = Console(width=130)
CLICKHOUSE_URL = os.environ.get("DG_CLICKHOUSE_URL", "clickhouse://127.0.0.1:19000")
KAFKA = os.environ.get("DG_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
CACHE = Path(os.environ.get("DG_BENCH_CACHE", ".distillguard/bench"))


def real_prompt_log(count: int) -> Path:
    """`count` requests from real ShareGPT prompts, cached as JSONL. ShareGPT has ~61k user
    prompts, so large sizes replay them under new seeds (new accounts, times, request ids)."""
    path = CACHE / f"requests-1day-{count}.jsonl"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    with path.open("wb") as handle:
        for cycle in range(1000):
            for request in benign_requests(
                20_000, 2_000, seed=cycle, with_history=False, id_prefix=f"bench{cycle}"
            ):
                handle.write(orjson.dumps(request) + b"\n")
                written += 1
                if written == count:
                    return path
    raise RuntimeError("could not generate enough requests")


def _produce_file(path: str, topic: str, rate: float | None) -> None:
    producer = make_producer(KAFKA)
    with open(path, "rb") as handle:
        produce_lines(producer, topic, (line.rstrip(b"\n") for line in handle), rate=rate)
    producer.close()


@dataclass
class Run:
    label: str
    events: int
    seconds: float = 0.0
    latencies_ms: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000


def run_worker(
    topic: str, expected: int, embedder: Embedder | None, run: Run, profile: bool = False
) -> str:
    """Consume `expected` messages with a fresh database; fills `run`; returns a profile."""
    store = ClickHouseServer(CLICKHOUSE_URL, database=f"bench_{uuid.uuid4().hex[:8]}")
    store.migrate()
    settings = Settings(store="server", clickhouse_url=CLICKHOUSE_URL, kafka_bootstrap=KAFKA)
    # The worker's pipeline, wired as in production, with the store as its only sink.
    pipeline = build_pipeline(settings, [store_sink(settings, store)], store, embedder=embedder)
    source = KafkaSource(
        KAFKA, topic, f"bench-{uuid.uuid4().hex[:8]}", max_records=settings.batch_size
    )
    worker = Worker(pipeline, source)
    started: list[float] = []

    def on_batch(records, _result, durable_ms: int) -> None:
        if not started:
            started.append(time.perf_counter())
            run.events = 0
        run.events += len(records)
        run.latencies_ms.extend(durable_ms - r.timestamp_ms for r in records if r.timestamp_ms)
        if worker.stats.consumed + len(records) >= expected:
            worker.stop.set()

    worker.on_batch = on_batch
    profiler = None
    if profile:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
    first_poll = time.perf_counter()
    worker.run()
    run.seconds = time.perf_counter() - first_poll
    report = ""
    if profiler is not None:
        profiler.stop()
        report = profiler.output_text(unicode=False, color=False, show_all=False)
    queries.drop_database(store)
    store.close()
    return report


def throughput(size: int, embedder: Embedder | None, label: str, profile: bool) -> tuple[Run, str]:
    """Pre-load `size` events, then time the worker draining them end to end."""
    path = real_prompt_log(size)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    ensure_topic(KAFKA, topic, 4)
    producer = multiprocessing.Process(target=_produce_file, args=(str(path), topic, None))
    producer.start()
    producer.join()
    run = Run(label, size)
    report = run_worker(topic, size, embedder, run, profile)
    run.events = size
    return run, report


def latency(rate: float, seconds: int, embedder: Embedder | None, label: str) -> Run:
    """Produce at a fixed rate while the worker consumes; per-event produce→durable latency."""
    count = int(rate * seconds)
    path = real_prompt_log(count)
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    ensure_topic(KAFKA, topic, 4)
    producer = multiprocessing.Process(target=_produce_file, args=(str(path), topic, rate))
    run = Run(label, count)
    producer.start()
    run_worker(topic, count, embedder, run)
    producer.join()
    return run


def versions() -> str:
    import chdb
    import kafka

    server = ClickHouseServer(CLICKHOUSE_URL, database="default")
    clickhouse = queries.server_version(server)
    server.close()
    cpu = "unknown"
    if Path("/proc/cpuinfo").exists():
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return (
        f"{platform.node()}: {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"
        f", Kafka 4.4.0 (KRaft, 1 broker), ClickHouse server {clickhouse}, "
        f"kafka-python {kafka.__version__}, chdb {chdb.__version__}"
    )


def main(
    sizes: Annotated[
        str, typer.Option(help="Comma-separated event counts.")
    ] = "10000,100000,1000000",
    embedding_size: Annotated[
        int, typer.Option(help="Events for the embedding-on run (0 skips).")
    ] = 10000,
    latency_rate: Annotated[float, typer.Option(help="Events/s for the latency run.")] = 1000,
    latency_seconds: Annotated[int, typer.Option(help="Length of the latency run.")] = 30,
    profile_size: Annotated[
        int, typer.Option(help="Events for an extra pyinstrument-profiled run (0 skips).")
    ] = 100_000,
) -> None:
    counts = [int(s) for s in sizes.split(",") if s]
    console.print(versions())
    runs: list[Run] = []
    for size in counts:
        run, _ = throughput(size, None, "embedding off", profile=False)
        runs.append(run)
        console.print(f"{size} events: {run.rate:,.0f} events/s")
    embedder = None
    if embedding_size:
        from detectors.embedding import PromptEmbedder

        embedder = PromptEmbedder()
        run, _ = throughput(embedding_size, embedder, "MiniLM embedding (CPU)", False)
        runs.append(run)
    runs.append(
        latency(
            latency_rate, latency_seconds, None, f"embedding off, produced at {latency_rate:.0f}/s"
        )
    )

    title = "Kafka → worker → ClickHouse server (one worker, 4 partitions)"
    columns = ("run", "events", "seconds", "events/s", "p50 latency s", "p99 latency s")
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="right")
    markdown = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for run in runs:
        cells = (
            run.label,
            f"{run.events:,}",
            f"{run.seconds:.1f}",
            f"{run.rate:,.0f}",
            f"{run.percentile(0.5):.2f}",
            f"{run.percentile(0.99):.2f}",
        )
        table.add_row(*cells)
        markdown.append("| " + " | ".join(cells) + " |")
    console.print(table)
    written = write_table(
        result_path("pipeline"), "\n".join(markdown), measured_by(note=f"{title}; {versions()}")
    )
    console.print(f"table: {written}")
    console.print(
        "Throughput runs drain a pre-loaded topic, so their latency is queueing time; "
        "the fixed-rate run measures event-to-verdict latency."
    )
    if profile_size:
        run, report = throughput(profile_size, None, "profiled", profile=True)
        console.print(
            f"Profiled run ({profile_size:,} events, {run.rate:,.0f} events/s under the profiler):"
        )
        console.print(report[:8000])


if __name__ == "__main__":
    typer.run(main)
