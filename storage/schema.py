"""Table definitions and versioned migrations, in SQL that ClickHouse 18.16 and current ClickHouse
both accept (no DateTime64, Map, JSON, TTL, CODEC or LowCardinality).

Every table is a ReplacingMergeTree ordered by its natural id with a `version` column, so writing a
row twice leaves one row under `FINAL` (the latest; `events` keep the first, see
`storage.rows.event_version`). Time-series tables are partitioned by day
(`toYYYYMMDD`), so retention is a partition drop. Timestamps are `DateTime` (seconds, UTC) plus an
epoch-millisecond `UInt64` where precision matters.

On a cluster (`DG_CLICKHOUSE_CLUSTER`) each table `t` is `t_local`, a ReplicatedReplacingMergeTree
on every server, under a Distributed `t` sharded by account (`Table.sharding_key`), so every
version of a row, and every row of an account, is on one shard, where `FINAL` collapses them;
the migrations' statements are rewritten by `cluster_statements`.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from functools import cached_property
from typing import Any, NamedTuple

# What each column type holds: one place for the ranges the rows are checked against.
INT_RANGES: dict[str, tuple[int, int]] = {
    "UInt8": (0, 2**8 - 1),
    "UInt16": (0, 2**16 - 1),
    "UInt32": (0, 2**32 - 1),
    "UInt64": (0, 2**64 - 1),
    "Int64": (-(2**63), 2**63 - 1),
    "DateTime": (0, 2**32 - 1),  # epoch seconds
}
FLOAT_MAX = {"Float32": 3.4028234663852886e38, "Float64": sys.float_info.max}
ValueCheck = Callable[[Any], str | None]  # a value → what is wrong with it, or None


def _check_string(value: Any) -> str | None:
    if not isinstance(value, str):
        return f"expected a string, got {type(value).__name__}"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            return f"not encodable as UTF-8 ({exc.reason} at {exc.start})"
    return None


def _int_check(ch_type: str) -> ValueCheck:
    low, high = INT_RANGES[ch_type]

    def check(value: Any) -> str | None:
        if ch_type == "DateTime" and isinstance(value, datetime):
            value = int(value.timestamp())
        if not isinstance(value, int):
            return f"expected an integer, got {type(value).__name__}"
        if not low <= value <= high:
            return f"{value} outside {ch_type} range {low}..{high}"
        return None

    return check


def _float_check(ch_type: str) -> ValueCheck:
    largest = FLOAT_MAX[ch_type]

    def check(value: Any) -> str | None:
        if not isinstance(value, int | float):
            return f"expected a number, got {type(value).__name__}"
        if not (math.isfinite(value) and abs(value) <= largest):
            return f"{value} is not a finite {ch_type}"
        return None

    return check


def value_check(ch_type: str) -> ValueCheck:
    """The check of one column type: whether a Python value can be stored in it as it is."""
    if ch_type.startswith("Nullable("):
        inner = value_check(ch_type[len("Nullable(") : -1])
        return lambda value: None if value is None else inner(value)
    if ch_type.startswith("Array("):
        element = value_check(ch_type[len("Array(") : -1])

        def check_array(value: Any) -> str | None:
            if not isinstance(value, list | tuple):
                return f"expected a list, got {type(value).__name__}"
            for item in value:
                problem = element(item)
                if problem is not None:
                    return f"element {problem}"
            return None

        return check_array
    if ch_type == "String":
        return _check_string
    if ch_type in INT_RANGES:
        return _int_check(ch_type)
    if ch_type in FLOAT_MAX:
        return _float_check(ch_type)
    raise ValueError(f"no value check for column type {ch_type}")


@dataclass(frozen=True)
class Table:
    """A table's columns (name, ClickHouse type), natural key and partitioning."""

    name: str
    columns: tuple[tuple[str, str], ...]
    order_by: tuple[str, ...]
    partition_time_column: str | None = None
    version_column: str = "version"
    # Rows per index granule, the least a read decompresses per part (None: the server's
    # default, 8,192). For tables of large rows read by key: ClickHouse 18.16 has no adaptive
    # granularity (current servers cap a granule at 10 MB).
    index_granularity: int | None = None

    @property
    def column_names(self) -> list[str]:
        return [name for name, _ in self.columns]

    @property
    def column_types(self) -> dict[str, str]:
        return dict(self.columns)

    @cached_property
    def _checks(self) -> dict[str, ValueCheck]:
        return {name: value_check(ch_type) for name, ch_type in self.columns}

    def row_problem(self, row: dict[str, Any]) -> str | None:
        """What keeps `row` out of this table ("column: why"), or None when every value fits its
        column. Omitted and None values are fine: they take the column's default."""
        checks = self._checks
        for name, value in row.items():
            check = checks.get(name)
            if check is None:
                return f"{name}: no such column in {self.name}"
            if value is not None:
                problem = check(value)
                if problem is not None:
                    return f"{name}: {problem}"
        return None

    def insert_sql(self, database: str, tail: str) -> str:
        """`INSERT INTO db.table (columns) <tail>`; identifiers come from this fixed schema."""
        columns = ", ".join(self.column_names)
        return f"INSERT INTO {database}.{self.name} ({columns}) {tail}"  # noqa: S608

    def create_sql(self, database: str) -> str:
        columns = ",\n  ".join(f"{name} {ch_type}" for name, ch_type in self.columns)
        partition = (
            f"PARTITION BY toYYYYMMDD({self.partition_time_column})\n"
            if self.partition_time_column
            else ""
        )
        return (
            f"CREATE TABLE IF NOT EXISTS {database}.{self.name} (\n  {columns}\n)\n"
            f"ENGINE = ReplacingMergeTree({self.version_column})\n"
            f"{partition}ORDER BY ({', '.join(self.order_by)})"
            + ("" if self.index_granularity is None else f"\nSETTINGS {self._granularity}")
        )

    @property
    def _granularity(self) -> str:
        return f"index_granularity = {self.index_granularity}"

    # --- on a cluster (`DG_CLICKHOUSE_CLUSTER`) ------------------------------------------------
    @property
    def local_name(self) -> str:
        """The per-shard table under a cluster's `Distributed` table of this name."""
        return self.name + LOCAL_SUFFIX

    @property
    def sharding_key(self) -> str:
        """Which shard a row goes to: its account's (one account's rows live on one shard), or,
        in tables without an account, its entity's (the first key column). Either way every
        version of one row lands on the same shard, where `FINAL` collapses them."""
        column = "account_id" if "account_id" in self.column_types else self.order_by[0]
        return f"cityHash64({column})"

    def replicated_create_sql(self, database: str, cluster: str) -> str:
        """This table as `<name>_local` on every server of `cluster`: a
        `ReplicatedReplacingMergeTree` whose replicas share the ZooKeeper path of their shard
        (the servers' `{shard}` and `{replica}` macros).

        Block de-duplication is off (`replicated_deduplication_window = 0`), as on one server:
        rows written again are collapsed by `FINAL` like anywhere else, and a block written
        again after retention dropped its day (a replay) is stored, not silently skipped."""
        columns = ",\n  ".join(f"{name} {ch_type}" for name, ch_type in self.columns)
        partition = (
            f"PARTITION BY toYYYYMMDD({self.partition_time_column})\n"
            if self.partition_time_column
            else ""
        )
        path = f"/clickhouse/tables/{{shard}}/{database}/{self.local_name}"
        return (
            f"CREATE TABLE IF NOT EXISTS {database}.{self.local_name} ON CLUSTER {cluster} (\n"
            f"  {columns}\n)\n"
            f"ENGINE = ReplicatedReplacingMergeTree('{path}', '{{replica}}', "
            f"{self.version_column})\n"
            f"{partition}ORDER BY ({', '.join(self.order_by)})\n"
            "SETTINGS replicated_deduplication_window = 0"
            + ("" if self.index_granularity is None else f", {self._granularity}")
        )

    def distributed_create_sql(self, database: str, cluster: str) -> str:
        """`<name>` on every server of `cluster`: a `Distributed` table over `<name>_local`
        with its columns, sharded by `sharding_key`. Reads and writes go through it."""
        return (
            f"CREATE TABLE IF NOT EXISTS {database}.{self.name} ON CLUSTER {cluster} "
            f"AS {database}.{self.local_name}\n"
            f"ENGINE = Distributed({cluster}, {database}, {self.local_name}, {self.sharding_key})"
        )


# On a cluster each table `t` is `t_local` (replicated, per shard) under a Distributed `t`.
LOCAL_SUFFIX = "_local"
_CLUSTER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
_ALTER = re.compile(r"^ALTER TABLE \{db\}\.(\w+) (.+)$", re.DOTALL)
_DROP = re.compile(r"^DROP TABLE IF EXISTS \{db\}\.(\w+)$")
_COPY = re.compile(r"^INSERT INTO \{db\}\.\w+ \([\w, ]+\) SELECT [\w, ]+ FROM \{db\}\.\w+ FINAL$")
_SWAP = re.compile(r"^RENAME TABLE \{db\}\.(\w+) TO \{db\}\.(\w+), \{db\}\.(\w+) TO \{db\}\.\1$")


class ClusterStep(NamedTuple):
    """One statement of a schema change on a cluster, and where it runs: `ON CLUSTER` (in the
    SQL, through the servers' distributed DDL queue), once through the `Distributed` tables (a
    rebuild's copy), or, `each_shard`, on one replica of every shard, which passes it on to the
    shard's other replicas (a replicated table's ALTER)."""

    sql: str
    each_shard: bool = False


def cluster_statements(statement: str, cluster: str) -> tuple[ClusterStep, ...]:
    """What one schema statement written for a single server (`{db}` unexpanded: a migration
    step, the database or `schema_migrations`) becomes on the cluster named `cluster`:

    - `CREATE DATABASE`: the same `ON CLUSTER`;
    - a table's `create_sql`: its `replicated_create_sql`, then its `distributed_create_sql`;
    - `ALTER TABLE t ...`: the same on `t_local`, on each shard, then `t` re-created over it.
      Not `ALTER ... ON CLUSTER`: ClickHouse 18.16 refuses it on a Distributed table when the
      shards replicate internally, and on a replicated table two replicas of a shard can both
      take the task, after which the second one's DDL worker stops for good ("Node exists:
      .../shards/.../executed"). A Distributed table holds no data: re-creating it loses none.
    - a rebuild's steps (`_rebuild`): `DROP TABLE IF EXISTS t` drops `t` and `t_local` `ON
      CLUSTER`; the copy runs once, through the `Distributed` tables (each row written to its
      account's shard); the swap renames the `_local` tables `ON CLUSTER` and drops the
      rebuilt table's `Distributed` table (`t`'s own now reads the rebuilt `t_local`). A swapped
      replicated table keeps its ZooKeeper path (`.../t_rebuilt_local`): a replica added later
      must be created on that path.

    Anything else raises `ValueError`: a new kind of migration step needs its cluster form here.
    """
    checked_cluster_name(cluster)
    if statement == "CREATE DATABASE IF NOT EXISTS {db}":
        return (ClusterStep(f"{statement} ON CLUSTER {cluster}"),)
    table = _table_created_by(statement)
    if table is not None:
        return (
            ClusterStep(table.replicated_create_sql("{db}", cluster)),
            ClusterStep(table.distributed_create_sql("{db}", cluster)),
        )
    alter = _ALTER.match(statement)
    if alter is not None and alter.group(1) in TABLES:
        current = TABLES[alter.group(1)]
        return (
            ClusterStep(f"ALTER TABLE {{db}}.{current.local_name} {alter.group(2)}", True),
            ClusterStep(f"DROP TABLE IF EXISTS {{db}}.{current.name} ON CLUSTER {cluster}"),
            ClusterStep(current.distributed_create_sql("{db}", cluster)),
        )
    return _rebuild_step(statement, cluster)


def _rebuild_step(statement: str, cluster: str) -> tuple[ClusterStep, ...]:
    """The cluster form of one of `_rebuild`'s statements (`cluster_statements`)."""
    on, local = f" ON CLUSTER {cluster}", LOCAL_SUFFIX
    if dropped := _DROP.match(statement):
        name = dropped.group(1)
        return tuple(
            ClusterStep(f"DROP TABLE IF EXISTS {{db}}.{n}{on}") for n in (name, name + local)
        )
    if _COPY.match(statement):
        return (ClusterStep(statement),)
    if swap := _SWAP.match(statement):
        table, replaced, rebuilt = swap.groups()
        return (
            ClusterStep(
                f"RENAME TABLE {{db}}.{table}{local} TO {{db}}.{replaced}{local}, "
                f"{{db}}.{rebuilt}{local} TO {{db}}.{table}{local}{on}"
            ),
            ClusterStep(f"DROP TABLE IF EXISTS {{db}}.{rebuilt}{on}"),
        )
    raise ValueError(f"no cluster form for the schema statement {statement[:200]!r}")


def checked_cluster_name(cluster: str) -> str:
    """`cluster` if it can be a cluster's name in SQL (it is written into statements)."""
    if not _CLUSTER_NAME.match(cluster):
        raise ValueError(f"invalid cluster name {cluster!r}")
    return cluster


def _table_created_by(statement: str) -> Table | None:
    """The table (in any version a migration creates) whose `create_sql("{db}")` is
    `statement`."""
    for table in (*TABLES.values(), *_INITIAL.values(), *map(_rebuilt, TABLES.values())):
        if table.create_sql("{db}") == statement:
            return table
    return None


_EVENT_COLUMNS_V1 = (
    ("request_id", "String"),
    ("account_id", "String"),
    ("event_time", "DateTime"),
    ("event_ms", "UInt64"),
    ("model", "String"),
    ("endpoint", "String"),
    ("prompt_hash", "String"),
    ("prompt_text", "String"),
    ("prompt_chars", "UInt32"),
    ("turn_count", "UInt16"),
    ("response_text", "String"),
    ("prompt_tokens", "Nullable(UInt32)"),
    ("completion_tokens", "Nullable(UInt32)"),
    ("params_json", "String"),
    ("client_ip", "String"),
    ("user_agent", "String"),
    ("api_key_id", "String"),
    ("org_id", "String"),
    ("extra_json", "String"),
    ("embedding", "Array(Float32)"),
    ("source", "String"),
    ("source_offset", "Int64"),
    ("ingested_ms", "UInt64"),
    ("version", "UInt64"),
)
# sha256 of the validated event (`Event.content_hash`): an identical resend is told from a
# conflicting one. Rows stored before migration 5 hold "".
_EVENT_COLUMNS_V5 = (("content_hash", "String"),)
EVENTS_V1 = Table(
    "events", _EVENT_COLUMNS_V1, order_by=("request_id",), partition_time_column="event_time"
)
EVENTS = Table(
    "events",
    _EVENT_COLUMNS_V1[:-1] + _EVENT_COLUMNS_V5 + _EVENT_COLUMNS_V1[-1:],
    order_by=("request_id",),
    partition_time_column="event_time",
)

VERDICTS = Table(
    "verdicts",
    (
        ("verdict_id", "String"),
        ("account_id", "String"),
        ("cluster_id", "String"),
        ("verdict_time", "DateTime"),
        ("verdict_ms", "UInt64"),
        ("requests_seen", "UInt64"),
        ("score", "Float64"),
        ("label", "String"),
        ("reasons_json", "String"),
        ("detector_version", "String"),
        ("version", "UInt64"),
    ),
    order_by=("account_id", "verdict_id"),
    partition_time_column="verdict_time",
)

ACCOUNT_STATE = Table(
    "account_state",
    (
        ("account_id", "String"),
        ("detector", "String"),
        ("requests_seen", "UInt64"),
        ("state_json", "String"),
        ("updated_ms", "UInt64"),
        ("version", "UInt64"),
    ),
    order_by=("account_id", "detector"),
    # A checkpoint is ~12-400 KB (a window of 256 requests, their embeddings included): with
    # 8,192-row granules every state read decompressed each part's whole granule, all of its
    # unmerged versions (33 MB a read in `bench.pipeline`'s 200 events/s run, two fifths of the
    # server's CPU). Migration 9 rebuilds a table created without it.
    index_granularity=8,
)
ACCOUNT_STATE_V1 = replace(ACCOUNT_STATE, index_granularity=None)

CLUSTERS = Table(
    "clusters",
    (
        ("cluster_id", "String"),
        ("updated_time", "DateTime"),
        ("members", "Array(String)"),
        ("score", "Float64"),
        ("label", "String"),
        ("evidence_json", "String"),
        ("version", "UInt64"),
    ),
    order_by=("cluster_id",),
)

_ALERT_COLUMNS_V1 = (
    ("alert_id", "String"),  # also the webhook's idempotency key
    ("created_time", "DateTime"),
    ("kind", "String"),
    ("account_id", "String"),
    ("cluster_id", "String"),
    ("payload_json", "String"),
    ("status", "String"),  # pending | delivered | expired
    ("attempts", "UInt32"),
    ("next_attempt_ms", "UInt64"),
    ("last_error", "String"),
    ("version", "UInt64"),
)
_ALERT_COLUMNS_V4 = (
    ("webhook_id", "String"),
    ("acknowledged_by", "String"),
    ("acknowledged_ms", "UInt64"),
)
ALERTS_V1 = Table(
    "alerts", _ALERT_COLUMNS_V1, order_by=("alert_id",), partition_time_column="created_time"
)
ALERTS = Table(
    "alerts",
    _ALERT_COLUMNS_V1[:-1] + _ALERT_COLUMNS_V4 + _ALERT_COLUMNS_V1[-1:],
    order_by=("alert_id",),
    partition_time_column="created_time",
)

# Leases on alerts (`services.webhooks`): one row per claim, never revised. Among the unexpired
# claims on one attempt of an alert, the earliest (then the smallest token) sends it; each retry
# is a new attempt, so a claim never blocks the next one. Day partitions: retention drops them.
ALERT_CLAIMS = Table(
    "alert_claims",
    (
        ("alert_id", "String"),
        ("attempt", "UInt32"),  # the alert's `attempts` when claimed
        ("token", "String"),  # unique per claim: the dispatcher's name and a random suffix
        ("dispatcher", "String"),
        ("claimed_time", "DateTime"),
        ("claimed_ms", "UInt64"),
        ("lease_until_ms", "UInt64"),
        ("version", "UInt64"),
    ),
    order_by=("alert_id", "attempt", "token"),
    partition_time_column="claimed_time",
)

DEAD_LETTERS = Table(
    "dead_letters",
    (
        ("dead_letter_id", "String"),
        ("request_id", "String"),
        ("reason", "String"),
        ("raw", "String"),
        ("raw_encoding", "String"),
        ("source", "String"),
        ("source_offset", "Int64"),
        ("received_time", "DateTime"),
        ("received_ms", "UInt64"),
        ("version", "UInt64"),
    ),
    order_by=("dead_letter_id",),
    partition_time_column="received_time",
)

RESPONSE_FINGERPRINTS = Table(
    "response_fingerprints",
    (
        ("request_id", "String"),
        ("account_id", "String"),
        ("event_time", "DateTime"),
        ("response_hash", "String"),
        ("minhash", "Array(UInt64)"),
        ("version", "UInt64"),
    ),
    order_by=("request_id",),
    partition_time_column="event_time",
)

API_TOKENS = Table(
    "api_tokens",
    (
        ("token_id", "String"),
        ("token_hash", "String"),  # SHA-256 of the whole token; the token itself is never stored
        ("name", "String"),
        ("role", "String"),
        ("created_time", "DateTime"),
        ("revoked", "UInt8"),
        ("version", "UInt64"),
    ),
    order_by=("token_id",),
)

AUDIT_LOG = Table(
    "audit_log",
    (
        ("audit_id", "String"),
        ("audit_time", "DateTime"),
        ("audit_ms", "UInt64"),
        ("token_id", "String"),
        ("role", "String"),
        ("action", "String"),
        ("resource", "String"),
        ("account_id", "String"),
        ("cluster_id", "String"),
        ("status", "UInt16"),
        ("client_ip", "String"),
        ("version", "UInt64"),
    ),
    order_by=("audit_id",),
    partition_time_column="audit_time",
)

_WEBHOOK_COLUMNS_V3 = (
    ("webhook_id", "String"),
    ("url", "String"),
    ("format", "String"),  # "json" (signed DistillGuard payload), "slack" or "pagerduty"
    ("created_time", "DateTime"),
    ("active", "UInt8"),
    ("version", "UInt64"),
)
# A pagerduty webhook's routing key, AES-GCM sealed under the webhook secret (services.webhooks).
_WEBHOOK_COLUMNS_V7 = (("routing_key_sealed", "String"),)
WEBHOOKS_V3 = Table("webhooks", _WEBHOOK_COLUMNS_V3, order_by=("webhook_id",))
WEBHOOKS = Table(
    "webhooks",
    _WEBHOOK_COLUMNS_V3[:3] + _WEBHOOK_COLUMNS_V7 + _WEBHOOK_COLUMNS_V3[3:],
    order_by=("webhook_id",),
)

# Analysts' dispositions of an account or a campaign (`services.dispositions`): append-only, one
# row per change, never revised; a subject's current disposition is its latest row (`at_ms`,
# then `disposition_id`). Not partitioned: an allowlist outlives any retention window. Sharded by
# subject, so a subject's history lives on one shard.
DISPOSITIONS = Table(
    "dispositions",
    (
        ("subject_id", "String"),
        ("subject_kind", "String"),  # account | cluster
        ("disposition_id", "String"),
        ("disposition", "String"),  # confirmed_extraction | false_positive | allowlisted | none
        ("reason", "String"),
        ("expires_ms", "UInt64"),  # 0: never (required for allowlisted)
        ("assignee", "String"),
        ("note", "String"),
        ("actor", "String"),  # the token's name
        ("token_id", "String"),
        ("at_time", "DateTime"),
        ("at_ms", "UInt64"),
        ("version", "UInt64"),
    ),
    order_by=("subject_id", "subject_kind", "disposition_id"),
)

SCHEMA_MIGRATIONS = Table(
    "schema_migrations",
    (
        ("migration", "UInt32"),
        ("name", "String"),
        ("applied_time", "DateTime"),
        ("version", "UInt64"),
    ),
    order_by=("migration",),
)

TABLES: dict[str, Table] = {
    table.name: table
    for table in (
        EVENTS,
        VERDICTS,
        ACCOUNT_STATE,
        CLUSTERS,
        ALERTS,
        ALERT_CLAIMS,
        DEAD_LETTERS,
        RESPONSE_FINGERPRINTS,
        API_TOKENS,
        AUDIT_LOG,
        WEBHOOKS,
        DISPOSITIONS,
        SCHEMA_MIGRATIONS,
    )
}


@dataclass(frozen=True)
class Migration:
    """One schema step: statements run in order, recorded in `schema_migrations` once applied."""

    number: int
    name: str
    statements: tuple[str, ...]  # may contain `{db}`


def _add_columns(table: str, columns: tuple[tuple[str, str], ...], after: str) -> tuple[str, ...]:
    """`ALTER TABLE ... ADD COLUMN` statements putting `columns`, in order, after `after`."""
    statements = []
    for name, ch_type in columns:
        statements.append(f"ALTER TABLE {{db}}.{table} ADD COLUMN {name} {ch_type} AFTER {after}")
        after = name
    return tuple(statements)


# Tables as the migration that created them made them; later migrations add the other columns.
_INITIAL = {
    ALERTS: ALERTS_V1,
    EVENTS: EVENTS_V1,
    WEBHOOKS: WEBHOOKS_V3,
    ACCOUNT_STATE: ACCOUNT_STATE_V1,
}
REBUILT, REPLACED = "_rebuilt", "_replaced"  # the suffixes of a rebuild's scratch tables


def _rebuilt(table: Table) -> Table:
    return replace(table, name=table.name + REBUILT)


def _rebuild(table: Table) -> tuple[str, ...]:
    """Statements giving `table` its current definition where only creation can (a setting such
    as its index granularity): copy its rows' latest versions into a new table, swap the names,
    drop the old one. On one server, run again from any step, they converge (a copy written
    twice collapses under `FINAL`). Writers should be stopped: a row written between the copy
    and the swap lands in the old table."""
    columns = ", ".join(table.column_names)
    db_table, rebuilt, replaced = (f"{{db}}.{table.name}{s}" for s in ("", REBUILT, REPLACED))
    return (
        f"DROP TABLE IF EXISTS {replaced}",
        _rebuilt(table).create_sql("{db}"),
        f"INSERT INTO {rebuilt} ({columns}) SELECT {columns} FROM {db_table} FINAL",  # noqa: S608
        f"RENAME TABLE {db_table} TO {replaced}, {rebuilt} TO {db_table}",
        f"DROP TABLE IF EXISTS {replaced}",
    )


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "initial tables",
        tuple(
            _INITIAL.get(table, table).create_sql("{db}")
            for table in TABLES.values()
            if table
            not in (SCHEMA_MIGRATIONS, API_TOKENS, AUDIT_LOG, WEBHOOKS, ALERT_CLAIMS, DISPOSITIONS)
        ),
    ),
    Migration(
        2,
        "api tokens and audit log",
        (API_TOKENS.create_sql("{db}"), AUDIT_LOG.create_sql("{db}")),
    ),
    Migration(3, "webhook subscriptions", (WEBHOOKS_V3.create_sql("{db}"),)),
    Migration(
        4,
        "alerts: webhook and acknowledgement",
        _add_columns("alerts", _ALERT_COLUMNS_V4, after="last_error"),
    ),
    Migration(
        5,
        "events: content hash (first write wins)",
        _add_columns("events", _EVENT_COLUMNS_V5, after="ingested_ms"),
    ),
    Migration(6, "alert claims (leases: each alert sent once)", (ALERT_CLAIMS.create_sql("{db}"),)),
    Migration(
        7,
        "webhooks: sealed routing key (pagerduty)",
        _add_columns("webhooks", _WEBHOOK_COLUMNS_V7, after="format"),
    ),
    Migration(8, "dispositions (analysts' feedback)", (DISPOSITIONS.create_sql("{db}"),)),
    Migration(9, "account_state: 8-row index granules (rebuilt)", _rebuild(ACCOUNT_STATE)),
)
