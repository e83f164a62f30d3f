"""`ei-bench compare`: its configuration, and the error that stops it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TRANSPORTS = ("store", "mq")
BROKERS = ("activemq", "rabbitmq")
STORES = ("seaweedfs", "ceph")


class BenchError(Exception):
    """The benchmark cannot run at all (a server does not start, a bad address)."""


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
        if min(self.tasks, self.jobs, self.events) < 1:
            raise ValueError("--tasks, --jobs and --events must be at least 1")
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
        if self.run_timeout <= 0:
            raise ValueError("--run-timeout must be positive")
        if self.warmup_connections < 0:
            raise ValueError("the warm-up cannot be negative")
        if self.drain_producers < 0:
            raise ValueError("--drain-producers cannot be negative")

    @property
    def events_per_run(self) -> int:
        return self.tasks * self.jobs * self.events
