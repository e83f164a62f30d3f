"""A store wrapper that counts requests and bytes, for progress displays and benchmarks."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from eventindex.store.base import DEFAULT_MAX_OBJECT_BYTES, ObjectStore


@dataclass
class StoreStats:
    gets: int = 0
    get_bytes: int = 0
    puts: int = 0
    put_bytes: int = 0
    lists: int = 0
    deletes: int = 0

    @property
    def requests(self) -> int:
        return self.gets + self.puts + self.lists + self.deletes

    @property
    def bytes(self) -> int:
        return self.get_bytes + self.put_bytes


class CountingStore(ObjectStore):
    def __init__(self, inner: ObjectStore) -> None:
        self.inner = inner
        self.url = inner.url
        self.stats = StoreStats()
        self._lock = threading.Lock()

    def put(self, key: str, data: bytes) -> None:
        with self._lock:
            self.stats.puts += 1
        self.inner.put(key, data)
        with self._lock:
            self.stats.put_bytes += len(data)

    def get(self, key: str, max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> bytes:
        with self._lock:
            self.stats.gets += 1
        data = self.inner.get(key, max_bytes)
        with self._lock:
            self.stats.get_bytes += len(data)
        return data

    def list(self, prefix: str = "") -> Iterator[str]:
        with self._lock:
            self.stats.lists += 1
        return self.inner.list(prefix)

    def delete(self, keys: Sequence[str]) -> None:
        with self._lock:
            self.stats.deletes += len(keys)
        self.inner.delete(keys)

    def object_url(self, key: str) -> str:
        return self.inner.object_url(key)

    def key_for_url(self, url: str) -> str:
        return self.inner.key_for_url(url)

    def close(self) -> None:
        self.inner.close()
