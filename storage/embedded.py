"""Embedded ClickHouse backend (chDB): current ClickHouse in-process, data in a local folder.

chDB allows one session per process, so every `EmbeddedClickHouse` on the same folder shares it;
in embedded mode the worker and the API therefore run in one process.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pyarrow as pa
from chdb import session as chdb_session
from clickhouse_driver.util.escape import escape_params

from core.files import private_folder
from storage.base import Row, RowsRejected, Store, StoreError
from storage.schema import Table

_SESSIONS: dict[Path, tuple[Any, int]] = {}
_SESSIONS_LOCK = threading.RLock()

_ARROW_TYPES: dict[str, pa.DataType] = {
    "String": pa.string(),
    "DateTime": pa.uint32(),
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Int64": pa.int64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
}


def arrow_type(ch_type: str) -> pa.DataType:
    """The pyarrow type chDB reads into a ClickHouse column type."""
    if ch_type.startswith("Nullable(") or ch_type.startswith("Array("):
        inner = arrow_type(ch_type[ch_type.index("(") + 1 : -1])
        return pa.list_(inner) if ch_type.startswith("Array(") else inner
    return _ARROW_TYPES[ch_type]


def render(sql: str, params: dict[str, Any] | None) -> str:
    """Substitute `%(name)s` placeholders with values escaped by clickhouse-driver's escaper."""
    if not params:
        return sql
    return sql % escape_params(params, None)


class EmbeddedClickHouse(Store):
    """chDB with its data under `path`; survives restarts like a server would."""

    backend = "embedded"

    def __init__(self, path: str | Path, database: str = "distillguard") -> None:
        super().__init__(database)
        # Private (0700): chDB writes its files with the process umask, often world-readable.
        self.path = private_folder(Path(path).resolve())
        with _SESSIONS_LOCK:
            if _SESSIONS and self.path not in _SESSIONS:
                other = next(iter(_SESSIONS))
                raise StoreError(
                    f"chDB allows one data folder per process; {other} is open, close it first"
                )
            session, users = _SESSIONS.get(self.path, (None, 0))
            if session is None:
                session = chdb_session.Session(str(self.path))
            _SESSIONS[self.path] = (session, users + 1)
        self._session = session
        self._closed = False

    def _run(self, sql: str, fmt: str) -> Any:
        with _SESSIONS_LOCK:
            try:
                return self._session.query(sql, fmt)
            except Exception as exc:  # chDB raises RuntimeError/ValueError/its own types
                raise StoreError(f"chdb {self.path}: {exc}") from exc

    def _query(self, sql: str, params: dict[str, Any] | None) -> list[Row]:
        return self._run(render(sql, params), "ArrowTable").to_pylist()

    def _execute(self, sql: str, params: dict[str, Any] | None) -> None:
        self._run(render(sql, params), "CSV")

    def _insert_rows(self, table: Table, rows: list[Row]) -> None:
        names = table.column_names
        types = table.column_types
        schema = pa.schema(
            [
                pa.field(n, arrow_type(types[n]), nullable=types[n].startswith("Nullable("))
                for n in names
            ]
        )
        try:
            tbl = pa.Table.from_pylist(rows, schema=schema)  # noqa: F841 - read by chDB's Python()
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise RowsRejected(f"{table.name}: {exc}") from exc
        sql = table.insert_sql(self.database, "SELECT * FROM Python(tbl)")
        with _SESSIONS_LOCK:
            try:
                self._session.query(sql)
            except Exception as exc:
                raise StoreError(f"chdb insert into {table.name}: {exc}") from exc

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with _SESSIONS_LOCK:
            session, users = _SESSIONS[self.path]
            if users <= 1:
                del _SESSIONS[self.path]
                session.close()
            else:
                _SESSIONS[self.path] = (session, users - 1)
