"""Alerts are sent once however many dispatchers run: each claims an alert with a lease first.

Two dispatchers in real processes (an API replica, `distillguard serve`, and `distillguard alerts
dispatch`; or two small dispatcher processes with a short lease, this module run as a script)
work on the same ClickHouse server, and a receiver on 127.0.0.1 counts what arrives per
`Idempotency-Key`. Normally every alert arrives exactly once. When the dispatcher whose request
the receiver holds open is killed with SIGKILL, its claim expires and the other one retries: the
receiver gets that alert twice, de-duplicates it on the key, and nothing is lost. The claim
protocol's race itself is checked step by step on chDB, and two dispatchers in threads of one
process run against both backends.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import orjson
import pytest

from services.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Dispatcher,
    add_webhook,
    claim_winners,
    verify,
)
from storage import ClickHouseServer, Store, queries
from tests.conftest import CLICKHOUSE_URL, drop_database, open_backend, unique_database
from tests.services.test_webhooks import LOOPBACK, _queue, _verdict

SECRET = "alerts-once-secret"
ROOT = Path(__file__).resolve().parents[2]
# The script dispatchers' timings: a lease short enough to expire within the test, and a send
# timeout (the lease must outlast 2 of them plus the recording) long enough that the dispatcher
# is still waiting on its held request when it is killed.
SCRIPT_LEASE_S, SCRIPT_SEND_TIMEOUT_S = 8.0, 2.0


class CountingReceiver:
    """A webhook receiver on 127.0.0.1 that de-duplicates on `Idempotency-Key`, as receivers
    should: `raw` counts every request per key, `processed` lists each key once (in arrival
    order). With `hold_first`, the first request is read and processed, then held open without
    an answer until `release()`, so its sender is caught mid-send."""

    def __init__(self, hold_first: bool = False) -> None:
        self.raw: Counter[str] = Counter()
        self.processed: list[str] = []
        self.bad_requests = 0
        self.held_key = ""
        self.held = threading.Event()
        self._release = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                key = self.headers.get("Idempotency-Key", "")
                signed = verify(
                    SECRET.encode(),
                    body,
                    self.headers.get(SIGNATURE_HEADER, ""),
                    self.headers.get(TIMESTAMP_HEADER, ""),
                )
                with receiver._lock:
                    receiver.raw[key] += 1
                    if not signed or orjson.loads(body).get("alert_id") != key:
                        receiver.bad_requests += 1
                    elif key not in receiver.processed:
                        receiver.processed.append(key)
                    hold = hold_first and not receiver.held.is_set()
                    if hold:
                        receiver.held_key = key
                        receiver.held.set()
                if hold:
                    receiver._release.wait(60)
                try:
                    self.send_response(200)
                    self.end_headers()
                except OSError:
                    pass  # the held request's sender is gone

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def release(self) -> None:
        self._release.set()

    def close(self) -> None:
        self.release()
        self.server.shutdown()
        self.server.server_close()


def _wait(condition: Callable[[], bool], what: str, timeout_s: float = 90.0) -> None:
    deadline = time.time() + timeout_s
    while not condition():
        if time.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _alert_ids(store: Store) -> set[str]:
    return {r["alert_id"] for r in store.query("SELECT alert_id FROM {db}.alerts FINAL")}


def _delivered(store: Store) -> int:
    rows = store.query("SELECT countIf(status = 'delivered') AS n FROM {db}.alerts FINAL")
    return int(rows[0]["n"])


def _claims(store: Store) -> list[dict]:
    return store.query(
        "SELECT alert_id, attempt, token, dispatcher, claimed_ms, lease_until_ms"
        " FROM {db}.alert_claims ORDER BY claimed_ms, token"
    )


class SlowToClaim(Dispatcher):
    """A dispatcher that pauses between finding alerts unclaimed and claiming them, so two of
    them polling together both claim the same alerts: the race the protocol has to settle."""

    pause_s = 0.3

    def _unclaimed(self, alerts: list[dict]) -> list[dict]:
        free = super()._unclaimed(alerts)
        if free:
            time.sleep(self.pause_s)
        return free


def _raced(store: Store) -> int:
    """How many (alert, attempt) two dispatchers claimed at the same time: one's claim made
    while the other's lease still ran (not a retry after it expired)."""
    claims: dict[tuple[str, int], list[dict]] = {}
    for claim in _claims(store):
        claims.setdefault((claim["alert_id"], int(claim["attempt"])), []).append(claim)
    return sum(
        any(
            x["dispatcher"] != y["dispatcher"]
            and x["claimed_ms"] <= y["claimed_ms"] < x["lease_until_ms"]
            for x in group
            for y in group
        )
        for group in claims.values()
    )


# --- the claim protocol, step by step (chDB) ----------------------------------------------------


class Clock:
    """A clock both dispatchers share, moved by hand."""

    def __init__(self) -> None:
        self.now = time.time() + 5  # past the alerts' first due time

    def __call__(self) -> float:
        return self.now


def _stepped(store: Store, clock: Clock, name: str, lease_s: float = 30.0) -> Dispatcher:
    """A dispatcher on the hand-moved clock whose settle wait returns at once: the test orders
    the steps itself. (A generous `settle_s`: a claim slower than half of it is not used.)"""
    return Dispatcher(
        store,
        SECRET.encode(),
        allow_networks=LOOPBACK,
        clock=clock,
        lease_s=lease_s,
        settle_s=5.0,
        name=name,
        sleep=lambda _s: None,
    )


def _pair(store: Store, clock: Clock, lease_s: float = 30.0) -> tuple[Dispatcher, Dispatcher]:
    return _stepped(store, clock, "a", lease_s), _stepped(store, clock, "b", lease_s)


def _three_alerts(store: Store) -> list[dict]:
    add_webhook(store, "http://127.0.0.1:9/never-called", allow_networks=LOOPBACK)
    _queue(store, [_verdict(f"acct-{i}") for i in range(3)])
    alerts = store.query("SELECT * FROM {db}.alerts FINAL ORDER BY alert_id")
    assert len(alerts) == 3
    return [dict(r) for r in alerts]


def _ids(claims: list) -> list[str]:
    return sorted(c.alert["alert_id"] for c in claims)


@pytest.mark.parametrize("first", ["a", "b"])
def test_claimants_that_race_agree_on_one_winner(embedded: Store, first: str) -> None:
    """Both read "unclaimed", both insert a claim, then both decide (in the other order): the
    earlier claim wins every alert, whatever its token, and a late claimant never wins."""
    clock = Clock()
    a, b = _pair(embedded, clock)
    dispatchers = {"a": a, "b": b}
    second = "b" if first == "a" else "a"
    alerts = _three_alerts(embedded)
    ids = sorted(x["alert_id"] for x in alerts)

    free = {name: d._unclaimed(alerts) for name, d in dispatchers.items()}
    assert [len(f) for f in free.values()] == [3, 3]
    staked = {first: dispatchers[first]._stake(free[first])}
    clock.now += 0.001
    staked[second] = dispatchers[second]._stake(free[second])
    won = {name: dispatchers[name]._winners(staked[name]) for name in (second, first)}
    assert won[second] == [] and _ids(won[first]) == ids

    # A late claimant (it read "free" before the others' claims landed) loses to them all.
    late = _stepped(embedded, clock, "0-sorts-first")
    clock.now += 0.001
    assert late._winners(late._stake(alerts)) == []
    assert _ids(dispatchers[first]._winners(staked[first])) == ids  # its view has not changed

    # Once the claims are held, nobody claims those attempts again.
    assert a._unclaimed(alerts) == [] and a.claim(alerts) == []


def test_equal_stamps_are_settled_by_token(embedded: Store) -> None:
    clock = Clock()
    a, b = _pair(embedded, clock)
    alerts = _three_alerts(embedded)
    staked_a, staked_b = a._stake(alerts), b._stake(alerts)  # the same millisecond
    won = [c.token for c in a._winners(staked_a) + b._winners(staked_b)]
    pairs = zip(staked_a, staked_b, strict=True)
    assert sorted(won) == sorted(min(ca.token, cb.token) for ca, cb in pairs)
    rows = [{"alert_id": "x", "attempt": 0, "claimed_ms": 5, "token": t} for t in ("b/2", "a/9")]
    assert claim_winners(rows) == {("x", 0): "a/9"}


def test_an_expired_lease_lets_another_dispatcher_retry(embedded: Store) -> None:
    """a wins and dies before sending: b cannot take the alerts while the lease runs, and
    takes them (and wins) as soon as it has expired."""
    clock = Clock()
    a, b = _pair(embedded, clock, lease_s=30.0)
    alerts = _three_alerts(embedded)
    assert len(a.claim(alerts)) == 3  # ... then a is killed
    clock.now += 29.0
    assert b.claim(b.due()) == []
    clock.now += 1.5
    retried = b.claim(b.due())
    assert _ids(retried) == sorted(x["alert_id"] for x in alerts)
    assert {c.key[1] for c in retried} == {0}  # the same attempt, retried


def test_a_new_attempt_or_a_finished_alert_is_judged_on_its_row(embedded: Store) -> None:
    """A failed attempt recorded by a makes the next attempt claimable at once, though a's claim
    on the last one still runs; a winner whose alert was delivered meanwhile does not send."""
    clock = Clock()
    a, b = _pair(embedded, clock)
    first, second, third = _three_alerts(embedded)
    (won,) = a.claim([first])
    embedded.revise("alerts", won.alert, attempts=1, next_attempt_ms=0)  # a's refused send
    (retry,) = b.claim([dict(r) for r in queries.alert_rows(embedded, [first["alert_id"]])])
    assert retry.key == (first["alert_id"], 1)

    staked = b._stake([second, third])
    embedded.revise("alerts", second, status="delivered")  # someone else finished it
    assert _ids(b._winners(staked)) == [third["alert_id"]]


def test_a_claim_that_lands_late_is_not_used(
    embedded: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim whose insert took over half the settle time may have been missed by a rival that
    already decided, though its stamp is earlier: it is not sent on (its lease lapses instead)."""
    clock = Clock()
    alerts = _three_alerts(embedded)
    slow = Dispatcher(
        embedded, SECRET.encode(), clock=clock, settle_s=0.2, name="slow", sleep=lambda _s: None
    )
    insert = embedded.insert

    def slow_insert(table: str, rows: list[dict], **options: int) -> int:
        time.sleep(0.15)
        return insert(table, rows, **options)

    monkeypatch.setattr(embedded, "insert", slow_insert)
    assert slow.claim(alerts) == []
    assert len(_claims(embedded)) == 3  # the claims stand: nobody else sends meanwhile


# --- two dispatchers in threads, on both backends ------------------------------------------------


def test_two_dispatchers_in_one_process_send_each_alert_once(store: Store, chdb_path: Path) -> None:
    """Two dispatchers (each with its own connection on the server) poll together and both
    claim the same alerts: each alert is still sent once."""
    second = open_backend(store.backend, chdb_path, store.database)
    try:
        two_dispatchers_send_each_alert_once(store, second)
    finally:
        second.close()


@pytest.mark.integration
def test_two_dispatchers_on_the_clickhouse_cluster_send_each_alert_once(
    clickhouse_cluster: str,
) -> None:
    """The same race on the 2x2 cluster (`DG_CLICKHOUSE_CLUSTER`): claims go through the
    Distributed table (synchronous inserts, replicas read in order), so the read-back sees
    both claims and one dispatcher sends."""
    from tests.storage.test_clickhouse_cluster import drop_database, open_cluster_store

    first = open_cluster_store(clickhouse_cluster)
    first.migrate()
    second = open_cluster_store(clickhouse_cluster, first.database)
    try:
        two_dispatchers_send_each_alert_once(first, second)
    finally:
        second.close()
        drop_database(first)
        first.close()


def two_dispatchers_send_each_alert_once(store: Store, second: Store) -> None:
    """Two dispatcher threads, one connection each, poll at the same moments on 12 alerts."""
    receiver = CountingReceiver()
    try:
        add_webhook(store, receiver.url, allow_networks=LOOPBACK)
        dispatchers = [
            SlowToClaim(
                connection,
                SECRET.encode(),
                allow_networks=LOOPBACK,
                lease_s=SCRIPT_LEASE_S,
                settle_s=0.1,
                send_timeout_s=SCRIPT_SEND_TIMEOUT_S,
                name=name,
            )
            for name, connection in (("thread-a", store), ("thread-b", second))
        ]
        rounds = threading.Barrier(2)  # both poll at the same moment: their claims race
        stop = threading.Event()

        def poll(dispatcher: Dispatcher) -> None:
            while not stop.is_set():
                try:
                    rounds.wait(timeout=10)
                except threading.BrokenBarrierError:
                    return
                dispatcher.run_once()

        threads = [threading.Thread(target=poll, args=(d,), daemon=True) for d in dispatchers]
        for thread in threads:
            thread.start()
        for wave in range(3):
            _queue(store, [_verdict(f"acct-{wave}-{i}") for i in range(4)])
            time.sleep(0.2)
        expected = _alert_ids(store)
        assert len(expected) == 12
        _wait(lambda: _delivered(store) == 12, "every alert delivered")
        time.sleep(1.0)  # room for a stray second send to show up
        stop.set()
        rounds.abort()
        for thread in threads:
            thread.join(timeout=30)
        assert set(receiver.processed) == expected
        assert receiver.raw == Counter({key: 1 for key in expected})  # no duplicate at all
        assert receiver.bad_requests == 0
        assert _raced(store) > 0  # the claims did race
    finally:
        receiver.close()


# --- two dispatcher processes on the ClickHouse server ------------------------------------------


def _environment(database: str) -> dict[str, str]:
    return {
        **os.environ,
        "DG_STORE": "server",
        "DG_CLICKHOUSE_URL": CLICKHOUSE_URL,
        "DG_CLICKHOUSE_CLUSTER": "",
        "DG_DATABASE": database,
        "DG_WEBHOOK_SECRET": SECRET,
        "DG_WEBHOOK_RETRY_BASE_S": "0.2",
        "DG_WEBHOOK_ALLOW_NETWORKS": orjson.dumps(LOOPBACK).decode(),
        "DG_METRICS_PORT": "0",  # the dispatcher's /metrics and /healthz: not needed here
    }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def server_store() -> Iterator[Store]:
    store = ClickHouseServer(CLICKHOUSE_URL, database=unique_database())
    store.migrate()
    yield store
    drop_database(store)


def _stop(processes: list[subprocess.Popen]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


@pytest.mark.integration
def test_an_api_replica_and_a_dispatcher_send_each_alert_once(
    server_store: Store, tmp_path: Path
) -> None:
    """`distillguard serve` (with its dispatcher) and `distillguard alerts dispatch`, as shipped,
    on the same database: every alert arrives once, not once per process."""
    store = server_store
    receiver = CountingReceiver()
    port = _free_port()
    cli = [sys.executable, "-m", "distillguard.cli"]
    commands = {
        "serve": [*cli, "serve", "--port", str(port)],
        "dispatch": [*cli, "alerts", "dispatch"],
    }
    processes = [
        subprocess.Popen(
            command,
            env=_environment(store.database),
            cwd=ROOT,
            stdout=(tmp_path / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for name, command in commands.items()
    ]
    try:
        add_webhook(store, receiver.url, allow_networks=LOOPBACK)

        def serving() -> bool:
            for name, process in zip(commands, processes, strict=True):
                log = (tmp_path / f"{name}.log").read_text(errors="replace")[-3000:]
                assert process.poll() is None, f"{name} exited:\n{log}"
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
            except httpx.HTTPError:
                return False

        _wait(serving, "the API replica")
        for wave in range(4):  # alerts keep arriving while both poll
            _queue(store, [_verdict(f"acct-{wave}-{i}") for i in range(5)])
            time.sleep(0.7)
        expected = _alert_ids(store)
        assert len(expected) == 20
        _wait(lambda: _delivered(store) == 20, "every alert delivered")
        time.sleep(2.0)  # a second send, if any, would land by now
        assert set(receiver.processed) == expected
        assert receiver.raw == Counter({key: 1 for key in expected})  # no duplicate at all
        assert receiver.bad_requests == 0
        winners = claim_winners(_claims(store))
        assert {key for key, _ in winners} == expected  # every alert was claimed before its send
    finally:
        _stop(processes)
        receiver.close()


@pytest.mark.integration
def test_a_dispatcher_killed_mid_send_loses_nothing_and_sends_nothing_twice(
    server_store: Store, tmp_path: Path
) -> None:
    """The receiver holds the first request open; its sender is killed with SIGKILL. Its lease
    expires and the other dispatcher retries: the receiver sees that one alert twice (it was
    processed once), every other alert once, and every alert is delivered."""
    dispatcher_killed_mid_send(server_store, CLICKHOUSE_URL, tmp_path)


@pytest.mark.integration
def test_a_dispatcher_killed_mid_send_on_the_clickhouse_cluster(
    clickhouse_cluster: str, tmp_path: Path
) -> None:
    """The same kill on the 2x2 cluster: claims and alert rows go through the Distributed
    tables, and the lease still holds the retry back until the dead sender's claim expires."""
    from tests.storage.test_clickhouse_cluster import drop_database, open_cluster_store

    store = open_cluster_store(clickhouse_cluster)
    store.migrate()
    try:
        dispatcher_killed_mid_send(store, clickhouse_cluster, tmp_path)
    finally:
        drop_database(store)
        store.close()


def dispatcher_killed_mid_send(store: ClickHouseServer, url: str, tmp_path: Path) -> None:
    """Two dispatcher processes on `store` (at `url`, on its cluster if any); the one sending
    the held request is killed -9 (see the tests above)."""
    receiver = CountingReceiver(hold_first=True)
    names = ("dispatcher-a", "dispatcher-b")
    command = [sys.executable, "-m", "tests.services.test_alerts_once", url]
    processes = {
        name: subprocess.Popen(
            [*command, store.database, name, store.cluster or ""],
            env=_environment(store.database),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=(tmp_path / f"{name}.log").open("wb"),
            text=True,
        )
        for name in names
    }
    try:
        add_webhook(store, receiver.url, allow_networks=LOOPBACK)
        for name, process in processes.items():  # both are polling before any alert exists
            assert process.stdout is not None
            if process.stdout.readline().strip() != "ready":
                log = (tmp_path / f"{name}.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"{name} did not start:\n{log}")
        _queue(store, [_verdict(f"acct-{i}") for i in range(8)])
        expected = _alert_ids(store)
        assert len(expected) == 8

        _wait(receiver.held.is_set, "the first request")
        held = receiver.held_key
        winner = claim_winners(queries.live_alert_claims(store, [held], int(time.time() * 1000)))[
            (held, 0)
        ]
        sender = winner.split("/")[0]
        processes[sender].send_signal(signal.SIGKILL)
        processes[sender].wait(timeout=10)
        killed_at_ms = int(time.time() * 1000)
        (row,) = queries.alert_rows(store, [held])
        assert (row["status"], row["attempts"]) == ("pending", 0)  # killed mid-send, unrecorded
        receiver.release()

        survivor = next(name for name in names if name != sender)
        assert processes[survivor].poll() is None
        _wait(lambda: _delivered(store) == 8, "every alert delivered")
        time.sleep(1.0)
        assert set(receiver.processed) == expected  # none lost, each processed once
        assert receiver.raw == Counter({key: 2 if key == held else 1 for key in expected})
        assert receiver.bad_requests == 0
        assert _raced(store) > 0  # both processes claimed the same alerts at least once

        claims = [c for c in _claims(store) if c["alert_id"] == held]
        dead = [c for c in claims if c["dispatcher"] == sender]
        retry = [c for c in claims if c["dispatcher"] == survivor]
        assert dead and retry
        # The retry waited for the dead dispatcher's lease to run out.
        lease_until = max(c["lease_until_ms"] for c in dead)
        assert lease_until > killed_at_ms
        assert max(c["claimed_ms"] for c in retry) >= lease_until
        (row,) = queries.alert_rows(store, [held])
        assert (row["status"], row["attempts"]) == ("delivered", 1)
    finally:
        _stop(list(processes.values()))
        receiver.close()


def _run_dispatcher(url: str, database: str, name: str, cluster: str = "") -> None:
    """A dispatcher process with a short lease (the kill test's), slow to claim so that both
    processes claim the same alerts: prints "ready", then polls."""
    store = ClickHouseServer(url, database=database, cluster=cluster or None)
    dispatcher = SlowToClaim(
        store,
        SECRET.encode(),
        base_delay_s=0.2,
        allow_networks=LOOPBACK,
        lease_s=SCRIPT_LEASE_S,
        settle_s=0.3,
        send_timeout_s=SCRIPT_SEND_TIMEOUT_S,
        name=name,
    )
    dispatcher.due()  # the store answers
    print("ready", flush=True)
    dispatcher.run(threading.Event(), interval_s=0.2)


if __name__ == "__main__":
    _run_dispatcher(*sys.argv[1:5])


def test_lease_and_settle_come_from_the_settings(embedded: Store) -> None:
    """`DG_ALERT_LEASE_S` and `DG_ALERT_SETTLE_S` reach every dispatcher `serve` or `alerts
    dispatch` builds; a lease too short to settle and send fails at start, with the reason."""
    from core.settings import Settings
    from distillguard.wiring import build_dispatcher

    settings = Settings(webhook_secret="s", alert_lease_s=45.0, alert_settle_s=0.25)
    dispatcher = build_dispatcher(settings, embedded)
    assert dispatcher is not None
    assert (dispatcher.lease_ms, dispatcher.settle_s) == (45_000, 0.25)
    with pytest.raises(ValueError, match="lease_s=20.0 is too short"):
        build_dispatcher(
            Settings(webhook_secret="s", alert_lease_s=20.0, alert_settle_s=0.5), embedded
        )
