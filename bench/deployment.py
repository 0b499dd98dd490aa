"""One isolated DistillGuard deployment on a real broker and ClickHouse server: its own topic,
dead-letter topic, consumer group and database, with `distillguard worker` and `distillguard
linker` started as subprocesses configured only through `DG_*` variables, as an operator would.

`bench.pipeline` measures with it; the streaming tests' harness starts processes the same way
(`tests/streaming/worker_harness.py`), and could build on this class.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

from kafka.errors import KafkaError

from core.settings import Settings
from storage import ClickHouseServer, queries
from streaming.kafka import delete_topics, ensure_topic, make_admin

ROOT = Path(__file__).resolve().parents[1]


def consumed(log_text: str) -> int:
    """Messages a worker consumed, from its `worker stopped: ..., consumed=N` line."""
    tail = log_text.rsplit("consumed=", 1)
    return int(tail[1].split(",", 1)[0]) if len(tail) == 2 else 0


def start_role(
    role: str,
    client_id: str,
    args: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    profile_to: Path | None = None,
) -> subprocess.Popen:
    """`distillguard ROLE --client-id ID ARGS` from the repository root, output to `log_path`
    (the bench and the real-service tests start workers and linkers this way). `profile_to`:
    run it under pyinstrument, whose text report of the whole process (start-up included) is
    written there when the role stops on SIGTERM."""
    profiler = (
        [] if profile_to is None else ["-m", "pyinstrument", "-r", "text", "-o", str(profile_to)]
    )
    role_args = ["-m", "distillguard.cli", role, "--client-id", client_id, *args]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, *profiler, *role_args],
            cwd=ROOT,
            env=dict(env),
            stdout=log,
            stderr=subprocess.STDOUT,
        )


LOG_TIME = "%Y-%m-%d %H:%M:%S,%f"  # logging's default asctime, as the CLI's roles log it
SETTLED = "caught up: "  # the linker's line once everything held back is linked


def free_port() -> int:
    """A TCP port nobody listens on now (for a worker's Prometheus endpoint)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def linker_settled_at(log_text: str) -> float | None:
    """Wall time (epoch s) of the linker's last `caught up` line, None before any. The linker
    logs it after a final link, when every source partition is read to its end and no profile
    update came for its idle time."""
    for line in reversed(log_text.splitlines()):
        if SETTLED in line:
            return datetime.strptime(line[:23], LOG_TIME).timestamp()
    return None


def listening_pid(address: str) -> int | None:
    """The local process listening on `address` ("host:port" or a URL with one), None when it
    is not on this machine or cannot be seen: the bench adds the broker's and the server's CPU to
    its roles' when they share the machine."""
    import psutil

    port = int(urlsplit(address if "//" in address else f"//{address}").port or 0)
    for connection in psutil.net_connections(kind="tcp"):
        if (
            connection.status == psutil.CONN_LISTEN
            and connection.laddr.port == port
            and connection.pid is not None
        ):
            return connection.pid
    return None


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds process `pid` has used so far (Linux `/proc/PID/stat`,
    fields 14 and 15): what a role cost, however busy the machine's other processes kept it."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Deployment:
    """Fresh topic (`partitions` partitions), DLQ topic, consumer group and database; roles
    started with `start` read `data_dir` (the saved calibration) like a deployment does."""

    bootstrap: str
    clickhouse_url: str
    data_dir: Path
    log_dir: Path
    partitions: int = 4
    batch_size: int | None = None  # None: the deployed default
    linger_ms: int | None = None  # the workers' `poll_linger_ms` (None: the deployed default)
    name: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    processes: list[subprocess.Popen] = field(default_factory=list)
    logs: dict[int, Path] = field(default_factory=dict)  # pid -> its log file
    metrics_ports: dict[int, int] = field(default_factory=dict)  # worker pid -> port

    def __post_init__(self) -> None:
        self.topic = f"bench-{self.name}"
        self.dlq_topic = f"{self.topic}.dlq"
        self.group = f"bench-{self.name}"
        self.database = f"bench_{self.name}"
        ensure_topic(self.bootstrap, self.topic, self.partitions)
        ensure_topic(self.bootstrap, self.dlq_topic, 1)
        self.store = ClickHouseServer(self.clickhouse_url, database=self.database)
        self.store.migrate()
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def settings(self) -> Settings:
        """The deployment's settings, for a role run in this process (profiling)."""
        values = {
            "store": "server",
            "clickhouse_url": self.clickhouse_url,
            "database": self.database,
            "kafka_bootstrap": self.bootstrap,
            "topic": self.topic,
            "dlq_topic": self.dlq_topic,
            "consumer_group": self.group,
            "data_dir": self.data_dir,
        }
        if self.batch_size:
            values["batch_size"] = self.batch_size
        if self.linger_ms is not None:
            values["poll_linger_ms"] = self.linger_ms
        return Settings(**values)

    def env(self, metrics_port: int = 0) -> dict[str, str]:
        """The same settings as `DG_*` variables, for a role in a subprocess."""
        names = ("store", "clickhouse_url", "database", "kafka_bootstrap", "topic", "dlq_topic")
        settings = self.settings()
        variables = {f"DG_{n.upper()}": str(getattr(settings, n)) for n in names}
        variables |= {
            "DG_CONSUMER_GROUP": self.group,
            "DG_DATA_DIR": str(self.data_dir.resolve()),
            "DG_BATCH_SIZE": str(settings.batch_size),
            "DG_POLL_LINGER_MS": str(settings.poll_linger_ms),
            "DG_METRICS_PORT": str(metrics_port),
            "PYTHONUNBUFFERED": "1",
        }
        return os.environ | variables

    def start(self, role: str, *args: str, profile_to: Path | None = None) -> subprocess.Popen:
        """`distillguard ROLE` as a subprocess, logging to `log_dir`; a worker gets its own
        Prometheus port; `profile_to`: under pyinstrument (`start_role`)."""
        number = len(self.processes)
        port = free_port() if role == "worker" else 0
        path = self.log_dir / f"{self.name}-{role}-{number}.log"
        process = start_role(role, f"{role}{number}", args, self.env(port), path, profile_to)
        self.processes.append(process)
        self.logs[process.pid] = path
        if port:
            self.metrics_ports[process.pid] = port
        return process

    def log_text(self, process: subprocess.Popen) -> str:
        return self.logs[process.pid].read_text(errors="replace")

    def check_alive(self) -> None:
        """Raise with the process's log tail when a role has died."""
        for process in self.processes:
            if process.poll() is not None:
                raise RuntimeError(
                    f"{self.logs[process.pid].name} exited with {process.returncode}:\n"
                    + self.log_text(process)[-3000:]
                )

    def group_members(self) -> int:
        """Members of the worker group once it is stable (partitions assigned), else 0."""
        admin = make_admin(self.bootstrap, client_id="bench-admin")
        try:
            (group,) = admin.describe_consumer_groups([self.group])
        except KafkaError:  # no coordinator yet (a fresh broker's first group): not stable
            return 0
        finally:
            admin.close()
        return len(group.members) if group.state == "Stable" else 0

    def wait_until(self, condition, timeout_s: float, what: str, every_s: float = 0.5) -> None:
        deadline = time.monotonic() + timeout_s
        while not condition():
            self.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
            time.sleep(every_s)

    def stop_all(self, timeout_s: float = 60) -> list[int]:
        """SIGTERM every role (each finishes its batch in flight), then wait."""
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes = []
        for process in self.processes:
            try:
                codes.append(process.wait(timeout=timeout_s))
            except subprocess.TimeoutExpired:
                process.kill()
                codes.append(process.wait())
        return codes

    def close(self) -> None:
        """Stop what still runs, drop the database and delete the run's topics: the broker's
        data outlives it (`scripts/kafka-up` keeps its folder), and every run left behind made
        the broker load and clean more partitions in each later run."""
        from distillguard.wiring import profiles_topic

        self.stop_all()
        queries.drop_database(self.store)
        self.store.close()
        mine = {self.topic, self.dlq_topic, profiles_topic(self.settings())}
        delete_topics(self.bootstrap, mine.__contains__, client_id="bench-admin")
