"""What the benchmarks need of the store: a large synthetic data set generated inside ClickHouse
(`INSERT … SELECT FROM system.numbers`: 10M events take seconds, not a Python loop) and the
server's version for the tables they print."""

from __future__ import annotations

from storage.base import Store


def server_version(store: Store) -> str:
    """The ClickHouse version the store runs (benchmark tables name it)."""
    return str(store.query("SELECT version() AS v")[0]["v"])


def drop_database(store: Store) -> None:
    """Drop the store's whole database (a benchmark's own, when it is done)."""
    store.execute("DROP DATABASE IF EXISTS {db}")


def recreate(store: Store) -> None:
    """Drop the store's database and migrate it afresh (benchmark databases only)."""
    drop_database(store)
    store.migrate()


def fill_synthetic(store: Store, accounts: int, events: int, base_seconds: int) -> None:
    """`events` events spread evenly over `accounts` accounts (each account's over a week from
    `base_seconds`), three verdicts and a detector checkpoint per account."""
    spacing = 7 * 86_400 // max(1, events // accounts)
    store.execute(
        "INSERT INTO {db}.events (request_id, account_id, event_time, event_ms, model, endpoint,"
        " prompt_hash, prompt_text, prompt_chars, turn_count, params_json, client_ip, user_agent,"
        " source, source_offset, version)"
        " SELECT concat('req-', toString(number)), concat('acct-', toString(number %% %(a)s)),"
        " toDateTime(%(base)s + intDiv(number, %(a)s) * %(spacing)s),"
        " (%(base)s + intDiv(number, %(a)s) * %(spacing)s) * 1000, 'smollm2-135m-instruct',"
        " '/v1/chat/completions', toString(cityHash64(number)),"
        " concat('Benchmark prompt number ', toString(number)), 32, 1, '{}',"
        " concat('10.', toString(number %% 250), '.0.1'), 'bench', 'bench', number, 1"
        " FROM system.numbers LIMIT %(n)s",
        {"a": accounts, "n": events, "base": base_seconds, "spacing": spacing},
    )
    store.execute(
        "INSERT INTO {db}.verdicts (verdict_id, account_id, cluster_id, verdict_time, verdict_ms,"
        " requests_seen, score, label, reasons_json, detector_version, version)"
        " SELECT concat('v-', toString(number)), concat('acct-', toString(intDiv(number, 3))), '',"
        " toDateTime(%(base)s + number %% 3 * 3600), (%(base)s + number %% 3 * 3600) * 1000,"
        " (number %% 3 + 1) * 10, (cityHash64(number) %% 1000) / 1000,"
        " multiIf(cityHash64(number) %% 1000 >= 500, 'extraction',"
        " cityHash64(number) %% 1000 >= 300, 'suspicious', 'benign'),"
        ' \'[{"signal":"greedy_share","value":1.0,"contribution":0.2}]\', \'fusion-1\', 1'
        " FROM system.numbers LIMIT %(n)s",
        {"n": 3 * accounts, "base": base_seconds},
    )
    store.execute(
        "INSERT INTO {db}.account_state (account_id, detector, requests_seen, state_json,"
        " updated_ms, version) SELECT concat('acct-', toString(number)), 'extraction',"
        " %(per)s, '{}', %(base)s * 1000, 1 FROM system.numbers LIMIT %(a)s",
        {"a": accounts, "per": events // accounts, "base": base_seconds},
    )
