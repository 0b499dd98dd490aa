"""Progress bars: rich, always on stderr.

stdout carries a command's result (a summary, a table, `--json`); a bar there would corrupt what a
script reads. On a terminal the bar redraws in place; when stderr is a file or a pipe rich prints
it once, finished, when it stops (its normal behaviour).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

T = TypeVar("T")
STEP_COLUMNS: tuple[Callable[[], ProgressColumn], ...] = (
    SpinnerColumn,
    lambda: TextColumn("[bold]{task.description}"),
    BarColumn,
    MofNCompleteColumn,
    TimeElapsedColumn,
)


def progress_bar(
    *columns: str | ProgressColumn, console: Console | None = None, disable: bool = False
) -> Progress:
    """A rich `Progress` on stderr (`console`, when given, must write to stderr too); without
    columns: spinner, description, bar, done/total, elapsed time."""
    return Progress(
        *(columns or [make() for make in STEP_COLUMNS]),
        console=console or Console(stderr=True),
        disable=disable,
    )


@dataclass
class Steps:
    """One running task of a `progress_bar`: advance it, log above it, or start the next phase."""

    bar: Progress
    task: TaskID

    def advance(self, steps: float = 1) -> None:
        self.bar.advance(self.task, steps)

    def log(self, message: object) -> None:
        """Print a line above the bar and count it as one step (for library code that reports
        its progress through a `log` callback)."""
        self.bar.console.print(message, markup=False)
        self.advance()

    def update(self, completed: float) -> None:
        self.bar.update(self.task, completed=completed)

    def track(self, items: Iterable[T], then: str | None = None, every: int = 1000) -> Iterator[T]:
        """Yield `items`, advancing one step per item (redrawn every `every` items); the task is
        complete once they are exhausted, and a phase `then` (pulsing) starts, for the work
        that follows reading them."""
        pending = 0
        for item in items:
            yield item
            pending += 1
            if pending >= every:
                self.advance(pending)
                pending = 0
        self.advance(pending)
        if then is None:
            self.finish()
        else:
            self.phase(then)

    def finish(self) -> None:
        """Fill the bar (a pulsing one takes the steps it counted as its total)."""
        task = next(task for task in self.bar.tasks if task.id == self.task)
        total = (task.completed or 1) if task.total is None else task.total
        self.bar.update(self.task, total=total, completed=total)

    def phase(self, description: str, total: float | None = None) -> Steps:
        """Finish this task and start the next one below it."""
        self.finish()
        return Steps(self.bar, self.bar.add_task(description, total=total))


@contextmanager
def steps(
    description: str, total: float | None = None, console: Console | None = None
) -> Iterator[Steps]:
    """A stderr progress bar with one task (`total` None: a pulsing bar that counts steps)."""
    with progress_bar(console=console) as bar:
        yield Steps(bar, bar.add_task(description, total=total))
        for task in bar.tasks:  # done: every phase shows full
            Steps(bar, task.id).finish()
