"""JSONL file source: the request log as a file, read in batches with a progress bar."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from core.records import SourceRecord
from streaming.pipeline import BatchResult, Pipeline


def file_batches(path: Path, batch_size: int) -> Iterator[tuple[list[SourceRecord], int]]:
    """Batches of records (stream `file:NAME`, offset = line number) and the bytes read so far."""
    stream = f"file:{path.name}"
    batch: list[SourceRecord] = []
    with path.open("rb") as handle:
        for number, line in enumerate(handle):
            batch.append(SourceRecord(line.rstrip(b"\r\n"), stream, number))
            if len(batch) >= batch_size:
                yield batch, handle.tell()
                batch = []
        if batch:
            yield batch, handle.tell()


def run_file(
    pipeline: Pipeline, path: Path, batch_size: int = 2000, show_progress: bool = True
) -> BatchResult:
    """Drive the pipeline over a JSONL file, checkpointing after each batch; returns totals."""
    totals = BatchResult()
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TransferSpeedColumn(),
        TextColumn("{task.fields[events]} events, {task.fields[verdicts]} verdicts"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not show_progress, transient=False) as progress:
        task = progress.add_task(path.name, total=path.stat().st_size, events=0, verdicts=0)
        for records, position in file_batches(path, batch_size):
            result = pipeline.process(records)
            pipeline.checkpoint()
            totals.records += result.records
            totals.events += result.events
            totals.dead_letters += result.dead_letters
            totals.replayed += result.replayed
            totals.verdicts.extend(result.verdicts)
            progress.update(
                task, completed=position, events=totals.events, verdicts=len(totals.verdicts)
            )
    return totals
