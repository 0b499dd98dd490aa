"""The store interface both backends implement, and the logic they share.

Backends only know how to run SQL and how to insert a batch of rows; migrations, idempotent
writes, retention and the domain helpers live here, once, so both backends run the same SQL.
Queries take `%(name)s` placeholders whose values are escaped by clickhouse-driver's escaper on
both backends: values never get formatted into SQL by hand.
"""

from __future__ import annotations

import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from typing import Any

from storage.schema import MIGRATIONS, SCHEMA_MIGRATIONS, TABLES, Table

_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
Row = dict[str, Any]


class StoreError(RuntimeError):
    """The store could not do what was asked (server down, bad SQL); callers may retry."""


def default_for(ch_type: str) -> Any:
    """The value an omitted column gets, matching ClickHouse's own defaults."""
    if ch_type.startswith("Nullable("):
        return None
    if ch_type.startswith("Array("):
        return []
    if ch_type == "String":
        return ""
    if ch_type.startswith("Float"):
        return 0.0
    return 0


def epoch_seconds(value: Any) -> int:
    """A `DateTime` column value as epoch seconds (accepts datetime or int seconds)."""
    if isinstance(value, int):
        return value
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp())
    return int(value)


def complete_rows(table: Table, rows: Iterable[Row]) -> list[Row]:
    """Fill omitted columns, normalise `DateTime` to epoch seconds, default `version` to now."""
    types = table.column_types
    unknown_checked = False
    version = int(time.time() * 1000)
    completed = []
    for row in rows:
        if not unknown_checked:
            unknown = set(row) - set(types)
            if unknown:
                raise StoreError(f"{table.name}: unknown columns {sorted(unknown)}")
            unknown_checked = True
        full = {}
        for name, ch_type in types.items():
            value = row.get(name, None)
            if value is None:
                value = version if name == table.version_column else default_for(ch_type)
            elif ch_type == "DateTime":
                value = epoch_seconds(value)
            full[name] = value
        completed.append(full)
    return completed


class Store(ABC):
    """One ClickHouse database holding DistillGuard's tables, on a server or embedded."""

    backend: str = "abstract"

    def __init__(self, database: str = "distillguard") -> None:
        if not _DATABASE_NAME.match(database):
            raise ValueError(f"invalid database name {database!r}")
        self.database = database

    # --- what a backend provides -------------------------------------------------------------
    @abstractmethod
    def _query(self, sql: str, params: dict[str, Any] | None) -> list[Row]:
        """Run a SELECT whose `{db}` is already expanded."""

    @abstractmethod
    def _execute(self, sql: str, params: dict[str, Any] | None) -> None:
        """Run a statement that returns nothing, `{db}` already expanded."""

    @abstractmethod
    def _insert_rows(self, table: Table, rows: list[Row]) -> None:
        """Insert complete rows (every column present, `DateTime` as epoch seconds)."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    # --- shared behaviour --------------------------------------------------------------------
    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run a SELECT; `{db}` names our database, values go in `%(name)s` placeholders.

        `DateTime` values come back as epoch seconds on both backends.
        """
        return self._query(sql.replace("{db}", self.database), params)

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (DDL, ALTER, OPTIMIZE); same placeholders."""
        self._execute(sql.replace("{db}", self.database), params)

    def table(self, name: str) -> str:
        """The qualified name of one of our tables (names come from a fixed list, never input)."""
        if name not in TABLES:
            raise StoreError(f"unknown table {name!r}")
        return f"{self.database}.{name}"

    def migrate(self) -> list[int]:
        """Create the database and apply pending migrations; returns the numbers applied."""
        self.execute("CREATE DATABASE IF NOT EXISTS {db}")
        self.execute(SCHEMA_MIGRATIONS.create_sql("{db}"))
        done = set(self.applied_migrations())
        applied = []
        for migration in MIGRATIONS:
            if migration.number in done:
                continue
            for statement in migration.statements:
                self.execute(statement)
            self.insert(
                "schema_migrations",
                [
                    {
                        "migration": migration.number,
                        "name": migration.name,
                        "applied_time": int(time.time()),
                    }
                ],
            )
            applied.append(migration.number)
        return applied

    def applied_migrations(self) -> list[int]:
        rows = self.query("SELECT migration FROM {db}.schema_migrations FINAL ORDER BY migration")
        return [int(r["migration"]) for r in rows]

    def insert(self, table_name: str, rows: Sequence[Row], batch_size: int = 10_000) -> int:
        """Insert rows in batches; writing the same natural ids again is idempotent."""
        table = TABLES.get(table_name)
        if table is None:
            raise StoreError(f"unknown table {table_name!r}")
        complete = complete_rows(table, rows)
        for start in range(0, len(complete), batch_size):
            self._insert_rows(table, complete[start : start + batch_size])
        return len(complete)

    def revise(self, table_name: str, row: Row, **changes: Any) -> Row:
        """Change a row read back with its `version`: write the changed copy one version up,
        which replaces it under `FINAL` (ReplacingMergeTree). Returns the written row."""
        revised = {**row, **changes, "version": int(row["version"]) + 1}
        self.insert(table_name, [revised])
        return revised

    def count(self, table_name: str, final: bool = True) -> int:
        sql = (
            "SELECT count() AS n FROM {table} FINAL"
            if final
            else "SELECT count() AS n FROM {table}"
        )
        rows = self.query(sql.replace("{table}", self.table(table_name)))
        return int(rows[0]["n"])

    def partitions(self, table_name: str) -> list[str]:
        """Active partition ids of a day-partitioned table, e.g. `['20261126', '20261127']`."""
        self.table(table_name)
        rows = self.query(
            "SELECT DISTINCT partition FROM system.parts "
            "WHERE database = %(db)s AND table = %(table)s AND active ORDER BY partition",
            {"db": self.database, "table": table_name},
        )
        return [str(r["partition"]).strip("'") for r in rows]

    def drop_partitions_before(self, table_name: str, before: date) -> list[str]:
        """Retention: drop whole days older than `before`; returns the partitions dropped."""
        table = TABLES.get(table_name)
        if table is None or table.partition_time_column is None:
            raise StoreError(f"{table_name!r} is not partitioned by day")
        cutoff = int(before.strftime("%Y%m%d"))
        dropped = []
        for partition in self.partitions(table_name):
            if partition.isdigit() and int(partition) < cutoff:
                # A partition is an identifier-like literal, validated as digits above.
                statement = "ALTER TABLE {table} DROP PARTITION " + partition
                self.execute(statement.replace("{table}", self.table(table_name)))
                dropped.append(partition)
        return dropped

    def ping(self) -> bool:
        try:
            return self.query("SELECT 1 AS ok")[0]["ok"] == 1
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            return False
