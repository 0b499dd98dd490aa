"""Private folders: what DistillGuard keeps on disk (prompts, evidence, reports, its database) is
for the user that runs it only, whatever the process umask says. Files written whole or not at
all (`write_atomically`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

PRIVATE_FOLDER = 0o700
PRIVATE_FILE = 0o600


def private_folder(path: Path) -> Path:
    """`path` as a folder only its owner may enter: created with any missing parents (all 0700),
    or tightened to 0700 when it exists. Existing parents are left alone: they may be the user's
    own (a home folder, /tmp)."""
    missing = [folder for folder in (path, *path.parents) if not folder.exists()]
    for folder in reversed(missing):
        folder.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)
        folder.chmod(PRIVATE_FOLDER)  # mkdir's mode is filtered by the umask
    path.chmod(PRIVATE_FOLDER)
    return path


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """`write(partial)` into a file of this process's own beside `path` (same suffix, which
    numpy's savers need), then renamed over it: readers never see half a file, and processes
    writing the same file at once (test workers building one model) never write into each
    other's."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial{path.suffix}")
    write(partial)
    partial.replace(path)
    return path
