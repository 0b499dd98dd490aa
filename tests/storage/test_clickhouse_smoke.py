"""Smoke test against the real ClickHouse server started by ``scripts/clickhouse-up``.

Run:  scripts/clickhouse-up && pytest -m integration tests/storage/test_clickhouse_smoke.py

The server URL comes from ``DG_CLICKHOUSE_URL`` (default ``clickhouse://127.0.0.1:19000``).
This test deliberately FAILS (never skips) when the server is not reachable.
"""

from __future__ import annotations

import datetime as dt
import os
import uuid

import pytest
from clickhouse_driver import Client

pytestmark = pytest.mark.integration

DEFAULT_URL = "clickhouse://127.0.0.1:19000"


def _client() -> Client:
    url = os.environ.get("DG_CLICKHOUSE_URL", DEFAULT_URL)
    client = Client.from_url(url)
    try:
        client.execute("SELECT 1")
    except Exception as exc:  # any connection problem -> clear failure, never a skip
        pytest.fail(
            f"ClickHouse server not reachable at {url!r} ({type(exc).__name__}: {exc}); "
            "start it with scripts/clickhouse-up",
            pytrace=False,
        )
    return client


@pytest.fixture
def ch():
    client = _client()
    yield client
    client.disconnect()


def test_server_answers_and_reports_version(ch, record_property):
    ((version,),) = ch.execute("SELECT version()")
    assert isinstance(version, str) and version[:1].isdigit(), version
    record_property("clickhouse_version", version)
    print(f"ClickHouse server version: {version}")


def test_replacing_merge_tree_roundtrip(ch):
    db = f"dg_smoke_{uuid.uuid4().hex[:12]}"
    ch.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    try:
        # Syntax kept compatible with ClickHouse 18.16 (Debian) and current releases.
        ch.execute(
            f"""
            CREATE TABLE IF NOT EXISTS {db}.verdicts (
                id String,
                ts DateTime,
                ver UInt64,
                label Nullable(String),
                tags Array(String),
                score Array(Float32),
                flagged UInt8,
                note String DEFAULT ''
            ) ENGINE = ReplacingMergeTree(ver)
            PARTITION BY toYYYYMMDD(ts)
            ORDER BY (id)
            """
        )
        hostile = "x'); DROP TABLE verdicts; -- \\ \" \x00 é"
        ts = dt.datetime(2026, 11, 27, 10, 0, 0)
        rows = [
            {
                "id": "a",
                "ts": ts,
                "ver": 1,
                "label": None,
                "tags": ["t1"],
                "score": [0.5],
                "flagged": 0,
            },
            {
                "id": "a",
                "ts": ts,
                "ver": 2,
                "label": "distill",
                "tags": ["t1", "t2"],
                "score": [0.25, 1.5],
                "flagged": 1,
            },
            {
                "id": hostile,
                "ts": ts,
                "ver": 1,
                "label": hostile,
                "tags": [hostile],
                "score": [],
                "flagged": 0,
            },
        ]
        inserted = ch.execute(
            f"INSERT INTO {db}.verdicts (id, ts, ver, label, tags, score, flagged) VALUES",
            rows,
        )
        assert inserted == 3

        got = ch.execute(
            f"SELECT id, ver, label, tags, score, flagged, note FROM {db}.verdicts FINAL "
            "WHERE id = %(id)s",
            {"id": "a"},
        )
        assert got == [("a", 2, "distill", ["t1", "t2"], [0.25, 1.5], 1, "")]

        got = ch.execute(
            f"SELECT id, label, tags FROM {db}.verdicts FINAL WHERE id = %(id)s",
            {"id": hostile},
        )
        assert got == [(hostile, hostile, [hostile])]

        ((count,),) = ch.execute(f"SELECT count() FROM {db}.verdicts FINAL")
        assert count == 2

        parts = ch.execute(
            "SELECT DISTINCT partition FROM system.parts "
            "WHERE database = %(db)s AND table = 'verdicts' AND active",
            {"db": db},
        )
        assert parts == [("20261127",)]
    finally:
        ch.execute(f"DROP DATABASE IF EXISTS {db}")
    assert ch.execute("SELECT count() FROM system.databases WHERE name = %(db)s", {"db": db}) == [
        (0,)
    ]
