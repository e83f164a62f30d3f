"""Ceph 16 RGW (Debian ``radosgw ceph-mon ceph-osd ceph-common``): a throw-away single-node cluster.

:class:`CephRGW` builds a whole cluster inside its work directory, with no ``/etc/ceph``, no
systemd and no keyrings (``auth_*_required = none``):

- ``ceph.conf``      generated on every start (fsid, ports and paths never change for a workdir)
- ``cluster.json``   fsid, ports, S3 keys and bootstrap progress (mode 0600), so a restart, or a
                     new :class:`CephRGW` on the same workdir, finds the same cluster
- ``mon/ osd/ rgw/`` daemon data (one monitor ``mon.a``, one memstore ``osd.0``, ``client.rgw.ei``)
- ``run/``           admin sockets; ``log/`` one log per daemon; ``crash/``

Three processes, each in its own session: ``ceph-mon``, ``ceph-osd`` and ``radosgw``. The
radosgw process is the :class:`~testservers.base.ServerProcess` itself (so :attr:`pid`,
:meth:`rss_bytes` and :meth:`cpu_seconds` are about the S3 gateway); :attr:`CephRGW.mon` and
:attr:`CephRGW.osd` are the other two; :meth:`CephRGW.pids` gives all three process groups and
:meth:`CephRGW.pids_by_daemon` names them. Every daemon listens on 127.0.0.1 only: the monitor on
two free ports (msgr2 and v1), radosgw (beast, ``tcp_nodelay=1``) on a third, the OSD in Ceph's own
6800-7568 range.

The OSD keeps objects in memory (``memstore``) and saves them to ``osd/`` only on a clean stop
(``osd_fast_shutdown = false``): :meth:`CephRGW.stop` / :meth:`CephRGW.restart` keep the data,
:meth:`CephRGW.kill` crashes radosgw (SIGKILL) and then stops the OSD cleanly, so acknowledged
writes survive; ``kill(backend=True)`` also SIGKILLs the OSD, which loses what it held (see
docs/ceph.md).
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from .base import ServerProcess, ServerStartError, ServerUnavailable, StoreServer, free_ports, s3_client

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = ["CEPH_BINARIES", "CephRGW", "admin_socket_command", "find_ceph_binaries"]

_INSTALL_HINT = (
    "install the Debian packages with `EI_WITH_CEPH=1 scripts/install-servers` "
    "(apt-get install radosgw ceph-mon ceph-osd ceph-common)"
)
_UID = "eventindex"
_MON_ID = "a"
_OSD_ID = 0
_RGW_ID = "ei"
#: longest path a unix socket may have on Linux (sun_path is 108 bytes, NUL included)
_MAX_SOCKET_PATH = 107

#: the programs the launcher runs, all from the Debian packages
CEPH_BINARIES = ("ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph")


def _conf_sections(
    workdir: Path, host: str, fsid: str, ports: Mapping[str, int], memstore_bytes: int
) -> dict[str, dict[str, str]]:
    """The cluster's ceph.conf as ``{section: {option: value}}``."""
    w = str(workdir)
    asok = f"{w}/run/$cluster-$name.asok"
    return {
        "global": {
            "fsid": fsid,
            "mon_host": f"[v2:{host}:{ports['mon_v2']},v1:{host}:{ports['mon_v1']}]",
            "public_addr": host,
            "cluster_addr": host,
            "ms_bind_ipv6": "false",
            "auth_cluster_required": "none",
            "auth_service_required": "none",
            "auth_client_required": "none",
            "ms_mon_client_mode": "crc secure",
            "keyring": f"{w}/keyring",
            "run_dir": f"{w}/run",
            "log_file": f"{w}/log/$cluster-$name.log",
            "log_to_stderr": "false",
            "err_to_stderr": "true",
            "mon_cluster_log_file": f"{w}/log/$cluster.log",
            "crash_dir": f"{w}/crash",
            "osd_pool_default_size": "1",
            "osd_pool_default_min_size": "1",
            "osd_pool_default_pg_num": "8",
            "osd_pool_default_pgp_num": "8",
            "osd_pool_default_pg_autoscale_mode": "off",
            "mon_allow_pool_size_one": "true",
            "mon_allow_pool_delete": "true",
            "mon_warn_on_pool_no_redundancy": "false",
            "mon_warn_on_insecure_global_id_reclaim_allowed": "false",
            "mon_data_avail_warn": "1",
            "mon_data_avail_crit": "0",
            "client_mount_timeout": "30",
            "rados_mon_op_timeout": "60",
            "rados_osd_op_timeout": "60",
        },
        "mon": {
            "mon_data": f"{w}/mon/$cluster-$id",
            "admin_socket": asok,
            # one monitor: commit map changes at once, not once a second (RGW's first start makes ~20)
            "paxos_propose_interval": "0.05",
            "paxos_min_wait": "0.01",
        },
        "osd": {
            "osd_data": f"{w}/osd/$cluster-$id",
            "admin_socket": asok,
            "osd_objectstore": "memstore",
            "memstore_device_bytes": str(memstore_bytes),
            # whole-object writes (RGW): plain buffers, not 64 kB pages (a 200 B object took 100 kB of RSS)
            "memstore_page_set": "false",
            # save the memstore to osd_data on SIGTERM (the fast shutdown skips that: every object lost)
            "osd_fast_shutdown": "false",
            "osd_crush_update_on_start": "true",
        },
        f"client.rgw.{_RGW_ID}": {
            "rgw_data": f"{w}/rgw/$cluster-$id",
            "admin_socket": asok,
            "rgw_frontends": f"beast endpoint={host}:{ports['rgw']} tcp_nodelay=1",
            # the default 1/5 logs a line per request: gigabytes in a benchmark
            "debug_rgw": "0/5",
        },
    }


def find_ceph_binaries() -> dict[str, str]:
    """``{name: path}`` of :data:`CEPH_BINARIES`; ServerUnavailable if any is missing."""
    found = {name: shutil.which(name) for name in CEPH_BINARIES}
    missing = sorted(name for name, path in found.items() if path is None)
    if missing:
        raise ServerUnavailable(f"Ceph programs not found on PATH: {', '.join(missing)}; {_INSTALL_HINT}")
    return {name: path for name, path in found.items() if path is not None}


def _recv_exact(sock: socket.socket, count: int) -> bytes:
    chunks: list[bytes] = []
    while count:
        chunk = sock.recv(count)
        if not chunk:
            raise ConnectionError("admin socket closed early")
        chunks.append(chunk)
        count -= len(chunk)
    return b"".join(chunks)


def admin_socket_command(path: Path, prefix: str, timeout: float = 2.0, **args: Any) -> Any:
    """Run one command on a Ceph daemon's admin socket (what ``ceph daemon`` does) and decode its JSON.

    The protocol: the JSON command and a NUL byte; the answer is a big-endian 32-bit length and that
    many bytes.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(json.dumps({"prefix": prefix, "format": "json", **args}).encode() + b"\0")
        (length,) = struct.unpack(">I", _recv_exact(sock, 4))
        return json.loads(_recv_exact(sock, length)) if length else None


def _child_env() -> dict[str, str]:
    """The environment for Ceph programs: ours, less anything that would point them at another cluster."""
    env = dict(os.environ)
    for var in ("CEPH_CONF", "CEPH_ARGS", "CEPH_KEYRING"):
        env.pop(var, None)
    return env


class _CephDaemon(ServerProcess):
    """``ceph-mon`` or ``ceph-osd`` in the foreground (``-f``), ready when its admin socket says so."""

    def __init__(
        self,
        kind: str,
        workdir: Path,
        argv: Sequence[str],
        asok: Path,
        log_path: Path,
        probe: tuple[str, Callable[[Any], bool]],
        *,
        ready_timeout: float,
        stop_timeout: float,
    ) -> None:
        self.name = f"ceph-{kind}"
        super().__init__(workdir, ready_timeout=ready_timeout, stop_timeout=stop_timeout)
        self.argv = tuple(argv)
        self.asok = asok
        self.probe = probe
        # the daemon's own log file (ceph.conf log_file) also gets its stdout and stderr
        self.log_path = log_path

    def command(self) -> Sequence[str]:
        return self.argv

    def environment(self) -> dict[str, str]:
        return _child_env()

    def is_ready(self) -> bool:
        prefix, check = self.probe
        try:
            return check(admin_socket_command(self.asok, prefix))
        except (OSError, ValueError):
            return False


class CephRGW(StoreServer):
    """A single-node Ceph cluster (mon + memstore OSD) with an RGW S3 endpoint on 127.0.0.1.

    Ports are chosen in the constructor (or read back from ``cluster.json`` when ``workdir`` already
    holds a cluster), so :meth:`restart` brings it back on the same endpoint with the same data.
    The S3 user ``eventindex`` gets ``access_key``/``secret_key`` (random by default). The first bucket
    makes RGW create two pools (~0.4 s).
    """

    name = "radosgw"

    def __init__(
        self,
        workdir: Path,
        access_key: str | None = None,
        secret_key: str | None = None,
        *,
        memstore_bytes: int = 8 << 30,
        extra_conf: Mapping[str, Mapping[str, str]] | None = None,
        ready_timeout: float = 90.0,
        stop_timeout: float = 15.0,
        osd_stop_timeout: float = 120.0,
    ) -> None:
        self.bin = find_ceph_binaries()
        super().__init__(workdir, ready_timeout=ready_timeout, stop_timeout=stop_timeout)
        self.state_path = self.workdir / "cluster.json"
        self.conf_path = self.workdir / "ceph.conf"
        self.run_dir = self.workdir / "run"
        self.log_dir = self.workdir / "log"
        self.log_path = self.log_dir / f"ceph-client.rgw.{_RGW_ID}.log"
        self.memstore_bytes = int(memstore_bytes)
        #: ``{section: {option: value}}`` merged over the generated ceph.conf (e.g. ``{"osd": {...}}``)
        self.extra_conf = {section: dict(options) for section, options in (extra_conf or {}).items()}
        self._state = self._load_or_new_state(access_key, secret_key)
        self.fsid: str = self._state["fsid"]
        self.ports: dict[str, int] = dict(self._state["ports"])
        self.access_key: str = self._state["access_key"]
        self.secret_key: str = self._state["secret_key"]
        self.rgw_port = self.ports["rgw"]
        for daemon in (f"mon.{_MON_ID}", f"osd.{_OSD_ID}", f"client.rgw.{_RGW_ID}"):
            asok = self.run_dir / f"ceph-{daemon}.asok"
            if len(str(asok)) > _MAX_SOCKET_PATH:
                raise ValueError(f"workdir {self.workdir} is too long for Ceph's admin socket {asok}")
        conf = str(self.conf_path)
        self.mon = _CephDaemon(
            "mon",
            self.workdir,
            [self.bin["ceph-mon"], "-c", conf, "-i", _MON_ID, "-f"],
            self.run_dir / f"ceph-mon.{_MON_ID}.asok",
            self.log_dir / f"ceph-mon.{_MON_ID}.log",
            ("mon_status", lambda status: isinstance(status, dict) and status.get("state") == "leader"),
            ready_timeout=ready_timeout,
            stop_timeout=stop_timeout,
        )
        self.osd = _CephDaemon(
            "osd",
            self.workdir,
            [self.bin["ceph-osd"], "-c", conf, "-i", str(_OSD_ID), "-f"],
            self.run_dir / f"ceph-osd.{_OSD_ID}.asok",
            self.log_dir / f"ceph-osd.{_OSD_ID}.log",
            ("status", lambda status: isinstance(status, dict) and status.get("state") == "active"),
            ready_timeout=ready_timeout,
            stop_timeout=max(stop_timeout, osd_stop_timeout),
        )

    # ------------------------------------------------------------- S3 side
    @property
    def endpoint(self) -> str:
        """The S3 endpoint URL, ``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.rgw_port}"

    @property
    def ready_port(self) -> int:
        return self.rgw_port

    def client_env(self) -> dict[str, str]:
        """Environment variables that point an AWS SDK (boto3, pyarrow) at this cluster's S3 user.

        The checksum settings keep botocore >= 1.36 and pyarrow from sending the streaming/CRC
        uploads RGW 16 does not understand (pyarrow's multipart upload otherwise fails with 411).
        """
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_REQUEST_CHECKSUM_CALCULATION": "when_required",
            "AWS_RESPONSE_CHECKSUM_VALIDATION": "when_required",
        }

    def s3_client(self, **config: Any) -> S3Client:
        """A boto3 S3 client for this cluster (path-style addressing, checksums only when required)."""
        options: dict[str, Any] = {
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            **config,
        }
        return s3_client(
            endpoint=self.endpoint,
            access_key=self.access_key,
            secret_key=self.secret_key,
            region=self.region,
            **options,
        )

    # ----------------------------------------------------------- processes
    def pids_by_daemon(self) -> dict[str, int]:
        """Pids of the running daemons: ``mon``, ``osd``, ``rgw`` (each its own process group)."""
        found = {"mon": self.mon.pid, "osd": self.osd.pid, "rgw": self.pid}
        return {name: pid for name, pid in found.items() if pid is not None}

    def pids(self) -> list[int]:
        """The process groups of the running daemons: the monitor's, the OSD's and radosgw's."""
        return list(self.pids_by_daemon().values())

    def daemons(self) -> dict[str, ServerProcess]:
        return {"mon": self.mon, "osd": self.osd, "rgw": self}

    def rss_by_daemon(self) -> dict[str, int]:
        """Resident set size in bytes of each running daemon (the OSD's includes the memstore)."""
        return {name: d.rss_bytes() for name, d in self.daemons().items() if d.pid is not None}

    def cpu_by_daemon(self) -> dict[str, float]:
        """CPU seconds (user + system) consumed so far by each running daemon."""
        return {name: d.cpu_seconds() for name, d in self.daemons().items() if d.pid is not None}

    @property
    def running(self) -> bool:
        return self.mon.running and self.osd.running and super().running

    def start(self) -> Self:
        """Bootstrap (first time), then start mon, OSD and radosgw, and create the S3 user (first time)."""
        if self.running:
            raise RuntimeError(f"ceph is already running (pids {self.pids_by_daemon()})")
        self.stop()  # whatever is left of a partly failed start or a crashed daemon
        t0 = time.monotonic()
        try:
            self._write_conf()
            self._bootstrap_mon()
            self.mon.start()
            self._bootstrap_osd()
            self.osd.start()
            super().start()
            self._ensure_user()
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop radosgw, then the OSD (which saves its memstore), then the monitor. Idempotent.

        ``timeout`` applies to radosgw and the monitor; the OSD always gets its own (longer)
        ``osd_stop_timeout``, since a SIGKILL while it saves would lose the data.
        """
        try:
            super().stop(timeout)
        finally:
            try:
                self.osd.stop()
            finally:
                self.mon.stop(timeout)

    def kill(self, *, backend: bool = False) -> None:
        """SIGKILL radosgw (a crash of the S3 service), then stop the OSD and the monitor cleanly.

        Nothing is left running and every write RGW acknowledged survives, as on a real (durable)
        store, so :meth:`start` brings the same objects back. ``backend=True`` SIGKILLs the OSD and
        the monitor too (a crash of the whole node): the memstore OSD then loses everything since
        its last clean stop, and if a pool (RGW makes them on its first start and on the first
        bucket) was created since, the restarted cluster hangs; use a new workdir after that.
        """
        try:
            super().kill()
        finally:
            if backend:
                try:
                    self.osd.kill()
                finally:
                    self.mon.kill()
            else:
                try:
                    self.osd.stop()
                finally:
                    self.mon.stop()

    # ------------------------------------------------------ radosgw process
    def command(self) -> list[str]:
        return [self.bin["radosgw"], "-c", str(self.conf_path), "-n", f"client.rgw.{_RGW_ID}", "-f"]

    def environment(self) -> dict[str, str]:
        return _child_env()

    def is_ready(self) -> bool:
        """An anonymous ``GET /`` (ListBuckets) answers 200 once RGW has its pools and zone."""
        conn = http.client.HTTPConnection(self.host, self.rgw_port, timeout=2)
        try:
            conn.request("GET", "/")
            return conn.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()

    # ------------------------------------------------------------ bootstrap
    def _load_or_new_state(self, access_key: str | None, secret_key: str | None) -> dict[str, Any]:
        if self.state_path.exists():
            state: dict[str, Any] = json.loads(self.state_path.read_text(encoding="utf-8"))
            for given, field in ((access_key, "access_key"), (secret_key, "secret_key")):
                if given is not None and given != state[field]:
                    raise ValueError(f"{self.state_path} holds a cluster whose S3 user has another {field}")
            return state
        mon_v2, mon_v1, rgw = free_ports(3)
        state = {
            "fsid": str(uuid.uuid4()),
            "osd_uuid": str(uuid.uuid4()),
            "ports": {"mon_v2": mon_v2, "mon_v1": mon_v1, "rgw": rgw},
            "access_key": access_key if access_key is not None else "EI" + secrets.token_hex(9).upper(),
            "secret_key": secret_key if secret_key is not None else secrets.token_urlsafe(30),
            "user_created": False,
        }
        self._save_state(state)
        return state

    def _save_state(self, state: dict[str, Any]) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=2)
        os.replace(tmp, self.state_path)

    def _write_conf(self) -> None:
        for sub in ("run", "log", "crash", "mon", "osd", "rgw", f"rgw/ceph-rgw.{_RGW_ID}"):
            (self.workdir / sub).mkdir(parents=True, exist_ok=True)
        sections = _conf_sections(self.workdir, self.host, self.fsid, self.ports, self.memstore_bytes)
        for section, options in self.extra_conf.items():
            sections.setdefault(section, {}).update(options)
        lines = ["# generated by testservers.ceph; rewritten on every start"]
        for section, options in sections.items():
            lines += ["", f"[{section}]", *(f"{key} = {value}" for key, value in options.items())]
        self.conf_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    def _run(self, argv: Sequence[str], timeout: float = 60.0, *, secret: str | None = None) -> str:
        """Run a Ceph tool against this cluster's conf; ServerStartError (with its output) on failure."""
        shown = " ".join(argv) if secret is None else " ".join(argv).replace(secret, "***")
        try:
            done = subprocess.run(
                list(argv),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.workdir,
                env=_child_env(),
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ServerStartError(f"ceph: `{shown}` did not finish in {timeout:.0f} s") from exc
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-3000:]
            raise ServerStartError(f"ceph: `{shown}` exited with status {done.returncode}:\n{output}")
        return done.stdout

    def _bootstrap_mon(self) -> None:
        """First start: a monmap with our fsid and ports, and the monitor's store (``ceph-mon --mkfs``)."""
        mon_data = self.workdir / "mon" / f"ceph-{_MON_ID}"
        if (mon_data / "store.db").is_dir() and (mon_data / "kv_backend").exists():
            return
        shutil.rmtree(mon_data, ignore_errors=True)
        monmap = self.workdir / "monmap"
        p = self.ports
        addrs = f"[v2:{self.host}:{p['mon_v2']},v1:{self.host}:{p['mon_v1']}]"
        create = ["--create", "--clobber", "--fsid", self.fsid, "--addv", _MON_ID, addrs]
        self._run([self.bin["monmaptool"], *create, str(monmap)])
        self._run([self.bin["ceph-mon"], "-c", str(self.conf_path), "--mkfs", "-i", _MON_ID, "--monmap", str(monmap)])

    def _bootstrap_osd(self) -> None:
        """First start: register ``osd.0`` with the monitor and make its (memstore) data directory."""
        osd_data = self.workdir / "osd" / f"ceph-{_OSD_ID}"
        if (osd_data / "ready").exists():
            return
        conf = ["-c", str(self.conf_path)]
        out = self._run([self.bin["ceph"], *conf, "--connect-timeout", "30", "osd", "new", self._state["osd_uuid"]])
        if out.strip() != str(_OSD_ID):
            raise ServerStartError(f"ceph: `osd new` allocated osd.{out.strip()}, expected osd.{_OSD_ID}")
        shutil.rmtree(osd_data, ignore_errors=True)
        osd_data.mkdir(parents=True)
        self._run([self.bin["ceph-osd"], *conf, "-i", str(_OSD_ID), "--mkfs", "--osd-uuid", self._state["osd_uuid"]])

    def _ensure_user(self) -> None:
        """First start: the S3 user ``eventindex`` with our keys (``radosgw-admin user create``)."""
        if self._state.get("user_created"):
            return
        admin = [self.bin["radosgw-admin"], "-c", str(self.conf_path)]
        try:
            info = json.loads(self._run([*admin, "user", "info", f"--uid={_UID}"]))
        except ServerStartError:
            info = None  # no such user yet
        if info is None or not any(k.get("access_key") == self.access_key for k in info.get("keys", [])):
            verb = ["user", "create", f"--display-name={_UID}"] if info is None else ["key", "create", "--key-type=s3"]
            self._run(
                [*admin, *verb, f"--uid={_UID}", f"--access-key={self.access_key}", f"--secret-key={self.secret_key}"],
                secret=self.secret_key,
            )
        self._state["user_created"] = True
        self._save_state(self._state)
