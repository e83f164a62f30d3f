"""Real servers on 127.0.0.1 for the integration tests and benchmarks; not part of the installed package.

- `base`: `ServerProcess` (start, stop, kill, restart, `pids()`, `client_env()`), the `BrokerServer` and
  `StoreServer` interfaces, the errors (`ServerError`: `ServerUnavailable`, `ServerStartError`) and free ports
- `activemq`: ActiveMQ 5.x with a STOMP connector (`BrokerServer`)
- `rabbitmq`: RabbitMQ 3.x with AMQP and STOMP listeners, its own epmd and a generated user (`BrokerServer`)
- `seaweedfs`: SeaweedFS `weed mini`, an S3 endpoint with real credentials (`StoreServer`)
- `ceph`: a single-node Ceph cluster (monitor, memstore OSD, RGW) with an S3 endpoint (`StoreServer`)
- `webhdfs`: a WebHDFS REST endpoint over a local directory (in-process, not a `ServerProcess`)
"""

from .activemq import ActiveMQ
from .base import (
    BrokerServer,
    ServerError,
    ServerProcess,
    ServerStartError,
    ServerUnavailable,
    StoreServer,
    free_port,
    free_ports,
)
from .ceph import CephRGW
from .rabbitmq import RabbitMQ
from .seaweedfs import SeaweedFS

__all__ = [
    "ActiveMQ",
    "BrokerServer",
    "CephRGW",
    "RabbitMQ",
    "SeaweedFS",
    "ServerError",
    "ServerProcess",
    "ServerStartError",
    "ServerUnavailable",
    "StoreServer",
    "free_port",
    "free_ports",
]
