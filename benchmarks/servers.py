"""The servers of a benchmark: a broker and an object store, started by the harness or given as addresses.

The harness starts them with the launchers of `testservers` (beside `benchmarks/` in the source tree,
not in the installed package), through their typed interfaces: `BrokerServer` and `StoreServer`.
"""

from __future__ import annotations

import socket
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Generic, TypeVar
from urllib.parse import quote, urlsplit

from benchmarks.config import BenchError, check_broker_url, check_store_url
from benchmarks.metrics import Probe, group_probe

if TYPE_CHECKING:
    from testservers import BrokerServer, ServerProcess, StoreServer

S = TypeVar("S", bound="ServerProcess")

#: seconds to wait for a server given by address (--broker-url, --store-url) to accept a connection
CONNECT_TIMEOUT = 10.0


def _no_launchers(exc: ModuleNotFoundError) -> BenchError:
    return BenchError(
        f"starting a server needs the launchers in testservers/ of the source tree ({exc}): run "
        "`python -m benchmarks.cli` from the repository root, or give --broker-url and --store-url"
    )


class _Server(ABC, Generic[S]):
    """A server of `kind` the harness starts and stops, unless it was given an address (`url`)."""

    def __init__(self, kind: str, url: str | None) -> None:
        self.kind = kind
        self.url = url
        self.server: S | None = None

    @property
    def managed(self) -> bool:
        return self.url is None

    @abstractmethod
    def _create(self, workdir: Path) -> S:
        """The launcher of this kind of server (not started)."""

    def process_groups(self) -> list[int]:
        """The server's process groups: one for most; Ceph's mon, OSD and RGW daemons each have their own."""
        return self.server.pids() if self.server is not None else []

    def probe(self) -> Probe | None:
        """All of the server's processes (None when the harness did not start it)."""
        groups = self.process_groups()
        return group_probe(*groups) if groups else None

    def start(self, workdir: Path) -> None:
        if self.managed:
            self.server = self._create(workdir)
            self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


class Broker(_Server["BrokerServer"]):
    """The broker: a server started per run (managed), or an address to connect to."""

    def __init__(self, kind: str, url: str | None, protocol: str = "stomp") -> None:
        super().__init__(kind, url)
        self.protocol = protocol
        if url is not None:
            try:
                check_broker_url(url)
            except ValueError as exc:
                raise BenchError(str(exc)) from None
            self.protocol = "amqp" if urlsplit(url).scheme.startswith("amqp") else "stomp"
        elif protocol == "amqp" and kind != "rabbitmq":
            raise BenchError("--protocol amqp needs --broker rabbitmq (ActiveMQ is run with STOMP only)")

    def _create(self, workdir: Path) -> BrokerServer:
        try:
            from testservers import ActiveMQ, RabbitMQ
        except ModuleNotFoundError as exc:
            raise _no_launchers(exc) from None
        return ActiveMQ(workdir) if self.kind == "activemq" else RabbitMQ(workdir)

    def queue_url(self, queue: str) -> str:
        if self.server is not None:
            return self.server.queue_url(queue, self.protocol)
        assert self.url is not None
        parts = urlsplit(self.url)
        path = f"/queue/{queue}" if parts.scheme.startswith("stomp") else f"/{quote(queue)}"
        return f"{parts.scheme}://{parts.netloc}{path}" + (f"?{parts.query}" if parts.query else "")

    def env(self) -> dict[str, str]:
        return self.server.client_env() if self.server is not None else {}

    def check_reachable(self) -> None:
        """A broker given by address (--broker-url) accepts TCP connections; else BenchError, before any run.
        (A broker the harness starts is started, and checked, by each run.)"""
        if self.url is None:
            return
        parts = urlsplit(self.url)
        default = {"stomp": 61613, "stomp+ssl": 61614, "amqp": 5672, "amqps": 5671}[parts.scheme]
        host, port = parts.hostname or "", parts.port or default
        try:
            with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT):
                pass
        except OSError as exc:
            raise BenchError(f"the broker at {host}:{port} (--broker-url) cannot be reached: {exc}") from None


class Store(_Server["StoreServer"]):
    """The object store: one server for the whole comparison (managed), or an endpoint to connect to."""

    def __init__(self, kind: str, url: str | None) -> None:
        super().__init__(kind, url)
        if url is not None:
            try:
                check_store_url(url)
            except ValueError as exc:
                raise BenchError(str(exc)) from None

    def _create(self, workdir: Path) -> StoreServer:
        try:
            from testservers import CephRGW, SeaweedFS
        except ModuleNotFoundError as exc:
            raise _no_launchers(exc) from None
        return SeaweedFS(workdir) if self.kind == "seaweedfs" else CephRGW(workdir)

    @property
    def endpoint(self) -> str:
        if self.server is not None:
            return self.server.endpoint
        assert self.url is not None
        return self.url.rstrip("/")

    def env(self) -> dict[str, str]:
        env = {"AWS_EC2_METADATA_DISABLED": "true"}
        if self.kind == "ceph":
            env["AWS_REQUEST_CHECKSUM_CALCULATION"] = "when_required"
        if self.server is not None:
            env.update(self.server.client_env())
        return env

    def create_bucket(self, name: str) -> None:
        """Create the comparison's bucket; BenchError (one line) when the store cannot be reached or refuses."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self._create_bucket(name)
        except (BotoCoreError, ClientError, OSError) as exc:
            where = "(--store-url)" if self.server is None else f"(the {self.kind} server the harness started)"
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise BenchError(f"cannot create bucket {name} on {self.endpoint} {where}: {first}") from None

    def _create_bucket(self, name: str) -> None:
        if self.server is not None:
            self.server.create_bucket(name)
            return
        import boto3
        from botocore.config import Config

        # an endpoint we did not start: the credentials are the environment's; few attempts: a refused
        # connection is not worth botocore's retries
        config = Config(
            s3={"addressing_style": "path"},
            connect_timeout=CONNECT_TIMEOUT,
            retries={"max_attempts": 2, "mode": "standard"},
        )
        client = boto3.session.Session().client("s3", endpoint_url=self.endpoint, config=config)
        try:
            client.create_bucket(Bucket=name)
        except client.exceptions.BucketAlreadyOwnedByYou:
            pass
        finally:
            client.close()

    def s3_url(self, bucket: str, prefix: str) -> str:
        return f"s3://{bucket}/{prefix}?endpoint={self.endpoint}"
