"""The broker URL schemes and the transport that serves each: the one table every place that opens a URL uses.

`open_publisher`, `open_consumer` and `check_broker_url` look the scheme up here and load its
module only then, so an optional client library that is not installed (stomp.py, pika) is reported
as a one-line ConfigError naming the extra that installs it, and only for the URLs that need it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from eventindex.errors import ConfigError
from eventindex.redact import redact
from eventindex.transport.base import Adapter, Consumer, Publisher

#: The project's name on the package index, for install hints.
DISTRIBUTION = "eventindex-collect"


@dataclass(frozen=True)
class Scheme:
    """A transport behind one or more URL schemes."""

    #: the protocol's name in messages
    protocol: str
    #: loads the transport's module and returns its adapter
    load: Callable[[], Adapter]
    #: the client library the module imports (its top-level module), None for none
    library: str | None = None
    #: the optional dependency group (extra) that installs the library
    extra: str | None = None


def _embedded() -> Adapter:
    from eventindex.transport.embedded import EmbeddedQueue

    return Adapter(
        check=lambda url: EmbeddedQueue.from_url(url).check(),
        publisher=lambda url: EmbeddedQueue.from_url(url).publisher(),
        consumer=lambda url: EmbeddedQueue.from_url(url).consumer(),
    )


def _stomp() -> Adapter:
    from eventindex.transport import stomp

    return stomp.ADAPTER


def _amqp() -> Adapter:
    from eventindex.transport import amqp

    return amqp.ADAPTER


_EMBEDDED = Scheme("embedded queue", _embedded)
_STOMP = Scheme("STOMP", _stomp, library="stomp", extra="stomp")
_AMQP = Scheme("AMQP", _amqp, library="pika", extra="amqp")

SCHEMES: dict[str, Scheme] = {
    "sqlite": _EMBEDDED,
    "stomp": _STOMP,
    "stomp+ssl": _STOMP,
    "amqp": _AMQP,
    "amqps": _AMQP,
}


def redacted(url: str) -> str:
    """A broker URL for messages: no query (options), no credentials (eventindex.redact's user-info, the
    forms whose password holds `/`, `?` or `#` too)."""
    try:
        parts = urlsplit(redact(url))
    except ValueError:
        return "<malformed URL>"
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def adapter(url: str) -> Adapter:
    """The transport of `url`'s scheme; ConfigError for an unknown scheme or a client library not installed."""
    name, colon, _ = url.partition(":")
    scheme = SCHEMES.get(name.lower()) if colon else None  # the rest is the adapter's to parse
    if scheme is None:
        known = ", ".join(f"{name}://" for name in SCHEMES)
        raise ConfigError(f"broker URL {redacted(url)!r}: scheme must be one of {known}")
    try:
        return scheme.load()
    except ModuleNotFoundError as exc:
        if scheme.library is None or (exc.name or "").partition(".")[0] != scheme.library:
            raise
    raise ConfigError(
        f"broker URL {redacted(url)!r}: the {scheme.protocol} transport is not installed (no module "
        f"{scheme.library!r}); install the {scheme.extra!r} extra: pip install '{DISTRIBUTION}[{scheme.extra}]'"
    )


def open_publisher(url: str) -> Publisher:
    return adapter(url).publisher(url)


def open_consumer(url: str) -> Consumer:
    return adapter(url).consumer(url)


def check_broker_url(url: str) -> None:
    """Validate a broker URL and the files it names (CA, certificate, key; an embedded queue's directory)
    without connecting."""
    adapter(url).check(url)
