"""Broker transports behind one interface: embedded `sqlite://` queue, `stomp://` (ActiveMQ, RabbitMQ)."""

from eventindex.transport.base import Consumer, Message, Publisher, open_consumer, open_publisher

__all__ = ["Consumer", "Message", "Publisher", "open_consumer", "open_publisher"]
