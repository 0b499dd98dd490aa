"""The store on a ClickHouse cluster (`DG_CLICKHOUSE_CLUSTER`): real clickhouse-server processes
(Debian's 18.16), 2 shards x 2 replicas on loopback ports, coordinated by Apache ZooKeeper, all
started by scripts/clickhouse-cluster-up (the `clickhouse_cluster` fixture starts it when the test
scripts did not; scripts/clickhouse-cluster-down stops it).

- the whole store contract suite (tests/storage/test_store_contract.py) on the cluster;
- idempotent re-inserts, first-write-wins and `FINAL` across shards, with every account's rows on
  the one shard its `cityHash64(account_id)` names, on both of its replicas;
- a replica killed (-9) mid-stream, while rows are being written, loses nothing.

Run:  pytest -m integration tests/storage/test_clickhouse_cluster.py
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from clickhouse_driver import Client

from core.events import Event, parse_event
from core.settings import Settings
from storage import ClickHouseServer, Store, StoreError, open_store
from storage.checkpoints import account_states
from storage.rows import event_row
from storage.schema import MIGRATIONS, SCHEMA_MIGRATIONS, TABLES, cluster_statements
from storage.server import CLUSTER_SETTINGS, split_url
from tests.conftest import CLICKHOUSE_CLUSTER, SCRIPT_ENV, cluster_script, unique_database
from tests.storage import test_store_contract as contract
from tests.storage.test_store_evidence import checkpoint_row

# Every test of the store contract suite, collected here too, runs against `store` below: the
# cluster. (A test added to the suite joins automatically.)
globals().update({name: test for name, test in vars(contract).items() if name.startswith("test_")})

DAY_MS = 1_795_000_000_000  # 2026-11-18, UTC


def open_cluster_store(url: str, database: str | None = None) -> ClickHouseServer:
    return ClickHouseServer(url, database=database or unique_database(), cluster=CLICKHOUSE_CLUSTER)


def drop_database(store: Store) -> None:
    store.execute(f"DROP DATABASE IF EXISTS {{db}} ON CLUSTER {CLICKHOUSE_CLUSTER}")


def nodes(store: Store) -> dict[tuple[int, int], Client]:
    """A client of each server, by (shard, replica), from the cluster's own definition."""
    rows = store.query(
        "SELECT shard_num, replica_num, host_address, port FROM system.clusters "
        "WHERE cluster = %(cluster)s ORDER BY shard_num, replica_num",
        {"cluster": CLICKHOUSE_CLUSTER},
    )
    assert len(rows) == 4, rows
    return {
        (int(r["shard_num"]), int(r["replica_num"])): Client(
            r["host_address"], port=int(r["port"]), connect_timeout=2, send_receive_timeout=30
        )
        for r in rows
    }


def empty_tables(store: Store) -> None:
    """Between contract tests on one migrated database (migrating anew on a cluster costs ~8 s
    of ON CLUSTER DDL): drop every partition of each table that holds rows, on the first
    replica of every shard (replicated: the other replica follows), and wait until no server
    holds any. (Not TRUNCATE: on a replica that is not the leader, 18.16 deadlocks it.)"""
    names = [name for name in TABLES if name != SCHEMA_MIGRATIONS.name]
    counts = store.query(
        " UNION ALL ".join(f"SELECT '{n}' AS name, count() AS n FROM {{db}}.{n}" for n in names)
    )
    filled = [TABLES[r["name"]].local_name for r in counts if r["n"]]
    if not filled:
        return
    clients = nodes(store)
    try:
        for (_, replica), client in clients.items():
            if replica != 1:
                continue
            for local in filled:
                partitions = client.execute(
                    "SELECT DISTINCT partition FROM system.parts "
                    "WHERE database = %(db)s AND table = %(table)s AND active",
                    {"db": store.database, "table": local},
                )
                for (partition,) in partitions:  # e.g. 20261127, or tuple() when unpartitioned
                    client.execute(
                        f"ALTER TABLE {store.database}.{local} DROP PARTITION {partition}"
                    )
        deadline = time.monotonic() + 60
        for local in filled:
            for client in clients.values():
                while client.execute(f"SELECT count() FROM {store.database}.{local}") != [(0,)]:
                    assert time.monotonic() < deadline, f"{local} not emptied"
                    time.sleep(0.1)
    finally:
        for client in clients.values():
            client.disconnect()


@pytest.fixture(scope="module")
def cluster_database(clickhouse_cluster: str) -> Iterator[ClickHouseServer]:
    """One database on the cluster, migrated ON CLUSTER, for this module's contract tests."""
    store = open_cluster_store(clickhouse_cluster)
    store.migrate()
    yield store
    drop_database(store)
    store.close()


@pytest.fixture(params=[pytest.param("cluster", marks=pytest.mark.integration)])
def store(cluster_database: ClickHouseServer) -> Iterator[Store]:
    """The contract suite's `store` (tests/conftest.py), here on the cluster: emptied after
    each test instead of a new database each."""
    yield cluster_database
    empty_tables(cluster_database)


# --- the schema's cluster form (no cluster needed) ----------------------------------------------
def test_every_migration_step_has_a_cluster_form_current_clickhouse_parses(
    embedded: Store,
) -> None:
    statements = [
        "CREATE DATABASE IF NOT EXISTS {db}",
        SCHEMA_MIGRATIONS.create_sql("{db}"),
        *(s for migration in MIGRATIONS for s in migration.statements),
    ]
    for statement in statements:
        steps = cluster_statements(statement, CLICKHOUSE_CLUSTER)
        assert steps, statement
        for sql, each_shard in steps:
            # a replicated table's ALTER runs on each shard; a rebuild's copy once, through the
            # Distributed tables; everything else ON CLUSTER
            assert each_shard == sql.startswith("ALTER TABLE {db}.")
            once = sql.startswith("INSERT INTO {db}.")
            assert (f"ON CLUSTER {CLICKHOUSE_CLUSTER}" in sql) != (each_shard or once)
            # current ClickHouse (chDB) parses what 18.16 runs in the tests below
            (parsed,) = embedded.query(
                "SELECT formatQuery(%(sql)s) AS q", {"sql": sql.replace("{db}", "dg")}
            )
            assert parsed["q"].startswith(("CREATE", "DROP", "ALTER", "INSERT", "RENAME"))
    events = cluster_statements(TABLES["events"].create_sql("{db}"), "c")
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{db}/events_local'"
        in events[0].sql
    )
    assert events[1].sql.endswith(
        "ENGINE = Distributed(c, {db}, events_local, cityHash64(account_id))"
    )
    clusters = cluster_statements(TABLES["clusters"].create_sql("{db}"), "c")
    assert clusters[1].sql.endswith("cityHash64(cluster_id))")  # no account: its entity's shard
    alter = cluster_statements("ALTER TABLE {db}.alerts ADD COLUMN x String AFTER kind", "c")
    assert [step.sql.split(" (")[0].split("\n")[0] for step in alter] == [
        "ALTER TABLE {db}.alerts_local ADD COLUMN x String AFTER kind",
        "DROP TABLE IF EXISTS {db}.alerts ON CLUSTER c",
        "CREATE TABLE IF NOT EXISTS {db}.alerts ON CLUSTER c AS {db}.alerts_local",
    ]
    swap = cluster_statements(
        "RENAME TABLE {db}.t TO {db}.t_replaced, {db}.t_rebuilt TO {db}.t", "c"
    )
    assert [step.sql for step in swap] == [
        "RENAME TABLE {db}.t_local TO {db}.t_replaced_local, {db}.t_rebuilt_local TO "
        "{db}.t_local ON CLUSTER c",
        "DROP TABLE IF EXISTS {db}.t_rebuilt ON CLUSTER c",
    ]
    with pytest.raises(ValueError, match="no cluster form"):
        cluster_statements("OPTIMIZE TABLE {db}.events FINAL", "c")
    with pytest.raises(ValueError, match="invalid cluster name"):
        cluster_statements("CREATE DATABASE IF NOT EXISTS {db}", "c; DROP TABLE x")


def test_cluster_url_and_settings() -> None:
    assert split_url("clickhouse://u:p%40ss@h1:9001,h2,[::1]:9003") == (
        "clickhouse",
        [("h1", 9001), ("h2", 9000), ("::1", 9003)],
        "u",
        "p@ss",
    )
    assert split_url("clickhouse://127.0.0.1:19000") == (
        "clickhouse",
        [("127.0.0.1", 19000)],
        "default",
        "",
    )
    for bad in ("http://h:1", "clickhouse://", "clickhouse://h:1,", "clickhouse://h:x"):
        with pytest.raises(ValueError, match="expected clickhouse://"):
            split_url(bad)
    single = ClickHouseServer("clickhouse://127.0.0.1:1")  # connects lazily
    assert single.cluster is None and single.url == "clickhouse://127.0.0.1:1"
    on_cluster = ClickHouseServer("clickhouse://a:1,b:2", cluster="dg")
    assert on_cluster.cluster == "dg" and on_cluster.url == "clickhouse://a:1,b:2"
    assert CLUSTER_SETTINGS["insert_distributed_sync"] == 1
    with pytest.raises(StoreError, match="DG_STORE=server"):
        open_store(Settings(store="embedded", clickhouse_cluster="dg"), migrate=False)


# --- across shards --------------------------------------------------------------------------------
def _events(count: int, accounts: int, start: int = 0, prompt: str = "prompt") -> list[Event]:
    events = []
    for i in range(start, start + count):
        raw = (
            f'{{"request_id": "req-{i}", "account_id": "acct-{i % accounts}", '
            f'"timestamp": {DAY_MS + i}, "prompt": "{prompt} {i}"}}'
        )
        event = parse_event(raw.encode(), "test")
        assert isinstance(event, Event)
        events.append(event)
    return events


def expected_shards(store: Store, accounts: list[str]) -> dict[str, int]:
    """The shard (1, 2) each account's rows belong on: `cityHash64(account_id)` modulo the two
    equal shard weights, computed by the server."""
    rows = store.query(
        "SELECT account_id, modulo(cityHash64(account_id), 2) + 1 AS shard "
        "FROM (SELECT arrayJoin(%(accounts)s) AS account_id)",
        {"accounts": accounts},
    )
    return {r["account_id"]: int(r["shard"]) for r in rows}


def local_rows(client: Client, database: str, table: str, columns: str) -> set[tuple]:
    return set(client.execute(f"SELECT {columns} FROM {database}.{table}_local FINAL"))


def wait_for_replicas(
    clients: dict[tuple[int, int], Client],
    database: str,
    table: str,
    columns: str,
    expected: dict[int, set[tuple]],
    timeout_s: float = 90.0,
) -> None:
    """Until every server holds exactly its shard's expected rows (replication is asynchronous:
    a replica fetches what the other stored)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = {}
        for (shard, replica), client in clients.items():
            try:
                found[(shard, replica)] = local_rows(client, database, table, columns)
            except Exception as exc:  # noqa: BLE001 - a restarting server: ask again
                found[(shard, replica)] = {("unreachable", repr(exc))}
        if all(found[key] == expected[key[0]] for key in clients):
            return
        if time.monotonic() > deadline:
            summary = {
                key: (len(rows), len(expected[key[0]]), sorted(rows ^ expected[key[0]])[:3])
                for key, rows in found.items()
            }
            pytest.fail(f"{table}: replicas differ from their shard's rows: {summary}")
        time.sleep(0.5)


@pytest.mark.integration
def test_migration_9_rebuilds_account_state_on_the_cluster(clickhouse_cluster: str) -> None:
    """The rebuild's cluster form on a database of the release before: every account's latest
    checkpoint survives, and every server's per-shard table has 8-row granules."""
    store = open_cluster_store(clickhouse_cluster)
    try:
        assert store.migrate(upto=8) == list(range(1, 9))
        accounts = [f"acct-{i}" for i in range(30)]
        store.insert("account_state", [checkpoint_row(a, 1) for a in accounts])
        store.insert(
            "account_state", [checkpoint_row(a, 2 + i % 3) for i, a in enumerate(accounts)]
        )
        assert store.migrate() == [9]
        saved = account_states(store, "extraction", accounts)
        assert {a: s.requests_seen for a, s in saved.items()} == {
            a: 2 + i % 3 for i, a in enumerate(accounts)
        }
        for client in nodes(store).values():
            tables = client.execute(
                "SELECT name FROM system.tables WHERE database = %(db)s", {"db": store.database}
            )
            assert sorted(n for (n,) in tables if n.startswith("account_state")) == [
                "account_state",
                "account_state_local",
            ]
            ((create,),) = client.execute(f"SHOW CREATE TABLE {store.database}.account_state_local")
            assert "index_granularity = 8" in create and "index_granularity = 8192" not in create
            client.disconnect()
    finally:
        drop_database(store)
        store.close()


def test_idempotency_and_final_hold_across_shards(store: Store) -> None:
    assert isinstance(store, ClickHouseServer) and store.cluster == CLICKHOUSE_CLUSTER
    accounts = 40
    events = _events(2000, accounts)
    rows = [event_row(e, source="test", offset=i) for i, e in enumerate(events)]
    rng = random.Random(7)
    store.insert("events", rows, batch_size=500)  # every batch spans both shards
    again = rows[:1000]
    rng.shuffle(again)
    store.insert("events", again, batch_size=333)
    store.insert("events", rows, batch_size=2000)
    # the same request ids resent later with other payloads: the first write wins
    later = [
        event_row(e, source="test", ingested_ms=10_000)
        for e in _events(100, accounts, prompt="changed")
    ]
    store.insert("events", later)
    assert store.count("events") == 2000
    assert store.count("events", final=False) >= 2000
    stored = store.query("SELECT request_id, account_id, prompt_text FROM {db}.events FINAL")
    assert sorted((r["request_id"], r["prompt_text"]) for r in stored) == sorted(
        (e.request_id, e.prompt_text) for e in events
    )

    # revisions of one row replace it under FINAL (a higher version), across shards
    names = [f"acct-{i}" for i in range(accounts)]
    verdicts = [
        {"verdict_id": "v", "account_id": a, "verdict_time": DAY_MS // 1000, "version": 1}
        for a in names
    ]
    store.insert("verdicts", verdicts)
    for row in verdicts[::2]:
        store.revise("verdicts", row, label="extraction", score=0.9)
    labels = {
        r["account_id"]: r["label"]
        for r in store.query("SELECT account_id, label FROM {db}.verdicts FINAL")
    }
    assert labels == {a: ("extraction" if i % 2 == 0 else "") for i, a in enumerate(names)}

    # every account's rows on the one shard its key names, on both replicas of it
    shard_of = expected_shards(store, names)
    assert set(shard_of.values()) == {1, 2}  # both shards hold accounts
    clients = nodes(store)
    try:
        expected_events = {
            shard: {
                (e.request_id, e.account_id, e.prompt_text)
                for e in events
                if shard_of[e.account_id] == shard
            }
            for shard in (1, 2)
        }
        wait_for_replicas(
            clients,
            store.database,
            "events",
            "request_id, account_id, prompt_text",
            expected_events,
        )
        expected_verdicts = {
            shard: {(a, labels[a]) for a in names if shard_of[a] == shard} for shard in (1, 2)
        }
        wait_for_replicas(
            clients, store.database, "verdicts", "account_id, label", expected_verdicts
        )
    finally:
        for client in clients.values():
            client.disconnect()

    # any server of the cluster answers the same (a client entering at shard 2's last replica)
    other = open_cluster_store(
        "clickhouse://" + ",".join(reversed(store.url.split("://")[1].split(","))),
        database=store.database,
    )
    try:
        assert other.count("events") == 2000
        assert other.query("SELECT count() AS n FROM {db}.verdicts FINAL WHERE label != ''") == [
            {"n": accounts // 2}
        ]
    finally:
        other.close()


# --- a replica killed mid-stream ----------------------------------------------------------------
def server_pid(run_dir: Path, node: str) -> int:
    """The pid of cluster server `node` (s1r1 ...), checked against its command line."""
    pid = int((run_dir / node / "clickhouse-server.pid").read_text().strip())
    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    assert f"--config-file={run_dir / node / 'etc' / 'config.xml'}".encode() in cmdline
    return pid


@pytest.mark.integration
@pytest.mark.serial  # kills and restarts a server of the cluster the other tests here use
def test_a_replica_killed_mid_stream_loses_nothing(clickhouse_cluster: str) -> None:
    """s1r1, the server the store is connected to and shard 1's first replica (the one that
    takes shard 1's writes), is killed -9 while an INSERT through the Distributed table is in
    flight; batches keep coming (the driver fails over to the next server of the URL, the
    Distributed table to shard 1's other replica) until it is started again, and after. A batch
    that fails is written again, as the worker does (writes are idempotent). Every row ends up
    stored once, on its account's shard, on both of its replicas."""
    run_dir = Path(SCRIPT_ENV.get("DG_RUN_DIR", "/tmp/distillguard-run")) / "ch-cluster"
    store = open_cluster_store(clickhouse_cluster)
    batch, accounts = 200, 97
    written: list[Event] = []
    retries: list[str] = []
    in_flight, restarted, stop = threading.Event(), threading.Event(), threading.Event()

    def write() -> None:
        k = after_restart = 0
        while not stop.is_set():
            events = _events(batch, accounts, start=k * batch)
            rows = [event_row(e, source="stream", offset=i) for i, e in enumerate(events)]
            deadline = time.monotonic() + 120
            while True:
                try:
                    in_flight.set()
                    store.insert("events", rows)
                    break
                except StoreError as exc:  # the worker's retry: the same batch again
                    retries.append(str(exc)[:300])
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
                finally:
                    in_flight.clear()
            written.extend(events)
            k += 1
            if restarted.is_set():
                after_restart += 1
                if after_restart >= 10:
                    return
            time.sleep(0.01)

    try:
        store.migrate()
        writer = threading.Thread(target=write, name="writer", daemon=True)
        writer.start()
        while len(written) < 10 * batch and writer.is_alive():
            time.sleep(0.01)
        pid = server_pid(run_dir, "s1r1")
        while not in_flight.wait(0.001) and writer.is_alive():
            pass
        os.kill(pid, signal.SIGKILL)
        at_kill = len(written)
        while len(written) < at_kill + 15 * batch and writer.is_alive():
            time.sleep(0.01)
        assert writer.is_alive(), "the writer gave up while a replica was down"
        during_outage = len(written) - at_kill
        cluster_script("up")  # starts the missing server only
        restarted.set()
        writer.join(timeout=300)
        assert not writer.is_alive()
        stop.set()
        assert during_outage >= 15 * batch  # rows went on being written while it was down
        assert len(written) >= at_kill + during_outage + 10 * batch  # and after it was back
        print(f"{len(written)} rows, {during_outage} while s1r1 was down, {len(retries)} retries")

        names = sorted({e.account_id for e in written})
        assert store.count("events") == len(written)
        stored = store.query("SELECT request_id FROM {db}.events FINAL")
        assert sorted(r["request_id"] for r in stored) == sorted(e.request_id for e in written)
        shard_of = expected_shards(store, names)
        assert set(shard_of.values()) == {1, 2}
        clients = nodes(store)
        try:
            # the restarted replica caught up, and each shard holds exactly its accounts' rows
            wait_for_replicas(
                clients,
                store.database,
                "events",
                "request_id, account_id",
                {
                    shard: {
                        (e.request_id, e.account_id)
                        for e in written
                        if shard_of[e.account_id] == shard
                    }
                    for shard in (1, 2)
                },
            )
        finally:
            for client in clients.values():
                client.disconnect()
    finally:
        stop.set()
        cluster_script("up")  # whatever happened, leave the whole cluster running
        drop_database(store)
        store.close()
