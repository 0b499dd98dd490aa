"""The one place that builds DistillGuard's parts from an explicit `Settings`: detector, sinks,
pipeline, ingestor, worker, webhook dispatcher and API.

Every entry point (the CLI, the demo, the companion's validation) calls these with the settings
it read once; no module below falls back to the process-wide settings, so a test or a second
deployment in one process gets exactly the parts its own settings describe.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import TYPE_CHECKING, Any

from core.embedder import Embedder
from core.settings import Settings
from detectors.base import Detector
from detectors.registry import build_detector, calibrated_detector
from services.ingest import Ingestor, KafkaIngestor, LazyIngestor, PipelineIngestor
from services.webhooks import AlertSink, Dispatcher
from storage import Store
from streaming.pipeline import Pipeline
from streaming.sinks import DeadLetterTopicSink, Sink, StoreSink

if TYPE_CHECKING:
    from fastapi import FastAPI

    from streaming.kafka import KafkaConnection
    from streaming.linker import Linker
    from streaming.profiles import ProfilePublisher
    from streaming.worker import Worker

__all__ = [
    "build_api",
    "build_detector",
    "build_dispatcher",
    "build_ingestor",
    "build_linker",
    "build_pipeline",
    "build_worker",
    "calibrated_detector",
    "heap_built_so_far_frozen",
    "kafka_connection",
    "profiles_topic",
    "store_pipeline",
    "store_sink",
    "store_sinks",
    "uvicorn_options",
]


def store_sink(settings: Settings, store: Store) -> StoreSink:
    """The store sink, redacting prompt and response text as the settings say."""
    return StoreSink(
        store,
        redact_policy=settings.redact_prompts,
        redact_truncate_chars=settings.redact_truncate_chars,
    )


def store_sinks(settings: Settings, store: Store) -> list[Sink]:
    """What every entry point writes to: the store, then the alert outbox (in that order, so an
    alert never precedes the verdict it reports)."""
    return [store_sink(settings, store), AlertSink(store, settings.alert_min_label)]


def build_pipeline(
    settings: Settings,
    sinks: Sequence[Sink],
    store: Store | None = None,
    detector: Detector | None = None,
    embedder: Embedder | None = None,
    publisher: ProfilePublisher | None = None,
) -> Pipeline:
    """The pipeline every entry point runs; the saved calibration's detector unless given one.
    With a `store` it resumes from the checkpoints there; with a `publisher` (a worker) it
    publishes profile updates for the campaign linker instead of linking in process."""
    return Pipeline(
        detector or calibrated_detector(settings),
        sinks,
        store=store,
        embedder=embedder,
        max_event_bytes=settings.max_event_bytes,
        publisher=publisher,
    )


def store_pipeline(
    settings: Settings, store: Store, *extra: Sink, publisher: ProfilePublisher | None = None
) -> Pipeline:
    """The pipeline into the store and the alert outbox (replay, demo, in-process ingest, and
    with the dead-letter topic and the profiles publisher the worker)."""
    return build_pipeline(
        settings, [*store_sinks(settings, store), *extra], store, publisher=publisher
    )


def build_ingestor(settings: Settings, store: Store) -> Ingestor:
    """Kafka when the deployment has a ClickHouse server (production), else the in-process
    pipeline (the embedded demo); `ingest_to` overrides."""
    target = settings.ingest_to or ("kafka" if settings.store == "server" else "pipeline")
    if target == "kafka":
        from streaming.kafka import make_producer

        producer = make_producer(kafka_connection(settings))
        return KafkaIngestor(
            producer,
            settings.topic,
            DeadLetterTopicSink(producer, settings.dlq_topic),
            store_sink(settings, store),
            min(settings.max_event_bytes, settings.kafka_max_message_bytes),
        )
    return PipelineIngestor(store_pipeline(settings, store))


def limit_compute_threads(settings: Settings) -> None:
    """Cap the BLAS and OpenMP thread pools of the libraries loaded so far (threadpoolctl) at
    `compute_threads`, for the calling thread's OpenMP regions and every BLAS call: a long-running
    role calls it once its pipeline is built, from the thread that runs it."""
    if settings.compute_threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=settings.compute_threads)


@contextmanager
def heap_built_so_far_frozen() -> Iterator[None]:
    """Leave what a role built before it runs (calibration, embedding table, models, modules:
    ~180,000 tracked objects in a worker with the static table) out of the garbage collector's
    scans while it runs (`gc.freeze`, after one collection), so that each full collection walks
    only the objects the stream creates, not the whole calibration again. Nothing changes but
    time: frozen objects are still freed when unreferenced, and leaving the block hands them back
    to the collector. Measured (README, detector throughput): a few percent at most in a
    worker-sized process, inside the noise; more where the process holds more (the benchmark)."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def build_worker(settings: Settings, store: Store, producer, client_id: str) -> Worker:
    """The Kafka worker: topic → pipeline → store, alert outbox and dead-letter topic."""
    from streaming.kafka import KafkaSource
    from streaming.profiles import KafkaProfilePublisher, ensure_profiles_topic
    from streaming.worker import Worker

    kafka = kafka_connection(settings)
    topic = profiles_topic(settings)
    ensure_profiles_topic(kafka, topic)
    pipeline = store_pipeline(
        settings,
        store,
        DeadLetterTopicSink(producer, settings.dlq_topic),
        publisher=KafkaProfilePublisher(producer, topic),
    )
    source = KafkaSource(
        kafka,
        settings.topic,
        settings.consumer_group,
        max_records=settings.batch_size,
        client_id=client_id,
        linger_ms=settings.poll_linger_ms,
    )
    return Worker(pipeline, source)


def kafka_connection(settings: Settings) -> KafkaConnection:
    """The brokers and, for a secured cluster, TLS and SASL: what every Kafka client gets."""
    from streaming.kafka import KafkaConnection

    return KafkaConnection.from_settings(settings)


def profiles_topic(settings: Settings) -> str:
    """The compacted topic where workers publish profile updates for the campaign linker."""
    return f"{settings.topic}.profiles"


def build_linker(settings: Settings, store: Store, client_id: str) -> Linker:
    """The campaign linker role: profiles topic → one campaign view → clusters and member
    verdicts in the store (and the alert outbox)."""
    from streaming.linker import Linker
    from streaming.profiles import ensure_profiles_topic

    detector = calibrated_detector(settings)
    from detectors.fusion import ExtractionDetector

    if not isinstance(detector, ExtractionDetector) or detector.linker is None:
        raise ValueError("the campaign linker needs the fused detector (DG_DETECTOR=extraction)")
    kafka = kafka_connection(settings)
    topic = profiles_topic(settings)
    ensure_profiles_topic(kafka, topic)
    return Linker(
        detector,
        store,
        store_sinks(settings, store),
        kafka,
        topic,
        settings.topic,
        f"{settings.consumer_group}.linker",
        client_id=client_id,
    )


def build_dispatcher(settings: Settings, store: Store) -> Dispatcher | None:
    """The webhook dispatcher, or None when no signing secret is set (alerts stay queued)."""
    if settings.webhook_secret is None:
        return None
    secret = settings.webhook_secret.get_secret_value().encode()
    return Dispatcher(
        store,
        secret,
        base_delay_s=settings.webhook_retry_base_s,
        allow_networks=settings.webhook_allow_networks,
        lease_s=settings.alert_lease_s,
        settle_s=settings.alert_settle_s,
        dashboard_url=settings.dashboard_url,
    )


def build_api(settings: Settings, store: Store) -> FastAPI:
    """The analysts' API over `store`; `POST /v1/events` gets the settings' ingestor, built on
    the first batch (serving loads no detector and opens no producer until then)."""
    from services.api import create_app

    return create_app(settings, store, LazyIngestor(partial(build_ingestor, settings, store)))


def uvicorn_options() -> dict[str, Any]:
    """How uvicorn serves the API. It never rewrites the client address from
    `X-Forwarded-For` (its default believes loopback, so anything on the host could claim any
    address in the audit log and dodge the failed-token limit): the app alone decides, from
    `settings.trusted_proxies` (`services.api.edge.client_address`), so one rule serves audit
    and limit alike. Connections close with a lingering close (`services.api.linger`): a refused
    body's sender reads the answer. Imported here, like `build_api`'s app, so that the other
    roles do not load the API package (~1 s) at start."""
    from services.api.linger import LingeringH11Protocol

    return {"proxy_headers": False, "http": LingeringH11Protocol}
