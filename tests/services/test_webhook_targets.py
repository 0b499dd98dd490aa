"""Webhook targets (SSRF) and per-alert isolation: URLs are refused when registered and again
before every send unless they are public or allowlisted; a broken or hostile target only ever
affects its own alert, and analysts see a generic error, never what the target answered.

Every request here goes to loopback receivers; the public address is only ever validated."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from services.webhooks import (
    Dispatcher,
    WebhookURLError,
    add_webhook,
    check_target,
    webhooks,
)
from storage import Store, queries
from tests.services.test_webhooks import LOOPBACK, SECRET, Receiver, _queue, _verdict

LEAK = "INTERNAL-SECRET-7f3a"  # what a hostile or internal target answers; analysts never see it

REFUSED = {
    "loopback": "http://127.0.0.1:8080/hook",
    "loopback IPv6": "http://[::1]/hook",
    "10/8": "http://10.1.2.3/hook",
    "172.16/12": "http://172.16.0.1/hook",
    "172.16/12 top": "https://172.31.255.254/hook",
    "192.168/16": "http://192.168.1.1/hook",
    "cloud metadata": "http://169.254.169.254/latest/meta-data/",
    "link-local IPv6": "http://[fe80::1]/hook",
    "unique-local IPv6": "http://[fc00::1]/hook",
    "IPv4-mapped loopback": "http://[::ffff:127.0.0.1]/hook",
    "IPv4-mapped metadata": "http://[::ffff:169.254.169.254]/hook",
    "6to4 of metadata": "http://[2002:a9fe:a9fe::1]/hook",
    "CGNAT": "http://100.64.0.1/hook",
    "unspecified": "http://0.0.0.0/hook",
    "unspecified IPv6": "http://[::]/hook",
    "multicast": "http://224.0.0.1/hook",
    "broadcast": "http://255.255.255.255/hook",
    "name of loopback": "http://localhost:8080/hook",
    "CR/LF": "http://93.184.215.14/hook\r\nX-Injected: 1",
    "LF in host": "http://93.184.215.14\n.example/hook",
    "tab": "http://93.184.215.14/ho\tok",
    "space": "http://93.184.215.14/a b",
    "NUL": "http://93.184.215.14/\x00",
    "userinfo": "http://user:secret@93.184.215.14/hook",
    "user only": "https://token@93.184.215.14/hook",
    "ftp": "ftp://93.184.215.14/hook",
    "javascript": "javascript:alert(1)",
    "file": "file:///etc/passwd",
    "no host": "http:///hook",
}


@pytest.mark.parametrize("url", REFUSED.values(), ids=REFUSED.keys())
def test_every_forbidden_target_is_refused(url: str) -> None:
    with pytest.raises(WebhookURLError) as refused:
        check_target(url)
    assert isinstance(refused.value, ValueError)  # routes that map ValueError to 4xx keep working
    assert refused.value.reason.startswith("refused: ")


def test_registration_stores_nothing_it_refuses(embedded: Store) -> None:
    for url in REFUSED.values():
        with pytest.raises(WebhookURLError):
            add_webhook(embedded, url)
    assert webhooks(embedded, active_only=False) == []
    assert embedded.count("webhooks") == 0


def test_public_addresses_pass_validation_only() -> None:
    """Validated, never contacted: numeric hosts resolve without any lookup or traffic."""
    target = check_target("https://93.184.215.14:8443/hook?x=1")
    assert [str(a) for a in target.addresses] == ["93.184.215.14"]
    assert [str(a) for a in check_target("http://[2606:4700::1111]/").addresses] == [
        "2606:4700::1111"
    ]


def test_the_allowlist_opens_its_networks_only() -> None:
    assert [str(a) for a in check_target("http://localhost:8080/hook", LOOPBACK).addresses] == [
        "127.0.0.1"
    ]
    mapped = check_target("http://[::ffff:127.0.0.1]:9/hook", ["127.0.0.0/8"])
    assert [str(a) for a in mapped.addresses] == ["127.0.0.1"]  # connected to as IPv4
    for url in (REFUSED["10/8"], REFUSED["cloud metadata"], REFUSED["CR/LF"], REFUSED["userinfo"]):
        with pytest.raises(WebhookURLError):
            check_target(url, LOOPBACK)
    with pytest.raises(ValueError, match="webhook_allow_networks"):
        check_target("http://127.0.0.1/", ["not-a-network"])


def test_a_send_connects_to_the_checked_address_under_the_host_name() -> None:
    """No second DNS lookup at connect time: the URL is aimed at the checked address, while the
    Host header and the TLS server name (certificate check) stay the host name."""
    ((url, host, extensions),) = check_target("https://localhost:8443/a?b=1", LOOPBACK).pinned()
    assert str(url) == "https://127.0.0.1:8443/a?b=1"
    assert host == {"Host": "localhost:8443"} and extensions == {"sni_hostname": "localhost"}


class CannedReceiver:
    """A loopback TCP endpoint that reads each request and answers the same raw bytes."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.requests = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            with connection:
                head = b""
                while b"\r\n\r\n" not in head:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    head += chunk
                headers, _, body = head.partition(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":", 1)[1])
                        for line in headers.split(b"\r\n")
                        if line.lower().startswith(b"content-length:")
                    ),
                    0,
                )
                while len(body) < length:
                    chunk = connection.recv(65536)
                    if not chunk:
                        break
                    body += chunk
                self.requests += 1
                connection.sendall(self.answer)

    def close(self) -> None:
        self.server.close()


def _http(status: str, body: str, extra: str = "") -> bytes:
    return (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {len(body)}\r\n"
        f"Connection: close\r\n{extra}\r\n{body}"
    ).encode()


@pytest.fixture
def receivers() -> Iterator[dict[str, CannedReceiver | Receiver]]:
    good = Receiver(refuse=0)
    inner = Receiver(refuse=0)  # what a redirect points at: never reached
    made: dict[str, CannedReceiver | Receiver] = {
        "good": good,
        "inner": inner,
        "error": CannedReceiver(_http("500 Internal Server Error", f"stack trace: {LEAK}")),
        "garbage": CannedReceiver(f"{LEAK} banner, not HTTP\r\n\r\n".encode()),
        "redirect": CannedReceiver(_http("302 Found", LEAK, f"Location: {inner.url}\r\n")),
    }
    yield made
    for receiver in made.values():
        receiver.close()


def _insert_hook(store: Store, webhook_id: str, url: str) -> None:
    """A webhook row as an older version (or a hand edit) could have left it: unvalidated."""
    row = {"webhook_id": webhook_id, "url": url, "format": "json", "active": 1}
    store.insert("webhooks", [{**row, "created_time": int(time.time())}])


def test_each_alert_fails_alone_with_a_generic_error(
    store: Store, receivers: dict[str, CannedReceiver | Receiver]
) -> None:
    hooks = {
        name: add_webhook(store, receivers[name].url, allow_networks=LOOPBACK)
        for name in ("good", "error", "garbage", "redirect")
    }
    _insert_hook(store, "crlf", receivers["good"].url + "\r\nX-Injected: 1")
    _insert_hook(store, "metadata", "http://169.254.169.254/latest/meta-data/")
    _queue(store, [_verdict("acct-1")])
    # One more alert to the good receiver whose payload cannot even be read: whatever the
    # exception, it stays with its alert.
    (good_alert,) = store.query(
        "SELECT * FROM {db}.alerts FINAL WHERE webhook_id = %(w)s", {"w": hooks["good"]}
    )
    store.insert("alerts", [{**good_alert, "alert_id": "f" * 32, "payload_json": "{not json"}])

    dispatcher = Dispatcher(store, SECRET, base_delay_s=60.0, allow_networks=LOOPBACK, seed=0)
    assert dispatcher.run_once() == 1

    rows = store.query("SELECT * FROM {db}.alerts FINAL")
    by_hook = {r["webhook_id"]: r for r in rows if r["alert_id"] != "f" * 32}
    seen = {
        name: (by_hook[hook]["status"], by_hook[hook]["last_error"]) for name, hook in hooks.items()
    }
    assert seen == {
        "good": ("delivered", ""),
        "error": ("pending", "HTTP 500 from receiver"),
        "garbage": ("pending", "bad response from receiver"),
        "redirect": ("pending", "HTTP 302 from receiver"),
    }
    assert (by_hook["crlf"]["status"], by_hook["crlf"]["last_error"]) == (
        "expired",  # the URL itself is bad: retrying cannot help
        "refused: invalid URL",
    )
    assert (by_hook["metadata"]["status"], by_hook["metadata"]["last_error"]) == (
        "pending",  # DNS or the allowlist may change: retried later
        "refused: address not allowed",
    )
    (unreadable,) = [r for r in rows if r["alert_id"] == "f" * 32]
    assert (unreadable["status"], unreadable["last_error"]) == ("pending", "internal error")
    good, inner = receivers["good"], receivers["inner"]
    assert isinstance(good, Receiver) and isinstance(inner, Receiver)
    assert len(good.received) == 1 and "X-Injected" not in good.received[0][0]
    assert inner.received == []  # the redirect was not followed
    for name in ("error", "garbage", "redirect"):
        canned = receivers[name]
        assert isinstance(canned, CannedReceiver) and canned.requests == 1
    # What analysts read (GET /v1/alerts serves these rows): nothing the targets said.
    page = queries.alert_page(store, None, 100, 0)
    assert LEAK not in repr(page) and LEAK not in repr(rows)


def test_a_target_is_checked_again_before_every_send(
    store: Store, receivers: dict[str, CannedReceiver | Receiver]
) -> None:
    """Registered while loopback was allowed; the dispatcher's settings no longer allow it (as
    when a name is re-pointed at an internal address): nothing is sent."""
    good = receivers["good"]
    add_webhook(store, good.url, allow_networks=LOOPBACK)
    _queue(store, [_verdict("acct-2")])
    assert Dispatcher(store, SECRET, base_delay_s=60.0).run_once() == 0
    assert isinstance(good, Receiver) and good.received == []
    (row,) = store.query("SELECT status, last_error FROM {db}.alerts FINAL")
    assert dict(row) == {"status": "pending", "last_error": "refused: address not allowed"}


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[str, ssl.SSLContext, list[str]]]:
    """An HTTPS endpoint on 127.0.0.1 whose certificate names only `localhost`; yields its port,
    a client context trusting that certificate, and the Host header of each request."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"]
        + ["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"]
        + ["-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    hosts: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            self.rfile.read(int(self.headers["Content-Length"]))
            hosts.append(self.headers["Host"])
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    server.socket = server_context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield str(server.server_port), ssl.create_default_context(cafile=str(cert)), hosts
    server.shutdown()
    server.server_close()


def test_tls_is_verified_against_the_host_name_on_the_checked_address(
    embedded: Store, tls_receiver: tuple[str, ssl.SSLContext, list[str]]
) -> None:
    """The send goes to the checked 127.0.0.1, yet TLS still verifies the name `localhost`:
    the same server reached as https://127.0.0.1 fails verification (not its certificate)."""
    port, trusted, hosts = tls_receiver
    by_name = add_webhook(embedded, f"https://localhost:{port}/hook", allow_networks=LOOPBACK)
    by_address = add_webhook(embedded, f"https://127.0.0.1:{port}/hook", allow_networks=LOOPBACK)
    _queue(embedded, [_verdict("acct-3")])
    with httpx.Client(verify=trusted, trust_env=False) as client:
        dispatcher = Dispatcher(
            embedded, SECRET, client=client, base_delay_s=60.0, allow_networks=LOOPBACK
        )
        assert dispatcher.run_once() == 1
    assert hosts == [f"localhost:{port}"]
    rows = {
        r["webhook_id"]: (r["status"], r["last_error"])
        for r in embedded.query("SELECT webhook_id, status, last_error FROM {db}.alerts FINAL")
    }
    assert rows == {by_name: ("delivered", ""), by_address: ("pending", "connection failed")}
