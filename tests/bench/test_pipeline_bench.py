"""The pure parts of `bench.pipeline` and `bench.deployment`: how latency quantiles come out of
the workers' histograms, when the linker has settled, and how the campaign cell reads."""

from __future__ import annotations

import math
import os
import socket
import time
from datetime import datetime

import pytest

from bench.deployment import consumed, cpu_seconds, linker_settled_at, listening_pid
from bench.pipeline import histogram_quantile, largest_flagged, merge_buckets, stored_all
from storage import Store
from storage.rows import event_row
from tests.storage.test_store_evidence import event

INF = float("inf")


def test_quantile_interpolates_inside_its_bucket() -> None:
    buckets = {0.5: 0.0, 1.0: 50.0, 2.0: 100.0, INF: 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(1.0)
    assert histogram_quantile(0.25, buckets) == pytest.approx(0.75)
    assert histogram_quantile(0.99, buckets) == pytest.approx(1.98)


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert histogram_quantile(0.99, {1.0: 10.0, 300.0: 10.0, INF: 20.0}) == 300.0


def test_quantile_without_observations_is_nan() -> None:
    assert math.isnan(histogram_quantile(0.5, {1.0: 0.0, INF: 0.0}))
    assert math.isnan(histogram_quantile(0.5, {}))


def test_buckets_of_several_workers_add_up() -> None:
    merged = merge_buckets([{1.0: 2.0, INF: 3.0}, {1.0: 1.0, INF: 1.0}])
    assert merged == {1.0: 3.0, INF: 4.0}


def test_linker_settled_is_its_last_caught_up_line() -> None:
    log = (
        "2026-12-03 05:46:13,549 distillguard.linker active: this linker has the partition\n"
        "2026-12-03 05:47:00,000 distillguard.linker caught up: 1 clusters\n"
        "2026-12-03 05:47:20,644 distillguard.linker caught up: 2 clusters\n"
    )
    expected = datetime(2026, 12, 3, 5, 47, 20, 644000).timestamp()
    assert linker_settled_at(log) == pytest.approx(expected)
    assert linker_settled_at(log.splitlines()[0]) is None


def test_largest_flagged_cluster_counts_campaign_members() -> None:
    campaign = {"c1", "c2", "c3"}
    rows = [
        {"members": ["c1", "c2", "u1"], "label": "extraction"},
        {"members": ["c1", "c2", "c3"], "label": "benign"},
    ]
    assert largest_flagged(rows, campaign) == "2/3 extraction"
    assert largest_flagged(rows[1:], campaign) == "0/3 (largest: 3, benign)"


def test_consumed_reads_the_workers_last_line() -> None:
    assert consumed("... worker stopped: batches=12, consumed=2865, dead_letters=0") == 2865
    assert consumed("killed before its last line") == 0


def test_cpu_seconds_of_a_process_is_what_it_used() -> None:
    """/proc's count for this process agrees with its own `os.times()` (to a clock tick or
    two) and grows while it works."""
    before = cpu_seconds(os.getpid())
    times = os.times()
    assert before == pytest.approx(times.user + times.system, abs=0.05)
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    assert cpu_seconds(os.getpid()) - before == pytest.approx(0.3, abs=0.1)


def test_listening_pid_finds_the_process_behind_a_loopback_port() -> None:
    """What the bench counts the broker's and the server's CPU by: the listener's process, by
    "host:port" or by URL; a port nobody listens on has none."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        port = server.getsockname()[1]
        assert listening_pid(f"127.0.0.1:{port}") is None
        server.listen()
        assert listening_pid(f"127.0.0.1:{port}") == os.getpid()
        assert listening_pid(f"clickhouse://127.0.0.1:{port}/db") == os.getpid()


def test_stored_all_counts_distinct_events(embedded: Store) -> None:
    """A row written twice (a redelivery) is one event: the plain count alone would say all
    three are stored."""
    embedded.insert("events", [event_row(event("r1")), event_row(event("r2"))])
    assert stored_all(embedded, 2) and not stored_all(embedded, 3)
    embedded.insert("events", [event_row(event("r1"), ingested_ms=5)])
    assert embedded.count("events", final=False) == 3
    assert not stored_all(embedded, 3)
