"""Spawned worker processes that do not outlive the run that started them.

A `ProcessPoolExecutor` worker whose parent is killed (-9, or a terminal closed) keeps running
the task it holds and can pick up the next: two orphaned students of a killed `provenance
experiment --jobs 2` trained on for 17 minutes, both cores busy, before they were found.
"""

from __future__ import annotations

import os
import threading
import time


def end_with_parent(parent: int) -> None:
    """Call first in a worker's initializer, with the pid of the process that started the pool
    (`os.getpid()` there, passed in `initargs`): a daemon thread ends the process once its
    parent is gone (polled every second). Read in the worker instead, the parent's pid is
    already 1 when the parent died before the initializer ran (a loaded machine: importing
    torch takes seconds), and such a worker waited forever (`make test`, 2026-12-05)."""
    threading.Thread(target=_exit_when_orphaned, args=(parent,), daemon=True).start()


def _exit_when_orphaned(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)
