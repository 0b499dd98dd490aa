"""Webhook alerts end to end on both store backends, with a real local HTTP receiver that refuses
the first attempts: every alert arrives, signed, once per idempotency key, also across a
dispatcher restart in the middle of retrying."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
import pytest

from core.batch import Batch
from core.verdicts import ClusterVerdict, Reason, Verdict
from services.webhooks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    AlertSink,
    Dispatcher,
    add_webhook,
    verify,
)
from storage import Store

SECRET = b"test-webhook-secret"
# The receivers listen on loopback, which webhooks may only reach when allowlisted (SSRF).
LOOPBACK = ["127.0.0.0/8", "::1/128"]


class Receiver:
    """A local HTTP endpoint: answers 503 to the first `refuse` requests, then 200."""

    def __init__(self, refuse: int) -> None:
        self.refuse = refuse
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers.items()), body))
                refused = len(receiver.received) <= receiver.refuse
                self.send_response(503 if refused else 200)
                self.end_headers()

            def log_message(self, *_args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()  # refuse further requests at once, not after a read timeout


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver(refuse=3)
    yield server
    server.close()


def _verdict(account: str, label: str = "extraction") -> Verdict:
    return Verdict(
        account_id=account,
        timestamp=datetime(2026, 11, 20, 12, tzinfo=UTC),
        requests_seen=40,
        score=0.8,
        label=label,  # type: ignore[arg-type]
        reasons=[Reason(signal="greedy_share", value=1.0, contribution=0.3)],
        detector_version="fusion-1",
    )


def _queue(
    store: Store, verdicts: list[Verdict], clusters: list[ClusterVerdict] | None = None
) -> None:
    sink = AlertSink(store)
    sink.write(Batch(verdicts=verdicts, clusters=clusters or []))
    sink.flush()


def _dispatcher(store: Store, **options: Any) -> Dispatcher:
    """A dispatcher that may reach the loopback receivers."""
    return Dispatcher(store, SECRET, allow_networks=LOOPBACK, **options)


def _drain(dispatcher: Dispatcher, rounds: int) -> None:
    for _ in range(rounds):
        dispatcher.run_once()
        time.sleep(0.05)


def test_every_alert_arrives_signed_once_per_key_across_a_restart(
    store: Store, receiver: Receiver
) -> None:
    add_webhook(store, receiver.url, allow_networks=LOOPBACK)
    campaign = ClusterVerdict(
        cluster_id="c-1",
        updated=datetime(2026, 11, 20, 12, tzinfo=UTC),
        score=0.9,
        label="extraction",
        members=["a", "b"],
    )
    _queue(
        store, [_verdict("acct-1"), _verdict("acct-2"), _verdict("acct-3", "benign")], [campaign]
    )
    _queue(store, [_verdict("acct-1")])  # a later extraction verdict: no second alert
    first = _dispatcher(store, base_delay_s=0.01, max_delay_s=0.02, seed=1)
    first.run_once()  # refused (503) ...
    first.run_once()
    del first  # ... and the service stops in the middle of retrying
    restarted = _dispatcher(store, base_delay_s=0.01, max_delay_s=0.02, seed=2)
    _drain(restarted, 10)

    keys = [headers["Idempotency-Key"] for headers, _ in receiver.received]
    assert len(set(keys)) == 3  # acct-1, acct-2 and the campaign; never the benign verdict
    delivered = store.query("SELECT alert_id, status, attempts FROM {db}.alerts FINAL")
    assert {r["status"] for r in delivered} == {"delivered"}
    assert len(receiver.received) == 3 + 3  # three refusals, then each alert once
    for headers, body in receiver.received:
        assert verify(SECRET, body, headers[SIGNATURE_HEADER], headers[TIMESTAMP_HEADER])
        assert orjson.loads(body)["alert_id"] == headers["Idempotency-Key"]
    kinds = {orjson.loads(body)["kind"] for _, body in receiver.received}
    assert kinds == {"extraction", "campaign"}


def test_signatures_reject_tampering_and_replays() -> None:
    body, timestamp = b'{"alert_id":"x"}', int(time.time())
    from services.webhooks import sign

    signature = sign(SECRET, timestamp, body)
    assert verify(SECRET, body, signature, str(timestamp))
    assert not verify(SECRET, body + b" ", signature, str(timestamp))
    assert not verify(b"other-secret", body, signature, str(timestamp))
    assert not verify(SECRET, body, signature, str(timestamp - 3600))  # a replayed old request


def test_slack_format_escapes_and_unreachable_hooks_back_off(store: Store) -> None:
    slack = Receiver(refuse=0)
    try:
        add_webhook(store, slack.url, "slack", allow_networks=LOOPBACK)
        _queue(store, [_verdict("<!channel> & <https://evil>")])
        _dispatcher(store, base_delay_s=0.01).run_once()
        ((_, body),) = slack.received
        text = orjson.loads(body)["text"]
        assert "&lt;!channel&gt; &amp; &lt;https://evil&gt;" in text and "<!channel>" not in text
    finally:
        slack.close()
    dead = add_webhook(store, "http://127.0.0.1:9/unreachable", allow_networks=LOOPBACK)
    _queue(store, [_verdict("acct-9")])
    dispatcher = _dispatcher(store, base_delay_s=60.0, seed=0)
    dispatcher.run_once()
    (row,) = store.query(
        "SELECT status, attempts, next_attempt_ms, last_error FROM {db}.alerts FINAL "
        "WHERE webhook_id = %(w)s",
        {"w": dead},
    )
    assert row["status"] == "pending" and row["attempts"] == 1
    assert row["last_error"] == "connection failed"
    assert row["next_attempt_ms"] >= time.time() * 1000 + 29_000  # backoff: 30-60 s
    assert dispatcher.run_once() == 0  # not due yet
