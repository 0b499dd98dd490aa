"""Shared fixtures: hermetic settings, both store backends, each test in a fresh database.

Every test runs with settings of its own: no `DG_*` variable from the shell (except the service
addresses the test scripts export), no `distillguard.toml`, and a fresh data folder, so nothing a
user ran before (`make demo`) changes a result and no test writes into the user's `.distillguard`.
Models that cost minutes to build (the dequantised teacher and its response cache, the reasoning
classifier) are shared by the whole session, and across runs, from a test cache of their own:
`DG_TEST_CACHE`, default `.test-cache/` in the repository. Each data folder links to them.

The server backend talks to the real ClickHouse server that `scripts/clickhouse-up` starts
(`make test` does it); when it is unreachable the server tests fail rather than skip.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from tenacity import Retrying, retry_if_exception_type, stop_after_delay

from core.settings import get_settings
from storage import ClickHouseServer, EmbeddedClickHouse, Store, StoreError

CLICKHOUSE_URL = os.environ.get("DG_CLICKHOUSE_URL", "clickhouse://127.0.0.1:19000")
KAFKA_BOOTSTRAP = os.environ.get("DG_KAFKA_BOOTSTRAP", "127.0.0.1:19092")
# The same services' secured listeners (scripts/secured-listeners): ClickHouse over TLS, Kafka
# over SASL_SSL, their certificate's CA and the Kafka users in TLS_DIR.
CLICKHOUSE_SECURE_URL = os.environ.get(
    "DG_TEST_CLICKHOUSE_SECURE_URL", "clickhouses://127.0.0.1:19440"
)
KAFKA_SASL_SSL = os.environ.get("DG_TEST_KAFKA_SASL_SSL", "127.0.0.1:19094")
TLS_DIR = Path(os.environ.get("DG_TEST_TLS_DIR", "/tmp/distillguard-run/tls"))
# The services the test scripts start: the only `DG_*` variables a test inherits.
KEPT_ENVIRONMENT = ("DG_CLICKHOUSE_URL", "DG_KAFKA_BOOTSTRAP", "DG_TEST_CACHE")
# The local ClickHouse cluster (scripts/clickhouse-cluster-up, 2 shards x 2 replicas): its store
# URL when already started.
CLICKHOUSE_CLUSTER = "distillguard"
CLICKHOUSE_CLUSTER_URL = os.environ.get("DG_CLICKHOUSE_CLUSTER_URL")
# What the service scripts (scripts/clickhouse-*) read, kept before the session's hermetic
# environment clears every `DG_*`: a test that stops and restarts a server must act on the one
# the session started (its run folder and ports), not on the defaults'.
SCRIPT_ENV = {
    name: value
    for name, value in os.environ.items()
    if name in ("DG_RUN_DIR", "DG_CACHE_DIR") or name.startswith("DG_CH_")
}

ROOT = Path(__file__).resolve().parents[1]
TEST_CACHE = Path(os.environ.get("DG_TEST_CACHE", ROOT / ".test-cache")).resolve()
TEACHER_DIR = TEST_CACHE / "teacher"  # dequantised SmolLM2 and its response caches
MODELS_DIR = TEST_CACHE / "models"  # the reasoning classifier
SHARED = {"teacher": TEACHER_DIR, "models": MODELS_DIR}
# Every Kafka topic a test creates is named by `kafka_topic`: `dgtest-<run>-...`, where <run> is
# this pytest run's (set by the controlling process before it starts its xdist workers, which
# inherit it), so the run deletes exactly its own topics when it ends.
TEST_RUN = os.environ.setdefault("DISTILLGUARD_TEST_RUN", uuid.uuid4().hex[:8])


def kafka_topic(kind: str) -> str:
    """A fresh topic name of this test run (`kind` says whose), deleted when the run ends."""
    return f"dgtest-{TEST_RUN}-{kind}-{uuid.uuid4().hex[:8]}"


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Delete this run's topics (with their `.dlq` and `.profiles` companions) once every test
    has finished: in the controlling process only (xdist workers end one by one, while others
    still use theirs), and only when the test broker is up. The broker keeps a topic's data
    until it is deleted, and 905 MB of earlier runs' topics made the pipeline benchmark drain its
    backlog at 1,078-1,353 events/s instead of 1,686 on the same broker."""
    if hasattr(session.config, "workerinput") or not listening(KAFKA_BOOTSTRAP):
        return
    from kafka.errors import KafkaError

    from streaming.kafka import delete_topics

    prefix = f"dgtest-{TEST_RUN}-"
    try:
        delete_topics(KAFKA_BOOTSTRAP, lambda t: t.startswith(prefix), client_id="dgtest-cleanup")
    except KafkaError as error:  # the tests' outcome stands; say what was left behind
        print(f"\ncould not delete this run's Kafka topics ({prefix}*): {error!r}", file=sys.stderr)


def listening(bootstrap: str, timeout_s: float = 1.0) -> bool:
    """Whether the first `host:port` of a bootstrap list accepts a connection: a quick check
    before kafka-python's own, which waits 30 s for a broker that is not there."""
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError:
        return False
    return True


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """`overlap` tests first, so a parallel run (scripts/pytest-in-phases) starts the longest
    one at once and the other worker takes the rest meanwhile."""
    items.sort(key=lambda item: item.get_closest_marker("overlap") is None)


def data_folder(path: Path) -> Path:
    """A fresh data folder whose model caches (`teacher/`, `models/`) are the test cache's, so
    a command given `DG_DATA_DIR=path` finds them built."""
    path.mkdir(parents=True, exist_ok=True)
    for name, target in SHARED.items():
        target.mkdir(parents=True, exist_ok=True)
        link = path / name
        if not link.is_symlink() and not link.exists():
            link.symlink_to(target, target_is_directory=True)
    return path


@pytest.fixture(scope="session", autouse=True)
def hermetic_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Before any other fixture: no `DG_*` variable from the shell, no settings file, and a data
    folder of the session's own (module- and session-scoped fixtures read settings too)."""
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("DG_")]:
            if name not in KEPT_ENVIRONMENT:
                patch.delenv(name)
        patch.setenv("DG_CONFIG", str(tmp_path_factory.getbasetemp() / "absent.toml"))
        data = data_folder(tmp_path_factory.mktemp("session-data"))
        patch.setenv("DG_DATA_DIR", str(data))
        get_settings.cache_clear()
        yield data
    get_settings.cache_clear()


@pytest.fixture(autouse=True)
def dg_data_dir(
    hermetic_environment: Path,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    """Every test's own data folder (`DG_DATA_DIR`), with settings read afresh."""
    folder = data_folder(tmp_path_factory.mktemp("data"))
    monkeypatch.setenv("DG_DATA_DIR", str(folder))
    get_settings.cache_clear()
    yield folder
    get_settings.cache_clear()


def unique_database() -> str:
    return f"dgtest_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def chdb_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """chDB allows one data folder per process, so the whole session shares one."""
    return tmp_path_factory.mktemp("chdb")


def open_backend(backend: str, chdb_path: Path, database: str) -> Store:
    if backend == "embedded":
        return EmbeddedClickHouse(chdb_path, database=database)
    return ClickHouseServer(CLICKHOUSE_URL, database=database)


def drop_database(store: Store) -> None:
    """Drop a test's database and close its store. Under the load of the rest of `make test` a
    server can take longer than one query's 60 s timeout to drop a database (seen: 78 s, and
    three timed-out attempts in a row after the killed-linker test in a fresh clone, which failed
    a test that had passed); the drop is idempotent (`IF EXISTS`), so it is retried on a fresh
    connection for up to 10 minutes before the test is failed."""
    try:
        for attempt in Retrying(
            retry=retry_if_exception_type(StoreError), stop=stop_after_delay(600), reraise=True
        ):
            with attempt:
                store.execute("DROP DATABASE IF EXISTS {db}")
    finally:
        store.close()


@pytest.fixture(
    params=[
        "embedded",
        pytest.param("server", marks=pytest.mark.integration),
    ]
)
def store(request: pytest.FixtureRequest, chdb_path: Path) -> Iterator[Store]:
    """A migrated store in a database of its own, on each backend."""
    backend = open_backend(request.param, chdb_path, unique_database())
    backend.migrate()
    yield backend
    drop_database(backend)


@pytest.fixture
def embedded(chdb_path: Path) -> Iterator[Store]:
    """A migrated embedded (chDB) store in a database of its own, closed afterwards: chDB holds
    one data folder per process, shared by the session."""
    backend = EmbeddedClickHouse(chdb_path, database=unique_database())
    backend.migrate()
    yield backend
    drop_database(backend)


def cluster_script(name: str, *args: str) -> str:
    """Run scripts/clickhouse-cluster-NAME (up, down) with the caller's DG_RUN_DIR and
    DG_CACHE_DIR; its last stdout line. Fails the test, with the script's log, when it fails."""
    done = subprocess.run(
        [str(ROOT / "scripts" / f"clickhouse-cluster-{name}"), *args],
        env={**os.environ, **SCRIPT_ENV},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        pytest.fail(
            f"scripts/clickhouse-cluster-{name} {' '.join(args)} exited {done.returncode}:\n"
            f"{done.stderr[-4000:]}",
            pytrace=False,
        )
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


@pytest.fixture(scope="session")
def clickhouse_cluster() -> str:
    """The store URL (every server's address) of the local ClickHouse cluster named
    `CLICKHOUSE_CLUSTER`: `DG_CLICKHOUSE_CLUSTER_URL`, or started by scripts/clickhouse-cluster-up
    (idempotent; `make test` stops it at the end, scripts/clickhouse-cluster-down otherwise).
    Fails rather than skips when it cannot be started."""
    if CLICKHOUSE_CLUSTER_URL:
        return CLICKHOUSE_CLUSTER_URL
    return "clickhouse://" + cluster_script("up")
