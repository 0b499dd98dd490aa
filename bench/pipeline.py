"""Pipeline benchmark: the deployed system end to end. Real Kafka → N `distillguard worker`
processes + one `distillguard linker` → ClickHouse server, with the detector calibrated as a
provider calibrates it, on traffic that holds attackers and a multi-account campaign.

    python -m bench.pipeline [--world sdk-developers] [--small] [--workers 1,2,4]
                             [--latency-rate 200] [--profile-size 5000] [--profile-linker]
                             [--linger-ms 250]

Needs the broker and server from `scripts/` (`make bench` starts them; `DG_KAFKA_BOOTSTRAP`,
`DG_CLICKHOUSE_URL`).

What runs. One world of `bench.worlds` (default `sdk-developers`: its 40-account campaign is the
one the tiered detector links and flags on its own calibration). The detector
(`build_detector(Settings())`: the default settings the workers run, on a CPU the static table
on every prompt) is fitted on the world's separate benign calibration history
(`bench.detection.calibration_for("own", ...)`; with MiniLM, vectors from the detection
benchmark's cache, the model's own) and saved with `save_calibration` into a data folder under
`.distillguard/bench/`; every worker and the linker load it via `DG_DATA_DIR` and embed with
the embedder itself. For each N of `--workers`, two runs, each on a fresh topic (4
partitions), consumer group and database: N workers and one linker are started and the bench
waits until the worker group is stable (every partition assigned) and the linker is active;
then the whole world's log (time-ordered) is produced, either

- `backlog`: as fast as the producer goes (far faster than the workers), so the run drains a
  backlog: events/s is the throughput, latency is mostly queueing; or
- `at R/s`: at `--latency-rate` events/s, below what the workers sustain, so latency is the
  pipeline's own. The world's weeks are compressed into count/R seconds of wall time.

What is measured (wall clock of this machine; all processes share it).

- events, seconds, events/s: every event of the log; seconds from the producer's first send to
  the first poll (every 0.25 s, `count()` of `events`, then of `events FINAL`) that sees every
  event stored. So they time the whole path to durable storage; in a fixed-rate run events/s
  can be no more than the rate (it shows whether the rate was sustained).
- p50/p99 latency: from each worker's Prometheus histogram
  `distillguard_event_to_verdict_seconds` (the message's Kafka CreateTime, set by the producer at
  send, to its batch's verdicts and rows being durable in ClickHouse), scraped from every worker
  when the run ends, buckets summed over workers, quantiles interpolated linearly inside the
  bucket as Prometheus' `histogram_quantile` does. The buckets are 0.05, 0.1, 0.25, 0.5, 1, 2,
  5, 10, 30, 60, 300 s: a quantile is exact only to its bucket. Campaign member verdicts come
  from the linker and are not in this figure; the campaign columns time them.
- campaign: the bench polls the `clusters` table (clusters with a campaign account) every
  0.5 s. `first cluster s` is the time from the campaign's first request being produced to
  the first poll that sees a cluster holding a campaign account; `flagged s` to the first that
  sees such a cluster `suspicious` or `extraction`. The produce time is the producer's start
  plus the request's position in the log over the rate (the producer's own schedule); in a
  backlog run it is the producer's start (the whole log is produced within a second or two).
  `in one flagged cluster` is how many campaign accounts the flagged cluster holding most of
  them holds once the linker has settled (its `caught up` line after the last event was
  produced: every partition read, no update for `--idle-s`), which ends the run.
- CPU s: the user plus system CPU seconds the worker processes (summed) and the linker used
  from the producer's start to the end of the run (`/proc/PID/stat`). Wall-clock events/s on two
  shared cores varies by a fifth between identical runs; these vary by a few percent, and
  divided by the events they are the per-event costs the README's capacity model uses. The
  ClickHouse server's and the broker's over the same span (each found by its listening port;
  "—" when it is not on this machine), and the producer's (the load generator), complete the
  account: together they are what the machine's cores spent, so their sum over the cores bounds
  the events/s any run can reach here.

`--profile-size` profiles one in-process worker (`distillguard.wiring.build_worker`, the same
object `distillguard worker` runs) with pyinstrument over the first events of the world's log.
`--linger-ms` sets the workers' `poll_linger_ms` (default: the deployed default, 250 ms).
`--profile-linker` runs the first run's `distillguard linker` process under pyinstrument (its
whole life, start-up included) and prints where its time went.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import shutil
import time
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import orjson
import typer
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

from bench.deployment import (
    Deployment,
    consumed,
    cpu_seconds,
    linker_settled_at,
    listening_pid,
)
from bench.readme import result_path
from core.settings import Settings
from storage import ClickHouseServer, Store, queries
from streaming.kafka import make_producer, produce_lines
from students.measured import measured_by, write_table
from students.scenario import CACHE

if TYPE_CHECKING:  # bench.scenario and bench.worlds import CACHE from here: import them late
    from bench.scenario import Scenario

console = Console(width=150)
CLICKHOUSE_URL = os.environ.get("DG_CLICKHOUSE_URL", "clickhouse://127.0.0.1:19000")
KAFKA = os.environ.get("DG_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
SERVICES = {"clickhouse": CLICKHOUSE_URL, "kafka": KAFKA.split(",")[0]}  # whose CPU is counted
LATENCY_METRIC = "distillguard_event_to_verdict_seconds"
FLAGGED = ("suspicious", "extraction")
STORED_POLL_S, CLUSTER_POLL_S = 0.25, 0.5


# --- the deployment's data folder -------------------------------------------------------------
def calibrated_data_dir(scenario: Scenario, world: str, rebuild: bool) -> Path:
    """A data folder holding the default detector's calibration (as the workers will run it:
    default settings) on the world's benign history, saved as `distillguard calibrate` saves
    it; cached per world build, detector version and embedder."""
    from bench.detection import cached_embedder, calibration_for
    from detectors.fusion import ExtractionDetector
    from detectors.registry import (
        CALIBRATION_FILE,
        build_detector,
        calibration_dir,
        embedding_model,
        save_calibration,
    )
    from students.embeddings import with_cached_vectors

    defaults = Settings()
    model = embedding_model(defaults)
    # Keyed by the world's build (its file name holds its config key), detector and embedder.
    stem = f"pipeline-{scenario.events_path.stem}-{ExtractionDetector.version}-{model}"
    folder = CACHE / stem
    settings = Settings(data_dir=folder)
    if (calibration_dir(settings) / CALIBRATION_FILE).exists() and not rebuild:
        return folder
    models = defaults.data_dir / "models"  # the reasoning classifier: trained once, reused
    if models.exists():
        shutil.copytree(models, folder / "models", dirs_exist_ok=True)
    # With MiniLM, its cached vectors (the model's own; `bench.detection.CachedEmbedder`):
    # calibrating decides exactly as with the model, minutes sooner. The workers embed with
    # their embedder itself.
    embedder = cached_embedder(CACHE)
    detector = with_cached_vectors(build_detector(settings), embedder)
    calibration = calibration_for("own", world, {world: scenario})
    assert calibration is not None
    started = time.perf_counter()
    detector.fit(calibration.events)
    embedder.save()
    save_calibration(detector, calibration_dir(settings))
    console.print(
        f"calibrated on {len(calibration.events):,} benign events in "
        f"{time.perf_counter() - started:.0f} s → {folder}"
    )
    return folder


def embedding_description(settings: Settings | None = None) -> str:
    """How the workers embed prompts, for the table's header."""
    from detectors.registry import embedding_model

    settings = settings or Settings()
    model = {"static": "MiniLM's static table", "minilm": "MiniLM"}.get(
        embedding_model(settings), "no embedder"
    )
    return f"{settings.embedding_tier} embedding ({model})"


# --- latency from the workers' metrics --------------------------------------------------------
def scrape_buckets(port: int, metric: str = LATENCY_METRIC) -> dict[float, float]:
    """A worker's cumulative histogram buckets (upper bound → count) from its /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == f"{metric}_bucket":
                buckets[float(sample.labels["le"])] = sample.value
    return buckets


def merge_buckets(histograms: Iterable[dict[float, float]]) -> dict[float, float]:
    merged: dict[float, float] = {}
    for histogram in histograms:
        for bound, count in histogram.items():
            merged[bound] = merged.get(bound, 0.0) + count
    return merged


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """Prometheus' `histogram_quantile`: linear inside the bucket holding the q-th observation;
    the highest finite bound when it falls in the +Inf bucket; NaN without observations."""
    bounds = sorted(buckets)
    total = buckets[bounds[-1]] if bounds else 0.0
    if not total:
        return float("nan")
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if bound == float("inf"):
                return lower
            inside = count - below
            return lower + (bound - lower) * ((rank - below) / inside if inside else 1.0)
        lower, below = bound, count
    return lower


# --- one run ----------------------------------------------------------------------------------
@dataclass
class Run:
    """One deployment of `workers` workers over the whole log, produced at `rate` (None: as
    fast as the producer goes)."""

    workers: int
    rate: float | None
    events: int = 0
    seconds: float = 0.0
    p50: float = float("nan")
    p99: float = float("nan")
    first_cluster_s: float | None = None
    flagged_s: float | None = None
    in_cluster: str = "—"
    events_per_worker: list[int] = field(default_factory=list)
    worker_cpu_s: float = 0.0  # the workers' CPU seconds from the first event produced to the end
    linker_cpu_s: float = 0.0  # the linker's, over the same span
    # The ClickHouse server's and the broker's over the same span (None: not on this machine),
    # and the load generator's (the producer process): they share the machine's cores.
    clickhouse_cpu_s: float | None = None
    kafka_cpu_s: float | None = None
    producer_cpu_s: float = 0.0

    @property
    def traffic(self) -> str:
        return "backlog" if self.rate is None else f"at {self.rate:,.0f}/s"

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def _produce(path: str, topic: str, rate: float | None, started, cpu) -> None:
    """The producer process: the log's lines in order, keyed by account; `cpu` gets the CPU
    seconds producing took."""
    producer = make_producer(KAFKA)
    started.value = time.time()
    before = time.process_time()
    with open(path, "rb") as handle:
        produce_lines(producer, topic, (line.rstrip(b"\n") for line in handle), rate=rate)
    producer.close()
    cpu.value = time.process_time() - before


def stored_all(store: Store, expected: int) -> bool:
    """Whether `expected` distinct events are stored. The plain count first (cheap: no versions
    to merge), `FINAL` (which merges the versions of every row at read time) only once that one
    is reached: the bench polls every quarter second, and its own load should weigh as little
    as it can on the server whose CPU it measures."""
    return store.count("events", final=False) >= expected and store.count("events") >= expected


def first_index(path: Path, accounts: set[str]) -> int | None:
    """Line number of the first request of any of `accounts` in the log."""
    with path.open("rb") as handle:
        for number, line in enumerate(handle):
            if orjson.loads(line)["account_id"] in accounts:
                return number
    return None


def largest_flagged(rows: Sequence[dict], campaign: set[str]) -> str:
    """'held/total label' for the flagged cluster holding most campaign accounts."""
    held = [(len(campaign.intersection(r["members"])), r["label"]) for r in rows]
    flagged = [(n, label) for n, label in held if label in FLAGGED]
    if not flagged:
        best = max(held, default=(0, "none"))
        return f"0/{len(campaign)} (largest: {best[0]}, {best[1]})"
    count, label = max(flagged)
    return f"{count}/{len(campaign)} {label}"


def run_deployment(
    scenario: Scenario,
    data_dir: Path,
    workers: int,
    rate: float | None,
    idle_s: float,
    timeout_s: float,
    linker_profile: Path | None = None,
    linger_ms: int | None = None,
) -> Run:
    """Start the roles, produce the log once the group is stable, poll the store until every
    event is stored and the linker has settled, then read the workers' metrics. `linker_profile`:
    run the linker under pyinstrument, its report written there."""
    from storage.queries.clusters import clusters_touching

    campaign = {a for members in scenario.campaigns.values() for a in members}
    expected = sum(1 for _ in scenario.events_path.open("rb"))
    first_campaign = first_index(scenario.events_path, campaign)
    deployment = Deployment(
        KAFKA, CLICKHOUSE_URL, data_dir, CACHE / "pipeline-logs", linger_ms=linger_ms
    )
    run = Run(workers, rate)
    try:
        linker = deployment.start("linker", "--idle-s", str(idle_s), profile_to=linker_profile)
        started = [deployment.start("worker") for _ in range(workers)]
        deployment.wait_until(lambda: deployment.group_members() == workers, 300, "the group")
        deployment.wait_until(
            lambda: "active: " in deployment.log_text(linker), 120, "an active linker"
        )
        roles_cpu = [cpu_seconds(p.pid) for p in (linker, *started)]
        services = {name: listening_pid(address) for name, address in SERVICES.items()}
        services_cpu = {n: cpu_seconds(pid) for n, pid in services.items() if pid is not None}
        context = multiprocessing.get_context("spawn")
        produce_start, producer_cpu = context.Value("d", 0.0), context.Value("d", 0.0)
        producer = context.Process(
            target=_produce,
            args=(str(scenario.events_path), deployment.topic, rate, produce_start, producer_cpu),
        )
        producer.start()
        store = ClickHouseServer(CLICKHOUSE_URL, database=deployment.database)
        all_stored: float | None = None
        produced_at: float | None = None
        clusters: list[dict] = []
        next_cluster_poll = 0.0
        deadline = time.monotonic() + timeout_s
        while True:
            deployment.check_alive()
            now = time.time()
            if produced_at is None and not producer.is_alive():
                produced_at = now
            if all_stored is None and stored_all(store, expected):
                all_stored = now
            if time.monotonic() >= next_cluster_poll and produce_start.value:
                next_cluster_poll = time.monotonic() + CLUSTER_POLL_S
                clusters = clusters_touching(store, sorted(campaign), "") if campaign else []
                entered = produce_start.value + (first_campaign or 0) / (rate or float("inf"))
                if clusters and run.first_cluster_s is None:
                    run.first_cluster_s = now - entered
                if run.flagged_s is None and any(r["label"] in FLAGGED for r in clusters):
                    run.flagged_s = now - entered
            settled = linker_settled_at(deployment.log_text(linker))
            if all_stored and produced_at and settled and settled >= produced_at:
                break
            if time.monotonic() > deadline:
                console.print(f"[red]timed out after {timeout_s:.0f} s[/red]")
                break
            time.sleep(STORED_POLL_S)
        producer.join()
        linker_cpu, *workers_cpu = [
            cpu_seconds(p.pid) - before
            for p, before in zip((linker, *started), roles_cpu, strict=True)
        ]
        run.linker_cpu_s, run.worker_cpu_s = linker_cpu, sum(workers_cpu)
        spent = {n: cpu_seconds(services[n]) - before for n, before in services_cpu.items()}
        run.clickhouse_cpu_s, run.kafka_cpu_s = spent.get("clickhouse"), spent.get("kafka")
        run.producer_cpu_s = producer_cpu.value
        if all_stored is not None:
            run.seconds, run.events = all_stored - produce_start.value, expected
        buckets = merge_buckets(scrape_buckets(deployment.metrics_ports[p.pid]) for p in started)
        run.p50, run.p99 = histogram_quantile(0.5, buckets), histogram_quantile(0.99, buckets)
        if campaign:
            run.in_cluster = largest_flagged(
                clusters_touching(store, sorted(campaign), ""), campaign
            )
        store.close()
        deployment.stop_all()
        run.events_per_worker = [consumed(deployment.log_text(p)) for p in started]
    finally:
        deployment.close()
    return run


# --- profile ----------------------------------------------------------------------------------
def profile(scenario: Scenario, data_dir: Path, size: int) -> tuple[float, str]:
    """pyinstrument over one in-process worker (the object `distillguard worker` runs) reading
    the first `size` events of the log; returns (events/s under the profiler, report)."""
    from itertools import islice

    from pyinstrument import Profiler

    from distillguard.wiring import build_worker

    deployment = Deployment(KAFKA, CLICKHOUSE_URL, data_dir, CACHE / "pipeline-logs")
    producer = make_producer(KAFKA)
    try:
        with scenario.events_path.open("rb") as handle:
            lines = [line.rstrip(b"\n") for line in islice(handle, size)]
        produce_lines(producer, deployment.topic, lines)
        worker = build_worker(deployment.settings(), deployment.store, producer, "profiled")

        def on_batch(_records, _batch, _durable_ms: int) -> None:
            if worker.stats.consumed + len(_records) >= len(lines):
                worker.stop.set()

        worker.on_batch = on_batch
        profiler = Profiler()
        profiler.start()
        started = time.perf_counter()
        worker.run()
        seconds = time.perf_counter() - started
        profiler.stop()
        worker.source.close()
        report = profiler.output_text(unicode=False, color=False, show_all=False)
        return len(lines) / seconds, report
    finally:
        producer.close()
        deployment.close()


# --- output -----------------------------------------------------------------------------------
COLUMNS = (
    "workers",
    "traffic",
    "events",
    "seconds",
    "events/s",
    "p50 latency s",
    "p99 latency s",
    "campaign: first cluster s",
    "campaign: flagged s",
    "campaign in one flagged cluster",
    "workers' CPU s",
    "linker CPU s",
    "ClickHouse CPU s",
    "Kafka CPU s",
    "producer CPU s",
)


def _seconds(value: float | None, missing: str = "never") -> str:
    return missing if value is None else f"{value:.1f}"


def cells(run: Run) -> tuple[str, ...]:
    return (
        str(run.workers),
        run.traffic,
        f"{run.events:,}",
        f"{run.seconds:.1f}",
        f"{run.events_per_s:,.0f}",
        f"{run.p50:.2f}",
        f"{run.p99:.2f}",
        _seconds(run.first_cluster_s),
        _seconds(run.flagged_s),
        run.in_cluster,
        f"{run.worker_cpu_s:.1f}",
        f"{run.linker_cpu_s:.1f}",
        _seconds(run.clickhouse_cpu_s, "—"),
        _seconds(run.kafka_cpu_s, "—"),
        f"{run.producer_cpu_s:.1f}",
    )


def versions() -> str:
    import kafka

    server = ClickHouseServer(CLICKHOUSE_URL, database="default")
    clickhouse = queries.server_version(server)
    server.close()
    return (
        f"{platform.node()}: {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"Kafka 4.4.0 (KRaft, 1 broker), ClickHouse server {clickhouse}, "
        f"kafka-python {kafka.__version__}"
    )


def main(
    world: Annotated[str, typer.Option(help="The traffic world (bench.worlds).")] = (
        "sdk-developers"
    ),
    small: Annotated[bool, typer.Option(help="The world's small build.")] = False,
    rebuild: Annotated[bool, typer.Option(help="Rebuild the world and calibration.")] = False,
    workers: Annotated[str, typer.Option(help="Comma-separated worker counts.")] = "1,2,4",
    latency_rate: Annotated[
        float, typer.Option(help="Events/s of the fixed-rate runs (0 skips them).")
    ] = 200,
    backlog: Annotated[bool, typer.Option(help="Also drain the log as a backlog.")] = True,
    idle_s: Annotated[float, typer.Option(help="The linker's --idle-s.")] = 5.0,
    timeout_s: Annotated[float, typer.Option(help="Give up on a run after this long.")] = 1200,
    profile_size: Annotated[
        int, typer.Option(help="Events for a pyinstrument-profiled in-process worker (0 skips).")
    ] = 5000,
    linger_ms: Annotated[
        int | None,
        typer.Option(help="The workers' poll linger in ms (default: the deployed default)."),
    ] = None,
    profile_linker: Annotated[
        bool,
        typer.Option(
            help="Run the first run's linker under pyinstrument; print where its time goes."
        ),
    ] = False,
) -> None:
    from bench.worlds import WORLDS

    started = time.perf_counter()
    console.print(versions())
    scenario = WORLDS[world].build(small, rebuild, console.print)
    data_dir = calibrated_data_dir(scenario, world, rebuild)
    counts = [int(n) for n in workers.split(",") if n]
    rates = ([None] if backlog else []) + ([latency_rate] if latency_rate else [])
    runs: list[Run] = []
    linker_profile = CACHE / "pipeline-logs" / "linker-profile.txt" if profile_linker else None
    for count in counts:
        for rate in rates:
            profiled = linker_profile if not runs else None
            run = run_deployment(
                scenario, data_dir, count, rate, idle_s, timeout_s, profiled, linger_ms
            )
            runs.append(run)
            console.print(
                f"{count} worker(s), {run.traffic}: {run.events_per_s:,.0f} events/s, "
                f"consumed per worker {run.events_per_worker}"
            )
    events = sum(1 for _ in scenario.events_path.open("rb"))
    title = (
        f"Kafka (4 partitions) → N workers + 1 linker → ClickHouse server, world "
        f"`{world}`{' (small)' if small else ''}: {events:,} events, "
        f"{sum(len(m) for m in scenario.campaigns.values())}-account campaign"
        + (f", workers' polls linger {linger_ms} ms" if linger_ms is not None else "")
    )
    table = Table(title=title)
    for column in COLUMNS:
        table.add_column(column, justify="right")
    markdown = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for run in runs:
        table.add_row(*cells(run))
        markdown.append("| " + " | ".join(cells(run)) + " |")
    console.print(table)
    note = (
        f"{title}; {embedding_description()}; seconds from the first event produced "
        f"to the last stored; latency: Kafka produce time to the batch durable (the workers' "
        f"histogram); campaign delays from its first request produced (bench/pipeline.py "
        f"says how each is measured); {versions()}"
    )
    written = write_table(
        result_path("pipeline"),
        "\n".join(markdown),
        measured_by(seconds=time.perf_counter() - started, note=note),
    )
    console.print(f"table: {written}")
    if linker_profile is not None:
        console.print(f"Profiled linker (the first run, start-up included): {linker_profile}")
        console.print(linker_profile.read_text()[:8000], markup=False, highlight=False)
    if profile_size:
        rate, report = profile(scenario, data_dir, profile_size)
        console.print(f"Profiled worker ({profile_size:,} events, {rate:,.0f} events/s profiled):")
        console.print(report[:8000], markup=False, highlight=False)


if __name__ == "__main__":
    typer.run(main)
