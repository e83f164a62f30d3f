"""A publisher wrapper that counts messages and bytes handed to the broker (for summaries and benchmarks)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from eventindex.transport.base import Publisher


class CountingPublisher(Publisher):
    def __init__(self, inner: Publisher) -> None:
        self.inner = inner
        self.messages = 0
        self.bytes = 0

    def send(self, body: bytes, headers: Mapping[str, str] | None = None, group: str | None = None) -> None:
        self.inner.send(body, headers, group)
        self.messages += 1
        self.bytes += len(body)

    def send_batch(self, messages: Sequence[tuple[bytes, Mapping[str, str]]], group: str | None = None) -> None:
        self.inner.send_batch(messages, group)
        self.messages += len(messages)
        self.bytes += sum(len(body) for body, _ in messages)

    def close(self) -> None:
        self.inner.close()
