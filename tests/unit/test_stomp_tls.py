"""A STOMP connection whose TLS handshake fails says why (stomp.py keeps the reason to its own log)."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventindex.transport.reconnect import LinkLost
from eventindex.transport.stomp import StompConfig, _Link
from tests.pki import Pki, make_pki


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def tls_listener(pki: Pki) -> Iterator[int]:
    """A TLS listener on loopback with the test server certificate: it handshakes, then hangs up."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            try:
                with context.wrap_socket(conn, server_side=True):
                    pass
            except (ssl.SSLError, OSError):
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join(5)
        listener.close()


@pytest.mark.parametrize(
    ("ca", "reason"),
    [(None, "unable to get local issuer certificate"), ("other", "unable to get local issuer certificate")],
)
def test_a_failed_tls_handshake_is_named(tls_listener: int, pki: Pki, ca: str | None, reason: str) -> None:
    query = f"?ca={pki.other_ca}&timeout=5" if ca else "?timeout=5"
    config = StompConfig.from_url(f"stomp+ssl://127.0.0.1:{tls_listener}/queue/q{query}", env={})
    link = _Link(config, 1, None)
    with pytest.raises(LinkLost, match=rf"no host accepted a connection \(127\.0\.0\.1:{tls_listener}: TLS: {reason}"):
        link.open()


def test_a_plain_refusal_says_no_more_than_before(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as placeholder:
        port = int(placeholder.getsockname()[1])
    config = StompConfig.from_url(f"stomp+ssl://127.0.0.1:{port}/queue/q?timeout=5", env={})
    with pytest.raises(LinkLost, match=r"^no host accepted a connection$"):
        _Link(config, 1, None).open()
