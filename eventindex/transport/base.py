"""The transport interface: publish small messages durably, consume them with explicit acks.

Semantics every adapter keeps:
- `Publisher.send` returns only when the broker has taken responsibility for the message
  (receipt, confirm or commit); otherwise it raises a TransportError.
- `Consumer.receive` hands out a message that stays owned by this consumer until `ack`;
  a message not acked when the consumer dies or closes is delivered again (maybe elsewhere).
  Delivery is at-least-once: consumers must be idempotent.
- `group` (the task) keeps one task's messages on one consumer where the broker supports it
  (JMSXGroupID on ActiveMQ).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self


@dataclass(frozen=True)
class Message:
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Adapter-specific handle used by ack/release.
    handle: str = ""
    redelivered: bool = False
    #: Set by the adapter when a part of the message other than its body (headers, properties, their
    #: encoding) could not be parsed: the consumer quarantines the message with this reason.
    problem: str | None = None


class Publisher(ABC):
    @abstractmethod
    def send(self, body: bytes, headers: Mapping[str, str] | None = None, group: str | None = None) -> None:
        """Send one persistent message; return once the broker holds it durably."""

    def send_batch(self, messages: Sequence[tuple[bytes, Mapping[str, str]]], group: str | None = None) -> None:
        """Send several messages as one unit where the broker supports it (a STOMP transaction, one
        SQL transaction); return once the broker holds all of them. This default sends one by one."""
        for body, headers in messages:
            self.send(body, headers, group)

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


class Consumer(ABC):
    @abstractmethod
    def receive(self, timeout: float) -> Message | None:
        """The next message, or None when none came within `timeout` seconds."""

    @abstractmethod
    def ack(self, message: Message) -> None:
        """The message is durably handled: the broker may forget it."""

    @abstractmethod
    def release(self, message: Message) -> None:
        """Give the message back for redelivery (it was not handled)."""

    @abstractmethod
    def close(self) -> None:
        """Stop consuming; unacked messages go back to the broker."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


@dataclass(frozen=True)
class Adapter:
    """What a transport module gives the scheme table (eventindex.transport.schemes), each from a URL."""

    #: validate the URL and the files it names, without connecting (ConfigError)
    check: Callable[[str], object]
    publisher: Callable[[str], Publisher]
    consumer: Callable[[str], Consumer]
