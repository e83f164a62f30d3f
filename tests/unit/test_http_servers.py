"""The status page's and the metrics' HTTP servers against clients that misbehave: a connection reset
mid-request is one log line, never a traceback; idle connections are closed; connections are capped."""

from __future__ import annotations

import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
from prometheus_client import CollectorRegistry, Counter

import supersink.web
from supersink.ledger import Ledger
from supersink.metrics import SinkMetrics
from supersink.ops import _MetricsRequest, serve_metrics
from supersink.web import StatusServer, _Handler


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[dict[str, int]]:
    Ledger(tmp_path / "ledger.db").close()
    status = StatusServer(tmp_path / "ledger.db", 0).start()
    registry = CollectorRegistry()
    Counter("ei_test_total", "a counter", registry=registry).inc()
    metrics = serve_metrics("127.0.0.1", 0, cast(SinkMetrics, SimpleNamespace(registry=registry)))
    try:
        yield {"status": status.port, "metrics": int(metrics.server_address[1])}
    finally:
        status.stop()
        metrics.shutdown()
        metrics.server_close()


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_client_resetting_mid_request_is_no_traceback(
    servers: dict[str, int], capfd: pytest.CaptureFixture[str]
) -> None:
    for port in servers.values():
        client = socket.create_connection(("127.0.0.1", port))
        client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a request cut short ...
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # ... by a reset
    time.sleep(0.5)
    assert _get(servers["status"], "/api/tasks") == 200 and _get(servers["metrics"], "/metrics") == 200
    assert "Traceback" not in capfd.readouterr().err


def test_idle_connections_are_closed_and_connections_are_capped(
    servers: dict[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(supersink.web, "MAX_CONNECTIONS", 4)
    for handler in (_Handler, _MetricsRequest):
        monkeypatch.setattr(handler, "timeout", 0.5)
    for port in servers.values():
        idle: list[Any] = [socket.create_connection(("127.0.0.1", port)) for _ in range(4)]
        for client in idle:
            client.sendall(b"GET / HTTP/1.1\r\n")  # and never the rest
        time.sleep(0.2)
        refused = socket.create_connection(("127.0.0.1", port))
        refused.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        refused.settimeout(5)
        assert refused.recv(100).startswith(b"HTTP/1.1 503"), "one connection more than the cap"
        refused.close()
        time.sleep(1.0)  # the idle ones time out and free their threads
        for client in idle:
            client.settimeout(5)
            assert client.recv(100) == b"", "an idle connection is closed"
            client.close()
        assert _get(port, "/metrics" if port == servers["metrics"] else "/api/tasks") == 200
