"""Which DistillGuard made a result: the package version plus the commit it ran from.

Evidence (reports, provenance cases) must name the code exactly, so a source checkout adds the
commit as a PEP 440 local label (`0.1.0+g1a2b3c4d5e6f`, `.dirty` when tracked files differ from
it). An installed wheel has no git history beside it: its version is the package version alone.

>>> full_version().startswith(package_version())
True
"""

from __future__ import annotations

import shutil
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

from core import __version__

DISTRIBUTION = "distillguard"
# The repository root when this is a source checkout (core/ sits right under it).
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def package_version() -> str:
    """The installed distribution's version; the source's own when it is not installed."""
    try:
        return metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return __version__


def source_commit(root: Path = SOURCE_ROOT) -> str | None:
    """`g<12 hex>` (plus `.dirty`) when `root` is a DistillGuard git checkout with git on PATH;
    None otherwise. Only `root` itself counts: site-packages inside some other repository must
    not lend that repository's commit."""
    git = shutil.which("git")
    if git is None or not (root / ".git").exists() or not (root / "pyproject.toml").exists():
        return None

    def ask(*args: str) -> str:
        return subprocess.run(  # noqa: S603 - fixed arguments
            [git, "-C", str(root), *args], check=True, capture_output=True, text=True, timeout=10
        ).stdout.strip()

    try:
        commit = ask("rev-parse", "--short=12", "HEAD")
        # Test outputs kept in the repository (dashboard screenshots) are not the code.
        changed = ask(
            "status", "--porcelain", "--untracked-files=no", "--", ".", ":!test-artifacts"
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if not commit:
        return None
    return f"g{commit}" + (".dirty" if changed else "")


@lru_cache(maxsize=1)
def full_version() -> str:
    """`package_version()`, with `+<source_commit()>` in a git checkout (read once)."""
    commit = source_commit()
    return package_version() + (f"+{commit}" if commit else "")
