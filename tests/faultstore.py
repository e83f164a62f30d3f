"""Fault injection for tests: a real object store or publisher wrapped so that chosen operations fail.

    store = FaultyStore(LocalStore(root), Fault("put", "unavailable", times=40))
    publisher = FaultyPublisher(open_publisher(url), Fault("send", "disconnected", after=2))

A `Fault` matches an operation (`put`, `get`, `list`, `delete` on a store; `send` on a publisher) and a
key (fnmatch pattern: the object key, or the message group; `*` by default). Of the calls it matches, it
lets the first `after` through, then fires on the next `times` (every one when None), while `when()`
holds if given. What firing does is its `kind`:

- store: `unavailable` (StoreUnavailableError, as on a connection refused), `not-found`
  (ObjectNotFoundError), `exists` (ObjectExistsError), `error` (StoreError: a failure waiting cannot
  fix), `denied` (StoreAccessError: the store refuses the client, as on wrong credentials), `corrupt`
  (a `get` returns the object with one byte flipped), `delay` (`seconds` of sleep, then the real
  operation);
- publisher: `disconnected` (BrokerConnectionError: the broker is unreachable), `refused`
  (TransportError: a broker that answers and says no), `duplicate` (the message is sent twice, as a
  broker redelivering would), `delay`.

The first fault that fires decides; the others still count the call. `message` replaces the error's
text (`{key}` is replaced by the key). Thread-safe: upload threads share one store.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from eventindex.errors import (
    BrokerConnectionError,
    ObjectExistsError,
    ObjectNotFoundError,
    StoreAccessError,
    StoreError,
    StoreUnavailableError,
    TransportError,
)
from eventindex.store.base import DEFAULT_MAX_OBJECT_BYTES, ObjectStore
from eventindex.transport.base import Publisher

StoreOp = Literal["put", "get", "list", "delete"]
PublisherOp = Literal["send"]
Kind = Literal[
    "unavailable", "not-found", "exists", "error", "denied", "corrupt", "delay", "disconnected", "refused", "duplicate"
]

_STORE_KINDS = {"unavailable", "not-found", "exists", "error", "denied", "corrupt", "delay"}
_PUBLISHER_KINDS = {"disconnected", "refused", "duplicate", "delay"}
_ERRORS: dict[str, type[Exception]] = {
    "unavailable": StoreUnavailableError,
    "not-found": ObjectNotFoundError,
    "exists": ObjectExistsError,
    "error": StoreError,
    "denied": StoreAccessError,
    "disconnected": BrokerConnectionError,
    "refused": TransportError,
}


@dataclass
class Fault:
    op: StoreOp | PublisherOp
    kind: Kind
    key: str = "*"
    #: how many matching calls fail (None: all of them, after the first `after`)
    times: int | None = None
    #: matching calls let through before the fault starts firing
    after: int = 0
    #: `delay`: how long
    seconds: float = 0.0
    #: the error's text; `{key}` becomes the key
    message: str | None = None
    #: fire only while this holds (a broker the test takes down and brings back)
    when: Callable[[], bool] | None = None
    #: matching calls seen, and how many of them the fault fired on
    seen: int = field(default=0, init=False)
    fired: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        if self.kind == "corrupt" and self.op != "get":
            raise ValueError("a corrupt fault applies to get")
        if self.kind == "exists" and self.op != "put":
            raise ValueError("an exists fault applies to put")

    def fires(self, op: str, key: str) -> bool:
        """Count a call; whether the fault fires on it (the caller holds the lock)."""
        if op != self.op or not fnmatch.fnmatchcase(key, self.key):
            return False
        self.seen += 1
        if self.seen <= self.after or (self.times is not None and self.fired >= self.times):
            return False
        if self.when is not None and not self.when():
            return False
        self.fired += 1
        return True

    def error(self, key: str) -> Exception:
        text = (self.message or f"{self.op} {key}: {self.kind} (injected)").replace("{key}", key)
        return _ERRORS[self.kind](text)


class _Faults:
    def __init__(self, faults: Sequence[Fault], kinds: set[str]) -> None:
        for fault in faults:
            if fault.kind not in kinds:
                raise ValueError(f"fault kind {fault.kind!r} does not apply here")
        self.faults = list(faults)
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> None:
        with self._lock:
            self.faults.append(fault)

    def check(self, op: str, key: str) -> Fault | None:
        """The fault that fires on this call, if any, after sleeping out a delay and raising an error."""
        with self._lock:
            fired = [fault for fault in self.faults if fault.fires(op, key)]
        if not fired:
            return None
        fault = fired[0]
        if fault.kind == "delay":
            time.sleep(fault.seconds)
        elif fault.kind in _ERRORS:
            raise fault.error(key)
        return fault


class FaultyStore(ObjectStore):
    """A real store whose operations fail as its faults say (see the module docstring)."""

    def __init__(self, inner: ObjectStore, *faults: Fault) -> None:
        self.inner = inner
        self.url = inner.url
        self.faults = _Faults(faults, _STORE_KINDS)

    def put(self, key: str, data: bytes) -> None:
        self.faults.check("put", key)
        self.inner.put(key, data)

    def get(self, key: str, max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> bytes:
        fault = self.faults.check("get", key)
        data = self.inner.get(key, max_bytes)
        if fault is not None and fault.kind == "corrupt" and data:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0x5A]) + data[middle + 1 :]
        return data

    def list(self, prefix: str = "") -> Iterator[str]:
        self.faults.check("list", prefix)
        return self.inner.list(prefix)

    def object_url(self, key: str) -> str:
        return self.inner.object_url(key)

    def key_for_url(self, url: str) -> str:
        return self.inner.key_for_url(url)

    def delete(self, keys: Sequence[str]) -> None:
        for key in keys:
            self.faults.check("delete", key)
        self.inner.delete(keys)

    def close(self) -> None:
        self.inner.close()


class FaultyPublisher(Publisher):
    """A real publisher whose sends fail as its faults say (see the module docstring). `send_batch` is the
    base class's: one `send` per message, so each message meets the faults."""

    def __init__(self, inner: Publisher, *faults: Fault) -> None:
        self.inner = inner
        self.faults = _Faults(faults, _PUBLISHER_KINDS)

    def send(self, body: bytes, headers: Mapping[str, str] | None = None, group: str | None = None) -> None:
        fault = self.faults.check("send", group or "")
        self.inner.send(body, headers, group)
        if fault is not None and fault.kind == "duplicate":
            self.inner.send(body, headers, group)

    def close(self) -> None:
        self.inner.close()
