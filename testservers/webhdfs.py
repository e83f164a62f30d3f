"""A WebHDFS REST endpoint over a local directory, for tests: namenodes and a datanode on loopback, not Hadoop.

No HDFS can be installed on the machines these tests run on, so this module answers the WebHDFS REST
API as the Hadoop 3 documentation ("WebHDFS REST API") describes it, storing the file tree in a local
directory. It is a test endpoint, not a filesystem: one process, one datanode, no blocks or replicas.

What it serves (`http://127.0.0.1:PORT/webhdfs/v1/<PATH>?op=...`, parameter names case-insensitive):

- namenodes (one, or several for HA), each on its own port:
  `GET` OPEN (307 to the datanode), GETFILESTATUS, LISTSTATUS, GETCONTENTSUMMARY, GETHOMEDIRECTORY;
  `PUT` CREATE (307 to the datanode; no check at this step, as on a real namenode), MKDIRS, RENAME;
  `POST` APPEND (307 to the datanode); `DELETE` DELETE (`recursive=`). `noredirect=true` answers 200
  with `{"Location": ...}` instead of the 307.
- the datanode, on a separate port, takes the redirected requests (they must carry
  `namenoderpcaddress`, as a real datanode requires): CREATE (`overwrite=`, `permission=`; answers
  201 with a `webhdfs://` Location), APPEND, OPEN (`offset=`, `length=`). Request bodies may be
  sent with `Content-Length` or chunked transfer encoding (as HdfsCLI streams them), and are written
  to disk as they arrive: a file being written is visible, and a writer that dies leaves what it
  sent, as on HDFS.
- HDFS semantics that matter to writers: CREATE with `overwrite=false` onto an existing file fails
  with FileAlreadyExistsException (onto a directory even with `overwrite=true`); CREATE without
  `overwrite`, or APPEND, on a file another client is writing fails with AlreadyBeingCreatedException,
  while CREATE with `overwrite=true` replaces it, and that writer's upload (as one whose file was
  deleted) fails when it completes, with FileNotFoundException; RENAME returns
  `{"boolean": false}` when the destination exists, its parent is missing or it lies inside the
  source, and a RENAME onto an existing directory moves the source *inside* it; DELETE of a missing
  path returns false, of a non-empty directory without `recursive=true` fails with
  PathIsNotEmptyDirectoryException; OPEN beyond the end fails with EOFException.
- Errors are `{"RemoteException": {"exception", "javaClassName", "message"}}` with the documented
  status codes: 400 IllegalArgumentException (and InvalidPathException, UnsupportedOperationException),
  404 FileNotFoundException, 403 for every other IOException (FileAlreadyExistsException,
  ParentNotDirectoryException, PathIsNotEmptyDirectoryException, StandbyException ...), 500
  RuntimeException.
- HA: a namenode is `active` or `standby`; a standby answers every operation with 403
  StandbyException ("Operation category READ|WRITE is not supported in state standby"), as a real
  standby namenode does. :meth:`WebHdfsEndpoint.failover` switches the active one at runtime;
  :meth:`WebHdfsEndpoint.stop_namenode` / :meth:`WebHdfsEndpoint.start_namenode` take one off the
  network and back on the same port (connections refused, open ones cut). While no namenode is
  active, the datanode answers StandbyException too (a real one's client fails over, then gives up).
- Faults (:class:`Fault`, :meth:`WebHdfsEndpoint.inject`): the next N requests of an operation on a
  namenode or the datanode answer a RemoteException, are delayed, have their connection reset, or
  (datanode CREATE/APPEND/OPEN) are cut after a number of body bytes.
- `user.name` (default `dr.who`, Hadoop's static web user) becomes the owner of what is created,
  `permission=` its permission (default 644 for files, 755 for directories); both are reported in
  FileStatus, which has the fields the documentation marks required (`accessTime`, `blockSize`,
  `group`, `length`, `modificationTime`, `owner`, `pathSuffix`, `permission`, `replication`, `type`)
  and `childrenNum`, `fileId`, `storagePolicy`.
- TLS (swebhdfs) on every port with a given certificate and key.

What it does not do: Kerberos/SPNEGO or delegation tokens (`user.name` is trusted, as with security
off), permission checks (as with `dfs.permissions.enabled=false`), quotas, ACLs, xattrs, snapshots,
symlinks, storage or EC policies, checksums, CONCAT, TRUNCATE, SET* operations, LISTSTATUS_BATCH (any
operation it does not implement answers 400 UnsupportedOperationException and says so). Owners and
permissions are kept in memory: an endpoint restarted on the same directory reports the local file
mode and its own user for what was there. Replication is reported as 1 (one datanode).

In-process: ``with WebHdfsEndpoint(tmp_path, namenodes=2) as ep: ep.url`` (``webhdfs://127.0.0.1:P1,127.0.0.1:P2``).
As a process: ``python -m testservers.webhdfs --dir D [--namenodes N] [--cert PEM --key PEM]`` prints one
JSON line (``url``, ``namenodes``, ``datanode``) when it is ready, switches the active namenode to the
next one on SIGUSR1 and stops on SIGTERM or SIGINT.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import io
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import stat
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, BinaryIO, Literal, Self
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["Fault", "RemoteError", "WebHdfsEndpoint"]

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
PREFIX = "/webhdfs/v1"
#: The nameservice the redirects name in `namenoderpcaddress` (one namespace, whatever namenode answers).
NAMESERVICE = "endpoint"
#: Hadoop's `hadoop.http.staticuser.user`: the user of a request without `user.name` when security is off.
DEFAULT_USER = "dr.who"
BLOCK_SIZE = 128 * 1024 * 1024
IO_BLOCK = 1024 * 1024
MAX_LINE = 65536
REQUEST_LOG = 100_000

State = Literal["active", "standby"]

#: exception name -> (Java class, HTTP status), after the documented mapping of exceptions to status codes.
EXCEPTIONS: dict[str, tuple[str, int]] = {
    "IllegalArgumentException": ("java.lang.IllegalArgumentException", 400),
    "InvalidPathException": ("org.apache.hadoop.fs.InvalidPathException", 400),
    "UnsupportedOperationException": ("java.lang.UnsupportedOperationException", 400),
    "SecurityException": ("java.lang.SecurityException", 401),
    "FileNotFoundException": ("java.io.FileNotFoundException", 404),
    "IOException": ("java.io.IOException", 403),
    "EOFException": ("java.io.EOFException", 403),
    "FileAlreadyExistsException": ("org.apache.hadoop.fs.FileAlreadyExistsException", 403),
    "ParentNotDirectoryException": ("org.apache.hadoop.fs.ParentNotDirectoryException", 403),
    "PathIsNotEmptyDirectoryException": ("org.apache.hadoop.fs.PathIsNotEmptyDirectoryException", 403),
    "AlreadyBeingCreatedException": ("org.apache.hadoop.hdfs.protocol.AlreadyBeingCreatedException", 403),
    "AccessControlException": ("org.apache.hadoop.security.AccessControlException", 403),
    "StandbyException": ("org.apache.hadoop.ipc.StandbyException", 403),
    "RetriableException": ("org.apache.hadoop.ipc.RetriableException", 403),
    "RuntimeException": ("java.lang.RuntimeException", 500),
    "DSQuotaExceededException": ("org.apache.hadoop.hdfs.protocol.DSQuotaExceededException", 403),
}

#: The operations of each HTTP method in the WebHDFS API (the *OpParam.Op enums), implemented or not.
API_OPS: dict[str, frozenset[str]] = {
    "GET": frozenset({
        "OPEN", "GETFILESTATUS", "LISTSTATUS", "LISTSTATUS_BATCH", "GETCONTENTSUMMARY", "GETQUOTAUSAGE",
        "GETFILECHECKSUM", "GETHOMEDIRECTORY", "GETDELEGATIONTOKEN", "GETTRASHROOT", "GETXATTRS", "LISTXATTRS",
        "CHECKACCESS", "GETALLSTORAGEPOLICY", "GETSTORAGEPOLICY", "GETSNAPSHOTDIFF", "GETSNAPSHOTDIFFLISTING",
        "GETSNAPSHOTTABLEDIRECTORYLIST", "GETSNAPSHOTLIST", "GETFILEBLOCKLOCATIONS", "GETECPOLICY",
        "GETSERVERDEFAULTS", "GETLINKTARGET", "GETFILELINKSTATUS", "GETSTATUS", "GETECPOLICIES", "GETACLSTATUS",
    }),
    "PUT": frozenset({
        "CREATE", "MKDIRS", "CREATESYMLINK", "RENAME", "SETREPLICATION", "SETOWNER", "SETPERMISSION", "SETTIMES",
        "RENEWDELEGATIONTOKEN", "CANCELDELEGATIONTOKEN", "MODIFYACLENTRIES", "REMOVEACLENTRIES", "REMOVEDEFAULTACL",
        "REMOVEACL", "SETACL", "ALLOWSNAPSHOT", "DISALLOWSNAPSHOT", "CREATESNAPSHOT", "RENAMESNAPSHOT", "SETXATTR",
        "REMOVEXATTR", "SETSTORAGEPOLICY", "SATISFYSTORAGEPOLICY", "ENABLEECPOLICY", "DISABLEECPOLICY",
        "SETECPOLICY", "SETQUOTA", "SETQUOTABYSTORAGETYPE",
    }),
    "POST": frozenset({"APPEND", "CONCAT", "TRUNCATE", "UNSETSTORAGEPOLICY", "UNSETECPOLICY"}),
    "DELETE": frozenset({"DELETE", "DELETESNAPSHOT"}),
}  # fmt: skip
_ENUM = {"GET": "GetOpParam", "PUT": "PutOpParam", "POST": "PostOpParam", "DELETE": "DeleteOpParam"}
#: What a standby namenode names in its StandbyException.
_CATEGORY = {"GET": "READ", "PUT": "WRITE", "POST": "WRITE", "DELETE": "WRITE"}


class RemoteError(Exception):
    """An error the endpoint answers as `{"RemoteException": ...}` with the exception's HTTP status."""

    def __init__(self, exception: str, message: str) -> None:
        super().__init__(message)
        self.exception = exception
        self.java_class, self.status = EXCEPTIONS[exception]
        self.message = message

    def payload(self) -> dict[str, Any]:
        return {
            "RemoteException": {"exception": self.exception, "javaClassName": self.java_class, "message": self.message}
        }


class _ConnectionLost(Exception):
    """The client went away in the middle of a request body."""


class _Reset(Exception):
    """Drop the connection without an answer (a fault)."""


@dataclass
class Fault:
    """One injected failure, for the next `count` requests that match `node` and `op`.

    `node`: "namenode" (any namenode), "nn0", "nn1", ... (one namenode) or "datanode";
    `op`: an operation name, or None for any. In order: wait `delay` seconds; then `reset` drops the
    connection unanswered; else `after_bytes` (datanode CREATE/APPEND: keep that many body bytes,
    then drop the connection, as a datanode dying mid-write; OPEN: send that many bytes of the
    announced length, then drop it); else `exception` answers that RemoteException (a name in
    EXCEPTIONS, with its status); with none of these, only the delay applies.
    """

    node: str = "namenode"
    op: str | None = None
    count: int = 1
    exception: str | None = None
    message: str = "fault injected by the WebHDFS test endpoint"
    reset: bool = False
    delay: float = 0.0
    after_bytes: int | None = None

    def __post_init__(self) -> None:
        if self.exception is not None and self.exception not in EXCEPTIONS:
            raise ValueError(f"unknown exception {self.exception!r}; one of {', '.join(sorted(EXCEPTIONS))}")
        if self.count < 1:
            raise ValueError("a fault applies to at least one request")

    def matches(self, node: str, kind: str, op: str) -> bool:
        return self.node in (node, kind) and self.op in (None, op)


@dataclass(frozen=True)
class RequestRecord:
    """One request an endpoint node received: which node, the HTTP method, the operation, the HDFS path, the status."""

    node: str
    method: str
    op: str
    path: str
    status: int


@dataclass
class _Meta:
    owner: str
    group: str
    permission: int


@dataclass(eq=False)
class Lease:
    """A writer's hold on a file it is writing (HDFS's lease). `lost` when the file was deleted or overwritten
    under it: the writer's upload then fails when it completes, as the namenode refuses to complete it."""

    holder: str
    lost: bool = False


def _parse_bool(params: dict[str, str], name: str, default: bool) -> bool:
    value = params.get(name)
    if value is None or value == "":
        return default
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    message = f'Invalid value for webhdfs parameter "{name}": Failed to parse "{value}" to Boolean.'
    raise RemoteError("IllegalArgumentException", message)


def _parse_long(params: dict[str, str], name: str) -> int | None:
    value = params.get(name)
    if value is None or value == "" or value == "null":
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise RemoteError(
            "IllegalArgumentException", f'Invalid value for webhdfs parameter "{name}": {value} is not a long >= 0'
        )
    return number


def _parse_permission(params: dict[str, str], default: int) -> int:
    value = params.get("permission")
    if value is None or value == "":
        return default
    try:
        permission = int(value, 8)
    except ValueError:
        permission = -1
    if not 0 <= permission <= 0o1777:
        raise RemoteError(
            "IllegalArgumentException",
            f'Invalid value for webhdfs parameter "permission": Failed to parse "{value}" '
            "as a radix-8 short integer in the range 0 - 1777.",
        )
    return permission


def _check_path(raw: str) -> str:
    """The normalised absolute HDFS path of a request (repeated and trailing slashes dropped, as Path does)."""
    if not raw.startswith("/"):
        raise RemoteError("InvalidPathException", f"Invalid path name Path is not absolute: {raw}")
    parts = [p for p in raw.split("/") if p]
    if any(p in (".", "..") or ":" in p or "\x00" in p for p in parts):
        raise RemoteError("InvalidPathException", f"Invalid path name Invalid file name: {raw}")
    return "/" + "/".join(parts)


def _parent(path: str) -> str:
    return path.rsplit("/", 1)[0] or "/"


def _join(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


def _within(path: str, top: str) -> bool:
    return path == top or top == "/" or path.startswith(top + "/")


class Namespace:
    """The file tree: HDFS paths on a local directory, owners and permissions in memory, one lock (as the
    namenode's namespace lock) around every change. File data is read and written outside the lock."""

    def __init__(self, root: Path, superuser: str) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.superuser = superuser
        self.lock = threading.RLock()
        self._meta: dict[str, _Meta] = {}
        #: the files being written, by path (a rename moves the lease with the file, as on HDFS)
        self._leases: dict[str, Lease] = {}

    def local(self, path: str) -> Path:
        return self.root.joinpath(*path.split("/")[1:]) if path != "/" else self.root

    def _stat(self, path: str) -> os.stat_result | None:
        try:
            return os.stat(self.local(path))
        except (FileNotFoundError, NotADirectoryError):
            return None

    def _is_dir(self, path: str) -> bool:
        st = self._stat(path)
        return st is not None and stat.S_ISDIR(st.st_mode)

    def _check_parents(self, path: str) -> None:
        """ParentNotDirectoryException when a component above `path` is a file."""
        parts = path.split("/")[1:-1]
        for i in range(1, len(parts) + 1):
            prefix = "/" + "/".join(parts[:i])
            st = self._stat(prefix)
            if st is None:
                return
            if not stat.S_ISDIR(st.st_mode):
                raise RemoteError("ParentNotDirectoryException", f"{prefix} (is not a directory)")

    def _make_dirs(self, path: str, user: str, permission: int) -> None:
        parts = path.split("/")[1:] if path != "/" else []
        for i in range(1, len(parts) + 1):
            prefix = "/" + "/".join(parts[:i])
            if self._stat(prefix) is None:
                self.local(prefix).mkdir()
                self._meta[prefix] = _Meta(user, "supergroup", permission)

    def _lose_leases(self, top: str) -> None:
        for path in [p for p in self._leases if _within(p, top)]:
            self._leases.pop(path).lost = True

    def _forget(self, top: str) -> None:
        for path in [p for p in self._meta if _within(p, top)]:
            del self._meta[path]

    def file_status(self, path: str, suffix: str) -> dict[str, Any]:
        local = self.local(path)
        st = os.stat(local)
        is_dir = stat.S_ISDIR(st.st_mode)
        meta = self._meta.get(path) or _Meta(self.superuser, "supergroup", st.st_mode & 0o777)
        return {
            "accessTime": 0 if is_dir else st.st_atime_ns // 1_000_000,
            "blockSize": 0 if is_dir else BLOCK_SIZE,
            "childrenNum": len(os.listdir(local)) if is_dir else 0,
            "fileId": st.st_ino,
            "group": meta.group,
            "length": 0 if is_dir else st.st_size,
            "modificationTime": st.st_mtime_ns // 1_000_000,
            "owner": meta.owner,
            "pathSuffix": suffix,
            "permission": format(meta.permission, "o"),
            "replication": 0 if is_dir else 1,
            "storagePolicy": 0,
            "type": "DIRECTORY" if is_dir else "FILE",
        }

    # ------------------------------------------------------------ namenode operations

    def get_file_status(self, path: str) -> dict[str, Any]:
        with self.lock:
            if self._stat(path) is None:
                raise RemoteError("FileNotFoundException", f"File does not exist: {path}")
            return {"FileStatus": self.file_status(path, "")}

    def list_status(self, path: str) -> dict[str, Any]:
        with self.lock:
            st = self._stat(path)
            if st is None:
                raise RemoteError("FileNotFoundException", f"File {path} does not exist.")
            if not stat.S_ISDIR(st.st_mode):
                statuses = [self.file_status(path, "")]
            else:
                names = sorted(os.listdir(self.local(path)), key=os.fsencode)
                statuses = [self.file_status(_join(path, name), name) for name in names]
            return {"FileStatuses": {"FileStatus": statuses}}

    def content_summary(self, path: str) -> dict[str, Any]:
        with self.lock:
            st = self._stat(path)
            if st is None:
                raise RemoteError("FileNotFoundException", f"File does not exist: {path}")
            directories, files, length = 0, 0, 0
            if stat.S_ISDIR(st.st_mode):
                for dirpath, _dirnames, filenames in os.walk(self.local(path)):
                    directories += 1
                    files += len(filenames)
                    length += sum(os.stat(os.path.join(dirpath, f)).st_size for f in filenames)
            else:
                files, length = 1, st.st_size
            summary = {
                "directoryCount": directories,
                "fileCount": files,
                "length": length,
                "quota": -1,
                "spaceConsumed": length,
                "spaceQuota": -1,
                "typeQuota": {},
            }
            return {"ContentSummary": summary}

    def mkdirs(self, path: str, user: str, permission: int) -> dict[str, Any]:
        with self.lock:
            self._check_parents(path)
            st = self._stat(path)
            if st is not None and not stat.S_ISDIR(st.st_mode):
                raise RemoteError("FileAlreadyExistsException", f"Path is not a directory: {path}")
            self._make_dirs(path, user, permission)
            return {"boolean": True}

    def rename(self, src: str, dst: str) -> dict[str, Any]:
        """HDFS's rename (FileSystem.rename): false rather than an error for every refusal."""
        with self.lock:
            if src == "/" or self._stat(src) is None:
                return {"boolean": False}
            target = _join(dst, src.rsplit("/", 1)[1]) if self._is_dir(dst) else dst
            if target == src:
                return {"boolean": True}
            if _within(target, src) or self._stat(target) is not None or not self._is_dir(_parent(target)):
                return {"boolean": False}
            os.rename(self.local(src), self.local(target))
            for path in [p for p in self._meta if _within(p, src)]:
                self._meta[target + path[len(src) :]] = self._meta.pop(path)
            for path in [p for p in self._leases if _within(p, src)]:
                self._leases[target + path[len(src) :]] = self._leases.pop(path)
            return {"boolean": True}

    def delete(self, path: str, recursive: bool) -> dict[str, Any]:
        with self.lock:
            st = self._stat(path)
            if path == "/" or st is None:
                return {"boolean": False}
            local = self.local(path)
            if stat.S_ISDIR(st.st_mode):
                if os.listdir(local) and not recursive:
                    message = f"`{path} is non empty': Directory is not empty"
                    raise RemoteError("PathIsNotEmptyDirectoryException", message)
                shutil.rmtree(local)
            else:
                local.unlink()
            self._forget(path)
            self._lose_leases(path)
            return {"boolean": True}

    def check_readable_file(self, path: str) -> None:
        """What the namenode checks before redirecting an OPEN or APPEND: the path is a file."""
        with self.lock:
            st = self._stat(path)
            if st is None:
                raise RemoteError("FileNotFoundException", f"File {path} not found.")
            if stat.S_ISDIR(st.st_mode):
                raise RemoteError("FileNotFoundException", f"Path is not a file: {path}")

    # ------------------------------------------------------------ datanode operations

    def _held(self, op: str, path: str, holder: str) -> RemoteError:
        owner = self._leases[path].holder
        message = f"Failed to {op} {path} for {holder} because this file lease is currently owned by {owner}"
        return RemoteError("AlreadyBeingCreatedException", message)

    def open_for_create(
        self, path: str, overwrite: bool, user: str, permission: int, client: str
    ) -> tuple[BinaryIO, Lease]:
        """HDFS's startFile: an existing file is refused without `overwrite` (AlreadyBeingCreatedException while
        another client writes it), and deleted with it, even under another writer (whose lease is then lost)."""
        holder = f"{user} on {client}"
        with self.lock:
            if path == "/":
                raise RemoteError("FileAlreadyExistsException", "/ already exists as a directory")
            self._check_parents(path)
            st = self._stat(path)
            if st is not None:
                if stat.S_ISDIR(st.st_mode):
                    raise RemoteError("FileAlreadyExistsException", f"{path} already exists as a directory")
                if not overwrite:
                    if path in self._leases:
                        raise self._held("CREATE_FILE", path, holder)
                    raise RemoteError("FileAlreadyExistsException", f"{path} for client {client} already exists")
                self.local(path).unlink()
                self._lose_leases(path)
            self._make_dirs(_parent(path), user, 0o755)
            handle = open(self.local(path), "xb")  # noqa: SIM115 - closed by finish_write
            self._meta[path] = _Meta(user, "supergroup", permission)
            lease = self._leases[path] = Lease(holder)
            return handle, lease

    def open_for_append(self, path: str, user: str, client: str) -> tuple[BinaryIO, Lease]:
        holder = f"{user} on {client}"
        with self.lock:
            st = self._stat(path)
            if st is None:
                raise RemoteError("FileNotFoundException", f"File does not exist: {path}")
            if stat.S_ISDIR(st.st_mode):
                raise RemoteError("FileNotFoundException", f"Path is not a file: {path}")
            if path in self._leases:
                raise self._held("APPEND_FILE", path, holder)
            handle = open(self.local(path), "ab")  # noqa: SIM115 - closed by finish_write
            lease = self._leases[path] = Lease(holder)
            return handle, lease

    def finish_write(self, handle: BinaryIO, lease: Lease) -> bool:
        """Close a written file and release its lease; False when the lease was lost meanwhile."""
        handle.close()
        with self.lock:
            for path in [p for p, held in self._leases.items() if held is lease]:
                del self._leases[path]
        return not lease.lost

    def open_for_read(self, path: str, offset: int, length: int | None) -> tuple[BinaryIO, int]:
        """An open file positioned at `offset`, and how many bytes to send."""
        with self.lock:
            st = self._stat(path)
            if st is None:
                raise RemoteError("FileNotFoundException", f"File does not exist: {path}")
            if stat.S_ISDIR(st.st_mode):
                raise RemoteError("FileNotFoundException", f"Path is not a file: {path}")
            if offset > st.st_size:
                raise RemoteError("EOFException", "Cannot seek after EOF")
            handle = open(self.local(path), "rb")  # noqa: SIM115 - closed by the datanode after sending
        handle.seek(offset)
        count = st.st_size - offset
        return handle, count if length is None else min(count, length)


class _Body:
    """A request body, read as it arrives: `Content-Length`, or chunked transfer encoding."""

    def __init__(self, rfile: io.BufferedIOBase, headers: Any) -> None:
        self._rfile = rfile
        self._chunked = "chunked" in str(headers.get("Transfer-Encoding", "")).lower()
        try:
            self._remaining = int(headers.get("Content-Length") or 0)
        except ValueError:
            raise RemoteError("IllegalArgumentException", "Invalid Content-Length") from None
        self.done = not self._chunked and self._remaining == 0
        self.started = False
        self._blocks: Iterator[bytes] | None = None

    def blocks(self) -> Iterator[bytes]:
        if self._blocks is None:
            self._blocks = self._read_chunked() if self._chunked else self._read_sized()
        return self._blocks

    def drain(self) -> None:
        for _ in self.blocks():
            pass

    def _read(self, size: int) -> bytes:
        data = self._rfile.read(size)
        if not data:
            raise _ConnectionLost("the client closed the connection in the middle of the body")
        self.started = True
        return data

    def _read_sized(self) -> Iterator[bytes]:
        while self._remaining:
            data = self._read(min(self._remaining, IO_BLOCK))
            self._remaining -= len(data)
            yield data
        self.done = True

    def _read_chunked(self) -> Iterator[bytes]:
        while True:
            line = self._rfile.readline(MAX_LINE)
            if not line:
                raise _ConnectionLost("the client closed the connection in the middle of a chunked body")
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _ConnectionLost(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                while self._rfile.readline(MAX_LINE) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                self.done = True
                return
            while size:
                data = self._read(min(size, IO_BLOCK))
                size -= len(data)
                yield data
            self._rfile.readline(MAX_LINE)  # the CRLF after the chunk


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    #: headers and body go out in separate writes: without TCP_NODELAY each answer waits for a delayed ACK (40 ms)
    disable_nagle_algorithm = True
    server: _NodeServer
    #: the byte count after which a fault cuts this request's data (None: no cut)
    cut_after: int | None = None
    #: whether the status line of this request's answer went out
    responded = False

    def do_GET(self) -> None:
        self._handle("GET")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s: " + format, self.server.node.name, self.client_address[0], *args)

    def _handle(self, method: str) -> None:
        node = self.server.node
        parts = urlsplit(self.path)
        query = {k.lower(): v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        op = query.get("op", "").upper()
        raw_path = unquote(parts.path)
        status = 0
        self.cut_after, self.responded = None, False  # one handler serves every request of a keep-alive connection
        try:
            body = _Body(self.rfile, self.headers)
        except RemoteError as err:
            self.close_connection = True
            self._send_json(err.status, err.payload())
            return
        try:
            if not (raw_path == PREFIX or raw_path.startswith(PREFIX + "/")):
                raise RemoteError("FileNotFoundException", f"{raw_path}: not a WebHDFS path (expected {PREFIX}/...)")
            path = _check_path(raw_path[len(PREFIX) :] or "/")
            fault = node.endpoint.take_fault(node, op)
            if fault is not None:
                status = self._apply_fault(fault, body)
            if status == 0:
                status = node.serve(self, method, op, path, query, body)
        except RemoteError as err:
            status = err.status
            self._settle_body(body)
            self._send_json(err.status, err.payload())
        except _Reset:
            status = -1
            self._reset()
        except (_ConnectionLost, ConnectionError, TimeoutError, ssl.SSLError) as exc:
            status = -1
            log.debug("%s: connection lost: %s", node.name, exc)
            self.close_connection = True
        except Exception as exc:  # a bug of the endpoint: a 500 RuntimeException, as a Java server's, and a traceback
            log.exception("%s: %s %s failed", node.name, method, self.path)
            self.close_connection = True
            if not self.responded:
                status = 500
                self._send_json(500, RemoteError("RuntimeException", f"{type(exc).__name__}: {exc}").payload())
        finally:
            node.endpoint.record(RequestRecord(node.name, method, op, raw_path[len(PREFIX) :] or "/", status))

    def _apply_fault(self, fault: Fault, body: _Body) -> int:
        """Act out `fault`; return the status it answered, or 0 to serve the request (with `self.cut_after` set)."""
        if fault.delay:
            time.sleep(fault.delay)
        if fault.reset:
            raise _Reset
        if fault.after_bytes is not None:
            self.cut_after = fault.after_bytes
            return 0
        if fault.exception is not None:
            raise RemoteError(fault.exception, fault.message)
        return 0

    def _settle_body(self, body: _Body) -> None:
        """Before an error answer: read the rest of an untouched body, or close the connection after a partial one."""
        if body.done:
            return
        if body.started:
            self.close_connection = True
            return
        try:
            body.drain()
        except _ConnectionLost:
            self.close_connection = True

    def _reset(self) -> None:
        """Close with RST, answering nothing."""
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def send_response(self, code: int, message: str | None = None) -> None:
        self.responded = True
        super().send_response(code, message)

    def _send_json(self, status: int, value: dict[str, Any]) -> None:
        data = json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def send_empty(self, status: int, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def send_json(self, value: dict[str, Any]) -> int:
        self._send_json(200, value)
        return 200

    def send_file(self, handle: BinaryIO, count: int) -> int:
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(count))
        self.end_headers()
        cut = self.cut_after
        sent = 0
        while sent < count:
            if cut is not None and sent >= cut:
                raise _Reset
            block = handle.read(min(IO_BLOCK, count - sent, (cut - sent) if cut is not None else IO_BLOCK))
            if not block:
                raise _Reset  # the file shrank under us: the client must not take a short answer as whole
            self.wfile.write(block)
            sent += len(block)
        return 200

    def receive_into(self, handle: BinaryIO, body: _Body) -> None:
        cut = self.cut_after
        received = 0
        for block in body.blocks():
            if cut is not None and received + len(block) >= cut:
                handle.write(block[: cut - received])
                handle.flush()
                raise _Reset
            handle.write(block)
            received += len(block)


class _NodeServer(ThreadingHTTPServer):
    """One node's HTTP(S) server; remembers its open connections so that stopping the node cuts them."""

    daemon_threads = True

    def __init__(self, node: _Node, port: int, tls: ssl.SSLContext | None) -> None:
        self.node = node
        self.tls = tls
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__((LOOPBACK, port), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.tls is not None:
            request = self.tls.wrap_socket(request, server_side=True)  # the handshake, in this request's thread
        with self._open_lock:
            self._open.add(request)
        try:
            super().finish_request(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)
            if self.tls is not None:
                request.close()  # the plain socket socketserver closes was detached by wrap_socket

    def cut_connections(self) -> None:
        with self._open_lock:
            for sock in list(self._open):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("%s: error serving %s", self.node.name, client_address, exc_info=True)


class _Node:
    """A namenode or the datanode: an HTTP server on its own loopback port."""

    def __init__(self, endpoint: WebHdfsEndpoint, name: str, kind: Literal["namenode", "datanode"]) -> None:
        self.endpoint = endpoint
        self.name = name
        self.kind = kind
        self.state: State = "standby"
        self.port = 0
        self._server: _NodeServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._server is not None

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = _NodeServer(self, self.port, self.endpoint.tls)
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"webhdfs-{self.name}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.cut_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join()

    @property
    def http_url(self) -> str:
        return f"{self.endpoint.http_scheme}://{LOOPBACK}:{self.port}"

    # ------------------------------------------------------------ serving

    def serve(self, req: _Handler, method: str, op: str, path: str, query: dict[str, str], body: _Body) -> int:
        if method not in API_OPS or op not in API_OPS[method]:
            raise RemoteError(
                "IllegalArgumentException",
                f'Invalid value for webhdfs parameter "op": No enum constant '
                f"org.apache.hadoop.hdfs.web.resources.{_ENUM.get(method, 'GetOpParam')}.Op.{op}",
            )
        if self.kind == "namenode":
            return self._serve_namenode(req, method, op, path, query, body)
        return self._serve_datanode(req, op, path, query, body)

    def _unsupported(self, op: str) -> RemoteError:
        return RemoteError("UnsupportedOperationException", f"op={op} is not implemented by the WebHDFS test endpoint")

    def _serve_namenode(
        self, req: _Handler, method: str, op: str, path: str, query: dict[str, str], body: _Body
    ) -> int:
        if self.state != "active":
            raise RemoteError(
                "StandbyException",
                f"Operation category {_CATEGORY[method]} is not supported in state standby. "
                "Visit https://s.apache.org/sbnn-error",
            )
        ns = self.endpoint.namespace
        user = query.get("user.name") or DEFAULT_USER
        body.drain()  # a namenode takes no data
        if op in ("OPEN", "APPEND", "CREATE"):
            if op == "CREATE":
                _parse_bool(query, "overwrite", False)
                _parse_permission(query, 0o644)
            else:
                ns.check_readable_file(path)
                _parse_long(query, "offset")
                _parse_long(query, "length")
            return self._redirect(req, op, path, query, user)
        if op == "GETFILESTATUS":
            return req.send_json(ns.get_file_status(path))
        if op == "LISTSTATUS":
            return req.send_json(ns.list_status(path))
        if op == "GETCONTENTSUMMARY":
            return req.send_json(ns.content_summary(path))
        if op == "GETHOMEDIRECTORY":
            return req.send_json({"Path": f"/user/{user}"})
        if op == "MKDIRS":
            return req.send_json(ns.mkdirs(path, user, _parse_permission(query, 0o755)))
        if op == "RENAME":
            destination = query.get("destination", "")
            if not destination.startswith("/"):
                raise RemoteError(
                    "IllegalArgumentException",
                    f'Invalid value for webhdfs parameter "destination": {destination!r} is not an absolute path',
                )
            return req.send_json(ns.rename(path, _check_path(destination)))
        if op == "DELETE":
            return req.send_json(ns.delete(path, _parse_bool(query, "recursive", False)))
        raise self._unsupported(op)

    def _redirect(self, req: _Handler, op: str, path: str, query: dict[str, str], user: str) -> int:
        keep = {
            "CREATE": ("overwrite", "permission", "blocksize", "replication", "buffersize"),
            "APPEND": ("buffersize",),
            "OPEN": ("offset", "length", "buffersize"),
        }[op]
        params = {"op": op, "user.name": user, "namenoderpcaddress": NAMESERVICE}
        params.update({k: query[k] for k in keep if k in query})
        if op == "CREATE":
            params["createparent"] = "true"
        location = f"{self.endpoint.datanode.http_url}{PREFIX}{quote(path)}?" + "&".join(
            f"{k}={quote(v, safe='')}" for k, v in params.items()
        )
        if _parse_bool(query, "noredirect", False):
            return req.send_json({"Location": location})
        req.send_empty(307, {"Location": location})
        return 307

    def _serve_datanode(self, req: _Handler, op: str, path: str, query: dict[str, str], body: _Body) -> int:
        if op not in ("CREATE", "APPEND", "OPEN"):
            raise self._unsupported(op)
        if not query.get("namenoderpcaddress"):
            raise RemoteError("IllegalArgumentException", f"Required param namenoderpcaddress for op: {op} is null")
        if not any(n.running and n.state == "active" for n in self.endpoint.namenodes):
            category = "READ" if op == "OPEN" else "WRITE"
            raise RemoteError("StandbyException", f"Operation category {category} is not supported: no active namenode")
        ns = self.endpoint.namespace
        user = query.get("user.name") or DEFAULT_USER
        client = req.client_address[0]
        if op == "OPEN":
            body.drain()
            handle, count = ns.open_for_read(path, _parse_long(query, "offset") or 0, _parse_long(query, "length"))
            with handle:
                return req.send_file(handle, count)
        if op == "CREATE":
            handle, lease = ns.open_for_create(
                path, _parse_bool(query, "overwrite", False), user, _parse_permission(query, 0o644), client
            )
        else:
            handle, lease = ns.open_for_append(path, user, client)
        try:
            req.receive_into(handle, body)
        finally:
            completed = ns.finish_write(handle, lease)
        if not completed:
            raise RemoteError(
                "FileNotFoundException",
                f"File does not exist: {path} (deleted or overwritten while {lease.holder} was writing it)",
            )
        if op == "CREATE":
            req.send_empty(201, {"Location": f"{self.endpoint.scheme}://{NAMESERVICE}{quote(path)}"})
            return 201
        req.send_empty(200, {})
        return 200


class WebHdfsEndpoint:
    """A WebHDFS endpoint on 127.0.0.1: `namenodes` namenodes (the first active) and one datanode, on free ports,
    serving the tree under `directory` (see the module docstring for what it implements).

    `certfile` and `keyfile` (PEM) make every port speak TLS (swebhdfs). `superuser` owns what the
    endpoint did not create (default: the user running it).
    """

    def __init__(
        self,
        directory: Path,
        *,
        namenodes: int = 1,
        certfile: Path | None = None,
        keyfile: Path | None = None,
        superuser: str | None = None,
    ) -> None:
        if namenodes < 1:
            raise ValueError("an endpoint has at least one namenode")
        if (certfile is None) != (keyfile is None):
            raise ValueError("TLS needs both certfile and keyfile")
        self.namespace = Namespace(Path(directory), superuser or getpass.getuser())
        self.tls: ssl.SSLContext | None = None
        if certfile is not None and keyfile is not None:
            self.tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.tls.load_cert_chain(certfile, keyfile)
        self.namenodes = [_Node(self, f"nn{i}", "namenode") for i in range(namenodes)]
        self.namenodes[0].state = "active"
        self.datanode = _Node(self, "dn", "datanode")
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        #: the last REQUEST_LOG requests the nodes received, oldest first
        self.requests: deque[RequestRecord] = deque(maxlen=REQUEST_LOG)

    @property
    def scheme(self) -> str:
        """The filesystem scheme: `webhdfs`, or `swebhdfs` over TLS."""
        return "swebhdfs" if self.tls else "webhdfs"

    @property
    def http_scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        """`webhdfs://127.0.0.1:P1[,127.0.0.1:P2...]` (swebhdfs:// over TLS), without a path."""
        return f"{self.scheme}://" + ",".join(f"{LOOPBACK}:{n.port}" for n in self.namenodes)

    def url_for(self, path: str = "/") -> str:
        """`url` followed by an absolute HDFS path."""
        return self.url + _check_path(path)

    @property
    def namenode_urls(self) -> list[str]:
        """Each namenode's base URL (`http://127.0.0.1:PORT`), in order: HdfsCLI takes them joined by `;`."""
        return [n.http_url for n in self.namenodes]

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        self.datanode.start()
        for node in self.namenodes:
            node.start()
        return self

    def stop(self) -> None:
        for node in (*self.namenodes, self.datanode):
            node.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ------------------------------------------------------------ HA and faults

    def active(self) -> int | None:
        """The index of the active namenode, or None."""
        return next((i for i, n in enumerate(self.namenodes) if n.state == "active"), None)

    def failover(self, to: int) -> None:
        """Make namenode `to` the active one and every other a standby (as `hdfs haadmin -failover`)."""
        if not 0 <= to < len(self.namenodes):
            raise ValueError(f"no namenode {to}")
        for i, node in enumerate(self.namenodes):
            node.state = "active" if i == to else "standby"

    def set_state(self, index: int, state: State) -> None:
        """Set one namenode's HA state (two active ones are allowed: a test of split brain may want them)."""
        self.namenodes[index].state = state

    def stop_namenode(self, index: int) -> None:
        """Take namenode `index` off the network: new connections are refused and open ones cut."""
        self.namenodes[index].stop()

    def start_namenode(self, index: int) -> None:
        """Bring namenode `index` back, on its port, in the HA state it had."""
        self.namenodes[index].start()

    def inject(self, *faults: Fault) -> None:
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take_fault(self, node: _Node, op: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(node.name, node.kind, op):
                    fault.count -= 1
                    if fault.count == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def record(self, entry: RequestRecord) -> None:
        with self._lock:
            self.requests.append(entry)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m testservers.webhdfs", description="A WebHDFS REST test endpoint over a local directory."
    )
    parser.add_argument("--dir", required=True, type=Path, help="the directory holding the file tree")
    parser.add_argument("--namenodes", type=int, default=1, help="namenodes (the first active; SIGUSR1 fails over)")
    parser.add_argument("--cert", type=Path, help="PEM certificate: serve swebhdfs (TLS) on every port")
    parser.add_argument("--key", type=Path, help="PEM private key of --cert")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        endpoint = WebHdfsEndpoint(args.dir, namenodes=args.namenodes, certfile=args.cert, keyfile=args.key)
    except (ValueError, OSError, ssl.SSLError) as exc:
        print(f"webhdfs endpoint: {exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def on_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    def on_failover(signum: int, frame: FrameType | None) -> None:
        current = endpoint.active()
        endpoint.failover(0 if current is None else (current + 1) % len(endpoint.namenodes))

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGUSR1, on_failover)
    with endpoint:
        ready = {"url": endpoint.url, "namenodes": endpoint.namenode_urls, "datanode": endpoint.datanode.http_url}
        print(json.dumps(ready), flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
