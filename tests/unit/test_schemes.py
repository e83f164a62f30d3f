"""The scheme table (eventindex.transport.schemes): one place decides which transport serves a URL.

Every way in (open_publisher, open_consumer, check_broker_url, FailoverPublisher) gives the same
one-line ConfigError for an unknown scheme, for a TLS file that does not exist (STOMP and AMQP
alike) and for a client library that is not installed (naming the extra that installs it).
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import pytest

import eventindex.transport
from eventindex.errors import ConfigError
from eventindex.transport import check_broker_url, open_consumer, open_publisher
from eventindex.transport.failover import FailoverPublisher
from eventindex.transport.schemes import SCHEMES, redacted
from tests.helpers import one_line

WAYS_IN: dict[str, Callable[[str], object]] = {
    "open_publisher": open_publisher,
    "open_consumer": open_consumer,
    "check_broker_url": check_broker_url,
    "FailoverPublisher": lambda url: FailoverPublisher([url]),
}


def refusal(way: str, url: str) -> str:
    with pytest.raises(ConfigError) as info:
        WAYS_IN[way](url)
    return one_line(info)


@pytest.mark.parametrize("way", WAYS_IN)
def test_an_unknown_scheme_is_refused_without_echoing_credentials(way: str) -> None:
    text = refusal(way, "http://alice:s3cret@example.org/q?token=t0ken")
    assert "scheme must be one of sqlite://, stomp://, stomp+ssl://, amqp://, amqps://" in text
    assert "s3cret" not in text and "alice" not in text and "t0ken" not in text


@pytest.mark.parametrize("way", WAYS_IN)
@pytest.mark.parametrize("url", ["stomp+ssl://127.0.0.1:1/queue/q?ca={missing}", "amqps://127.0.0.1:1/q?ca={missing}"])
def test_a_missing_tls_file_is_refused_before_connecting(way: str, url: str, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    text = refusal(way, url.format(missing=missing))
    assert f"ca= file {missing} does not exist" in text


@pytest.mark.parametrize(
    ("url", "library", "extra"),
    [
        ("stomp://127.0.0.1:1/queue/q", "stomp", "stomp"),
        ("stomp+ssl://127.0.0.1:1/queue/q", "stomp", "stomp"),
        ("amqp://127.0.0.1:1/q", "pika", "amqp"),
        ("amqps://127.0.0.1:1/q", "pika", "amqp"),
    ],
)
@pytest.mark.parametrize("way", WAYS_IN)
def test_a_client_library_not_installed_names_the_extra(
    way: str, url: str, library: str, extra: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = "stomp" if library == "stomp" else "amqp"
    # as on an install without the extra: the library cannot be imported, nor the module that needs it
    monkeypatch.setitem(sys.modules, library, None)
    monkeypatch.delitem(sys.modules, f"eventindex.transport.{module}", raising=False)
    monkeypatch.delattr(eventindex.transport, module, raising=False)
    text = refusal(way, url)
    assert f"install the {extra!r} extra: pip install 'eventindex-collect[{extra}]'" in text
    assert f"no module {library!r}" in text and redacted(url) in text


def test_the_embedded_queue_needs_no_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for library in ("stomp", "pika"):
        monkeypatch.setitem(sys.modules, library, None)
    url = f"sqlite://{tmp_path / 'q.db'}"
    check_broker_url(url)
    with open_publisher(url) as publisher:
        publisher.send(b"x")
    with open_consumer(url) as consumer:
        message = consumer.receive(timeout=1)
        assert message is not None and message.body == b"x"


def test_every_scheme_that_needs_a_library_names_an_extra_of_the_project() -> None:
    with (Path(__file__).resolve().parents[2] / "pyproject.toml").open("rb") as fh:
        extras = tomllib.load(fh)["project"]["optional-dependencies"]
    for name, scheme in SCHEMES.items():
        assert (scheme.library is None) == (scheme.extra is None), name
        if scheme.extra is not None:
            assert scheme.extra in extras, f"{name}: no extra {scheme.extra!r} in pyproject.toml"
