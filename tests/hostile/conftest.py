"""A real worker deployment for the hostile tests: its own topic (2 partitions), DLQ topic,
consumer group and ClickHouse server database, and one `distillguard worker` consuming it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.streaming.worker_harness import WorkerRun


@pytest.fixture
def worker_run(tmp_path: Path) -> Iterator[WorkerRun]:
    run = WorkerRun(tmp_path, partitions=2)
    run.start_worker()
    yield run
    run.close()
