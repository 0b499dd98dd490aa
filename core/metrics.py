"""The metrics listener of the long-running roles without an API (worker, linker, alert
dispatcher): Prometheus `/metrics`, and `/healthz` answering as the API's does
(`{"status": "ok"|"degraded", "role", "version"}`: 200 when ok, 503 when degraded, so that a
probe that reads only the status code, as Kubernetes', systemd's or a blackbox exporter's does,
sees it), so one probe shape fits every role."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import orjson
from prometheus_client import make_wsgi_app

from core import __version__

log = logging.getLogger("distillguard.metrics")
Healthy = Callable[[], bool]


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base's name)
        """No access log line per scrape."""


def _status(healthy: Healthy) -> str:
    try:
        return "ok" if healthy() else "degraded"
    except Exception:  # a failing check is an unhealthy role, not a failed probe
        log.exception("health check failed")
        return "degraded"


def serve_metrics(host: str, port: int, role: str, healthy: Healthy) -> WSGIServer | None:
    """Serve `/metrics` and `/healthz` on host:port from a daemon thread; port 0: nothing.
    `healthy` says whether the role's dependencies work (its store, its sinks)."""
    if not port:
        return None
    metrics = make_wsgi_app()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/healthz":
            return metrics(environ, start_response)
        status = _status(healthy)
        body = orjson.dumps({"status": status, "role": role, "version": __version__})
        headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
        start_response("200 OK" if status == "ok" else "503 Service Unavailable", headers)
        return [body]

    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    server_class = type("MetricsServer", (_Server,), {"address_family": family})
    server: WSGIServer = make_server(host, port, app, server_class, _Quiet)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
