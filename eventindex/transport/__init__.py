"""Broker transports behind one interface, chosen by the URL's scheme.

- `base`: the interface (`Publisher`, `Consumer`, `Message`) and what a transport module provides (`Adapter`)
- `schemes`: the scheme -> transport table; `open_publisher`, `open_consumer`, `check_broker_url`
- `embedded`: `sqlite://`, the embedded default (a queue in one SQLite file)
- `stomp`: `stomp://`, `stomp+ssl://` (ActiveMQ, RabbitMQ) through stomp.py (the `stomp` extra)
- `amqp`: `amqp://`, `amqps://` (RabbitMQ) through pika (the `amqp` extra)
- `config`: the URL, credential, TLS and option checks STOMP and AMQP share
- `reconnect`: the connect, reconnect and confirmed-send loops STOMP and AMQP share
- `failover`: a publisher over several broker URLs
- `counting`: a publisher wrapper that counts messages and bytes
"""

from eventindex.transport.base import Consumer, Message, Publisher
from eventindex.transport.schemes import check_broker_url, open_consumer, open_publisher

__all__ = ["Consumer", "Message", "Publisher", "check_broker_url", "open_consumer", "open_publisher"]
