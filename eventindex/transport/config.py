"""What the networked transports (STOMP, AMQP) share in their configuration: one set of checks.

A broker URL is split, refused if it holds credentials (they come from `EI_BROKER_USERNAME` /
`EI_BROKER_PASSWORD` only), and shown in messages without its query (an option value may be a
misplaced secret). The options every such URL may carry (prefetch, timeout, the TLS files
ca=/cert=/key=) are parsed and validated here, once; each protocol module adds its own address
syntax and protocol options. The TLS files are checked for existence by `check_files`, before any
connection and by `check_broker_url`, not when a URL is parsed.
"""

from __future__ import annotations

import ipaddress
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypedDict, TypeVar
from urllib.parse import SplitResult, parse_qsl, urlsplit, urlunsplit

from eventindex.errors import ConfigError
from eventindex.redact import has_userinfo, redact, userinfo_note

_N = TypeVar("_N", int, float)

USERNAME_ENV = "EI_BROKER_USERNAME"
PASSWORD_ENV = "EI_BROKER_PASSWORD"

DEFAULT_PREFETCH = 100
DEFAULT_TIMEOUT = 30.0
MAX_PREFETCH = 65_535
MAX_TIMEOUT = 3600.0

#: The options a networked broker URL may carry (`?name=value&...`).
OPTIONS = ("vhost", "heartbeat", "prefetch", "ca", "cert", "key", "timeout", "exchange")
#: A queue name, on every broker.
QUEUE_NAME = r"[A-Za-z0-9._-]{1,200}"
_HOST_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9.-]{0,252})")


class SharedOptions(TypedDict):
    """The `BrokerConfig` fields `shared_options` reads from a URL and the environment."""

    prefetch: int
    ca: Path | None
    cert: Path | None
    key: Path | None
    timeout: float
    username: str | None
    password: str | None


@dataclass(frozen=True, kw_only=True)
class BrokerConfig(ABC):
    """The fields and checks every networked broker configuration has; a protocol's config extends it."""

    #: the protocol's name in messages ("STOMP")
    protocol: ClassVar[str]
    #: what a URL with TLS is, in messages ("a stomp+ssl:// URL")
    tls_url: ClassVar[str]

    tls: bool = False
    prefetch: int = DEFAULT_PREFETCH
    ca: Path | None = None
    cert: Path | None = None
    key: Path | None = None
    timeout: float = DEFAULT_TIMEOUT
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        """The shared checks; a protocol's config runs its own first, then these."""
        name = f"{self.protocol} broker"
        if not 1 <= self.prefetch <= MAX_PREFETCH:
            raise ConfigError(f"{name}: prefetch must be 1-{MAX_PREFETCH}")
        if not 0 < self.timeout <= MAX_TIMEOUT:
            raise ConfigError(f"{name}: timeout must be more than 0 and at most {MAX_TIMEOUT:g} s")
        if not self.tls and (self.ca or self.cert or self.key):
            raise ConfigError(f"{name}: ca=, cert= and key= need {self.tls_url}")
        if self.key is not None and self.cert is None:
            raise ConfigError(f"{name}: key= needs cert=")
        if self.password is not None and self.username is None:
            raise ConfigError(f"{name}: {PASSWORD_ENV} is set but {USERNAME_ENV} is not")

    @property
    @abstractmethod
    def address(self) -> str:
        """The broker URL without options or credentials, for messages and logs."""

    def check_files(self) -> None:
        """ConfigError unless every TLS file the URL names exists (checked before connecting)."""
        for name, path in (("ca", self.ca), ("cert", self.cert), ("key", self.key)):
            if path is not None and not path.is_file():
                raise ConfigError(f"{self.protocol} broker: {name}= file {path} does not exist")


def split_url(url: str, schemes: tuple[str, str]) -> tuple[SplitResult, str, bool]:
    """Split a broker URL whose scheme is one of `schemes` (plain, TLS): its parts, the URL to show in
    messages (no credentials, no query) and whether it asks for TLS."""
    if has_userinfo(url):
        # never echo the URL: it holds a password. Read on the raw string: a password holding "/", "?" or "#"
        # ends urlsplit's netloc before its "@" (netloc "alice:Super" of stomp://alice:Super/Secret@h/queue/q)
        raise ConfigError(
            f"broker URL must not contain credentials; set {USERNAME_ENV} and {PASSWORD_ENV}{userinfo_note(url)}"
        )
    try:
        parts = urlsplit(url)
    except ValueError as exc:  # e.g. an unclosed or invalid [IPv6] host
        raise ConfigError(f"broker URL is malformed: {exc}") from None
    shown = redact(urlunsplit((parts.scheme, parts.netloc, parts.path, "", "")))
    if parts.scheme not in schemes:
        raise ConfigError(f"broker URL {shown!r}: scheme must be {schemes[0]}:// or {schemes[1]}://")
    if parts.fragment:
        raise ConfigError(f"broker URL {shown!r}: no #fragment allowed")
    return parts, shown, parts.scheme == schemes[1]


def query_options(url: str, query: str) -> dict[str, str]:
    """The URL's `?name=value` options, each known (`OPTIONS`) and given once; `url` is the shown URL."""
    options: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if name not in OPTIONS:
            raise ConfigError(f"broker URL {url!r}: unknown parameter {name!r} (known: {', '.join(OPTIONS)})")
        if name in options:
            raise ConfigError(f"broker URL {url!r}: parameter {name!r} given twice")
        options[name] = value
    return options


def shared_options(url: str, options: Mapping[str, str], env: Mapping[str, str] | None) -> SharedOptions:
    """The shared fields of a config: from the URL's options, and the credentials from `env` (os.environ)."""
    env = os.environ if env is None else env
    return SharedOptions(
        prefetch=number(url, options, "prefetch", int, DEFAULT_PREFETCH),
        ca=_path(url, options, "ca"),
        cert=_path(url, options, "cert"),
        key=_path(url, options, "key"),
        timeout=number(url, options, "timeout", float, DEFAULT_TIMEOUT),
        username=env.get(USERNAME_ENV) or None,
        password=env.get(PASSWORD_ENV) or None,
    )


def number(url: str, options: Mapping[str, str], name: str, kind: Callable[[str], _N], default: _N) -> _N:
    """Option `name` as an int or float, `default` when it is not given."""
    if name not in options:
        return default
    try:
        return kind(options[name])
    except ValueError:
        raise ConfigError(f"broker URL {url!r}: {name}= must be a number") from None


def _path(url: str, options: Mapping[str, str], name: str) -> Path | None:
    if name not in options:
        return None
    if not options[name]:
        raise ConfigError(f"broker URL {url!r}: {name}= is empty")
    return Path(options[name])


def is_ipv6(host: str) -> bool:
    try:
        ipaddress.IPv6Address(host)
    except ValueError:
        return False
    return True


def valid_host(host: str) -> bool:
    """A host name or an IPv6 address (without its brackets)."""
    return bool(_HOST_RE.fullmatch(host)) or is_ipv6(host)


def one_line(text: object, limit: int = 300) -> str:
    """`text` (a broker's answer, an exception) on one line of at most `limit` characters."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    line = " ".join(str(text or "").split())
    return line if len(line) <= limit else line[: limit - 3] + "..."
