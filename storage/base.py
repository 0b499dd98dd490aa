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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Self

from storage.schema import MIGRATIONS, SCHEMA_MIGRATIONS, TABLES, Table

_DATABASE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
Row = dict[str, Any]


class StoreError(RuntimeError):
    """The store could not do what was asked (server down, bad SQL); callers may retry."""


class RowsRejected(StoreError):
    """The store refused rows for their values (a number out of range, text that is not UTF-8):
    retrying the same rows cannot help. Raised before anything of the block is stored."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A row `insert_valid` left out: its index in the rows given and why."""

    index: int
    reason: str


# ClickHouse refuses an INSERT that touches more than 100 partitions (current versions'
# `max_partitions_per_insert_block`); a UTC day overlaps at most two server-local days.
MAX_DAYS_PER_INSERT = 50
DAY_S = 86_400
# A SELECT must fit the server's `max_query_size` (256 KiB by default, chDB's too), values and
# all: an `IN` list of ids gets half of it.
IN_LIST_BYTES = 128 * 1024


def in_chunks(values: Iterable[str]) -> Iterator[tuple[str, ...]]:
    """`values` in tuples small enough for one `IN %(ids)s` list, however long each id is: a
    batch of 512-character ids must not make every look-up fail (and a worker retry forever)."""
    chunk: list[str] = []
    size = 0
    for value in values:
        # Escaping at most doubles a byte; quotes and the separator add four.
        cost = 2 * len(value.encode("utf-8", "surrogatepass")) + 4
        if chunk and size + cost > IN_LIST_BYTES:
            yield tuple(chunk)
            chunk, size = [], 0
        chunk.append(value)
        size += cost
    if chunk:
        yield tuple(chunk)


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


def _partition_blocks(table: Table, rows: list[Row]) -> Iterator[list[Row]]:
    """`rows` in blocks of at most `MAX_DAYS_PER_INSERT` days of the partition column, so a
    backfill spanning months is not refused as "too many partitions for single INSERT"."""
    column = table.partition_time_column
    if column is None or len(rows) <= MAX_DAYS_PER_INSERT:
        yield rows
        return
    days: dict[int, list[Row]] = {}
    for row in rows:
        days.setdefault(row[column] // DAY_S, []).append(row)
    if len(days) <= MAX_DAYS_PER_INSERT:
        yield rows
        return
    groups = list(days.values())
    for start in range(0, len(groups), MAX_DAYS_PER_INSERT):
        yield [row for group in groups[start : start + MAX_DAYS_PER_INSERT] for row in group]


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
        """Insert complete rows (every column present, `DateTime` as epoch seconds); raise
        `RowsRejected` when the rows' values, not the store, are the problem."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        """`with open_store(settings) as store:` closes the store however the block ends."""
        self.close()

    # --- shared behaviour --------------------------------------------------------------------
    def query(self, sql: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Run a SELECT; `{db}` names our database, values go in `%(name)s` placeholders.

        `DateTime` values come back as epoch seconds on both backends.
        """
        return self._query(sql.replace("{db}", self.database), params)

    def query_in(
        self, sql: str, values: Iterable[str], params: dict[str, Any] | None = None
    ) -> list[Row]:
        """Run a SELECT whose `%(values)s` is an `IN` list of `values`, once per chunk small
        enough for the server's query size limit (`in_chunks`); the rows of every chunk, in no
        particular order (sort them, and apply any LIMIT, after)."""
        rows: list[Row] = []
        for chunk in in_chunks(sorted(set(values))):
            rows.extend(self.query(sql, {**(params or {}), "values": chunk}))
        return rows

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> None:
        """Run a statement that returns nothing (DDL, ALTER, OPTIMIZE); same placeholders."""
        self._execute(sql.replace("{db}", self.database), params)

    def table(self, name: str) -> str:
        """The qualified name of one of our tables (names come from a fixed list, never input)."""
        if name not in TABLES:
            raise StoreError(f"unknown table {name!r}")
        return f"{self.database}.{name}"

    def migrate(self, upto: int | None = None) -> list[int]:
        """Create the database and apply pending migrations (up to number `upto`, as an older
        release would have: tests of a migration use it); returns the numbers applied."""
        self._ddl("CREATE DATABASE IF NOT EXISTS {db}")
        self._ddl(SCHEMA_MIGRATIONS.create_sql("{db}"))
        done = set(self.applied_migrations())
        applied = []
        for migration in MIGRATIONS:
            if migration.number in done or (upto is not None and migration.number > upto):
                continue
            for statement in migration.statements:
                self._ddl(statement)
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

    def _ddl(self, statement: str) -> None:
        """Run one schema statement as written for a single server (`{db}` unexpanded); a
        backend on a cluster runs its `ON CLUSTER` form (`storage.schema.cluster_statements`)."""
        self.execute(statement)

    def applied_migrations(self) -> list[int]:
        rows = self.query("SELECT migration FROM {db}.schema_migrations FINAL ORDER BY migration")
        return [int(r["migration"]) for r in rows]

    def _schema(self, table_name: str) -> Table:
        table = TABLES.get(table_name)
        if table is None:
            raise StoreError(f"unknown table {table_name!r}")
        return table

    def insert(self, table_name: str, rows: Sequence[Row], batch_size: int = 10_000) -> int:
        """Insert rows in batches; writing the same natural ids again is idempotent."""
        table = self._schema(table_name)
        complete = complete_rows(table, rows)
        for start in range(0, len(complete), batch_size):
            self._insert_block(table, complete[start : start + batch_size])
        return len(complete)

    def insert_valid(
        self, table_name: str, rows: Sequence[Row], batch_size: int = 10_000
    ) -> list[Rejection]:
        """Insert every row the store can hold and return the others with the reason, so one
        bad row never holds up its batch. Rows are checked against the column types first; a
        block the backend still refuses is split in halves until the refused rows are alone.
        Failures of the store itself (down, full) raise `StoreError` as `insert` does."""
        table = self._schema(table_name)
        rejected: list[Rejection] = []
        valid: list[Row] = []
        positions: list[int] = []
        for index, row in enumerate(rows):
            problem = table.row_problem(row)
            if problem is None:
                valid.append(row)
                positions.append(index)
            else:
                rejected.append(Rejection(index, problem))
        complete = complete_rows(table, valid)

        def write(start: int, end: int) -> None:
            try:
                self._insert_block(table, complete[start:end])
            except RowsRejected as exc:
                if end - start == 1:
                    rejected.append(Rejection(positions[start], str(exc)))
                    return
                middle = (start + end) // 2
                write(start, middle)
                write(middle, end)

        for start in range(0, len(complete), batch_size):
            write(start, min(start + batch_size, len(complete)))
        return sorted(rejected, key=lambda r: r.index)

    def _insert_block(self, table: Table, rows: list[Row]) -> None:
        for block in _partition_blocks(table, rows):
            self._insert_rows(table, block)

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
                self._drop_partition(table_name, partition)
                dropped.append(partition)
        return dropped

    def _drop_partition(self, table_name: str, partition: str) -> None:
        # A partition is an identifier-like literal, validated as digits by the caller.
        statement = "ALTER TABLE {table} DROP PARTITION " + partition
        self.execute(statement.replace("{table}", self.table(table_name)))

    def ping(self) -> bool:
        try:
            return self.query("SELECT 1 AS ok")[0]["ok"] == 1
        except Exception:  # noqa: BLE001 - any failure means "not reachable"
            return False
