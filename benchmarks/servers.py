"""The servers of a benchmark: a broker and an object store, started by the harness or given as addresses."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from benchmarks.config import BenchError
from benchmarks.metrics import Probe, group_probe


class _Server:
    """A server of `kind` the harness starts and stops, unless it was given an address (`url`)."""

    def __init__(self, kind: str, url: str | None) -> None:
        self.kind = kind
        self.url = url
        self.server: Any = None

    @property
    def managed(self) -> bool:
        return self.url is None

    def _create(self, workdir: Path) -> Any:
        raise NotImplementedError

    def start(self, workdir: Path) -> None:
        if self.managed:
            self.server = self._create(workdir)
            self.server.start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


class Broker(_Server):
    """The broker: a server started per run (managed), or an address to connect to."""

    def __init__(self, kind: str, url: str | None, protocol: str = "stomp") -> None:
        super().__init__(kind, url)
        self.protocol = protocol
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("stomp", "stomp+ssl", "amqp", "amqps") or not parts.netloc:
                raise BenchError(f"--broker-url {url!r}: expected stomp://HOST:PORT or amqp://HOST:PORT")
            self.protocol = "amqp" if parts.scheme.startswith("amqp") else "stomp"
        elif protocol == "amqp" and kind != "rabbitmq":
            raise BenchError("--protocol amqp needs --broker rabbitmq (ActiveMQ is run with STOMP only)")

    def _create(self, workdir: Path) -> Any:
        if self.kind == "activemq":
            from eventindex.servers import ActiveMQ

            return ActiveMQ(workdir)
        from eventindex.servers.rabbitmq import RabbitMQ  # only needed here

        return RabbitMQ(workdir)

    def probe(self) -> Probe | None:
        """The broker's process group (None when the harness did not start it)."""
        pid = self.server.pid if self.server is not None else None
        return group_probe(pid) if pid is not None else None

    def queue_url(self, queue: str) -> str:
        if self.server is not None:
            if self.protocol == "amqp":
                return str(self.server.amqp_url(queue))
            return str(self.server.stomp_url(queue))
        assert self.url is not None
        parts = urlsplit(self.url)
        path = f"/queue/{queue}" if parts.scheme.startswith("stomp") else f"/{quote(queue)}"
        return f"{parts.scheme}://{parts.netloc}{path}" + (f"?{parts.query}" if parts.query else "")

    def env(self) -> dict[str, str]:
        client_env = getattr(self.server, "client_env", None)
        return dict(client_env()) if callable(client_env) else {}


class Store(_Server):
    """The object store: one server for the whole comparison (managed), or an endpoint to connect to."""

    def __init__(self, kind: str, url: str | None) -> None:
        super().__init__(kind, url)
        if url is not None:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise BenchError(f"--store-url {url!r}: expected the S3 endpoint, http://HOST:PORT")

    def _create(self, workdir: Path) -> Any:
        if self.kind == "seaweedfs":
            from eventindex.servers import SeaweedFS

            return SeaweedFS(workdir)
        from eventindex.servers.ceph import CephRGW  # only needed here

        return CephRGW(workdir)

    def process_groups(self) -> list[int]:
        """The store's process groups: SeaweedFS's one; Ceph's mon, OSD and RGW daemons (each its own)."""
        if self.server is None:
            return []
        pids = getattr(self.server, "pids", None)  # CephRGW.pids(): {daemon: pid}
        groups = list(pids().values()) if callable(pids) else [self.server.pid]
        return [int(g) for g in groups if g is not None]

    def probe(self) -> Probe | None:
        """All of the store's processes (None when the harness did not start it)."""
        groups = self.process_groups()
        return group_probe(*groups) if groups else None

    @property
    def endpoint(self) -> str:
        if self.server is not None:
            return str(self.server.endpoint)
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
        if self.server is not None:
            self.server.create_bucket(name)
            return
        import boto3
        from botocore.config import Config

        from eventindex.servers.base import ensure_bucket

        # an endpoint we did not start: the credentials are the environment's
        config = Config(s3={"addressing_style": "path"})
        ensure_bucket(boto3.session.Session().client("s3", endpoint_url=self.endpoint, config=config), name)

    def s3_url(self, bucket: str, prefix: str) -> str:
        return f"s3://{bucket}/{prefix}?endpoint={self.endpoint}"
