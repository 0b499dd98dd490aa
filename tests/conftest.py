"""Shared fixtures: both store backends, each test in a fresh database.

The server backend talks to the real ClickHouse server that `scripts/clickhouse-up` starts
(`make test` does it); when it is unreachable the server tests fail rather than skip.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from storage import ClickHouseServer, EmbeddedClickHouse, Store

CLICKHOUSE_URL = os.environ.get("DG_CLICKHOUSE_URL", "clickhouse://127.0.0.1:19000")
KAFKA_BOOTSTRAP = os.environ.get("DG_KAFKA_BOOTSTRAP", "127.0.0.1:19092")


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
    backend.execute(f"DROP DATABASE IF EXISTS {backend.database}")
    backend.close()


@pytest.fixture
def embedded(chdb_path: Path) -> Iterator[Store]:
    """A migrated embedded (chDB) store in a database of its own, closed afterwards: chDB holds
    one data folder per process, shared by the session."""
    backend = EmbeddedClickHouse(chdb_path, database=unique_database())
    backend.migrate()
    yield backend
    backend.execute("DROP DATABASE IF EXISTS {db}")
    backend.close()
