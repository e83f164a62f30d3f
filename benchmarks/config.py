"""`ei-bench compare`: its configuration, and the error that stops it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

TRANSPORTS = ("store", "mq")
BROKERS = ("activemq", "rabbitmq")
STORES = ("seaweedfs", "ceph")


class BenchError(Exception):
    """The benchmark cannot run at all (a server does not start or cannot be reached)."""


def check_broker_url(url: str) -> None:
    """ValueError unless `url` is a broker address the transports take: stomp://HOST:PORT or amqp://HOST:PORT."""
    parts = urlsplit(url)
    if parts.scheme not in ("stomp", "stomp+ssl", "amqp", "amqps") or not parts.hostname:
        raise ValueError(f"--broker-url {url!r}: expected stomp://HOST:PORT or amqp://HOST:PORT")
    _check_port(url, "--broker-url")


def check_store_url(url: str) -> None:
    """ValueError unless `url` is an S3 endpoint: http(s)://HOST[:PORT]."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"--store-url {url!r}: expected the S3 endpoint, http://HOST:PORT")
    _check_port(url, "--store-url")


def _check_port(url: str, option: str) -> None:
    try:
        urlsplit(url).port  # noqa: B018 (raises for a port that is not a number in 0-65535)
    except ValueError:
        raise ValueError(f"{option} {url!r}: the port is not a number in 0-65535") from None


@dataclass(frozen=True)
class BenchConfig:
    tasks: int
    jobs: int
    events: int
    producers: tuple[int, ...]
    transports: tuple[str, ...]
    out: Path
    work: Path
    broker: str = "activemq"
    store: str = "seaweedfs"
    broker_url: str | None = None
    store_url: str | None = None
    protocol: str = "stomp"
    run_timeout: float = 900.0
    quick: bool = False
    keep: bool = False
    #: producers of each transport's drain run (the supersink started on the queued workload); 0: no drain runs
    drain_producers: int = 4
    #: seconds of idleness over which each run first reads the broker's and the store server's upkeep CPU
    idle_seconds: float = 10.0
    #: producer-like connections (and chunk PUT/GET rounds) that warm up each fresh broker and the store server
    #: before a run's CPU is counted (benchmarks.warmup); 0: none
    warmup_connections: int = 512
    #: the producers' CPU priority (nice): grid jobs run on worker nodes, not on the central machine; here they
    #: share its cores, and at a lower priority they leave the central services the CPU they would have alone
    producer_nice: int = 10

    def __post_init__(self) -> None:
        for option, value in (("--tasks", self.tasks), ("--jobs", self.jobs), ("--events", self.events)):
            if value < 1:
                raise ValueError(f"{option} must be at least 1, not {value}")
        if not self.producers or min(self.producers) < 1:
            raise ValueError("--producers must be a list of positive integers")
        if not self.transports or set(self.transports) - set(TRANSPORTS):
            raise ValueError(f"--transports must be some of {', '.join(TRANSPORTS)}")
        if self.broker not in BROKERS:
            raise ValueError(f"--broker must be one of {', '.join(BROKERS)}")
        if self.store not in STORES:
            raise ValueError(f"--store must be one of {', '.join(STORES)}")
        if self.protocol not in ("stomp", "amqp"):
            raise ValueError("--protocol must be stomp or amqp")
        if not math.isfinite(self.run_timeout) or self.run_timeout <= 0:
            raise ValueError(f"--run-timeout must be a positive number of seconds, not {self.run_timeout}")
        if self.broker_url is not None:
            check_broker_url(self.broker_url)
        elif self.protocol == "amqp" and self.broker != "rabbitmq":
            raise ValueError("--protocol amqp needs --broker rabbitmq (ActiveMQ is run with STOMP only)")
        if self.store_url is not None:
            check_store_url(self.store_url)
        if self.warmup_connections < 0:
            raise ValueError("the warm-up cannot be negative")
        if self.drain_producers < 0:
            raise ValueError("--drain-producers cannot be negative")

    @property
    def events_per_run(self) -> int:
        return self.tasks * self.jobs * self.events
