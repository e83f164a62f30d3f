"""Launchers for real servers (ActiveMQ, SeaweedFS) on 127.0.0.1, for integration tests and benchmarks."""

from .activemq import ActiveMQ
from .base import ServerProcess, ServerStartError, ServerUnavailable, free_port, free_ports
from .ceph import CephRGW
from .rabbitmq import RabbitMQ
from .seaweedfs import SeaweedFS

__all__ = [
    "ActiveMQ",
    "CephRGW",
    "RabbitMQ",
    "SeaweedFS",
    "ServerProcess",
    "ServerStartError",
    "ServerUnavailable",
    "free_port",
    "free_ports",
]
