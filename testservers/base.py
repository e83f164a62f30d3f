"""Common machinery for launching real servers (brokers, object stores) on loopback.

A :class:`ServerProcess` owns one child process started in its own session (so its
process group id equals its pid), a work directory and a log file.  Ports are chosen
once, in the constructor, so :meth:`ServerProcess.restart` brings the server back on
the same ports with the same data directory.

What tests and benchmarks use is typed here: every server has :meth:`~ServerProcess.pids`
(its process groups) and :meth:`~ServerProcess.client_env` (what a client needs, e.g. its
credentials); a :class:`BrokerServer` gives queue URLs, a :class:`StoreServer` an S3 endpoint
and client. The errors are a small hierarchy under :class:`ServerError`.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self
from weakref import WeakSet

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

__all__ = [
    "BrokerServer",
    "ServerError",
    "ServerProcess",
    "ServerStartError",
    "ServerUnavailable",
    "StoreServer",
    "free_port",
    "free_ports",
    "stomp_connected",
    "tcp_port_open",
]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"


class ServerError(Exception):
    """Base of the errors a launcher raises on purpose."""


class ServerUnavailable(ServerError):
    """The server's binary or package is not installed on this machine."""


class ServerStartError(ServerError):
    """The server process was started but did not become ready (or exited early)."""


def free_ports(count: int) -> list[int]:
    """Return ``count`` distinct TCP ports that are currently free on 127.0.0.1.

    All sockets are held open until every port has been chosen, so the ports are
    distinct from each other; another process may still grab one before it is used.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((LOOPBACK, 0))
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port() -> int:
    """Return one TCP port that is currently free on 127.0.0.1."""
    return free_ports(1)[0]


def tcp_port_open(port: int, host: str = LOOPBACK, timeout: float = 0.5) -> bool:
    """True if a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def stomp_connected(host: str, port: int, *, vhost: str, login: tuple[str, str] | None = None) -> bool:
    """A STOMP 1.2 CONNECT to `vhost` (with `login`: user and passcode) is answered with CONNECTED."""
    credentials = f"login:{login[0]}\npasscode:{login[1]}\n" if login is not None else ""
    frame = f"CONNECT\naccept-version:1.2\nhost:{vhost}\n{credentials}heart-beat:0,0\n\n\x00"
    try:
        with socket.create_connection((host, port), timeout=2.0) as sock:
            sock.sendall(frame.encode())
            reply = b""
            while b"\x00" not in reply and len(reply) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                reply += chunk
            ok = reply.lstrip(b"\r\n").startswith(b"CONNECTED")
            if ok:
                sock.sendall(b"DISCONNECT\n\n\x00")
            return ok
    except OSError:
        return False


def s3_client(*, endpoint: str, access_key: str, secret_key: str, region: str, **config: Any) -> S3Client:
    """A boto3 S3 client for a server of ours (path-style addressing; `config`: botocore Config options)."""
    import boto3  # only the S3 servers need it
    from botocore.config import Config

    options: dict[str, Any] = {"s3": {"addressing_style": "path"}, **config}
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(**options),
    )


def ensure_bucket(client: S3Client, name: str) -> None:
    """Create bucket `name` with a boto3 S3 client (no error if this identity owns it already); closes the client."""
    try:
        client.create_bucket(Bucket=name)
    except client.exceptions.BucketAlreadyOwnedByYou:
        pass
    finally:
        client.close()


_live: WeakSet[ServerProcess] = WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    """Stop servers still running when the interpreter exits (their own sessions outlive it)."""
    for server in list(_live):
        try:
            server.stop()
        except Exception:
            log.exception("could not stop %s at exit", server.name)


def _tail(path: Path, max_bytes: int = 4000) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - max_bytes))
            return fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"<log not readable: {exc}>"


class ServerProcess(ABC):
    """Base class of a server run as a child process in its own process group.

    Subclasses implement :meth:`command` and :meth:`is_ready` (or :attr:`ready_port`), and may
    override :meth:`prepare` (write configuration; called before every start),
    :meth:`environment`, :meth:`client_env` and :meth:`pids`.
    """

    #: short name used in log messages and file names
    name: str = "server"
    host: str = LOOPBACK

    def __init__(self, workdir: Path, *, ready_timeout: float = 60.0, stop_timeout: float = 15.0) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / f"{self.name}.log"
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        #: seconds from spawning the process to ready, for the most recent start
        self.start_seconds: float | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    # ----------------------------------------------------------------- hooks
    @abstractmethod
    def command(self) -> Sequence[str]:
        """The argv to execute (the first element is the server binary itself)."""

    def environment(self) -> dict[str, str]:
        """Environment for the child process."""
        return dict(os.environ)

    def client_env(self) -> dict[str, str]:
        """Environment variables a client of this server needs (its credentials); none by default."""
        return {}

    def prepare(self) -> None:  # noqa: B027 (an optional hook)
        """Write configuration files etc.; called before every start."""

    def cleanup_after_exit(self) -> None:  # noqa: B027 (an optional hook)
        """Called once the server process has exited and been reaped (stop, kill, failed start)."""

    @property
    def ready_port(self) -> int:
        """The TCP port polled by the default :meth:`is_ready`."""
        raise NotImplementedError

    def is_ready(self) -> bool:
        """One readiness probe; must not block for more than a few seconds."""
        return tcp_port_open(self.ready_port, self.host)

    # ------------------------------------------------------------- lifecycle
    @property
    def pid(self) -> int | None:
        """Pid (equal to the process group id) of the running server, else None."""
        return self._proc.pid if self._proc is not None else None

    def pids(self) -> list[int]:
        """The process groups of the running server (each group's leader pid): the one child by default."""
        pid = self.pid
        return [] if pid is None else [pid]

    @property
    def running(self) -> bool:
        return self._proc is not None and not self._exited()

    def start(self) -> Self:
        """Spawn the server and wait until it is ready.  Returns ``self``."""
        if self._proc is not None:
            if not self._exited():
                raise RuntimeError(f"{self.name} is already running (pid {self._proc.pid})")
            self._reap()
        self.prepare()
        argv = list(self.command())
        log.info("starting %s: %s", self.name, " ".join(argv))
        t0 = time.monotonic()
        with self.log_path.open("ab") as logfh:
            logfh.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {self.name}\n".encode())
            logfh.flush()
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=logfh,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                env=self.environment(),
                start_new_session=True,
                close_fds=True,
            )
        _live.add(self)
        try:
            self.wait_ready(self.ready_timeout, t0=t0)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        log.info("%s ready (pid %d) in %.2f s", self.name, self._proc.pid, self.start_seconds)
        return self

    def wait_ready(self, timeout: float, *, t0: float | None = None) -> None:
        """Poll :meth:`is_ready` until it succeeds; ServerStartError on exit or timeout."""
        proc = self._proc
        if proc is None:
            raise ServerStartError(f"{self.name} has not been started")
        start = time.monotonic() if t0 is None else t0
        deadline = start + timeout
        delay = 0.05
        while True:
            if self._exited():
                raise ServerStartError(
                    f"{self.name} (pid {proc.pid}) exited with status {proc.poll()} before it was ready; "
                    f"log {self.log_path} ends with:\n{_tail(self.log_path)}"
                )
            if self.is_ready():
                return
            if time.monotonic() >= deadline:
                raise ServerStartError(
                    f"{self.name} (pid {proc.pid}) not ready after {timeout:.0f} s; "
                    f"log {self.log_path} ends with:\n{_tail(self.log_path)}"
                )
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM the server's process group, wait, then SIGKILL it.  Idempotent."""
        proc = self._proc
        if proc is None:
            return
        timeout = self.stop_timeout if timeout is None else timeout
        if not self._exited():
            log.info("stopping %s (pid %d)", self.name, proc.pid)
            self._signal_group(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while not self._exited() and time.monotonic() < deadline:
                time.sleep(0.05)
            if not self._exited():
                log.warning("%s (pid %d) ignored SIGTERM for %.0f s; killing", self.name, proc.pid, timeout)
                self._signal_group(signal.SIGKILL)
        self._reap()

    def kill(self) -> None:
        """SIGKILL the server's process group at once (a crash, for fault tests)."""
        if self._proc is None:
            return
        if not self._exited():
            log.info("killing %s (pid %d)", self.name, self._proc.pid)
            self._signal_group(signal.SIGKILL)
        self._reap()

    def restart(self) -> Self:
        """Stop (gracefully) and start again on the same ports and data directory."""
        self.stop()
        return self.start()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ resources
    def rss_bytes(self) -> int:
        """Resident set size of the server process (not its children), in bytes."""
        pid = self._require_pid()
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def cpu_seconds(self) -> float:
        """User plus system CPU time consumed so far by the server process."""
        pid = self._require_pid()
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            stat = fh.read()
        # the command name (field 2) may contain spaces; fields after it are fixed
        fields = stat[stat.rindex(")") + 2 :].split()
        utime, stime = int(fields[11]), int(fields[12])
        return (utime + stime) / os.sysconf("SC_CLK_TCK")

    # -------------------------------------------------------------- helpers
    def _require_pid(self) -> int:
        if self._proc is None or self._exited():
            raise RuntimeError(f"{self.name} is not running")
        return self._proc.pid

    def _exited(self) -> bool:
        """Has the child exited?  Does not reap it, so its pid/pgid stay reserved."""
        proc = self._proc
        if proc is None:
            return True
        if proc.returncode is not None:
            return True
        try:
            info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return True
        return info is not None

    def _signal_group(self, sig: signal.Signals) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return  # reaped: the pgid may no longer be ours
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)

    def _reap(self) -> None:
        proc = self._proc
        if proc is None:
            return
        # The leader is dead but not yet reaped, so its pgid cannot have been reused:
        # sweep any stragglers left in the group before reaping.
        self._signal_group(signal.SIGKILL)
        proc.wait()
        log.info("%s (pid %d) exited with status %s", self.name, proc.pid, proc.returncode)
        self._proc = None
        _live.discard(self)
        self.cleanup_after_exit()


class BrokerServer(ServerProcess):
    """A message broker: the queue URLs the transports take."""

    @abstractmethod
    def queue_url(self, queue: str, protocol: str) -> str:
        """The URL of `queue` over `protocol` ("stomp" or "amqp"); ValueError if this broker does not speak it."""


class StoreServer(ServerProcess):
    """An S3 object store: its endpoint, credentials (:meth:`client_env`) and clients."""

    region = "us-east-1"

    @property
    @abstractmethod
    def endpoint(self) -> str:
        """The S3 endpoint URL, ``http://127.0.0.1:PORT``."""

    @abstractmethod
    def s3_client(self, **config: Any) -> S3Client:
        """A boto3 S3 client for this server (`config`: botocore Config options)."""

    def create_bucket(self, name: str) -> None:
        """Create bucket ``name`` (no error if this identity already owns it)."""
        ensure_bucket(self.s3_client(), name)
