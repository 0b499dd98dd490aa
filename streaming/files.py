"""JSONL file source: the request log as a file, read in batches with a progress bar."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from pathlib import Path

from rich.progress import BarColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from core.batch import Batch
from core.events import Event
from core.formats import LogFormat
from core.progress import progress_bar
from core.records import REPLAY_PER_ACCOUNT, ReplayCuts, SourceRecord
from streaming.loop import Totals, run
from streaming.pipeline import Pipeline
from streaming.sources import Revoked

NATIVE_FORMAT = LogFormat()


def _account_of(unit: bytes, log_format: LogFormat) -> str | None:
    event = log_format.parse(unit, "replay")
    return event.account_id if isinstance(event, Event) else None


def file_batches(
    path: Path,
    batch_size: int,
    log_format: LogFormat = NATIVE_FORMAT,
    per_account: int = REPLAY_PER_ACCOUNT,
) -> Generator[tuple[list[SourceRecord], int], None, None]:
    """Batches of records (stream `file:NAME`, offset = message number: the line number, but
    for a format whose lines hold several messages) and the bytes read so far; cut as
    `ReplayCuts` says."""
    stream = f"file:{path.name}"
    cuts = ReplayCuts(batch_size, per_account)
    batch: list[SourceRecord] = []
    with path.open("rb") as handle:
        for number, unit in enumerate(log_format.units(handle)):
            batch.append(SourceRecord(unit, stream, number))
            account = _account_of(unit, log_format) if per_account else None
            if cuts.cut_after(account):
                yield batch, handle.tell()
                batch = []
        if batch:
            yield batch, handle.tell()


class FileSource:
    """A JSONL request log as a `Source`. A file keeps no committed position and is never
    revoked: a rerun reads it again, and the pipeline's per-account offsets skip what its
    checkpoints already counted."""

    def __init__(
        self,
        path: Path,
        batch_size: int = 2000,
        log_format: LogFormat = NATIVE_FORMAT,
        per_account: int = REPLAY_PER_ACCOUNT,
    ) -> None:
        self.path = path
        self.batch_size = batch_size
        self.position = 0  # bytes read so far, for progress bars
        self._batches = file_batches(path, batch_size, log_format, per_account)

    def batches(self) -> Iterator[list[SourceRecord]]:
        for records, position in self._batches:
            self.position = position
            yield records

    def commit(self) -> None:
        """Nothing to remember: the checkpoint is the position."""

    def on_revoked(self, callback: Revoked) -> None:
        """A file is never taken away."""

    def close(self) -> None:
        self._batches.close()


def run_file(
    pipeline: Pipeline,
    path: Path,
    batch_size: int = 2000,
    show_progress: bool = True,
    log_format: LogFormat = NATIVE_FORMAT,
    per_account: int = REPLAY_PER_ACCOUNT,
) -> Totals:
    """Drive the pipeline over a JSONL file of `log_format` (the pipeline parses with it),
    checkpointing after each batch; returns totals."""
    totals = Totals()
    source = FileSource(path, batch_size, log_format, per_account)
    pipeline.parse = log_format.parse
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[events]} events, {task.fields[verdicts]} verdicts"),
        TimeRemainingColumn(),
    )
    with progress_bar(*columns, disable=not show_progress) as progress:
        task = progress.add_task(path.name, total=path.stat().st_size, events=0, verdicts=0)

        def advance(_records: list[SourceRecord], batch: Batch, _seconds: float) -> None:
            totals.add(batch)
            progress.update(
                task, completed=source.position, events=totals.events, verdicts=len(totals.verdicts)
            )

        run(source, pipeline, on_batch=advance)
    return totals
