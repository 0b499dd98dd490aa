"""How a measured table says where it comes from: a results file is one header line (date,
machine, the command as typed, wall time), a blank line, then the table. The README quotes these
files (`bench/readme.py`); the companion's commands and the benchmarks write them."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def machine() -> str:
    """'a 2-core Intel Xeon ...' (the CPU is what the figures depend on), and the GPU where the
    process has one."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    torch = sys.modules.get("torch")  # only a process that already uses it can have a GPU
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch and torch.cuda.is_available() else ""
    return f"a {os.cpu_count()}-core {cpu}{gpu}, Python {platform.python_version()}"


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {rest} s" if minutes else f"{rest} s"


def command_line() -> str:
    """How this process was started, as a user would type it."""
    first, *rest = sys.argv
    path = Path(first).resolve()
    if path.suffix == ".py" and path.is_relative_to(ROOT):  # python -m bench.x
        first = "python -m " + ".".join(path.relative_to(ROOT).with_suffix("").parts)
    else:
        first = Path(first).name
    return " ".join([first, *map(shlex.quote, rest)])


def measured_by(command: str | None = None, seconds: float | None = None, note: str = "") -> str:
    """The header line of a results file."""
    wall = f", wall {duration(seconds)}" if seconds is not None else ""
    extra = f", {note}" if note else ""
    return (
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {machine()}: "
        f"`{command or command_line()}`{wall}{extra}."
    )


def write_table(path: Path, table: str, header: str) -> Path:
    """A results file: the header line, a blank line, then the table without the command's own
    `# title` (the header replaces it), ending in one newline."""
    lines = table.strip().splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "\n\n" + "\n".join(lines).strip() + "\n")
    return path
