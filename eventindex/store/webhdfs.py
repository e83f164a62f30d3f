"""`webhdfs://NN:PORT[,NN2:PORT...]/path` and `swebhdfs://...[?ca=PATH]`: HDFS over its WebHDFS REST API.

Two faces over one HdfsCLI client (the `hdfs` package, the project's `hdfs` extra; imported only here):
an ObjectStore (:class:`WebHdfsStore`: write-once objects under the path) and a pyarrow filesystem
(:class:`WebHdfsHandler` in a `pyarrow.fs.PyFileSystem`). :func:`webhdfs_warehouse` gives both for a URL.

The URL:
- namenodes: one, or several of an HA pair (or group), comma-separated; the port defaults to Hadoop 3's
  9870 (webhdfs, http) or 9871 (swebhdfs, https);
- the path: the root every key and path lives under (absolute, `/` when empty);
- `ca=PATH` (swebhdfs only): the CA bundle that verifies the namenodes and datanodes, and only it (as
  requests' `verify=`, whatever REQUESTS_CA_BUNDLE says); without it the system bundle verifies;
- `auth=kerberos` (or `EI_WEBHDFS_AUTH=kerberos`): SPNEGO with the Kerberos ticket cache, through
  HdfsCLI's KerberosClient (the `hdfs[kerberos]` extra); `auth=simple` (the default): security off, the
  user sent as `user.name` is `HADOOP_USER_NAME`, else the login user.
There are no credentials in these URLs: user information (`user@host`) is refused.

HA and retries: HdfsCLI's Client takes the namenodes as one `url` separated by `;` and sends each
request to the one that answered last; on a StandbyException or RetriableException answer, or a
connection error or timeout, it moves to the next, once around the ring per request. When every
namenode failed that way (a failover in progress, all unreachable), this module waits (capped
exponential backoff with full jitter, 0.5 s doubling up to 8 s) and tries the request again, up to
`attempts` times (6 by default: about 8 s of waiting on average, 15.5 s at most); a 500 answer is retried
the same way. Writes of streamed data (output streams) are not retried: the error reaches the writer.

Write-once (:meth:`WebHdfsStore.put`): the object is written under a hidden temporary name
(`.tmp-<name>.<random>` in the same directory) and renamed onto its key. HDFS renames atomically and
refuses a rename onto an existing file, so two writers cannot both win and no reader sees a partial
object; a key that exists is refused up front (GETFILESTATUS) before any byte is sent. A writer that
dies between the two steps leaves its temporary file behind, hidden from :meth:`WebHdfsStore.list`
and from readers of the warehouse (which skip names starting with `.` or `_`). A rename retried
because its answer was lost finds the object in place and reports ObjectExistsError: callers that
then compare the stored bytes with theirs (the producer, the load claim) see their own object.

The pyarrow filesystem takes absolute HDFS paths (`/warehouse/...`). It reads with OPEN and
offset/length (random access, 1 MiB read-ahead for small reads), writes one streamed CREATE per output
stream (HdfsCLI's chunked upload, at most 6 MiB of it in memory), and keeps pyarrow's rename rule:
`move` onto an existing file or empty directory replaces it (delete, then rename: not atomic), onto a
non-empty directory fails, where a bare HDFS RENAME onto a directory would move the source inside it.

Errors: every hdfs and requests failure leaves this module as a typed error that is also an OSError
(pyarrow filesystems report failures as OSError, and pyarrow keeps a Python exception's type):
WebHdfsNotFoundError (ObjectNotFoundError, FileNotFoundError), WebHdfsExistsError (ObjectExistsError,
FileExistsError), WebHdfsUnavailableError (StoreUnavailableError: no namenode available, 500 answers,
timeouts, resets) and WebHdfsError (StoreError: every other refusal, a TLS verification failure).
"""

from __future__ import annotations

import getpass
import io
import logging
import os
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import requests

from eventindex.backoff import compute_backoff
from eventindex.errors import (
    ConfigError,
    ForbiddenLocationError,
    ObjectExistsError,
    ObjectNotFoundError,
    OversizedObjectError,
    StoreError,
    StoreUnavailableError,
)
from eventindex.redact import has_userinfo, redact, userinfo_note
from eventindex.store.base import DEFAULT_MAX_OBJECT_BYTES, ObjectStore, check_key

if TYPE_CHECKING:
    from requests.sessions import _Settings

try:
    from hdfs import HdfsError, InsecureClient
except ImportError as exc:  # the optional `hdfs` extra
    raise ConfigError(
        "webhdfs:// and swebhdfs:// need the hdfs package: pip install 'eventindex-collect[hdfs]'"
    ) from exc

__all__ = [
    "WebHdfs",
    "WebHdfsError",
    "WebHdfsExistsError",
    "WebHdfsHandler",
    "WebHdfsLocation",
    "WebHdfsNotFoundError",
    "WebHdfsStore",
    "WebHdfsUnavailableError",
    "webhdfs_warehouse",
]

log = logging.getLogger(__name__)
# HdfsCLI logs every call at INFO ("Fetching status for '/...'."): in a service's log, a line per request is noise.
# Its warnings (no reachable namenode) still show; this module logs its own retries.
logging.getLogger("hdfs").setLevel(logging.WARNING)

SCHEMES = ("webhdfs", "swebhdfs")
#: Hadoop 3's namenode HTTP and HTTPS ports (dfs.namenode.http-address, dfs.namenode.https-address).
DEFAULT_PORTS = {"webhdfs": 9870, "swebhdfs": 9871}
AUTH_ENV = "EI_WEBHDFS_AUTH"
USER_ENV = "HADOOP_USER_NAME"
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 60.0
DEFAULT_ATTEMPTS = 6
BACKOFF_BASE = 0.5
BACKOFF_CAP = 8.0
TEMP_PREFIX = ".tmp-"
MIB = 1024 * 1024
#: Reads shorter than this fetch this much and keep the rest for the next read.
READ_AHEAD = MIB
#: An output stream sends its data in blocks of this size, with at most UPLOAD_WINDOW of them queued.
UPLOAD_BLOCK = MIB
UPLOAD_WINDOW = 4
#: How an HdfsCLI error names a namenode that cannot serve now (a standby, one catching up) or a server fault.
_UNAVAILABLE = frozenset({"StandbyException", "RetriableException", "RuntimeException"})

T = TypeVar("T")


class WebHdfsError(StoreError, OSError):
    """A WebHDFS operation failed (a StoreError for the project, an OSError for pyarrow)."""


class WebHdfsNotFoundError(ObjectNotFoundError, FileNotFoundError):
    """The path does not exist (or is not a file where a file was expected)."""


class WebHdfsExistsError(ObjectExistsError, FileExistsError):
    """The path exists: a write-once object or an exclusive create lost."""


class WebHdfsUnavailableError(StoreUnavailableError, OSError):
    """No namenode could serve the request (standby, unreachable, timing out, failing) after the retries."""


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _describe(exc: Exception) -> str:
    """A requests error in one line: its type and innermost reason, without object reprs."""
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    text = re.sub(r"<[^<>]*>:? ?", "", str(reason if reason is not None else exc))
    return _one_line(f"{type(exc).__name__}: {text}")


def _auth(value: str, source: str) -> bool:
    """True for Kerberos, False for simple authentication."""
    if value not in ("simple", "kerberos"):
        raise ConfigError(f"{source}: auth must be simple or kerberos, not {value!r}")
    return value == "kerberos"


@dataclass(frozen=True)
class WebHdfsLocation:
    """A parsed webhdfs:// or swebhdfs:// URL."""

    scheme: str
    #: "host:port" of each namenode, in the URL's order (IPv6 hosts in brackets)
    namenodes: tuple[str, ...]
    #: absolute HDFS path, without a trailing slash ("/" for the root)
    root: str
    #: CA bundle verifying https (swebhdfs only)
    ca: str | None = None
    kerberos: bool = False

    @classmethod
    def from_url(cls, url: str, environ: Mapping[str, str] | None = None) -> WebHdfsLocation:
        env = os.environ if environ is None else environ
        # credentials first, on the raw string: a password holding "/", "?" or "#" hides its "@" from urlsplit's
        # netloc (which would then be a namenode named "alice:Super"); the URL is shown redacted only
        if has_userinfo(url):
            raise ConfigError(
                "webhdfs URL must not carry credentials: the user comes from HADOOP_USER_NAME (or Kerberos)"
                + userinfo_note(url)
            )
        shown = redact(url)
        try:
            parts = urlsplit(url)
        except ValueError as exc:  # e.g. an unclosed [IPv6] namenode
            raise ConfigError(f"webhdfs URL is malformed: {exc}") from None  # not shown: it may be a secret
        if parts.scheme not in SCHEMES:
            raise ConfigError(f"{shown!r}: expected webhdfs://namenode:port/path or swebhdfs://...")
        if parts.fragment:
            raise ConfigError(f"{shown!r}: a webhdfs URL has no fragment")
        namenodes = []
        for piece in parts.netloc.split(","):
            try:
                node = urlsplit(f"//{piece}")
                host, port = node.hostname, node.port
            except ValueError:
                raise ConfigError(f"{shown!r}: bad namenode address {piece!r}") from None
            if not host:
                raise ConfigError(f"{shown!r}: a namenode address is missing")
            host = f"[{host}]" if ":" in host else host
            namenodes.append(f"{host}:{port or DEFAULT_PORTS[parts.scheme]}")
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = set(query) - {"ca", "auth"}
        if unknown:
            raise ConfigError(f"{shown!r}: unknown query parameter(s) {', '.join(sorted(unknown))}")
        ca = query.get("ca", [None])[-1]
        if ca is not None:
            if parts.scheme != "swebhdfs":
                raise ConfigError("webhdfs URL: ca= needs swebhdfs:// (TLS)")
            if not Path(ca).is_file():
                raise ConfigError(f"webhdfs URL: ca= file {ca} does not exist")
        if "auth" in query:
            kerberos = _auth(query["auth"][-1], "webhdfs URL")
        else:
            kerberos = _auth(env.get(AUTH_ENV) or "simple", AUTH_ENV)
        path = unquote(parts.path).strip("/")
        if path:
            try:
                check_key(path)
            except ForbiddenLocationError:
                raise ConfigError(f"{shown!r}: the path must be clean (no empty, '.' or '..' parts)") from None
        return cls(parts.scheme, tuple(namenodes), f"/{path}", ca, kerberos)

    @property
    def url(self) -> str:
        """The URL without its query."""
        return f"{self.scheme}://{','.join(self.namenodes)}{self.root}"

    @property
    def client_url(self) -> str:
        """The namenodes as HdfsCLI takes them: `http(s)://host:port` joined by `;`."""
        http = "https" if self.scheme == "swebhdfs" else "http"
        return ";".join(f"{http}://{node}" for node in self.namenodes)

    def path(self, key: str) -> str:
        """The absolute HDFS path of a key (a clean relative path) under the root."""
        return f"{self.root.rstrip('/')}/{check_key(key)}"


class _Session(requests.Session):
    """A requests session whose `ca` (when set) verifies TLS even when REQUESTS_CA_BUNDLE is set (requests
    lets that variable override a session's `verify`)."""

    def __init__(self, ca: str | None) -> None:
        super().__init__()
        self.ca = ca

    def merge_environment_settings(
        self, url: str | bytes | None, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> _Settings:
        settings = super().merge_environment_settings(url, proxies, stream, verify, cert)
        if self.ca is not None:
            settings["verify"] = self.ca
        return settings


def _user(env: Mapping[str, str]) -> str:
    user = env.get(USER_ENV)
    if user:
        return user
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        raise ConfigError(f"webhdfs: no user name: set {USER_ENV}") from None


def _client(location: WebHdfsLocation, session: requests.Session, env: Mapping[str, str]) -> Any:
    """HdfsCLI's client for the location: InsecureClient (simple auth) or KerberosClient."""
    timeout = (CONNECT_TIMEOUT, READ_TIMEOUT)
    if location.kerberos:
        try:
            from hdfs.ext.kerberos import KerberosClient
        except ImportError:
            raise ConfigError(
                "webhdfs auth=kerberos needs the hdfs[kerberos] extra (requests-kerberos): pip install 'hdfs[kerberos]'"
            ) from None
        return KerberosClient(location.client_url, root="/", timeout=timeout, session=session)
    return InsecureClient(location.client_url, user=_user(env), root="/", timeout=timeout, session=session)


class WebHdfs:
    """HdfsCLI's client with this project's retries and typed errors: every method raises only WebHdfs*Error."""

    def __init__(
        self,
        location: WebHdfsLocation,
        *,
        attempts: int = DEFAULT_ATTEMPTS,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        if attempts < 1:
            raise ConfigError("webhdfs attempts must be at least 1")
        self.location = location
        self.url = location.url
        self.attempts = attempts
        self.session = _Session(location.ca)
        self.client = _client(location, self.session, os.environ if environ is None else environ)

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------ errors and retries

    def error(self, what: str, path: str, exc: Exception) -> StoreError:
        """The typed error for an hdfs or requests failure of `what` on `path`."""
        where = f"{what} {path} on {self.url}"
        if isinstance(exc, HdfsError):
            name = exc.exception
            text = _one_line(str(exc.message))
            detail = f"{where}: {name}: {text}" if name else f"{where}: {text}"
            if name == "FileNotFoundException":
                return WebHdfsNotFoundError(detail)
            if name == "FileAlreadyExistsException":
                return WebHdfsExistsError(detail)
            if name in _UNAVAILABLE:
                return WebHdfsUnavailableError(detail)
            return WebHdfsError(detail)
        if isinstance(exc, requests.exceptions.SSLError):
            return WebHdfsError(f"{where}: {_describe(exc)}")  # a refused certificate: waiting will not fix it
        if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError)):
            return WebHdfsUnavailableError(f"{where}: {_describe(exc)}")  # refused, reset, timed out, cut short
        return WebHdfsError(f"{where}: {type(exc).__name__}: {_one_line(str(exc))}")

    def call(self, what: str, path: str, fn: Callable[[], T]) -> T:
        """Run `fn` (HdfsCLI calls); retry it while no namenode is available; raise typed errors."""
        attempt = 1
        while True:
            try:
                return fn()
            except (HdfsError, requests.RequestException, KeyError, TypeError) as exc:  # the last two: odd JSON
                error = self.error(what, path, exc)
                if not isinstance(error, StoreUnavailableError):
                    raise error from exc
                if attempt >= self.attempts:
                    raise WebHdfsUnavailableError(f"{error} ({attempt} attempts)") from exc
            delay = compute_backoff(attempt, base=BACKOFF_BASE, cap=BACKOFF_CAP)
            log.info("%s; attempt %d of %d, the next in %.1f s", error, attempt, self.attempts, delay)
            time.sleep(delay)
            attempt += 1

    # ------------------------------------------------------------ operations

    def status(self, path: str) -> dict[str, Any] | None:
        """The FileStatus of `path`, or None when it does not exist."""

        def fetch() -> dict[str, Any] | None:
            try:
                status: dict[str, Any] = self.client.status(path)
            except HdfsError as exc:
                if exc.exception == "FileNotFoundException":
                    return None
                raise
            return status

        return self.call("cannot get the status of", path, fetch)

    def listing(self, path: str) -> list[dict[str, Any]] | None:
        """LISTSTATUS: the FileStatus of each entry of a directory; None when `path` does not exist or is a file."""

        def fetch() -> list[dict[str, Any]] | None:
            try:
                # the raw LISTSTATUS endpoint (HdfsCLI's list() raises for a file and costs a second call)
                statuses: list[dict[str, Any]] = self.client._list_status(path).json()["FileStatuses"]["FileStatus"]
            except HdfsError as exc:
                if exc.exception == "FileNotFoundException":
                    return None
                raise
            if len(statuses) == 1 and statuses[0]["pathSuffix"] == "" and statuses[0]["type"] != "DIRECTORY":
                return None  # LISTSTATUS of a file lists the file itself
            return statuses

        return self.call("cannot list", path, fetch)

    def mkdirs(self, path: str) -> None:
        self.call("cannot create the directory", path, lambda: self.client.makedirs(path))

    def delete(self, path: str, *, recursive: bool) -> bool:
        """DELETE: True if something was deleted, False if nothing was there."""
        return bool(self.call("cannot delete", path, lambda: self.client.delete(path, recursive=recursive)))

    def rename(self, src: str, dst: str) -> bool:
        """HDFS RENAME: False when refused (destination exists, its parent is missing, ...); onto an existing
        directory it moves `src` inside it."""

        def rename() -> bool:
            # the raw RENAME endpoint: HdfsCLI's rename() raises an untyped error for a false answer
            return bool(self.client._rename(src, destination=dst).json()["boolean"])

        return self.call(f"cannot rename {src} to", dst, rename)

    def read(self, path: str, offset: int, length: int) -> bytes:
        """OPEN with offset and length: at most `length` bytes from `offset`."""

        def read() -> bytes:
            with self.client.read(path, offset=offset, length=length, chunk_size=MIB) as chunks:
                return b"".join(chunks)

        return self.call("cannot read", path, read)

    def write(self, path: str, data: bytes, *, overwrite: bool) -> None:
        """CREATE `path` with `data` (retried whole when no namenode is available)."""
        self.call("cannot write", path, lambda: self.client.write(path, data=data, overwrite=overwrite))


class WebHdfsStore(ObjectStore):
    """Write-once objects under an HDFS directory (see the module docstring)."""

    def __init__(self, hdfs: WebHdfs) -> None:
        self.hdfs = hdfs
        self.location = hdfs.location
        self.url = hdfs.url

    @classmethod
    def from_url(cls, url: str, *, attempts: int = DEFAULT_ATTEMPTS) -> WebHdfsStore:
        return cls(WebHdfs(WebHdfsLocation.from_url(url), attempts=attempts))

    def close(self) -> None:
        self.hdfs.close()

    def _discard(self, path: str) -> None:
        try:
            self.hdfs.delete(path, recursive=False)
        except StoreError as exc:
            log.warning("could not delete the temporary file %s on %s: %s", path, self.url, exc)

    def put(self, key: str, data: bytes) -> None:
        path = self.location.path(key)
        existing = self.hdfs.status(path)
        if existing is not None:
            if existing["type"] == "DIRECTORY":
                raise WebHdfsError(f"cannot write {key} in {self.url}: a directory has that name")
            raise WebHdfsExistsError(f"object {key} already exists in {self.url}")
        parent, name = path.rsplit("/", 1)
        temp = f"{parent}/{TEMP_PREFIX}{name}.{uuid.uuid4().hex}"
        try:
            self.hdfs.write(temp, data, overwrite=True)
            renamed = self.hdfs.rename(temp, path)
        except BaseException:
            self._discard(temp)
            raise
        if not renamed:
            self._discard(temp)
            if self.hdfs.status(path) is not None:
                raise WebHdfsExistsError(f"object {key} already exists in {self.url}")
            raise WebHdfsError(f"cannot write {key} in {self.url}: the rename of its temporary file was refused")

    def delete(self, keys: Sequence[str]) -> None:
        """DELETE each object (absent ones are no error), then the directories that became empty (as the local
        store does), up to the root."""
        emptied: set[str] = set()
        for key in keys:
            path = self.location.path(key)
            self.hdfs.delete(path, recursive=False)
            emptied.add(path.rsplit("/", 1)[0])
        top = self.location.root.rstrip("/")
        for directory in sorted(emptied, key=lambda d: d.count("/"), reverse=True):
            while directory.startswith(top + "/") and self.hdfs.listing(directory) == []:
                try:
                    self.hdfs.delete(directory, recursive=False)
                except WebHdfsError:
                    break  # not empty any more: keep it and its parents
                directory = directory.rsplit("/", 1)[0]

    def get(self, key: str, max_bytes: int = DEFAULT_MAX_OBJECT_BYTES) -> bytes:
        path = self.location.path(key)
        try:
            data = self.hdfs.read(path, 0, max_bytes + 1)
        except WebHdfsNotFoundError:
            raise WebHdfsNotFoundError(f"object {key} not found in {self.url}") from None
        if len(data) > max_bytes:
            raise OversizedObjectError(f"object {key} is larger than the limit of {max_bytes} bytes")
        return data

    def list(self, prefix: str = "") -> Iterator[str]:
        """Keys under `prefix`, in lexical order; temporary files and directories starting with `.` are skipped."""
        directory = prefix.rpartition("/")[0]
        stack = [(self.location.path(directory) if directory else self.location.root, directory)]
        keys: list[str] = []
        while stack:
            path, rel = stack.pop()
            for entry in self.hdfs.listing(path) or []:
                name = entry["pathSuffix"]
                key = f"{rel}/{name}" if rel else name
                if entry["type"] == "DIRECTORY":
                    if not name.startswith(".") and (key.startswith(prefix) or prefix.startswith(key + "/")):
                        stack.append((f"{path.rstrip('/')}/{name}", key))
                elif not name.startswith(TEMP_PREFIX) and key.startswith(prefix):
                    keys.append(key)
        yield from sorted(keys)

    def object_url(self, key: str) -> str:
        """`webhdfs:///<root>/<key>`: the path, without the namenodes (as s3:// pointers carry no endpoint)."""
        return f"webhdfs://{self.location.path(key)}"

    def key_for_url(self, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in SCHEMES or parts.netloc or parts.query or parts.fragment:
            raise ForbiddenLocationError(f"pointer URL {redact(url)!r} is not a webhdfs:///path URL of this store")
        path = unquote(parts.path)
        base = self.location.root.rstrip("/") + "/"
        if not path.startswith(base):
            raise ForbiddenLocationError(f"pointer URL {redact(url)!r} lies outside the store {self.url}")
        return check_key(path[len(base) :])


# ---------------------------------------------------------------------------------------------- pyarrow


def _absolute(path: str) -> str:
    """A pyarrow path as an HDFS path: absolute, no repeated or trailing slashes."""
    if not path.startswith("/"):
        raise WebHdfsError(f"{path!r}: a path on a webhdfs filesystem is absolute")
    return "/" + "/".join(p for p in path.split("/") if p)


def _join(directory: str, name: str) -> str:
    return f"{directory.rstrip('/')}/{name}"


def _file_info(path: str, status: dict[str, Any] | None) -> pafs.FileInfo:
    if status is None:
        return pafs.FileInfo(path, pafs.FileType.NotFound)
    mtime_ns = int(status["modificationTime"]) * 1_000_000
    if status["type"] == "DIRECTORY":
        return pafs.FileInfo(path, pafs.FileType.Directory, mtime_ns=mtime_ns)
    return pafs.FileInfo(path, pafs.FileType.File, size=int(status["length"]), mtime_ns=mtime_ns)


class _RangeReader(io.RawIOBase):
    """A file on HDFS read with OPEN offset/length: seekable, with a read-ahead buffer for short reads."""

    def __init__(self, hdfs: WebHdfs, path: str, size: int) -> None:
        super().__init__()
        self._hdfs, self._path, self._size = hdfs, path, size
        self._pos = 0
        self._buffer = b""
        self._buffer_at = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise WebHdfsError(f"cannot seek to {base + offset} in {self._path} on {self._hdfs.url}")
        self._pos = base + offset
        return self._pos

    def read(self, size: int | None = -1) -> bytes:
        wanted = self._size - self._pos if size is None or size < 0 else min(size, self._size - self._pos)
        if wanted <= 0:
            return b""
        start = self._pos - self._buffer_at
        if start >= 0 and start + wanted <= len(self._buffer):
            data = self._buffer[start : start + wanted]
        else:
            fetch = min(max(wanted, READ_AHEAD), self._size - self._pos)
            block = self._hdfs.read(self._path, self._pos, fetch)
            if len(block) < wanted:
                raise WebHdfsError(
                    f"cannot read {self._path} on {self._hdfs.url}: {wanted} bytes expected at offset "
                    f"{self._pos}, {len(block)} received (the file shrank?)"
                )
            self._buffer, self._buffer_at = (block, self._pos) if fetch > wanted else (b"", 0)
            data = block[:wanted] if fetch > wanted else block
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


class _UploadStream(io.RawIOBase):
    """A file on HDFS open for writing: one CREATE (or APPEND) whose body streams, in chunked transfer
    encoding, as the caller writes (HdfsCLI's write() with a generator, in a thread). At most
    UPLOAD_WINDOW blocks of UPLOAD_BLOCK bytes wait in memory, plus one being filled."""

    def __init__(self, hdfs: WebHdfs, path: str, *, append: bool) -> None:
        super().__init__()
        self._hdfs, self._path, self._append = hdfs, path, append
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=UPLOAD_WINDOW)
        self._pending = bytearray()
        self._error: Exception | None = None
        self._thread = threading.Thread(target=self._upload, name=f"webhdfs-upload {path}", daemon=True)
        self._thread.start()

    def _blocks(self) -> Iterator[bytes]:
        while (block := self._queue.get()) is not None:
            yield block

    def _upload(self) -> None:
        try:
            if self._append:
                self._hdfs.client.write(self._path, data=self._blocks(), append=True)
            else:
                self._hdfs.client.write(self._path, data=self._blocks(), overwrite=True)
        except Exception as exc:
            self._error = exc

    def _failure(self) -> StoreError:
        what = "cannot append to" if self._append else "cannot write"
        if self._error is None:
            return WebHdfsError(f"{what} {self._path} on {self._hdfs.url}: the upload ended early")
        return self._hdfs.error(what, self._path, self._error)

    def _send(self, block: bytes | None) -> None:
        while True:
            if self._error is not None or not self._thread.is_alive():
                raise self._failure()
            try:
                self._queue.put(block, timeout=0.2)
                return
            except queue.Full:
                continue

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        if self.closed:
            raise ValueError("write to a closed webhdfs stream")
        view = memoryview(data).cast("B")
        self._pending += view
        while len(self._pending) >= UPLOAD_BLOCK:
            self._send(bytes(self._pending[:UPLOAD_BLOCK]))
            del self._pending[:UPLOAD_BLOCK]
        return len(view)

    def close(self) -> None:
        if self.closed:
            return
        try:
            if self._pending:
                self._send(bytes(self._pending))
                self._pending.clear()
            self._send(None)
            self._thread.join()
            if self._error is not None:
                raise self._failure()
        finally:
            super().close()


class WebHdfsHandler(pafs.FileSystemHandler):  # type: ignore[misc]
    """pyarrow's filesystem interface over WebHDFS; wrap it in `pyarrow.fs.PyFileSystem`. Paths are absolute."""

    def __init__(self, hdfs: WebHdfs) -> None:
        self.hdfs = hdfs

    def get_type_name(self) -> str:
        return self.hdfs.location.scheme

    def normalize_path(self, path: str) -> str:
        return _absolute(path)

    def _require(self, path: str) -> dict[str, Any]:
        status = self.hdfs.status(path)
        if status is None:
            raise WebHdfsNotFoundError(f"{path} does not exist on {self.hdfs.url}")
        return status

    def get_file_info(self, paths: list[str]) -> list[pafs.FileInfo]:
        return [_file_info(path, self.hdfs.status(_absolute(path))) for path in paths]

    def get_file_info_selector(self, selector: pafs.FileSelector) -> list[pafs.FileInfo]:
        base = _absolute(selector.base_dir)
        status = self.hdfs.status(base)
        if status is None:
            if selector.allow_not_found:
                return []
            raise WebHdfsNotFoundError(f"{base} does not exist on {self.hdfs.url}")
        if status["type"] != "DIRECTORY":
            raise WebHdfsError(f"{base} on {self.hdfs.url} is not a directory")
        infos = []
        stack = [base]
        while stack:
            directory = stack.pop()
            for entry in self.hdfs.listing(directory) or []:  # None: removed since its parent was listed
                child = _join(directory, entry["pathSuffix"])
                infos.append(_file_info(child, entry))
                if selector.recursive and entry["type"] == "DIRECTORY":
                    stack.append(child)
        return infos

    def create_dir(self, path: str, recursive: bool) -> None:
        path = _absolute(path)
        if not recursive and path != "/" and self.hdfs.status(path.rsplit("/", 1)[0] or "/") is None:
            raise WebHdfsNotFoundError(f"cannot create {path} on {self.hdfs.url}: its parent does not exist")
        self.hdfs.mkdirs(path)

    def delete_dir(self, path: str) -> None:
        path = _absolute(path)
        if self._require(path)["type"] != "DIRECTORY":
            raise WebHdfsError(f"cannot delete the directory {path} on {self.hdfs.url}: it is a file")
        if path == "/":
            raise WebHdfsError(f"refusing to delete the root of {self.hdfs.url}")
        self.hdfs.delete(path, recursive=True)

    def delete_dir_contents(self, path: str, missing_dir_ok: bool = False) -> None:
        path = _absolute(path)
        if path == "/":
            raise WebHdfsError(f"refusing to delete everything under / on {self.hdfs.url}")
        status = self.hdfs.status(path)
        if status is None:
            if missing_dir_ok:
                return
            raise WebHdfsNotFoundError(f"{path} does not exist on {self.hdfs.url}")
        if status["type"] != "DIRECTORY":
            raise WebHdfsError(f"cannot delete the contents of {path} on {self.hdfs.url}: it is a file")
        for entry in self.hdfs.listing(path) or []:
            self.hdfs.delete(_join(path, entry["pathSuffix"]), recursive=True)

    def delete_root_dir_contents(self) -> None:
        raise WebHdfsError(f"refusing to delete everything under / on {self.hdfs.url}")

    def delete_file(self, path: str) -> None:
        path = _absolute(path)
        if self._require(path)["type"] == "DIRECTORY":
            raise WebHdfsError(f"cannot delete the file {path} on {self.hdfs.url}: it is a directory")
        if not self.hdfs.delete(path, recursive=False):
            raise WebHdfsNotFoundError(f"{path} does not exist on {self.hdfs.url}")

    def move(self, src: str, dest: str) -> None:
        """pyarrow's rule: an existing file or empty directory at `dest` is replaced; a non-empty one is an error."""
        src, dest = _absolute(src), _absolute(dest)
        if src == dest:
            return
        source = self._require(src)
        target = self.hdfs.status(dest)
        if target is not None:
            if target["type"] != source["type"]:
                raise WebHdfsError(f"cannot move {src} onto {dest} on {self.hdfs.url}: not both files or directories")
            if target["type"] == "DIRECTORY" and self.hdfs.listing(dest):
                raise WebHdfsError(f"cannot move {src} onto {dest} on {self.hdfs.url}: a non-empty directory")
            self.hdfs.delete(dest, recursive=False)
        if not self.hdfs.rename(src, dest):
            raise WebHdfsError(
                f"cannot move {src} to {dest} on {self.hdfs.url}: the namenode refused the rename "
                "(the destination exists again, or its parent does not exist)"
            )

    def copy_file(self, src: str, dest: str) -> None:
        src, dest = _absolute(src), _absolute(dest)
        source = self._require(src)
        if source["type"] == "DIRECTORY":
            raise WebHdfsError(f"cannot copy {src} on {self.hdfs.url}: it is a directory")
        reader = _RangeReader(self.hdfs, src, int(source["length"]))
        writer = _UploadStream(self.hdfs, dest, append=False)
        with writer:
            while block := reader.read(READ_AHEAD):
                writer.write(block)

    def _reader(self, path: str) -> pa.NativeFile:
        path = _absolute(path)
        status = self._require(path)
        if status["type"] == "DIRECTORY":
            raise WebHdfsError(f"cannot open {path} on {self.hdfs.url}: it is a directory")
        return pa.PythonFile(_RangeReader(self.hdfs, path, int(status["length"])), mode="r")

    def open_input_stream(self, path: str) -> pa.NativeFile:
        return self._reader(path)

    def open_input_file(self, path: str) -> pa.NativeFile:
        return self._reader(path)

    def open_output_stream(self, path: str, metadata: dict[str, str] | None) -> pa.NativeFile:
        return pa.PythonFile(_UploadStream(self.hdfs, _absolute(path), append=False), mode="w")

    def open_append_stream(self, path: str, metadata: dict[str, str] | None) -> pa.NativeFile:
        return pa.PythonFile(_UploadStream(self.hdfs, _absolute(path), append=True), mode="w")


def webhdfs_warehouse(url: str, *, attempts: int = DEFAULT_ATTEMPTS) -> tuple[pafs.FileSystem, str, WebHdfsStore]:
    """Everything a warehouse needs on `webhdfs://...` or `swebhdfs://...` (see the module docstring for the URL):

    - a pyarrow FileSystem (a PyFileSystem over :class:`WebHdfsHandler`) taking absolute HDFS paths;
    - the root path: the URL's path (`/warehouse`; `/` when the URL has none), under which the caller
      builds its paths (`f"{root.rstrip('/')}/{dataset}/{task}/part-00000.parquet"`);
    - a :class:`WebHdfsStore` for write-once control objects, keyed relative to that root.

    The three share one HdfsCLI client (one connection pool, one namenode failover state); closing the
    store closes it. Raises ConfigError for a bad URL, a missing `hdfs` (or `hdfs[kerberos]`) extra, or
    no user name.
    """
    hdfs = WebHdfs(WebHdfsLocation.from_url(url), attempts=attempts)
    return pafs.PyFileSystem(WebHdfsHandler(hdfs)), hdfs.location.root, WebHdfsStore(hdfs)
