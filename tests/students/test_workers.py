"""Spawned workers end with the run that started them, however late their initializer runs."""

from __future__ import annotations

import subprocess
import sys
import time


def test_a_worker_whose_parent_died_before_its_initializer_ran_ends_at_once() -> None:
    # The pool's parent passes its pid; here that process is long gone (pid 2**22 + 1 is above
    # Linux's default pid_max), as when a killed run's worker was still importing torch.
    started = time.monotonic()
    worker = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\n"
            "from students.workers import end_with_parent\n"
            "end_with_parent(2**22 + 1)\n"
            "time.sleep(60)",
        ],
        timeout=120,
    )
    assert worker.returncode == 1 and time.monotonic() - started < 30


def test_a_worker_whose_parent_lives_keeps_working() -> None:
    worker = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, time\n"
            "from students.workers import end_with_parent\n"
            "end_with_parent(os.getppid())\n"
            "time.sleep(2.5)\n"
            "print('done')",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert worker.returncode == 0 and worker.stdout.strip() == "done"
