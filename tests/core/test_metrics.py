"""The metrics listener of the worker, linker and dispatcher: Prometheus text on /metrics and the
role's health on /healthz, bound where `metrics_host` says."""

from __future__ import annotations

import httpx

from bench.deployment import free_port
from core import __version__
from core.metrics import serve_metrics


def test_healthz_and_metrics_answer_on_the_configured_address() -> None:
    port = free_port()
    healthy = [True]
    server = serve_metrics("127.0.0.1", port, "worker", lambda: healthy[0])
    assert server is not None
    try:
        url = f"http://127.0.0.1:{port}"
        ok = httpx.get(f"{url}/healthz", timeout=5)
        assert ok.status_code == 200
        assert ok.json() == {"status": "ok", "role": "worker", "version": __version__}
        healthy[0] = False
        degraded = httpx.get(f"{url}/healthz", timeout=5)
        assert degraded.status_code == 503  # what a probe reading only the status sees
        assert degraded.json() == {"status": "degraded", "role": "worker", "version": __version__}
        metrics = httpx.get(f"{url}/metrics", timeout=5)
        assert metrics.status_code == 200 and "python_info" in metrics.text
    finally:
        server.shutdown()
        server.server_close()


def test_a_failing_check_is_degraded_and_port_0_serves_nothing() -> None:
    assert serve_metrics("127.0.0.1", 0, "linker", lambda: True) is None
    port = free_port()

    def broken() -> bool:
        raise RuntimeError("store gone")

    server = serve_metrics("127.0.0.1", port, "linker", broken)
    assert server is not None
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
        assert health.status_code == 503
        assert health.json()["status"] == "degraded" and health.json()["role"] == "linker"
    finally:
        server.shutdown()
        server.server_close()
